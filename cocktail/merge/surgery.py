"""Network surgery for merging: networks made conditional, grown by classes, averaged.

Each keeps what the networks already draw (or, for the average, every weight's mean), so that a merge's
fine-tuning starts from its parents' images instead of from noise.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch

from ..errors import CocktailError
from ..networks import Discriminator, Generator, network_kwargs, normalize_2nd_moment


def make_conditional(generator: Generator, discriminator: Discriminator | None, num_classes: int, seed: int = 0):
    """Turn unconditional (c_dim=0) networks into ``num_classes``-class ones that draw the same images.

    Generator: the class embedding starts class-independent (zero weight, random bias), and the first
    mapping layer's bias cancels the constant it adds, so w and the image are unchanged for every class.
    Unlike zero-initialised new columns, which sit under the mapping's 0.01 learning-rate multiplier
    and take tens of thousands of steps to carry any class signal, the embedding weight learns at
    full rate: classes separate within the first hundreds of steps.
    Discriminator: the new class map is randomly initialised as usual, and the projection head is
    set so that every class's logit starts equal to the old logit (see below).
    """
    if generator.c_dim != 0 or (discriminator is not None and discriminator.c_dim != 0):
        raise CocktailError("make_conditional expects unconditional networks (c_dim=0)")
    if num_classes < 1:
        raise CocktailError(f"num_classes must be >= 1, got {num_classes}")
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the fresh class layers are part of the result: keep them reproducible
    try:
        new_g = Generator(**network_kwargs(generator, c_dim=num_classes))
        new_d = Discriminator(**network_kwargs(discriminator, c_dim=num_classes)) if discriminator else None
        embed_bias = torch.randn(new_g.mapping.embed.bias.shape)
    finally:
        torch.random.set_rng_state(rng_state)
    new_g.to(generator.device)
    g_state = {**new_g.state_dict(), **generator.state_dict()}
    fc0_old, fc0_new = generator.mapping.fc0, new_g.mapping.fc0
    with torch.no_grad():
        weight = fc0_new.weight.detach().clone()
        # Stored weights are scaled by 1/sqrt(fan_in) at run time, and fan_in grew: compensate.
        weight[:, : generator.z_dim] = fc0_old.weight * math.sqrt(weight.shape[1] / fc0_old.weight.shape[1])
        # A class-independent embedding (zero weight, random bias) feeds the new columns a constant,
        # which the first layer's bias cancels.
        embed = normalize_2nd_moment(embed_bias[None].to(weight.device))[0]
        constant = (weight[:, generator.z_dim :] * fc0_new.weight_gain) @ embed
        g_state["mapping.fc0.weight"] = weight
        g_state["mapping.fc0.bias"] = fc0_old.bias - constant / fc0_new.bias_gain
        g_state["mapping.embed.weight"] = torch.zeros_like(new_g.mapping.embed.weight)
        g_state["mapping.embed.bias"] = embed_bias.to(weight.device)
    new_g.load_state_dict(g_state)

    if new_d is not None:
        new_d.to(discriminator.device)
        old = discriminator.state_dict()
        d_state = {**new_d.state_dict(), **{k: v for k, v in old.items() if not k.startswith("b4.out.")}}
        new_d.load_state_dict(d_state)
        # Logit_c = <out(h), cmap_c> / sqrt(cmap_dim). With out(h) = old_logit(h) * v, where v solves
        # <v, cmap_c> = sqrt(cmap_dim) for every class (least squares, exact while classes <= cmap_dim),
        # each class logit starts equal to the old one, and the head learns classes at full speed.
        with torch.no_grad():
            cmaps = new_d.mapping(None, torch.eye(num_classes, device=discriminator.device))
            target = torch.full([num_classes, 1], math.sqrt(new_d.cmap_dim), device=cmaps.device)
            v = (torch.linalg.pinv(cmaps.double()) @ target.double()).float().squeeze(1)
            new_d.b4.out.weight.copy_(v[:, None] * old["b4.out.weight"])
            new_d.b4.out.bias.copy_(v * old["b4.out.bias"])
    return new_g.eval(), (new_d.eval() if new_d is not None else None)


def add_classes(generator: Generator, discriminator: Discriminator | None, num_classes: int):
    """Give K-class networks ``num_classes - K`` more classes; the K classes draw and score exactly as before.

    Only the class embeddings (G's and D's ``mapping.embed``) grow. A new class's embedding starts at the
    mean of the old ones (no class favoured, nothing random), and the old columns are rescaled because the
    layer's run-time gain 1/sqrt(fan_in) shrinks as the number of classes grows.
    """
    old_classes = generator.c_dim
    if old_classes == 0 or (discriminator is not None and discriminator.c_dim != old_classes):
        raise CocktailError("add_classes expects conditional networks; use make_conditional for unconditional ones")
    if num_classes <= old_classes:
        raise CocktailError(f"add_classes: the networks already have {old_classes} classes, asked for {num_classes}")

    def grown(network):
        with torch.random.fork_rng(devices=[]):  # every weight is set below: leave the global RNG as it was
            bigger = type(network)(**network_kwargs(network, c_dim=num_classes)).to(network.device)
        state = network.state_dict()
        with torch.no_grad():
            old = state["mapping.embed.weight"] * math.sqrt(num_classes / old_classes)
            mean = old.mean(dim=1, keepdim=True)
            state["mapping.embed.weight"] = torch.cat([old, mean.expand(-1, num_classes - old_classes)], dim=1)
        bigger.load_state_dict(state)
        return bigger.eval()

    return grown(generator), (grown(discriminator) if discriminator is not None else None)


def average_networks(networks: Sequence[torch.nn.Module], keep: Sequence[str] = (), keep_from: int = 0,
                     weights: Sequence[float] | None = None) -> torch.nn.Module:
    """A copy of the first network whose every parameter and float buffer is the mean over all (on its device),
    or the ``weights``-weighted sum (a point on the line between two networks: ``[1 - a, a]``), except those
    whose names start with one of ``keep``: those are network ``keep_from``'s own."""
    if not networks:
        raise CocktailError("nothing to average")
    if weights is not None and (len(weights) != len(networks) or not math.isclose(sum(weights), 1.0)):
        raise CocktailError(f"averaging weights must be one per network and sum to 1 (got {list(weights)})")
    states = [n.state_dict() for n in networks]
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=1):
        if list(state) != keys or any(state[k].shape != states[0][k].shape for k in keys):
            raise CocktailError(f"cannot average: network {i} does not share the architecture of network 0")
    averaged = copy.deepcopy(networks[0])
    averaged.load_state_dict({
        k: states[keep_from][k].to(states[0][k].device) if k.startswith(tuple(keep)) else
        _mean([s[k].float().to(states[0][k].device) for s in states], weights).to(states[0][k].dtype)
        if states[0][k].is_floating_point() else states[0][k]
        for k in keys
    })
    return averaged


def _mean(tensors: list[torch.Tensor], weights: Sequence[float] | None) -> torch.Tensor:
    """The plain mean (bit for bit what merges have always started from), or the weighted sum."""
    if weights is None:
        return torch.stack(tensors).mean(0)
    return sum(w * t for w, t in zip(weights, tensors, strict=True))
