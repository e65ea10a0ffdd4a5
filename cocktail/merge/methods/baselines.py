"""The paper's baselines, on the same generated data as GAN Cocktail: each trains one stage on the mixture,
from random weights, from the root, or from the average of the raw sources."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import CocktailError
from ...networks import Discriminator, Generator, network_kwargs
from ...settings import number_rule, setting
from ..ewc import EWC_UNPENALISED, FISHER_BATCH, FISHER_SEED, cached_fisher, conditional_fisher, ewc_penalty
from .base import MergeMethod, register_method


def _fisher_samples(value) -> str | None:
    problem = number_rule(FISHER_BATCH, integer=True)(value)
    if problem is None and value % FISHER_BATCH:
        return f"must be a multiple of {FISHER_BATCH}, the Fisher estimate's batch"
    return problem


@dataclass(kw_only=True)
class EWCSettings:
    """EWC's settings (MergePlan has them): the weights of its penalty and the samples behind its Fisher."""

    ewc_g_mapping: float = setting(5e8, help="EWC: penalty weight on G's mapping network", rule=number_rule(0),
                                   flag=True)
    ewc_g_synthesis: float = setting(5e8, help="EWC: penalty weight on G's synthesis network", rule=number_rule(0),
                                     flag=True)
    ewc_d: float = setting(0.0, help="EWC: penalty weight on D (the class embedding and projection head are never "
                                     "penalised)", rule=number_rule(0), flag=True)
    ewc_samples: int = setting(4096, help=f"EWC: generated samples behind the Fisher information (a multiple of "
                                          f"{FISHER_BATCH}; estimated once per root and cached)",
                               rule=_fisher_samples, flag=True)


@dataclass(kw_only=True)
class FreezeDSettings:
    """Freeze-D's setting (MergePlan has it)."""

    freeze_d_blocks: int = setting(1, help="Freeze-D: discriminator blocks kept frozen, counted from the image side "
                                           "(1 = the full-resolution block b<res>, 2 = it and b<res/2>, …); b4 with "
                                           "the output head always trains, so at most log2(resolution) - 2",
                                   rule=number_rule(1, integer=True), flag=True)


@register_method
class Scratch(MergeMethod):
    """Randomly initialised conditional networks of the root's architecture, trained on the mixture."""

    name, title, can_extend = "scratch", "scratch", False

    def start(self, G, D, num_classes, seed):
        torch.manual_seed(seed)
        return (Generator(**network_kwargs(G, c_dim=num_classes)),
                Discriminator(**network_kwargs(D, c_dim=num_classes)))


@register_method
class Transfer(MergeMethod):
    """TransferGAN (Wang et al. 2018): the root, made conditional, fine-tuned on the mixture."""

    name, title = "transfer", "TransferGAN"


@register_method
class EWC(Transfer):
    """EWC (Li et al. 2020): TransferGAN with a penalty on moving the weights that the root's Fisher
    information says matter."""

    name, title = "ewc", "EWC"

    def settings(self, plan):
        return {"ewc": {"g_mapping": plan.ewc_g_mapping, "g_synthesis": plan.ewc_g_synthesis, "d": plan.ewc_d,
                        "samples": plan.ewc_samples, "batch": FISHER_BATCH, "seed": FISHER_SEED}}

    def training(self, plan, G, D, accelerator, log, parents):
        """The penalties for the converted root (G, D), from the Fisher information of the source root."""
        root = plan.root_model
        fisher = cached_fisher(root.generator, root.discriminator, plan.ewc_samples, accelerator, log)
        penalties = {"g_penalty": ewc_penalty(G, conditional_fisher(fisher["G"], G, EWC_UNPENALISED["G"]),
                                              {"mapping.": plan.ewc_g_mapping, "synthesis.": plan.ewc_g_synthesis}),
                     "d_penalty": ewc_penalty(D, conditional_fisher(fisher["D"], D, EWC_UNPENALISED["D"]),
                                              {"": plan.ewc_d})}
        return {key: value for key, value in penalties.items() if value is not None}


@register_method
class FreezeD(Transfer):
    """Freeze-D (Mo et al. 2020): TransferGAN with D's first ``freeze_d_blocks`` blocks (from the image side)
    kept frozen."""

    name, title = "freeze_d", "Freeze-D"

    def check(self, plan):
        root = plan.root_model
        blocks = len(root.discriminator.block_resolutions)
        if plan.freeze_d_blocks > blocks:
            raise CocktailError(f"freeze_d_blocks {plan.freeze_d_blocks} would freeze every convolution block of "
                                f"the root's discriminator; at most {blocks} (of b{root.generator.img_resolution}"
                                " … b8; b4 with the output head always trains)")

    def settings(self, plan):
        return {"freeze_d_blocks": plan.freeze_d_blocks}

    def training(self, plan, G, D, accelerator, log, parents):
        return {"frozen_d_prefixes": tuple(f"b{res}." for res in D.block_resolutions[: plan.freeze_d_blocks])}


@register_method
class Average(MergeMethod):
    """Naive averaging of the raw sources (the paper's failure case), made conditional and fine-tuned."""

    name, title, parents, can_extend = "average", "average", "sources", False

    def check(self, plan):
        reference = network_kwargs(plan.root_model.generator)
        for ing in plan.ingredients:
            if ing.model is None or network_kwargs(ing.model.generator) != reference:
                raise CocktailError(f"method 'average' needs every source to share the root's architecture; "
                                    f"{ing.name!r} ({ing.spec}) does not")
            if ing.model.discriminator is None:
                raise CocktailError(f"method 'average' needs every source's discriminator; {ing.name!r} has none")
