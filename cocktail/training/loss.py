"""StyleGAN2's objective, one small function per phase; when each runs, and with what weight, is the loop's.

* G main: the non-saturating logistic loss ``softplus(-D(G(z)))``;
* G regulariser: path length, ``(|J_w^T y| - a)^2`` for image-space noise ``y``, ``a`` a running mean of
  the lengths (``PathLengthPenalty.mean``, StyleGAN2's pl_mean);
* D main: ``softplus(D(G(z))) + softplus(-D(x))``;
* D regulariser: R1, ``|grad_x D(x)|^2`` on the reals.

Each returns the loss to minimise and what it reports (name -> scalar tensor; the loop averages them over
processes), so it can be checked on tiny networks without a training loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Reported = dict[str, torch.Tensor]


def generator_loss(fake_logits: torch.Tensor) -> tuple[torch.Tensor, Reported]:
    """G main: push D's logits on fakes up, with gradients that do not vanish while D wins."""
    loss = F.softplus(-fake_logits.float()).mean()
    return loss, {"loss/G": loss}


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Reported]:
    """D main: logistic loss on reals (label 1) and fakes (label 0); also reports the mean logits."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    return loss, {"loss/D": loss, "scores/real": real_logits.mean(), "scores/fake": fake_logits.mean()}


def r1_penalty(real_logits: torch.Tensor, reals: torch.Tensor) -> tuple[torch.Tensor, Reported]:
    """D regulariser: the squared norm of the logits' gradient w.r.t. the reals (which must require grad),
    kept differentiable so the penalty can be minimised."""
    (grads,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    penalty = grads.square().sum(dim=[1, 2, 3]).mean()
    return penalty, {"loss/r1_penalty": penalty}


def path_lengths(images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per sample, ``|J_w^T y|`` with ``y = noise / sqrt(pixels)``: how far the image moves per step in w.

    ``noise``: standard normal, shaped like ``images``; ``ws`` the styles the images were made from.
    """
    height, width = images.shape[2:]
    noise = noise / math.sqrt(height * width)
    (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


class PathLengthPenalty:
    """G regulariser: lengths pulled towards their running mean, which this keeps (and a checkpoint saves)."""

    def __init__(self, decay: float, device: torch.device | str | None = None):
        self.decay = decay
        self.mean = torch.zeros([], device=device)

    def __call__(self, lengths: torch.Tensor, batch_mean: torch.Tensor) -> tuple[torch.Tensor, Reported]:
        """``batch_mean``: the detached mean of the lengths over the whole (global) batch, so that every
        process keeps the same running mean."""
        self.mean = self.mean.lerp(batch_mean, self.decay)
        penalty = (lengths - self.mean).square().mean()
        return penalty, {"loss/pl_penalty": penalty}
