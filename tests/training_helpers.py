"""Toy sources and tiny networks shared by the training tests and the scripts they launch."""

from __future__ import annotations

import os
import signal

import torch

from cocktail.networks import Discriminator, Generator
from cocktail.training import TrainingConfig
from cocktail.union import TINY_D_KWARGS, TINY_G_KWARGS

RED = (1.0, -1.0, -0.5)


def tiny_pair(seed: int = 0, c_dim: int = 0, **d_changes) -> tuple[Generator, Discriminator]:
    """Freshly initialised tiny (G, D), the same for the same seed in every process."""
    torch.manual_seed(seed)
    return Generator(**TINY_G_KWARGS, c_dim=c_dim), Discriminator(**TINY_D_KWARGS, c_dim=c_dim, **d_changes)


class SolidSource:
    """One colour (per class) plus a little noise, drawn from the generator it is given.

    ``signal_at``: send this process ``signal_at[1]`` during the ``signal_at[0]``-th call (1-based),
    i.e. in the middle of a training iteration, to test kills and interruptions deterministically.
    """

    resolution = 32
    channels = 3

    def __init__(self, colours=(RED,), noise: float = 0.1, signal_at: tuple[int, int] | None = None):
        self.colours = torch.tensor(colours, dtype=torch.float32)
        self.num_classes = len(colours)
        self.noise = noise
        self.signal_at = signal_at
        self.calls = 0

    def to(self, device):
        return self

    def sample(self, batch_size, device, generator=None):
        self.calls += 1
        if self.signal_at is not None and self.calls == self.signal_at[0]:
            os.kill(os.getpid(), self.signal_at[1])
        labels = torch.randint(self.num_classes, [batch_size], generator=generator)
        noise = torch.randn([batch_size, 3, 32, 32], generator=generator)
        images = (self.colours[labels][:, :, None, None] + self.noise * noise).clamp(-1, 1)
        return images.to(device), labels.to(device)


class BankSource:
    """A fixed bank of images per call, ignoring the generator: call k yields rows ``rank::world`` of
    batch k, so ``world`` processes together see exactly what one process sees (the loop slices
    its shared draws the same way)."""

    resolution = 32
    channels = 3
    num_classes = 1

    def __init__(self, calls: int, global_batch: int, rank: int = 0, world: int = 1, seed: int = 7):
        generator = torch.Generator().manual_seed(seed)
        self.bank = torch.rand([calls, global_batch, 3, 32, 32], generator=generator) * 2 - 1
        self.rank, self.world, self.calls = rank, world, 0

    def to(self, device):
        return self

    def sample(self, batch_size, device, generator=None):
        images = self.bank[self.calls][self.rank :: self.world]
        assert len(images) == batch_size
        self.calls += 1
        return images.to(device), torch.zeros(batch_size, dtype=torch.int64, device=device)


def freeze_noise_strengths(G: Generator) -> Generator:
    """Per-layer noise is the one thing drawn per rank; with zero, frozen strengths it adds nothing."""
    for name, p in G.named_parameters():
        if name.endswith("noise_strength"):
            p.requires_grad_(False)
            p.data.zero_()
    return G


def resumable_config(output_dir, kimg=0.016, resume=False) -> TrainingConfig:
    """The run of the kill / resume tests: a checkpoint every 2 iterations, R1 and path length every 2."""
    return TrainingConfig(kimg=kimg, batch_size=4, r1_interval=2, pl_interval=2, ema_kimg=0.01,
                          output_dir=str(output_dir), checkpointing_kimg=0.008, checkpoints_total_limit=None,
                          resume_from_checkpoint="latest" if resume else None, progress=False, seed=3)


SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}
