"""What a user sees of a run: a progress bar, tracker logs (TensorBoard, …) and grids of samples."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from tqdm.auto import tqdm

from ..files import replace_file
from ..networks import Generator
from ..sampling import class_grid
from .config import TrainingConfig

logger = logging.getLogger(__name__)

LOG_EVERY = 10  # iterations between progress-bar / tracker updates


class ProgressReport:
    """What a user sees of a run: a progress bar and tracker logs, both of the stats averaged over the
    iterations since the last log; ``stats`` keeps the latest averages."""

    def __init__(self, accelerator, config: TrainingConfig, description: str, images_seen: int, show: bool):
        self.accelerator, self.batch_size = accelerator, config.batch_size
        total = math.ceil(config.kimg * 1000)
        self.bar = tqdm(total=total, initial=min(images_seen, total), unit="img", desc=description,
                        disable=not show, dynamic_ncols=True)
        self.trackers = _start_trackers(accelerator, config, description)
        self.window, self.stats = {}, {}

    def add(self, stats: dict[str, float], step: int, images_seen: int, last: bool) -> None:
        """One iteration's stats; every LOG_EVERY iterations, and after the last, their averages are shown."""
        for name, value in stats.items():
            self.window.setdefault(name, []).append(value)
        self.bar.update(self.batch_size)
        if step % LOG_EVERY == 0 or last:
            self._log(images_seen)

    def _log(self, images_seen: int) -> None:
        # Lazy regularisers may not have run in this window: keep their last values.
        self.stats = {**self.stats, **{name: sum(values) / len(values) for name, values in self.window.items()}}
        self.window = {}
        self.bar.set_postfix({"kimg": f"{images_seen / 1000:.2f}",
                              **{k.split("/")[-1]: f"{v:.3f}" for k, v in self.stats.items()
                                 if k in ("loss/D", "loss/G")}})
        self.accelerator.log({**self.stats, "progress/kimg": images_seen / 1000}, step=images_seen)

    def close(self) -> None:
        """Close the bar and finish this run's trackers, so the next run on the same accelerator starts its own."""
        self.bar.close()
        for tracker in self.trackers:
            tracker.finish()
            self.accelerator.trackers.remove(tracker)


def _start_trackers(accelerator, config: TrainingConfig, description: str) -> list:
    if not accelerator.log_with:
        if config.report_to:
            logger.warning("report_to=%r is ignored: the accelerator given to train() has no trackers "
                           "(create it with Accelerator(log_with=...))", config.report_to)
        return []
    before = list(accelerator.trackers)
    accelerator.init_trackers(description, config=config.to_hparams())
    return accelerator.trackers[len(before) :]


def write_sample_grid(G_ema: Generator, folder: Path, images_seen: int, seeds_per_class: int) -> None:
    """G_ema's samples for fixed seeds, one row per class, as ``folder/kimg<kimg>.png`` (written whole or not
    at all, so a killed run leaves no half image)."""
    folder.mkdir(parents=True, exist_ok=True)
    grid = class_grid(G_ema, max(G_ema.c_dim, 1), range(seeds_per_class))
    path = folder / f"kimg{images_seen / 1000:010.3f}.png"
    replace_file(path, lambda temporary: grid.save(temporary, format="PNG"))
