"""scripts/compare.py: variants, equal budgets, resumable cells, tables and the budget plot on any sources."""

import json
import shutil

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from PIL import Image
from script_loader import load_script
from training_helpers import COLOURS, FAST, colour_source

from cocktail.comparison import Comparison, collect, parse_variant, run_comparison, stage_lengths, training_curves
from cocktail.errors import CocktailError


def test_a_variant_is_a_method_with_settings_of_its_own():
    variant = parse_variant("cond=cocktail:conditional_rooting=true,class_percentages=[1, 2]")
    assert (variant.name, variant.method, variant.roots) == ("cond", "cocktail", True)
    assert variant.settings == {"conditional_rooting": True, "class_percentages": [1, 2]}
    assert parse_variant("ewc") == parse_variant("ewc=ewc") and not parse_variant("ewc").roots
    with pytest.raises(CocktailError, match="unknown method 'soup'"):
        parse_variant("x=soup")
    with pytest.raises(CocktailError, match="option 'lr' is not key=value"):
        parse_variant("x=transfer:lr")


def test_a_variants_training_settings_go_on_top_of_the_shared_ones(tmp_path):
    variant = parse_variant("slow=cocktail:training={g_lr: 0.001, d_lr: 0.001}")
    comparison = Comparison(["example:trouser", "example:sneaker"], {}, [variant], [24.0], [5], tmp_path,
                            training={"batch_size": 16, "g_lr": 0.002})
    training = comparison.recipe(24.0, variant, 5)["training"]
    assert training["g_lr"] == training["d_lr"] == 0.001
    assert training["batch_size"] == 16 and training["seed"] == 5  # the shared settings and the cell's seed stay


@pytest.mark.parametrize("num_sources", [2, 3, 4])
def test_every_variant_spends_the_same_total_under_the_total_protocol(num_sources):
    for text in ("transfer", "ewc", "cocktail", "cocktail_distill", "average"):
        lengths = stage_lengths(parse_variant(text), num_sources, 24.0, 1 / 3, "total")
        stages = num_sources - 1 if parse_variant(text).roots else 0
        assert lengths["root_kimg"] * stages + lengths["merge_kimg"] == pytest.approx(24.0)
    # The other reading of the paper: the baselines get only the rooting methods' merge stage.
    assert stage_lengths(parse_variant("transfer"), num_sources, 24.0, 1 / 3, "merge_stage")["merge_kimg"] == 16.0


def colour_extractor(images: torch.Tensor) -> np.ndarray:
    """A cheap stand-in for Inception: each image's mean and spread per channel."""
    pixels = images.float().flatten(2) / 255
    return torch.cat([pixels.mean(2), pixels.std(2)], dim=1).numpy().astype(np.float32)


@pytest.fixture
def two_colours(tmp_path):
    """Two colour sources and, per class, a folder of 'real' images of its colour."""
    names = list(COLOURS)[:2]
    sources = [str(colour_source(name, seed, tmp_path / "sources")) for seed, name in enumerate(names)]
    real = {}
    for name in names:
        folder = tmp_path / "real" / name
        folder.mkdir(parents=True)
        rgb = [round((v + 1) * 127.5) for v in COLOURS[name]]
        for i in range(8):
            Image.new("RGB", (32, 32), tuple(min(255, c + 3 * i) for c in rgb)).save(folder / f"{i}.png")
        real[name] = str(folder)
    return sources, real


def test_a_comparison_runs_its_cells_once_and_reports_them(two_colours, tmp_path):
    sources, real = two_colours
    comparison = Comparison(sources=sources, real=real, variants=[parse_variant("transfer"),
                                                                  parse_variant("cocktail")],
                            budgets=[0.048], seeds=[0, 1], output_dir=tmp_path / "compare", num_samples=8,
                            num_real=8, training={k: v for k, v in FAST.items() if k != "progress"},
                            diagnose=True, scoring={"extractor": colour_extractor, "cache_dir": tmp_path / "cache"})
    text, records = run_comparison(comparison, Accelerator(cpu=True), log=lambda *_: None)
    assert len(records) == 4 and "4 of 4 cells" in text
    cocktail = next(r for r in records if r["variant"] == "cocktail")
    assert cocktail["kimg"] == {"root-green": pytest.approx(0.016), "merge": pytest.approx(0.032)}
    transfer = next(r for r in records if r["variant"] == "transfer")
    assert transfer["kimg"] == {"transfer": pytest.approx(0.048)}  # the same total, in one stage
    assert set(cocktail["diagnosis"]["rooted"]) == {"green"} and set(cocktail["diagnosis"]["average"]) >= {"red"}
    assert cocktail["diagnosis"]["checkpoints"]  # the final stage scored along the way
    assert "± " in text and "| 0.048 kimg | union |" in text and "## Diagnosis" in text
    assert (tmp_path / "compare" / "budget.png").stat().st_size > 1000
    assert (tmp_path / "compare" / "training.png").stat().st_size > 1000  # the diagnosed cells over training
    union_curves = training_curves(comparison, records)["union"]
    # Cocktail's merge stage starts after its 0.016 kimg of rooting, from the average; TransferGAN's at 0.
    cocktail_kimg = sorted(union_curves["cocktail"])
    assert cocktail_kimg[0] == pytest.approx(0.016) and cocktail_kimg[-1] == pytest.approx(0.048)
    assert 0 < min(union_curves["transfer"]) < 0.048 and max(union_curves["transfer"]) == pytest.approx(0.048)
    assert all(len(fids) == 2 for line in union_curves.values() for fids in line.values())  # one per seed
    # A second run trains nothing: every finished cell is read back.
    marker = comparison.cell_folder(0.048, parse_variant("transfer"), 0) / "result.json"
    stamp = marker.stat().st_mtime_ns
    again, _ = run_comparison(comparison, Accelerator(cpu=True), log=lambda *_: None)
    assert marker.stat().st_mtime_ns == stamp and again == text
    assert json.loads((tmp_path / "compare" / "results.json").read_text())["cells"] == collect(comparison)


def test_diagnose_on_a_scored_cell_adds_its_diagnosis_and_trains_nothing(two_colours, tmp_path):
    sources, real = two_colours
    common = dict(sources=sources, real=real, variants=[parse_variant("cocktail")], budgets=[0.048], seeds=[0, 1],
                  output_dir=tmp_path / "compare", num_samples=8, num_real=8,
                  training={k: v for k, v in FAST.items() if k != "progress"},
                  scoring={"extractor": colour_extractor, "cache_dir": tmp_path / "cache"})
    _, scored = run_comparison(Comparison(**common), Accelerator(cpu=True), log=lambda *_: None)
    assert not any("diagnosis" in r for r in scored)
    kept = Comparison(**common).cell_folder(0.048, parse_variant("cocktail"), 0)
    gone = Comparison(**common).cell_folder(0.048, parse_variant("cocktail"), 1)
    shutil.rmtree(gone / "union")  # a cell whose union was removed cannot be diagnosed, and is not retrained
    stamps = {p: p.stat().st_mtime_ns for p in kept.rglob("*") if p.is_file() and p.name != "result.json"}

    logged = []
    _, records = run_comparison(Comparison(**common, diagnose=True), Accelerator(cpu=True), log=logged.append)
    diagnosed, left = records
    assert set(diagnosed["diagnosis"]["rooted"]) == {"green"} and set(diagnosed["diagnosis"]["average"]) >= {"red"}
    assert diagnosed["diagnosis"]["checkpoints"]  # the last checkpoints the final stage kept
    assert diagnosed["real"] == scored[0]["real"] and "diagnosis" not in left and left == scored[1]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and not (gone / "union").exists()
    assert any("not diagnosed" in line for line in logged)
    assert json.loads((kept / "result.json").read_text())["diagnosis"] == diagnosed["diagnosis"]


def test_cells_trained_elsewhere_are_scored_from_their_union_alone(two_colours, tmp_path):
    """train_only on one machine; only each cell's union folder and trained.json travel; scoring trains
    nothing more. A union trained for another recipe is not taken for the cell's: the merge refuses the folder."""
    sources, real = two_colours
    common = dict(sources=sources, real=real, variants=[parse_variant("cocktail")], budgets=[0.048], seeds=[0],
                  num_samples=8, num_real=8, training={k: v for k, v in FAST.items() if k != "progress"},
                  scoring={"extractor": colour_extractor, "cache_dir": tmp_path / "cache"})
    trainer = Comparison(output_dir=tmp_path / "gpu", train_only=True, **common)
    text, records = run_comparison(trainer, Accelerator(cpu=True), log=lambda *_: None)
    assert records == [] and "1 cells trained" in text
    cell = trainer.cell_folder(0.048, parse_variant("cocktail"), 0)
    assert (cell / "union").is_dir() and not (cell / "result.json").exists()

    scorer = Comparison(output_dir=tmp_path / "cpu", **common)
    copied = scorer.cell_folder(0.048, parse_variant("cocktail"), 0)
    shutil.copytree(cell / "union", copied / "union")
    shutil.copy(cell / "trained.json", copied / "trained.json")
    _, records = run_comparison(scorer, Accelerator(cpu=True), log=lambda *_: None)
    assert len(records) == 1 and records[0]["train_seconds"] == json.loads((cell / "trained.json").read_text())[
        "train_seconds"]
    assert sorted(p.name for p in copied.iterdir()) == ["result.json", "trained.json", "union"]  # no stage trained

    longer = Comparison(output_dir=tmp_path / "other", **{**common, "budgets": [0.064]})
    moved = longer.cell_folder(0.064, parse_variant("cocktail"), 0)
    shutil.copytree(cell / "union", moved / "union")
    shutil.copy(cell / "trained.json", moved / "trained.json")
    with pytest.raises(CocktailError, match="holds a different merge"):
        run_comparison(longer, Accelerator(cpu=True), log=lambda *_: None)


def test_compare_script_refuses_bad_input_before_training(two_colours, tmp_path, capsys):
    sources, real = two_colours
    compare = load_script("compare")
    with pytest.raises(SystemExit):
        compare.parse_args([*sources, "--real", "red"])
    assert "'red' is not class=folder" in capsys.readouterr().err
    with pytest.raises(CocktailError, match=r"real image folder\(s\) not found: green=nowhere"):
        compare.main([*sources, "--real", f"red={real['red']}", "--real", "green=nowhere",
                      "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
