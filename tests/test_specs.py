"""cocktail/specs.py: every kind of spec, its parts, the refusals, and the source records of provenance."""

import ast
import json
import re
import sys
from pathlib import Path

import pytest

from cocktail.assets import ASSETS_DIR
from cocktail.errors import CocktailError
from cocktail.specs import RULES, Kind, Origin, SourceRecord, parse, parse_hub

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder holding one of each local thing a spec can name, as the working directory."""
    (tmp_path / "model" / "generator").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    for name in ("cat.pkl", "faces.ts", "notes.txt", "odd#name.pt"):
        (tmp_path / name).write_bytes(b"not read by the parser")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# spec → (kind, target, revision, file, class_pick, options)
CASES = {
    "example:union": (Kind.EXAMPLE, "example:union", None, None, None, {}),
    "example:union#trouser": (Kind.EXAMPLE, "example:union", None, None, "trouser", {}),
    "model": (Kind.FOLDER, "model", None, None, None, {}),
    "model#cat": (Kind.FOLDER, "model", None, None, "cat", {}),
    "images": (Kind.IMAGE_FOLDER, "images", None, None, None, {}),
    "cat.pkl": (Kind.PKL_FILE, "cat.pkl", None, None, None, {}),
    "cat.pkl#2": (Kind.PKL_FILE, "cat.pkl", None, None, "2", {}),
    "missing.pkl": (Kind.PKL_FILE, "missing.pkl", None, None, None, {}),  # only ever meant here
    "/nowhere/runs/x.pkl": (Kind.PKL_FILE, "/nowhere/runs/x.pkl", None, None, None, {}),
    "model/x.pkl": (Kind.PKL_FILE, "model/x.pkl", None, None, None, {}),  # its folder is here
    "faces.ts": (Kind.TORCHSCRIPT, "faces.ts", None, None, None, {}),
    "faces.ts?z_dim=100x1x1": (Kind.TORCHSCRIPT, "faces.ts", None, None, None, {"z_dim": (100, 1, 1)}),
    "missing.PT": (Kind.TORCHSCRIPT, "missing.PT", None, None, None, {}),
    "odd#name.pt": (Kind.TORCHSCRIPT, "odd#name.pt", None, None, None, {}),  # an existing name keeps its '#'
    "notes.txt": (Kind.FILE, "notes.txt", None, None, None, {}),
    "pkg.faces:sample": (Kind.ENTRY_POINT, "pkg.faces:sample", None, None, None, {}),
    "org/runs/a/snapshot.pkl": (Kind.HUB_FILE, "org/runs", None, "a/snapshot.pkl", None, {}),
    "org/runs/a/snapshot.pkl@v2#cat": (Kind.HUB_FILE, "org/runs", "v2", "a/snapshot.pkl", "cat", {}),
    "org/cats": (Kind.HUB_REPO, "org/cats", None, None, None, {}),
    " org/cats@v1.0 ": (Kind.HUB_REPO, "org/cats", "v1.0", None, None, {}),
    "org/cats@refs/pr/3": (Kind.HUB_REPO, "org/cats", "refs/pr/3", None, None, {}),
    "org/union@main#dog": (Kind.HUB_REPO, "org/union", "main", None, "dog", {}),
}


@pytest.mark.parametrize("text", CASES)
def test_every_kind_and_its_parts(workdir, text):
    spec = parse(text)
    assert (spec.kind, spec.target, spec.revision, spec.file, spec.class_pick, spec.options) == CASES[text]
    assert str(spec) == text and parse(spec) is spec


def test_the_cases_cover_every_rule_and_the_rules_every_kind():
    assert [kind for kind, _ in RULES] == list(Kind)
    assert {case[0] for case in CASES.values()} == set(Kind)


def test_base_drops_the_class_pick_and_the_options(workdir):
    assert parse("org/runs/a/snapshot.pkl@v2#cat").base == "org/runs/a/snapshot.pkl@v2"
    assert parse("faces.ts?z_dim=100").base == "faces.ts"
    assert parse("model#cat").path == Path("model")
    assert parse("example:union").path == ASSETS_DIR / "union"


def test_a_hub_spec_pinned_to_a_commit_keeps_its_file_and_class(workdir):
    pinned = parse("org/runs/a/snapshot.pkl@main#cat").at("c" * 40)
    assert (pinned.text, pinned.revision) == (f"org/runs/a/snapshot.pkl@{'c' * 40}#cat", "c" * 40)
    assert parse("org/cats").at("v1") == parse("org/cats@v1")
    with pytest.raises(CocktailError, match="model: only a Hub spec has revisions"):
        parse("model").at("v1")


def test_a_recipe_mapping_folds_its_options_into_the_spec(workdir):
    spec = parse({"spec": "faces.ts", "z_dim": [100, 1, 1]})
    assert (spec.text, spec.kind, spec.options) == ("faces.ts?z_dim=100x1x1", Kind.TORCHSCRIPT, {"z_dim": (100, 1, 1)})
    assert parse({"spec": "model"}).kind is Kind.FOLDER


def test_a_path_that_exists_means_itself_and_the_hub_reading_ignores_the_disk(workdir):
    (workdir / "org" / "cats" / "generator").mkdir(parents=True)
    assert parse("org/cats").kind is Kind.FOLDER
    assert parse_hub("org/cats").kind is Kind.HUB_REPO


REFUSED = {
    "cats": "cats: no such file or folder, and not a Hub model id (expected org/name[@revision] or",
    "a/b/c": "a/b/c: no such file or folder, and not a Hub model id",
    "./not-here/x": "./not-here/x: no such file or folder",
    "org/cats@": "org/cats@: nothing after '@' (expected org/name@branch, tag or commit)",
    "org/ca ts": "org/ca ts: no such file or folder, and not a valid Hub model id",
    "org/a--b": "not a valid Hub model id ('org/a--b' has '--' or '..')",
    "org/x.git": "not a valid Hub model id ('org/x.git' ends with '.git')",
    "org/cats/../x.pkl": "org/cats/../x.pkl: ../x.pkl is not a file path inside the repo",
    "images#cat": "images#cat: '#<class>' only applies to model folders, .pkl checkpoints and Hub ids",
    "faces.ts#cat": "only applies to model folders",
    "pkg.faces:sample#x": "only applies to model folders",
    "example:union?z_dim=100": "example:union: source options (z_dim) apply to TorchScript samplers "
                               "(.pt/.ts files) only",
    "faces.ts?zdim=100": "faces.ts: unknown source option(s) zdim (known: z_dim: the latent",
    "faces.ts?z_dim": "faces.ts?z_dim: source option 'z_dim' is not key=value",
    "faces.ts?z_dim=0": "faces.ts: z_dim must be a positive integer or a shape like 100x1x1, got '0'",
}


@pytest.mark.parametrize("text", REFUSED)
def test_bad_specs_are_refused_with_one_line(workdir, text):
    with pytest.raises(CocktailError, match=re.escape(REFUSED[text])) as error:
        parse(text)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("mapping, message", [
    ({"z_dim": 100}, "a source is a spec string or {spec: ..., <option>: ...}"),
    ({"spec": "faces.ts", "z_dim": [100, "x"]}, "faces.ts: z_dim must be"),
    ({"spec": "model", "z_dim": 100}, "model: source options (z_dim) apply to TorchScript samplers"),
])
def test_bad_recipe_mappings_are_refused(workdir, mapping, message):
    with pytest.raises(CocktailError, match=re.escape(message)):
        parse(mapping)


def test_a_whole_model_takes_no_class_pick(workdir):
    assert parse("org/union").whole_model().target == "org/union"
    with pytest.raises(CocktailError, match=re.escape("org/union#cat: '#cat' picks the class a merge source "
                                                      "draws; load the whole model as org/union")):
        parse("org/union#cat").whole_model()


def test_specs_imports_only_the_standard_library_errors_and_assets():
    tree = ast.parse((ROOT / "cocktail" / "specs.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    ours = {name for name in imported if name.startswith(".")}
    assert ours <= {".errors", ".assets"}
    assert all(name.split(".")[0] in sys.stdlib_module_names for name in imported - ours)


# -- source records ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("record, expected", [
    (SourceRecord("runs/cat"), {"spec": "runs/cat"}),
    (SourceRecord("cat.pkl", sha256="ab" * 32), {"spec": "cat.pkl", "sha256": "ab" * 32}),
    (SourceRecord("org/cat@v1", origin=Origin("org/cat", "v1", "c" * 40)),
     {"spec": "org/cat@v1", "repo_id": "org/cat", "revision": "v1", "commit": "c" * 40}),
    (SourceRecord("data/bag", name="bag", origin=Origin()),
     {"name": "bag", "spec": "data/bag", "repo_id": None, "revision": None, "commit": None}),
    (SourceRecord("org/runs", name="cat", origin=Origin("org/runs", None, "c" * 40), format="stylegan2-ada-pkl",
                  file="a/snapshot.pkl", sha256="ab" * 32),
     {"name": "cat", "spec": "org/runs", "repo_id": "org/runs", "revision": None, "commit": "c" * 40,
      "format": "stylegan2-ada-pkl", "file": "a/snapshot.pkl", "sha256": "ab" * 32}),
])
def test_a_source_record_writes_exactly_its_keys_in_order(record, expected):
    assert list(record.to_dict().items()) == list(expected.items())
    assert SourceRecord.from_dict(expected) == record


def test_the_shipped_examples_records_read_and_write_back_byte_identical():
    sources = [source for index in sorted(ASSETS_DIR.glob("*/union.json"))
               for source in json.loads(index.read_text())["provenance"]["sources"]]
    assert sources
    for source in sources:
        assert json.dumps(SourceRecord.from_dict(source).to_dict(), indent=2) == json.dumps(source, indent=2)


def test_a_record_with_unknown_keys_or_no_spec_is_refused():
    for bad in ({"spec": "x", "colour": "red"}, {"repo_id": "org/cat"}, {"spec": 3}):
        with pytest.raises(CocktailError, match="not a source record"):
            SourceRecord.from_dict(bad)

