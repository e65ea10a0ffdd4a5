"""The budget curve on a GPU machine in one short call: train comparison cells in parallel, score them later.

    python benchmarks/budget_gpu.py --wall_seconds 420 --pack_dir packed          # on the GPU machine
    python benchmarks/budget_gpu.py --unpack packed                               # here: the cells back in place
    python scripts/compare.py example:trouser example:sneaker --variants transfer cocktail \\
        --budgets <as printed> --seeds 0 1 2 --real trouser=… --real sneaker=… --output_dir outputs/compare-gpu

A GPU machine may lack the Inception file the scores need, and the tiny preset leaves a GPU mostly idle in one
process; so every (variant, seed, budget) cell is its own ``scripts/compare.py --train_only`` process, all at
once, and only each cell's union folder and trained.json travel back (in tar parts of at most 15 MB) to be
scored where the Inception file is. The budgets are chosen to fit the wall clock: a short two-length run
measures one process's training rate first, and the largest budget of the ladder that a process slowed by the others
(assumed to run at --parallel_speed of it) finishes in time is taken, with half of it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LADDER = (96, 192, 384, 768, 1536, 3072)
PART_BYTES = 15 * 2**20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", nargs="+", default=["example:trouser", "example:sneaker"])
    p.add_argument("--variants", nargs="+", default=["transfer", "cocktail"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--wall_seconds", type=float, default=420, help="for the parallel training, rate probe excluded")
    p.add_argument("--ladder", nargs="+", type=float, default=list(LADDER), help="budgets (kimg) to choose from")
    p.add_argument("--parallel_speed", type=float, default=0.5,
                   help="one process's rate among all the others, as a share of its rate alone")
    p.add_argument("--output_dir", default="outputs/compare-gpu")
    p.add_argument("--pack_dir", help="write the trained cells here as tar parts")
    p.add_argument("--unpack", help="put the cells of these tar parts back under --output_dir and stop")
    return p.parse_args(argv)


def compare(args, output_dir: Path, variant: str, seed: int, budget: float, real_dir: Path) -> list[str]:
    real = [f"--real={Path(s.removeprefix('example:')).name}={real_dir}" for s in args.sources]
    return [sys.executable, str(ROOT / "scripts" / "compare.py"), *args.sources, *real, "--variants", variant,
            "--seeds", str(seed), "--budgets", f"{budget:g}", "--train_only", "--output_dir", str(output_dir)]


def probe_rate(args, real_dir: Path) -> float:
    """Images per second of one process alone, from the training time each cell records (start-up, imports
    and CUDA's initialisation left out): the difference of two lengths, so what is left of it cancels too."""
    seconds = {}
    with tempfile.TemporaryDirectory() as scratch:
        for kimg in (1.0, 4.0):
            output_dir = Path(scratch) / f"{kimg:g}"
            subprocess.run(compare(args, output_dir, "transfer", 99, kimg, real_dir), check=True)
            trained = output_dir / "cells" / f"{kimg:g}kimg" / "transfer" / "seed99" / "trained.json"
            seconds[kimg] = json.loads(trained.read_text())["train_seconds"]
    rate = 3000 / max(seconds[4.0] - seconds[1.0], 0.1)
    print(f"probe: 1 kimg in {seconds[1.0]:.1f} s, 4 kimg in {seconds[4.0]:.1f} s of training: {rate:.0f} img/s "
          "alone", flush=True)
    return rate


def choose_budgets(args, rate: float) -> list[float]:
    affordable = [b for b in args.ladder if b * 1000 / (rate * args.parallel_speed) <= args.wall_seconds]
    top = max(affordable) if affordable else min(args.ladder)
    return sorted({top / 2, top} if top / 2 >= min(args.ladder) else {top})


def train_in_parallel(args, budgets: list[float], real_dir: Path) -> dict:
    output_dir = Path(args.output_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    running = {}
    for budget in budgets:
        for variant in args.variants:
            for seed in args.seeds:
                log = (output_dir / "logs" / f"{budget:g}-{variant}-{seed}.log")
                log.parent.mkdir(parents=True, exist_ok=True)
                running[(budget, variant, seed)] = subprocess.Popen(
                    compare(args, output_dir, variant, seed, budget, real_dir), stdout=log.open("w"),
                    stderr=subprocess.STDOUT, env=env)
    deadline, status = time.time() + args.wall_seconds, {}
    while running and time.time() < deadline:
        for cell, process in list(running.items()):
            if process.poll() is not None:
                status[cell] = "done" if process.returncode == 0 else f"failed ({process.returncode})"
                print(f"{cell}: {status[cell]} at {args.wall_seconds - (deadline - time.time()):.0f} s", flush=True)
                del running[cell]
        time.sleep(2)
    for cell, process in running.items():
        process.kill()
        status[cell] = "stopped at the wall clock"
        print(f"{cell}: {status[cell]}", flush=True)
    return status


def pack(output_dir: Path, pack_dir: Path) -> None:
    """Each finished cell's union folder and trained.json, the logs and the run's summary, as tar parts of at
    most PART_BYTES."""
    pack_dir.mkdir(parents=True, exist_ok=True)
    archive = Path(tempfile.mkdtemp()) / "cells.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(output_dir / "logs", arcname="logs")
        tar.add(output_dir / "gpu_run.json", arcname="gpu_run.json")
        for trained in sorted(output_dir.glob("cells/*/*/*/trained.json")):
            tar.add(trained, arcname=str(trained.relative_to(output_dir)))
            tar.add(trained.parent / "union", arcname=str(trained.parent.relative_to(output_dir) / "union"))
    data = archive.read_bytes()
    for number, start in enumerate(range(0, len(data), PART_BYTES)):
        (pack_dir / f"cells.tar.part{number}").write_bytes(data[start : start + PART_BYTES])
    print(f"packed {len(data) / 2**20:.1f} MiB into {pack_dir}", flush=True)


def unpack(pack_dir: Path, output_dir: Path) -> None:
    parts = sorted(pack_dir.glob("cells.tar.part*"), key=lambda p: int(p.name.removeprefix("cells.tar.part")))
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "cells.tar"
        archive.write_bytes(b"".join(p.read_bytes() for p in parts))
        with tarfile.open(archive) as tar:
            tar.extractall(output_dir, filter="data")
    print(f"{len(list(output_dir.glob('cells/*/*/*/trained.json')))} cells under {output_dir}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.unpack:
        unpack(Path(args.unpack), Path(args.output_dir))
        return 0
    with tempfile.TemporaryDirectory() as real_dir:  # --train_only checks the folders exist, never reads them
        rate = probe_rate(args, Path(real_dir))
        budgets = choose_budgets(args, rate)
        print(f"budgets {budgets} kimg, {len(budgets) * len(args.variants) * len(args.seeds)} processes", flush=True)
        started = time.time()
        status = train_in_parallel(args, budgets, Path(real_dir))
    summary = {"rate_alone": rate, "budgets": budgets, "seconds": round(time.time() - started, 1),
               "cells": {f"{b:g}/{v}/{s}": state for (b, v, s), state in status.items()}}
    print(json.dumps(summary, indent=2), flush=True)
    Path(args.output_dir, "gpu_run.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.pack_dir:
        pack(Path(args.output_dir), Path(args.pack_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
