"""Paired distillation: the union's class i pulled towards its parent i's image on the same latent.

Rooted models descend from the root, so G_{r→i}(z) and the union's (z, class i) start from nearly the same
function: the parent is a teacher that already speaks the union's latent language. A paired loss
``|G(z, i) − T_i(z)|²`` tells the union, image by image, what class i should draw, which the adversarial
loss alone can only say through a discriminator that is itself learning the classes. Averaging alone
cannot give this: the average draws a blend of its parents, the same for every class.

The latents come from the global torch RNG of G's device, which checkpoints save per process, so a
resumed run draws the same latents as an uninterrupted one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .images import resize_images
from .networks import Generator


def distillation_penalty(teachers: Sequence[tuple[Generator, int | None]], weight: float, batch: int
                         ) -> Callable[[Generator], torch.Tensor]:
    """``penalty(G)``: ``weight`` × the mean squared pixel difference between G(z, class i) and teacher i's
    image of the same z, over ``batch`` fresh latents spread evenly over the classes (const noise on both).

    Teacher i is a generator and the class it is asked for (None when it is unconditional): a rooted
    model, one conditionally rooted (class i), or a source itself. Its images are brought to G's
    resolution and channels, and clamped to [-1, 1] as every source's images are.
    """
    frozen = [(copy.deepcopy(g).eval().requires_grad_(False), c) for g, c in teachers]
    num_classes = len(frozen)

    def penalty(G: Generator) -> torch.Tensor:
        device = next(G.parameters()).device
        labels = torch.arange(batch, device=device) % num_classes
        z = torch.randn([batch, G.z_dim], device=device)
        student = G(z, F.one_hot(labels, G.c_dim).float(), noise_mode="const").float()
        target = torch.empty_like(student)
        with torch.no_grad():
            for i, (teacher, class_index) in enumerate(frozen):
                rows = labels == i
                if not rows.any():
                    continue
                teacher.to(device)
                count = int(rows.sum())
                c = F.one_hot(torch.full([count], class_index, device=device), teacher.c_dim).float() \
                    if class_index is not None else None
                images = teacher(z[rows], c, noise_mode="const")
                target[rows] = resize_images(images.float(), G.img_resolution, G.img_channels)
        return weight * (student - target).square().mean()

    return penalty
