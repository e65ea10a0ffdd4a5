"""StyleGAN2's four loss phases, each checked on its own: hand formulas, linear toy networks, tiny real ones."""

import math

import pytest
import torch

from cocktail.training.loss import (
    PathLengthPenalty,
    discriminator_loss,
    generator_loss,
    path_lengths,
    r1_penalty,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_generator_loss_is_the_non_saturating_logistic_loss():
    logits = torch.tensor([[2.0], [-1.0], [0.0]])
    loss, reported = generator_loss(logits)
    expected = (softplus(-2.0) + softplus(1.0) + softplus(0.0)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert reported == {"loss/G": loss}
    # Non-saturating: a G that D rejects with confidence still gets a gradient of about -1 per logit.
    rejected = torch.tensor([[-20.0]], requires_grad=True)
    generator_loss(rejected)[0].backward()
    assert rejected.grad.item() == pytest.approx(-1.0, abs=1e-6)


def test_discriminator_loss_and_its_scores():
    real, fake = torch.tensor([[3.0], [1.0]]), torch.tensor([[-2.0], [0.5]])
    loss, reported = discriminator_loss(real, fake)
    expected = (softplus(-2.0) + softplus(0.5)) / 2 + (softplus(-3.0) + softplus(-1.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert reported["loss/D"] is loss
    assert reported["scores/real"].item() == pytest.approx(2.0)
    assert reported["scores/fake"].item() == pytest.approx(-0.75)
    # A D that cannot tell (all logits 0) pays log 4; in bfloat16 (autocast) the loss is still float32.
    chance, _ = discriminator_loss(torch.zeros(4, 1, dtype=torch.bfloat16), torch.zeros(4, 1, dtype=torch.bfloat16))
    assert chance.dtype == torch.float32 and chance.item() == pytest.approx(math.log(4), rel=1e-6)


def test_r1_is_zero_for_a_discriminator_that_ignores_its_input():
    reals = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    logits = 0.0 * reals.sum(dim=[1, 2, 3], keepdim=True) + 5.0
    penalty, reported = r1_penalty(logits, reals)
    assert penalty.item() == 0.0 and reported == {"loss/r1_penalty": penalty}


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm_and_is_differentiable():
    weight = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    reals = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    logits = (reals * weight).sum(dim=[1, 2, 3])[:, None]
    penalty, _ = r1_penalty(logits, reals)
    assert penalty.item() == pytest.approx(weight.square().sum().item(), rel=1e-5)
    penalty.backward()  # the gradient reaches D's weights: d|w|^2/dw = 2w
    assert torch.allclose(weight.grad, 2 * weight.detach(), rtol=1e-5, atol=1e-6)


def test_r1_on_a_tiny_discriminator_reaches_its_weights(tiny_networks):
    _, D = tiny_networks
    reals = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    penalty, _ = r1_penalty(D(reals, None, force_fp32=True), reals)
    assert math.isfinite(penalty.item()) and penalty.item() > 0
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())


def test_path_lengths_of_a_linear_generator_match_its_jacobian():
    """images = M ws, so J^T y = M^T y: the lengths can be written out without autograd."""
    gen = torch.Generator().manual_seed(4)
    matrix = torch.randn(2, 5, 3, 4, 4, generator=gen)  # (num_ws, w_dim) -> (channels, height, width)
    ws = torch.randn(6, 2, 5, generator=gen).requires_grad_(True)
    noise = torch.randn(6, 3, 4, 4, generator=gen)
    images = torch.einsum("nkd,kdchw->nchw", ws, matrix)
    lengths = path_lengths(images, ws, noise)
    jt_y = torch.einsum("kdchw,nchw->nkd", matrix, noise / 4.0)  # y = noise / sqrt(4 * 4 pixels)
    expected = jt_y.square().sum(dim=2).mean(dim=1).sqrt()
    assert torch.allclose(lengths, expected, rtol=1e-5)


def test_path_length_penalty_moves_its_mean_by_the_ema_formula():
    decay = 0.25
    penalty_fn = PathLengthPenalty(decay)
    assert penalty_fn.mean.item() == 0.0
    lengths = torch.tensor([1.0, 3.0])
    penalty, reported = penalty_fn(lengths, lengths.mean())
    assert penalty_fn.mean.item() == pytest.approx(decay * 2.0)  # 0 + decay * (2 - 0)
    assert penalty.item() == pytest.approx(((1.0 - 0.5) ** 2 + (3.0 - 0.5) ** 2) / 2)
    assert reported == {"loss/pl_penalty": penalty}
    penalty_fn(torch.tensor([6.0]), torch.tensor(6.0))
    assert penalty_fn.mean.item() == pytest.approx(0.5 + decay * (6.0 - 0.5))


def test_path_length_penalty_on_a_tiny_generator_reaches_its_weights(tiny_networks):
    G, _ = tiny_networks
    G.zero_grad(set_to_none=True)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(5))
    ws = G.mapping(z, None)
    images = G.synthesis(ws, noise_mode="const", force_fp32=True)
    lengths = path_lengths(images, ws, torch.randn(images.shape, generator=torch.Generator().manual_seed(6)))
    assert lengths.shape == (4,) and (lengths > 0).all()
    penalty, _ = PathLengthPenalty(0.01)(lengths, lengths.mean().detach())
    penalty.backward()
    assert G.synthesis.b4.conv1.affine.weight.grad.abs().sum() > 0
