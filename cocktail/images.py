"""Tensor ↔ picture helpers shared by sampling, training grids and the demo."""

from __future__ import annotations

import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] NCHW float → uint8 NHWC on CPU."""
    images = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return images.round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[-1, 1] NCHW float → one PIL image per sample (grey for one channel)."""
    arrays = to_uint8(images).numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]


def image_grid(rows: list[list[Image.Image]], padding: int = 2, background=(255, 255, 255)) -> Image.Image:
    """Paste rows of equally sized images into one picture."""
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one image")
    width, height = rows[0][0].size
    cols = max(len(row) for row in rows)
    grid = Image.new("RGB", (cols * (width + padding) + padding, len(rows) * (height + padding) + padding),
                     background)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            grid.paste(image.convert("RGB"), (padding + c * (width + padding), padding + r * (height + padding)))
    return grid

