"""EWC as its authors ran it: the Fisher estimate on known answers, its cache, and what it never pins."""

import math

import pytest
import torch

from cocktail.merge import ewc
from cocktail.merge.ewc import (
    EWC_UNPENALISED,
    FISHER_BATCH,
    cached_fisher,
    conditional_fisher,
    diagonal_fisher,
    ewc_penalty,
    fisher_information,
)
from cocktail.merge.surgery import make_conditional


def test_diagonal_fisher_averages_squared_batch_gradients():
    """Gaussian log-likelihood -(x - θ)²/2: a batch's gradient is mean(x_b) - θ, so F = mean_b (mean(x_b) - θ)²."""
    theta = torch.tensor([0.5, -1.0], requires_grad=True)
    batches = [torch.tensor([[1.0, 0.0], [3.0, -2.0]]), torch.tensor([[0.0, -1.0], [-1.0, -3.0]])]
    remaining = iter(batches)

    def batch_log_likelihood():
        return (-(next(remaining) - theta).square() / 2).sum(dim=1).mean()

    fisher = diagonal_fisher(batch_log_likelihood, {"theta": theta}, batches=2, progress=False)
    expected = torch.stack([(x.mean(0) - theta.detach()).square() for x in batches]).mean(0)
    assert torch.allclose(fisher["theta"], expected)
    # batch gradients (1.5, 0) and (-1, -1): mean of squares, not the square of their mean (0.0625, 0.25)
    assert torch.allclose(fisher["theta"], torch.tensor([1.625, 0.5]))


def test_fisher_of_the_networks_matches_the_closed_form(tiny_networks):
    """With D's output weight at zero, every logit is the bias term l = b·g: ∂ log σ(l)/∂b = σ(-l)·g for every
    sample, so F(b) = (σ(-l)·g)² exactly, and nothing behind the output layer has any Fisher information."""
    G, D = tiny_networks
    with torch.no_grad():
        D.b4.out.weight.zero_()
        D.b4.out.bias.fill_(0.3)
    fisher = fisher_information(G, D, samples=2 * FISHER_BATCH, progress=False)
    gain = D.b4.out.bias_gain
    logit = 0.3 * gain
    assert fisher["D"]["b4.out.bias"].item() == pytest.approx((gain / (1 + math.exp(logit))) ** 2, rel=1e-5)
    assert all(not value.any() for value in fisher["G"].values())
    assert not fisher["D"]["b32.conv0.weight"].any() and fisher["D"]["b4.out.weight"].any()


def test_fisher_is_estimated_once_per_source_and_sample_count(tiny_networks, tmp_path, monkeypatch):
    G, D = tiny_networks
    monkeypatch.setattr(ewc, "fisher_cache_dir", lambda: tmp_path)
    first = cached_fisher(G, D, FISHER_BATCH, None, lambda _: None)
    (cached,) = tmp_path.glob("*.safetensors")

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached estimate should have been used")

    monkeypatch.setattr(ewc, "fisher_information", must_not_run)
    logs = []
    again = cached_fisher(G, D, FISHER_BATCH, None, logs.append)
    assert "from the cache" in logs[0]
    assert all(torch.equal(first[k][name], again[k][name]) for k in ("G", "D") for name in first[k])
    with pytest.raises(AssertionError, match="cached estimate"):  # another sample count is another estimate
        cached_fisher(G, D, 2 * FISHER_BATCH, None, lambda _: None)
    assert [p.name for p in tmp_path.glob("*.safetensors")] == [cached.name]


def moved(network: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The network after some 'training': every parameter nudged."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return network


def penalty_grads(network, fisher, weights):
    penalty = ewc_penalty(network, fisher, weights)
    moved(network, seed=5).zero_grad()
    penalty(network).backward()
    return {name: p.grad for name, p in network.named_parameters()}


def test_what_the_conversion_added_gets_no_penalty_gradient(tiny_networks):
    G_source, D_source = tiny_networks
    fisher = fisher_information(G_source, D_source, samples=FISHER_BATCH, progress=False)
    G, D = make_conditional(G_source, D_source, 3)
    G.requires_grad_(True), D.requires_grad_(True)

    g_grads = penalty_grads(G, conditional_fisher(fisher["G"], G, EWC_UNPENALISED["G"]),
                            {"mapping.": 1.0, "synthesis.": 1.0})
    assert g_grads["mapping.embed.weight"] is None and g_grads["mapping.embed.bias"] is None
    z_dim = G_source.z_dim
    assert not g_grads["mapping.fc0.weight"][:, z_dim:].any()  # the class-embedding columns
    assert g_grads["mapping.fc0.weight"][:, :z_dim].any() and g_grads["synthesis.b32.conv1.weight"].any()

    d_grads = penalty_grads(D, conditional_fisher(fisher["D"], D, EWC_UNPENALISED["D"]), {"": 1.0})
    assert all(d_grads[name] is None for name in d_grads if name.startswith(("mapping.", "b4.out.")))
    assert d_grads["b32.conv0.weight"].any() and d_grads["b4.fc.weight"].any()


def test_mapping_synthesis_and_discriminator_have_separate_weights(tiny_networks):
    G_source, D_source = tiny_networks
    fisher = fisher_information(G_source, D_source, samples=FISHER_BATCH, progress=False)
    G, _ = make_conditional(G_source, D_source, 2)
    G.requires_grad_(True)
    grads = penalty_grads(G, conditional_fisher(fisher["G"], G, EWC_UNPENALISED["G"]),
                          {"mapping.": 0.0, "synthesis.": 1.0})
    assert all(grads[name] is None for name in grads if name.startswith("mapping."))
    assert grads["synthesis.b32.conv1.weight"].any()
    assert ewc_penalty(G, conditional_fisher(fisher["G"], G, EWC_UNPENALISED["G"]), {"mapping.": 0.0}) is None


def test_widened_fc0_fisher_keeps_the_penalty_of_the_source_parametrisation(tiny_networks):
    """Conversion rescales fc0's stored weights by sqrt(new_in / old_in): F·Δ² must not change with it."""
    G_source, D_source = tiny_networks
    fisher = {"mapping.fc0.weight": torch.rand_like(G_source.mapping.fc0.weight)}
    G, _ = make_conditional(G_source, D_source, 3)
    widened = conditional_fisher(fisher, G, EWC_UNPENALISED["G"])["mapping.fc0.weight"]
    scale = math.sqrt(G.mapping.fc0.weight.shape[1] / G_source.mapping.fc0.weight.shape[1])
    delta = torch.randn_like(G_source.mapping.fc0.weight)
    source_penalty = (fisher["mapping.fc0.weight"] * delta.square()).sum()
    converted_penalty = (widened[:, : delta.shape[1]] * (delta * scale).square()).sum()
    assert converted_penalty.item() == pytest.approx(source_penalty.item(), rel=1e-5)
