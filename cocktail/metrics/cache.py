"""The feature cache, shared by every evaluation in ``$HF_HOME/assets/gan-cocktail/metrics/``.

An entry is named by a digest of the key that decides its features (``metrics.features`` says what goes
in), so the same sample set is never extracted twice. Each entry is a ``.npy`` with a record (``.json``:
the key, the file's size and SHA-256) written after it; an entry without an intact record is computed again,
and a cache that cannot be written only costs that next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import first_line
from ..files import damage, remove_leftovers, replace_file, write_record

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_ASSETS_CACHE) / "gan-cocktail" / "metrics"


def cached_features(key: dict, compute: Callable[[], np.ndarray], cache_dir: str | Path | None = None) -> np.ndarray:
    """The features stored under ``key``, or ``compute()``'s, stored for next time."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    path = Path(cache_dir or default_cache_dir()).expanduser() / f"{name}.npy"
    cached = _read_entry(path)
    if cached is not None:
        return cached
    features = compute()
    _store_entry(path, features, key)
    return features


def _read_entry(path: Path) -> np.ndarray | None:
    """The features of a cache entry whose record vouches for them; None when there is none to trust (not
    cached, a write that never finished, or damaged: then with a warning)."""
    record = path.with_suffix(".json")
    if not path.is_file() or not record.is_file():
        return None
    problem = damage(record)
    if problem is None:
        try:  # an entry from before records listed files is checked by reading it
            return np.load(path)
        except (OSError, ValueError) as err:
            problem = f"{path.name}: {first_line(err)}"
    logger.warning("feature cache entry %s is damaged (%s): computing it again", path, problem)
    return None


def _store_entry(path: Path, features: np.ndarray, key: dict) -> None:
    """Write the features, then their record (the key, for people, and the file's size and SHA-256), each to a
    temporary name renamed into place. A cache that cannot be written is a warning: the features are here."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path.parent, path.name, path.with_suffix(".json").name)
        replace_file(path, lambda temporary: _save_npy(temporary, features))
        write_record(path.with_suffix(".json"), key, [path])
    except OSError as err:
        logger.warning("could not store features in the cache %s (%s); they are computed again next time",
                       path.parent, err.strerror or err)


def _save_npy(path: Path, features: np.ndarray) -> None:
    with open(path, "wb") as file:  # np.save would add ".npy" to a temporary name
        np.save(file, features)
