"""Settings are checked before any model is loaded, and every default has one definition."""

import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from script_loader import load_script
from training_helpers import TINY_D_KWARGS, TINY_G_KWARGS, SolidSource, tiny_pair

from cocktail import recipe as recipe_module
from cocktail.errors import CocktailError
from cocktail.merge import MERGE_METHODS, MergePlan, load_ingredient
from cocktail.recipe import DEFAULTS, build_plan, resolve_recipe
from cocktail.training import TrainingConfig, effective_ema_rampup, train
from cocktail.union import UnionModel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to load a source fails the test: settings must be refused before that."""
    def refuse(*args, **kwargs):
        raise AssertionError("a source was loaded before the settings were checked")

    monkeypatch.setattr(recipe_module, "load_ingredient", refuse)


@pytest.mark.parametrize("layer, message", [
    ({"training": {"g_lr": -1}}, r"g_lr must be positive \(got -1\)"),
    ({"training": {"r1_gamma": float("nan")}}, r"r1_gamma must be finite"),
    ({"training": {"batch_size": 0}}, r"batch_size must be >= 1"),
    ({"training": {"batch_size": 8.5}}, r"batch_size must be an integer"),
    ({"training": {"betas": [0.0, 1.5]}}, r"betas must be < 1"),
    ({"training": {"ema_kimg": float("inf")}}, r"ema_kimg must be finite"),
    ({"training": {"ema_rampup": "fast"}}, r"ema_rampup must be \"auto\""),
    ({"training": {"style_mixing_prob": 2}}, r"style_mixing_prob must be <= 1"),
    ({"training": {"seed": -3}}, r"seed must be >= 0"),
    ({"training": {"r1_interval": 0}}, r"r1_interval must be >= 1"),
    ({"training": {"pl_weight": "2"}}, r"pl_weight must be a number"),
    ({"root_kimg": float("nan")}, r"root_kimg must be finite"),
    ({"merge_kimg": 0}, r"merge_kimg must be positive"),
    ({"truncation": 1.5}, r"truncation must be <= 1"),
    ({"ewc_d": -1}, r"ewc_d must be >= 0"),
    ({"ewc_samples": 100}, r"ewc_samples must be a multiple of 32"),
    ({"freeze_d_blocks": 0}, r"freeze_d_blocks must be >= 1"),
    ({"method": "soup"}, r"unknown method 'soup'"),
])
def test_bad_settings_are_refused_before_any_source_is_loaded(no_loading, layer, message):
    with pytest.raises(CocktailError, match=message):
        build_plan(resolve_recipe(layer))


def test_batch_must_divide_over_the_processes(no_loading):
    with pytest.raises(CocktailError, match=r"batch_size must be a multiple of the number of processes \(3\)"):
        build_plan(resolve_recipe({}), world=3)


@pytest.mark.parametrize("flags, message", [
    (["--learning_rate", "-1"], r"g_lr must be positive"),
    (["--r1_gamma", "nan"], r"r1_gamma must be finite"),
    (["--batch_size", "0"], r"batch_size must be >= 1"),
    (["--ema_rampup", "2"], r"ema_rampup must be"),
])
def test_merge_script_refuses_bad_flags_before_loading(no_loading, tmp_path, flags, message):
    merge = load_script("merge")
    with pytest.raises(CocktailError, match=message):
        merge.main([*flags, "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "stages").exists()


@pytest.mark.parametrize("flags, message", [
    (["--learning_rate", "-1"], r"g_lr must be positive"),
    (["--r1_gamma", "nan"], r"r1_gamma must be finite"),
    (["--batch_size", "0"], r"batch_size must be >= 1"),
    (["--kimg", "-2"], r"kimg must be >= 0"),
])
def test_train_source_refuses_bad_flags_before_loading_data(tmp_path, flags, message):
    # The data folder does not exist: reaching it would fail with another message.
    train_source = load_script("train_source")
    with pytest.raises(CocktailError, match=message):
        train_source.main(["--data_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "m"), *flags])


def test_freeze_d_may_not_freeze_every_block(tmp_path):
    torch.manual_seed(0)
    from cocktail.networks import Discriminator, Generator

    folders = []
    for name in ("a", "b"):
        model = UnionModel(Generator(**TINY_G_KWARGS), Discriminator(**TINY_D_KWARGS), [name])
        folders.append(str(model.save_pretrained(tmp_path / name, write_card=False)))
    ingredients = [load_ingredient(folder) for folder in folders]
    MergePlan(ingredients, method="freeze_d", freeze_d_blocks=3).validate()  # b32, b16, b8: b4 still trains
    with pytest.raises(CocktailError, match=r"freeze_d_blocks 4 would freeze every convolution block.*at most 3"):
        MergePlan(ingredients, method="freeze_d", freeze_d_blocks=4).validate()


def test_each_default_is_defined_once_and_told_the_same_everywhere():
    plan = MergePlan([])
    for key in ("method", "root_kimg", "merge_kimg", "truncation", "freeze_d_blocks", "ewc_samples"):
        assert DEFAULTS[key] == getattr(plan, key)
    assert plan.training.ema_rampup == "auto"
    parser = load_script("merge").build_parser()
    parser_help = " ".join(parser.format_help().split())
    assert f"in thousands of images (default: {plan.root_kimg:g})" in parser_help
    assert f"fine-tuning after rooting (default: {plan.merge_kimg:g})" in parser_help
    method_flag = next(a for a in parser._actions if a.dest == "method")
    assert tuple(method_flag.choices) == tuple(MERGE_METHODS)
    readme = (ROOT / "README.md").read_text()
    example = yaml.safe_load(re.search(r"A recipe \(`--config`\).*?```yaml\n(.*?)```", readme, re.S).group(1))
    assert example["root_kimg"] == plan.root_kimg and example["merge_kimg"] == plan.merge_kimg
    assert example["method"] == plan.method
    methods_line = next(line for line in readme.splitlines() if "scripts/merge.py --method" in line)
    assert set(re.findall(r"\w+", methods_line)) >= set(MERGE_METHODS)


def test_auto_ema_rampup_is_on_only_where_it_still_matters():
    assert effective_ema_rampup(TrainingConfig(kimg=8, ema_rampup="auto")) == 0.05
    assert effective_ema_rampup(TrainingConfig(kimg=400, ema_rampup="auto")) is None
    assert effective_ema_rampup(TrainingConfig(kimg=8, ema_rampup=None)) is None
    assert effective_ema_rampup(TrainingConfig(kimg=8, ema_rampup=0.1)) == 0.1


@pytest.mark.slow
def test_a_short_run_with_auto_rampup_hands_on_its_training_not_its_start(tmp_path):
    """Twelve steps at a 10-kimg half-life: without the ramp-up G_ema has barely left the start."""
    distances = {}
    for rampup in (None, "auto"):
        G, D = tiny_pair(seed=0)
        start = {k: v.clone() for k, v in G.state_dict().items()}
        config = TrainingConfig(kimg=0.048, batch_size=4, ema_kimg=10.0, ema_rampup=rampup, pl_weight=0.0,
                                r1_interval=4, g_lr=0.01, d_lr=0.01, output_dir=str(tmp_path / str(rampup)),
                                progress=False)
        result = train(G, D, SolidSource(), config)
        ema, trained = result.G_ema.state_dict(), result.G.state_dict()
        moved = sum((trained[k] - start[k]).norm() for k in start if trained[k].is_floating_point())
        left = sum((ema[k] - trained[k]).norm() for k in start if trained[k].is_floating_point())
        distances[rampup] = (left / moved).item()
    assert distances[None] > 0.9 and distances["auto"] < 0.5, distances


def test_cpu_processes_share_the_cores_instead_of_accelerates_one_thread(monkeypatch):
    from cocktail.cli import use_cpu_threads

    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        torch.set_num_threads(1)  # what `accelerate launch` leaves (OMP_NUM_THREADS=1)
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        assert use_cpu_threads(None, torch.device("cpu"), 1) == cores == torch.get_num_threads()
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes on this machine split the cores
        assert use_cpu_threads(None, torch.device("cpu"), 2) == max(cores // 2, 1) == torch.get_num_threads()
        assert use_cpu_threads(3, torch.device("cpu"), 2) == 3 == torch.get_num_threads()
        assert use_cpu_threads(None, torch.device("cuda"), 1) is None and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("script", ["merge", "train_source"])
def test_cpu_threads_must_be_a_positive_count(script, capsys):
    with pytest.raises(SystemExit):
        load_script(script).parse_args(["--cpu_threads", "0", "--data_dir", "x", "--output_dir", "y"]
                                       if script == "train_source" else ["--cpu_threads", "0"])
    assert "'0' is not a whole number of at least 1" in capsys.readouterr().err
