"""GAN Cocktail end to end on three tiny sources that draw solid red, green and blue, plus the baselines.

The sources share the tiny architecture but start from different random weights, so the paper's
claims can be checked cheaply: rooting brings weights close to the root, and after merging each
class draws its own source's colour.
"""

import copy
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fault_helpers import DISK_FULL, FullDisk, flip_byte, leftovers, truncate
from script_loader import load_script
from training_helpers import COLOURS, FAST, TINY_D_KWARGS, TINY_G_KWARGS, colour_source, mean_colour

from cocktail.comparison import parse_variant, stage_lengths
from cocktail.errors import CocktailError
from cocktail.files import damage
from cocktail.merge import (
    MERGE_METHODS,
    STAGE_DONE,
    MergePlan,
    ewc,
    load_ingredient,
    plan_recipe,
    register_method,
    run_merge,
)
from cocktail.merge.methods.baselines import Transfer
from cocktail.merge.methods.cocktail import Cocktail
from cocktail.networks import Discriminator, Generator
from cocktail.recipe import DEFAULTS, build_plan, resolve_recipe
from cocktail.training import TrainingConfig
from cocktail.union import UnionModel

ROOT = Path(__file__).resolve().parent.parent
@pytest.fixture(autouse=True)
def fisher_cache(tmp_path, monkeypatch):
    """EWC's Fisher estimates go to a scratch folder, not the user's Hugging Face cache."""
    folder = tmp_path / "fisher-cache"
    folder.mkdir()
    monkeypatch.setattr(ewc, "fisher_cache_dir", lambda: folder)
    return folder


def stage_folder(output: Path, method: str, stage: str) -> Path:
    (folder,) = (output / "stages" / method).glob(f"{stage}-*")
    return folder


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    return [colour_source(name, seed, folder) for seed, name in enumerate(COLOURS)]


@pytest.fixture(scope="module")
def cocktail_run(sources, tmp_path_factory):
    output = tmp_path_factory.mktemp("cocktail")
    # Rooting long enough (100 steps) that each rooted model draws its source's colour: after 25 steps the
    # blue class sometimes never separated, depending on seed and thread count.
    plan = MergePlan([load_ingredient(str(s)) for s in sources], method="cocktail", root_kimg=0.8,
                     merge_kimg=1.6, training=TrainingConfig(**FAST))
    logs = []
    union = run_merge(plan, output, log=logs.append)
    return plan, union, output, logs


@pytest.mark.slow
def test_cocktail_union_has_one_class_per_source_with_provenance(cocktail_run):
    plan, union, output, _ = cocktail_run
    saved = UnionModel.from_pretrained(output / "union")
    assert saved.class_names == ["red", "green", "blue"]
    assert saved.generator.c_dim == 3 and saved.discriminator.c_dim == 3
    provenance = saved.provenance
    assert provenance["method"] == "cocktail" and provenance["root"] == "red"
    assert [s["name"] for s in provenance["sources"]] == ["red", "green", "blue"]
    assert set(provenance["kimg"]) == {"root-green", "root-blue", "merge"}
    assert set(provenance["ema_rampup"]) == {"root-green", "root-blue", "merge"}
    assert provenance["recipe"]["training"]["batch_size"] == 8
    assert (output / "union" / "samples.png").is_file() and (output / "union" / "README.md").is_file()
    for name in ("green", "blue"):  # a rooted model is saved as a one-class model of its source
        (rooted,) = (output / "stages" / "cocktail").glob(f"root-{name}-*")
        assert UnionModel.from_pretrained(rooted / "model").class_names == [name]


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_the_default_merge_draws_each_class_from_its_own_source_with_a_margin(sources, tmp_path, threads):
    """Each class's mean colour lies within a quarter of the gap between two source colours of its own source,
    and at least three quarters of it away from every other source, at 1 and 2 threads (their float sums
    differ). 4.8 kimg in all, split as the comparison splits a budget, at a learning rate of 0.005: at FAST's 0.02
    the tiny GAN does not settle (on one CPU the root class sat at 0.43 of the gap from its source at 2 threads,
    on another at 0.06; at 6.4 kimg at 0.49), at 0.005 every class stayed within 0.07 of the gap of its source
    and 0.95 of it away from the others (training seeds 0 and 1, 1 and 2 threads)."""
    lengths = stage_lengths(parse_variant(DEFAULTS["method"]), len(sources), 4.8, root_share=1 / 3, protocol="total")
    plan = MergePlan([load_ingredient(str(s)) for s in sources], method=DEFAULTS["method"], **lengths,
                     training=TrainingConfig(**{**FAST, "g_lr": 0.005, "d_lr": 0.005}))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        union = run_merge(plan, tmp_path, log=lambda _: None)
    finally:
        torch.set_num_threads(previous)
    colours = [mean_colour(ingredient.model, 0) for ingredient in plan.ingredients]
    gap = min((a - b).norm().item() for i, a in enumerate(colours) for b in colours[i + 1:])
    for c in range(3):
        distances = [(mean_colour(union, c) - colour).norm().item() for colour in colours]
        others = [d for i, d in enumerate(distances) if i != c]
        assert distances[c] < 0.25 * gap and min(others) > 0.75 * gap, f"class {c}: distances {distances}"


@pytest.mark.slow
def test_rooting_brings_weights_closer_to_the_root(cocktail_run):
    _, union, output, _ = cocktail_run
    summary = union.provenance["weight_distances"]
    for name in ("green", "blue"):
        assert summary[name]["rooted"] < 0.1 * summary[name]["raw"], summary
    report = json.loads((output / "union" / "weight_distances.json").read_text())
    assert "mapping.fc0.weight" in report["layers"]["green"]["rooted"]


@pytest.mark.slow
def test_an_interrupted_merge_resumes_at_its_stage(cocktail_run):
    plan, _, output, _ = cocktail_run
    (stage_folder(output, "cocktail", "merge") / STAGE_DONE).unlink()
    logs = []
    resumed = run_merge(plan, output, log=logs.append)
    assert any("root-green: already done" in line for line in logs)
    assert any("root-blue: already done" in line for line in logs)
    assert resumed.class_names == ["red", "green", "blue"]


@pytest.mark.parametrize("method", ["scratch", "transfer", "ewc", "freeze_d", "average"])
def test_baselines_train_a_three_class_model(sources, tmp_path, method):
    plan = MergePlan([load_ingredient(str(s)) for s in sources], method=method, merge_kimg=0.04,
                     training=TrainingConfig(**FAST), ewc_samples=64)
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


@pytest.mark.slow
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


# -- reusing stages: only when everything that decides them is the same ----------------------------

SHORT = dict(FAST, kimg=0.016)


def short_plan(sources, **changes) -> MergePlan:
    """Two steps per stage: enough to tell runs apart, quick enough to run several."""
    settings = dict(method="cocktail", root_kimg=0.016, merge_kimg=0.016, training=TrainingConfig(**FAST))
    return MergePlan([load_ingredient(str(s)) for s in sources[:2]], **{**settings, **changes})


def test_another_method_into_the_same_folder_is_refused_before_training(sources, tmp_path):
    run_merge(short_plan(sources), tmp_path, log=lambda _: None)
    union_before = (tmp_path / "union" / "union.json").read_text()
    with pytest.raises(CocktailError, match=r"holds a different merge \(method: \"cocktail\" → \"average\".*"
                                            r"new --output_dir, or --overwrite_output_dir"):
        run_merge(short_plan(sources, method="average"), tmp_path, log=lambda _: None)
    assert not (tmp_path / "stages" / "average").exists()
    assert (tmp_path / "union" / "union.json").read_text() == union_before


def test_overwrite_gives_the_new_method_its_own_union(sources, tmp_path):
    cocktail = run_merge(short_plan(sources), tmp_path, log=lambda _: None)
    logs = []
    average = run_merge(short_plan(sources, method="average"), tmp_path, log=logs.append, overwrite=True)
    saved = UnionModel.from_pretrained(tmp_path / "union")
    assert saved.provenance["method"] == "average" and average.provenance["method"] == "average"
    assert not torch.equal(saved.generator.synthesis.b32.torgb.bias.cpu(),
                           cocktail.generator.synthesis.b32.torgb.bias.cpu())
    assert not (tmp_path / "stages" / "cocktail").exists()  # the old run's stages went once the new had one
    assert json.loads((tmp_path / "run.json").read_text())["method"] == "average"
    assert not any("already done" in line for line in logs)


def test_changed_root_kimg_is_refused_and_unchanged_plan_reuses_every_stage(sources, tmp_path):
    first = run_merge(short_plan(sources), tmp_path, log=lambda _: None)
    with pytest.raises(CocktailError, match=r"recipe\.root_kimg: 0\.016 → 0\.032"):
        run_merge(short_plan(sources, root_kimg=0.032), tmp_path, log=lambda _: None)
    logs = []
    again = run_merge(short_plan(sources), tmp_path, log=logs.append)
    assert sum("already done" in line for line in logs) == 2 and not any("training" in line for line in logs)
    assert torch.equal(first.generator.mapping.embed.weight, again.generator.mapping.embed.weight)


def test_a_changed_source_or_seed_is_refused(sources, tmp_path):
    run_merge(short_plan(sources), tmp_path, log=lambda _: None)
    changed = short_plan(sources)
    with torch.no_grad():
        changed.ingredients[1].model.generator.synthesis.b32.torgb.bias.add_(0.01)
    with pytest.raises(CocktailError, match=r"sources\[1\]\.weights"):
        run_merge(changed, tmp_path, log=lambda _: None)
    with pytest.raises(CocktailError, match=r"recipe\.training\.seed: 0 → 1"):
        run_merge(short_plan(sources, training=TrainingConfig(**FAST, seed=1)), tmp_path, log=lambda _: None)


def test_a_stage_folder_with_other_inputs_is_refused(sources, tmp_path):
    run_merge(short_plan(sources), tmp_path, log=lambda _: None)
    record = stage_folder(tmp_path, "cocktail", "root-green") / STAGE_DONE
    info = json.loads(record.read_text())
    info["inputs"]["kimg"] = 99
    record.write_text(json.dumps(info))
    with pytest.raises(CocktailError, match=r"holds stage root-green of other inputs \(kimg: 99 → 0\.016\)"):
        run_merge(short_plan(sources), tmp_path, log=lambda _: None)


@pytest.mark.slow
def test_an_explicit_checkpoint_resumes_only_the_stage_that_owns_it(sources, tmp_path, capsys):
    three = [load_ingredient(str(s)) for s in sources]
    config = TrainingConfig(**FAST, checkpointing_kimg=0.008, checkpoints_total_limit=None)
    plan = MergePlan(three, method="cocktail", root_kimg=0.016, merge_kimg=0.016, training=config)
    run_merge(plan, tmp_path, log=lambda _: None)
    green, blue = stage_folder(tmp_path, "cocktail", "root-green"), stage_folder(tmp_path, "cocktail", "root-blue")
    blue_before = UnionModel.from_pretrained(blue / "model").generator.state_dict()
    for folder in (tmp_path / "stages" / "cocktail").iterdir():
        (folder / STAGE_DONE).unlink()
    shutil.rmtree(blue / "checkpoints")
    checkpoint = green / "checkpoints" / "checkpoint-0000000008"
    capsys.readouterr()
    run_merge(MergePlan(three, method="cocktail", root_kimg=0.016, merge_kimg=0.016,
                        training=TrainingConfig(**{**vars(config), "resume_from_checkpoint": str(checkpoint)})),
              tmp_path, log=lambda _: None)
    printed = capsys.readouterr().out
    assert f"resumed from {checkpoint} at kimg 0.008" in printed and str(blue) not in printed
    blue_after = UnionModel.from_pretrained(blue / "model").generator.state_dict()  # afresh, not from green's
    assert all(torch.equal(blue_before[k], blue_after[k]) for k in blue_before)

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(checkpoint, elsewhere / "checkpoint-0000000008")
    with pytest.raises(CocktailError, match="is not a checkpoint of any stage of this merge"):
        run_merge(MergePlan(three, method="cocktail", root_kimg=0.016, merge_kimg=0.016, training=TrainingConfig(
            **{**vars(config), "resume_from_checkpoint": str(elsewhere / "checkpoint-0000000008")})),
            tmp_path, log=lambda _: None)


# -- faults: a damaged stage, a full disk; a one-line message, then the union of an uninterrupted run ---------


@pytest.fixture(scope="module")
def straight_union(sources, tmp_path_factory):
    """The union generator of an uninterrupted short merge."""
    union = run_merge(short_plan(sources), tmp_path_factory.mktemp("straight"), log=lambda _: None)
    return {k: v.detach().clone() for k, v in union.generator.state_dict().items()}


def assert_same_union(output: Path, expected: dict) -> None:
    saved = UnionModel.from_pretrained(output / "union").generator.state_dict()
    assert all(torch.equal(saved[k], expected[k]) for k in expected)


def older_record_and_truncated(weights: Path) -> None:
    """A stage finished by a version that recorded no files, whose weights were then cut short."""
    done = weights.parents[2] / STAGE_DONE
    record = json.loads(done.read_text())
    done.write_text(json.dumps({k: v for k, v in record.items() if k not in ("files", "record_sha256")}))
    truncate(weights)


@pytest.mark.parametrize("fault, problem", [
    (truncate, "model/generator/diffusion_pytorch_model.safetensors: "),
    (flip_byte, "model/generator/diffusion_pytorch_model.safetensors: its content differs"),
    (older_record_and_truncated, "cannot load the generator"),
])
def test_a_finished_stage_whose_model_is_damaged_is_trained_again(sources, tmp_path, straight_union, caplog, fault,
                                                                  problem):
    run_merge(short_plan(sources), tmp_path, log=lambda _: None)
    stage = stage_folder(tmp_path, "cocktail", "root-green")
    fault(stage / "model" / "generator" / "diffusion_pytorch_model.safetensors")
    logs = []
    run_merge(short_plan(sources), tmp_path, log=logs.append)
    assert "stage root-green: its saved model is damaged (" in caplog.text and problem in caplog.text
    assert any(line.startswith("stage root-green: training") for line in logs)
    assert any(line.startswith("stage merge: already done") for line in logs)  # same inputs, same weights
    assert damage(stage / STAGE_DONE) is None
    assert_same_union(tmp_path, straight_union)


def test_a_full_disk_while_writing_the_union_is_one_line_and_the_same_command_ends_the_merge(
        sources, tmp_path, straight_union, monkeypatch):
    disk = FullDisk(".tmp-union-").install(monkeypatch)
    with pytest.raises(CocktailError, match=rf"^could not write the union model folder {tmp_path / 'union'} "
                                            rf"\({re.escape(DISK_FULL)}\); .+ free there; run the same command "
                                            r"again to resume$"):
        run_merge(short_plan(sources), tmp_path, log=lambda _: None)
    assert disk.failures == 1 and leftovers(tmp_path) == [] and not (tmp_path / "union").exists()
    disk.free_space()
    logs = []
    run_merge(short_plan(sources), tmp_path, log=logs.append)
    assert sum("already done" in line for line in logs) == 2
    assert_same_union(tmp_path, straight_union)


def test_a_full_disk_while_writing_a_stage_model_resumes_from_its_last_checkpoint(
        sources, tmp_path, straight_union, monkeypatch, capsys):
    plan = short_plan(sources, training=TrainingConfig(**FAST, checkpointing_kimg=0.008))
    disk = FullDisk(".tmp-model-").install(monkeypatch)
    with pytest.raises(CocktailError, match=r"^could not write the model of stage root-green into .+/model "
                                            r"\(.+\); .+ free there; run the same command again to resume$"):
        run_merge(plan, tmp_path, log=lambda _: None)
    stage = stage_folder(tmp_path, "cocktail", "root-green")
    assert leftovers(tmp_path) == [] and not (stage / "model").exists() and not (stage / STAGE_DONE).exists()
    disk.free_space()
    capsys.readouterr()
    run_merge(plan, tmp_path, log=lambda _: None)
    assert f"resumed from {stage / 'checkpoints' / 'checkpoint-0000000016'}" in capsys.readouterr().out
    assert_same_union(tmp_path, straight_union)


def test_a_damaged_run_record_stops_a_merge_with_one_line(sources, tmp_path):
    (tmp_path / "run.json").write_text('{"method": "cockt')
    with pytest.raises(CocktailError, match=rf"^{tmp_path / 'run.json'}: damaged \(.+\); remove it to reuse this "
                                            r"folder's intact stages, or use a new --output_dir$"):
        run_merge(short_plan(sources), tmp_path, log=lambda _: None)


def test_an_explicit_damaged_checkpoint_stops_a_merge_before_any_training(sources, tmp_path):
    config = TrainingConfig(**FAST, checkpointing_kimg=0.008, checkpoints_total_limit=None)
    run_merge(short_plan(sources, training=config), tmp_path, log=lambda _: None)
    checkpoint = stage_folder(tmp_path, "cocktail", "merge") / "checkpoints" / "checkpoint-0000000008"
    truncate(checkpoint / "G.safetensors")
    (stage_folder(tmp_path, "cocktail", "merge") / STAGE_DONE).unlink()
    logs = []
    with pytest.raises(CocktailError, match=rf"^{checkpoint}: damaged checkpoint \(G\.safetensors: [\d,]+ bytes, "
                                            r"[\d,]+ recorded\); resume from an intact one, or 'latest'$"):
        run_merge(short_plan(sources, training=replace(config, resume_from_checkpoint=str(checkpoint))), tmp_path,
                  log=logs.append)
    assert logs == []


# -- adding a method ------------------------------------------------------------------------------


@pytest.fixture
def registry():
    """The registry of methods, without what a test registered in it once the test is done."""
    before = dict(MERGE_METHODS)
    yield MERGE_METHODS
    MERGE_METHODS.clear()
    MERGE_METHODS.update(before)


def test_a_registered_method_is_a_choice_everywhere_and_merges(sources, tmp_path, registry):
    """Adding a method is one registered class: TransferGAN under another name plans a stage of its own name
    and trains exactly what TransferGAN trains."""

    @register_method
    class Retrained(Transfer):
        name, title = "retrained", "TransferGAN again"

    method_flag = next(a for a in load_script("merge").build_parser()._actions if a.dest == "method")
    assert "retrained" in method_flag.choices and "retrained" in load_script("reproduce").parse_args([]).methods
    recipe = resolve_recipe({"sources": [str(s) for s in sources], "method": "retrained"})
    assert build_plan(recipe).merge_method.title == "TransferGAN again"
    retrained = run_merge(short_plan(sources, method="retrained"), tmp_path / "retrained", log=lambda _: None)
    transfer = run_merge(short_plan(sources, method="transfer"), tmp_path / "transfer", log=lambda _: None)
    assert (stage_folder(tmp_path / "retrained", "retrained", "retrained") / STAGE_DONE).is_file()
    assert retrained.provenance["method"] == "retrained"
    expected = transfer.generator.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in retrained.generator.state_dict().items())
    with pytest.raises(ValueError, match="'retrained' is already registered"):
        register_method(Retrained)


# -- the authors' conditional rooting and class percentages ----------------------------------------


def test_conditional_rooting_roots_each_source_as_its_class_and_is_recorded(sources, tmp_path):
    plain = short_plan(sources)
    plan = short_plan(sources, conditional_rooting=True, class_percentages=[1, 3])
    union = run_merge(plan, tmp_path, log=lambda _: None)
    (rooted,) = (tmp_path / "stages" / "cocktail").glob("root-green-*")
    inputs = json.loads((rooted / "inputs.json").read_text())
    assert inputs["conditional_rooting"] == {"classes": 2, "label": 1}
    rooted_model = UnionModel.from_pretrained(rooted / "model")
    assert rooted_model.generator.c_dim == 2 and rooted_model.class_names == ["red", "green"]  # rooted as class 1
    assert "class_percentages" not in inputs  # the mixture is the merge stage's input only
    (merge,) = (tmp_path / "stages" / "cocktail").glob("merge-*")
    assert json.loads((merge / "inputs.json").read_text())["class_percentages"] == [1, 3]
    recipe = union.provenance["recipe"]
    assert recipe["conditional_rooting"] is True and recipe["class_percentages"] == [1, 3]
    assert "conditional_rooting" not in plan_recipe(plain)  # earlier records stay valid
    assert "class_percentages" not in plan_recipe(plain)


def test_from_root_starts_the_merge_with_the_roots_parts_and_is_recorded(sources, tmp_path, registry):
    starts = []

    @register_method
    class StartSpy(Cocktail):
        """GAN Cocktail that keeps the networks its merge stage starts from, to look at the average."""

        name, title = "start_spy", "GAN Cocktail, start kept"

        def training(self, plan, G, D, accelerator, log, parents):
            starts.append((copy.deepcopy(G.state_dict()), copy.deepcopy(D.state_dict()),
                           [(g.state_dict(), d.state_dict()) for g, d in parents]))
            return super().training(plan, G, D, accelerator, log, parents)

    # Conditional rooting: the parents are conditional already, so the start is their average as it is.
    union = run_merge(short_plan(sources, method="start_spy", conditional_rooting=True,
                                 from_root=["mapping", "discriminator"]), tmp_path / "kept", log=lambda _: None)
    run_merge(short_plan(sources, method="start_spy", conditional_rooting=True), tmp_path / "averaged",
              log=lambda _: None)
    (G, D, ((root_g, root_d), (rooted_g, _))), (G_avg, _, _) = starts
    assert all(torch.equal(D[k], v) for k, v in root_d.items())  # D is the root's
    for name, value in root_g.items():
        if name.startswith("mapping."):  # the root's mapping, its class embedding included
            assert torch.equal(G[name], value), name
        elif value.is_floating_point():  # the synthesis network is still the average of root and rooted model
            assert torch.allclose(G[name], (value + rooted_g[name]) / 2), name
            assert torch.equal(G[name], G_avg[name]), name
    assert not torch.equal(G["mapping.fc0.weight"], G_avg["mapping.fc0.weight"])
    assert union.provenance["recipe"]["from_root"] == ["mapping", "discriminator"]
    (merge,) = (tmp_path / "kept" / "stages" / "start_spy").glob("merge-*")
    assert json.loads((merge / "inputs.json").read_text())["from_root"] == ["mapping", "discriminator"]
    assert "from_root" not in plan_recipe(short_plan(sources))  # earlier records stay valid


@pytest.mark.parametrize("changes, message", [
    ({"method": "transfer", "from_root": ["mapping"]}, "from_root applies to methods that average parents"),
    ({"from_root": ["mapping", "mapping"]}, "from_root must be a list of distinct parts among mapping"),
    ({"from_root": ["style"]}, "from_root must be a list of distinct parts among mapping"),
    ({"method": "transfer", "conditional_rooting": True}, "conditional_rooting applies to methods that root"),
    ({"class_percentages": [1, 2, 3]}, "class_percentages has 3 entries for 2 sources"),
    ({"class_percentages": [0, 0]}, "class_percentages must be a list of non-negative numbers"),
    ({"method": "transfer_distill", "distill_teachers": "parents"}, "has no rooted parents to distil from"),
])
def test_bad_rooting_and_mixture_settings_fail_before_training(sources, tmp_path, changes, message):
    with pytest.raises(CocktailError, match=message):
        run_merge(short_plan(sources, **changes), tmp_path, log=lambda _: None)
    assert not (tmp_path / "stages").exists()


def test_merge_flags_set_conditional_rooting_class_percentages_and_teachers():
    merge = load_script("merge")
    args = merge.build_parser().parse_args(["--conditional_rooting", "--class_percentages", "1", "2",
                                            "--distill_teachers", "sources", "--from_root", "mapping", "synthesis"])
    layer = merge.flag_layer(args)
    assert layer["from_root"] == ["mapping", "synthesis"]
    assert layer["conditional_rooting"] is True and layer["class_percentages"] == [1.0, 2.0]
    assert layer["distill_teachers"] == "sources"
    assert "conditional_rooting" not in merge.flag_layer(merge.build_parser().parse_args([]))
