"""Pictures in and out: image files read as uint8 tensors, resizing, and [-1, 1] tensors back to 8 bits.

Training data, metrics and projection all read files and resize through here, so an image means the same
pixels wherever it is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from .errors import CocktailError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "F")


def image_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder``, sorted, skipping hidden files and folders."""
    paths = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_image(path: Path, draft_size: int | None = None) -> torch.Tensor:
    """An image file → uint8 [C, H, W]: one channel for grey images, else RGB (alpha dropped), upright as its
    EXIF orientation says. ``draft_size`` lets a JPEG decode at a reduced size that is still at least that
    large: much faster for big photos, but not the same pixels as a full decode."""
    try:
        with Image.open(path) as image:
            if draft_size is not None:
                image.draft(image.mode, (draft_size, draft_size))
            image = ImageOps.exif_transpose(image)
            array = np.asarray(image.convert("L" if image.mode in GREY_MODES else "RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CocktailError(f"{path}: cannot read image ({err})") from None
    pixels = torch.from_numpy(array.copy())
    return pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)


def resize_images(images: torch.Tensor, resolution: int, channels: int = 3) -> torch.Tensor:
    """Images [B, C, H, W] (uint8, or float in [-1, 1]) → float32 [B, channels, R, R] in [-1, 1].

    Non-square images are centre-cropped. Down: box average for integer factors, antialiased bilinear
    otherwise; up: bilinear. Channels: alpha (C = 2 or 4) is dropped, grey is repeated to RGB, RGB to
    grey is luma (ITU-R 601).
    """
    if images.ndim != 4 or images.shape[1] not in (1, 2, 3, 4) or channels not in (1, 3):
        raise CocktailError(f"expected images [B, C, H, W] with C in 1..4 (to {channels} channels), "
                            f"got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.float() / 127.5 - 1
    elif images.is_floating_point():
        images = images.float()
    else:
        raise CocktailError(f"expected uint8 or float images, got {images.dtype}")
    if images.shape[1] in (2, 4):
        images = images[:, :-1]
    height, width = images.shape[-2:]
    size = min(height, width)
    top, left = (height - size) // 2, (width - size) // 2
    images = images[:, :, top:top + size, left:left + size]
    if size > resolution and size % resolution == 0:
        images = F.avg_pool2d(images, size // resolution)
    elif size != resolution:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                               antialias=size > resolution)
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            luma = images.new_tensor([0.299, 0.587, 0.114])
            images = torch.tensordot(images, luma, dims=([1], [0]))[:, None]
    return images.clamp(-1, 1).contiguous()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float [N, C, H, W] → uint8 on the same device, rounded as when the images are saved as PNG."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[-1, 1] NCHW float → one PIL image per sample (grey for one channel)."""
    arrays = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]


def enlarged(image: Image.Image, cell: int) -> Image.Image:
    """A small image scaled by a whole factor (nearest neighbour, pixels stay sharp) to about ``cell`` pixels, for
    viewing; never shrunk."""
    factor = max(1, cell // max(image.size))
    return image.resize((image.width * factor, image.height * factor), resample=0)


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
