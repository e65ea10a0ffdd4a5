"""GAN Cocktail end to end on three tiny sources that draw solid red, green and blue, plus the baselines.

The sources share the tiny architecture but start from different random weights, so the paper's
claims can be checked cheaply: rooting brings weights close to the root, and after merging each
class draws its own source's colour.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cocktail.errors import CocktailError
from cocktail.methods import MergePlan, load_ingredient, run_merge
from cocktail.networks import Discriminator, Generator
from cocktail.recipe import build_plan, resolve_recipe
from cocktail.training import TrainingConfig
from cocktail.union import TINY_D_KWARGS, TINY_G_KWARGS, UnionModel

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"red": (0.8, -0.8, -0.8), "green": (-0.8, 0.8, -0.8), "blue": (-0.8, -0.8, 0.8)}
# Fast settings for tiny models: a few hundred steps must be enough for classes to separate.
FAST = dict(batch_size=8, g_lr=0.02, d_lr=0.02, r1_interval=4, pl_weight=0.0, style_mixing_prob=0.0,
            ema_kimg=0.05, progress=False)


def colour_source(name: str, seed: int, folder: Path) -> Path:
    """A tiny GAN whose images are (almost) one solid colour: the last ToRGB bias sets it."""
    torch.manual_seed(seed)
    G, D = Generator(**TINY_G_KWARGS), Discriminator(**TINY_D_KWARGS)
    with torch.no_grad():
        for block in G.synthesis.blocks():
            block.torgb.weight.mul_(0.1)
            block.torgb.bias.zero_()
        G.synthesis.b32.torgb.bias.copy_(torch.tensor(COLOURS[name]))
    return UnionModel(G, D, [name]).save_pretrained(folder / name, write_card=False)


def mean_colour(model: UnionModel, label, seeds=range(16)) -> torch.Tensor:
    return model.generate(label, seeds).mean(dim=[0, 2, 3])


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    return [colour_source(name, seed, folder) for seed, name in enumerate(COLOURS)]


@pytest.fixture(scope="module")
def cocktail_run(sources, tmp_path_factory):
    output = tmp_path_factory.mktemp("cocktail")
    plan = MergePlan([load_ingredient(str(s)) for s in sources], method="cocktail", root_kimg=0.2,
                     merge_kimg=1.6, training=TrainingConfig(**FAST))
    logs = []
    union = run_merge(plan, output, log=logs.append)
    return plan, union, output, logs


def test_cocktail_union_has_one_class_per_source_with_provenance(cocktail_run):
    plan, union, output, _ = cocktail_run
    saved = UnionModel.from_pretrained(output / "union")
    assert saved.class_names == ["red", "green", "blue"]
    assert saved.generator.c_dim == 3 and saved.discriminator.c_dim == 3
    provenance = saved.provenance
    assert provenance["method"] == "cocktail" and provenance["root"] == "red"
    assert [s["name"] for s in provenance["sources"]] == ["red", "green", "blue"]
    assert set(provenance["kimg"]) == {"root-green", "root-blue", "merge"}
    assert provenance["recipe"]["training"]["batch_size"] == 8
    assert (output / "union" / "samples.png").is_file() and (output / "union" / "README.md").is_file()


def test_each_class_draws_its_own_source(cocktail_run):
    plan, union, _, _ = cocktail_run
    source_colours = [mean_colour(ing.model, 0) for ing in plan.ingredients]
    for c in range(3):
        distances = [(mean_colour(union, c) - colour).norm().item() for colour in source_colours]
        assert distances.index(min(distances)) == c, f"class {c}: distances to sources {distances}"


def test_rooting_brings_weights_closer_to_the_root(cocktail_run):
    _, union, output, _ = cocktail_run
    summary = union.provenance["weight_distances"]
    for name in ("green", "blue"):
        assert summary[name]["rooted"] < 0.1 * summary[name]["raw"], summary
    report = json.loads((output / "union" / "weight_distances.json").read_text())
    assert "mapping.fc0.weight" in report["layers"]["green"]["rooted"]


def test_an_interrupted_merge_resumes_at_its_stage(cocktail_run):
    plan, _, output, _ = cocktail_run
    (output / "stages" / "merge" / "stage.json").unlink()
    logs = []
    resumed = run_merge(plan, output, log=logs.append)
    assert any("root-green: already done" in line for line in logs)
    assert any("root-blue: already done" in line for line in logs)
    assert resumed.class_names == ["red", "green", "blue"]


@pytest.mark.parametrize("method", ["scratch", "transfer", "ewc", "freeze_d", "average"])
def test_baselines_train_a_three_class_model(sources, tmp_path, method):
    plan = MergePlan([load_ingredient(str(s)) for s in sources], method=method, merge_kimg=0.04,
                     training=TrainingConfig(**FAST))
    union = run_merge(plan, tmp_path, log=lambda _: None)
    assert union.class_names == ["red", "green", "blue"] and union.generator.c_dim == 3
    assert union.provenance["method"] == method
    assert torch.isfinite(union.generate(1, [0, 1])).all()
    if method == "freeze_d":
        root_d = plan.root_model.discriminator
        assert torch.equal(union.discriminator.b32.conv0.weight, root_d.b32.conv0.weight.to(union.device))
        assert not torch.equal(union.discriminator.b16.conv0.weight, root_d.b16.conv0.weight.to(union.device))


def test_average_refuses_sources_of_another_architecture(sources, tmp_path):
    other = UnionModel(Generator(**{**TINY_G_KWARGS, "channel_max": 32}), Discriminator(**TINY_D_KWARGS), ["odd"])
    other.save_pretrained(tmp_path / "odd", write_card=False)
    recipe = resolve_recipe({"sources": [str(sources[0]), str(tmp_path / "odd")], "method": "average"})
    with pytest.raises(CocktailError, match="'average' needs every source to share the root's architecture"):
        build_plan(recipe)


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"sources": ["./not-here"]}, "not-here: no such file or folder"),
        ({"root": "purple"}, "root 'purple' is not one of the sources: red, green, blue"),
        ({"method": "soup"}, "unknown method 'soup'"),
        ({"colour": "red"}, "unknown recipe key"),
        ({"training": {"learning_rate": 1}}, "unknown training key"),
        ({"names": ["a", "b"]}, "2 names given for 3 sources"),
        ({"names": ["a", "a", "b"]}, "source names must be unique"),
    ],
    ids=["unknown-source", "missing-root", "unknown-method", "unknown-key", "unknown-training-key",
         "name-count", "duplicate-names"],
)
def test_bad_recipes_fail_before_training(sources, layer, message):
    base = {"sources": [str(s) for s in sources]}
    if layer.get("sources"):
        base["sources"] = base["sources"][:2] + layer.pop("sources")
    with pytest.raises(CocktailError, match=message):
        build_plan(resolve_recipe(base, layer))


def test_merge_script_runs_and_reports_errors_cleanly(sources, tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "merge.py"), str(sources[0]), str(sources[1]),
               "--root_kimg", "0.016", "--merge_kimg", "0.016", "--batch_size", "8", "--pl_weight", "0",
               "--output_dir", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "python app.py --model" in done.stdout
    assert UnionModel.from_pretrained(tmp_path / "out" / "union").class_names == ["red", "green"]

    bad = subprocess.run(command[:4] + ["--root", "blue", "--output_dir", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: root 'blue' is not one of the sources: red, green"]
    assert not (tmp_path / "bad" / "stages").exists()
