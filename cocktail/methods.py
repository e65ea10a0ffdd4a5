"""GAN Cocktail and its baselines, each a way to set up the one training loop.

* ``root``: the root's G_ema and D fine-tuned on samples of one other source (GAN_{r→i}).
* ``merge``: every parameter and buffer averaged over root and rooted models, made
  conditional (class c ↔ source c) and fine-tuned on the labelled mixture of all sources.
* ``cocktail`` = root every non-root source, then merge (the paper's method).
* Baselines on the same generated data: ``scratch``, ``transfer`` (TransferGAN), ``ewc``,
  ``freeze_d`` and ``average`` (naive averaging of the raw sources, the paper's failure case).

Each stage's result is saved under ``<output_dir>/stages/<stage>/`` so an interrupted merge
resumes at the stage (and the checkpoint inside it) where it stopped.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .assets import is_example
from .convert import file_sha256
from .errors import CocktailError
from .networks import Discriminator, Generator
from .sources import (
    ENTRY_POINT,
    TORCHSCRIPT_SUFFIXES,
    MixtureSource,
    ModelSource,
    Source,
    load_source,
    picked_class,
    split_options,
)
from .training import TrainingConfig, train
from .union import UnionModel, average_networks, make_conditional, network_kwargs

METHODS = ("cocktail", "average", "scratch", "transfer", "ewc", "freeze_d")
STAGE_DONE = "stage.json"


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


@dataclass
class MergePlan:
    """Everything a merge needs, validated before any training starts."""

    ingredients: list[Ingredient]
    root: int = 0
    method: str = "cocktail"
    root_kimg: float = 4.0
    merge_kimg: float = 8.0
    training: TrainingConfig = field(default_factory=TrainingConfig)
    truncation: float = 1.0  # sources are sampled without truncation, as in the paper
    ewc_lambda: float = 5e8
    freeze_d_blocks: int = 1

    @property
    def class_names(self) -> list[str]:
        return [ing.name for ing in self.ingredients]

    @property
    def root_model(self) -> UnionModel:
        return self.ingredients[self.root].model

    def validate(self) -> None:
        """Fail fast, before any training, on everything that can be checked up front."""
        if self.method not in METHODS:
            raise CocktailError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if len(self.ingredients) < 2:
            raise CocktailError(f"a merge needs at least 2 sources, got {len(self.ingredients)}")
        if len(set(self.class_names)) != len(self.class_names):
            raise CocktailError(f"source names must be unique, got {self.class_names}")
        if not 0 <= self.root < len(self.ingredients):
            raise CocktailError(f"root index {self.root} is out of range for {len(self.ingredients)} sources")
        root = self.ingredients[self.root]
        # Even 'scratch' takes the root's architecture, so every method needs a root of ours.
        if root.model is None:
            raise CocktailError(f"root {root.name!r} ({root.spec}) is a foreign sampler; the root must be a "
                                "GAN Cocktail / StyleGAN2 model")
        if root.model.discriminator is None:
            raise CocktailError(f"root {root.name!r} ({root.spec}) has no discriminator; rooting and "
                                "fine-tuning need one")
        if root.model.generator.c_dim != 0:
            raise CocktailError(f"root {root.name!r} ({root.spec}) is conditional; the root must be an "
                                "unconditional single-domain model")
        if self.method == "average":
            reference = network_kwargs(root.model.generator)
            for ing in self.ingredients:
                if ing.model is None or network_kwargs(ing.model.generator) != reference:
                    raise CocktailError(f"method 'average' needs every source to share the root's architecture; "
                                        f"{ing.name!r} ({ing.spec}) does not")
                if ing.model.discriminator is None:
                    raise CocktailError(f"method 'average' needs every source's discriminator; {ing.name!r} has none")
        if self.root_kimg < 0 or self.merge_kimg <= 0:
            raise CocktailError("root_kimg must be >= 0 and merge_kimg > 0")



def run_merge(plan: MergePlan, output_dir: str | Path, accelerator=None, log=print) -> UnionModel:
    """Run ``plan.method`` end to end; returns the union (main process saves it to ``output_dir/union``)."""
    plan.validate()
    output_dir = Path(output_dir)
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    names, n = plan.class_names, len(plan.ingredients)
    resolution = plan.root_model.generator.img_resolution

    def sampler(i, label=None, num_classes=1):
        return plan.ingredients[i].sampler(label if label is not None else 0, num_classes, resolution,
                                           plan.truncation, device)

    mixture = MixtureSource([sampler(i, label=i, num_classes=n) for i in range(n)])
    kimg = {}

    def stage(name, G, D, source, **train_kwargs):
        config = replace(plan.training, kimg=train_kwargs.pop("kimg"), output_dir=str(output_dir / "stages" / name))
        G, D, done_kimg = run_stage(name, G, D, source, config, accelerator, log, **train_kwargs)
        kimg[name] = done_kimg
        return G, D

    root = plan.root_model
    if plan.method in ("cocktail", "average"):
        parents = []
        for i, ing in enumerate(plan.ingredients):
            if plan.method == "average":
                parents.append((ing.model.generator, ing.model.discriminator))
            elif i == plan.root or plan.root_kimg == 0:
                parents.append((root.generator, root.discriminator))
            else:
                parents.append(stage(f"root-{ing.name}", copy.deepcopy(root.generator),
                                     copy.deepcopy(root.discriminator), sampler(i), kimg=plan.root_kimg))
        G = average_networks([g for g, _ in parents])
        D = average_networks([d for _, d in parents])
        G, D = make_conditional(G, D, n)
        distances = weight_distances(plan, parents)
        G, D = stage("merge", G, D, mixture, kimg=plan.merge_kimg, class_names=names)
    else:
        distances = None
        if plan.method == "scratch":
            G, D = fresh_networks(root.generator, root.discriminator, n)
        else:
            G, D = make_conditional(root.generator, root.discriminator, n)
        extra = {}
        if plan.method == "ewc":
            fisher = fisher_information(G, D, n, device=device)
            extra["g_penalty"] = ewc_penalty(G, fisher, plan.ewc_lambda)
        if plan.method == "freeze_d":
            extra["frozen_d_prefixes"] = tuple(f"b{res}." for res in D.block_resolutions[: plan.freeze_d_blocks])
        G, D = stage(plan.method, G, D, mixture, kimg=plan.merge_kimg, class_names=names, **extra)

    provenance = {
        "method": plan.method,
        "root": plan.ingredients[plan.root].name,
        "sources": [{"name": ing.name, **ing.provenance} for ing in plan.ingredients],
        "recipe": plan_recipe(plan),
        "kimg": kimg,
    }
    if distances is not None:
        provenance["weight_distances"] = distances["summary"]
    union = UnionModel(G.eval(), D.eval(), names, provenance)
    if accelerator is None or accelerator.is_main_process:
        union.save_pretrained(output_dir / "union")
        if distances is not None:
            (output_dir / "union" / "weight_distances.json").write_text(json.dumps(distances, indent=2) + "\n")
    return union


def run_stage(name, G, D, source, config: TrainingConfig, accelerator, log, class_names=None, **train_kwargs):
    """Train one stage, or load it if a previous run finished it; returns (G_ema, D, kimg)."""
    stage_dir = Path(config.output_dir)
    done = stage_dir / STAGE_DONE
    if done.is_file():
        info = json.loads(done.read_text())
        model = UnionModel.from_pretrained(stage_dir / "model")
        log(f"stage {name}: already done ({info['kimg']} kimg), loaded from {stage_dir / 'model'}")
        return model.generator, model.discriminator, info["kimg"]
    if config.resume_from_checkpoint is None and (stage_dir / "checkpoints").is_dir():
        config = replace(config, resume_from_checkpoint="latest")  # an interrupted merge goes on where it was
    log(f"stage {name}: training {config.kimg:g} kimg")
    result = train(G, D, source, config, accelerator=accelerator, class_names=class_names, description=name,
                   **train_kwargs)
    G_ema, D = result.G_ema.eval(), result.D.eval()
    if accelerator is None or accelerator.is_main_process:
        UnionModel(G_ema, D, class_names).save_pretrained(stage_dir / "model", write_card=False)
        done.write_text(json.dumps({"stage": name, "kimg": result.kimg}) + "\n")
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return G_ema, D, result.kimg


def fresh_networks(reference_g: Generator, reference_d: Discriminator, num_classes: int, seed: int = 0):
    """Randomly initialised conditional networks with the root's architecture (the 'scratch' baseline)."""
    torch.manual_seed(seed)
    return (Generator(**network_kwargs(reference_g, c_dim=num_classes)),
            Discriminator(**network_kwargs(reference_d, c_dim=num_classes)))


def fisher_information(G: Generator, D: Discriminator, num_classes: int, batches: int = 4, batch_size: int = 16,
                       device="cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of G's weights from its own samples, judged by its own D (EWC, Li et al. 2020).

    F_i = E[(∂ log D(G(z)) / ∂θ_i)²], estimated on ``batches`` batches of generated images.
    """
    G, D = G.to(device), D.to(device)
    gen = torch.Generator().manual_seed(seed)
    fisher = {name: torch.zeros_like(p) for name, p in G.named_parameters()}
    for _ in range(batches):
        z = torch.randn([batch_size, G.z_dim], generator=gen).to(device)
        labels = torch.randint(num_classes, [batch_size], generator=gen)
        c = torch.nn.functional.one_hot(labels, num_classes).float().to(device)
        log_likelihood = -torch.nn.functional.softplus(-D(G(z, c, noise_mode="const"), c)).mean()
        grads = torch.autograd.grad(log_likelihood, list(G.parameters()), allow_unused=True)
        for (name, _), grad in zip(G.named_parameters(), grads, strict=True):
            if grad is not None:
                fisher[name] += grad.detach().square() / batches
    return fisher


def ewc_penalty(G: Generator, fisher: dict[str, torch.Tensor], weight: float) -> Callable[[Generator], torch.Tensor]:
    """λ Σ F_i (θ_i − θ*_i)²: keeps the weights that mattered to the source near their source values."""
    anchor = {name: p.detach().clone() for name, p in G.named_parameters()}

    def penalty(current: Generator) -> torch.Tensor:
        total = 0.0
        for name, p in current.named_parameters():
            total = total + (fisher[name].to(p.device) * (p - anchor[name].to(p.device)).square()).sum()
        return weight * total

    return penalty


def weight_distances(plan: MergePlan, parents) -> dict:
    """Per-layer L2 distance to the root: rooted models vs the raw sources (rooting should shrink it)."""
    root_g = plan.root_model.generator
    root_state = root_g.state_dict()

    def per_layer(g: Generator) -> dict[str, float]:
        return {k: (v.float() - root_state[k].float()).norm().item() for k, v in g.state_dict().items()
                if v.is_floating_point() and k in root_state and v.shape == root_state[k].shape}

    report = {"layers": {}, "summary": {}}
    for i, ing in enumerate(plan.ingredients):
        if i == plan.root:
            continue
        entry = {"rooted": per_layer(parents[i][0])} if plan.method == "cocktail" else {}
        if ing.model is not None and network_kwargs(ing.model.generator) == network_kwargs(root_g):
            entry["raw"] = per_layer(ing.model.generator)
        report["layers"][ing.name] = entry
        report["summary"][ing.name] = {kind: math.sqrt(sum(d * d for d in layers.values()))
                                       for kind, layers in entry.items()}
    return report


def plan_recipe(plan: MergePlan) -> dict:
    """The hyper-parameters that decide the result, as recorded in provenance."""
    training = {k: v for k, v in vars(plan.training).items()
                if k not in ("output_dir", "resume_from_checkpoint", "progress", "report_to", "kimg")}
    return {"method": plan.method, "root_kimg": plan.root_kimg, "merge_kimg": plan.merge_kimg,
            "truncation": plan.truncation, "ewc_lambda": plan.ewc_lambda if plan.method == "ewc" else None,
            "freeze_d_blocks": plan.freeze_d_blocks if plan.method == "freeze_d" else None, "training": training}



def load_ingredient(spec: str, name: str | None = None, token=None) -> Ingredient:
    """A source spec → an Ingredient: our model (folder, ``example:``, Hub id, ``.pkl``) or a foreign sampler.

    ``spec#class`` picks one class of a multi-class model.
    """
    base, _, class_label = split_options(spec)[0].partition("#")
    path = Path(base)
    # A .pkl path that can only be meant locally; anything else (org/name/dir/file.pkl) may be on the Hub.
    local_pkl = path.is_file() or path.is_absolute() or path.parent.is_dir() or base.count("/") < 2
    if path.suffix == ".pkl" and local_pkl:
        if not path.is_file():
            raise CocktailError(f"{base}: checkpoint file not found")
        from .convert import load_stylegan2_pkl

        networks = load_stylegan2_pkl(path)
        model = UnionModel(networks["G_ema"], networks["D"])
        provenance = {"spec": spec, "sha256": file_sha256(path)}
    elif (ENTRY_POINT.fullmatch(base) and not is_example(base)) or path.suffix in TORCHSCRIPT_SUFFIXES or (
            path.is_dir() and not (path / "generator").is_dir()):
        load_source(spec, 32, device="cpu")  # fail now, not after hours of rooting, if it cannot be loaded
        return Ingredient(name or _default_name(base), spec, {"spec": spec})
    elif is_example(base) or path.is_dir():
        model = UnionModel.from_pretrained(base)
        provenance = {"spec": spec}
    else:
        from .hub import resolve

        resolved = resolve(base, token=token)
        model = UnionModel.from_pretrained(resolved.local_path)
        provenance = resolved.provenance() | {"spec": spec}
    index = picked_class(model, base, class_label)
    default = model.class_names[index] if model.num_classes > 1 or model.class_names[0] != "class0" else None
    return Ingredient(name or default or _default_name(base), spec, provenance, model, index)


def _default_name(spec: str) -> str:
    if ENTRY_POINT.fullmatch(spec) and not is_example(spec):  # faces:sample → faces, pkg.faces:sample → faces
        return spec.partition(":")[0].rpartition(".")[2]
    last = re.split(r"[/:]", spec.split("@")[0].rstrip("/"))[-1]
    return last.removesuffix(Path(last).suffix) or "source"
