"""Where models come from and where they go: a source spec → local files; a model folder → a Hub repo.

A spec is a local folder or checkpoint file, a shipped ``example:<name>``, or a Hub model id
``org/name[@revision]`` (branch, tag or commit). Hub ids go through ``snapshot_download`` and the
standard cache, so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` / ``local_files_only`` and the user's token (argument,
``HF_TOKEN`` or ``hf auth login``) behave as everywhere in the Hugging Face ecosystem, and the resolved
commit is returned so provenance pins exactly what was used. A Hub repo holding a StyleGAN2-ADA ``.pkl``
instead of our layout (``org/name/path/file.pkl[@revision]`` picks one of several) is converted (without
running its code, see ``convert.py``) once per commit into the assets cache.

Publishing is one ``create_repo(exist_ok=True)`` and one commit holding the whole folder, plus a model card
rendered for the repo (``card.py``); a failure leaves the local folder untouched and says how to retry.
Tokens are never put in messages or logs.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    cached_assets_path,
    constants,
    get_cached_repo_tree,
    get_token,
    snapshot_download,
)
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name

from .card import CARD_MARKER, LIBRARY_NAME, model_card
from .errors import CocktailError, first_line
from .folder import INDEX_FILE, SAMPLES_FILE, read_index
from .specs import NOT_FOUND, Kind, Origin, SourceRecord, Spec, parse

logger = logging.getLogger(__name__)

# What a model repo needs (anything else in it, e.g. training logs, is never downloaded).
MODEL_FILES = ["generator/*", "discriminator/*", INDEX_FILE, "README.md", SAMPLES_FILE]
# Files that a push replaces as a whole: remote ones missing locally are deleted in the same commit.
MODEL_OWNED = ("generator/", "discriminator/", INDEX_FILE, SAMPLES_FILE)
LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN"


@dataclass
class ResolvedSource:
    """A spec turned into local files, with what provenance must record to pin it."""

    spec: str
    local_path: Path
    kind: str  # "model": a folder in our layout; "checkpoint": a .pkl/.pt/.ts file
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None

    def record(self) -> SourceRecord:
        return SourceRecord(self.spec, origin=Origin(self.repo_id, self.revision, self.commit))


# ---------------------------------------------------------------------------------------
# Pull
# ---------------------------------------------------------------------------------------


def resolve(spec: str | Spec, *, token: str | bool | None = None, local_files_only: bool | None = None,
            cache_dir: str | Path | None = None, allow_patterns: list[str] | None = None) -> ResolvedSource:
    """A source spec → local files: a folder in our layout (downloaded, or converted from a Hub ``.pkl``)
    or a local checkpoint file. Local paths and ``example:`` names are returned as they are."""
    spec = parse(spec)
    text = spec.text
    if spec.kind in (Kind.EXAMPLE, Kind.FOLDER, Kind.IMAGE_FOLDER):
        return ResolvedSource(text, spec.path, "model")
    if not spec.on_the_hub:
        if spec.path.is_file():
            return ResolvedSource(text, spec.path, "checkpoint")
        raise CocktailError(f"{spec.base}: {NOT_FOUND}")
    repo_id, revision, filename = spec.target, spec.revision, spec.file
    fetch = _Fetcher(text, repo_id, token, bool(local_files_only), cache_dir)
    if filename is not None:
        folder = fetch(revision, [filename])
        commit = folder.name
        if not (folder / filename).is_file():
            raise CocktailError(f"{text}: {repo_id} at {commit[:12]} has no file {filename}")
        converted = _converted_folder(fetch, revision, commit, folder, filename)
        return ResolvedSource(text, converted, "model", repo_id, revision, commit)
    folder = fetch(revision, allow_patterns or MODEL_FILES)
    commit = folder.name  # snapshot folders are named after the commit they hold
    if (folder / INDEX_FILE).is_file():
        if not (folder / "generator" / "config.json").is_file():
            raise CocktailError(f"{text}: {repo_id} at {commit[:12]} has {INDEX_FILE} but no "
                                "generator/config.json (an incomplete upload?)")
        logger.info("%s: %s at commit %s", text, repo_id, commit)
        return ResolvedSource(text, folder, "model", repo_id, revision, commit)
    pkl = _single_checkpoint(fetch, commit)
    converted = _converted_folder(fetch, revision, commit, fetch(commit, [pkl]), pkl)
    return ResolvedSource(text, converted, "model", repo_id, revision, commit)


class _Fetcher:
    """``snapshot_download`` of one repo, with every failure turned into a one-line CocktailError."""

    def __init__(self, spec, repo_id, token, local_files_only, cache_dir):
        self.spec, self.repo_id, self.token = spec, repo_id, token
        self.local_files_only, self.cache_dir = local_files_only, cache_dir

    def __call__(self, revision: str | None, patterns: list[str]) -> Path:
        try:
            return Path(snapshot_download(self.repo_id, revision=revision, allow_patterns=patterns,
                                          cache_dir=self.cache_dir, token=self.token,
                                          local_files_only=self.local_files_only))
        except (HfHubHTTPError, EntryNotFoundError, HFValidationError, OSError, httpx2.HTTPError) as err:
            raise self.error(err, revision) from None

    def files(self, commit: str) -> list[str]:
        """The repo's files at a commit, from the tree listing ``snapshot_download`` cached (or the Hub)."""
        try:
            return [f.path for f in get_cached_repo_tree(self.repo_id, revision=commit, cache_dir=self.cache_dir)]
        except CachedRepoTreeNotFoundError:
            pass
        try:
            return HfApi().list_repo_files(self.repo_id, revision=commit, token=self.token)
        except (HfHubHTTPError, OSError, httpx2.HTTPError) as err:
            raise self.error(err, commit) from None

    def error(self, err: Exception, revision: str | None) -> CocktailError:
        where = f"{self.repo_id}@{revision}" if revision else self.repo_id
        status = getattr(getattr(err, "response", None), "status_code", None)
        endpoint = constants.ENDPOINT
        if isinstance(err, GatedRepoError):
            reason = f"{self.repo_id} is gated: accept its conditions on its Hub page, then {LOGIN_HINT}"
        elif isinstance(err, RepositoryNotFoundError):
            reason = (f"cannot access {self.repo_id} on {endpoint} (401): it does not exist, or it is private and "
                      f"no valid token was sent; {LOGIN_HINT}" if status == 401 else
                      f"no model repo {self.repo_id} on {endpoint} (or it is private and the token has no access)")
        elif isinstance(err, RevisionNotFoundError):
            reason = f"{self.repo_id} has no revision '{revision or 'main'}' (no such branch, tag or commit)"
        elif isinstance(err, IncompleteSnapshotError):
            reason = (f"the cached copy misses files and the Hub cannot be reached "
                      f"({self._offline_reason() or 'connection failed'})")
        elif isinstance(err, LocalEntryNotFoundError):
            offline = self._offline_reason()
            reason = (f"not in the local cache and {offline}; download it once while online" if offline
                      else f"cannot reach the Hub at {endpoint}, and not in the local cache")
        elif isinstance(err, EntryNotFoundError):
            reason = f"a file is missing in {where} ({first_line(err)})"
        else:
            reason = _http_reason(err)
        return CocktailError(_scrub(f"{self.spec}: {reason}", self.token))

    def _offline_reason(self) -> str | None:
        if self.local_files_only:
            return "local_files_only=True"
        return "offline mode is on (HF_HUB_OFFLINE=1)" if constants.is_offline_mode() else None


def _single_checkpoint(fetch: _Fetcher, commit: str) -> str:
    """The one StyleGAN2-ADA ``.pkl`` of a repo that is not in our layout."""
    files = fetch.files(commit)
    pkls = sorted(f for f in files if f.lower().endswith(".pkl"))
    if len(pkls) == 1:
        return pkls[0]
    if not pkls:
        listed = ", ".join(files[:6]) + (" …" if len(files) > 6 else "")
        raise CocktailError(f"{fetch.spec}: {fetch.repo_id} at {commit[:12]} is not a GAN Cocktail model (no "
                            f"{INDEX_FILE}) and holds no StyleGAN2-ADA .pkl (files: {listed or 'none'})")
    raise CocktailError(f"{fetch.spec}: {fetch.repo_id} holds several checkpoints ({', '.join(pkls[:6])}); "
                        f"name one, e.g. {fetch.repo_id}/{pkls[0]}@{commit[:12]}")


def _converted_folder(fetch: _Fetcher, revision: str | None, commit: str, snapshot: Path, filename: str) -> Path:
    """Our layout for a Hub ``.pkl``, converted once per (repo, commit, file) into the assets cache."""
    from . import convert  # torch-heavy: only when a checkpoint is met

    pkl_path = snapshot / filename
    base = cached_assets_path(LIBRARY_NAME, namespace=repo_folder_name(repo_id=fetch.repo_id, repo_type="model"),
                              subfolder=commit, assets_dir=constants.HF_ASSETS_CACHE)
    target = base / Path(filename).with_suffix("").as_posix().replace("/", "--")  # a/x.pkl and b/x.pkl differ
    if (target / INDEX_FILE).is_file():
        return target
    logger.info("%s: converting %s (commit %s) to the GAN Cocktail layout", fetch.spec, pkl_path.name, commit)
    staging = base / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            convert.convert_stylegan2_pkl(pkl_path, staging, spec=fetch.spec, write_card=False,
                                          origin=Origin(fetch.repo_id, revision, commit), file=filename)
        except CocktailError as err:
            raise CocktailError(f"{fetch.spec}: cannot convert {pkl_path.name} of {fetch.repo_id}: {err}") from None
        try:
            staging.rename(target)
        except OSError:  # another process (e.g. another Accelerate rank) finished first: use its result
            if not (target / INDEX_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------
# Push
# ---------------------------------------------------------------------------------------


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, token: str | bool | None = None,
                commit_message: str | None = None) -> str:
    """Publish a model folder as ONE commit (create the repo if needed); returns the commit url (``.oid`` too).

    The model card is rendered for ``repo_id`` unless the folder's README.md was written by hand.
    The local folder is only read: whatever fails, it is still there, and the error says how to retry.
    """
    folder = Path(folder)
    index = read_index(folder)
    retry = f"hf upload {shlex.quote(repo_id)} {shlex.quote(str(folder))}{' --private' if private else ''}"
    api = HfApi(token=token)
    step = "create the repo"
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        step = "list the repo's files"
        remote = api.list_repo_files(repo_id)
        operations = _commit_operations(folder, repo_id, remote)
        step = "upload and commit"
        message = commit_message or f"Upload GAN Cocktail model ({', '.join(index.get('class_names') or [])})"
        info = api.create_commit(repo_id, operations, commit_message=message)
    except (HfHubHTTPError, OSError, httpx2.HTTPError, ValueError, RuntimeError) as err:
        if isinstance(err, CocktailError):
            raise
        reason = _http_reason(err)
        if isinstance(err, RuntimeError) and err.__cause__ is not None:  # an LFS upload, wrapped by the client
            reason = f"{first_line(err)} {_http_reason(err.__cause__)}"
        raise CocktailError(_scrub(f"push of {folder} to {repo_id} failed ({step}: {reason}); the local folder is "
                                   f"unchanged; retry with: {retry}", token)) from None
    logger.info("pushed %s to %s (commit %s)", folder, repo_id, info.oid)
    return info


def _commit_operations(folder: Path, repo_id: str, remote: list[str]) -> list:
    """Every visible file of the folder, the card rendered for ``repo_id``, and deletions of stale model files."""
    readme = folder / "README.md"
    regenerate = not readme.is_file() or CARD_MARKER in readme.read_text(errors="replace")
    operations, local = [], set()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        local.add(relative.as_posix())
        if not (regenerate and relative.as_posix() == "README.md"):
            operations.append(CommitOperationAdd(relative.as_posix(), str(path)))
    if regenerate:
        operations.append(CommitOperationAdd("README.md", model_card(folder, repo_id=repo_id).encode()))
        local.add("README.md")
    operations += [CommitOperationDelete(f) for f in remote if f.startswith(MODEL_OWNED) and f not in local]
    return operations


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------


def _http_reason(err: BaseException) -> str:
    endpoint = constants.ENDPOINT
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, HfHubHTTPError) and status is not None:
        server = err.server_message or first_line(err)
        if status == 401:
            return f"401 unauthorized ({server}); {LOGIN_HINT}"
        if status == 403:
            return f"403 forbidden: {server} (does the token have write access?)"
        return f"the Hub answered {status}: {server}"
    if isinstance(err, httpx2.HTTPError | ConnectionError):
        return f"cannot reach the Hub at {endpoint} ({type(err).__name__})"
    return first_line(err)


def _scrub(message: str, token) -> str:
    """Never let a token reach a message, whatever a server or library echoed back."""
    for secret in {token if isinstance(token, str) else None, get_token()}:
        if secret:
            message = message.replace(secret, "***")
    return message
