"""Toy sources and tiny networks shared by the training tests and the scripts they launch."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch

from cocktail.networks import PRESETS, Discriminator, Generator
from cocktail.sources import Source
from cocktail.training import TrainingConfig
from cocktail.union import UnionModel

# A tiny architecture: 32 px, a few thousand parameters per layer, fast enough to train in a test.
TINY_G_KWARGS = dict(img_resolution=32, **PRESETS["tiny"])
TINY_D_KWARGS = dict(img_resolution=32, channel_base=PRESETS["tiny"]["channel_base"],
                     channel_max=PRESETS["tiny"]["channel_max"])

RED = (1.0, -1.0, -0.5)
COLOURS = {"red": (0.8, -0.8, -0.8), "green": (-0.8, 0.8, -0.8), "blue": (-0.8, -0.8, 0.8)}
# Fast settings for tiny models: a few hundred steps must be enough for classes to separate.
FAST = dict(batch_size=8, g_lr=0.02, d_lr=0.02, r1_interval=4, pl_weight=0.0, style_mixing_prob=0.0,
            ema_kimg=0.05, progress=False)


def colour_source(name: str, seed: int, folder: Path) -> Path:
    """A tiny GAN whose images are (almost) one solid colour: the last ToRGB bias sets it."""
    torch.manual_seed(seed)
    G, D = Generator(**TINY_G_KWARGS), Discriminator(**TINY_D_KWARGS)
    with torch.no_grad():
        for block in G.synthesis.blocks():
            block.torgb.weight.mul_(0.1)
            block.torgb.bias.zero_()
        G.synthesis.b32.torgb.bias.copy_(torch.tensor(COLOURS[name]))
    return UnionModel(G, D, [name]).save_pretrained(folder / name, write_card=False)


def mean_colour(model: UnionModel, label, seeds=range(16)) -> torch.Tensor:
    return model.generate(label, seeds).mean(dim=[0, 2, 3])


def tiny_pair(seed: int = 0, c_dim: int = 0, **d_changes) -> tuple[Generator, Discriminator]:
    """Freshly initialised tiny (G, D), the same for the same seed in every process."""
    torch.manual_seed(seed)
    return Generator(**TINY_G_KWARGS, c_dim=c_dim), Discriminator(**TINY_D_KWARGS, c_dim=c_dim, **d_changes)


class SolidSource(Source):
    """One colour (per class) plus a little noise, drawn from the generator it is given; counts the images
    it has drawn (``drawn``)."""

    resolution = 32
    channels = 3

    def __init__(self, colours=(RED,), noise: float = 0.1):
        self.colours = torch.tensor(colours, dtype=torch.float32)
        self.num_classes = len(colours)
        self.noise = noise
        self.drawn = 0

    def to(self, device):
        return self

    def sample(self, batch_size, device, generator=None):
        self.drawn += batch_size
        labels = torch.randint(self.num_classes, [batch_size], generator=generator)
        noise = torch.randn([batch_size, 3, 32, 32], generator=generator)
        images = (self.colours[labels][:, :, None, None] + self.noise * noise).clamp(-1, 1)
        return images.to(device), labels.to(device)


class SignalOnIteration:
    """A G penalty of exactly zero that sends this process ``signum`` during the ``iteration``-th G step
    (1-based) of the run it is given to, i.e. in the middle of a training iteration: kills and interruptions
    at a chosen point, without changing what is computed."""

    def __init__(self, iteration: int, signum: int):
        self.iteration, self.signum, self.calls = iteration, signum, 0

    def __call__(self, G) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.iteration:
            os.kill(os.getpid(), self.signum)
        return torch.zeros([])


class BankSource(Source):
    """Fixed images per batch, ignoring the generator: the k-th batch of ``batch`` (however many batches
    one call asks for) is rows ``rank::world`` of global batch k, so ``world`` processes together see
    exactly what one process sees (the loop slices its shared draws the same way)."""

    resolution = 32
    channels = 3
    num_classes = 1

    def __init__(self, global_batch: int, rank: int = 0, world: int = 1, seed: int = 7):
        self.global_batch, self.rank, self.world, self.seed = global_batch, rank, world, seed
        self.batches = 0

    def to(self, device):
        return self

    def sample(self, batch_size, device, generator=None):
        batch = self.global_batch // self.world
        assert batch_size % batch == 0
        images = []
        for _ in range(batch_size // batch):
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.batches)
            global_images = torch.rand([self.global_batch, 3, 32, 32], generator=generator) * 2 - 1
            images.append(global_images[self.rank :: self.world])
            self.batches += 1
        return torch.cat(images).to(device), torch.zeros(batch_size, dtype=torch.int64, device=device)


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
