"""Projection into the shipped union: reconstruction quality per distance and latent space, and how well each
way of carrying a projection to another class draws that class while keeping the image's structure.

    python scripts/prepare_data.py fashion-mnist --split test --output_dir data/fashion-mnist-test
    python scripts/prepare_data.py fashion-mnist --split train --output_dir data/fashion-mnist-train
    python benchmarks/projection.py --num 100 --steps 100                       # every configuration
    python benchmarks/projection.py --num 100 --steps 100 --configs inception/w mse/w
    python benchmarks/projection.py --timing                                    # seconds per image, batch 1
    python benchmarks/projection.py --figure docs/projection.png                # README's figure

Inputs are the first ``--num`` Fashion-MNIST *test* images of each class of the union (``00000.png`` on).
A configuration is ``distance/space``: distance ``mse``, ``discriminator`` or ``inception`` (their defaults,
see cocktail/projection.py) or ``inception-features`` (Inception layers without the pixel term); space ``w``,
``w+`` or ``z``. Images of a class are projected in batches (the same as one at a time: each image has its
own latent and noise, the loss is a sum), and the projections are kept under --output_dir, so a stopped run
goes on where it stopped.

Reconstruction, per class and overall: PSNR (8-bit), SSIM (luma, 11 × 11 Gaussian window), the Inception
distance at 128 px without pixel term (LPIPS's form without learned weights: *not* the 64 px distance the
``inception`` configurations minimise, but the same network, so it favours them), and the Euclidean distance
of the 2048-d FID features at 299 px.

Carrying (``--carry CONFIG …``): each projection drawn as every other class b (w and W+: w − w̄_a + w̄_b, z:
mapped with b's input; "keep" leaves w as it is, which draws the reconstruction). Class: how often the
rendering's FID features are nearest to class b's mean feature (means of 1,000 real training images per class;
real test images score 100 % as their own class in this test, see the output), and the FID of all renderings
into b against those real images of b, beside the FID of the union's own samples of b at the same N. Structure:
the IoU of the rendering's silhouette (luma > 40 / 255) with the input's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cocktail import metrics, projection
from cocktail.assets import DEFAULT_UNION, real_examples
from cocktail.images import image_grid, to_uint8
from cocktail.union import UnionModel

CONFIGS = ("mse/w", "mse/w+", "mse/z", "discriminator/w+", "inception/w", "inception/w+", "inception/z",
           "inception-features/w+")
BATCH = 25
NUM_REFERENCE = 1000  # real training images per class: class means of the FID features, and FID's reference
SILHOUETTE = 40  # luma above this (of 255) is the object; Fashion-MNIST's background is 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_UNION)
    p.add_argument("--test_dir", default="data/fashion-mnist-test", help="one folder of test images per class")
    p.add_argument("--train_dir", default="data/fashion-mnist-train", help="one folder of training images per class")
    p.add_argument("--num", type=int, default=100, help="test images per class")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    p.add_argument("--carry", nargs="*", default=["inception/w", "inception/w+", "inception/z"],
                   help="configurations whose projections are carried to the other classes")
    p.add_argument("--timing", action="store_true", help="only time one image at batch 1 per configuration")
    p.add_argument("--figure", help="only draw README's figure here: each shipped real example (the first test "
                                    "image of its class), then it projected with the defaults as every class")
    p.add_argument("--output_dir", default="outputs/benchmarks/projection")
    return p.parse_args(argv)


def make_distance(name: str, union: UnionModel):
    if name == "inception-features":
        return projection.InceptionDistance(union.device, pixel_weight=0.0)
    return projection.make_distance(name, union)


def test_images(folder: Path, num: int, union: UnionModel) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))[:num]
    if len(files) < num:
        sys.exit(f"error: {folder} has {len(files)} images, fewer than --num {num}")
    g = union.generator
    return torch.stack([projection.read_image(f, g.img_resolution, g.img_channels) for f in files])


def projected(union, config, class_name, images, steps, latents, cache: Path) -> dict:
    """The projections of one class's images under one configuration: loaded if done, else made and kept."""
    path = cache / f"{config.replace('/', '_')}_{class_name}.pt"
    if path.is_file():
        return torch.load(path)
    distance_name, space = config.split("/")
    distance = make_distance(distance_name, union)
    parts, started = [], time.process_time()
    for start in tqdm(range(0, len(images), BATCH), desc=f"{config} {class_name}", leave=False):
        results = projection.project_many(union, images[start:start + BATCH], class_name, steps=steps, space=space,
                                          distance=distance, latents=latents)
        parts += results
    record = {"ws": torch.stack([p.ws for p in parts]),
              "z": torch.stack([p.z for p in parts]) if space == "z" else None,
              "noise": [torch.stack([p.noise[i] for p in parts]) for i in range(len(parts[0].noise))],
              "reconstruction": torch.stack([p.reconstruction for p in parts]),
              "cpu_seconds_per_image": (time.process_time() - started) / len(images)}
    torch.save(record, path)
    return record


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM per image on luma in 0…255 (Wang et al. 2004: 11 × 11 Gaussian window, σ 1.5, valid positions)."""
    def luma(x):
        x = (x.float().clamp(-1, 1) + 1) * 127.5
        return x.mean(1, keepdim=True) if x.shape[1] == 1 else (
            0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])

    a, b = luma(a), luma(b)
    taps = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = (taps[:, None] * taps[None]) / taps.sum() ** 2
    window = window[None, None]
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean(dim=[1, 2, 3])


def psnr_each(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.tensor([projection.psnr(x, y) for x, y in zip(a, b, strict=True)])


def silhouette(images: torch.Tensor) -> torch.Tensor:
    return to_uint8(images).float().mean(1) > SILHOUETTE


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    sa, sb = silhouette(a), silhouette(b)
    return (sa & sb).flatten(1).sum(1) / (sa | sb).flatten(1).sum(1).clamp_min(1)


def pool_features(extractor, images: torch.Tensor) -> np.ndarray:
    return extractor(to_uint8(images))


def nearest_class(features: np.ndarray, means: np.ndarray) -> np.ndarray:
    return ((features[:, None] - means[None]) ** 2).sum(-1).argmin(1)


def carried_images(union, record, source: int, target: int, latents, choice: str) -> torch.Tensor:
    """Every image of class ``source`` drawn as class ``target`` (with its own noise maps)."""
    ws = record["ws"]
    if choice == "keep":
        pass
    elif record["z"] is not None:
        with torch.no_grad():
            ws = union.generator.mapping(record["z"], union.labels_to_c([target] * len(ws)))
    else:
        ws = ws + (latents.means[target] - latents.means[source])
    frozen = projection.FrozenGenerator(union)
    noise = [n[:, None] for n in record["noise"]]
    with torch.no_grad():
        return torch.cat([frozen.synthesis(ws[i:i + BATCH], [n[i:i + BATCH] for n in noise])
                          for i in range(0, len(ws), BATCH)])


def timing(union, latents, image, configs):
    rows = []
    for config in configs:
        distance_name, space = config.split("/")
        distance = make_distance(distance_name, union)
        projection.project_many(union, image[None], union.class_names[0], steps=5, space=space, distance=distance,
                                latents=latents)  # warm-up
        started = time.perf_counter()
        projection.project_many(union, image[None], union.class_names[0], steps=100, space=space,
                                distance=distance, latents=latents)
        rows.append((config, (time.perf_counter() - started) / 100))
    print("| configuration | ms per step, batch 1 | s for 100 / 300 steps |\n| --- | --- | --- |")
    for config, seconds in rows:
        print(f"| {config} | {seconds * 1000:.0f} | {seconds * 100:.1f} / {seconds * 300:.1f} |")


def figure(union, latents, path: Path, cell: int = 96):
    """Rows: a shipped real example, then its projection (default settings) drawn as each class, enlarged."""
    rows = []
    for name, example in real_examples().items():
        result = projection.project(union, example, name, latents=latents, progress=True)
        rows.append([result.target_image] + list(projection.render_classes(union, result, latents).values()))
        print(f"{name}: PSNR {result.psnr:.2f} dB", flush=True)
    grid = image_grid([[image.resize((cell, cell), resample=0) for image in row] for row in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)
    print(f"wrote {path}: columns real, then {', '.join(union.class_names)}")


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    union = UnionModel.from_pretrained(args.model)
    latents = projection.class_latents(union)
    if args.figure:
        figure(union, latents, Path(args.figure))
        return
    names = union.class_names
    inputs = {name: test_images(Path(args.test_dir) / name, args.num, union) for name in names}
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f}; N = {args.num} per class, "
          f"{args.steps} steps", flush=True)
    if args.timing:
        timing(union, latents, inputs[names[0]][0], args.configs)
        return
    cache = Path(args.output_dir) / f"{args.num}x{args.steps}"
    cache.mkdir(parents=True, exist_ok=True)
    judge = projection.InceptionDistance(union.device, size=128, pixel_weight=0.0)
    extractor = metrics.shared_extractor(union.device)
    report = {"num": args.num, "steps": args.steps, "reconstruction": {}, "carry": {}}

    print("\n| configuration | class | PSNR dB | SSIM | Inception distance (128 px) | FID-feature distance | "
          "CPU s / image |\n| --- | --- | --- | --- | --- | --- | --- |")
    records = {}
    for config in args.configs:
        rows = []
        for name in names:
            record = projected(union, config, name, inputs[name], args.steps, latents, cache)
            records[config, name] = record
            target, recon = inputs[name], record["reconstruction"]
            with torch.no_grad():
                perceptual = judge(recon, judge.reference(target))
            pool = np.linalg.norm(pool_features(extractor, recon) - pool_features(extractor, target), axis=1)
            rows.append({"class": name, "psnr": psnr_each(recon, target).mean().item(),
                         "ssim": ssim(recon, target).mean().item(), "inception": perceptual.mean().item(),
                         "pool": float(pool.mean()), "cpu_s": record["cpu_seconds_per_image"]})
        rows.append({"class": "all", **{k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "class"}})
        report["reconstruction"][config] = rows
        for r in rows:
            print(f"| {config} | {r['class']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['inception']:.3f} | "
                  f"{r['pool']:.2f} | {r['cpu_s']:.1f} |", flush=True)

    reference = {name: metrics.features_for_folder(Path(args.train_dir) / name, NUM_REFERENCE, resolution=32,
                                                   progress=False) for name in names}
    means = np.stack([reference[name].mean(0) for name in names])
    own = {name: nearest_class(pool_features(extractor, inputs[name]), means) for name in names}
    print("\nreal test images classified as their own class by the nearest class mean: "
          + ", ".join(f"{n} {np.mean(own[n] == i) * 100:.0f} %" for i, n in enumerate(names)))
    per_target = args.num * (len(names) - 1)
    samples = {name: pool_features(extractor, union.generate(name, range(per_target))) for name in names}
    print(f"\n| carried as | target class | nearest class mean is the target | FID to real target images "
          f"(N = {per_target} / {NUM_REFERENCE}; union's own samples) | silhouette IoU with the input |\n"
          "| --- | --- | --- | --- | --- |")
    choices = [("keep", args.carry[0])] + [(config, config) for config in args.carry]
    for label, config in choices:
        rows = []
        for target_index, target_name in enumerate(names):
            images, sources = [], []
            for source_index, source_name in enumerate(names):
                if source_index == target_index:
                    continue
                record = records.get((config, source_name)) or projected(
                    union, config, source_name, inputs[source_name], args.steps, latents, cache)
                images.append(carried_images(union, record, source_index, target_index, latents,
                                             "keep" if label == "keep" else "carry"))
                sources.append(inputs[source_name])
            images, sources = torch.cat(images), torch.cat(sources)
            features = pool_features(extractor, images)
            rows.append({"class": target_name,
                         "hit": float(np.mean(nearest_class(features, means) == target_index)),
                         "fid": metrics.fid(features, reference[target_name]),
                         "fid_samples": metrics.fid(samples[target_name], reference[target_name]),
                         "iou": iou(images, sources).mean().item()})
        rows.append({"class": "all", **{k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "class"}})
        report["carry"][label if label == "keep" else config] = rows
        for r in rows:
            print(f"| {label if label == 'keep' else config} | {r['class']} | {r['hit'] * 100:.0f} % | "
                  f"{r['fid']:.1f} ({r['fid_samples']:.1f}) | {r['iou']:.2f} |", flush=True)
    (cache / "report.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
