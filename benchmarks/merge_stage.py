"""Throughput (images per second) of the default merge's stages, as a user runs them.

    python benchmarks/merge_stage.py                         # rooting and merging, 3 timed runs each
    python benchmarks/merge_stage.py merging --repeats 5 --threads 2
    python benchmarks/merge_stage.py merging --profile       # where one run's time goes, per function

The stages are built from the shipped example models as ``scripts/merge.py`` builds them with no arguments:
*rooting* fine-tunes a copy of the root (trouser) on samples of another source (sneaker); *merging* trains a
three-class conditional start on a labelled mixture of all three sources (the same networks and data as the
real stage; see ``stage_inputs`` for its weights). Both use the
merge recipe (the paper's, batch 32, lazy R1 and path length, EMA ramp-up). A measurement is a real ``train()``
call after a warm-up call, timed over whole lazy-regularisation cycles (multiples of 16 iterations), so R1
and path length are amortised as in training; the source sampling is part of what is timed (and a cycle is
two whole chunks of the reals that the loop draws 8 iterations ahead).

Only public API is used, so the same file measures an older checkout (copy it there and run it from that
checkout) for before/after tables.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import os
import platform
import pstats
import statistics
import tempfile
import time

import torch

from cocktail.assets import example_path
from cocktail.merge.surgery import average_networks, make_conditional
from cocktail.sources import MixtureSource, ModelSource
from cocktail.training import TrainingConfig, train
from cocktail.union import UnionModel

SOURCES = ("trouser", "sneaker", "bag")  # the default merge; the first is the root
STAGES = ("rooting", "merging")
BATCH = 32
CYCLE = 16  # iterations per lazy-regularisation cycle (one R1 step, four path-length steps)


def stage_inputs(stage: str, device):
    """(G, D, source) with the architectures, classes and sources of the default merge's rooting or merging
    stage. The merging start averages the root with itself: what the rooted weights are does not change
    the cost of a step."""
    models = [UnionModel.from_pretrained(example_path(f"example:{name}")) for name in SOURCES]
    root = models[0]
    if stage == "rooting":
        source = ModelSource(models[1].generator, label=0, num_classes=1).to(device)
        return copy.deepcopy(root.generator), copy.deepcopy(root.discriminator), source
    G = average_networks([root.generator] * len(models))
    D = average_networks([root.discriminator] * len(models))
    G, D = make_conditional(G, D, len(models), seed=0)
    mixture = MixtureSource([ModelSource(m.generator, label=i, num_classes=len(models))
                             for i, m in enumerate(models)]).to(device)
    return G, D, mixture


def measure(stage: str, device, iterations: int, repeats: int, profile: bool = False) -> dict:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=device.type == "cpu")  # the device this benchmark reports, even with a GPU
    torch.manual_seed(0)
    G, D, source = stage_inputs(stage, device)
    with tempfile.TemporaryDirectory() as scratch:
        def run(steps):
            config = TrainingConfig(batch_size=BATCH, kimg=steps * BATCH / 1000, output_dir=scratch, progress=False,
                                    ema_rampup="auto", seed=0)
            started = time.perf_counter()
            result = train(copy.deepcopy(G), copy.deepcopy(D), source, config, accelerator=accelerator,
                           class_names=list(SOURCES) if stage == "merging" else None)
            return result.images_seen / (time.perf_counter() - started)

        run(2)  # warm-up: allocator, lazy init, first calls
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            speed = run(iterations)
            profiler.disable()
            return {"stage": stage, "img_per_s": speed, "all": [speed], "profile": profiler}
        speeds = [run(iterations) for _ in range(repeats)]
    return {"stage": stage, "img_per_s": statistics.median(speeds), "all": speeds}


def print_profile(profiler: cProfile.Profile, limit: int = 30) -> None:
    """Cumulative seconds of this project's functions (and torch's big calls), largest first."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(r"cocktail|autograd|optim", limit)
    print(out.getvalue())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stages", nargs="*", default=list(STAGES), help=f"any of {', '.join(STAGES)}")
    p.add_argument("--cycles", type=int, default=2, help=f"timed lazy-regularisation cycles ({CYCLE} iterations)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per stage; the median is reported")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--profile", action="store_true", help="one timed run under cProfile; print where time goes")
    args = p.parse_args(argv)
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"
    print(f"# torch {torch.__version__} on {device} ({hardware}), {torch.get_num_threads()} threads, batch {BATCH}")
    print(f"{'stage':<8} {'iters':>5} {'img/s':>8}   runs")
    for stage in args.stages:
        row = measure(stage, device, args.cycles * CYCLE, args.repeats, profile=args.profile)
        runs = " ".join(f"{s:.1f}" for s in row["all"])
        print(f"{stage:<8} {args.cycles * CYCLE:>5} {row['img_per_s']:>8.1f}   {runs}", flush=True)
        if args.profile:
            print_profile(row["profile"])


if __name__ == "__main__":
    main()
