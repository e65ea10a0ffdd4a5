"""open_spec: every source spec opened in one place, with the folder it came from and its provenance record."""

import re

import pytest
from test_convert import assert_matches_reference, write_snapshot
from test_editing import tiny_union

from cocktail.assets import example_path
from cocktail.errors import CocktailError
from cocktail.files import file_sha256
from cocktail.specs import Kind, SourceRecord
from cocktail.union import UnionModel, open_spec


def test_a_model_folder_opens_with_its_folder_and_a_record_of_the_spec_as_written(tmp_path):
    opened = open_spec("example:union#bag", load_discriminator=False)
    assert opened.spec.kind is Kind.EXAMPLE and opened.folder == example_path("example:union")
    assert opened.model.folder == opened.folder and opened.model.discriminator is None
    assert opened.record == SourceRecord("example:union#bag")

    folder = tiny_union(("cat", "dog")).save_pretrained(tmp_path / "pair", write_card=False)
    opened = open_spec(str(folder))
    assert (opened.folder, opened.model.folder, opened.model.class_names) == (folder, folder, ["cat", "dog"])
    assert opened.record.to_dict() == {"spec": str(folder)}


def test_a_checkpoint_is_converted_in_memory_and_recorded_by_its_digest(tmp_path):
    pkl = write_snapshot(tmp_path / "cats.pkl", tag="uncond")
    opened = open_spec(str(pkl))
    assert opened.folder is None and opened.model.folder is None
    assert_matches_reference("uncond", opened.model.generator, opened.model.discriminator)
    assert opened.record == SourceRecord(str(pkl), sha256=file_sha256(pkl))
    with pytest.raises(CocktailError, match="missing.pkl: checkpoint file not found"):
        open_spec(str(tmp_path / "missing.pkl"))


def test_samplers_and_image_folders_are_only_named(tmp_path):
    (tmp_path / "images").mkdir()
    for spec, folder in ((str(tmp_path / "images"), tmp_path / "images"), ("torch.nn:Identity", None),
                         (f"{tmp_path / 'faces.ts'}?z_dim=100", None)):
        opened = open_spec(spec)
        assert (opened.model, opened.folder, opened.record) == (None, folder, SourceRecord(spec))


def test_from_pretrained_loads_model_folders_only_and_knows_where_from(tmp_path):
    folder = tiny_union(("cat",)).save_pretrained(tmp_path / "cat", write_card=False)
    assert UnionModel.from_pretrained(folder).folder == folder
    assert tiny_union(("cat",)).folder is None  # built in memory
    (tmp_path / "images").mkdir()
    write_snapshot(tmp_path / "cats.pkl", tag="uncond")
    for spec, message in ((tmp_path / "images", "images: not a GAN Cocktail model folder (no generator/config.json)"),
                          (tmp_path / "cats.pkl", "cats.pkl: is a checkpoint file, not a model folder; convert it"),
                          (tmp_path / "gone.pkl", "gone.pkl: no such file or folder, and not a Hub model id")):
        with pytest.raises(CocktailError, match=re.escape(message)):
            UnionModel.from_pretrained(spec)
