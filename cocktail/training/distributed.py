"""What makes N processes one run: gradients averaged by hand, random draws shared, decisions agreed on.

Every process keeps its models unwrapped and averages the gradients itself, in one all-reduce per step,
because R1 and path length need a double backward that DDP does not support. Everything random in the
loop but the reals and StyleGAN2's per-layer noise (latents, mixing cut-offs, path-length noise) is drawn
for the *global* batch from a generator seeded alike on all ranks and sliced ``[rank::world]``, so N
processes x B/N follow the same maths as 1 process x B, and the minibatch-std groups of D line up too.
With one process, every function here is a no-op or a plain local computation.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch
import torch.distributed as dist


def derive_seed(*keys) -> int:
    """A 63-bit seed from the run seed and names/numbers, stable across processes and platforms."""
    words = [k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def seed_process_rngs(seed: int, rank: int, source_generator: torch.Generator) -> None:
    """Seed this process's own RNGs (torch's, which draws the per-layer noise, numpy's, python's, and the
    source's generator for the reals) differently on every rank."""
    torch.manual_seed(derive_seed(seed, rank, "torch"))
    np.random.seed(derive_seed(seed, rank, "numpy") % 2**32)
    random.seed(derive_seed(seed, rank, "python"))
    source_generator.manual_seed(derive_seed(seed, rank, "source"))


class SharedDraws:
    """Random draws for the global batch from a generator that is the same on every rank; each keeps its rows."""

    def __init__(self, seed: int, rank: int, world: int, device: torch.device):
        self.rank, self.world, self.device = rank, world, device
        self.generator = torch.Generator(device)
        self.generator.manual_seed(derive_seed(seed, "shared"))

    def __call__(self, fn, n: int, shape, **kwargs) -> torch.Tensor:
        """``fn(size=[n * world, *shape], ...)`` (``torch.randn``, ``torch.rand``, …), rows ``rank::world``."""
        values = fn(size=[n * self.world, *shape], generator=self.generator, device=self.device, **kwargs)
        return values[self.rank :: self.world]


def mean_over_processes(tensor: torch.Tensor, world: int) -> None:
    """Replace ``tensor`` in place by its mean over all processes."""
    if world > 1:
        dist.all_reduce(tensor)
        tensor.div_(world)


def average_gradients(params, scalars: list[torch.Tensor], world: int) -> tuple[list[float], bool]:
    """Average the gradients of ``params`` and the ``scalars`` over processes in one all-reduce.

    Each parameter's gradient becomes a view of the averaged buffer (a missing one counts as zero).
    Returns the scalars' global means and whether every averaged gradient is finite, in one device sync.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    stacked = torch.stack([s.detach().float() for s in scalars])
    flat = torch.cat([g.reshape(-1) for g in grads] + [stacked])
    mean_over_processes(flat, world)
    count = len(scalars)
    checks = torch.cat([flat[-count:], torch.isfinite(flat[:-count]).all().float()[None]]).tolist()
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return checks[:-1], bool(checks[-1])


def max_over_processes(value: int, world: int, device: torch.device) -> int:
    """The largest ``value`` any process holds (e.g. a signal number, 0 for none)."""
    if world == 1:
        return value
    flag = torch.tensor([float(value)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def gather_from_all(value, world: int) -> list:
    """Every process's ``value`` (any picklable object), in rank order."""
    if world == 1:
        return [value]
    values = [None] * world
    dist.all_gather_object(values, value)
    return values


def broadcast_weights(modules) -> None:
    """Every rank takes rank 0's parameters and buffers, whatever each was given."""
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)
