"""What the average of the root and a rooted model draws: per-class FID vs real at points on the straight line
between the two generators' weights.

    python benchmarks/average_path.py --root example:sneaker --rooted_class bag \\
        --rooted outputs/table-sb-192/cells/192kimg/cocktail/seed*/stages/cocktail/root-bag-*/model

G(a) = (1 - a) * root + a * rooted, for every float parameter and buffer; a = 0.5 is the plain average that a
GAN Cocktail merge of two sources starts its merge stage from. Both ends draw their own class. If the points
between draw one class fading into the other (each FID between its ends), the average is a blend the merge
stage has to pull apart into classes; if they draw neither (each FID at its worse end or beyond), the average
carries nothing of what rooting taught. Pass several rooted models (one per training seed) to get mean ± sd over
them at each point. Every point is scored on the same latents (evaluation seed 0) against
``--real_root/<class>``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from cocktail.comparison import save_fid_panels
from cocktail.images import enlarged, image_grid, to_pil
from cocktail.merge.surgery import average_networks
from cocktail.metrics import evaluate_model
from cocktail.sampling import generate
from cocktail.union import UnionModel


def relative_distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """||b - a|| / ||a|| over every float parameter and buffer: how far rooting moved the generator."""
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if sa[k].is_floating_point()]
    diff = sum(float((sb[k].float() - sa[k].float()).pow(2).sum()) for k in keys)
    return (diff / sum(float(sa[k].float().pow(2).sum()) for k in keys)) ** 0.5


def path_scores(root: UnionModel, rooted: UnionModel, alphas: list[float], real: dict[str, Path], **scoring
                ) -> dict[float, dict[str, float]]:
    """a → class → FID vs real of G(a), each class scored as if G(a) were a one-class model of it."""
    scores = {}
    for alpha in alphas:
        G = average_networks([root.generator, rooted.generator], weights=[1 - alpha, alpha])
        scores[alpha] = {name: evaluate_model(UnionModel(G, None, [name]), {name: str(folder)}, **scoring)
                         .scores[name].fid for name, folder in real.items()}
        print(f"  a = {alpha:g}: " + ", ".join(f"{c} {v:.1f}" for c, v in scores[alpha].items()), flush=True)
    return scores


def path_samples(root: UnionModel, rooted: UnionModel, alphas: list[float], seeds=range(8), cell: int = 96):
    """One row of samples per point on the line, the same latents in every row: what the numbers look like."""
    rows = []
    for alpha in alphas:
        G = average_networks([root.generator, rooted.generator], weights=[1 - alpha, alpha])
        rows.append([enlarged(image, cell) for image in to_pil(generate(G, 0, seeds))])
    return image_grid(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="the root's spec or folder (the merge's first source)")
    p.add_argument("--rooted", nargs="+", required=True, help="rooted model folders (a rooting stage's model/)")
    p.add_argument("--rooted_class", help="the class the rooted models learned (default: the name they were saved "
                   "under; rooting stages used to save theirs as 'class0')")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--real_root", type=Path, default=Path("data/fashion-mnist"), help="one folder per class")
    p.add_argument("--num_samples", type=int, default=200)
    p.add_argument("--num_real", type=int, default=1000)
    p.add_argument("--output_dir", type=Path, default=Path("outputs/average_path"))
    args = p.parse_args(argv)
    root = UnionModel.from_pretrained(args.root, load_discriminator=False)
    rooted_models = [UnionModel.from_pretrained(folder, load_discriminator=False) for folder in args.rooted]
    if root.generator.c_dim or any(m.generator.c_dim for m in rooted_models):
        p.error("the line is drawn between one-class generators: a root and models rooted without "
                "--conditional_rooting")
    if any(m.class_names != rooted_models[0].class_names for m in rooted_models):
        p.error("every rooted model must have learned the same class")
    classes = [*root.class_names, args.rooted_class or rooted_models[0].class_names[0]]
    real = {name: args.real_root / name for name in classes}
    missing = [str(f) for f in real.values() if not f.is_dir()]
    if missing:
        p.error(f"no real images in {', '.join(missing)}")
    scoring = dict(num_samples=args.num_samples, num_real=args.num_real, seed=0, device="cpu", progress=False)
    runs = []
    for folder, rooted in zip(args.rooted, rooted_models, strict=True):
        distance = relative_distance(root.generator, rooted.generator)
        print(f"{folder}: ||rooted - root|| / ||root|| = {distance:.3f}", flush=True)
        runs.append({"rooted": str(folder), "distance": distance,
                     "fid": path_scores(root, rooted, args.alphas, real, **scoring)})
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "average_path.json").write_text(json.dumps({"root": args.root, "runs": runs}, indent=2))
    curves = {name: {"G(a)": {a: [run["fid"][a][name] for run in runs] for a in args.alphas}} for name in classes}
    save_fid_panels(curves, args.output_dir / "average_path.png", "a (0 = root, 1 = rooted model)",
                    "{scope}: FID vs real along the line", log_kimg=False)
    path_samples(root, rooted_models[0], args.alphas).save(args.output_dir / "average_path_samples.png")
    print("\n| a | " + " | ".join(classes) + " |\n| --- |" + " --- |" * len(classes))
    for a in args.alphas:
        cells = [[run["fid"][a][name] for run in runs] for name in classes]
        print(f"| {a:g} | " + " | ".join(f"{statistics.mean(v):.1f}" + (f" ± {statistics.stdev(v):.1f}"
                                                                         if len(v) > 1 else "") for v in cells) + " |")
    print(f"\nwritten: {args.output_dir / 'average_path.json'}, average_path.png, average_path_samples.png "
          f"(rows: a = {', '.join(f'{a:g}' for a in args.alphas)}; the first rooted model)")


if __name__ == "__main__":
    main()
