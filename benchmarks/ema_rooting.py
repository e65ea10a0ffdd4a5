"""How much of the root is left in a rooted G_ema: the measurement behind the merges' EMA ramp-up default.

    python benchmarks/ema_rooting.py --root example:trouser --source example:sneaker --kimg 8
    python benchmarks/ema_rooting.py --root example:trouser --source example:sneaker --rooted <stage>/model

The first form roots ``--source`` from ``--root`` once (the paper's recipe, batch 32) and follows two
EMAs of the same training run side by side: the half-life alone (no ramp-up) and with the StyleGAN2-ADA
ramp-up (half-life at most ``--rampup`` of the images seen so far). The EMA never feeds back into
training, so one run gives both. The second form scores rooted models that a merge already wrote.

Score: the Fréchet distance between Gaussians fitted to 8x8 downsampled pixels (192 features) of
``--samples`` images, from the rooted G_ema to the source's samples and to the root's. A rooted model
should be near its source; "share" is d(root) / (d(root) + d(source)): 1 = looks like the source,
0 = still the root.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from cocktail.sources import ModelSource
from cocktail.training import TrainingConfig, train
from cocktail.training.loop import GeneratorEMA
from cocktail.union import UnionModel


def pixel_features(generator, samples: int) -> np.ndarray:
    """8x8 downsampled images of seeds 10_000.. (never the training draws), flattened."""
    images = UnionModel(generator.eval()).generate(0, range(10_000, 10_000 + samples))
    return F.adaptive_avg_pool2d(images, 8).flatten(1).double().cpu().numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) = sum of sqrt(eigenvalues of A^1/2 B A^1/2), a symmetric matrix: no scipy needed.
    values, vectors = np.linalg.eigh(cov_a)
    half_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.sqrt(np.linalg.eigvalsh(half_a @ cov_b @ half_a).clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def score(name: str, generator, references: dict) -> str:
    features = pixel_features(generator, len(references["source"]))
    d_source, d_root = frechet(features, references["source"]), frechet(features, references["root"])
    return f"{name:<28} d(source) {d_source:7.3f}   d(root) {d_root:7.3f}   share {d_root / (d_root + d_source):.2f}"


def follow_two_emas(rampup: float) -> dict:
    """Patch the loop so that it also keeps a ramped-up EMA next to its own; it appears as ``["G_ema"]``
    of the returned dict once training has started."""
    original, shadow = GeneratorEMA.update, {}

    @torch.no_grad()
    def update_both(ema, images_seen):
        original(ema, images_seen)
        if "G_ema" not in shadow:
            shadow["G_ema"] = copy.deepcopy(ema.G_ema)
            shadow["G_ema"].load_state_dict(ema.G.state_dict())  # the ramp-up's first step copies G
            return
        half_life = min(ema.half_life_images, images_seen * rampup)
        beta = 0.5 ** (ema.batch_size / half_life) if half_life > 0 else 0.0
        for averaged, current in zip(shadow["G_ema"].parameters(), ema.G.parameters(), strict=True):
            averaged.lerp_(current, 1.0 - beta)
        for averaged, current in zip(shadow["G_ema"].buffers(), ema.G.buffers(), strict=True):
            averaged.copy_(current)

    GeneratorEMA.update = update_both
    return shadow


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="example:trouser")
    p.add_argument("--source", default="example:sneaker")
    p.add_argument("--kimg", type=float, default=8.0)
    p.add_argument("--ema_kimg", type=float, default=10.0)
    p.add_argument("--rampup", type=float, default=0.05)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--rooted", nargs="*", help="score these rooted model folders instead of training")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    root, source = UnionModel.from_pretrained(args.root), UnionModel.from_pretrained(args.source)
    references = {"source": pixel_features(source.generator, args.samples),
                  "root": pixel_features(root.generator, args.samples)}
    print(score("root itself", root.generator, references))
    print(score("source itself", source.generator, references))
    if args.rooted:
        for folder in args.rooted:
            print(score(folder, UnionModel.from_pretrained(folder).generator, references))
        return
    shadow = follow_two_emas(args.rampup)
    with tempfile.TemporaryDirectory() as scratch:
        config = TrainingConfig(kimg=args.kimg, ema_kimg=args.ema_kimg, output_dir=scratch, progress=False)
        sampler = ModelSource(source.generator, resolution=source.generator.img_resolution)
        result = train(copy.deepcopy(root.generator), copy.deepcopy(root.discriminator), sampler, config)
    print(score(f"G_ema, no ramp-up ({args.kimg:g} kimg)", result.G_ema, references))
    print(score(f"G_ema, ramp-up {args.rampup:g}", shadow["G_ema"], references))
    print(score("G (no EMA)", result.G, references))


if __name__ == "__main__":
    main()
