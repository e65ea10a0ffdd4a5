"""Deploy the demo as a Hugging Face Space serving one union model.

    python scripts/deploy_space.py --space_id org/gan-cocktail-demo --model org/union@rev
    python scripts/deploy_space.py --space_id org/demo --model org/union --dry_run space_out/  # assemble only

The Space repo is `spaces/gan-cocktail-demo/` (README front matter, requirements) plus `app.py`,
the `cocktail` package and `default_model.txt` naming the model the app serves. The token comes
from `--token`, `HF_TOKEN` or `huggingface-cli login`, and is never printed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from cocktail.assets import example_path
from cocktail.errors import CocktailError
from cocktail.specs import Kind, parse, parse_hub

ROOT = Path(__file__).resolve().parent.parent

SPACE_TEMPLATE = ROOT / "spaces" / "gan-cocktail-demo"


def check_model(model: str) -> str | None:
    """The Hub repo id the Space links to (None for a shipped example); local folders cannot be served."""
    expected = CocktailError(f"--model {model!r}: expected a Hub id org/name[@revision] or example:<name>")
    try:
        spec = parse(model)
    except CocktailError:
        raise expected from None
    if spec.kind is Kind.EXAMPLE:
        example_path(spec.target)  # raises with the available names if unknown
        return None
    if spec.on_the_hub and spec.class_pick is None:
        return spec.target
    if spec.path.exists():
        raise CocktailError(f"{model}: a Space cannot read a local folder; push the model to the Hub first "
                            "and pass its id (org/name[@revision])")
    raise expected


def assemble(folder: str | Path, model: str) -> Path:
    """Write the Space repo for ``model`` into ``folder`` (which must be empty or absent)."""
    from huggingface_hub import SpaceCard

    repo_id = check_model(model)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise CocktailError(f"{folder}: not empty; give a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "app.py", folder / "app.py")
    shutil.copytree(ROOT / "cocktail", folder / "cocktail",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(SPACE_TEMPLATE / "requirements.txt", folder / "requirements.txt")
    card = SpaceCard.load(SPACE_TEMPLATE / "README.md")
    card.data.models = [repo_id] if repo_id else None  # a shipped example is no Hub repo to link
    card.save(folder / "README.md")
    (folder / "default_model.txt").write_text(model + "\n")
    return folder


def deploy(space_id: str, model: str, private: bool = False, token: str | None = None) -> str:
    """Create the Space if needed and upload the assembled folder in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    try:
        space = parse_hub(space_id)
        is_repo_id = space.revision is None and space.file is None
    except CocktailError:
        is_repo_id = False
    if not is_repo_id:
        raise CocktailError(f"--space_id {space_id!r}: expected org/name")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="gan-cocktail-space-") as tmp:
        folder = assemble(Path(tmp) / "space", model)
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=folder, repo_id=space_id, repo_type="space",
                                   commit_message=f"Deploy the GAN Cocktail demo of {model}",
                                   delete_patterns=["cocktail/**"])  # drop modules a newer version removed
    return commit.commit_url


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space_id", required=True, help="the Space repo, org/name")
    parser.add_argument("--model", required=True, help="the union model to serve: org/name[@revision] or "
                        "example:<name>")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--dry_run", metavar="DIR", default=None, help="only assemble the Space into DIR")
    args = parser.parse_args(argv)
    try:
        if args.dry_run:
            folder = assemble(args.dry_run, args.model)
            print(f"assembled the Space for {args.model} in {folder} (dry run: nothing uploaded)")
            return
        url = deploy(args.space_id, args.model, private=args.private, token=args.token)
    except CocktailError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except HfHubHTTPError as err:  # bad token, no rights to the namespace, Hub down…
        reason = " ".join((err.server_message or str(err)).split())
        status = err.response.status_code
        print(f"error: the Hub refused the deployment (HTTP {status}: {reason})", file=sys.stderr)
        sys.exit(1)
    except httpx2.TransportError as err:  # the HTTP client of huggingface_hub: no network, DNS, TLS…
        print(f"error: cannot reach the Hub ({err})", file=sys.stderr)
        sys.exit(1)
    print(f"deployed {args.model} to Space {args.space_id}: {url}")


if __name__ == "__main__":
    main()
