"""The training flags that scripts/merge.py and scripts/train_source.py share, and how they map to TrainingConfig."""

from __future__ import annotations

import argparse
import os

import torch


def ema_rampup(text: str) -> float | str:
    """``--ema_rampup``: "auto", "none" (kept as text until training_settings, since None means "not given")
    or a fraction of the images seen."""
    if text in ("auto", "none"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not auto, none or a number") from None


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return value


# flag: (type, help); each is a TrainingConfig field, except learning_rate (g_lr and d_lr).
TRAINING_FLAGS = {
    "batch_size": (int, "global batch over all processes"),
    "learning_rate": (float, "Adam learning rate of G and D"),
    "r1_gamma": (float, None),
    "pl_weight": (float, None),
    "style_mixing_prob": (float, None),
    "ema_kimg": (float, "G EMA half-life in kimg"),
    "ema_rampup": (ema_rampup, "cap the EMA half-life at this fraction of the images seen so far; 'auto': 0.05 "
                               "for runs shorter than ema_kimg / 0.05 (where it still matters), else none"),
    "seed": (int, None),
    "checkpointing_kimg": (float, "save a checkpoint every N kimg"),
    "checkpoints_total_limit": (int, None),
    "sample_every_kimg": (float, "write a sample grid every N kimg"),
    "resume_from_checkpoint": (str, "'latest' or a checkpoint folder"),
}


def add_training_flags(parser: argparse.ArgumentParser, help_overrides: dict | None = None,
                       shown_defaults: dict | None = None, **defaults) -> None:
    """``--batch_size`` … ``--resume_from_checkpoint``, plus ``--mixed_precision`` and ``--report_to``.

    ``defaults`` become argparse defaults; ``shown_defaults`` are only named in the help (where a recipe
    layer below the flags supplies the value).
    """
    shown = {**(shown_defaults or {}), **defaults}
    for flag, (kind, text) in TRAINING_FLAGS.items():
        text = (help_overrides or {}).get(flag, text)
        if shown.get(flag) is not None:
            text = f"{text + ' ' if text else ''}(default: {shown[flag]})"
        parser.add_argument(f"--{flag}", type=kind, default=defaults.get(flag), help=text)
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"])
    parser.add_argument("--report_to", help="e.g. tensorboard")
    parser.add_argument("--cpu_threads", type=at_least_one,
                        help="torch threads per process when training on CPUs (default: the cores this process may "
                             "use, shared among the processes on this machine; `accelerate launch` alone gives 1)")


def training_settings(args: argparse.Namespace) -> dict:
    """The TrainingConfig fields the training flags set (those left unset are left out)."""
    settings = {flag: getattr(args, flag) for flag in TRAINING_FLAGS if flag != "learning_rate"}
    settings.update(g_lr=args.learning_rate, d_lr=args.learning_rate)
    settings = {key: value for key, value in settings.items() if value is not None}
    if settings.get("ema_rampup") == "none":
        settings["ema_rampup"] = None
    return settings


def use_cpu_threads(requested: int | None, device: torch.device, num_processes: int) -> int | None:
    """Give each CPU process its share of the cores; returns the thread count set (None off the CPU).

    ``accelerate launch`` exports OMP_NUM_THREADS=1 unless told otherwise, so a plain
    ``accelerate launch scripts/merge.py`` on a CPU would use one core of many.
    """
    if device.type != "cpu":
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", num_processes))
    threads = requested or max(cores // max(local_processes, 1), 1)
    torch.set_num_threads(threads)
    return threads
