"""Faults on purpose, for the tests of what survives them: a disk that fills up, damaged files."""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
from safetensors import SafetensorError

from cocktail.training import checkpoint

SERIALIZE = safetensors.torch.save  # the real serialisation, whatever a test does to save_file
SAVE_FILE = safetensors.torch.save_file
# What safetensors raises when the disk fills (seen on a full tmpfs).
DISK_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


class FullDisk:
    """The disk fills while a safetensors file (a checkpoint's or a model folder's, through diffusers) whose
    path contains ``where`` is written: a third of it reaches the disk, then the write fails as safetensors'
    does, until ``free_space``. ``failures`` counts such writes."""

    def __init__(self, where: str):
        self.where, self.failures = where, 0

    def install(self, monkeypatch) -> FullDisk:
        monkeypatch.setattr(safetensors.torch, "save_file", self.save_file)
        monkeypatch.setattr(checkpoint, "save_file", self.save_file)
        return self

    def free_space(self) -> None:
        """Space was freed: writes succeed again."""
        self.where = None

    def save_file(self, tensors, filename, metadata=None):
        if self.where is None or self.where not in str(filename):
            return SAVE_FILE(tensors, filename, metadata)
        data = SERIALIZE(tensors, metadata)
        Path(filename).write_bytes(data[: len(data) // 3])
        self.failures += 1
        raise SafetensorError(DISK_FULL)


def truncate(path: Path) -> None:
    """Cut a file to a third of its size, as a copy or a disk that gave out would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def flip_byte(path: Path) -> None:
    """Invert one byte in the middle of a file: the file keeps its size and, often, its format."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def leftovers(folder: Path) -> list[str]:
    """The temporary files and folders (``.tmp-*``) anywhere below ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".tmp-*"))
