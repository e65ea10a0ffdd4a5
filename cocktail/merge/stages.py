"""A merge's stages and its output folder: which stages a plan runs, what decides each one's result, and
which folder holds it, so that a finished stage is reused and an interrupted one resumed only when its
recorded inputs are this run's, and a folder holding a different merge stops the run before any training."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import CocktailError
from ..files import AGAIN, damage, json_digest, read_record, remove_leftovers, saving, write_json, write_record
from ..settings import deciding_values
from ..training import CHECKPOINTS_DIR, TrainingConfig, checked_checkpoint, effective_ema_rampup, train
from ..union import UnionModel
from .plan import MergePlan, MergeSettings, plan_recipe

logger = logging.getLogger(__name__)

STAGE_DONE = "stage.json"  # written last, with the size and SHA-256 of each file of the stage's model
STAGE_INPUTS = "inputs.json"  # written when a stage starts: its checkpoints belong to these inputs
RUN_RECORD = "run.json"


@dataclass
class Stage:
    """One training run of a merge: its name, everything that decides its result, and its folder."""

    name: str
    inputs: dict
    folder: Path


def plan_stages(plan: MergePlan, fingerprints: list[dict], output_dir: Path, precision: str) -> list[Stage]:
    """The stages ``plan`` will run, in order, each with the inputs that decide its result."""
    method = plan.merge_method
    common = {"method": plan.method, "training": deciding_values(plan.training), "truncation": plan.truncation,
              "mixed_precision": precision}
    root_fp = fingerprints[plan.root]
    stages = []

    def add(name, **inputs):
        inputs = {"stage": name, **common, **inputs}
        stages.append(Stage(name, inputs, output_dir / "stages" / plan.method / f"{name}-{json_digest(inputs)[:12]}"))
        return inputs

    # The final stage's inputs: its method's settings and the merge settings declared for it (stage="merge").
    settings = {**method.settings(plan), **deciding_values(plan, MergeSettings, stage="merge")}
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
            parents.append(json_digest(add(f"root-{ing.name}", root=root_fp, source=fingerprints[i],
                                           kimg=plan.root_kimg, **conditional)))
        else:
            parents.append(root_fp)
    add("merge", parents=parents, sources=fingerprints, kimg=plan.merge_kimg, **settings)
    return stages


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
        what = "; ".join(differences(old, run)[:3])
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
                what = "; ".join(differences(recorded or {}, stage.inputs)[:3])
                raise CocktailError(f"{stage.folder} holds stage {stage.name} of other inputs ({what}); "
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


def resume_for(stage: Stage, resume: str | None, owner: Stage | None) -> str | None:
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


def differences(old, new, path: str = "") -> list[str]:
    """Where two JSON values differ, as 'path: old → new' lines (for one-line errors)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in sorted(set(old) | set(new), key=str)
                for line in differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new, strict=True))
                for line in differences(a, b, f"{path}[{i}]")]
    if old == new:
        return []
    return [f"{path or 'value'}: {_short(old)} → {_short(new)}"]


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "…"
