"""Shared fixtures: tiny, perturbed networks so every term of the forward pass is exercised."""

import os

import pytest
import torch

# Tests never reach the network: the Hub client must not try.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from training_helpers import TINY_D_KWARGS, TINY_G_KWARGS  # noqa: E402

from cocktail.networks import Discriminator, Generator  # noqa: E402


def perturbed(network, seed, scale=0.1):
    """Random init plus noise on every parameter (non-zero biases, noise strengths, …)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return network.eval()


@pytest.fixture
def single_thread():
    """One torch thread for the test: tiny steps on a busy 2-core machine run faster without OpenMP's spinning."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_networks():
    """An unconditional tiny (G, D) pair with deterministic, non-trivial weights."""
    torch.manual_seed(0)
    G = perturbed(Generator(**TINY_G_KWARGS), seed=1)
    D = perturbed(Discriminator(**TINY_D_KWARGS), seed=2)
    with torch.no_grad():
        G.mapping.w_avg.normal_(generator=torch.Generator().manual_seed(3))
    return G, D
