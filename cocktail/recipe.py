"""Merge recipes: a YAML file (like mergekit's) and/or command-line flags → a validated MergePlan.

A recipe names everything a merge depends on, so it is also what provenance records::

    sources:                      # Hub ids (org/name@rev), folders, .pkl files, example:<name>,
      - example:trouser           # TorchScript files or module:function samplers
      - {spec: org/cats@v1.0, name: cat}
    root: trouser                 # a source name or index (default: the first)
    # extend: org/union           # instead of root: the sources become new classes of this union
    method: cocktail              # or average, scratch, transfer, ewc, freeze_d
    root_kimg: 8                  # defaults: MergePlan's (cocktail.merge.plan), the one definition
    merge_kimg: 32
    training: {batch_size: 32, r1_gamma: 10, pl_weight: 2}
    output_dir: outputs/cocktail

Every setting is checked (types, ranges, finiteness, divisibility) before any source is loaded.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from .assets import PREFIX
from .errors import CocktailError, first_line
from .merge import MERGE_TRAINING, MergePlan, load_ingredient, load_union_classes, plan_defaults
from .settings import recipe_keys
from .specs import with_options
from .training import TrainingConfig

# The embedded default: the example sources shipped in cocktail/assets, sized to finish on a
# 2-core CPU in about ten minutes.
DEFAULT_SOURCES = [f"{PREFIX}trouser", f"{PREFIX}sneaker", f"{PREFIX}bag"]
DEFAULTS = {
    "sources": None,  # DEFAULT_SOURCES for a fresh merge
    "extend": None,
    "names": None,
    "root": None,
    **plan_defaults(),
    "training": {},
    "output_dir": "outputs/cocktail",
    "overwrite_output_dir": False,
    "mixed_precision": "no",
    "report_to": None,
    "push_to_hub": False,
    "hub_model_id": None,
    "hub_private_repo": False,
}
TRAINING_KEYS = set(recipe_keys(TrainingConfig))


def load_recipe_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        recipe = yaml.safe_load(path.read_text())
    except OSError as err:
        raise CocktailError(f"{path}: cannot read the recipe ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise CocktailError(f"{path}: not valid YAML ({first_line(err)})") from None
    if not isinstance(recipe, dict):
        raise CocktailError(f"{path}: a recipe is a YAML mapping (sources:, method:, …)")
    return recipe


def resolve_recipe(*layers: dict) -> dict:
    """DEFAULTS, then each layer (file, then flags) on top; unknown keys are refused (typos)."""
    recipe = {**DEFAULTS, "training": {}}
    for layer in layers:
        unknown = set(layer) - set(DEFAULTS)
        if unknown:
            raise CocktailError(f"unknown recipe key(s): {', '.join(sorted(unknown))}; known: "
                                f"{', '.join(sorted(DEFAULTS))}")
        for key, value in layer.items():
            if key == "training":
                recipe["training"] = {**recipe["training"], **(value or {})}
            elif value is not None:
                recipe[key] = value
    unknown = set(recipe["training"]) - TRAINING_KEYS
    if unknown:
        raise CocktailError(f"unknown training key(s): {', '.join(sorted(unknown))}; known: "
                            f"{', '.join(sorted(TRAINING_KEYS))}")
    return recipe


def source_entries(recipe: dict) -> list[tuple[str, str | None]]:
    """(spec, name) pairs from ``sources`` (strings or {spec, name, options}) and optional ``names``.

    A mapping's other keys are source options (``{spec: faces.ts, z_dim: 100}``), folded into the spec
    string (``faces.ts?z_dim=100``) that loads the source and that provenance records."""
    entries = []
    sources = recipe["sources"] if recipe["sources"] is not None else [] if recipe.get("extend") else DEFAULT_SOURCES
    for item in sources:
        if isinstance(item, str):
            entries.append((item, None))
        elif isinstance(item, dict) and isinstance(item.get("spec"), str):
            options = {key: value for key, value in item.items() if key not in ("spec", "name")}
            entries.append((with_options(item["spec"], options), item.get("name")))
        else:
            raise CocktailError(f"a source is a spec string or {{spec: ..., name: ..., <option>: ...}}, got {item!r}")
    names = recipe.get("names")
    if names:
        if len(names) != len(entries):
            raise CocktailError(f"{len(names)} names given for {len(entries)} sources")
        entries = [(spec, name) for (spec, _), name in zip(entries, names, strict=True)]
    return entries


def build_plan(recipe: dict, token=None, world: int = 1) -> MergePlan:
    """Check every setting, then load the sources (failing fast on any that cannot be reached) and validate."""
    try:
        training = TrainingConfig(**{**MERGE_TRAINING, **recipe["training"]}, report_to=recipe["report_to"])
    except TypeError as err:
        raise CocktailError(f"bad training settings: {err}") from None
    settings = {key: recipe[key] for key in plan_defaults()}
    draft = MergePlan(ingredients=[], training=training, **settings)
    draft.check_settings(world)
    base = []
    if recipe["extend"] is not None:
        if recipe["root"] is not None:
            raise CocktailError("root does not apply to --extend: the union being extended is the root")
        base = load_union_classes(recipe["extend"], token=token)
    ingredients = base + [load_ingredient(spec, name, token=token) for spec, name in source_entries(recipe)]
    plan = replace(draft, ingredients=ingredients, root=root_index(recipe["root"], [ing.name for ing in ingredients]))
    plan.validate(world)
    return plan


def root_index(root, names: list[str]) -> int:
    """``root``: a source name or index; the first source when unset."""
    if root is None:
        return 0
    if isinstance(root, int) or (isinstance(root, str) and root.isdigit()):
        return int(root)
    if root in names:
        return names.index(root)
    raise CocktailError(f"root {root!r} is not one of the sources: {', '.join(names)}")


def check_output_dir(path: str | Path) -> Path:
    """The output folder must be creatable and writable before hours of training start."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise CocktailError(f"{path}: output directory is not writable ({err.strerror})") from None
    return path
