"""README's and RESULTS.md's figures that no script of their own draws.

    python docs/figures.py examples                 # docs/examples.png: the example sources beside the union
    python docs/figures.py budget                   # docs/budget.png: union FID vs kimg, from docs/budget.json

``examples``: each source's samples (left) beside the union's classes (right), with the same seeds in every row.
``budget``: the measured points of docs/budget.json (mean and sd over the seeds each point lists, as RESULTS.md
gives them), one line per method (dashed: the series docs/budget.json lists as such) and one panel per merge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cocktail.comparison import draw_fid_curves
from cocktail.images import image_grid
from cocktail.union import UnionModel

SOURCES = ("trouser", "sneaker", "bag", "dress")
DOCS = Path(__file__).resolve().parent


def examples(union_spec: str, num_seeds: int, output: Path) -> None:
    seeds = list(range(num_seeds))
    union = UnionModel.from_pretrained(union_spec)
    sources = {name: UnionModel.from_pretrained(f"example:{name}") for name in SOURCES}
    panels = [("sources (one GAN each)", list(sources), [sources[n].sample(0, seeds) for n in sources]),
              (f"union: one conditional GAN ({union.provenance.get('method', 'merged')})",
               [f"class {n}" for n in union.class_names], [union.sample(n, seeds) for n in union.class_names])]
    figure, axes = plt.subplots(1, 2, figsize=(14, 3.3), dpi=100)
    for axis, (title, labels, rows) in zip(axes, panels, strict=True):
        grid = image_grid([[image.resize((64, 64), resample=0) for image in row] for row in rows], padding=4)
        axis.imshow(grid)
        axis.set_anchor("N")
        axis.set_title(title, fontsize=8, loc="left")
        axis.set_yticks([4 + 68 * i + 32 for i in range(len(labels))], labels, fontsize=8)
        axis.set_xticks([])
        axis.tick_params(length=0)
        for side in axis.spines.values():
            side.set_visible(False)
    figure.tight_layout()
    figure.savefig(output)


def budget(data: Path, output: Path) -> None:
    measured = json.loads(data.read_text())
    merges, dashed = measured["merges"], frozenset(measured.get("dashed", []))
    figure, axes = plt.subplots(1, len(merges), figsize=(5 * len(merges), 3.8), squeeze=False)
    for axis, (merge, methods) in zip(axes[0], merges.items(), strict=True):
        curves = {method: {float(kimg): values for kimg, values in points.items()}
                  for method, points in methods.items()}
        draw_fid_curves(axis, curves, dashed)
        axis.set_xlabel("total kimg (every method the same)")
        axis.set_title(f"{merge}: union FID vs real", fontsize=10)
        axis.legend(fontsize=7)  # each panel its own: the merges were not run with the same methods
    axes[0][0].set_ylabel("FID (lower is better); bars: sd over seeds")
    figure.tight_layout()
    figure.savefig(output, dpi=100)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("figure", choices=["examples", "budget"])
    p.add_argument("--union", default="example:union", help="examples: the union drawn beside the sources")
    p.add_argument("--seeds", type=int, default=8, help="examples: samples per row (seeds 0, 1, …)")
    p.add_argument("--data", default=str(DOCS / "budget.json"), help="budget: the measured points")
    p.add_argument("--output", help="default: docs/<figure>.png")
    args = p.parse_args(argv)
    output = Path(args.output or DOCS / f"{args.figure}.png")
    if args.figure == "examples":
        examples(args.union, args.seeds, output)
    else:
        budget(Path(args.data), output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
