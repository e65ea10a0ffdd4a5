"""Provenance: one typed record that reads and writes union.json's provenance exactly as it always was."""

import json
import re

import pytest

from cocktail.assets import ASSETS_DIR
from cocktail.errors import CocktailError
from cocktail.provenance import Extension, Provenance
from cocktail.specs import Origin, SourceRecord

SHIPPED = sorted(ASSETS_DIR.glob("*/union.json"))


@pytest.mark.parametrize("index_file", SHIPPED, ids=lambda path: path.parent.name)
def test_the_shipped_examples_union_json_reads_and_writes_back_byte_identical(index_file):
    text = index_file.read_text()
    index = json.loads(text)
    record = Provenance.from_dict(index["provenance"])
    assert record.sources and all(isinstance(source, SourceRecord) for source in record.sources)
    rewritten = record.to_dict()
    assert list(rewritten) == list(index["provenance"]) and rewritten == index["provenance"]
    assert json.dumps(index | {"provenance": rewritten}, indent=2) + "\n" == text


def test_a_record_made_in_code_writes_the_keys_union_json_always_had_in_their_order():
    cat = SourceRecord("cat.pkl", name="cat", origin=Origin(), format="stylegan2-ada-pkl", file="cat.pkl")
    converted = Provenance(sources=[cat], metrics={}).to_dict()
    assert list(converted.items()) == [("method", None), ("root", None), ("sources", [cat.to_dict()]),
                                       ("recipe", {}), ("kimg", {}), ("metrics", {})]

    base = Provenance.from_dict(json.loads((ASSETS_DIR / "union" / "union.json").read_text())["provenance"])
    dog = SourceRecord("runs/dog", name="dog")
    merged = Provenance(method="transfer", root="trouser", sources=[dog], recipe={"method": "transfer"},
                        kimg={"transfer": 4.0}, ema_rampup={"transfer": 0.05}, weight_distances={"dog": {"raw": 1.0}},
                        extends=Extension("example:union", ["trouser", "sneaker", "bag"], base)).to_dict()
    assert list(merged) == ["method", "root", "sources", "recipe", "kimg", "ema_rampup", "weight_distances",
                            "extends"]
    assert merged["sources"] == [{"name": "dog", "spec": "runs/dog"}]
    assert merged["extends"] == {"spec": "example:union", "classes": ["trouser", "sneaker", "bag"],
                                 "provenance": base.to_dict()}
    assert Provenance().to_dict() == {"method": None, "root": None, "sources": [], "recipe": {}, "kimg": {}}


def test_unknown_keys_stay_where_they_were_and_what_is_set_later_comes_last():
    data = {"sources": [{"spec": "example:bag"}], "from_the_future": [1, 2], "method": None}
    record = Provenance.from_dict(data)
    assert record.other == {"from_the_future": [1, 2]} and record.to_dict() == data
    assert list(record.to_dict()) == list(data)
    record.add_metrics({"fid_real": {"bag": 1.0}})
    record.add_metrics({"kid_real": {"bag": 0.1}})
    assert list(record.to_dict()) == [*data, "metrics"]
    assert record.metrics == {"fid_real": {"bag": 1.0}, "kid_real": {"bag": 0.1}}
    assert Provenance.from_dict({}).to_dict() == {}


def test_readers_get_the_hub_repos_and_the_chain_of_extensions():
    first = Provenance(method="cocktail", sources=[SourceRecord("org/a@v1", origin=Origin("org/a", "v1", "c" * 40)),
                                                   SourceRecord("example:bag")])
    second = Provenance(method="transfer", extends=Extension("runs/u1", ["a", "bag"], first),
                        sources=[SourceRecord("org/a@v1#a", origin=Origin("org/a", "v1", "c" * 40)),
                                 SourceRecord("org/b", origin=Origin("org/b", None, "d" * 40))])
    third = Provenance.from_dict(Provenance(extends=Extension("runs/u2", ["a", "bag", "b"], second)).to_dict())
    assert [step.spec for step in third.lineage()] == ["runs/u2", "runs/u1"]
    assert third.lineage()[1].provenance == first
    assert second.hub_repos() == ["org/a", "org/b"] and first.sources[1].repo_id is None


@pytest.mark.parametrize("provenance, message", [
    ([], "provenance is a list, not a mapping"),
    ({"sources": {"spec": "x"}}, "provenance 'sources' is a dict, not a list"),
    ({"sources": [{"spec": "x"}, "example:bag"]}, "provenance source 1: not a source record"),
    ({"sources": [{"spec": "x", "colour": "red"}]}, "provenance source 0: not a source record"),
    ({"extends": {"spec": "u", "provenance": {}}}, "provenance 'extends' is not {spec, classes: [...], provenance}"),
])
def test_a_provenance_that_is_not_one_is_refused_in_one_line(provenance, message):
    with pytest.raises(CocktailError, match=re.escape(message)) as error:
        Provenance.from_dict(provenance)
    assert "\n" not in str(error.value)
