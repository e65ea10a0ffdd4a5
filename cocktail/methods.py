"""GAN Cocktail and its baselines, each a way to set up the one training loop.

* ``root``: the root's G_ema and D fine-tuned on samples of one other source (GAN_{r→i}).
* ``merge``: every parameter and buffer averaged over root and rooted models, made
  conditional (class c ↔ source c) and fine-tuned on the labelled mixture of all sources.
* ``cocktail`` = root every non-root source, then merge (the paper's method).
* Baselines on the same generated data: ``scratch``, ``transfer`` (TransferGAN), ``ewc``,
  ``freeze_d`` and ``average`` (naive averaging of the raw sources, the paper's failure case).

A comparison of methods is only fair if no stage's result is silently someone else's. So
``<output_dir>/run.json`` records what decides the whole merge (sources down to their weights, method,
recipe), and each stage lives in ``<output_dir>/stages/<method>/<stage>-<digest of its inputs>/`` with
those inputs recorded in it: an interrupted merge resumes at its stage (and the checkpoint inside it),
and anything else that differs stops the run before training.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .distill import distillation_penalty
from .errors import CocktailError
from .files import (
    AGAIN,
    damage,
    file_sha256,
    read_record,
    remove_leftovers,
    replace_file,
    saving,
    write_json,
    write_record,
)
from .folder import check_class_name
from .networks import Discriminator, Generator
from .sources import MixtureSource, ModelSource, Source, load_source, picked_class
from .specs import Kind, SourceRecord, Spec, parse
from .training import (
    CHECKPOINTS_DIR,
    TrainingConfig,
    apply_rules,
    check_minibatch_groups,
    checked_checkpoint,
    effective_ema_rampup,
    number_rule,
    train,
)
from .union import UnionModel, add_classes, average_networks, make_conditional, network_kwargs

logger = logging.getLogger(__name__)

STAGE_DONE = "stage.json"  # written last, with the size and SHA-256 of each file of the stage's model
STAGE_INPUTS = "inputs.json"  # written when a stage starts: its checkpoints belong to these inputs
RUN_RECORD = "run.json"
# What merges change in TrainingConfig's defaults (the paper's recipe): short stages need the EMA ramp-up.
MERGE_TRAINING = {"ema_rampup": "auto"}
# Training settings that decide nothing about the result (where it goes, how it is shown, how often saved).
NOT_DECIDING = ("kimg", "output_dir", "resume_from_checkpoint", "progress", "report_to", "checkpointing_kimg",
                "checkpoints_total_limit", "sample_every_kimg", "grid_seeds_per_class")
FISHER_BATCH = 32  # the authors' batch for the Fisher estimate; its scale, and so λ's meaning, depends on it
FISHER_SEED = 0
# Parameters the conditional conversion adds or replaces: no source value to stay near (EWC skips them).
EWC_UNPENALISED = {"G": ("mapping.embed.",), "D": ("mapping.", "b4.out.")}


@dataclass
class Ingredient:
    """One source of the merge: its name (the union's class name), where it came from, and how to sample it."""

    name: str
    spec: str
    provenance: dict
    model: UnionModel | None = None  # our architecture; None for foreign samplers
    class_index: int = 0  # which class of a multi-class model this source draws

    def sampler(self, label: int, num_classes: int, resolution: int, truncation: float, device) -> Source:
        if self.model is not None:
            return ModelSource(self.model.generator, label=label, num_classes=num_classes, truncation=truncation,
                               resolution=resolution, class_index=self.class_index).to(device)
        return load_source(self.spec, resolution, label=label, num_classes=num_classes, device=device,
                           truncation=truncation)

    def fingerprint(self) -> dict:
        """What identifies this source's images: its provenance plus a digest of its weights (or file)."""
        if self.model is not None:
            return {"name": self.name, **self.provenance,
                    "weights": weights_digest(self.model.generator, self.model.discriminator)}
        path = parse(self.spec).path
        if path.is_file():
            return {"name": self.name, **self.provenance, "sha256": file_sha256(path)}
        if path.is_dir():
            listing = sorted((str(f.relative_to(path)), f.stat().st_size) for f in path.rglob("*") if f.is_file())
            return {"name": self.name, **self.provenance, "listing": _digest(listing)}
        return {"name": self.name, **self.provenance}


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


# -- the methods -------------------------------------------------------------------------------


class MergeMethod:
    """One way to set up the training loop for a merge: subclass it, override what differs, register it.

    Every method ends in one stage that fine-tunes conditional networks on the labelled mixture of all
    sources. ``parents`` says what that stage starts from: the average of the root and every other source
    rooted first, in a stage of its own ("rooted"), or of the raw sources ("sources"), made conditional
    (the stage is then named "merge"); or, when None, ``start`` applied to the root (the stage is named
    after the method).
    """

    name: str  # --method, the recipe's method and the folder stages/<name>/
    title: str  # its name in the paper's tables
    parents: str | None = None
    can_extend: bool = True  # whether it can grow an existing union (--extend): it must start from the union

    def check(self, plan: MergePlan) -> None:
        """Refuse a plan this method cannot run, after MergePlan's own checks and before any training."""

    def start(self, G: Generator, D: Discriminator, num_classes: int, seed: int) -> tuple[Generator, Discriminator]:
        """The final stage's networks, from the root's (when there are no parents); a union being extended
        keeps its classes and gains the new ones."""
        return add_classes(G, D, num_classes) if G.c_dim else make_conditional(G, D, num_classes, seed=seed)

    def settings(self, plan: MergePlan) -> dict:
        """This method's own settings that decide its result: recorded in the recipe and in its stage's inputs."""
        return {}

    def training(self, plan: MergePlan, G: Generator, D: Discriminator, accelerator, log,
                 parents: list[tuple[Generator, Discriminator]] | None) -> dict:
        """Extra arguments of ``train`` for the final stage, given its start networks and the parents they
        were averaged from (penalties, frozen weights)."""
        return {}

    def roots(self, plan: MergePlan, i: int) -> bool:
        """Whether source ``i`` is rooted, in a stage of its own, before the merge."""
        return self.parents == "rooted" and i != plan.root and i >= plan.base_classes and plan.root_kimg > 0


MERGE_METHODS: dict[str, MergeMethod] = {}  # name → method, registered in the order of the paper's tables


def register_method(cls: type[MergeMethod]) -> type[MergeMethod]:
    """Make a method a choice of MergePlan, recipes and ``--method``."""
    if cls.name in MERGE_METHODS:
        raise ValueError(f"a merge method named {cls.name!r} is already registered")
    MERGE_METHODS[cls.name] = cls()
    return cls


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
        return {"ewc": ewc_settings(plan)}

    def training(self, plan, G, D, accelerator, log, parents):
        return ewc_penalties(plan, G, D, accelerator, log)


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


@register_method
class Cocktail(MergeMethod):
    """GAN Cocktail: root every other source, average them with the root, make that conditional, fine-tune it
    on the mixture."""

    name, title, parents = "cocktail", "GAN Cocktail", "rooted"


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


@dataclass
class Stage:
    """One training run of a merge: its name, everything that decides its result, and its folder."""

    name: str
    inputs: dict
    folder: Path


def plan_stages(plan: MergePlan, fingerprints: list[dict], output_dir: Path, precision: str) -> list[Stage]:
    """The stages ``plan`` will run, in order, each with the inputs that decide its result."""
    method = plan.merge_method
    common = {"method": plan.method, "training": deciding_training(plan.training), "truncation": plan.truncation,
              "mixed_precision": precision}
    root_fp = fingerprints[plan.root]
    stages = []

    def add(name, **inputs):
        inputs = {"stage": name, **common, **inputs}
        stages.append(Stage(name, inputs, output_dir / "stages" / plan.method / f"{name}-{_digest(inputs)[:12]}"))
        return inputs

    settings = method.settings(plan)
    if plan.class_percentages is not None:
        settings = {**settings, "class_percentages": list(plan.class_percentages)}
    if method.parents is None:
        add(plan.method, root=root_fp, sources=fingerprints, kimg=plan.merge_kimg, **settings)
        return stages
    parents = []
    for i, ing in enumerate(plan.ingredients):
        if method.parents == "sources":
            parents.append(fingerprints[i])
        elif method.roots(plan, i):
            conditional = {"conditional_rooting": {"classes": len(fingerprints), "label": i}} \
                if plan.conditional_rooting or plan.base_classes else {}
            parents.append(_digest(add(f"root-{ing.name}", root=root_fp, source=fingerprints[i], kimg=plan.root_kimg,
                                       **conditional)))
        else:
            parents.append(root_fp)
    add("merge", parents=parents, sources=fingerprints, kimg=plan.merge_kimg, **settings)
    return stages


def run_merge(plan: MergePlan, output_dir: str | Path, accelerator=None, log=print,
              overwrite: bool = False) -> UnionModel:
    """Run ``plan.method`` end to end; returns the union (main process saves it to ``output_dir/union``).

    ``output_dir`` may hold this same merge (finished stages are reused, an interrupted one resumes); a
    different one stops the run unless ``overwrite``, which removes it once this run's first stage is done.
    """
    plan.validate(accelerator.num_processes if accelerator is not None else 1)
    method = plan.merge_method
    output_dir = Path(output_dir)
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    main = accelerator is None or accelerator.is_main_process
    if main:  # what saves killed in a previous run left (the stages clean their own folders)
        remove_leftovers(output_dir, "union", RUN_RECORD)
        remove_leftovers(output_dir / "union")
    run, stages, replacing, owner = prepare_output_dir(plan, output_dir, accelerator, overwrite)
    names, n, root = plan.class_names, len(plan.ingredients), plan.root_model
    resolution = root.generator.img_resolution
    seed = plan.training.seed

    def sampler(i, label=None, num_classes=1):
        return plan.ingredients[i].sampler(label if label is not None else 0, num_classes, resolution,
                                           plan.truncation, device)

    mixture = MixtureSource([sampler(i, label=i, num_classes=n) for i in range(n)], plan.class_percentages)
    kimg, rampup, pending = {}, {}, iter(stages)

    def stage(G, D, source, **train_kwargs):
        nonlocal replacing
        current = next(pending)
        config = replace(plan.training, kimg=current.inputs["kimg"], output_dir=str(current.folder),
                         resume_from_checkpoint=_resume_for(current, plan.training.resume_from_checkpoint, owner))
        G, D, kimg[current.name] = run_stage(current, G, D, source, config, accelerator, log, **train_kwargs)
        rampup[current.name] = effective_ema_rampup(config)
        if replacing:  # the new run has a finished stage: only now does the old one go
            replace_old_run(output_dir, run, stages, main, log)
            replacing = False
        return G, D

    # Conditional rooting (the authors' way, and the only way into a union being extended): the root extended to
    # n classes first, source i rooted as class i.
    conditional = plan.conditional_rooting or plan.base_classes > 0
    root_g, root_d = (method.start(root.generator, root.discriminator, n, seed) if conditional
                      else (root.generator, root.discriminator))

    def parent(i):  # the networks source i brings to the average
        if method.parents == "sources":
            return plan.ingredients[i].model.generator, plan.ingredients[i].model.discriminator
        if method.roots(plan, i):
            source = sampler(i, label=i, num_classes=n) if conditional else sampler(i)
            return stage(copy.deepcopy(root_g), copy.deepcopy(root_d), source)
        return root_g, root_d

    if method.parents is None:
        G, D = method.start(root.generator, root.discriminator, n, seed)
        parents = distances = None
    else:
        parents = [parent(i) for i in range(n)]
        G = average_networks([g for g, _ in parents])
        D = average_networks([d for _, d in parents])
        if G.c_dim == 0:
            G, D = make_conditional(G, D, n, seed=seed)
        distances = weight_distances(plan, parents)
    G, D = stage(G, D, mixture, class_names=names, **method.training(plan, G, D, accelerator, log, parents))

    provenance = {
        "method": plan.method,
        "root": plan.ingredients[plan.root].name,
        "sources": [{"name": ing.name, **ing.provenance} for ing in plan.ingredients],
        "recipe": plan_recipe(plan),
        "kimg": kimg,
        "ema_rampup": rampup,  # per stage, as "auto" resolved it
    }
    if distances is not None:
        provenance["weight_distances"] = distances["summary"]
    if plan.base_classes:
        provenance["extends"] = {"spec": plan.ingredients[0].spec.rpartition("#")[0],  # load_union_classes' spec
                                 "classes": names[: plan.base_classes], "provenance": root.provenance}
    union = UnionModel(G.eval(), D.eval(), names, provenance)
    if main:
        with saving(f"the union model folder {output_dir / 'union'}", output_dir):
            union.save_pretrained(output_dir / "union")
            if distances is not None:
                write_json(output_dir / "union" / "weight_distances.json", distances)
    return union


def prepare_output_dir(plan: MergePlan, output_dir: Path, accelerator, overwrite: bool):
    """Everything about ``output_dir`` that can stop the run, checked before any training: returns the run's
    record, its stages, whether an old run is to be replaced, and the stage owning an explicit checkpoint."""
    main = accelerator is None or accelerator.is_main_process
    precision = str(accelerator.mixed_precision) if accelerator is not None else "no"
    fingerprints = [ing.fingerprint() for ing in plan.ingredients]
    run = {"method": plan.method, "root": plan.class_names[plan.root], "sources": fingerprints,
           "recipe": plan_recipe(plan), "mixed_precision": precision}
    stages = plan_stages(plan, fingerprints, output_dir, precision)
    replacing = claim_output_dir(output_dir, run, overwrite, main)
    for stage in stages:
        check_stage_folder(stage)
    return run, stages, replacing, checkpoint_owner(plan.training.resume_from_checkpoint, stages)


def claim_output_dir(output_dir: Path, run: dict, overwrite: bool, main: bool) -> bool:
    """Make ``output_dir`` this run's, or refuse before any training; True when an old run is to be replaced."""
    record = output_dir / RUN_RECORD
    if record.is_file():
        try:
            old = json.loads(record.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CocktailError(f"{record}: damaged ({err}); remove it to reuse this folder's intact stages, or use "
                                "a new --output_dir") from None
        if old == run:
            return False
        what = "; ".join(_differences(old, run)[:3])
    elif (output_dir / "stages").is_dir() or (output_dir / "union").is_dir():
        what = f"made without a {RUN_RECORD} recording its inputs"
    else:
        if main:
            with saving(record, output_dir):
                output_dir.mkdir(parents=True, exist_ok=True)
                write_json(record, run)
        return False
    if not overwrite:
        raise CocktailError(f"{output_dir} holds a different merge ({what}); use a new --output_dir, or "
                            "--overwrite_output_dir to replace it (kept until the new run finishes its first stage)")
    return True


def replace_old_run(output_dir: Path, run: dict, stages: list[Stage], main: bool, log) -> None:
    """Remove what an old run left (its union and every stage folder this run does not use); record this run."""
    if main:
        keep = {stage.folder.resolve() for stage in stages}
        stage_root = output_dir / "stages"
        old = [p for p in stage_root.glob("*/*") if p.is_dir() and p.resolve() not in keep]
        old += [p for p in stage_root.glob("*") if (p / STAGE_DONE).is_file()]  # an older layout
        for path in [*old, output_dir / "union"]:
            shutil.rmtree(path, ignore_errors=True)
        for method_folder in stage_root.glob("*"):
            if method_folder.is_dir() and not any(method_folder.iterdir()):
                method_folder.rmdir()
        with saving(output_dir / RUN_RECORD, output_dir):
            write_json(output_dir / RUN_RECORD, run)
        log(f"--overwrite_output_dir: removed the previous merge's results from {output_dir}")


def check_stage_folder(stage: Stage) -> None:
    """A stage folder's recorded inputs must be this stage's (a finished one is reused, checkpoints resumed)."""
    for record in (stage.folder / STAGE_DONE, stage.folder / STAGE_INPUTS):
        if record.is_file():
            try:
                recorded = json.loads(record.read_text())
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # damaged (the folder's name still pins its inputs): the stage is trained again
            recorded = recorded.get("inputs") if record.name == STAGE_DONE else recorded
            if recorded != stage.inputs:
                differences = "; ".join(_differences(recorded or {}, stage.inputs)[:3])
                raise CocktailError(f"{stage.folder} holds stage {stage.name} of other inputs ({differences}); "
                                    "use a new --output_dir, or --overwrite_output_dir")


def checkpoint_owner(resume: str | None, stages: list[Stage]) -> Stage | None:
    """The stage whose checkpoints folder holds an explicit ``--resume_from_checkpoint`` path (none for 'latest')."""
    if resume in (None, "latest"):
        return None
    path = checked_checkpoint(resume)
    for stage in stages:
        if path.resolve().parent == (stage.folder / CHECKPOINTS_DIR).resolve():
            return stage
    raise CocktailError(f"{path} is not a checkpoint of any stage of this merge (they are under "
                        f"{stages[0].folder.parent}); use 'latest' or a checkpoint from those folders")


def _resume_for(stage: Stage, resume: str | None, owner: Stage | None) -> str | None:
    """An explicit checkpoint for the stage that owns it; for every other stage, its own latest if it has one."""
    if owner is not None and stage.name == owner.name:
        return resume
    if resume == "latest" or (stage.folder / CHECKPOINTS_DIR).is_dir():
        return "latest"
    return None


def run_stage(stage: Stage, G, D, source, config: TrainingConfig, accelerator, log, class_names=None,
              **train_kwargs):
    """Train one stage, or load it if a run with the same inputs finished it and its model is intact (a damaged
    one is trained again, from the stage's checkpoints if it has any); returns (G_ema, D, kimg)."""
    done = stage.folder / STAGE_DONE
    main = accelerator is None or accelerator.is_main_process
    if main:  # what saves killed in a previous run left
        remove_leftovers(stage.folder, "model", STAGE_DONE, STAGE_INPUTS)
    if done.is_file():
        try:
            model, kimg = finished_stage(stage)
        except CocktailError as err:
            if main:
                logger.warning("stage %s: its saved model is damaged (%s); training it again", stage.name, err)
        else:
            log(f"stage {stage.name}: already done ({kimg} kimg, same inputs), loaded from {stage.folder}")
            return model.generator, model.discriminator, kimg
    if main:
        with saving(stage.folder / STAGE_INPUTS, stage.folder):
            stage.folder.mkdir(parents=True, exist_ok=True)
            write_json(stage.folder / STAGE_INPUTS, stage.inputs)
    log(f"stage {stage.name}: training {config.kimg:g} kimg in {stage.folder}")
    result = train(G, D, source, config, accelerator=accelerator, class_names=class_names, description=stage.name,
                   resume_hint=AGAIN, **train_kwargs)
    G_ema, D = result.G_ema.eval(), result.D.eval()
    if main:
        model = stage.folder / "model"
        with saving(f"the model of stage {stage.name} into {model}", stage.folder):
            UnionModel(G_ema, D, class_names).save_pretrained(model, write_card=False)
            write_record(done, {"stage": stage.name, "kimg": result.kimg, "ema_rampup": effective_ema_rampup(config),
                                "inputs": stage.inputs}, [p for p in model.rglob("*") if p.is_file()])
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return G_ema, D, result.kimg


def finished_stage(stage: Stage) -> tuple[UnionModel, float]:
    """A finished stage's model and kimg, verified against its record; what is wrong with them, a one-line error."""
    done = stage.folder / STAGE_DONE
    problem = damage(done)
    if problem is not None:
        raise CocktailError(problem)
    # A record from before files were recorded lists none: then loading the model is the only test.
    return UnionModel.from_pretrained(stage.folder / "model"), read_record(done)["kimg"]


# -- EWC ------------------------------------------------------------------------------------


def ewc_settings(plan: MergePlan) -> dict:
    return {"g_mapping": plan.ewc_g_mapping, "g_synthesis": plan.ewc_g_synthesis, "d": plan.ewc_d,
            "samples": plan.ewc_samples, "batch": FISHER_BATCH, "seed": FISHER_SEED}


def ewc_penalties(plan: MergePlan, G: Generator, D: Discriminator, accelerator, log) -> dict:
    """EWC's penalties for the converted root (G, D), from the Fisher information of the source root."""
    root = plan.root_model
    fisher = cached_fisher(root.generator, root.discriminator, plan.ewc_samples, accelerator, log)
    penalties = {"g_penalty": ewc_penalty(G, conditional_fisher(fisher["G"], G, EWC_UNPENALISED["G"]),
                                          {"mapping.": plan.ewc_g_mapping, "synthesis.": plan.ewc_g_synthesis}),
                 "d_penalty": ewc_penalty(D, conditional_fisher(fisher["D"], D, EWC_UNPENALISED["D"]),
                                          {"": plan.ewc_d})}
    return {key: value for key, value in penalties.items() if value is not None}


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

    from .card import LIBRARY_NAME

    return Path(cached_assets_path(LIBRARY_NAME, namespace="fisher-information"))


def cached_fisher(G: Generator, D: Discriminator, samples: int, accelerator, log) -> dict:
    """The Fisher information of a source, estimated once per (weights, samples, batch, seed) and then reused
    by every EWC run of that source; the main process estimates it, every process reads the file."""
    key = _digest([weights_digest(G, D), samples, FISHER_BATCH, FISHER_SEED, "log D(G(z)), batch mean"])
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


# -- records ----------------------------------------------------------------------------------


def weights_digest(*modules: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (names and bytes): the identity of a model's weights."""
    digest = hashlib.sha256()
    for module in modules:
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def deciding_training(config: TrainingConfig) -> dict:
    """The training settings that decide a result (not where it is written, how it is shown or saved)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items() if k not in NOT_DECIDING}


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _differences(old, new, path: str = "") -> list[str]:
    """Where two JSON values differ, as 'path: old → new' lines (for one-line errors)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in sorted(set(old) | set(new), key=str)
                for line in _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new, strict=True))
                for line in _differences(a, b, f"{path}[{i}]")]
    if old == new:
        return []
    return [f"{path or 'value'}: {_short(old)} → {_short(new)}"]


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "…"


def weight_distances(plan: MergePlan, parents) -> dict:
    """Per-layer L2 distance to the root: rooted models vs the raw sources (rooting should shrink it)."""
    root_g = plan.root_model.generator
    root_state = {k: v.detach().float().cpu() for k, v in root_g.state_dict().items()}

    def per_layer(g: Generator) -> dict[str, float]:  # on the CPU: a rooted copy may sit on the GPU
        return {k: (v.detach().float().cpu() - root_state[k]).norm().item() for k, v in g.state_dict().items()
                if v.is_floating_point() and k in root_state and v.shape == root_state[k].shape}

    report = {"layers": {}, "summary": {}}
    for i, ing in enumerate(plan.ingredients):
        if i == plan.root or i < plan.base_classes:
            continue
        entry = {"rooted": per_layer(parents[i][0])} if plan.merge_method.parents == "rooted" else {}
        if ing.model is not None and network_kwargs(ing.model.generator) == network_kwargs(root_g):
            entry["raw"] = per_layer(ing.model.generator)
        report["layers"][ing.name] = entry
        report["summary"][ing.name] = {kind: math.sqrt(sum(d * d for d in layers.values()))
                                       for kind, layers in entry.items()}
    return report


def plan_recipe(plan: MergePlan) -> dict:
    """The settings that decide the result, as recorded in provenance (and compared before reusing stages)."""
    optional = {"conditional_rooting": True} if plan.conditional_rooting else {}  # recorded when not the default,
    if plan.class_percentages is not None:  # so earlier merges' records (and their stages) stay valid
        optional["class_percentages"] = list(plan.class_percentages)
    return {"method": plan.method, "root_kimg": plan.root_kimg, "merge_kimg": plan.merge_kimg,
            "truncation": plan.truncation, "training": deciding_training(plan.training),
            **optional, **plan.merge_method.settings(plan)}


def load_ingredient(spec: str | Spec, name: str | None = None, token=None) -> Ingredient:
    """A source spec → an Ingredient: our model (folder, ``example:``, Hub id, ``.pkl``) or a foreign sampler.

    ``spec#class`` picks one class of a multi-class model.
    """
    spec = parse(spec)
    opened = _open_model(spec, token)
    if opened is None:
        load_source(spec, 32, device="cpu")  # fail now, not after hours of rooting, if it cannot be loaded
        return Ingredient(name or _default_name(spec), spec.text, SourceRecord(spec.text).to_dict())
    model, provenance = opened
    index = picked_class(model, spec)
    default = model.class_names[index] if model.num_classes > 1 or model.class_names[0] != "class0" else None
    return Ingredient(name or default or _default_name(spec), spec.text, provenance, model, index)


def load_union_classes(spec: str | Spec, token=None) -> list[Ingredient]:
    """A union to extend (``--extend``) → one Ingredient per class, all sharing the one loaded model: the
    union is the root, and each old class is drawn from the union itself."""
    spec = parse(spec)
    if spec.class_pick is not None:
        raise CocktailError(f"--extend {spec.text}: a union is extended as a whole; drop '#{spec.class_pick}'")
    opened = _open_model(spec, token)
    if opened is None:
        raise CocktailError(f"--extend {spec.text}: not a GAN Cocktail / StyleGAN2 model; only a union of ours "
                            "(a folder, example:, Hub id or .pkl) can be extended")
    model, provenance = opened
    if model.generator.c_dim == 0:
        raise CocktailError(f"--extend {spec.text}: a single-domain model, not a union; merge it as a source "
                            f"instead (scripts/merge.py {spec.text} NEW_SOURCE …)")
    return [Ingredient(name, f"{spec.text}#{name}", {**provenance, "spec": f"{spec.text}#{name}"}, model, i)
            for i, name in enumerate(model.class_names)]


def _open_model(spec: Spec, token=None) -> tuple[UnionModel, dict] | None:
    """Our model behind a spec with its provenance record, or None for a foreign sampler."""
    if spec.kind is Kind.PKL_FILE:
        if not spec.path.is_file():
            raise CocktailError(f"{spec.base}: checkpoint file not found")
        from .convert import load_stylegan2_pkl

        networks = load_stylegan2_pkl(spec.path)
        record = SourceRecord(spec.text, sha256=file_sha256(spec.path)).to_dict()
        return UnionModel(networks["G_ema"], networks["D"]), record
    if spec.kind in (Kind.EXAMPLE, Kind.FOLDER):
        return UnionModel.from_pretrained(spec.base), SourceRecord(spec.text).to_dict()
    if spec.on_the_hub:
        from .hub import resolve

        resolved = resolve(spec, token=token)
        return UnionModel.from_pretrained(resolved.local_path), resolved.provenance()
    return None


def _default_name(spec: Spec) -> str:
    if spec.kind is Kind.ENTRY_POINT:  # faces:sample → faces, pkg.faces:sample → faces
        return spec.target.partition(":")[0].rpartition(".")[2]
    last = re.split(r"[/:]", (spec.file or spec.target).rstrip("/"))[-1]
    return last.removesuffix(Path(last).suffix) or "source"
