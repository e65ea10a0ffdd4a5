"""A merge's plan: its sources, method and settings, validated before any training starts."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CocktailError
from ..folder import check_class_name
from ..settings import boolean_rule, check_rules, deciding_values, declared, number_rule, setting
from ..training import TrainingConfig, check_minibatch_groups
from ..union import UnionModel
from .ingredients import Ingredient
from .methods import MERGE_METHODS, MergeMethod
from .methods.baselines import EWCSettings, FreezeDSettings
from .methods.distilled import DistillSettings

# What merges change in TrainingConfig's defaults (the paper's recipe): short stages need the EMA ramp-up.
MERGE_TRAINING = {"ema_rampup": "auto"}


def _shares(values) -> str | None:
    if values is None:
        return None
    if not isinstance(values, list | tuple) or any(number_rule(0)(v) for v in values) or sum(values) <= 0:
        return "must be a list of non-negative numbers with a positive sum, one per source"
    return None


START_PARTS = ("mapping", "synthesis", "discriminator")  # what from_root may take from the root


def _parts(values) -> str | None:
    if values is None:
        return None
    if (not isinstance(values, list | tuple) or not values or any(v not in START_PARTS for v in values)
            or len(set(values)) != len(values)):
        return f"must be a list of distinct parts among {', '.join(START_PARTS)}"
    return None


@dataclass(kw_only=True)
class MergeSettings:
    """The settings of every merge, whatever its method; a method's own come with it (``EWCSettings``, …).
    Each is recorded (``plan_recipe``) and decides the run's stages."""

    # TransferGAN by default: at the default's 48 kimg (and at 24) it gave a better union than GAN Cocktail and
    # our variants on both merges measured; Cocktail overtakes from 96 kimg (RESULTS.md). 48 kimg is what the
    # default merge of three sources always spent
    # (8 + 8 rooting + 32 merging); methods that root add root_kimg per non-root source to merge_kimg.
    method: str = setting("transfer", help="how the sources are merged", flag=True, choices=MERGE_METHODS)
    root_kimg: float = setting(8.0, help="training length of each rooting stage (methods that root), in thousands "
                                    "of images", rule=number_rule(0), flag=True)
    merge_kimg: float = setting(48.0, help="training length of the final stage: all of a method that does not root, "
                                      "the merged model's fine-tuning after rooting",
                                rule=number_rule(0, low_open=True), flag=True)
    truncation: float = setting(1.0, help="truncation psi used to sample the sources (paper: 1.0)",
                                rule=number_rule(0, 1, low_open=True), flag=True)
    training: TrainingConfig = setting(default_factory=lambda: TrainingConfig(**MERGE_TRAINING),
                                       help="how every stage trains (a recipe's training: mapping)", recipe=False)
    # Recorded only when set, so that records of merges made before they existed (and their stages) stay valid.
    conditional_rooting: bool = setting(
        False, help="root as the authors' code does: extend the root to one class per source first and root source i "
                    "with its samples labelled i, so that class i's embedding learns domain i before the average "
                    "(methods that root only)", rule=boolean_rule, flag=True, record_default=False)
    class_percentages: list[float] | None = setting(
        None, help="share of each source in the final stage's mixture, in source order (the authors' "
                   "--class_percentages; default: equal)", rule=_shares, flag=True, parse=float, nargs="+",
        record_default=False, stage="merge")
    from_root: list[str] | None = setting(
        None, help="parts of the merge stage's start taken from the root instead of the parents' weight average: any "
                   f"of {', '.join(START_PARTS)} (methods that average parents; paper: none, all averaged)",
        rule=_parts, flag=True, nargs="+", choices=START_PARTS, record_default=False, stage="merge")


@dataclass
class MergePlan(DistillSettings, FreezeDSettings, EWCSettings, MergeSettings):
    """Everything a merge needs, validated before any training starts. The defaults of its settings are the
    merge defaults everywhere (recipes, ``scripts/merge.py``): they are declared once, in its bases (listed
    last first, as dataclasses take the fields of the last base first)."""

    ingredients: list[Ingredient]
    root: int = 0

    @property
    def class_names(self) -> list[str]:
        return [ing.name for ing in self.ingredients]

    @property
    def root_model(self) -> UnionModel:
        return self.ingredients[self.root].model

    @property
    def merge_method(self) -> MergeMethod:
        return MERGE_METHODS[self.method]

    @property
    def base_classes(self) -> int:
        """How many leading sources are the classes of a union being extended (``--extend``); 0 for a fresh
        merge. Such a union is the root, and its classes are drawn from the union itself."""
        root = self.root_model
        return root.generator.c_dim if root is not None else 0

    def check_settings(self, world: int = 1) -> None:
        """Every setting that needs no model: checked before any source is loaded."""
        if self.method not in MERGE_METHODS:
            raise CocktailError(f"unknown method {self.method!r}; choose one of {', '.join(MERGE_METHODS)}")
        check_rules(self)
        self.training.validate(world)

    def validate(self, world: int = 1) -> None:
        """Fail fast, before any training, on everything that can be checked up front."""
        self.check_settings(world)
        if len(self.ingredients) < 2:
            raise CocktailError(f"a merge needs at least 2 sources, got {len(self.ingredients)}")
        for ing in self.ingredients:  # names become folder names: stages/.../root-<name>-…
            check_class_name(ing.name, f"source {ing.spec}")
        if not 0 <= self.root < len(self.ingredients):
            raise CocktailError(f"root index {self.root} is out of range for {len(self.ingredients)} sources")
        if self.root_model is not None and self.base_classes:
            old = self.class_names[: self.base_classes]
            for ing in self.ingredients[self.base_classes :]:
                if ing.name in old:
                    raise CocktailError(f"class {ing.name!r} is already in the union ({', '.join(old)}); name the "
                                        f"new source {ing.spec} differently (--names)")
        if len(set(self.class_names)) != len(self.class_names):
            raise CocktailError(f"source names must be unique, got {self.class_names}")
        root = self.ingredients[self.root]
        # Even 'scratch' takes the root's architecture, so every method needs a root of ours.
        if root.model is None:
            raise CocktailError(f"root {root.name!r} ({root.spec}) is a foreign sampler; the root must be a "
                                "GAN Cocktail / StyleGAN2 model")
        if root.model.discriminator is None:
            raise CocktailError(f"root {root.name!r} ({root.spec}) has no discriminator; rooting and "
                                "fine-tuning need one")
        if self.base_classes:
            self.check_extension()
        check_minibatch_groups(root.model.discriminator, self.training.batch_size, world)
        if self.conditional_rooting and self.merge_method.parents != "rooted":
            raise CocktailError(f"conditional_rooting applies to methods that root their sources, not {self.method!r}")
        if self.from_root and self.merge_method.parents is None:
            raise CocktailError(f"from_root applies to methods that average parents, not {self.method!r}")
        if self.class_percentages is not None and len(self.class_percentages) != len(self.ingredients):
            raise CocktailError(f"class_percentages has {len(self.class_percentages)} entries for "
                                f"{len(self.ingredients)} sources")
        self.merge_method.check(self)

    def check_extension(self) -> None:
        """A conditional root is a union being extended: its classes come first, then the new sources."""
        root, union = self.ingredients[self.root], self.root_model
        layout = [(ing.model is union, ing.class_index) for ing in self.ingredients[: self.base_classes]]
        if self.root != 0 or layout != [(True, i) for i in range(self.base_classes)]:
            raise CocktailError(f"root {root.name!r} ({root.spec}) is conditional; the root must be an unconditional "
                                "single-domain model (to add sources to a union: --extend UNION, recipe extend:)")
        if len(self.ingredients) == self.base_classes:
            raise CocktailError("--extend needs at least one new source to add to the union")
        if not self.merge_method.can_extend:
            usable = ", ".join(name for name, method in MERGE_METHODS.items() if method.can_extend)
            raise CocktailError(f"method {self.method!r} cannot extend a union (it would not start from it); "
                                f"use one of {usable}")
        size = (union.generator.img_resolution, union.generator.img_channels)
        for ing in self.ingredients[self.base_classes:]:
            g = ing.model.generator if ing.model is not None else None
            if g is not None and (g.img_resolution, g.img_channels) != size:
                raise CocktailError(f"source {ing.name!r} ({ing.spec}) draws {g.img_resolution}×{g.img_resolution} "
                                    f"px with {g.img_channels} channel(s), the union {size[0]}×{size[0]} px with "
                                    f"{size[1]}: a union grows only by sources of its own resolution and channels")


def plan_defaults() -> dict:
    """The recipe's merge settings and their defaults, from MergePlan (recipes and flags derive theirs from it)."""
    return {f.name: f.default for f, spec in declared(MergePlan) if spec.recipe}


def plan_recipe(plan: MergePlan) -> dict:
    """The settings that decide the result, as recorded in provenance (and compared before reusing stages): the
    merge's own, its training's, and those its method records."""
    return {**deciding_values(plan, MergeSettings), **plan.merge_method.settings(plan)}
