"""The Hub round trip with the real ``huggingface_hub`` client against a local Hub-compatible server.

Publish tiny sources at two revisions → resolve a pinned one → push a union with its model card → load it
back by repo id in a fresh cache; a ``.pkl``-only repo converted once; and every failure a clear one-line
CocktailError that never shows the token.
"""

import hashlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_server import DEFAULT_TOKEN, HubServer, point_client_at
from huggingface_hub import HfApi, ModelCard, constants, hf_hub_download
from training_helpers import TINY_D_KWARGS, TINY_G_KWARGS

from cocktail.card import CARD_MARKER, write_model_card
from cocktail.errors import CocktailError
from cocktail.hub import push_to_hub, resolve
from cocktail.merge import load_ingredient
from cocktail.merge.surgery import make_conditional
from cocktail.networks import Discriminator, Generator
from cocktail.specs import Origin, SourceRecord, parse_hub
from cocktail.union import UnionModel, open_spec

REPO = Path(__file__).parent.parent
SEEDS = [0, 1, 2]
# huggingface_hub 2.4's own LFS upload call trips a deprecation warning in its HTTP client: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running local Hub; the client (in this process and in subprocesses) talks to it only."""
    server = HubServer(tmp_path / "hub_storage").start()
    point_client_at(server, tmp_path / "hf_home", monkeypatch)
    yield server
    server.stop()


def tiny_model(seed, class_names=("cat",), discriminator=True, provenance=None):
    """A tiny model whose every weight depends on ``seed`` (so two revisions really differ)."""
    torch.manual_seed(seed)
    G, D = Generator(**TINY_G_KWARGS), Discriminator(**TINY_D_KWARGS)
    with torch.no_grad():
        for p in [*G.parameters(), *D.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    if len(class_names) > 1:
        G, D = make_conditional(G, D, len(class_names))
    return UnionModel(G, D if discriminator else None, list(class_names), provenance)


def publish(model, folder, repo_id, **kwargs):
    model.save_pretrained(folder, write_card=False)
    return push_to_hub(folder, repo_id, token=DEFAULT_TOKEN, **kwargs)


def folder_digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# -- pull: revisions, provenance, weights ---------------------------------------------------------


def test_parse_hub_spec():
    def parts(spec):
        hub = parse_hub(spec)
        return hub.target, hub.revision, hub.file

    assert parts("org/cats") == ("org/cats", None, None)
    assert parts("org/cats@v1.0") == ("org/cats", "v1.0", None)
    assert parts("org/cats@refs/pr/3") == ("org/cats", "refs/pr/3", None)
    assert parts("org/cats/runs/00003/snapshot.pkl@v2") == ("org/cats", "v2", "runs/00003/snapshot.pkl")
    for bad, message in (("cats", "not a Hub model id"), ("a/b/c", "no such file or folder"),
                         ("org/cats@", "nothing after '@'"), ("org/ca ts", "not a valid Hub model id")):
        with pytest.raises(CocktailError, match=re.escape(message)):
            parse_hub(bad)


def test_local_specs_resolve_as_they_are(tmp_path):
    folder = tiny_model(0).save_pretrained(tmp_path / "cat", write_card=False)
    checkpoint = tmp_path / "cat.pkl"
    checkpoint.write_bytes(b"not read here")
    assert resolve(str(folder)).kind == "model" and resolve(str(folder)).commit is None
    assert resolve(str(checkpoint)).kind == "checkpoint"
    assert resolve("example:union").local_path.name == "union"
    assert resolve(str(folder)).record().to_dict() == {"spec": str(folder), "repo_id": None, "revision": None,
                                                 "commit": None}


def test_pinned_revisions_resolve_to_their_commit_and_weights(hub, tmp_path):
    v1, v2 = tiny_model(1), tiny_model(2, discriminator=False)
    first = publish(v1, tmp_path / "v1", "org/cat")
    HfApi(token=DEFAULT_TOKEN).create_tag("org/cat", tag="v1", revision=first.oid)
    second = publish(v2, tmp_path / "v2", "org/cat")
    assert len(hub.repos["org/cat"].commits) == 3  # the repo's initial commit + exactly one per push

    pinned = resolve("org/cat@v1")
    assert (pinned.kind, pinned.repo_id, pinned.revision, pinned.commit) == ("model", "org/cat", "v1", first.oid)
    assert pinned.record() == SourceRecord("org/cat@v1", origin=Origin("org/cat", "v1", first.oid))
    assert resolve(f"org/cat@{first.oid}").commit == first.oid
    assert resolve("org/cat").commit == resolve("org/cat@main").commit == second.oid
    assert not (pinned.local_path / ".gitattributes").exists()  # only the model's files are downloaded

    old = UnionModel.from_pretrained("org/cat", revision="v1")
    assert same_weights(old.generator, v1.generator) and same_weights(old.discriminator, v1.discriminator)
    new = UnionModel.from_pretrained("org/cat")
    assert same_weights(new.generator, v2.generator) and not same_weights(new.generator, v1.generator)
    assert new.discriminator is None  # v2 has none: the push deleted v1's stale discriminator files
    assert torch.equal(old.generate("cat", SEEDS), v1.generate("cat", SEEDS))
    assert old.folder == pinned.local_path

    opened = open_spec("org/cat@v1#cat")  # a merge source: one resolution gives the weights and the record
    assert opened.folder == opened.model.folder == pinned.local_path
    assert opened.record == SourceRecord("org/cat@v1#cat", origin=Origin("org/cat", "v1", first.oid))


# -- push: the union, its card, back by repo id ------------------------------------------------------


@pytest.mark.slow
def test_union_round_trip_with_model_card(hub, tmp_path, monkeypatch):
    sources = {}
    for seed, name in enumerate(("cat", "dog"), start=1):
        publish(tiny_model(seed, (name,)), tmp_path / name, f"org/{name}")
        sources[name] = resolve(f"org/{name}").record().to_dict() | {"name": name}
    provenance = {"method": "cocktail", "root": "cat", "sources": list(sources.values()),
                  "recipe": {"method": "cocktail", "root_kimg": 0.5, "merge_kimg": 1.0},
                  "kimg": {"root:dog": 0.5, "merge": 1.0}, "metrics": {"fid": {"cat": 31.5, "dog": 40.25}}}
    union = tiny_model(3, ("cat", "dog"), provenance=provenance)
    folder = union.save_pretrained(tmp_path / "union")
    commit = push_to_hub(folder, "org/union", token=DEFAULT_TOKEN)
    assert commit.oid == hub.repos["org/union"].branches["main"] and commit.endswith(commit.oid)

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh_cache"))
    loaded = UnionModel.from_pretrained("org/union")
    assert loaded.class_names == ["cat", "dog"] and loaded.provenance == provenance
    for label in ("cat", "dog"):
        assert torch.equal(loaded.generate(label, SEEDS, truncation=0.7), union.generate(label, SEEDS, truncation=0.7))
    assert [a.tobytes() for a in loaded.sample("dog", SEEDS)] == [b.tobytes() for b in union.sample("dog", SEEDS)]

    card = ModelCard.load(hf_hub_download("org/union", "README.md"))
    assert card.data.base_model == ["org/cat", "org/dog"] and card.data.base_model_relation == "merge"
    assert card.data.library_name == "gan-cocktail"
    assert card.data.pipeline_tag == "unconditional-image-generation"
    assert {"gan", "stylegan2", "gan-cocktail", "model-merging", "image-generation"} <= set(card.data.tags)
    assert {(r.dataset_config, r.metric_type, r.metric_value) for r in card.data.eval_results} == {
        ("cat", "fid", 31.5), ("dog", "fid", 40.25)}
    assert "![" in card.text and "(samples.png)" in card.text and sources["dog"]["commit"] in card.text
    assert (loaded_folder := resolve("org/union").local_path / "samples.png").is_file(), loaded_folder

    # The card's usage snippet really runs, as a user would run it.
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    assert 'UnionModel.from_pretrained("org/union")' in snippet
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_CACHE": str(tmp_path / "user_cache")}
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "sample.png").is_file()


def test_model_card_front_matter_follows_the_sources(tmp_path):
    def card_for(sources, metrics=None, name="m"):
        provenance = {"method": "cocktail" if len(sources) > 1 else None, "root": "a", "sources": sources,
                      "metrics": metrics or {}}
        folder = tiny_model(0, provenance=provenance).save_pretrained(tmp_path / name, write_card=False)
        return ModelCard.load(write_model_card(folder, repo_id="org/m"))

    hub_source = {"name": "a", "spec": "org/a@v1", "repo_id": "org/a", "revision": "v1", "commit": "c" * 40}
    local_source = {"name": "b", "spec": "./b", "repo_id": None, "revision": None, "commit": None}
    merged = card_for([hub_source, local_source], {"fid": 12.5, "kid": {"a": 0.002}, "reference": "samples"})
    assert merged.data.base_model == ["org/a"] and merged.data.base_model_relation == "merge"
    assert {(r.metric_type, r.metric_value) for r in merged.data.eval_results} == {("fid", 12.5), ("kid", 0.002)}
    assert "| union | 12.5 |  |" in merged.text and "`./b`" in merged.text and "c" * 40 in merged.text

    single = card_for([hub_source], name="single")
    assert single.data.base_model == ["org/a"] and single.data.get("base_model_relation") is None
    assert single.data.eval_results is None and "## Metrics" not in single.text

    local = card_for([local_source], name="local")
    assert local.data.base_model is None and local.data.library_name == "gan-cocktail"


def test_model_card_names_resolution_cites_the_paper_and_says_how_the_model_was_made(tmp_path):
    made = {"command": "python scripts/train_source.py --kimg 240 --seed 0", "seed": 0, "wall_clock": "5 min"}
    provenance = {"method": None, "root": None, "sources": [{"name": "cat", "spec": "data/cat"}], "produced_by": made}
    folder = tiny_model(0, provenance=provenance).save_pretrained(tmp_path / "cat", write_card=False)
    text = ModelCard.load(write_model_card(folder)).text
    resolution = TINY_G_KWARGS["img_resolution"]
    assert f"A StyleGAN2 generator ({resolution}×{resolution} px)" in text
    assert "https://arxiv.org/abs/2106.03847" in text and "eprint    = {2106.03847}" in text
    assert "- command: `python scripts/train_source.py --kimg 240 --seed 0`" in text and "- wall clock: 5 min" in text


# -- a StyleGAN2-ADA checkpoint on the Hub ----------------------------------------------------------


def test_pkl_repo_is_converted_once_per_commit(hub, tmp_path, monkeypatch):
    from test_convert import assert_matches_reference, write_snapshot

    from cocktail import convert

    pkl = write_snapshot(tmp_path / "afhqcat.pkl", tag="uncond")
    api = HfApi(token=DEFAULT_TOKEN)
    api.create_repo("org/stylegan2-cat")
    commit = api.upload_file(path_or_fileobj=str(pkl), path_in_repo="afhqcat.pkl", repo_id="org/stylegan2-cat")

    calls = []
    real_convert = convert.convert_stylegan2_pkl
    monkeypatch.setattr(convert, "convert_stylegan2_pkl", lambda *a, **k: calls.append(a) or real_convert(*a, **k))
    resolved = resolve("org/stylegan2-cat")
    assert (resolved.kind, resolved.commit) == ("model", commit.oid)
    model = UnionModel.from_pretrained(resolved.local_path)
    assert_matches_reference("uncond", model.generator, model.discriminator)
    source = model.provenance["sources"][0]
    assert (source["repo_id"], source["commit"], source["file"]) == ("org/stylegan2-cat", commit.oid, "afhqcat.pkl")

    assert UnionModel.from_pretrained("org/stylegan2-cat").class_names == ["afhqcat"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve("org/stylegan2-cat").local_path == resolved.local_path
    assert len(calls) == 1


def test_one_of_several_pkls_is_named_by_its_path(hub, tmp_path):
    from test_convert import assert_matches_reference, write_snapshot

    api = HfApi(token=DEFAULT_TOKEN)
    api.create_repo("org/runs")
    for tag, folder in (("uncond", "a"), ("cond3", "b")):  # same file name, different networks
        (tmp_path / tag).mkdir()
        pkl = write_snapshot(tmp_path / tag / "snapshot.pkl", tag=tag)
        commit = api.upload_file(path_or_fileobj=str(pkl), path_in_repo=f"{folder}/snapshot.pkl", repo_id="org/runs")
    with pytest.raises(CocktailError) as error:
        resolve("org/runs")
    one_line_error(error, "holds several checkpoints (a/snapshot.pkl, b/snapshot.pkl)",
                   f"name one, e.g. org/runs/a/snapshot.pkl@{commit.oid[:12]}")

    for tag, folder in (("uncond", "a"), ("cond3", "b")):
        resolved = resolve(f"org/runs/{folder}/snapshot.pkl@{commit.oid}")
        assert (resolved.repo_id, resolved.commit) == ("org/runs", commit.oid)
        model = UnionModel.from_pretrained(resolved.local_path)
        assert_matches_reference(tag, model.generator, model.discriminator)
        assert model.provenance["sources"][0]["file"] == f"{folder}/snapshot.pkl"

    with pytest.raises(CocktailError) as error:
        resolve("org/runs/c/snapshot.pkl")
    one_line_error(error, "org/runs/c/snapshot.pkl: org/runs at", "has no file c/snapshot.pkl")

    ingredient = load_ingredient("org/runs/a/snapshot.pkl")  # what merge.py does with a source spec
    assert (ingredient.name, ingredient.provenance["commit"]) == ("snapshot", commit.oid)
    with pytest.raises(CocktailError, match="missing.pkl: checkpoint file not found"):
        load_ingredient(str(tmp_path / "missing.pkl"))


def test_repo_that_is_not_a_model(hub, tmp_path):
    api = HfApi(token=DEFAULT_TOKEN)
    api.create_repo("org/notes")
    api.upload_file(path_or_fileobj=b"# just notes\n", path_in_repo="README.md", repo_id="org/notes")
    with pytest.raises(CocktailError) as error:
        resolve("org/notes")
    one_line_error(error, "org/notes: org/notes at", "not a GAN Cocktail model", "no StyleGAN2-ADA .pkl")

    folder = tiny_model(0).save_pretrained(tmp_path / "broken", write_card=False)
    api.create_repo("org/broken")
    api.upload_file(path_or_fileobj=str(folder / "union.json"), path_in_repo="union.json", repo_id="org/broken")
    with pytest.raises(CocktailError) as error:
        resolve("org/broken")
    one_line_error(error, "has union.json but no generator/config.json")


# -- clear errors ------------------------------------------------------------------------------------


def test_unknown_repo_and_revision(hub, tmp_path):
    publish(tiny_model(1), tmp_path / "cat", "org/cat")
    with pytest.raises(CocktailError) as error:
        resolve("org/nope")
    one_line_error(error, "org/nope: cannot access org/nope on http://127.0.0.1", "(401)", "hf auth login")
    with pytest.raises(CocktailError) as error:
        resolve("org/nope", token=DEFAULT_TOKEN)
    one_line_error(error, "org/nope: no model repo org/nope on http://127.0.0.1")
    with pytest.raises(CocktailError) as error:
        resolve("org/cat@v9")
    one_line_error(error, "org/cat@v9: org/cat has no revision 'v9' (no such branch, tag or commit)")
    with pytest.raises(CocktailError) as error:
        UnionModel.from_pretrained("org/cat", revision="0" * 40)
    one_line_error(error, f"org/cat has no revision '{'0' * 40}'")


def test_offline_uses_the_warm_cache_only(hub, tmp_path, monkeypatch):
    publish(tiny_model(1), tmp_path / "cat", "org/cat")
    HfApi(token=DEFAULT_TOKEN).create_tag("org/cat", tag="v1")
    online = resolve("org/cat")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    requests_before = len(hub.requests)
    offline = resolve("org/cat")
    assert (offline.local_path, offline.commit) == (online.local_path, online.commit)
    assert len(hub.requests) == requests_before  # nothing asked of the Hub
    with pytest.raises(CocktailError) as error:
        resolve("org/cat@v1")  # a revision never downloaded
    one_line_error(error, "org/cat@v1: not in the local cache and offline mode is on (HF_HUB_OFFLINE=1)")
    with pytest.raises(CocktailError) as error:
        resolve("org/dog")
    one_line_error(error, "org/dog: not in the local cache and offline mode is on")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(CocktailError) as error:
        resolve("org/dog", local_files_only=True)
    one_line_error(error, "not in the local cache and local_files_only=True")
    hub.stop()  # the Hub goes away: cached models still load, others say why they cannot
    assert resolve("org/cat").commit == online.commit
    with pytest.raises(CocktailError) as error:
        resolve("org/dog")
    one_line_error(error, f"org/dog: cannot reach the Hub at {hub.url}, and not in the local cache")


def test_private_repo_needs_the_token_which_never_shows(hub, tmp_path, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    model = tiny_model(1)
    publish(model, tmp_path / "secret", "org/secret", private=True)
    assert hub.repos["org/secret"].private
    with pytest.raises(CocktailError) as error:
        resolve("org/secret")
    one_line_error(error, "org/secret: cannot access org/secret", "(401)", "private", "hf auth login")

    wrong = "hf_wrong_token_abcdefghijklmnop"
    with pytest.raises(CocktailError) as error:
        resolve("org/secret", token=wrong)
    one_line_error(error, "org/secret: 401 unauthorized (Invalid credentials in Authorization header); log in")
    assert wrong not in str(error.value)

    assert resolve("org/secret", token=DEFAULT_TOKEN).commit == hub.repos["org/secret"].branches["main"]
    hub.set_private("org/secret", False)
    assert resolve("org/secret@main").commit == hub.repos["org/secret"].branches["main"]
    hub.set_private("org/secret", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "other_cache"))
    monkeypatch.setenv("HF_TOKEN", DEFAULT_TOKEN)  # a standard place: picked up without passing it
    loaded = UnionModel.from_pretrained("org/secret")
    assert same_weights(loaded.generator, model.generator)

    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err):
        assert DEFAULT_TOKEN not in text and wrong not in text
    assert any(authenticated for _, _, authenticated in hub.requests)  # the token did travel, in headers only


# -- failed pushes ------------------------------------------------------------------------------------


def test_failed_push_keeps_the_folder_and_says_how_to_retry(hub, tmp_path, monkeypatch):
    folder = tiny_model(1).save_pretrained(tmp_path / "union")
    before = folder_digest(folder)

    hub.failures["commit"] = (403, "Storage quota exceeded")
    with pytest.raises(CocktailError) as error:
        push_to_hub(folder, "org/union", token=DEFAULT_TOKEN)
    message = one_line_error(error, f"push of {folder} to org/union failed (upload and commit: 403 forbidden: "
                                    "Storage quota exceeded", f"retry with: hf upload org/union {folder}")
    assert DEFAULT_TOKEN not in message and folder_digest(folder) == before

    with pytest.raises(CocktailError) as error:
        push_to_hub(folder, "org/union", token=False)
    one_line_error(error, "401 unauthorized (You must be authenticated to write to a repo); log in with `hf auth")

    # The suggested command works once the cause is gone.
    del hub.failures["commit"]
    retry = one_line_error(error).split("retry with: ")[1].split()
    env = {**os.environ, "HF_TOKEN": DEFAULT_TOKEN, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    run = subprocess.run([str(Path(sys.executable).parent / retry[0]), *retry[1:]], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert same_weights(UnionModel.from_pretrained("org/union").generator, UnionModel.from_pretrained(folder).generator)

    hub.stop()
    with pytest.raises(CocktailError) as error:
        push_to_hub(folder, "org/union", token=DEFAULT_TOKEN)
    one_line_error(error, f"(create the repo: cannot reach the Hub at {hub.url} (ConnectError)", "retry with:")
    assert folder_digest(folder) == before


@pytest.mark.parametrize(("route", "status", "server_says", "step"), [
    ("create", 403, "You have reached your repo limit", "create the repo: 403 forbidden"),
    ("preupload", 403, "Write access denied", "upload and commit: 403 forbidden"),
    ("lfs-upload", 403, "Upload url expired", "upload and commit: Error while uploading"),
    ("commit", 413, "Commit too large", "upload and commit: the Hub answered 413"),
])
def test_push_failure_at_each_step(hub, tmp_path, route, status, server_says, step):
    folder = tiny_model(1).save_pretrained(tmp_path / "union", write_card=False)
    before = folder_digest(folder)
    hub.failures[route] = (status, server_says)
    with pytest.raises(CocktailError) as error:
        push_to_hub(folder, "org/union", token=DEFAULT_TOKEN)
    one_line_error(error, step, server_says, "the local folder is unchanged; retry with: hf upload org/union")
    assert folder_digest(folder) == before
    assert "org/union" not in hub.repos or len(hub.repos["org/union"].commits) == 1  # nothing half-published


def test_push_refuses_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(CocktailError, match="not a GAN Cocktail model folder"):
        push_to_hub(tmp_path, "org/x", token=DEFAULT_TOKEN)


def test_handwritten_card_is_pushed_as_is(hub, tmp_path):
    folder = tiny_model(1).save_pretrained(tmp_path / "cat", write_card=False)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# My cat GAN\n")
    push_to_hub(folder, "org/cat", token=DEFAULT_TOKEN)
    assert Path(hf_hub_download("org/cat", "README.md")).read_text() == "---\nlicense: mit\n---\n# My cat GAN\n"
    write_model_card(folder)
    assert CARD_MARKER in (folder / "README.md").read_text()
