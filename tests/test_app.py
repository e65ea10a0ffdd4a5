"""The demo through its HTTP API (gradio_client against a launched app): every endpoint, bad inputs too."""

import contextlib
import importlib.util
import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from test_editing import tiny_union  # noqa: E402

from cocktail import editing  # noqa: E402
from cocktail.assets import DEFAULT_UNION  # noqa: E402
from cocktail.errors import CocktailError  # noqa: E402
from cocktail.specs import SourceRecord  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# gradio's queue statistics use a pandas option that pandas 3 deprecates, and huggingface_hub 2.4's LFS
# upload trips a deprecation warning in its HTTP client: not ours to fix.
pytestmark = [pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),
              pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")]


def load_app(name="app"):
    """Import the repo's app.py as a fresh module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_process(args, cwd, env, downloads, timeout=90):
    """``python app.py ARGS`` in a subprocess → (client, output()) once it answers; stopped afterwards."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "GRADIO_ANALYTICS_ENABLED": "False",
           **env}
    process = subprocess.Popen([sys.executable, "app.py", *args, "--port", str(port)], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                                download_files=str(downloads))
                break
            except Exception:  # not listening yet
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise AssertionError(f"app.py did not start:\n{process.communicate()[0]}") from None
                time.sleep(0.5)
        yield client, lambda: "".join(output)
    finally:
        process.terminate()
        output.append(process.communicate(timeout=30)[0])


@pytest.fixture(scope="module")
def app():
    return load_app()


@pytest.fixture(scope="module")
def served(app, tmp_path_factory):
    """A tiny 3-class union whose provenance names one loadable source and one missing one, served locally."""
    folder = tmp_path_factory.mktemp("models")
    source = tiny_union(("cat",), seed=7)
    source.save_pretrained(folder / "cat", write_card=False)
    model = tiny_union(provenance={
        "method": "cocktail", "metrics": {"fid_union": 12.5},
        "sources": [{"name": "cat", "spec": str(folder / "cat")}, {"name": "dog", "spec": "example:gone"}],
    })
    demo = app.build_demo(model, model_card="# Tiny union card", samples=model.sample_grid(seeds_per_class=2),
                          projection_distance="mse")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                    download_files=str(tmp_path_factory.mktemp("downloads")))
    yield types.SimpleNamespace(model=model, source=source, demo=demo, client=client, port=port)
    demo.close()


def pixels(paths_or_images):
    return np.stack([np.asarray(Image.open(p) if isinstance(p, str | Path) else p, dtype=np.int16)
                     for p in paths_or_images])


def assert_same_images(a, b):
    assert np.abs(pixels(a) - pixels(b)).max() <= 1


def test_api_has_one_named_endpoint_per_feature(served):
    endpoints = served.client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/generate", "/random_seeds", "/style_mix", "/interpolate", "/directions",
                              "/compare", "/project"}


def test_queue_is_bounded_and_no_extra_paths_are_served(served, app):
    app_module = app
    assert served.demo._queue.max_size == app_module.QUEUE_SIZE
    assert served.demo.allowed_paths == []


def test_generate_returns_reproducible_seeds_with_captions(served):
    items = served.client.predict("dog", "3", 4, 0.7, api_name="/generate")  # one seed + count: 3..6
    assert [i["caption"] for i in items] == [f"dog · seed {s} · ψ 0.7" for s in range(3, 7)]
    assert_same_images([i["image"] for i in items], served.model.sample("dog", range(3, 7), truncation=0.7))
    items = served.client.predict("car", "1,5,9", 16, 1.0, api_name="/generate")  # a list wins over count
    assert [i["caption"] for i in items] == [f"car · seed {s} · ψ 1" for s in (1, 5, 9)]


def test_random_seeds_gives_count_valid_seeds(served, app):
    text = served.client.predict(5, api_name="/random_seeds")
    seeds = app.parse_seeds(text)
    assert len(seeds) == 5 and seeds == list(range(seeds[0], seeds[0] + 5))
    assert len(served.client.predict("cat", text, 5, 0.5, api_name="/generate")) == 5


def test_style_mix_returns_both_parents_and_the_mix(served):
    items = served.client.predict("cat", 1, "car", 2, 3, 0.8, api_name="/style_mix")
    assert [i["caption"] for i in items] == ["coarse: cat · seed 1", "fine: car · seed 2",
                                             "mix at layer 3 · ψ 0.8"]
    expected = editing.style_mix(served.model, ("cat", 1), ("car", 2), 3, 0.8)
    assert_same_images([i["image"] for i in items], expected)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_interpolate_returns_frames_and_an_animation(served, fmt):
    frames, animation = served.client.predict("cat", 4, "dog", 4, 6, 0.7, fmt, api_name="/interpolate")
    assert [f["caption"] for f in frames] == ["0.00", "0.20", "0.40", "0.60", "0.80", "1.00"]
    assert_same_images([frames[0]["image"], frames[-1]["image"]],
                       served.model.sample("cat", [4], 0.7) + served.model.sample("dog", [4], 0.7))
    with Image.open(animation) as image:
        assert image.format == fmt.upper() and image.is_animated and image.n_frames == 10


def test_directions_edit_any_class_and_strength_zero_is_the_sample(served):
    items = served.client.predict(2, 0.0, "car", "0-2", 0.7, api_name="/directions")
    assert [i["caption"] for i in items] == [f"car · seed {s} · PC2 +0σ" for s in range(3)]
    assert_same_images([i["image"] for i in items], served.model.sample("car", range(3), 0.7))
    edited = served.client.predict(0, -3.0, "dog", "0-2", 0.7, api_name="/directions")
    unedited = served.model.sample("dog", range(3), 0.7)
    assert np.abs(pixels([i["image"] for i in edited]) - pixels(unedited)).mean() > 1


def test_compare_shows_union_and_available_sources_and_notes_the_rest(served):
    items, note = served.client.predict(11, 0.8, api_name="/compare")
    assert [i["caption"] for i in items] == ["union · cat · seed 11", "source cat · seed 11",
                                             "union · dog · seed 11"]
    assert_same_images([items[1]["image"]], served.source.sample(0, [11], 0.8))
    assert "dog" in note and "example:gone" in note


def test_project_takes_an_uploaded_file_and_returns_every_class(served, tmp_path):
    target = served.model.sample("dog", [5], truncation=0.7)[0]
    target.save(tmp_path / "dog.png")
    pair, status, renderings, strip = served.client.predict(
        handle_file(str(tmp_path / "dog.png")), "dog", 60, "w+", 2, api_name="/project")
    assert [i["caption"] for i in pair] == ["your image", "projection"]
    seen, reconstruction = (i["image"] for i in pair)
    assert_same_images([seen], [target])
    assert status.startswith("Projected into **dog** in ") and "60 steps, w+, mse distance" in status
    assert [i["caption"] for i in renderings] == ["as cat", "as dog", "as car"]
    assert_same_images([renderings[1]["image"]], [reconstruction])
    assert len(strip) == 15 and strip[0]["caption"] == "cat · PC2 -2σ"
    psnr = 10 * np.log10(255**2 / np.square(pixels([reconstruction]) - pixels([target])).mean())
    assert psnr > 20  # an image the union drew, found again through the API (its class's mean w: 11 dB)


def test_project_refuses_a_file_that_is_not_an_image(served, tmp_path):
    (tmp_path / "fake.png").write_text("not a picture")
    with pytest.raises(AppError) as info:
        served.client.predict(handle_file(str(tmp_path / "fake.png")), "cat", 10, "w", 0, api_name="/project")
    assert "fake.png: not an image this program can read" in str(info.value)


def crowd(url, clients, args, api_name="/generate"):
    """``clients`` visitors, connected first, then asking at the same instant: [(result or None, error or None)]."""
    visitors = [Client(url, verbose=False, analytics_enabled=False, download_files=False) for _ in range(clients)]
    barrier = threading.Barrier(clients)
    results = [None] * clients

    def visit(i):
        barrier.wait()
        try:
            results[i] = (visitors[i].predict(*args, api_name=api_name), None)
        except Exception as err:  # what each visitor sees is what is tested
            results[i] = (None, err)

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.slow
def test_a_crowd_asking_the_same_images_gets_them_each_from_its_own_files(served):
    """Identical requests used to share one cache file that gradio rewrites in place: downloading it while
    another request rewrote it closed the connection mid-response."""
    results = crowd(f"http://127.0.0.1:{served.port}/", 10, ("cat", "0-3", 4, 0.7))
    assert [error for _, error in results] == [None] * 10
    expected = served.model.sample("cat", range(4), truncation=0.7)
    paths = set()
    for items, _ in results:
        assert [i["caption"] for i in items] == [f"cat · seed {s} · ψ 0.7" for s in range(4)]
        paths.update(i["image"]["path"] for i in items)
        images = [Image.open(io.BytesIO(httpx.get(i["image"]["url"]).content)) for i in items]
        assert_same_images(images, expected)
    assert len(paths) == 40


@pytest.mark.slow
def test_a_crowd_beyond_the_queue_is_told_to_try_again_and_the_demo_recovers(app, monkeypatch):
    model = tiny_union()
    sample = model.sample
    monkeypatch.setattr(model, "sample", lambda *a, **k: time.sleep(0.5) or sample(*a, **k))
    demo = app.build_demo(model, queue_size=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        results = crowd(f"http://127.0.0.1:{port}/", 10, ("cat", "1", 1, 0.7))
        answered = [items for items, _ in results if items is not None]
        refused = [str(error) for _, error in results if error is not None]
        assert answered and all(items[0]["caption"] == "cat · seed 1 · ψ 0.7" for items in answered)
        assert refused and all("Queue is full! Please try again" in message for message in refused)
        again = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False, download_files=False)
        assert again.predict("dog", "2", 1, 0.7, api_name="/generate")[0]["caption"] == "dog · seed 2 · ψ 0.7"
    finally:
        demo.close()


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("source, expected", [
    ({"repo_id": "org/cats", "commit": COMMIT, "spec": "/home/them/cats"}, f"org/cats@{COMMIT}"),
    ({"repo_id": "org/cats", "commit": COMMIT, "spec": "org/cats/runs/a.pkl@main"}, f"org/cats/runs/a.pkl@{COMMIT}"),
    ({"repo_id": "org/cats", "commit": COMMIT, "file": "snap.pkl"}, f"org/cats/snap.pkl@{COMMIT}"),
    ({"spec": "/home/them/cats"}, "not a Hub source"),
    ({"spec": "example:trouser"}, "not a Hub source"),
    ({"repo_id": "org/cats", "revision": "main"}, "not pinned to a recorded commit"),
    ({"repo_id": "org/cats", "commit": "main"}, "not pinned to a recorded commit"),
    ({"repo_id": "../etc", "commit": COMMIT}, "not a valid Hub model id"),
    ({"repo_id": "../../etc", "commit": COMMIT}, "not a Hub model id"),
    ({"repo_id": "org/cats", "commit": COMMIT, "file": "../../../home/x.pkl"}, "not a file path inside the repo"),
])
def test_a_served_hub_model_leads_only_to_pinned_hub_sources(source, expected):
    record = SourceRecord.from_dict({"spec": "/home/them/cats", **source})
    if "@" in expected:
        assert record.pinned_hub_spec() == expected
    else:
        with pytest.raises(CocktailError, match=re.escape(expected)):
            record.pinned_hub_spec()


def test_compare_loads_a_bounded_number_of_sources_within_its_time(tmp_path):
    sources = []
    for name in ("cat", "dog", "car"):
        tiny_union((name,), seed=7).save_pretrained(tmp_path / name, write_card=False)
        sources.append({"name": name, "spec": str(tmp_path / name)})
    union = tiny_union(provenance={"sources": sources})
    loaded = editing.load_sources(union, limit=2)
    assert [s.model is not None for s in loaded] == [True, True, False]
    assert loaded[2].note == "car: not loaded (at most 2 source models are tried)"
    late = editing.load_sources(union, deadline=time.monotonic() - 1)
    assert all(s.model is None and "time for loading source models ran out" in s.note for s in late)
    hub_only = editing.load_sources(union, hub_only=True)
    assert all(s.model is None and "not a Hub source" in s.note for s in hub_only)


BAD_INPUTS = [
    ("/generate", ("dog", "x", 4, 0.7), "not a seed"),
    ("/generate", ("dog", "0-99", 4, 0.7), "more than 16"),
    ("/generate", ("dog", "", 4, 0.7), "at least one seed"),
    ("/generate", ("dog", "2147483647", 2, 0.7), "larger than the largest seed"),
    ("/generate", ("dog", "1", 17, 0.7), "17"),
    ("/generate", ("dog", "1", 4, 1.6), "1.6"),
    ("/generate", ("dog", "1", 4, -0.1), "-0.1"),
    ("/generate", ("horse", "1", 4, 0.7), "horse"),
    ("/random_seeds", (0,), "0"),
    ("/style_mix", ("cat", -1, "car", 2, 3, 0.7), "-1"),
    ("/style_mix", ("cat", 1, "car", 2**31, 3, 0.7), "2147483648"),
    ("/style_mix", ("cat", 1, "car", 2, 0, 0.7), "0"),
    ("/style_mix", ("cat", 1, "car", 2, 8, 0.7), "8"),
    ("/interpolate", ("cat", 1, "dog", 2, 17, 0.7, "gif"), "17"),
    ("/interpolate", ("cat", 1, "dog", 2, 1, 0.7, "gif"), "1"),
    ("/interpolate", ("cat", 1, "dog", 2, 4, 0.7, "png"), "png"),
    ("/directions", (10, 1.0, "cat", "0-3", 0.7), "10"),
    ("/directions", (0, 11.0, "cat", "0-3", 0.7), "11"),
    ("/directions", (0, 1.0, "cat", "0-16", 0.7), "more than 16"),
    ("/compare", (-5, 0.7), "-5"),
    ("/compare", (1, 2.0), "2"),
]


@pytest.mark.parametrize("api_name, args, fragment", BAD_INPUTS)
def test_bad_inputs_get_a_readable_error(served, api_name, args, fragment):
    with pytest.raises(AppError) as info:
        served.client.predict(*args, api_name=api_name)
    message = str(info.value)
    assert fragment in message and "Traceback" not in message and len(message) < 300


def test_model_info_is_in_the_page(served):
    config = httpx.get(f"http://127.0.0.1:{served.port}/config").text
    for text in ("Tiny union card", "samples, one row per", "fid_union", "12.5", "cocktail", "example:gone"):
        assert text in config


def test_generation_is_wrapped_for_zerogpu_when_spaces_is_installed(monkeypatch):
    wrapped = []
    fake_spaces = types.ModuleType("spaces")
    fake_spaces.GPU = lambda fn: wrapped.append(fn.__name__) or fn
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces)
    zero_app = load_app("app_on_zerogpu")
    zero_app.build_demo(tiny_union())
    assert sorted(wrapped) == ["compare", "directions", "generate", "interpolate", "project", "projection_direction",
                               "style_mix"]


def test_load_model_reads_a_folder_with_its_card_and_samples(app, tmp_path, capsys):
    model = tiny_union(("a", "b"))
    model.save_pretrained(tmp_path / "m", write_card=False)
    (tmp_path / "m" / "README.md").write_text("---\nlicense: apache-2.0\ntags: [gan]\n---\n# card of m\n")
    model.sample_grid(seeds_per_class=2).save(tmp_path / "m" / "samples.png")
    loaded, card, samples = app.load_model(str(tmp_path / "m"), "cpu")
    assert loaded.class_names == ["a", "b"] and card == "# card of m\n"  # front matter is for the Hub only
    assert samples.size == model.sample_grid(seeds_per_class=2).size

    with pytest.raises(CocktailError, match="no such file or folder"):
        app.load_model(str(tmp_path / "missing" / "folder"), "cpu")
    assert "downloading" not in capsys.readouterr().out

    assert app.default_model() == DEFAULT_UNION  # no default_model.txt outside a deployed Space
    default, _, _ = app.load_model(app.default_model(), "cpu")  # the shipped example union, offline
    assert default.num_classes >= 2


@pytest.mark.slow
def test_python_app_py_serves_a_hub_model_and_compares_with_its_hub_sources(tmp_path, monkeypatch):
    """`python app.py --model org/name@commit` against the local test Hub, sources fetched from it too."""
    from hub_server import DEFAULT_TOKEN, HubServer, point_client_at
    from huggingface_hub import HfApi

    with HubServer(tmp_path / "hub") as hub:
        point_client_at(hub, tmp_path / "hf_home", monkeypatch)  # whatever HF_HUB_OFFLINE the caller exported
        api = HfApi(endpoint=hub.url, token=DEFAULT_TOKEN)
        source = tiny_union(("cat",), seed=7)
        source.save_pretrained(tmp_path / "cat", write_card=False)
        api.create_repo("tester/cat")
        api.upload_folder(folder_path=tmp_path / "cat", repo_id="tester/cat")
        cat_commit = api.model_info("tester/cat").sha
        local = tmp_path / "local-car"  # a folder on this machine that someone's provenance names
        tiny_union(("car",), seed=3).save_pretrained(local, write_card=False)
        union = tiny_union(provenance={"sources": [
            {"name": "cat", "spec": "/their/machine/cat", "repo_id": "tester/cat", "commit": cat_commit},
            {"name": "dog", "spec": "tester/missing", "repo_id": "tester/missing"},
            {"name": "car", "spec": str(local)}]})
        union.save_pretrained(tmp_path / "union", write_card=False)
        (tmp_path / "union" / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Union from the Hub\n")
        api.create_repo("tester/union")
        commit = api.upload_folder(folder_path=tmp_path / "union", repo_id="tester/union").oid
        api.upload_file(path_or_fileobj=b"newer", path_in_repo="later.txt", repo_id="tester/union")

        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": DEFAULT_TOKEN, "HF_HOME": str(tmp_path / "hf_home"),
               "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}
        spec = f"tester/union@{commit}"
        with app_process(["--model", spec], ROOT, env, tmp_path / "downloads") as (client, output):
            items = client.predict("dog", "0-1", 2, 0.7, api_name="/generate")
            assert_same_images([i["image"] for i in items], union.sample("dog", [0, 1], 0.7))
            items, note = client.predict(3, 0.7, api_name="/compare")
            assert [i["caption"] for i in items] == ["union · cat · seed 3", "source cat · seed 3",
                                                     "union · dog · seed 3", "union · car · seed 3"]
            assert_same_images([items[1]["image"]], source.sample(0, [3], 0.7))
            assert "dog: not loaded (tester/missing is not pinned to a recorded commit" in note
            assert "car: not loaded (not a Hub source" in note and str(local) not in note
            config = httpx.get(client.src.rstrip("/") + "/config").text
            assert "Union from the Hub" in config and "license: apache" not in config
        assert f"downloading {spec}" in output() and f"serving {spec}" in output()
        assert DEFAULT_TOKEN not in output()
