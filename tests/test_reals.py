"""The reals drawn ahead: batches are slices of one draw per chunk, and a saved position resumes exactly."""

import pytest
import torch
from training_helpers import RED, TINY_G_KWARGS, SolidSource

from cocktail.networks import Generator
from cocktail.sources import ForeignSource, MixtureSource, ModelSource
from cocktail.training.reals import MAX_AHEAD, RealsAhead, iterations_ahead

BLUE = (-1.0, -0.5, 1.0)


def reals(batch=4, seed=0, colours=(RED, BLUE)):
    source = SolidSource(colours)
    return RealsAhead(source, batch, torch.device("cpu"), torch.Generator().manual_seed(seed)), source


def take(ahead: RealsAhead, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [ahead.next() for _ in range(count)]


def test_one_call_per_chunk_and_batches_are_its_slices():
    ahead, source = reals()
    assert ahead.ahead == MAX_AHEAD
    batches = take(ahead, MAX_AHEAD + 1)
    assert source.drawn == 2 * MAX_AHEAD * 4  # two chunks drawn, not nine batches
    # The first chunk is exactly what one call with the same generator state gives.
    images, labels = SolidSource((RED, BLUE)).sample(MAX_AHEAD * 4, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([b[0] for b in batches[:MAX_AHEAD]]), images)
    assert torch.equal(torch.cat([b[1] for b in batches[:MAX_AHEAD]]), labels)
    assert all(b[0].shape == (4, 3, 32, 32) and b[1].shape == (4,) for b in batches)


@pytest.mark.parametrize("used_before_saving", [1, 3, MAX_AHEAD, MAX_AHEAD + 2])
def test_a_saved_position_resumes_the_same_batches(used_before_saving):
    straight, _ = reals(seed=5)
    expected = take(straight, used_before_saving + MAX_AHEAD + 1)

    first, _ = reals(seed=5)
    take(first, used_before_saving)
    state, used = first.position()
    resumed, source = reals(seed=99)  # a fresh process: another generator state, nothing drawn
    resumed.restore(state, used)
    assert resumed.position()[1] == used and torch.equal(resumed.position()[0], state)
    for (want_images, want_labels), (images, labels) in zip(expected[used_before_saving:],
                                                            take(resumed, MAX_AHEAD + 1), strict=True):
        assert torch.equal(images, want_images) and torch.equal(labels, want_labels)


def test_a_position_before_any_draw_starts_from_the_generator():
    fresh, _ = reals(seed=2)
    state, used = fresh.position()
    assert used == 0
    resumed, source = reals(seed=7)
    resumed.restore(state, used)
    assert source.drawn == 0  # nothing to redraw
    assert torch.equal(resumed.next()[0], reals(seed=2)[0].next()[0])


def test_a_position_past_the_chunk_goes_on_from_its_start():
    """Saved with a larger chunk (another batch size): no replay, a new chunk from the saved start."""
    ahead, _ = reals(seed=3)
    start = ahead.position()[0]
    ahead.restore(start, MAX_AHEAD + 1)
    assert ahead.position()[1] == 0
    assert torch.equal(ahead.next()[0], reals(seed=3)[0].next()[0])


def test_reseed_drops_the_chunk_and_starts_from_the_seed():
    ahead, _ = reals(seed=1)
    take(ahead, 3)
    ahead.reseed(4)
    assert ahead.position()[1] == 0
    assert torch.equal(ahead.next()[0], reals(seed=4)[0].next()[0])


class Calls:
    """A stand-in source that only says how many pixels its largest generator call makes."""

    def __init__(self, resolution: int | None, share: float = 1.0):
        self.resolution, self.share = resolution, share

    def largest_call(self, batch_size):
        return None if self.resolution is None else int(batch_size * self.share) * self.resolution**2


def test_only_small_generator_calls_draw_ahead():
    assert iterations_ahead(32, Calls(32)) == 4  # 128 images of 32 px per call
    assert iterations_ahead(32, Calls(32, share=1 / 3)) == MAX_AHEAD  # a mixture of three splits each draw
    assert iterations_ahead(64, Calls(32)) == 2
    assert iterations_ahead(32, Calls(64)) == 1
    assert iterations_ahead(32, Calls(256)) == 1  # a call's fixed cost is nothing next to its work
    assert iterations_ahead(4, Calls(None)) == 1  # a foreign sampler: what it makes is unknown
    assert iterations_ahead(4, object()) == 1  # a source that cannot say


def test_sources_say_how_large_their_calls_get():
    G = Generator(**{**TINY_G_KWARGS, "img_resolution": 64})
    small = ModelSource(G, resolution=32)  # made at 64 px, handed out at 32
    assert small.largest_call(10) == 10 * 64 * 64
    foreign = ForeignSource(lambda n, g, d: torch.zeros(n, 3, 8, 8), 32)
    assert foreign.largest_call(10) is None
    other = ModelSource(Generator(**TINY_G_KWARGS), num_classes=2, label=1)
    assert MixtureSource([small, other], weights=[1, 3]).largest_call(100) == max(25 * 64 * 64, 75 * 32 * 32)
    assert MixtureSource([small, foreign]).largest_call(10) is None
