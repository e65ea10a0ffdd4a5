"""The reals, drawn several iterations ahead.

A generator source pays a fixed cost per call (hundreds of small operations: for the tiny example networks on
a CPU, a call of 11 images costs ~10 ms, one of 85 ~35 ms), and a mixture calls each of its sources. So the
loop draws the reals of up to ``MAX_AHEAD`` iterations in one call, while that call stays small (see
``iterations_ahead``), and hands them out a batch at a time. Every batch is still ``batch`` independent
draws from the source: a mixture shuffles the whole chunk, and any run of consecutive draws of it is an
i.i.d. sample. What changes is only which random numbers make which image.

Resume stays exact: a checkpoint keeps the source generator's state at the start of the current chunk and
how many of its batches were used; resuming draws that chunk again (sources are deterministic functions of
the generator) and skips them.
"""

from __future__ import annotations

import torch

MAX_AHEAD = 8  # iterations per chunk: past ~85 images a call, the tiny generators gain little per image
MAX_CALL_PIXELS = 128 * 32 * 32  # per generator call, at the resolution it generates at


def iterations_ahead(batch: int, source) -> int:
    """How many batches one draw covers: up to ``MAX_AHEAD`` while no generator call of it makes more than
    ``MAX_CALL_PIXELS`` pixels (``Source.largest_call``). So, for batches of 32: 4 from one 32 px generator,
    8 from a mixture of three; 1 from one 64 px generator and from any at 128 px, where a call's fixed cost
    no longer matters and a bigger one would only take memory; and 1 for a source that cannot say (a foreign
    sampler may make 1024 px images)."""
    largest_call = getattr(source, "largest_call", None)
    ahead = 1
    while ahead < MAX_AHEAD and largest_call is not None:
        pixels = largest_call((ahead + 1) * batch)
        if pixels is None or pixels > MAX_CALL_PIXELS:
            break
        ahead += 1
    return ahead


class RealsAhead:
    """Batches of ``batch`` reals from ``source``, drawn ``ahead`` batches at a time with ``generator``."""

    def __init__(self, source, batch: int, device: torch.device, generator: torch.Generator):
        self.source, self.batch, self.device, self.generator = source, batch, device, generator
        self.ahead = iterations_ahead(batch, source)
        self._restart()

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: (images [batch, C, R, R], labels [batch])."""
        if self.chunk is None or self.used == self.ahead:
            self._draw()
        images, labels = self.chunk
        start = self.used * self.batch
        self.used += 1
        return images[start : start + self.batch], labels[start : start + self.batch]

    def position(self) -> tuple[torch.Tensor, int]:
        """(generator state at the current chunk's start, batches of it used): what a checkpoint keeps."""
        return self.chunk_start, self.used

    def restore(self, generator_state: torch.Tensor, used: int) -> None:
        """Go on from a ``position()``: the chunk it points into is drawn again and its first ``used``
        batches skipped. A position past this run's chunk (saved with another batch size or source) cannot
        be replayed: the reals then go on with a new chunk from the saved chunk's start."""
        self.generator.set_state(generator_state)
        self._restart()
        if 0 < used <= self.ahead:
            self._draw()
            self.used = used

    def reseed(self, seed: int) -> None:
        """Go on from a fresh seed, with a new chunk (a resume that cannot replay the saved draws)."""
        self.generator.manual_seed(seed)
        self._restart()

    def _restart(self) -> None:
        """Forget the drawn chunk: the next batch starts a new one from the generator's current state."""
        self.chunk, self.used = None, 0
        self.chunk_start = self.generator.get_state()

    @torch.no_grad()
    def _draw(self) -> None:
        self.chunk_start = self.generator.get_state()
        self.chunk = self.source.sample(self.ahead * self.batch, self.device, self.generator)
        self.used = 0
