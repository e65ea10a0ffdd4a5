"""Variants whose final stage also distils each class from a teacher on shared latents (our addition)."""

from __future__ import annotations

from dataclasses import dataclass

from ...distill import distillation_penalty
from ...errors import CocktailError
from ...settings import choice_rule, number_rule, setting
from .base import MergeMethod, register_method
from .baselines import Transfer
from .cocktail import Cocktail

TEACHERS = ("parents", "sources")


@dataclass(kw_only=True)
class DistillSettings:
    """The distillation methods' settings (MergePlan has them)."""

    distill_weight: float = setting(1.0, help="distillation methods: weight of the paired loss |G(z, i) - "
                                              "teacher_i(z)|^2", rule=number_rule(0), flag=True)
    distill_batch: int = setting(16, help="distillation methods: latents of the paired loss per G step",
                                 rule=number_rule(1, integer=True), flag=True)
    distill_teachers: str | None = setting(
        None, help="distillation methods: pull class i towards its parent (root or rooted model) or its source "
                   "(default: parents where the method roots, else sources)",
        rule=choice_rule(*TEACHERS, optional=True), flag=True, choices=TEACHERS)


class Distilled(MergeMethod):
    """Adds paired distillation to a method's final stage: class i of the union is pulled towards teacher i's
    image of the same latent, next to the adversarial loss (``cocktail/distill.py``). The teachers are the
    parents the start was averaged from (the root and the rooted models) or, with ``distill_teachers:
    sources``, the sources themselves."""

    def teachers(self, plan) -> str:
        return plan.distill_teachers or ("parents" if self.parents == "rooted" else "sources")

    def check(self, plan):
        super().check(plan)
        if self.teachers(plan) == "parents" and self.parents != "rooted":
            raise CocktailError(f"method {self.name!r} has no rooted parents to distil from; use "
                                "distill_teachers: sources")
        if self.teachers(plan) == "sources":
            foreign = [ing.name for ing in plan.ingredients if ing.model is None]
            if foreign:
                raise CocktailError(f"distill_teachers 'sources' needs generators that take our latents; "
                                    f"{', '.join(foreign)} are foreign samplers (use 'parents')")
            if any(ing.model.generator.z_dim != plan.root_model.generator.z_dim for ing in plan.ingredients):
                raise CocktailError("distill_teachers 'sources' needs every source to share the root's z_dim")

    def settings(self, plan):
        return {**super().settings(plan), "distill": {"weight": plan.distill_weight, "batch": plan.distill_batch,
                                                      "teachers": self.teachers(plan)}}

    def training(self, plan, G, D, accelerator, log, parents):
        if self.teachers(plan) == "sources":
            teachers = [(ing.model.generator, ing.class_index if ing.model.generator.c_dim else None)
                        for ing in plan.ingredients]
        else:
            teachers = [(g, i if g.c_dim else None) for i, (g, _) in enumerate(parents)]
        return {**super().training(plan, G, D, accelerator, log, parents),
                "g_penalty": distillation_penalty(teachers, plan.distill_weight, plan.distill_batch)}


@register_method
class CocktailDistill(Distilled, Cocktail):
    """GAN Cocktail whose merge stage also distils each class from its parent (or its source)."""

    name, title = "cocktail_distill", "Cocktail + distillation"


@register_method
class TransferDistill(Distilled, Transfer):
    """TransferGAN whose one stage also distils each class from its source on shared latents."""

    name, title = "transfer_distill", "TransferGAN + distillation"
