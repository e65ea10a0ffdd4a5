"""A merge's plan: its sources, method and settings, validated before any training starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import CocktailError
from ..folder import check_class_name
from ..training import TrainingConfig, apply_rules, check_minibatch_groups, number_rule
from ..union import UnionModel
from .ewc import FISHER_BATCH
from .ingredients import Ingredient
from .methods import MERGE_METHODS, MergeMethod

# What merges change in TrainingConfig's defaults (the paper's recipe): short stages need the EMA ramp-up.
MERGE_TRAINING = {"ema_rampup": "auto"}
# Training settings that decide nothing about the result (where it goes, how it is shown, how often saved).
NOT_DECIDING = ("kimg", "output_dir", "resume_from_checkpoint", "progress", "report_to", "checkpointing_kimg",
                "checkpoints_total_limit", "sample_every_kimg", "grid_seeds_per_class")


@dataclass
class MergePlan:
    """Everything a merge needs, validated before any training starts. Its defaults are the merge defaults
    everywhere (recipes, ``scripts/merge.py``): they are defined here once."""

    ingredients: list[Ingredient]
    root: int = 0
    # TransferGAN by default: at every budget measured (24-192 kimg, RESULTS.md) it gave a better union than
    # GAN Cocktail and our variants. 48 kimg is what the default merge of three sources always spent
    # (8 + 8 rooting + 32 merging); methods that root add root_kimg per non-root source to merge_kimg.
    method: str = "transfer"
    root_kimg: float = 8.0
    merge_kimg: float = 48.0
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(**MERGE_TRAINING))
    truncation: float = 1.0  # sources are sampled without truncation, as in the paper
    # EWC (Li et al. 2020) weights of the penalty on G's mapping, G's synthesis and D, and the number of
    # generated samples behind the Fisher information.
    ewc_g_mapping: float = 5e8
    ewc_g_synthesis: float = 5e8
    ewc_d: float = 0.0
    ewc_samples: int = 4096
    freeze_d_blocks: int = 1  # Freeze-D: discriminator blocks frozen, counted from the image side
    # The authors' conditional rooting: every model extended to N classes first, source i rooted with all its
    # samples labelled i, so class i's embedding learns domain i before the average (their code's default).
    conditional_rooting: bool = False
    # The mixture's share of each source in the final stage (the authors' --class_percentages); None: equal.
    class_percentages: list[float] | None = None
    # Paired distillation (cocktail_distill): weight of |G(z, i) - parent_i(z)|^2 and its latents per G step.
    distill_weight: float = 1.0
    distill_batch: int = 16
    # "parents" (root and rooted models) or "sources" (the sources themselves); None: parents where the method
    # roots, else sources.
    distill_teachers: str | None = None

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
        rules = {"root_kimg": number_rule(0), "merge_kimg": number_rule(0, low_open=True),
                 "truncation": number_rule(0, 1, low_open=True), "ewc_g_mapping": number_rule(0),
                 "ewc_g_synthesis": number_rule(0), "ewc_d": number_rule(0),
                 "ewc_samples": number_rule(FISHER_BATCH, integer=True),
                 "freeze_d_blocks": number_rule(1, integer=True), "distill_weight": number_rule(0),
                 "distill_batch": number_rule(1, integer=True)}
        apply_rules(self, rules)
        if self.distill_teachers not in (None, "parents", "sources"):
            raise CocktailError(f"distill_teachers must be 'parents' or 'sources' (got {self.distill_teachers!r})")
        if not isinstance(self.conditional_rooting, bool):
            raise CocktailError(f"conditional_rooting must be true or false (got {self.conditional_rooting!r})")
        if self.class_percentages is not None:
            values = self.class_percentages
            if not isinstance(values, list | tuple) or any(number_rule(0)(v) for v in values) or sum(values) <= 0:
                raise CocktailError("class_percentages must be a list of non-negative numbers with a positive sum, "
                                    f"one per source (got {values!r})")
        if self.ewc_samples % FISHER_BATCH:
            raise CocktailError(f"ewc_samples must be a multiple of {FISHER_BATCH}, the Fisher estimate's batch "
                                f"(got {self.ewc_samples})")
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
    """The merge settings and their defaults, from MergePlan (recipes and flags derive theirs from it)."""
    return {f.name: f.default for f in fields(MergePlan) if f.name not in ("ingredients", "root", "training")}


def deciding_training(config: TrainingConfig) -> dict:
    """The training settings that decide a result (not where it is written, how it is shown or saved)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items() if k not in NOT_DECIDING}


def plan_recipe(plan: MergePlan) -> dict:
    """The settings that decide the result, as recorded in provenance (and compared before reusing stages)."""
    optional = {"conditional_rooting": True} if plan.conditional_rooting else {}  # recorded when not the default,
    if plan.class_percentages is not None:  # so earlier merges' records (and their stages) stay valid
        optional["class_percentages"] = list(plan.class_percentages)
    return {"method": plan.method, "root_kimg": plan.root_kimg, "merge_kimg": plan.merge_kimg,
            "truncation": plan.truncation, "training": deciding_training(plan.training),
            **optional, **plan.merge_method.settings(plan)}
