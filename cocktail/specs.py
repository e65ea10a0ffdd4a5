"""What a source string means, decided once: a spec → a typed ``Spec``; and what provenance records of a source.

A spec names a model or a sampler::

    example:trouser                       a model shipped in cocktail/assets
    runs/cat                              a model folder (with generator/), or else a folder of images
    cat.pkl                               a StyleGAN2-ADA checkpoint on this machine
    faces.ts?z_dim=100x1x1                a TorchScript sampler, with options its file cannot say
    mypkg.faces:sample                    a Python entry point, called as sample(batch_size, generator, device)
    org/cats@v1.0                         a Hub repo at a branch, tag or commit
    org/runs/a/snapshot.pkl@v2            one checkpoint of a Hub repo that holds several
    org/union#cat                         any model, with the one class a merge source draws

``RULES`` decide the kind: checked in order, the first that matches wins. Local files and folders come
first, so a path that exists always means itself. Everything else is checked here too (revision, class
pick, options, the repo id), so callers only dispatch on ``Spec.kind``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from .assets import PREFIX, example_path
from .errors import CocktailError

TORCHSCRIPT_SUFFIXES = (".pt", ".ts")
ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
HUB_REPO = re.compile(r"(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>.*))?", re.S)
HUB_FILE = re.compile(r"(?P<repo>[^/@]+/[^/@]+)/(?P<file>[^@]*\.pkl)(?:@(?P<revision>.*))?", re.S | re.I)
COMMIT = re.compile(r"[0-9a-f]{40}")  # a full Hub commit id: what a revision resolves to, and never moves
REPO_ID = re.compile(r"\b[\w\-.]{1,96}\b/\b[\w\-.]{1,96}\b")  # the Hub's own rule (huggingface_hub's validator)
NOT_FOUND = ("no such file or folder, and not a Hub model id "
             "(expected org/name[@revision] or org/name/file.pkl[@revision])")
# What a sampler's file cannot say, carried by its spec: "faces.ts?z_dim=100" on the command line,
# {spec: faces.ts, z_dim: 100} in a recipe. Only TorchScript samplers take options.
SOURCE_OPTIONS = {
    "z_dim": "the latent forward(z) takes: its size (100), or its shape without the batch (100x1x1, "
             "for DCGAN-style generators whose forward takes [B, 100, 1, 1])",
}


class Kind(StrEnum):
    EXAMPLE = "example"
    FOLDER = "folder"  # a model folder: generator/ (+ discriminator/), union.json
    IMAGE_FOLDER = "image folder"
    PKL_FILE = "pkl file"  # a local StyleGAN2-ADA checkpoint (existing or not: the loader says it is missing)
    TORCHSCRIPT = "torchscript"
    FILE = "file"  # any other local file: no source of any kind
    ENTRY_POINT = "entry point"
    HUB_FILE = "hub file"  # one .pkl of a Hub repo
    HUB_REPO = "hub repo"


MODELS = (Kind.EXAMPLE, Kind.FOLDER, Kind.PKL_FILE, Kind.HUB_FILE, Kind.HUB_REPO)  # what '#<class>' can pick from
ON_THE_HUB = (Kind.HUB_FILE, Kind.HUB_REPO)


def _local_pkl(base: str, path: Path) -> bool:
    """A .pkl that can only be meant on this machine; anything else (org/name/dir/file.pkl) may be on the Hub."""
    return path.is_file() or path.is_absolute() or path.parent.is_dir() or base.count("/") < 2


RULES: list[tuple[Kind, Callable[[str, Path], object]]] = [
    (Kind.EXAMPLE, lambda base, path: base.startswith(PREFIX)),
    (Kind.FOLDER, lambda base, path: (path / "generator").is_dir()),
    (Kind.IMAGE_FOLDER, lambda base, path: path.is_dir()),
    (Kind.PKL_FILE, lambda base, path: path.suffix.lower() == ".pkl" and _local_pkl(base, path)),
    (Kind.TORCHSCRIPT, lambda base, path: path.suffix.lower() in TORCHSCRIPT_SUFFIXES),
    (Kind.FILE, lambda base, path: path.is_file()),
    (Kind.ENTRY_POINT, lambda base, path: ENTRY_POINT.fullmatch(base)),
    (Kind.HUB_FILE, lambda base, path: HUB_FILE.fullmatch(base.strip())),
    (Kind.HUB_REPO, lambda base, path: HUB_REPO.fullmatch(base.strip())),
]


@dataclass(frozen=True)
class Spec:
    """A source spec, decided: its kind and parts. ``str(spec)`` is the spec as written (a recipe mapping's
    options folded in): what loads it again and what provenance records."""

    text: str
    kind: Kind
    target: str  # the example spec, the local path, module:function, or the Hub repo id
    revision: str | None = None  # Hub: the branch, tag or commit asked for
    file: str | None = None  # Hub file: the checkpoint's path inside the repo
    class_pick: str | None = None  # '#<class>': the class of a multi-class model a merge source draws
    options: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # '?z_dim=…' (TorchScript only)

    def __str__(self) -> str:
        return self.text

    @property
    def base(self) -> str:
        """The spec without its class pick and options: what names the model or sampler itself."""
        if self.kind not in ON_THE_HUB:
            return self.target
        where = f"{self.target}/{self.file}" if self.file else self.target
        return f"{where}@{self.revision}" if self.revision else where

    @property
    def path(self) -> Path:
        """The local file or folder it names (an example's folder inside the package)."""
        return example_path(self.target) if self.kind is Kind.EXAMPLE else Path(self.target).expanduser()

    @property
    def on_the_hub(self) -> bool:
        return self.kind in ON_THE_HUB

    def at(self, revision: str) -> Spec:
        """This Hub spec at another revision: a resolved commit pins exactly the weights that were used."""
        if not self.on_the_hub:
            raise CocktailError(f"{self.text}: only a Hub spec has revisions")
        where = f"{self.target}/{self.file}" if self.file else self.target
        pick = f"#{self.class_pick}" if self.class_pick is not None else ""
        return replace(self, text=f"{where}@{revision}{pick}", revision=revision)

    def whole_model(self) -> Spec:
        """This spec, where a whole model is loaded: a class pick only makes sense for a merge source."""
        if self.class_pick is not None:
            raise CocktailError(f"{self.text}: '#{self.class_pick}' picks the class a merge source draws; "
                                f"load the whole model as {self.base}")
        return self


def parse(spec: str | Path | Mapping | Spec) -> Spec:
    """A spec string (or a recipe mapping ``{spec: faces.ts, z_dim: 100}``) → a ``Spec``; a bad one is refused
    with a one-line CocktailError. Existing files decide, so parse where the spec is used."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        if not isinstance(spec.get("spec"), str):
            raise CocktailError(f"a source is a spec string or {{spec: ..., <option>: ...}}, got {dict(spec)!r}")
        spec = with_options(spec["spec"], {key: value for key, value in spec.items() if key != "spec"})
    text = str(spec)
    rest, options = split_options(text)
    base, _, class_pick = rest.partition("#")
    if Path(rest).expanduser().exists():  # a file or folder whose name has a '#'
        base, class_pick = rest, ""
    kind = next((kind for kind, rule in RULES if rule(base, Path(base).expanduser())), None)
    if kind is None:
        raise CocktailError(f"{base.strip()}: {NOT_FOUND}")
    if class_pick and kind not in MODELS:
        raise CocktailError(f"{rest}: '#<class>' only applies to model folders, .pkl checkpoints and Hub ids")
    if options and kind is not Kind.TORCHSCRIPT:
        raise CocktailError(f"{rest}: source options ({', '.join(options)}) apply to TorchScript samplers "
                            f"({'/'.join(TORCHSCRIPT_SUFFIXES)} files) only")
    if kind in ON_THE_HUB:
        hub = parse_hub(base)
        return Spec(text, kind, hub.target, hub.revision, hub.file, class_pick or None)
    return Spec(text, kind, base, class_pick=class_pick or None, options=options)


def parse_hub(text: str) -> Spec:
    """A Hub spec only, whatever is on this machine: ``org/name[/dir/file.pkl][@revision]``. For ids that can
    only mean the Hub (a Space id, a source recorded in someone else's ``union.json``)."""
    text = str(text).strip()
    match = HUB_FILE.fullmatch(text) or HUB_REPO.fullmatch(text)
    if match is None:
        raise CocktailError(f"{text}: {NOT_FOUND}")
    repo_id, revision, filename = match["repo"], match["revision"], match.groupdict().get("file")
    if revision == "":
        raise CocktailError(f"{text}: nothing after '@' (expected org/name@branch, tag or commit)")
    if filename is not None and any(part in ("", ".", "..") or "\\" in part for part in filename.split("/")):
        raise CocktailError(f"{text}: {filename} is not a file path inside the repo")
    problem = _repo_id_problem(repo_id)
    if problem:
        raise CocktailError(f"{text}: no such file or folder, and not a valid Hub model id ({problem})")
    return Spec(text, Kind.HUB_FILE if filename is not None else Kind.HUB_REPO, repo_id, revision, filename)


def _repo_id_problem(repo_id: str) -> str | None:
    if not REPO_ID.fullmatch(repo_id):
        return (f"'{repo_id}': names use letters, digits, '-', '_' or '.', do not start or end with '-' or '.', "
                "and have at most 96 characters")
    if "--" in repo_id or ".." in repo_id:
        return f"'{repo_id}' has '--' or '..'"
    if repo_id.endswith(".git"):
        return f"'{repo_id}' ends with '.git'"
    return None


# -- options ---------------------------------------------------------------------------------------------


def split_options(spec: str | Path) -> tuple[str, dict]:
    """``"faces.ts?z_dim=100"`` → ``("faces.ts", {"z_dim": (100,)})``; a spec without options → ``(spec, {})``."""
    text = str(spec)
    base, mark, query = text.rpartition("?")
    if not mark or Path(text).expanduser().exists():  # a file whose name has a '?'
        return text, {}
    options = {}
    for item in query.split("&"):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise CocktailError(f"{text}: source option {item!r} is not key=value")
        options[key.strip()] = value.strip()
    return base, _checked_options(base, options)


def with_options(spec: str, options: Mapping) -> str:
    """A spec and its options (a recipe's ``{spec: faces.ts, z_dim: 100}``) as the one string that
    loads the source and that provenance records: ``faces.ts?z_dim=100``."""
    if not options:
        return spec
    checked = _checked_options(spec, options)
    return spec + "?" + "&".join(f"{key}={'x'.join(map(str, value))}" for key, value in checked.items())


def _checked_options(base: str, options: Mapping) -> dict:
    unknown = sorted(set(map(str, options)) - set(SOURCE_OPTIONS))
    if unknown:
        known = "; ".join(f"{name}: {meaning}" for name, meaning in SOURCE_OPTIONS.items())
        raise CocktailError(f"{base}: unknown source option(s) {', '.join(unknown)} (known: {known})")
    return {"z_dim": latent_shape(options["z_dim"], base)}


def latent_shape(value, where: str) -> tuple[int, ...]:
    """A latent size or shape — ``100``, ``"100"``, ``"100x1x1"``, ``[100, 1, 1]`` — as a tuple of positive ints."""
    parts = value.split("x") if isinstance(value, str) else value if isinstance(value, list | tuple) else [value]
    try:
        shape = tuple(int(p) for p in parts if not isinstance(p, bool | float))
    except (TypeError, ValueError):
        shape = ()
    if not shape or len(shape) != len(parts) or min(shape) < 1:
        raise CocktailError(f"{where}: z_dim must be a positive integer or a shape like 100x1x1, got {value!r}")
    return shape


# -- provenance --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a source's files were found: a Hub repo, the revision asked for and the commit it resolved to
    (all None for a local file or folder)."""

    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class SourceRecord:
    """One entry of ``union.json``'s ``provenance.sources``: how the source was named, where it was found,
    and which checkpoint file it was converted from.

    Keys are written in one order (name, spec, repo_id, revision, commit, format, file, sha256); ``name`` and the
    checkpoint fields only when set, the origin's three keys together (null for a local source) when recorded.
    """

    spec: str
    name: str | None = None
    origin: Origin | None = None  # None: never resolved (a local folder or sampler named as it is)
    format: str | None = None  # a converted checkpoint: its format, its path (inside the repo) and digest
    file: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict:
        record = {} if self.name is None else {"name": self.name}
        record["spec"] = self.spec
        if self.origin is not None:
            record.update(asdict(self.origin))
        checkpoint = {"format": self.format, "file": self.file, "sha256": self.sha256}
        return record | {key: value for key, value in checkpoint.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping) -> SourceRecord:
        if not isinstance(data, Mapping):
            raise CocktailError(f"not a source record (a spec and known keys): {data!r}")
        unknown = set(data) - {"name", "spec", "repo_id", "revision", "commit", "format", "file", "sha256"}
        if unknown or not isinstance(data.get("spec"), str):
            raise CocktailError(f"not a source record (a spec and known keys): {dict(data)!r}")
        origin_keys = [key for key in ("repo_id", "revision", "commit") if key in data]
        origin = Origin(*(data.get(key) for key in ("repo_id", "revision", "commit"))) if origin_keys else None
        return cls(data["spec"], data.get("name"), origin, data.get("format"), data.get("file"), data.get("sha256"))

    @property
    def repo_id(self) -> str | None:
        return self.origin.repo_id if self.origin is not None else None

    @property
    def revision(self) -> str | None:
        return self.origin.revision if self.origin is not None else None

    @property
    def commit(self) -> str | None:
        return self.origin.commit if self.origin is not None else None

    def pinned_hub_spec(self) -> str:
        """``org/name[/file.pkl]@<commit>``, built from the recorded repo id, commit and checkpoint path alone:
        what someone else's ``union.json`` may lead us to fetch. Never the spec as written (a local path on
        the machine that merged it), never a branch that moves."""
        repo_id, commit = self.repo_id, self.commit
        if not isinstance(repo_id, str) or not repo_id:
            raise CocktailError("not a Hub source")
        if not isinstance(commit, str) or not COMMIT.fullmatch(commit):
            raise CocktailError(f"{repo_id} is not pinned to a recorded commit")
        filename = self.file
        if not (isinstance(filename, str) and filename.lower().endswith(".pkl")):
            try:  # a merged union records a Hub checkpoint only in its spec: org/name/dir/file.pkl@rev
                written = parse_hub(self.spec)
                filename = written.file if written.target == repo_id else None
            except CocktailError:
                filename = None
        spec = f"{repo_id}/{filename}@{commit}" if filename else f"{repo_id}@{commit}"
        parse_hub(spec)  # a valid repo id and a path inside the repo
        return spec
