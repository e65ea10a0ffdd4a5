"""Prepare small offline image sets for examples and benchmarks.

    python scripts/prepare_data.py --output_dir data/emoji

Fetches the npm package ``emoji-datasource-google`` (Noto Emoji images, Apache-2.0) with
``npm pack`` and writes its 64x64 emoji, composited on white, into one folder per category:
``smileys/``, ``animals/``, ``food/``, ``travel/``, ``flags/`` — a few hundred images each,
visually distinct domains to train example source GANs on (``scripts/train_source.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from PIL import Image

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="data/emoji")
    parser.add_argument("--categories", nargs="+", default=["smileys", "animals", "food"], choices=CATEGORIES)
    parser.add_argument("--size", type=int, default=64, help="image size in pixels")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        package = fetch_package(Path(tmp))
        counts = export(package, Path(args.output_dir), args.categories, args.size)
    for name, count in counts.items():
        print(f"{args.output_dir}/{name}: {count} images")


if __name__ == "__main__":
    main()
