"""scripts/reproduce.py: equal budgets for every method, cells, and the tables built from finished cells."""

import json
from types import SimpleNamespace

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def reproduce():
    return load_script("reproduce")


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_every_method_gets_the_same_total_kimg(reproduce, preset):
    settings = reproduce.PRESETS[preset]
    for merge in settings["merges"]:
        n = len(merge)
        totals = set()
        for method in reproduce.MERGE_METHODS:
            lengths = reproduce.budget(method, n, settings)
            rooting_stages = n - 1 if reproduce.MERGE_METHODS[method].parents == "rooted" else 0
            totals.add(lengths["root_kimg"] * rooting_stages + lengths["merge_kimg"])
        assert totals == {settings["root_kimg"] * (n - 1) + settings["merge_kimg"]}


def test_cells_cover_every_merge_method_and_seed_once(reproduce):
    preset = {"merges": [["a", "b"], ["a", "b", "c"]], "seeds": [0, 1]}
    cells = reproduce.cells(preset, ["cocktail", "ewc"])
    assert len(cells) == 8 and len({(tuple(m), method, s) for m, method, s in cells}) == 8
    assert [s for _, _, s in cells[:4]] == [0] * 4  # every cell of a seed before the next seed


def record(merge, method, seed, union_fid, class_fid):
    scores = {c: {"fid": class_fid, "kid": 0.01, "recall": 0.5} for c in merge}
    scores["union"] = {"fid": union_fid, "kid": 0.02, "recall": 0.4}
    return {"merge": merge, "method": method, "seed": seed, "device": "cpu", "real": {"scores": scores},
            "sources": {"scores": scores}, "weight_distances": {"b": {"rooted": 2.0, "raw": 100.0}}}


def test_report_gives_mean_and_spread_over_seeds_beside_the_sources(reproduce, tmp_path):
    preset = {"merges": [["a", "b"]], "seeds": [0, 1], "root_kimg": 1.0, "merge_kimg": 2.0, "num_samples": 10,
              "num_real": 20}
    args = SimpleNamespace(methods=["transfer", "cocktail"], output_dir=str(tmp_path))
    for seed, (transfer, cocktail) in enumerate([(30.0, 20.0), (34.0, 22.0)]):
        for method, fid in (("transfer", transfer), ("cocktail", cocktail)):
            folder = tmp_path / "cells" / "a+b" / method / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps(record(["a", "b"], method, seed, fid, fid + 1)))
    sources = {"a": {"fid": 5.0, "kid": 0.001, "recall": 0.9}, "b": {"fid": 6.0, "kid": 0.001, "recall": 0.9},
               "a+b union": {"fid": 4.5, "kid": 0.001, "recall": 0.9}}
    records = reproduce.collect(args, preset)
    text = reproduce.report(args, preset, sources, records, 60.0, "quick")
    assert len(records) == 4 and "4 of 4 cells" in text
    assert "| a+b | 4.50 | 32.00 ± 2.83 | 21.00 ± 1.41 |" in text  # union FID vs real: sources, then methods
    assert "| a+b / a | 5.00 | 33.00 ± 2.83 | 22.00 ± 1.41 |" in text  # per class
    assert '"rooted": 2.0' in text
