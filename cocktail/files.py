"""Files written whole or not at all, recorded as they were written, and checked before they are trusted.

Hours of training end in files (checkpoints, a stage's model, the union, cached features), and a killed
process, a full disk or a damaged drive must cost a rerun, not the run. So:

* what is written goes to a hidden ``.tmp-<name>-<random>`` sibling first and is renamed into place
  (``replace_file`` for any writer, ``write_json``, ``staged_folder`` for a folder): readers see the old
  version or the new one, and a failed write removes its temporary; what a killed one left is removed the
  next time (``remove_leftovers``);
* a folder that is resumed or reused gets a record, written last, listing each of its files with size and
  SHA-256, and a digest of the record itself (``write_record``); ``damage`` says what no longer matches;
* content is named by digests: ``file_sha256`` for a file, ``weights_digest`` for a network's weights,
  ``json_digest`` for a JSON value;
* ``saving`` turns a failed write into one line: what was being written, why, the free space, what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError

from .errors import CocktailError, first_line

TMP = ".tmp-"
FILES = "files"  # a record's list of files: relative path → {"size", "sha256"}
DIGEST = "record_sha256"  # a record's digest of its other entries
AGAIN = "run the same command again to resume"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks: pins exactly which bytes went into a model."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(*modules: torch.nn.Module | None) -> str:
    """SHA-256 of every parameter and buffer of ``modules`` (names, dtypes, shapes, bytes; None skipped): the
    identity of a model's weights. Merge stage records and cached features are keyed by it, so the way it
    hashes must not change."""
    digest = hashlib.sha256()
    for module in modules:
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries (a rename), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_sibling(path: Path) -> Path:
    """A fresh hidden name next to ``path`` that ``remove_leftovers(parent, path.name)`` recognises."""
    return path.with_name(f"{TMP}{path.name}-{uuid.uuid4().hex[:12]}")


def replace_file(path: str | Path, writer: Callable[[Path], object]) -> None:
    """``writer(temporary)`` writes a hidden sibling of ``path``, which is flushed and renamed over ``path``."""
    path = Path(path)
    temporary = _temporary_sibling(path)
    try:
        writer(temporary)
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, value) -> None:
    """Write JSON atomically: a record is the old one or the new one, never half of each."""
    replace_file(path, lambda p: p.write_text(json.dumps(value, indent=2, default=str) + "\n"))


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a hidden sibling of ``folder`` to write its contents into; on success they are flushed and take its
    place (the whole folder in one rename when there is none yet, else entry by entry, other entries kept);
    on failure the sibling is removed. Leftovers of earlier killed saves of ``folder`` go first."""
    folder = Path(folder).resolve()  # "." has no name to put a sibling next to
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder.parent, folder.name)
    staged = _temporary_sibling(folder)
    staged.mkdir()
    try:
        yield staged
        for path in staged.rglob("*"):
            _fsync(path)
        _fsync(staged)
        if not folder.exists():
            os.rename(staged, folder)
        else:
            for entry in sorted(staged.iterdir()):
                target = folder / entry.name
                if target.is_dir() and not target.is_symlink():
                    remove_folder(target)
                os.replace(entry, target)
            staged.rmdir()
            _fsync(folder)
        _fsync(folder.parent)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def remove_folder(folder: Path) -> None:
    """Move a folder out of sight first, so that a half-deleted one is never taken for a complete one."""
    doomed = _temporary_sibling(folder)
    os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_leftovers(folder: Path, *names: str) -> None:
    """Remove what killed saves left in ``folder``: the temporaries of ``names``, or all ``.tmp-*`` entries when
    no name is given. Only for folders that no other running process writes into."""
    if not folder.is_dir():
        return
    prefixes = tuple(f"{TMP}{name}-" for name in names) or (TMP,)
    for entry in folder.iterdir():
        if entry.name.startswith(prefixes):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# -- records ---------------------------------------------------------------------------------------


def write_record(path: str | Path, value: dict, files: Iterable[Path]) -> None:
    """Write ``value`` as the JSON record ``path``, with the size and SHA-256 of each of ``files`` (below the
    record's folder) and a digest of the whole. Written last, after the files it lists: a folder with an
    intact record was complete, and ``damage`` can tell whether it still is."""
    path = Path(path)
    listed = {file.relative_to(path.parent).as_posix(): {"size": file.stat().st_size, "sha256": file_sha256(file)}
              for file in sorted(files)}
    record = {**value, FILES: listed}
    write_json(path, {**record, DIGEST: json_digest(record)})


def read_record(path: str | Path) -> dict:
    """A record, checked against its own digest; a missing, unreadable or altered one is a one-line error."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise CocktailError(f"{path.name}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CocktailError(f"{path.name}: unreadable ({first_line(err)})") from None
    if not isinstance(record, dict):
        raise CocktailError(f"{path.name}: not a record")
    if FILES in record or DIGEST in record:
        rest = {key: value for key, value in record.items() if key != DIGEST}
        if record.get(DIGEST) != json_digest(rest):
            raise CocktailError(f"{path.name}: does not match its own digest")
    return record


def damage(record: str | Path) -> str | None:
    """What is wrong with the files a record lists (below its folder), in one line naming the first file that
    differs; None when all are as recorded. A record written before files were recorded has nothing to
    check them against: None, and reading the files is the only test left."""
    record = Path(record)
    try:
        listed = read_record(record).get(FILES, {})
    except CocktailError as err:
        return str(err)
    for name, entry in listed.items():  # every size first: a truncated file costs no hashing
        path = record.parent / name
        if not path.is_file():
            return f"{name}: missing"
        size = path.stat().st_size
        if size != entry["size"]:
            return f"{name}: {size:,} bytes, {entry['size']:,} recorded"
    for name, entry in listed.items():
        if file_sha256(record.parent / name) != entry["sha256"]:
            return f"{name}: its content differs from the recorded SHA-256"
    return None


def json_digest(value) -> str:
    """SHA-256 of a JSON value, independent of key order: records, stage inputs, cache keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# -- failed writes ---------------------------------------------------------------------------------


@contextmanager
def saving(what: str | Path, where: str | Path, then: str = AGAIN) -> Iterator[None]:
    """Turn a failed write below ``where`` (a full disk, a read-only folder, a vanished mount) into one line:
    ``what`` could not be written, why, the space left there, and ``then``, what to do next."""
    try:
        yield
    except (OSError, SafetensorError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
        raise CocktailError(f"could not write {what} ({reason}); {_free_space(Path(where))} free there; "
                            f"{then}") from None


def _free_space(path: Path) -> str:
    """The space left on the disk holding ``path`` (or its nearest existing parent), for people."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "unknown space"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if free < 1024:
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} TiB"
