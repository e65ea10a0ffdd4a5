"""Checkpoint folders: written whole or not at all, verified, found, pruned and read back, RNG states included.

``output_dir/checkpoints/checkpoint-<images seen, 10 digits>/`` holds ``G``, ``G_ema`` and ``D`` (safetensors),
``optimizers.pt`` (G's and D's Adam, the loss scaler), ``rng.safetensors`` (pl_mean, the shared generator and
each rank's torch / source / device RNG states) and ``state.json`` (progress, each rank's numpy and python RNG
states and how far into its chunk of reals it was, the config, and the size and SHA-256 of every other file).
It is written into a hidden temporary folder that is renamed into place, ``state.json`` last, so a killed
save leaves a complete checkpoint or none; one damaged later (a truncated or altered file) is told apart
from an intact one before anything is loaded from it.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CocktailError, first_line
from ..files import AGAIN, damage, remove_folder, saving, staged_folder, write_record

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
STATE_FILE = "state.json"  # written last: a checkpoint folder without it is not a checkpoint
NETWORKS = ("G", "G_ema", "D")
RNG_TENSORS = ("torch", "source", "device")  # in rng.safetensors
RNG_JSON = ("numpy", "python", "reals_used")  # in state.json


@dataclass
class Checkpoint:
    """Everything a checkpoint holds besides the networks' weights."""

    images_seen: int
    step: int
    world_size: int
    device_type: str
    optimizers: dict  # state dicts: "G", "D", "scaler" (None without one)
    pl_mean: torch.Tensor
    shared_generator: torch.Tensor  # the state of the generator all ranks share
    rng_states: list[dict]  # one per rank, as process_rng_state() gives them
    description: str  # what the run was called (its progress bar's and trackers' name)
    config: dict  # TrainingConfig.to_json()


def checkpoint_folder(output_dir: str | Path, images_seen: int) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR / f"checkpoint-{images_seen:010d}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the most images seen under ``output_dir/checkpoints``, if any (unverified)."""
    found = complete_checkpoints(output_dir)
    return found[-1] if found else None


def checked_checkpoint(spec: str | Path) -> Path:
    """An explicit checkpoint path, verified: one that is not a checkpoint, or is damaged, is a one-line error
    naming what is wrong, given before any work starts."""
    path = Path(spec)
    if not (path / STATE_FILE).is_file():
        raise CocktailError(f"{path}: not a training checkpoint (no {STATE_FILE})")
    problem = damage(path / STATE_FILE)
    if problem is not None:
        raise CocktailError(f"{path}: damaged checkpoint ({problem}); resume from an intact one, or 'latest'")
    return path


def save_checkpoint(folder: Path, networks: dict[str, torch.nn.Module], checkpoint: Checkpoint,
                    then: str = AGAIN) -> None:
    """Write ``networks`` (G, G_ema, D) and ``checkpoint`` into a temporary folder, then rename it to ``folder``;
    a failed write (a full disk) is a one-line error ending in ``then``, and leaves nothing behind."""
    with saving(f"the checkpoint {folder}", folder.parent, then), staged_folder(folder) as staged:
        for name in NETWORKS:
            save_file({k: v.contiguous() for k, v in networks[name].state_dict().items()},
                      str(staged / f"{name}.safetensors"))
        # Serialised in memory first: torch reports a failed file write as an opaque RuntimeError.
        buffer = io.BytesIO()
        torch.save(checkpoint.optimizers, buffer)
        (staged / "optimizers.pt").write_bytes(buffer.getbuffer())
        tensors = {"pl_mean": checkpoint.pl_mean.detach().cpu().reshape(1),
                   "shared_generator": checkpoint.shared_generator}
        for rank, state in enumerate(checkpoint.rng_states):
            for key in RNG_TENSORS:
                if key in state:
                    tensors[f"rank{rank}.{key}"] = state[key].cpu()
        save_file(tensors, str(staged / "rng.safetensors"))
        progress = {"images_seen": checkpoint.images_seen, "kimg": checkpoint.images_seen / 1000,
                    "step": checkpoint.step, "world_size": checkpoint.world_size,
                    "device_type": checkpoint.device_type, "description": checkpoint.description,
                    "rng": [{key: s[key] for key in RNG_JSON if key in s} for s in checkpoint.rng_states],
                    "config": checkpoint.config}
        write_record(staged / STATE_FILE, progress, [p for p in staged.iterdir() if p.name != STATE_FILE])


def read_checkpoint(folder: Path, device: torch.device) -> tuple[dict[str, dict[str, torch.Tensor]], Checkpoint]:
    """Verify ``folder`` against its state record, then read all of it: the networks' weights (by name) and the
    rest. Nothing is loaded into a network here, so a damaged checkpoint (a one-line error) changes nothing."""
    problem = damage(folder / STATE_FILE)
    if problem is not None:
        raise CocktailError(f"{folder}: damaged checkpoint ({problem})")
    try:
        progress = json.loads((folder / STATE_FILE).read_text())
        weights = {name: load_file(folder / f"{name}.safetensors", device=str(device)) for name in NETWORKS}
        optimizers = torch.load(folder / "optimizers.pt", map_location=device, weights_only=True)
        tensors = load_file(folder / "rng.safetensors")
        rng_states = []
        for rank, json_states in enumerate(progress["rng"]):
            saved = {key: tensors[f"rank{rank}.{key}"] for key in RNG_TENSORS if f"rank{rank}.{key}" in tensors}
            rng_states.append({**saved, **json_states})
        return weights, Checkpoint(images_seen=int(progress["images_seen"]), step=int(progress["step"]),
                                   world_size=progress["world_size"], device_type=progress["device_type"],
                                   optimizers=optimizers, pl_mean=tensors["pl_mean"],
                                   shared_generator=tensors["shared_generator"], rng_states=rng_states,
                                   description=progress["description"], config=progress["config"])
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:
        raise CocktailError(f"{folder}: cannot resume from this checkpoint ({first_line(err)})") from None


def newest_readable_checkpoint(output_dir: str | Path, device: torch.device, main: bool):
    """``(folder, weights, checkpoint)`` of the newest checkpoint under ``output_dir`` that is intact, or None.

    Each damaged newer one is skipped with a one-line warning and (by the main process) removed: the run
    writes it again when it gets there, and pruning must not keep it in place of an intact one.
    """
    for folder in reversed(complete_checkpoints(output_dir)):
        try:
            return folder, *read_checkpoint(folder, device)
        except CocktailError as err:
            if main:
                logger.warning("%s; skipped and removed", err)
                remove_folder(folder)
    return None


def prune_checkpoints(output_dir: str | Path, limit: int | None) -> None:
    """Delete all but the ``limit`` latest complete checkpoints under ``output_dir`` (keep all for None)."""
    if limit is None:
        return
    for old in complete_checkpoints(output_dir)[:-limit]:
        remove_folder(old)


def process_rng_state(source_state: torch.Tensor, reals_used: int, device: torch.device) -> dict:
    """This process's own RNG states: torch's (and the device's), numpy's, python's, and where its reals
    are (``RealsAhead.position()``: the source generator's state at the chunk's start, batches used)."""
    state = {
        "torch": torch.get_rng_state(),
        "source": source_state,
        "reals_used": reals_used,
        "numpy": _numpy_state_to_json(np.random.get_state()),
        "python": _python_state_to_json(random.getstate()),
    }
    if device.type != "cpu":
        state["device"] = torch.get_device_module(device.type).get_rng_state(device)
    return state


def restore_process_rng_state(state: dict, device: torch.device) -> None:
    """Restore the RNGs of ``process_rng_state`` but the reals' position, which is ``RealsAhead.restore``'s."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_state_from_json(state["numpy"]))
    random.setstate(_python_state_from_json(state["python"]))
    if "device" in state and device.type != "cpu":
        torch.get_device_module(device.type).set_rng_state(state["device"], device)


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint folders with their state file under ``output_dir/checkpoints``, fewest images seen first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := CHECKPOINT_NAME.fullmatch(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def _numpy_state_to_json(state) -> dict:
    kind, keys, pos, has_gauss, cached = state
    return {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}


def _numpy_state_from_json(state: dict):
    return (state["kind"], np.array(state["keys"], dtype=np.uint32), state["pos"], state["has_gauss"],
            state["cached_gaussian"])


def _python_state_to_json(state) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def _python_state_from_json(state: list):
    version, internal, gauss_next = state
    return version, tuple(internal), gauss_next
