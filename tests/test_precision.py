"""Float16 blocks in training: they want loss scaling, an overflow costs a step, the regularisers run in float32.

No GPU here, so the float16 blocks are asked for on the CPU (``low_precision["cpu"]``), which is what CUDA
gets by default for a network with ``num_fp16_res > 0``.
"""

import math

import pytest
import torch
from accelerate import Accelerator
from training_helpers import SolidSource, tiny_pair

from cocktail.errors import CocktailError
from cocktail.networks import Generator, network_kwargs
from cocktail.training import TrainingConfig, loop, train

pytestmark = pytest.mark.usefixtures("single_thread")


def float16_pair():
    """Tiny (G, D) whose two top blocks are float16 on this CPU, as num_fp16_res=2 is on CUDA."""
    G, D = tiny_pair(num_fp16_res=2)
    G16 = Generator(**network_kwargs(G, num_fp16_res=2))
    G16.load_state_dict(G.state_dict())
    for network in (G16, D):
        network.low_precision["cpu"] = torch.float16
    return G16, D


def config(tmp_path, **changes):
    defaults = dict(kimg=0.024, batch_size=4, r1_interval=2, pl_interval=2, ema_kimg=0.01,
                    output_dir=str(tmp_path / "run"), progress=False)
    return TrainingConfig(**{**defaults, **changes})


class Inf:
    """A G penalty that is infinite on the chosen calls (1-based) and zero otherwise: injected overflows."""

    def __init__(self, calls):
        self.calls, self.count = set(calls), 0

    def __call__(self, G):
        self.count += 1
        value = math.inf if self.count in self.calls else 0.0
        return torch.tensor(value, device=G.device)


@pytest.mark.slow
def test_float16_overflow_skips_the_step_instead_of_ending_the_run(tmp_path):
    G, D = float16_pair()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    result = train(G, D, SolidSource(), config(tmp_path), accelerator=Accelerator(cpu=True),
                   g_penalty=Inf([2]))
    assert result.images_seen == 24
    assert all(torch.isfinite(p).all() for p in [*result.G.parameters(), *result.D.parameters()])
    assert any(not torch.equal(before[k], v) for k, v in result.G.state_dict().items())


@pytest.mark.slow
def test_an_overflow_no_loss_scale_cures_is_divergence(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "MAX_SKIPPED_STEPS", 3)  # 32 by default: the scale falls from 2^16 to 2^-16
    G, D = float16_pair()
    with pytest.raises(CocktailError, match=r"G loss stayed non-finite for 4 steps in a row \(loss scale 8192\)"):
        train(G, D, SolidSource(), config(tmp_path, kimg=0.024, r1_gamma=0, pl_weight=0),
              accelerator=Accelerator(cpu=True), g_penalty=Inf(range(1, 7)))


def test_without_float16_blocks_a_non_finite_loss_still_ends_the_run(tmp_path):
    with pytest.raises(CocktailError, match="training diverged at kimg 0.004: G loss is inf"):
        train(*tiny_pair(), SolidSource(), config(tmp_path), accelerator=Accelerator(cpu=True),
              g_penalty=Inf([2]))


def test_regularisers_run_in_float32_and_main_steps_in_float16(tmp_path):
    """R1 (D on leaf reals that need a gradient) and path length (half batches) bypass the float16 blocks."""
    G, D = float16_pair()
    seen = {"G": [], "D": []}

    def g_hook(module, args, out):
        seen["G"].append((len(args[0]), out[0].dtype))

    def d_hook(module, args, out):
        img = args[1]
        seen["D"].append((img.is_leaf and img.requires_grad, out.dtype))

    G.synthesis.b32.register_forward_hook(g_hook)
    D.b32.register_forward_hook(d_hook)
    train(G, D, SolidSource(), config(tmp_path, kimg=0.008), accelerator=Accelerator(cpu=True))
    assert {dtype for batch, dtype in seen["G"] if batch == 2} == {torch.float32}  # path length
    assert {dtype for batch, dtype in seen["G"] if batch == 4} == {torch.float16}
    assert {dtype for r1, dtype in seen["D"] if r1} == {torch.float32}
    assert {dtype for r1, dtype in seen["D"] if not r1} == {torch.float16}
