"""Prepare offline image sets for examples, evaluation and benchmarks: one folder of PNGs per class.

    python scripts/prepare_data.py fashion-mnist --output_dir data/fashion-mnist
    python scripts/prepare_data.py fashion-mnist --split test --output_dir data/fashion-mnist-test
    python scripts/prepare_data.py emoji --output_dir data/emoji

``fashion-mnist`` reads Debian's ``dataset-fashion-mnist`` package (``apt-get install
dataset-fashion-mnist``; Zalando's Fashion-MNIST, MIT licence) and writes every image of the chosen
classes as a 32x32 RGB PNG, the 28x28 original centred on black like its own background: ``trouser/``,
``sneaker/``, ``bag/`` … ``--split all`` (the default) writes 7,000 per class, the 60k training set
followed by the 10k test set (so ``06000.png`` on are the class's test images): enough for stable FID
against real data. ``--split train`` / ``--split test`` write one set only (6,000 / 1,000 per class), e.g.
test images for measuring projection on images kept apart from training.

``emoji`` fetches the npm package ``emoji-datasource-google`` (Noto Emoji images, Apache-2.0) with
``npm pack`` and writes its 64x64 emoji, composited on white, into one folder per category:
``smileys/``, ``animals/``, ``food/``, ``travel/``, ``flags/`` — a few hundred images each,
visually distinct domains to train example source GANs on (``scripts/train_source.py``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where Debian's package puts it
FASHION_MNIST_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle-boot"]
PACKAGE = "emoji-datasource-google@16.0.0"
CATEGORIES = {
    "smileys": "Smileys & Emotion",
    "animals": "Animals & Nature",
    "food": "Food & Drink",
    "travel": "Travel & Places",
    "flags": "Flags",
}


def fetch_package(workdir: Path) -> Path:
    """``npm pack`` the package into ``workdir`` and unpack it; returns the package root."""
    try:
        result = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True,
                                capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("error: npm is needed to fetch the emoji images (apt-get install npm)")
    except subprocess.CalledProcessError as err:
        sys.exit(f"error: npm pack {PACKAGE} failed: {err.stderr.strip().splitlines()[-1:]}")
    archive = workdir / result.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package"


def export(package: Path, output_dir: Path, categories: list[str], size: int) -> dict[str, int]:
    emoji = json.loads((package / "emoji.json").read_text())
    counts = {}
    for name in categories:
        folder = output_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        entries = [e for e in emoji if e["category"] == CATEGORIES[name] and e.get("has_img_google")]
        for entry in entries:
            source = package / "img" / "google" / "64" / entry["image"]
            if not source.is_file():
                continue
            rgba = Image.open(source).convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
            if image.size != (size, size):
                image = image.resize((size, size), Image.LANCZOS)
            image.save(folder / f"{Path(entry['image']).stem}.png")
        counts[name] = len(list(folder.glob("*.png")))
    return counts


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format: big-endian dimension sizes, then uint8 data), gzipped."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


FASHION_MNIST_SPLITS = {"all": ("train", "t10k"), "train": ("train",), "test": ("t10k",)}


def export_fashion_mnist(source_dir: Path, output_dir: Path, classes: list[str], split: str = "all"
                         ) -> dict[str, int]:
    if not (source_dir / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"error: no Fashion-MNIST files in {source_dir} (apt-get install dataset-fashion-mnist)")
    parts = FASHION_MNIST_SPLITS[split]
    images = np.concatenate([read_idx(source_dir / f"{part}-images-idx3-ubyte.gz") for part in parts])
    labels = np.concatenate([read_idx(source_dir / f"{part}-labels-idx1-ubyte.gz") for part in parts])
    counts = {}
    for name in classes:
        folder = output_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        picked = images[labels == FASHION_MNIST_CLASSES.index(name)]
        padded = np.pad(picked, ((0, 0), (2, 2), (2, 2)))  # 28 → 32 px on the images' own black
        for i, image in enumerate(padded):
            Image.fromarray(image, "L").convert("RGB").save(folder / f"{i:05d}.png")
        counts[name] = len(picked)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", choices=["fashion-mnist", "emoji"], default="fashion-mnist")
    parser.add_argument("--output_dir", help="default: data/<dataset>")
    parser.add_argument("--classes", nargs="+", help="fashion-mnist classes (default: trouser sneaker bag dress; "
                                                     f"any of {', '.join(FASHION_MNIST_CLASSES)})")
    parser.add_argument("--source_dir", type=Path, default=FASHION_MNIST_DIR, help="fashion-mnist: the IDX files")
    parser.add_argument("--split", choices=FASHION_MNIST_SPLITS, default="all",
                        help="fashion-mnist: the training set, the test set, or both, training first (default)")
    parser.add_argument("--categories", nargs="+", default=["smileys", "animals", "food"], choices=CATEGORIES,
                        help="emoji categories")
    parser.add_argument("--size", type=int, default=64, help="emoji image size in pixels")
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir or f"data/{args.dataset}")
    if args.dataset == "fashion-mnist":
        classes = args.classes or ["trouser", "sneaker", "bag", "dress"]
        unknown = sorted(set(classes) - set(FASHION_MNIST_CLASSES))
        if unknown:
            sys.exit(f"error: unknown Fashion-MNIST class(es) {', '.join(unknown)}; known: "
                     f"{', '.join(FASHION_MNIST_CLASSES)}")
        counts = export_fashion_mnist(args.source_dir, output_dir, classes, args.split)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            package = fetch_package(Path(tmp))
            counts = export(package, output_dir, args.categories, args.size)
    for name, count in counts.items():
        print(f"{output_dir}/{name}: {count} images")


if __name__ == "__main__":
    main()
