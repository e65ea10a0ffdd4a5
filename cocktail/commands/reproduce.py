"""The paper's comparison at a scale these machines run: union FID of GAN Cocktail against its baselines.

    python scripts/prepare_data.py fashion-mnist           # real images, for FID against real data
    python scripts/reproduce.py --quick                    # 2-core CPU, about an hour
    python scripts/reproduce.py --workers 12               # the full preset, on a GPU machine

Every cell is one merge (a set of the shipped Fashion-MNIST sources) × one method × one seed, trained on the
sources' generated images only, with the same total budget for every method: GAN Cocktail spends
``root_kimg`` on each rooting stage and ``merge_kimg`` on the merged model, every other method spends the
sum of those on its one stage. Each finished union is scored per class and on the union against the real
images (``--real_root``) and against its sources' own samples, all methods at the same N and the same
latent draws; the sources themselves are the reference row. Results go to ``<output_dir>/results.md`` and
``results.json``.

A killed run picks up where it stopped: finished cells are kept (``cells/<merge>/<method>/seed<k>/``), an
interrupted merge resumes its stage from the last checkpoint. With ``--workers K`` the cells are shared out
to K processes (on one GPU they run side by side; on a CPU, leave it at 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cocktail.comparison import mean_spread
from cocktail.errors import CocktailError, run_script
from cocktail.merge import MERGE_METHODS, run_merge

PRESETS = {
    "quick": dict(merges=[["trouser", "sneaker"], ["sneaker", "bag"], ["trouser", "sneaker", "bag"]],
                  seeds=[0], root_kimg=4.0, merge_kimg=8.0, num_samples=200, num_real=1000),
    "full": dict(merges=[["trouser", "sneaker"], ["sneaker", "bag"], ["bag", "dress"],
                         ["trouser", "sneaker", "bag"], ["trouser", "sneaker", "bag", "dress"]],
                 seeds=[0, 1], root_kimg=8.0, merge_kimg=16.0, num_samples=1000, num_real=7000),
}
EVAL_SEED = 0  # every union is scored on the same latents, so methods differ only by their weights


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the quick preset (default: full)")
    p.add_argument("--output_dir", help="default: outputs/reproduce-<preset>")
    p.add_argument("--real_root", default="data/fashion-mnist", help="one folder of real images per class name")
    p.add_argument("--methods", nargs="+", choices=list(MERGE_METHODS), default=list(MERGE_METHODS))
    p.add_argument("--seeds", nargs="+", type=int, help="override the preset's seeds")
    p.add_argument("--workers", type=int, default=1, help="processes training cells side by side")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # "i/K": this process runs every K-th cell from i
    return p.parse_args(argv)


def merge_name(classes: list[str]) -> str:
    return "+".join(classes)


def cells(preset: dict, methods: list[str]) -> list[tuple[list[str], str, int]]:
    return [(merge, method, seed) for seed in preset["seeds"] for merge in preset["merges"] for method in methods]


def budget(method: str, n: int, preset: dict) -> dict:
    """The recipe lengths of one method: the same total kimg for all, split into stages only by those that root."""
    total = preset["root_kimg"] * (n - 1) + preset["merge_kimg"]
    if MERGE_METHODS[method].parents == "rooted":
        return {"root_kimg": preset["root_kimg"], "merge_kimg": preset["merge_kimg"]}
    return {"root_kimg": 0.0, "merge_kimg": total}


def real_folders(real_root: Path, classes: list[str]) -> dict[str, Path]:
    folders = {c: real_root / c for c in classes}
    missing = [str(f) for f in folders.values() if not f.is_dir()]
    if missing:
        raise CocktailError(f"no real images in {', '.join(missing)}; run scripts/prepare_data.py fashion-mnist "
                            "(or point --real_root at one folder per class)")
    return folders


def run_cell(merge: list[str], method: str, seed: int, preset: dict, args, accelerator) -> dict:
    """Train one union (resuming a stopped one), score it, write result.json; returns the record."""
    from cocktail.metrics import evaluate_model
    from cocktail.recipe import build_plan, resolve_recipe

    folder = Path(args.output_dir) / "cells" / merge_name(merge) / method / f"seed{seed}"
    result_file = folder / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    started = time.time()
    recipe = resolve_recipe({"sources": [f"example:{c}" for c in merge], "method": method,
                             "training": {"seed": seed, "checkpointing_kimg": 4.0, "progress": False},
                             "output_dir": str(folder), **budget(method, len(merge), preset)})
    union = run_merge(build_plan(recipe), folder, accelerator=accelerator, log=lambda *a: None)
    trained = time.time() - started
    common = dict(num_samples=preset["num_samples"], seed=EVAL_SEED, device=accelerator.device, progress=False)
    real = evaluate_model(union, real_folders(Path(args.real_root), merge), num_real=preset["num_real"],
                          name=f"{method} {merge_name(merge)} seed {seed}", **common)
    sources = evaluate_model(union, "sources", name=f"{method} {merge_name(merge)} seed {seed}", **common)
    record = {"merge": merge, "method": method, "seed": seed, "kimg": union.provenance.get("kimg"),
              "train_seconds": round(trained, 1), "eval_seconds": round(time.time() - started - trained, 1),
              "device": str(accelerator.device), "real": real.as_dict(), "sources": sources.as_dict(),
              "weight_distances": union.provenance.get("weight_distances")}
    result_file.write_text(json.dumps(record, indent=2) + "\n")
    return record


def source_rows(preset: dict, args, device) -> dict:
    """The sources themselves against real data: per class, and pooled for every merge."""
    from cocktail.metrics import UNION, compare, features_for_source, union_features

    classes = sorted({c for merge in preset["merges"] for c in merge})
    folders = real_folders(Path(args.real_root), classes)
    real = {c: features_for_source(folders[c], preset["num_real"], seed=EVAL_SEED + 1, resolution=32, device=device,
                                   description=f"{c}: real") for c in classes}
    generated = {c: features_for_source(f"example:{c}", preset["num_samples"], seed=EVAL_SEED, resolution=32,
                                        device=device, description=f"{c}: source") for c in classes}
    rows = {c: compare(generated[c], real[c], device=device).__dict__ for c in classes}
    for merge in preset["merges"]:
        pooled = union_features({c: generated[c] for c in merge}, {c: real[c] for c in merge})
        rows[f"{merge_name(merge)} {UNION}"] = compare(*pooled, device=device).__dict__
    return rows


def work(args, preset: dict) -> None:
    """Run this process's share of the cells."""
    from accelerate import Accelerator

    index, count = (int(x) for x in args.worker.split("/")) if args.worker else (0, 1)
    accelerator = Accelerator(cpu=args.device == "cpu")
    todo = cells(preset, args.methods)[index::count]
    for number, (merge, method, seed) in enumerate(todo, 1):
        record = run_cell(merge, method, seed, preset, args, accelerator)
        union_fid = record["real"]["scores"].get("union", {}).get("fid")
        print(f"[worker {index}] {number}/{len(todo)} {merge_name(merge)} {method} seed {seed}: union FID vs real "
              f"{union_fid:.2f} (train {record['train_seconds']:.0f} s, eval {record['eval_seconds']:.0f} s)",
              flush=True)


def spawn_workers(args, argv: list[str]) -> None:
    """``--workers K``: K copies of this script, each on every K-th cell; fails if any of them fails."""
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    worker = [sys.executable, "-m", "cocktail.commands.reproduce", *argv]
    processes = [subprocess.Popen([*worker, "--worker", f"{i}/{args.workers}"], env=env)
                 for i in range(args.workers)]
    failed = [i for i, process in enumerate(processes) if process.wait() != 0]
    if failed:
        raise CocktailError(f"worker(s) {failed} failed; run the same command again to resume")


def collect(args, preset: dict) -> list[dict]:
    records = []
    for merge, method, seed in cells(preset, args.methods):
        path = Path(args.output_dir) / "cells" / merge_name(merge) / method / f"seed{seed}" / "result.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
    return records


def table(records: list[dict], preset: dict, methods: list[str], reference: str, scope: str, metric: str,
          sources: dict | None = None, scale: float = 1.0) -> str:
    """Rows: merges (or merge/class); columns: the sources (when given) and the methods; mean ± sd over seeds."""
    head = (["sources"] if sources else []) + [MERGE_METHODS[m].title for m in methods]
    lines = ["| merge | " + " | ".join(head) + " |", "|" + " --- |" * (len(head) + 1)]
    for merge in preset["merges"]:
        scopes = ["union"] if scope == "union" else merge
        for s in scopes:
            label = merge_name(merge) + ("" if scope == "union" else f" / {s}")
            row = []
            if sources:
                key = f"{merge_name(merge)} union" if s == "union" else s
                row.append(f"{sources[key][metric] * scale:.2f}")
            for method in methods:
                values = [r[reference]["scores"][s][metric] * scale for r in records
                          if r["merge"] == merge and r["method"] == method and s in r[reference]["scores"]]
                row.append(mean_spread(values, count=False))
            lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def distance_summary(records: list[dict]) -> str:
    lines = ["| merge | method | seed | weight distances (from union.json) |", "| --- | --- | --- | --- |"]
    for r in records:
        if r.get("weight_distances"):
            summary = json.dumps(r["weight_distances"], sort_keys=True)
            lines.append(f"| {merge_name(r['merge'])} | {r['method']} | {r['seed']} | `{summary}` |")
    return "\n".join(lines)


def report(args, preset: dict, sources: dict, records: list[dict], wall: float, name: str) -> str:
    n_real = preset["num_real"]
    devices = sorted({r["device"] for r in records})
    lines = [
        f"# Reproduction ({name} preset)", "",
        f"{len(records)} of {len(cells(preset, args.methods))} cells; seeds {preset['seeds']}; budget per merge of n "
        f"sources: {preset['root_kimg']:g}·(n−1) + {preset['merge_kimg']:g} kimg for every method; "
        f"N = {preset['num_samples']} generated images per class against {n_real} real per class (union: "
        f"classes pooled); Inception features of the StyleGAN/TF network; devices {devices}; wall-clock of "
        f"this invocation {wall / 60:.1f} min (train and eval seconds per cell are in results.json).", "",
        "## Union FID against real images (lower is better; mean ± sd over seeds)", "",
        table(records, preset, args.methods, "real", "union", "fid", sources), "",
        "## Union KID ×10³ against real images", "",
        table(records, preset, args.methods, "real", "union", "kid", sources, scale=1e3), "",
        "## Union FID against the sources' own samples", "",
        table(records, preset, args.methods, "sources", "union", "fid"), "",
        "## Per-class FID against real images", "",
        table(records, preset, args.methods, "real", "class", "fid", sources), "",
        "## Per-class FID against the class's source samples", "",
        table(records, preset, args.methods, "sources", "class", "fid"), "",
        "## Per-class recall against real images (the share of real images the union covers)", "",
        table(records, preset, args.methods, "real", "class", "recall", sources), "",
        "## Weight distances", "", distance_summary(records), "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    name = "quick" if args.quick else "full"
    preset = dict(PRESETS[name])
    if args.seeds:
        preset["seeds"] = args.seeds
    args.output_dir = args.output_dir or f"outputs/reproduce-{name}"
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        work(args, preset)
        return 0
    started = time.time()
    real_folders(Path(args.real_root), sorted({c for merge in preset["merges"] for c in merge}))
    # Reference features first, in this process: the workers then read them from the cache.
    sources = source_rows(preset, args, args.device)
    if args.workers > 1:
        spawn_workers(args, argv)
    else:
        work(args, preset)
    records = collect(args, preset)
    text = report(args, preset, sources, records, time.time() - started, name)
    out = Path(args.output_dir)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"preset": preset, "sources": sources, "cells": records},
                                                 indent=2) + "\n")
    print(text)
    print(f"written: {out / 'results.md'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    run_script(main)
