"""What growing a union costs: ``scripts/merge.py --extend UNION NEW`` against a fresh merge of every source
at the same total budget, per class, FID against real images.

    python scripts/prepare_data.py fashion-mnist          # data/fashion-mnist/{trouser,sneaker,bag,dress}
    python benchmarks/extend.py --union example:union --new example:dress --extend_kimg 16 --seeds 0 1 2

Cells, each kept under --output_dir with its result.json (a stopped run goes on at the next cell):
``before`` (the union as it is), ``extend/seed<s>`` (the union grown by the new source in --extend_kimg) and
``fresh/seed<s>`` (the union's own sources, named in its provenance, and the new one merged from scratch by
the same method in the union's kimg + --extend_kimg). Every model is scored on the same latents (seed 0) with
N generated images per class against --num_real real ones. Writes results.md and results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from cocktail.comparison import EVAL_SEED, parse_variant, stage_lengths
from cocktail.merge import load_ingredient, run_merge
from cocktail.metrics import evaluate_model
from cocktail.recipe import build_plan, resolve_recipe
from cocktail.union import UnionModel

CLASSES = ("trouser", "sneaker", "bag", "dress")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--union", default="example:union")
    p.add_argument("--new", default="example:dress", help="the source to add")
    p.add_argument("--method", default="transfer", help="merge method of both the extension and the fresh merge")
    p.add_argument("--extend_kimg", type=float, default=16.0, help="budget of the extension (the fresh merge "
                                                                   "spends the union's kimg plus this)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--real", action="append", metavar="CLASS=FOLDER",
                   help="real images per class (default: data/fashion-mnist/<class> for the four shipped classes)")
    p.add_argument("--num_samples", type=int, default=200)
    p.add_argument("--num_real", type=int, default=1000)
    p.add_argument("--output_dir", default="outputs/extend")
    return p.parse_args(argv)


def lengths(method: str, num_sources: int, total: float) -> dict:
    """root_kimg and merge_kimg for a total budget, split as scripts/compare.py splits it (1/3 rooting)."""
    return stage_lengths(parse_variant(method), num_sources, total, root_share=1 / 3, protocol="total")


def score(model: UnionModel, real: dict[str, str], args) -> dict:
    evaluation = evaluate_model(model, {c: real[c] for c in model.class_names}, num_samples=args.num_samples,
                                num_real=args.num_real, seed=EVAL_SEED, progress=False)
    return {scope: round(s.fid, 2) for scope, s in evaluation.scores.items()}


def cell(folder: Path, run) -> dict:
    result = folder / "result.json"
    if result.is_file():
        return json.loads(result.read_text())
    started = time.time()
    record = run()
    record["seconds"] = round(time.time() - started, 1)
    folder.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{folder.relative_to(folder.parents[1]) if len(folder.parents) > 1 else folder}: {record['fid']} "
          f"({record['seconds']:.0f} s)", flush=True)
    return record


def main(argv=None) -> int:
    args = parse_args(argv)
    output = Path(args.output_dir)
    real = dict(item.split("=", 1) for item in args.real) if args.real else {
        c: f"data/fashion-mnist/{c}" for c in CLASSES}
    union = UnionModel.from_pretrained(args.union)
    base_kimg = sum((union.provenance.get("kimg") or {}).values())
    old_specs = [s["spec"] for s in union.provenance["sources"]]
    training = {"progress": False}

    records = {"before": cell(output / "before", lambda: {"fid": score(union, real, args), "kimg": base_kimg})}
    for seed in args.seeds:
        def extended(seed=seed):
            recipe = resolve_recipe({"extend": args.union, "sources": [args.new], "method": args.method,
                                     **lengths(args.method, 2, args.extend_kimg),
                                     "training": {**training, "seed": seed}})
            model = run_merge(build_plan(recipe), output / "extend" / f"seed{seed}", log=lambda *_: None)
            return {"fid": score(model, real, args), "kimg": model.provenance["kimg"]}

        def fresh(seed=seed):
            sources = [*old_specs, args.new]
            recipe = resolve_recipe({"sources": sources, "method": args.method,
                                     **lengths(args.method, len(sources), base_kimg + args.extend_kimg),
                                     "training": {**training, "seed": seed}})
            model = run_merge(build_plan(recipe), output / "fresh" / f"seed{seed}", log=lambda *_: None)
            return {"fid": score(model, real, args), "kimg": model.provenance["kimg"]}

        records[f"extend/seed{seed}"] = cell(output / "extend" / f"seed{seed}", extended)
        records[f"fresh/seed{seed}"] = cell(output / "fresh" / f"seed{seed}", fresh)

    def column(kind: str, scope: str) -> str:
        values = [r["fid"][scope] for key, r in records.items() if key.startswith(kind) and scope in r["fid"]]
        if not values:
            return "–"
        return f"{values[0]:.2f}" if len(values) == 1 else \
            f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

    scopes = [*union.class_names, load_ingredient(args.new).name, "union"]
    lines = [f"Union {args.union} ({base_kimg:g} kimg) grown by {args.new} with `{args.method}` in "
             f"{args.extend_kimg:g} kimg, vs a fresh merge of all sources in {base_kimg + args.extend_kimg:g} kimg; "
             f"FID vs real (N = {args.num_samples} per class, {args.num_real} real), mean ± sd over seeds "
             f"{', '.join(map(str, args.seeds))}. {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} threads.", "",
             "| class | before | extended | fresh merge |", "| --- | --- | --- | --- |"]
    lines += [f"| {scope} | {column('before', scope)} | {column('extend', scope)} | {column('fresh', scope)} |"
              for scope in scopes]
    lines += ["", "Seconds per cell (training and scoring): " + ", ".join(
        f"{key} {r['seconds']:.0f}" for key, r in records.items())]
    (output / "results.md").write_text("\n".join(lines) + "\n")
    (output / "results.json").write_text(json.dumps(records, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
