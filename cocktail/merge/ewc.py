"""EWC (Li et al. 2020) as the GAN Cocktail authors ran it: the diagonal Fisher information of the root,
estimated once per root and cached, and the penalty on moving the weights it says matter."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..errors import CocktailError
from ..files import json_digest, replace_file, saving, weights_digest
from ..networks import Discriminator, Generator

FISHER_BATCH = 32  # the authors' batch for the Fisher estimate; its scale, and so λ's meaning, depends on it
FISHER_SEED = 0
# Parameters the conditional conversion adds or replaces: no source value to stay near (EWC skips them).
EWC_UNPENALISED = {"G": ("mapping.embed.",), "D": ("mapping.", "b4.out.")}


def diagonal_fisher(batch_log_likelihood: Callable[[], torch.Tensor], params: dict[str, torch.Tensor],
                    batches: int, progress: bool = True) -> dict[str, torch.Tensor]:
    """F_i = E_b[(∂ℓ_b/∂θ_i)²], ℓ_b the mean log-likelihood of batch b, over ``batches`` fresh batches.

    The squared gradient of a batch mean, as the GAN Cocktail authors estimated it: its scale depends on
    the batch size (FISHER_BATCH), which therefore belongs to the cache key and the provenance.
    """
    names, tensors = list(params), list(params.values())
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    for _ in tqdm(range(batches), desc="Fisher information", unit="batch", disable=not progress):
        grads = torch.autograd.grad(batch_log_likelihood(), tensors, allow_unused=True)
        for name, grad in zip(names, grads, strict=True):
            if grad is not None:
                fisher[name] += grad.detach().square() / batches
    return fisher


def fisher_information(G: Generator, D: Discriminator, samples: int, device="cpu",
                       progress: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """Diagonal Fisher of G's and D's weights (Li et al. 2020): the log-likelihood is log D(G(z)), D's
    belief that G's own samples are real, as in the authors' run; ``samples`` / FISHER_BATCH batches."""
    G = copy.deepcopy(G).to(device).eval().requires_grad_(True)
    D = copy.deepcopy(D).to(device).eval().requires_grad_(True)
    latents = torch.Generator().manual_seed(FISHER_SEED)

    def batch_log_likelihood():
        z = torch.randn([FISHER_BATCH, G.z_dim], generator=latents).to(device)
        labels = torch.randint(max(G.c_dim, 1), [FISHER_BATCH], generator=latents).to(device)
        c = F.one_hot(labels, G.c_dim).float() if G.c_dim else None
        return -F.softplus(-D(G(z, c, noise_mode="const"), c).float()).mean()

    params = {f"G.{n}": p for n, p in G.named_parameters()} | {f"D.{n}": p for n, p in D.named_parameters()}
    fisher = diagonal_fisher(batch_log_likelihood, params, samples // FISHER_BATCH, progress)
    return {kind: {name.removeprefix(f"{kind}."): value.cpu() for name, value in fisher.items()
                   if name.startswith(f"{kind}.")} for kind in ("G", "D")}


def fisher_cache_dir() -> Path:
    """Where Fisher estimates are kept, next to the other assets of the Hugging Face cache."""
    from huggingface_hub import cached_assets_path

    from ..card import LIBRARY_NAME

    return Path(cached_assets_path(LIBRARY_NAME, namespace="fisher-information"))


def cached_fisher(G: Generator, D: Discriminator, samples: int, accelerator, log) -> dict:
    """The Fisher information of a source, estimated once per (weights, samples, batch, seed) and then reused
    by every EWC run of that source; the main process estimates it, every process reads the file."""
    key = json_digest([weights_digest(G, D), samples, FISHER_BATCH, FISHER_SEED, "log D(G(z)), batch mean"])
    path = fisher_cache_dir() / f"{key[:32]}.safetensors"
    main = accelerator is None or accelerator.is_main_process
    if not path.is_file() and main:
        log(f"EWC: estimating the root's Fisher information from {samples} samples")
        device = accelerator.device if accelerator is not None else "cpu"
        fisher = fisher_information(G, D, samples, device=device)
        tensors = {f"{kind}.{name}": value.contiguous() for kind in fisher for name, value in fisher[kind].items()}
        with saving(f"the Fisher information {path}", path.parent):
            replace_file(path, lambda temporary: save_file(tensors, str(temporary)))
    elif main:
        log(f"EWC: the root's Fisher information ({samples} samples) from the cache, {path}")
    if accelerator is not None:
        accelerator.wait_for_everyone()
    flat = load_file(str(path))
    return {kind: {name.removeprefix(f"{kind}."): value for name, value in flat.items() if name.startswith(f"{kind}.")}
            for kind in ("G", "D")}


def conditional_fisher(source_fisher: dict[str, torch.Tensor], network: torch.nn.Module,
                       unpenalised: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The source's Fisher laid over the converted network's parameters; the ones conversion added get none.

    mapping.fc0.weight gained columns for the class embedding (no penalty) and a fan-in rescale of its
    stored values by sqrt(new_in / old_in): the source columns' Fisher scales by old_in / new_in, so that
    F·(θ − θ*)² is the same quantity as in the source.
    """
    fisher = {}
    for name, p in network.named_parameters():
        if name.startswith(unpenalised) or name not in source_fisher:
            continue
        value = source_fisher[name].to(p.device)
        if value.shape != p.shape:
            if value.ndim != 2 or value.shape[0] != p.shape[0] or value.shape[1] > p.shape[1]:
                raise CocktailError(f"EWC: {name} has shape {tuple(p.shape)}, the source's {tuple(value.shape)}")
            widened = torch.zeros_like(p)
            widened[:, : value.shape[1]] = value * (value.shape[1] / p.shape[1])
            value = widened
        fisher[name] = value
    return fisher


def ewc_penalty(network: torch.nn.Module, fisher: dict[str, torch.Tensor],
                weights: dict[str, float]) -> Callable[[torch.nn.Module], torch.Tensor] | None:
    """Σ_groups λ_group Σ_i F_i (θ_i − θ*_i)², θ* = the weights now (the source's); groups by name prefix
    (G: "mapping." and "synthesis."; D: all). None when every λ is 0."""
    terms = [(name, weight, prefix) for prefix, weight in weights.items() if weight
             for name in fisher if name.startswith(prefix)]
    if not terms:
        return None
    anchor = {name: p.detach().clone() for name, p in network.named_parameters() if name in fisher}

    def penalty(current: torch.nn.Module) -> torch.Tensor:
        params = dict(current.named_parameters())
        total = 0.0
        for name, weight, _ in terms:
            p = params[name]
            total = total + weight * (fisher[name].to(p.device) * (p - anchor[name].to(p.device)).square()).sum()
        return total

    return penalty
