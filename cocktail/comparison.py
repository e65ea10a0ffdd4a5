"""A comparison of merge methods on any sources: cells of (budget, variant, seed), each one merge scored
against real images, resumable cell by cell, summarised as tables (mean ± sd over seeds) and a budget curve.

A *variant* is a registered method with settings of its own (``cond=cocktail:conditional_rooting=true``), so
an ablation is a list of variants. The *budget* is the total kimg of a merge. Under the ``total`` protocol
every variant spends it all: a method that roots gives ``root_share`` of it to its n − 1 rooting stages and
the rest to the merge stage, the others train their one stage for the whole budget. Under ``merge_stage``
(the other reading of the paper's protocol) the baselines get only what the rooting methods' merge stage
gets.

``diagnose`` also scores, per class, each rooted model, the plain average of the parents before any
fine-tuning, and the final stage's G_ema at each checkpoint: where the rooted knowledge goes (``training.png``
draws the last two over the kimg trained).

``train_only`` trains every cell and scores none, e.g. on a GPU machine without the Inception file; a later
run scores them. Such a run may bring back only each cell's ``union`` folder and ``trained.json``: a union
whose recorded recipe is the cell's is scored as it is, without its stages.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import CocktailError
from .files import write_json
from .folder import check_class_name
from .merge import MERGE_METHODS, STAGE_DONE, plan_recipe, run_merge
from .training import CHECKPOINTS_DIR
from .union import UnionModel

EVAL_SEED = 0  # every union is scored on the same latents, so variants differ only by their weights
PROTOCOLS = ("total", "merge_stage")
TRAINED = "trained.json"  # a cell's training wall-clock and device, kept apart from scoring


@dataclass(frozen=True)
class Variant:
    """A method with recipe settings of its own, under a name of its own (a column of the tables)."""

    name: str
    method: str
    settings: dict = field(default_factory=dict, hash=False)

    @property
    def roots(self) -> bool:
        return MERGE_METHODS[self.method].parents == "rooted"


def parse_variant(text: str) -> Variant:
    """``method`` or ``name=method:key=value,key=value`` (values read as YAML: numbers, true, lists)."""
    head, _, options = text.partition(":")
    name, _, method = head.partition("=") if "=" in head else (head, "", head)
    if method not in MERGE_METHODS:
        raise CocktailError(f"variant {text!r}: unknown method {method!r}; choose one of {', '.join(MERGE_METHODS)}")
    check_class_name(name, f"variant {text!r}")  # it names a folder
    settings = {}
    for item in filter(None, _top_level_items(options)):
        key, sep, value = item.partition("=")
        if not sep:
            raise CocktailError(f"variant {text!r}: option {item!r} is not key=value")
        try:
            settings[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise CocktailError(f"variant {text!r}: cannot read the value of {key.strip()!r}: {value!r}") from None
    return Variant(name, method, settings)


def _top_level_items(options: str) -> list[str]:
    """Split on the commas that are not inside brackets, so a list value keeps its own commas."""
    items, depth, current = [], 0, ""
    for char in options:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current]


def stage_lengths(variant: Variant, num_sources: int, total: float, root_share: float, protocol: str) -> dict:
    """root_kimg and merge_kimg of one variant at a total budget (see the module docstring)."""
    rooting = total * root_share
    if variant.roots:
        return {"root_kimg": rooting / (num_sources - 1), "merge_kimg": total - rooting}
    return {"root_kimg": 0.0, "merge_kimg": total if protocol == "total" else total - rooting}


@dataclass
class Comparison:
    """What one comparison runs: its sources, real folders, variants, budgets, seeds and scoring."""

    sources: list[str]
    real: dict[str, str]  # class name → folder of real images
    variants: list[Variant]
    budgets: list[float]
    seeds: list[int]
    output_dir: Path
    root_share: float = 1 / 3
    protocol: str = "total"
    num_samples: int = 200
    num_real: int = 1000
    training: dict = field(default_factory=dict)  # recipe training settings shared by every cell
    diagnose: bool = False
    scoring: dict = field(default_factory=dict)  # extra arguments of evaluate_model (extractor, cache_dir)
    train_only: bool = False  # train every cell, score none

    def cells(self) -> list[tuple[float, Variant, int]]:
        """Seeds outermost, so a stopped run has every variant of the first seeds rather than a few variants."""
        return [(b, v, s) for s in self.seeds for b in self.budgets for v in self.variants]

    def cell_folder(self, budget: float, variant: Variant, seed: int) -> Path:
        return self.output_dir / "cells" / f"{budget:g}kimg" / variant.name / f"seed{seed}"

    def check(self) -> None:
        if len(self.sources) < 2:
            raise CocktailError("a comparison needs at least 2 sources")
        if self.protocol not in PROTOCOLS:
            raise CocktailError(f"protocol must be one of {', '.join(PROTOCOLS)} (got {self.protocol!r})")
        if not 0 < self.root_share < 1:
            raise CocktailError(f"root_share must be in (0, 1) (got {self.root_share})")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise CocktailError(f"variant names must be unique, got {names}")
        missing = [f"{c}={f}" for c, f in self.real.items() if not Path(f).is_dir()]
        if missing:
            raise CocktailError(f"real image folder(s) not found: {', '.join(missing)}")

    def recipe(self, budget: float, variant: Variant, seed: int) -> dict:
        lengths = stage_lengths(variant, len(self.sources), budget, self.root_share, self.protocol)
        checkpointing = lengths["merge_kimg"] / 4 if self.diagnose else max(lengths["merge_kimg"] / 4, 4.0)
        settings = dict(variant.settings)
        # A variant's own training settings (``lr=cocktail:training={g_lr: 0.001}``) go on top of the shared ones.
        training = {**self.training, **(settings.pop("training", None) or {}), "seed": seed,
                    "checkpointing_kimg": checkpointing, "progress": False}
        if self.diagnose:
            training["checkpoints_total_limit"] = None  # keep every quarter of the final stage to score it
        return {"sources": list(self.sources), "method": variant.method, **settings, **lengths,
                "training": training, "output_dir": str(self.cell_folder(budget, variant, seed))}


def run_cell(comparison: Comparison, budget: float, variant: Variant, seed: int, accelerator,
             log=print) -> dict | None:
    """Train one union (resuming a stopped one), score it against the real folders, write result.json; None
    when the comparison only trains."""
    from .metrics import evaluate_model
    from .recipe import build_plan, resolve_recipe

    folder = comparison.cell_folder(budget, variant, seed)
    result_file = folder / "result.json"
    record = json.loads(result_file.read_text()) if result_file.is_file() else None
    if record is not None and (not comparison.diagnose or "diagnosis" in record or comparison.train_only):
        return record
    plan = build_plan(resolve_recipe(comparison.recipe(budget, variant, seed)))
    union = trained_union(folder, plan)
    common = dict(num_samples=comparison.num_samples, seed=EVAL_SEED, device=accelerator.device, progress=False,
                  **comparison.scoring)
    if record is not None:
        # Scored before without --diagnose: diagnose it now from what its folder kept (without --diagnose only
        # the final stage's last checkpoints are kept, so fewer quarters), and train and score nothing again.
        if union is None:
            log(f"{budget:g} kimg {variant.name} seed {seed}: not diagnosed, its folder no longer holds its union")
            return record
        started = time.time()
        record["diagnosis"] = diagnose(comparison, plan, folder, union, common)
        write_json(result_file, record)
        log(f"{budget:g} kimg {variant.name} seed {seed}: diagnosed ({time.time() - started:.0f} s)")
        return record
    if union is None:
        started = time.time()
        union = run_merge(plan, folder, accelerator=accelerator, log=lambda *a: None)
        write_json(folder / TRAINED, {"train_seconds": round(time.time() - started, 1),
                                      "device": str(accelerator.device)})
    trained = json.loads((folder / TRAINED).read_text())
    if comparison.train_only:
        log(f"{budget:g} kimg {variant.name} seed {seed}: trained in {trained['train_seconds']:.0f} s")
        return None
    started = time.time()
    real = evaluate_model(union, dict(comparison.real), num_real=comparison.num_real,
                          name=f"{variant.name} {budget:g} kimg seed {seed}", **common)
    record = {"budget": budget, "variant": variant.name, "method": variant.method, "settings": variant.settings,
              "seed": seed, "kimg": union.provenance.get("kimg"), **trained, "real": real.as_dict(),
              "weight_distances": union.provenance.get("weight_distances")}
    if comparison.diagnose:
        record["diagnosis"] = diagnose(comparison, plan, folder, union, common)
    record["eval_seconds"] = round(time.time() - started, 1)
    write_json(result_file, record)
    log(f"{budget:g} kimg {variant.name} seed {seed}: union FID vs real {real.scores['union'].fid:.2f} "
        f"(train {trained['train_seconds']:.0f} s, eval {record['eval_seconds']:.0f} s)")
    return record


def trained_union(folder: Path, plan) -> UnionModel | None:
    """The cell's union when it was trained (here or elsewhere) for exactly this plan, else None."""
    if not (folder / "union").is_dir() or not (folder / TRAINED).is_file():
        return None
    union = UnionModel.from_pretrained(folder / "union")
    return union if union.provenance.get("recipe") == plan_recipe(plan) else None


def diagnose(comparison: Comparison, plan, folder: Path, union, common: dict) -> dict:
    """Per-class FID vs real of each rooted model, of the parents' plain average, and of the final stage's
    G_ema at each of its checkpoints."""
    import copy

    from safetensors.torch import load_file

    from .merge.surgery import average_networks, make_conditional
    from .metrics import evaluate_model

    real = dict(comparison.real)
    names = plan.class_names

    def scores(model: UnionModel, classes: dict) -> dict:
        evaluation = evaluate_model(model, classes, num_real=comparison.num_real, **common)
        return {scope: s.fid for scope, s in evaluation.scores.items()}

    stage_root = folder / "stages" / plan.method
    report: dict = {"rooted": {}, "checkpoints": {}}
    parents = []
    for name in names:
        done = list(stage_root.glob(f"root-{name}-*/{STAGE_DONE}"))
        if not done:
            parents.append((plan.root_model.generator, plan.root_model.discriminator))
            continue
        rooted = UnionModel.from_pretrained(done[0].parent / "model")
        parents.append((rooted.generator, rooted.discriminator))
        if rooted.generator.c_dim:  # conditional rooting: the rooted model draws source i as class i
            rooted = UnionModel(rooted.generator, rooted.discriminator, names)
            report["rooted"][name] = scores(rooted, {name: real[name]})[name]
        else:
            report["rooted"][name] = scores(UnionModel(rooted.generator, None, [name]), {name: real[name]})[name]
    if plan.merge_method.parents is not None:
        G = average_networks([g for g, _ in parents])
        D = average_networks([d for _, d in parents])
        if G.c_dim == 0:
            G, D = make_conditional(G, D, len(names), seed=plan.training.seed)
        report["average"] = scores(UnionModel(G, D, names), real)
    final = [p for p in stage_root.glob("*") if (p / STAGE_DONE).is_file() and not p.name.startswith("root-")]
    for checkpoint in sorted(final[0].glob(f"{CHECKPOINTS_DIR}/checkpoint-*")) if final else []:
        G = copy.deepcopy(union.generator)
        G.load_state_dict(load_file(str(checkpoint / "G_ema.safetensors")))
        kimg = int(checkpoint.name.rpartition("-")[2]) / 1000
        report["checkpoints"][f"{kimg:g}"] = scores(UnionModel(G, None, names), real)
    return report


def collect(comparison: Comparison) -> list[dict]:
    """The finished cells' records."""
    records = []
    for budget, variant, seed in comparison.cells():
        path = comparison.cell_folder(budget, variant, seed) / "result.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
    return records


def mean_spread(values: list[float], count: bool = True) -> str:
    """``mean ± sd`` over seeds for a table cell (with ``(n=…)`` when ``count``); one value as it is."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    spread = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
    return f"{spread} (n={len(values)})" if count else spread


def fid_table(comparison: Comparison, records: list[dict], scopes: list[str]) -> str:
    """Rows: budget (× scope), columns: variants; FID vs real, mean ± sd over seeds."""
    head = [v.name for v in comparison.variants]
    lines = ["| budget | scope | " + " | ".join(head) + " |", "|" + " --- |" * (len(head) + 2)]
    for budget in comparison.budgets:
        for scope in scopes:
            row = [mean_spread([r["real"]["scores"][scope]["fid"] for r in records
                                if r["budget"] == budget and r["variant"] == v.name]) for v in comparison.variants]
            lines.append(f"| {budget:g} kimg | {scope} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def report(comparison: Comparison, records: list[dict]) -> str:
    classes = list(comparison.real)
    lines = [
        f"# Comparison: {' + '.join(comparison.sources)}", "",
        f"{len(records)} of {len(comparison.cells())} cells; seeds {comparison.seeds}; protocol "
        f"'{comparison.protocol}' (rooting share {comparison.root_share:.3g} of the total for methods that root); "
        f"N = {comparison.num_samples} generated per class against {comparison.num_real} real per class, "
        "union = classes pooled; FID vs real, mean ± sd over seeds (lower is better).", "",
        "Variants: " + "; ".join(f"`{v.name}` = {v.method} {v.settings or ''}".strip() for v in comparison.variants),
        "", "## Union FID against real images", "", fid_table(comparison, records, ["union"]), "",
        "## Per-class FID against real images", "", fid_table(comparison, records, classes), "",
    ]
    diagnosed = [r for r in records if r.get("diagnosis")]
    if diagnosed:
        lines += ["## Diagnosis (per-class FID vs real)", "",
                  "| budget | variant | seed | rooted models | average, before fine-tuning | final stage by kimg |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in diagnosed:
            d = r["diagnosis"]
            rooted = ", ".join(f"{c} {v:.1f}" for c, v in d["rooted"].items()) or "–"
            average = ", ".join(f"{c} {v:.1f}" for c, v in d.get("average", {}).items()) or "–"
            curve = "; ".join(f"{k}: " + ", ".join(f"{c} {v:.1f}" for c, v in s.items())
                              for k, s in d["checkpoints"].items())
            lines.append(f"| {r['budget']:g} | {r['variant']} | {r['seed']} | {rooted} | {average} | {curve} |")
        lines.append("")
    seconds = [r["train_seconds"] for r in records]
    if seconds:
        lines.append(f"Training wall-clock per cell: {min(seconds):.0f}–{max(seconds):.0f} s on "
                     f"{sorted({r['device'] for r in records})}.")
    return "\n".join(lines) + "\n"


def draw_fid_curves(axis, curves: dict[str, dict[float, list[float]]], dashed: frozenset[str] = frozenset()) -> None:
    """One line per label on a log2 kimg axis: at each budget the mean FID over its values (one per seed), sd as
    error bars; budgets without values are left out."""
    for label, points in curves.items():
        budgets = sorted(b for b, values in points.items() if values)
        if budgets:
            values = [points[b] for b in budgets]
            axis.errorbar(budgets, [statistics.mean(v) for v in values],
                          yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for v in values], marker="o",
                          capsize=3, label=label, linestyle="--" if label in dashed else "-")
    axis.set_xscale("log", base=2)


def save_fid_panels(curves: dict[str, dict[str, dict[float, list[float]]]], path: Path, xlabel: str, title: str,
                    log_kimg: bool = True) -> Path:
    """One panel per scope of ``curves`` (scope → line → kimg → one FID per seed), drawn by
    ``draw_fid_curves``; ``title`` is formatted with the scope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), squeeze=False)
    for axis, (scope, lines) in zip(axes[0], curves.items(), strict=True):
        draw_fid_curves(axis, lines)
        if not log_kimg:
            axis.set_xscale("linear")
        axis.set_xlabel(xlabel)
        axis.set_title(title.format(scope=scope), fontsize=9)
    axes[0][0].set_ylabel("FID (lower is better)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def budget_plot(comparison: Comparison, records: list[dict], path: Path) -> Path:
    """Union and per-class FID vs total kimg, one line per variant, mean with sd error bars over seeds."""
    curves = {scope: {variant.name: {budget: [r["real"]["scores"][scope]["fid"] for r in records
                                              if r["budget"] == budget and r["variant"] == variant.name]
                                     for budget in comparison.budgets} for variant in comparison.variants}
              for scope in ["union", *comparison.real]}
    return save_fid_panels(curves, path, "total kimg", "{scope}: FID vs real")


def training_curves(comparison: Comparison, records: list[dict]) -> dict[str, dict[str, dict[float, list[float]]]]:
    """scope → line (variant, and budget when several) → kimg trained → one FID vs real per seed, from the
    diagnosed cells: a method that roots starts at its rooting's kimg with the average of its parents, then
    the final stage's checkpoints."""
    variants = {v.name: v for v in comparison.variants}
    curves: dict[str, dict[str, dict[float, list[float]]]] = {}  # scope → line → kimg → one FID per seed
    for r in records:
        if not r.get("diagnosis") or r["variant"] not in variants:
            continue
        lengths = stage_lengths(variants[r["variant"]], len(comparison.sources), r["budget"],
                                comparison.root_share, comparison.protocol)
        start = lengths["root_kimg"] * (len(comparison.sources) - 1)
        line = r["variant"] if len(comparison.budgets) == 1 else f"{r['variant']} {r['budget']:g} kimg"
        points = [(start, r["diagnosis"].get("average", {}))]
        points += [(start + float(kimg), scores) for kimg, scores in r["diagnosis"]["checkpoints"].items()]
        for kimg, scores in points:
            for scope, fid in scores.items():
                curves.setdefault(scope, {}).setdefault(line, {}).setdefault(kimg, []).append(fid)
    return curves


def training_plot(comparison: Comparison, records: list[dict], path: Path) -> Path:
    """``training_curves`` drawn, one panel per scope: a jump up where a rooting method's merge stage starts is
    the rooted knowledge the average lost."""
    curves = training_curves(comparison, records)
    curves = {scope: curves[scope] for scope in ["union", *comparison.real] if scope in curves}
    return save_fid_panels(curves, path, "kimg trained (merge stage after the rooting)",
                           "{scope}: FID vs real during training", log_kimg=False)


def run_comparison(comparison: Comparison, accelerator, log=print) -> tuple[str, list[dict]]:
    """Every cell not yet finished, then results.md, results.json, budget.png (and, when any cell was diagnosed,
    training.png) in the output folder."""
    comparison.check()
    comparison.output_dir.mkdir(parents=True, exist_ok=True)
    for number, (budget, variant, seed) in enumerate(comparison.cells(), 1):
        log(f"[{number}/{len(comparison.cells())}] {budget:g} kimg, {variant.name}, seed {seed}")
        run_cell(comparison, budget, variant, seed, accelerator, log)
    if comparison.train_only:
        return f"{len(comparison.cells())} cells trained; run again without train_only to score them", []
    return write_results(comparison)


def write_results(comparison: Comparison) -> tuple[str, list[dict]]:
    records = collect(comparison)
    text = report(comparison, records)
    (comparison.output_dir / "results.md").write_text(text)
    (comparison.output_dir / "results.json").write_text(json.dumps({"cells": records}, indent=2) + "\n")
    if records:
        budget_plot(comparison, records, comparison.output_dir / "budget.png")
    if any(r.get("diagnosis") for r in records):
        training_plot(comparison, records, comparison.output_dir / "training.png")
    return text, records
