"""The training flags that scripts/merge.py and scripts/train_source.py share, and how they map to TrainingConfig."""

from __future__ import annotations

import argparse
import os

import torch

from .settings import add_flags, flag_values, help_of
from .training import TrainingConfig


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return value


def add_training_flags(parser: argparse.ArgumentParser, shown: TrainingConfig,
                       help_overrides: dict | None = None) -> None:
    """A flag for each flag setting of TrainingConfig, plus ``--mixed_precision``, ``--report_to`` and
    ``--cpu_threads``; ``shown``: the settings a run gets where no flag is given, named in the help."""
    add_flags(parser, shown, help_overrides)
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"],
                        help="train in half precision on GPUs that support it (default: accelerate's configuration, "
                             "else no)")
    parser.add_argument("--report_to", help=help_of(TrainingConfig, "report_to"))
    parser.add_argument("--cpu_threads", type=at_least_one,
                        help="torch threads per process when training on CPUs (default: the cores this process may "
                             "use, shared among the processes on this machine; `accelerate launch` alone gives 1)")


def training_settings(args: argparse.Namespace) -> dict:
    """The TrainingConfig fields the training flags set (those not given are left out)."""
    return flag_values(args, TrainingConfig)


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
