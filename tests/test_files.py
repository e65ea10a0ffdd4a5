"""Writing whole or not at all, records that tell an intact folder from a damaged one, one-line write errors."""

import errno
import hashlib
import json

import pytest
import torch
from fault_helpers import DISK_FULL, flip_byte, leftovers, truncate
from safetensors import SafetensorError

from cocktail.errors import CocktailError
from cocktail.files import (
    damage,
    read_record,
    remove_leftovers,
    replace_file,
    saving,
    staged_folder,
    weights_digest,
    write_json,
    write_record,
)


def recorded_folder(tmp_path):
    folder = tmp_path / "run"
    (folder / "model").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 8)
    (folder / "model" / "config.json").write_text('{"z_dim": 32}\n')
    write_record(folder / "record.json", {"kimg": 8}, [folder / "weights.bin", folder / "model" / "config.json"])
    return folder


def test_an_intact_record_reads_back_with_its_values(tmp_path):
    folder = recorded_folder(tmp_path)
    assert damage(folder / "record.json") is None
    record = read_record(folder / "record.json")
    assert record["kimg"] == 8 and record["files"]["weights.bin"]["size"] == 2048
    assert set(record["files"]) == {"weights.bin", "model/config.json"}


@pytest.mark.parametrize("fault, expected", [
    (lambda f: truncate(f / "weights.bin"), "weights.bin: 682 bytes, 2,048 recorded"),
    (lambda f: flip_byte(f / "weights.bin"), "weights.bin: its content differs from the recorded SHA-256"),
    (lambda f: (f / "model" / "config.json").unlink(), "model/config.json: missing"),
    (lambda f: truncate(f / "record.json"), "record.json: unreadable"),
    (lambda f: (f / "record.json").unlink(), "record.json: missing"),
])
def test_damage_names_the_first_file_that_differs(tmp_path, fault, expected):
    folder = recorded_folder(tmp_path)
    fault(folder)
    assert damage(folder / "record.json").startswith(expected)


def test_an_altered_record_does_not_match_its_own_digest(tmp_path):
    folder = recorded_folder(tmp_path)
    record = json.loads((folder / "record.json").read_text())
    record["kimg"] = 9
    (folder / "record.json").write_text(json.dumps(record))
    assert damage(folder / "record.json") == "record.json: does not match its own digest"


def test_a_record_from_before_files_were_recorded_has_nothing_to_check(tmp_path):
    (tmp_path / "stage.json").write_text('{"kimg": 8}')
    assert damage(tmp_path / "stage.json") is None and read_record(tmp_path / "stage.json") == {"kimg": 8}


def test_a_staged_folder_appears_whole_and_a_failed_one_leaves_the_old_one(tmp_path):
    target = tmp_path / "union"
    with staged_folder(target) as staged:
        (staged / "union.json").write_text("new")
        assert not target.exists()
    assert (target / "union.json").read_text() == "new"
    (target / "hand-written.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="killed"):
        with staged_folder(target) as staged:
            (staged / "union.json").write_text("newer")
            raise RuntimeError("killed")
    assert (target / "union.json").read_text() == "new" and leftovers(tmp_path) == []
    with staged_folder(target) as staged:
        (staged / "generator").mkdir()
        (staged / "union.json").write_text("newer")
    assert (target / "union.json").read_text() == "newer" and (target / "generator").is_dir()
    assert (target / "hand-written.txt").read_text() == "mine"  # entries it does not write are kept


def test_leftovers_of_killed_saves_go_and_nothing_else(tmp_path):
    for name in (".tmp-union-3f2a", ".tmp-run.json-91bc", ".tmp-other-1", ".hidden", "union"):
        (tmp_path / name).mkdir()
    remove_leftovers(tmp_path, "union", "run.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", ".tmp-other-1", "union"]
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "union"]
    (tmp_path / ".tmp-union-dead").mkdir()
    with staged_folder(tmp_path / "union"):  # a new save of a folder first clears what killed ones left
        assert not (tmp_path / ".tmp-union-dead").exists()


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    write_json(tmp_path / "run.json", {"method": "cocktail"})

    def half_then_full(path):
        path.write_text('{"meth')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        replace_file(tmp_path / "run.json", half_then_full)
    assert json.loads((tmp_path / "run.json").read_text()) == {"method": "cocktail"}
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (SafetensorError(DISK_FULL), DISK_FULL),
])
def test_a_failed_write_is_one_line_with_the_free_space_and_what_to_do(tmp_path, error, reason):
    with pytest.raises(CocktailError) as raised:
        with saving("the checkpoint out/checkpoint-0000000016", tmp_path / "not-yet" / "checkpoints"):
            raise error
    message = str(raised.value)
    assert message.startswith(f"could not write the checkpoint out/checkpoint-0000000016 ({reason}); ")
    assert message.endswith(" free there; run the same command again to resume") and "\n" not in message
    assert any(unit in message for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"))


def test_weights_digest_hashes_names_dtypes_shapes_and_bytes_in_state_dict_order():
    """Stage records store this digest: its exact bytes are pinned here, so a change cannot slip in."""
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias.fill_(0.5)
    expected = hashlib.sha256(b"weight:torch.float32:(1, 2)" + torch.tensor([1.0, -2.0]).numpy().tobytes()
                              + b"bias:torch.float32:(1,)" + torch.tensor([0.5]).numpy().tobytes()).hexdigest()
    assert weights_digest(layer) == weights_digest(layer, None) == expected
    assert weights_digest(layer, layer) != expected
