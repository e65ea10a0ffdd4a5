"""The one GAN training loop: StyleGAN2's objective on whatever a source yields, from 1 CPU to many GPUs.

Rooting, merging, the baselines and source training all set up this loop (initial weights, source,
frozen parts, extra penalties); it knows nothing about them. What it does, per iteration, with the
phases of loss.py:

* G step: the main loss with style mixing (+ ``g_penalty(G)``), every ``pl_interval`` iterations a
  separate path-length step;
* D step: the main loss (+ ``d_penalty(D)``), every ``r1_interval`` iterations a separate R1 step on the
  reals, its weight multiplied by the interval (lazy regularisation, with Adam's learning rate and betas
  corrected by ``c = interval / (interval + 1)``);
* G EMA with a half-life in kimg (optional ramp-up), parameters and buffers.

How N processes stay one run is distributed.py's; how a run is saved and resumed, checkpoint.py's;
how the reals are drawn (several iterations ahead), reals.py's.

Mixed precision comes from the Accelerator (bf16, or fp16 with its GradScaler) and from the networks'
float16 blocks (``num_fp16_res``, on CUDA only; a GradScaler of the loop's own when Accelerate has none):
a non-finite fp16 step is skipped and the loss scale lowered. The R1 and path-length steps always run
in float32, blocks included, so their double backward cannot underflow or overflow.
"""

from __future__ import annotations

import copy
import ctypes
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CocktailError, first_line
from ..files import remove_leftovers, saving
from ..networks import Discriminator, Generator
from .checkpoint import (
    CHECKPOINTS_DIR,
    Checkpoint,
    checked_checkpoint,
    checkpoint_folder,
    latest_checkpoint,
    newest_readable_checkpoint,
    process_rng_state,
    prune_checkpoints,
    read_checkpoint,
    restore_process_rng_state,
    save_checkpoint,
)
from .config import TrainingConfig, check_setup, effective_ema_rampup
from .distributed import (
    SharedDraws,
    average_gradients,
    broadcast_weights,
    derive_seed,
    gather_from_all,
    max_over_processes,
    mean_over_processes,
    seed_process_rngs,
)
from .loss import PathLengthPenalty, discriminator_loss, generator_loss, path_lengths, r1_penalty
from .reals import RealsAhead
from .report import ProgressReport, write_sample_grid

logger = logging.getLogger(__name__)

SAMPLES_DIR = "samples"
# What the messages of a stopped or failed run say to do next, unless the caller knows better (a merge resumes
# when its command is run again).
RESUME_HINT = "run it again with --resume_from_checkpoint latest to resume"
# Skipped float16 steps in a row before a run counts as diverged: by then the loss scale has halved
# from 2^16 to 2^-16, so no overflow is left to blame.
MAX_SKIPPED_STEPS = 32


@dataclass
class TrainResult:
    G: Generator
    G_ema: Generator
    D: Discriminator
    kimg: float
    images_seen: int
    stats: dict = field(default_factory=dict)


def train(G: Generator, D: Discriminator, source, config: TrainingConfig, *, accelerator=None,
          G_ema: Generator | None = None, class_names: Sequence[str] | None = None,
          frozen_d_prefixes: Sequence[str] = (), g_penalty: Callable[[Generator], torch.Tensor] | None = None,
          d_penalty: Callable[[Discriminator], torch.Tensor] | None = None,
          description: str = "train", resume_hint: str = RESUME_HINT) -> TrainResult:
    """Train ``G`` and ``D`` on ``source`` for ``config.kimg`` thousand images (global count).

    G parameters with ``requires_grad=False`` stay fixed, and so do D parameters whose names start
    with one of ``frozen_d_prefixes`` (Freeze-D). ``g_penalty(G)`` / ``d_penalty(D)`` are added to
    every main G / D loss (EWC). Returns the models unwrapped on the accelerator's device; saving
    them is the caller's job (checkpoints under ``output_dir/checkpoints`` are for resuming). ``resume_hint``
    ends the messages of a run stopped by a signal or a failed save: how to go on.
    """
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(log_with=config.report_to, project_dir=config.output_dir)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > accelerator.num_processes:
        # e.g. `accelerate launch --multi_gpu` without GPUs: N processes that each think they are alone.
        raise CocktailError(f"{launched} processes were launched (WORLD_SIZE) but Accelerate set up "
                            f"{accelerator.num_processes}; on CPUs launch with `ACCELERATE_USE_CPU=true "
                            "accelerate launch --multi_gpu --num_processes N ...`")
    return TrainingRun(G, D, G_ema, source, config, accelerator, class_names, tuple(frozen_d_prefixes),
                       g_penalty, d_penalty, description, resume_hint).run()


class TrainingRun:
    """One run's networks, optimizers, RNGs and counters; ``run()`` trains them to the end."""

    def __init__(self, G, D, G_ema, source, config: TrainingConfig, accelerator, class_names,
                 frozen_d_prefixes: tuple[str, ...], g_penalty, d_penalty, description: str, resume_hint: str):
        self.config, self.accelerator, self.description = config, accelerator, description
        self.resume_hint = resume_hint
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.is_main_process = accelerator.is_main_process
        self.output_dir = Path(config.output_dir)
        self.g_penalty, self.d_penalty = g_penalty, d_penalty
        check_setup(G, D, source, config, self.world, class_names)
        self.process_batch = config.batch_size // self.world
        self.path_length_batch = max(self.process_batch // config.pl_batch_shrink, 1)

        # Channels-last convolutions train ~20% faster on CPU (benchmarks/train_step.py); the models go
        # back to the default layout when training ends, so callers save ordinary contiguous tensors.
        memory_format = torch.channels_last if self.device.type == "cpu" else torch.preserve_format
        if self.device.type == "cpu":
            _keep_freed_memory_for_reuse()
        self.G = G.to(self.device, memory_format=memory_format).train()
        self.D = D.to(self.device, memory_format=memory_format).train()
        G_ema = copy.deepcopy(self.G) if G_ema is None else G_ema
        self.G_ema = G_ema.to(self.device, memory_format=memory_format).eval()
        if list(self.G_ema.state_dict()) != list(self.G.state_dict()):
            raise CocktailError("G_ema does not have the generator's architecture")
        self.ema = GeneratorEMA(self.G, self.G_ema, config)
        self.source = source.to(self.device)

        self.g_params = [p for p in self.G.parameters() if p.requires_grad]
        if not self.g_params:
            raise CocktailError("the generator has no trainable parameters (all have requires_grad=False)")
        self.d_params = _unfrozen(self.D, frozen_d_prefixes)
        self.use_r1 = config.r1_gamma > 0
        self.use_path_length = config.pl_weight > 0
        self.g_optimizer = _adam(self.g_params, config.g_lr, config,
                                 config.pl_interval if self.use_path_length else None)
        self.d_optimizer = _adam(self.d_params, config.d_lr, config, config.r1_interval if self.use_r1 else None)
        self.scaler = getattr(accelerator, "scaler", None) or _float16_scaler(self.G, self.D, self.device)
        self.skipped_steps = {}  # consecutive non-finite (skipped) scaled updates, by what they update
        self.path_length = PathLengthPenalty(config.pl_decay, self.device)

        self.images_seen = 0
        self.step = 0
        self.stop_signals = StopSignals()
        source_generator = torch.Generator()  # reals: a CPU generator draws the same on every device
        self.shared_draws = SharedDraws(config.seed, self.rank, self.world, self.device)
        seed_process_rngs(config.seed, self.rank, source_generator)
        self.reals = RealsAhead(self.source, self.process_batch, self.device, source_generator)
        if self.world > 1:
            broadcast_weights(self._networks().values())
        if self.is_main_process:  # what saves killed in a previous run left
            for folder in (CHECKPOINTS_DIR, SAMPLES_DIR):
                remove_leftovers(self.output_dir / folder)
        if config.resume_from_checkpoint is not None:
            self._resume(config.resume_from_checkpoint)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> TrainResult:
        config = self.config
        total = config.kimg * 1000
        next_checkpoint = _next_multiple(self.images_seen, config.checkpointing_kimg)
        next_grid = _next_multiple(self.images_seen, config.sample_every_kimg)
        if config.sample_every_kimg and self.images_seen == 0:
            self._write_grid()
        report = ProgressReport(self.accelerator, config, self.description, self.images_seen,
                                show=config.progress and self.is_main_process)
        started, start_images = time.perf_counter(), self.images_seen
        self.stop_signals.catch()
        try:
            while self.images_seen < total:
                stats = self._iteration()
                stopping = self.stop_signals.agreed(self.world, self.device)
                report.add(stats, self.step, self.images_seen, last=stopping or self.images_seen >= total)
                if next_grid is not None and self.images_seen >= next_grid:
                    self._write_grid()
                    next_grid = _next_multiple(self.images_seen, config.sample_every_kimg)
                if stopping:
                    self._stop(self._save_checkpoint())
                if next_checkpoint is not None and self.images_seen >= next_checkpoint:
                    self._save_checkpoint()
                    next_checkpoint = _next_multiple(self.images_seen, config.checkpointing_kimg)
            if config.checkpointing_kimg:
                self._save_checkpoint()  # so a longer run can go on from here
        finally:
            self.stop_signals.restore()
            report.close()
            for module in self._networks().values():
                module.to(memory_format=torch.contiguous_format).eval()
        elapsed = time.perf_counter() - started
        stats = {**report.stats, "images_per_second": (self.images_seen - start_images) / max(elapsed, 1e-9),
                 "seconds": elapsed, "steps": self.step, "pl_mean": float(self.path_length.mean)}
        return TrainResult(G=self.G, G_ema=self.G_ema, D=self.D,
                           kimg=self.images_seen / 1000, images_seen=self.images_seen, stats=stats)

    def _iteration(self) -> dict[str, float]:
        """One G step, one D step, their lazy regularisation steps when due, then the EMA."""
        config = self.config
        reals, labels = self.reals.next()
        stats = self._generator_step(labels)
        if self.use_path_length and self.step % config.pl_interval == 0:
            stats.update(self._path_length_step(labels))
        stats.update(self._discriminator_step(reals, labels))
        if self.use_r1 and self.step % config.r1_interval == 0:
            stats.update(self._r1_step(reals, labels))
        self.ema.update(self.images_seen)
        self.images_seen += config.batch_size
        self.step += 1
        return stats

    # -- the four phases -----------------------------------------------------------------

    def _generator_step(self, labels) -> dict[str, float]:
        for p in self.d_params:  # D is only a function here: no graph for its weights
            p.requires_grad_(False)
        try:
            with self.accelerator.autocast():
                fakes, _ = self._generate(labels, update_emas=True)
                fake_logits = self.D(fakes, _one_hot(labels, self.D.c_dim))
        finally:
            for p in self.d_params:
                p.requires_grad_(True)
        loss, reported = generator_loss(fake_logits)
        loss = _add_penalty(loss, reported, "loss/G_penalty", self.g_penalty, self.G)
        values = self._gradient_step("G loss", self.g_optimizer, self.g_params, loss, reported, scaled=True)
        # Each rank moved w_avg towards its own batch mean: their average is the global batch mean.
        mean_over_processes(self.G.mapping.w_avg, self.world)
        return values

    def _path_length_step(self, labels) -> dict[str, float]:
        config = self.config
        images, ws = self._generate(labels[: self.path_length_batch], update_emas=False, force_fp32=True)
        noise = self.shared_draws(torch.randn, self.path_length_batch, images.shape[1:])
        lengths = path_lengths(images, ws, noise)
        batch_mean = lengths.mean().detach()
        mean_over_processes(batch_mean, self.world)
        penalty, reported = self.path_length(lengths, batch_mean)
        values = self._gradient_step("G path-length penalty", self.g_optimizer, self.g_params,
                                     penalty * (config.pl_weight * config.pl_interval), reported, scaled=False)
        return {**values, "pl_mean": float(self.path_length.mean)}

    def _discriminator_step(self, reals, labels) -> dict[str, float]:
        c = _one_hot(labels, self.D.c_dim)
        with self.accelerator.autocast():
            with torch.no_grad():
                fakes, _ = self._generate(labels, update_emas=False)
            fake_logits = self.D(fakes, c)
            real_logits = self.D(reals, c)
        loss, reported = discriminator_loss(real_logits, fake_logits)
        loss = _add_penalty(loss, reported, "loss/D_penalty", self.d_penalty, self.D)
        return self._gradient_step("D loss", self.d_optimizer, self.d_params, loss, reported, scaled=True)

    def _r1_step(self, reals, labels) -> dict[str, float]:
        config = self.config
        reals = reals.detach().requires_grad_(True)
        real_logits = self.D(reals, _one_hot(labels, self.D.c_dim), force_fp32=True)
        penalty, reported = r1_penalty(real_logits, reals)
        return self._gradient_step("D R1 penalty", self.d_optimizer, self.d_params,
                                   penalty * (config.r1_gamma / 2 * config.r1_interval), reported, scaled=False)

    def _generate(self, labels, update_emas: bool, force_fp32: bool = False):
        """G's images and ws for ``len(labels)`` fresh latents, with per-sample style mixing."""
        n, G, draw = len(labels), self.G, self.shared_draws
        z = draw(torch.randn, n, [G.z_dim])
        c = _one_hot(labels, G.c_dim)
        with torch.autocast(self.device.type, enabled=False):  # w and w_avg stay float32 (cheap anyway)
            ws = G.mapping(z, c, update_emas=update_emas)
            if self.config.style_mixing_prob > 0 and G.num_ws > 1:
                mixed = draw(torch.rand, n, []) < self.config.style_mixing_prob
                cutoff = draw(torch.randint, n, [], low=1, high=G.num_ws)
                cutoff = torch.where(mixed, cutoff, G.num_ws)
                ws2 = G.mapping(draw(torch.randn, n, [G.z_dim]), c)
                later = torch.arange(G.num_ws, device=self.device)[None, :] >= cutoff[:, None]
                ws = torch.where(later[:, :, None], ws2, ws)
        return G.synthesis(ws, noise_mode="random", force_fp32=force_fp32), ws

    # -- one optimizer step ----------------------------------------------------------------

    def _gradient_step(self, what: str, optimizer, params, loss, reported: dict, scaled: bool) -> dict[str, float]:
        """Backward, gradients averaged over processes, a check that all is finite, one optimizer step.

        Returns the ``reported`` scalars as global means (they ride along in the gradients' all-reduce).
        """
        scaler = self.scaler if scaled else None
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        (loss_value, *values), gradients_finite = average_gradients(params, [loss, *reported.values()], self.world)
        finite = math.isfinite(loss_value) and gradients_finite
        if scaler is None:
            if not finite:
                self._diverged(f"{what} is {loss_value}" if not math.isfinite(loss_value) else
                               f"{what} gradients are not finite")
            optimizer.step()
        elif finite:
            self.skipped_steps[what] = 0
            scaler.step(optimizer)
            scaler.update()
        else:  # float16 overflowed: skip this step and lower the loss scale, as mixed precision expects
            self._skip_step(what, scaler)
        return dict(zip(reported, values, strict=True))

    def _skip_step(self, what: str, scaler) -> None:
        """A float16 overflow costs one step; one that no loss scale cures is divergence."""
        skipped = self.skipped_steps[what] = self.skipped_steps.get(what, 0) + 1
        if skipped > MAX_SKIPPED_STEPS:
            self._diverged(f"{what} stayed non-finite for {skipped} steps in a row (loss scale "
                           f"{scaler.get_scale():g})")
        scaler.update(new_scale=scaler.get_scale() * scaler.get_backoff_factor())

    def _diverged(self, what: str):
        last = latest_checkpoint(self.output_dir)
        raise CocktailError(f"training diverged at kimg {self.images_seen / 1000:g}: {what}; "
                            f"last good checkpoint: {last if last is not None else 'none'}")

    # -- checkpoints, grids, stopping --------------------------------------------------------

    def _networks(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "G_ema": self.G_ema, "D": self.D}

    def _save_checkpoint(self) -> Path:
        """Every rank's RNG states, gathered; the main process writes the checkpoint, the others wait."""
        rng_states = gather_from_all(process_rng_state(*self.reals.position(), self.device), self.world)
        folder = checkpoint_folder(self.output_dir, self.images_seen)
        if self.is_main_process and not folder.exists():
            optimizers = {"G": self.g_optimizer.state_dict(), "D": self.d_optimizer.state_dict(),
                          "scaler": self.scaler.state_dict() if self.scaler is not None else None}
            save_checkpoint(folder, self._networks(), Checkpoint(
                images_seen=self.images_seen, step=self.step, world_size=self.world,
                device_type=self.device.type, optimizers=optimizers, pl_mean=self.path_length.mean,
                shared_generator=self.shared_draws.generator.get_state(), rng_states=rng_states,
                description=self.description, config=self.config.to_json()), self.resume_hint)
            prune_checkpoints(self.output_dir, self.config.checkpoints_total_limit)
        self.accelerator.wait_for_everyone()
        return folder

    def _resume(self, spec: str) -> None:
        """Go on from ``spec``: an explicit checkpoint, which must be intact, or "latest", the newest intact one
        (damaged newer ones are skipped, and with none intact the run starts again)."""
        if spec == "latest":
            any_found = latest_checkpoint(self.output_dir) is not None
            found = newest_readable_checkpoint(self.output_dir, self.device, self.is_main_process)
            if found is None:
                where = self.output_dir / CHECKPOINTS_DIR
                self.accelerator.print(f"no intact checkpoint under {where}: starting the run again" if any_found
                                       else f"no checkpoint under {where}: starting a new run")
                return
            folder, weights, saved = found
        else:
            folder = checked_checkpoint(spec)
            weights, saved = read_checkpoint(folder, self.device)
        try:
            for name, network in self._networks().items():
                network.load_state_dict(weights[name])
        except RuntimeError as err:
            raise CocktailError(f"{folder}: cannot resume from this checkpoint ({first_line(err)})") from None
        self.g_optimizer.load_state_dict(saved.optimizers["G"])
        self.d_optimizer.load_state_dict(saved.optimizers["D"])
        if self.scaler is not None and saved.optimizers.get("scaler"):
            self.scaler.load_state_dict(saved.optimizers["scaler"])
        self.path_length.mean = saved.pl_mean.to(self.device).reshape([])
        self.shared_draws.generator.set_state(saved.shared_generator)
        self.images_seen, self.step = saved.images_seen, saved.step
        if saved.world_size == self.world and saved.device_type == self.device.type:
            state = saved.rng_states[self.rank]
            restore_process_rng_state(state, self.device)
            self.reals.restore(state["source"], state.get("reals_used", 0))
        else:  # the run goes on, but cannot replay the same random draws on a different layout
            logger.warning("%s was written by %d %s process(es); reseeding the per-process RNGs for %d %s "
                           "process(es)", folder, saved.world_size, saved.device_type, self.world,
                           self.device.type)
            seed, rank, seen = self.config.seed, self.rank, self.images_seen
            torch.manual_seed(derive_seed(seed, rank, "torch", seen))
            self.reals.reseed(derive_seed(seed, rank, "source", seen))
        self.accelerator.print(f"resumed from {folder} at kimg {self.images_seen / 1000:g}")

    def _write_grid(self) -> None:
        if self.is_main_process:
            folder = self.output_dir / SAMPLES_DIR
            with saving(f"a sample grid into {folder}", folder, self.resume_hint):
                write_sample_grid(self.G_ema, folder, self.images_seen, self.config.grid_seeds_per_class)

    def _stop(self, checkpoint: Path):
        signum = self.stop_signals.received
        self.accelerator.print(f"{signal.Signals(signum).name} received at kimg {self.images_seen / 1000:g}: "
                               f"checkpoint saved to {checkpoint}; {self.resume_hint}")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)


class GeneratorEMA:
    """G_ema follows G: parameters as an exponential moving average with a half-life in images (optionally
    ramped up with the images seen), buffers copied."""

    def __init__(self, G: Generator, G_ema: Generator, config: TrainingConfig):
        self.G, self.G_ema = G, G_ema
        self.half_life_images = config.ema_kimg * 1000
        self.rampup = effective_ema_rampup(config)
        self.batch_size = config.batch_size
        self.ema_params, self.g_params = list(G_ema.parameters()), list(G.parameters())
        self.ema_buffers, self.g_buffers = list(G_ema.buffers()), list(G.buffers())

    @torch.no_grad()
    def update(self, images_seen: int) -> None:
        half_life = self.half_life_images
        if self.rampup is not None:
            half_life = min(half_life, images_seen * self.rampup)
        beta = 0.5 ** (self.batch_size / half_life) if half_life > 0 else 0.0
        torch._foreach_lerp_(self.ema_params, self.g_params, 1.0 - beta)
        for ema_buffer, buffer in zip(self.ema_buffers, self.g_buffers, strict=True):
            ema_buffer.copy_(buffer)


class StopSignals:
    """SIGTERM and SIGINT stop a run after the current iteration (with a checkpoint); a second Ctrl-C at once."""

    def __init__(self):
        self.received: int | None = None
        self._previous_handlers = {}

    def catch(self) -> None:
        if threading.current_thread() is threading.main_thread():  # Python handles signals there only
            self._previous_handlers = {sig: signal.signal(sig, self._on_signal)
                                       for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def agreed(self, world: int, device: torch.device) -> bool:
        """Whether any rank received a signal: all of them stop after the same iteration."""
        self.received = self.received or max_over_processes(self.received or 0, world, device) or None
        return self.received is not None

    def _on_signal(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without waiting for the checkpoint
        self.received = signum


def _add_penalty(loss, reported: dict, name: str, penalty, network) -> torch.Tensor:
    """``loss + penalty(network)``, the penalty reported as ``name``; ``loss`` alone without a penalty."""
    if penalty is None:
        return loss
    reported[name] = penalty(network)
    return loss + reported[name]


def _one_hot(labels, c_dim):
    return F.one_hot(labels, c_dim).float() if c_dim > 0 else None


def _unfrozen(D, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """D's trainable parameters; the frozen ones get requires_grad=False and no optimizer state."""
    names = [name for name, _ in D.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise CocktailError(f"frozen_d_prefixes: {prefix!r} matches no discriminator parameter")
    trainable = []
    for name, p in D.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
        elif p.requires_grad:
            trainable.append(p)
    if not trainable:
        raise CocktailError("the discriminator has no trainable parameters left")
    return trainable


def _adam(params, lr: float, config: TrainingConfig, reg_interval: int | None) -> torch.optim.Adam:
    """Adam, with lr and betas corrected for the extra lazy-regularisation step every ``reg_interval``.

    ``foreach``: a few multi-tensor kernels per step instead of ~10 small ones per parameter (torch picks it
    on GPUs only); the same numbers. Not ``fused``: on a CPU it misreads a gradient whose strides differ from
    its parameter's (a channels-last weight, a gradient viewing the averaged flat buffer).
    """
    c = reg_interval / (reg_interval + 1) if reg_interval else 1.0
    betas = tuple(float(b) ** c for b in config.betas)
    return torch.optim.Adam(params, lr=lr * c, betas=betas, eps=config.eps, foreach=True)


def _float16_scaler(G: Generator, D: Discriminator, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler when float16 blocks (``num_fp16_res``) run on this device and Accelerate brought none
    (``mixed_precision="no"``): their small gradients would underflow unscaled, and an overflow would end
    the run instead of costing one step."""
    if G.runs_float16(device) or D.runs_float16(device):
        return torch.amp.GradScaler(device.type)
    return None


def _keep_freed_memory_for_reuse() -> None:
    """Make glibc keep freed activation buffers in the heap instead of handing them back to the OS.

    By default a freed multi-megabyte tensor goes back to the kernel (munmap, or a heap trim), so the
    next step's tensor of the same size page-faults in fresh memory: on CPU that costs a sixth or more
    of a training step (benchmarks/train_step.py, BENCHMARKS.md). The price is a process that keeps its
    peak memory after training. A no-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters from <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum: allocations up to 32 MiB use the heap
    libc.mallopt(m_trim_threshold, 1 << 30)  # and up to 1 GiB of free heap stays mapped


def _next_multiple(images_seen: int, every_kimg: float | None) -> float | None:
    if not every_kimg:
        return None
    every = every_kimg * 1000
    return (math.floor(images_seen / every + 1e-9) + 1) * every
