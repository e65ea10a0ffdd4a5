"""Seeded sampling of a generator: a seed means the same image on every device and in every batch.

Bare networks are enough, so a model folder's sample grid can be drawn where no union model exists
(a checkpoint being converted); ``UnionModel`` samples through the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from PIL import Image

from .images import image_grid, to_pil


def _device(network: torch.nn.Module) -> torch.device:
    return next(network.parameters()).device


def seed_latents(seeds: Iterable[int], z_dim: int, device: torch.device | str) -> torch.Tensor:
    """z for each seed, drawn on CPU so a seed means the same image on every device."""
    zs = [torch.randn([z_dim], generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(zs).to(device)


def one_hot_classes(indices: Iterable[int], c_dim: int, device: torch.device | str) -> torch.Tensor | None:
    """Class indices → the one-hot conditioning a generator with ``c_dim`` classes expects (None if unconditional)."""
    indices = torch.as_tensor(list(indices), dtype=torch.long)
    if c_dim == 0:
        return None
    return torch.nn.functional.one_hot(indices, c_dim).float().to(device)


@torch.no_grad()
def generate(generator: torch.nn.Module, class_index: int, seeds: Iterable[int], truncation: float = 1.0,
             noise_mode: str = "const", batch_size: int = 32) -> torch.Tensor:
    """Images in [-1, 1] (NCHW) of one class for the given seeds."""
    seeds = list(seeds)
    device = _device(generator)
    outputs = []
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        z = seed_latents(chunk, generator.z_dim, device)
        c = one_hot_classes([class_index] * len(chunk), generator.c_dim, device)
        outputs.append(generator(z, c, truncation_psi=truncation, noise_mode=noise_mode).float())
    return torch.cat(outputs)


def class_grid(generator: torch.nn.Module, num_classes: int, seeds: Iterable[int],
               truncation: float = 1.0) -> Image.Image:
    """One row per class, the same seeds in every row (so rows are comparable)."""
    seeds = list(seeds)
    return image_grid([to_pil(generate(generator, i, seeds, truncation=truncation)) for i in range(num_classes)])
