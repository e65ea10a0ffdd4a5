"""Compare merge methods on your own sources, against your own real images, over budgets and seeds.

    python scripts/compare.py example:trouser example:sneaker \\
        --real trouser=data/fashion-mnist/trouser --real sneaker=data/fashion-mnist/sneaker \\
        --variants transfer ewc cocktail cocktail_distill cond=cocktail:conditional_rooting=true \\
        --budgets 24 48 --seeds 0 1 2 --output_dir outputs/compare

Every cell (budget × variant × seed) is one merge, trained on the sources' generated images only, and scored
per class and on the union against the real folders at equal N and on the same latents. A variant is a method
(``scripts/merge.py --method``) or ``name=method:key=value,…`` with recipe settings of its own. Under the
default protocol every variant spends the same total kimg. A stopped run picks up at the cell (and the
checkpoint) where it stopped. Writes ``results.md``, ``results.json`` and ``budget.png`` (FID vs kimg), and with
``--diagnose`` ``training.png`` (FID over the kimg each diagnosed cell trained).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cocktail.comparison import PROTOCOLS, Comparison, parse_variant, run_comparison
from cocktail.errors import CocktailError, run_script


def real_folder(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"'{text}' is not class=folder")
    return name, folder


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", help="source specs, as for scripts/merge.py (the first is the root)")
    p.add_argument("--real", type=real_folder, action="append", required=True, metavar="CLASS=FOLDER",
                   help="real images of one class (one per source, named like the union's classes)")
    p.add_argument("--variants", nargs="+", default=["transfer", "ewc", "cocktail"],
                   help="methods or name=method:key=value,... (default: transfer ewc cocktail)")
    p.add_argument("--budgets", nargs="+", type=float, default=[24.0], help="total kimg per merge (default: 24)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="(default: 0 1 2)")
    p.add_argument("--root_share", type=float, default=1 / 3,
                   help="share of the budget that methods which root spend rooting (default: 1/3: for three sources "
                        "8 + 8 kimg of rooting and 32 of merging, the paper-method merge this project shipped first)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="total",
                   help="total: every variant spends the whole budget; merge_stage: the baselines get only the "
                        "rooting methods' merge stage (default: total)")
    p.add_argument("--num_samples", type=int, default=200, help="generated images per class (default: 200)")
    p.add_argument("--num_real", type=int, default=1000, help="real images per class (default: 1000)")
    p.add_argument("--diagnose", action="store_true",
                   help="also score the rooted models, the plain average and the final stage at each quarter; "
                        "cells already scored without it are diagnosed from what they kept (the final stage's "
                        "last two checkpoints)")
    p.add_argument("--train_only", action="store_true",
                   help="train every cell and score none (e.g. on a GPU machine without the Inception file); "
                        "run again without it to score: cells that bring back only their union folder and "
                        "trained.json are scored as they are")
    p.add_argument("--output_dir", default="outputs/compare")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from accelerate import Accelerator

    real = dict(args.real)
    if len(real) != len(args.real):
        raise CocktailError("--real names a class twice")
    comparison = Comparison(sources=args.sources, real=real, variants=[parse_variant(v) for v in args.variants],
                            budgets=args.budgets, seeds=args.seeds, output_dir=Path(args.output_dir),
                            root_share=args.root_share, protocol=args.protocol, num_samples=args.num_samples,
                            num_real=args.num_real, diagnose=args.diagnose,
                            train_only=args.train_only)
    comparison.check()
    accelerator = Accelerator(cpu=args.device == "cpu")
    text, _ = run_comparison(comparison, accelerator)
    print(text)
    if not args.train_only:
        plots = "budget.png, training.png" if args.diagnose else "budget.png"
        print(f"written: {comparison.output_dir / 'results.md'}, results.json, {plots}")
    return 0


if __name__ == "__main__":
    run_script(main)
