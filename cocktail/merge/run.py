"""``run_merge``: a plan's stages run in order, each rooting or merging, and the union saved with its
provenance."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import torch

from ..files import remove_leftovers, saving, write_json
from ..networks import Generator, network_kwargs
from ..provenance import Extension, Provenance
from ..sources import MixtureSource
from ..specs import SourceRecord
from ..training import effective_ema_rampup
from ..union import UnionModel
from .plan import MergePlan, plan_recipe
from .stages import RUN_RECORD, prepare_output_dir, replace_old_run, resume_for, run_stage
from .surgery import average_networks, make_conditional


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
                         resume_from_checkpoint=resume_for(current, plan.training.resume_from_checkpoint, owner))
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
        if method.roots(plan, i):  # the rooted model is saved under its source's name(s), to be read on its own
            source = sampler(i, label=i, num_classes=n) if conditional else sampler(i)
            return stage(copy.deepcopy(root_g), copy.deepcopy(root_d), source,
                         class_names=names if conditional else [names[i]])
        return root_g, root_d

    if method.parents is None:
        G, D = method.start(root.generator, root.discriminator, n, seed)
        parents = distances = None
    else:
        parents = [parent(i) for i in range(n)]
        kept = plan.from_root or []
        G = average_networks([g for g, _ in parents], keep=[f"{part}." for part in kept if part != "discriminator"],
                             keep_from=plan.root)
        D = copy.deepcopy(parents[plan.root][1]) if "discriminator" in kept else \
            average_networks([d for _, d in parents])
        if G.c_dim == 0:
            G, D = make_conditional(G, D, n, seed=seed)
        distances = weight_distances(plan, parents)
    G, D = stage(G, D, mixture, class_names=names, **method.training(plan, G, D, accelerator, log, parents))

    provenance = Provenance(
        method=plan.method, root=plan.ingredients[plan.root].name,
        sources=[replace(SourceRecord.from_dict(ing.provenance), name=ing.name) for ing in plan.ingredients],
        recipe=plan_recipe(plan), kimg=kimg, ema_rampup=rampup,  # ema_rampup: per stage, as "auto" resolved it
        weight_distances=distances["summary"] if distances is not None else None,
        extends=Extension(plan.ingredients[0].spec.rpartition("#")[0],  # load_union_classes' spec
                          names[: plan.base_classes], Provenance.from_dict(root.provenance))
        if plan.base_classes else None)
    union = UnionModel(G.eval(), D.eval(), names, provenance.to_dict())
    if main:
        with saving(f"the union model folder {output_dir / 'union'}", output_dir):
            union.save_pretrained(output_dir / "union")
            if distances is not None:
                write_json(output_dir / "union" / "weight_distances.json", distances)
    return union


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
