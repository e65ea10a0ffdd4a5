"""scripts/deploy_space.py: the assembled Space folder, that it boots offline, what it sends to the Hub."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import gradio
import pytest
import yaml
from script_loader import load_script
from test_app import app_process

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "deploy_space.py"
# Not ours to fix: gradio's queue uses a pandas option pandas 3 deprecates; huggingface_hub 2.4's upload
# trips a deprecation warning in its HTTP client.
pytestmark = [pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),
              pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")]


def run(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture(scope="module")
def deploy_space():
    return load_script("deploy_space")


def front_matter(readme: Path) -> dict:
    return yaml.safe_load(readme.read_text().split("---\n")[1])


def pins(requirements: Path) -> dict:
    lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
    return dict(line.split("==") for line in lines if "==" in line)


def test_space_template_matches_the_pinned_gradio_and_runtime():
    card = front_matter(ROOT / "spaces" / "gan-cocktail-demo" / "README.md")
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py" and card["python_version"] == "3.11"
    assert card["sdk_version"] == gradio.__version__ == pins(ROOT / "requirements.txt")["gradio"]
    assert card["license"] and card["models"]
    space_pins = pins(ROOT / "spaces" / "gan-cocktail-demo" / "requirements.txt")
    repo_pins = pins(ROOT / "requirements.txt")
    assert "torch" in space_pins and all(repo_pins[name] == version for name, version in space_pins.items())


@pytest.mark.slow
def test_dry_run_assembles_app_package_requirements_and_card(tmp_path):
    out = tmp_path / "space"
    result = run(SCRIPT, "--space_id", "org/demo", "--model", "org/union@v2", "--dry_run", out)
    assert result.returncode == 0, result.stderr
    assert filecmp.cmp(out / "app.py", ROOT / "app.py", shallow=False)
    package = sorted(p.relative_to(out / "cocktail") for p in (out / "cocktail").rglob("*") if p.is_file())
    expected = sorted(p.relative_to(ROOT / "cocktail") for p in (ROOT / "cocktail").rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts)
    assert package == expected
    assert filecmp.cmp(out / "requirements.txt", ROOT / "spaces" / "gan-cocktail-demo" / "requirements.txt")
    card = front_matter(out / "README.md")
    assert card["models"] == ["org/union"] and card["sdk_version"] == gradio.__version__
    assert (out / "default_model.txt").read_text().strip() == "org/union@v2"
    assert not (out / "spaces").exists()  # never shadows the PyPI `spaces` package of ZeroGPU


@pytest.mark.parametrize("args, message", [
    (["--model", "."], "push the model to the Hub first"),
    (["--model", "example:nope"], "unknown example model"),
    (["--model", "not a repo id"], "expected a Hub id"),
])
def test_bad_models_are_refused_with_a_one_line_error(deploy_space, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        deploy_space.main(["--space_id", "org/demo", *args, "--dry_run", str(tmp_path / "space")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_assembled_space_boots_and_serves_with_python_app_py(tmp_path):
    out = tmp_path / "space"
    assert run(SCRIPT, "--space_id", "org/demo", "--model", "example:union", "--dry_run", out).returncode == 0
    # Only the Space's own copy of the package is importable there (app_process drops PYTHONPATH).
    with app_process([], out, {"HF_HUB_OFFLINE": "1"}, tmp_path / "downloads") as (client, output):
        generate = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]
        first_class = generate["parameters"][0]["type"]["enum"][0]
        items = client.predict(first_class, "0-1", 2, 0.7, api_name="/generate")
        assert [i["caption"] for i in items] == [f"{first_class} · seed {s} · ψ 0.7" for s in (0, 1)]
    assert "serving example:union" in output()


def test_deploy_creates_a_gradio_space_and_uploads_the_folder(deploy_space, monkeypatch, capsys):
    """Against a recording stand-in for HfApi (tests/hub_server.py serves model repos only)."""
    import huggingface_hub

    calls = []

    class RecordingApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, folder_path, **kwargs):
            folder = Path(folder_path)
            files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            calls.append(("upload_folder", files, (folder / "default_model.txt").read_text(), kwargs))
            return huggingface_hub.CommitInfo(commit_url="https://huggingface.co/spaces/org/demo/commit/abc",
                                              commit_message="", commit_description="", oid="abc")

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    deploy_space.main(["--space_id", "org/demo", "--model", "org/union@v2", "--private",
                       "--token", "hf_secret"])
    assert calls[0] == ("init", "hf_secret")
    assert calls[1] == ("create_repo", "org/demo",
                        {"repo_type": "space", "space_sdk": "gradio", "private": True, "exist_ok": True})
    _, files, default_model, kwargs = calls[2]
    assert {"app.py", "README.md", "requirements.txt", "default_model.txt", "cocktail/union.py"} <= set(files)
    assert not any("__pycache__" in f for f in files)
    assert default_model.strip() == "org/union@v2"
    assert kwargs["repo_id"] == "org/demo" and kwargs["repo_type"] == "space"
    printed = capsys.readouterr()
    assert "hf_secret" not in printed.out + printed.err and "commit/abc" in printed.out


@pytest.mark.slow
def test_deploy_to_the_local_test_hub(tmp_path, monkeypatch):
    """The real client end to end against tests/hub_server.py: create, upload, then redeploy over it."""
    from hub_server import DEFAULT_TOKEN, HubServer, point_client_at
    from huggingface_hub import HfApi, hf_hub_download

    with HubServer(tmp_path / "hub") as hub:
        point_client_at(hub, tmp_path / "hf_home", monkeypatch)  # whatever HF_HUB_OFFLINE the caller exported
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": DEFAULT_TOKEN, "HF_HUB_DISABLE_XET": "1",
               "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "0"}
        result = run(SCRIPT, "--space_id", "tester/demo", "--model", "tester/union@v1", env=env)
        assert result.returncode == 0, result.stderr
        assert DEFAULT_TOKEN not in result.stdout + result.stderr
        api = HfApi(endpoint=hub.url, token=DEFAULT_TOKEN)
        files = set(api.list_repo_files("tester/demo", repo_type="space"))
        assert {"app.py", "README.md", "requirements.txt", "default_model.txt", "cocktail/union.py"} <= files

        # A module that a newer version no longer has must not linger in the Space.
        api.upload_file(path_or_fileobj=b"stale = True\n", path_in_repo="cocktail/stale.py",
                        repo_id="tester/demo", repo_type="space")
        result = run(SCRIPT, "--space_id", "tester/demo", "--model", "tester/union@v2", env=env)
        assert result.returncode == 0, result.stderr
        files = set(api.list_repo_files("tester/demo", repo_type="space"))
        assert "cocktail/stale.py" not in files and "cocktail/union.py" in files
        default_model = hf_hub_download("tester/demo", "default_model.txt", repo_type="space",
                                        endpoint=hub.url, token=DEFAULT_TOKEN, cache_dir=tmp_path / "cache")
        assert Path(default_model).read_text().strip() == "tester/union@v2"


def test_an_unreachable_hub_is_a_one_line_error(deploy_space, monkeypatch, capsys):
    import httpx2
    import huggingface_hub

    class OfflineApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            raise httpx2.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineApi)
    with pytest.raises(SystemExit) as exit_info:
        deploy_space.main(["--space_id", "org/demo", "--model", "org/union", "--token", "hf_secret"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err == "error: cannot reach the Hub ([Errno 111] Connection refused)\n"
