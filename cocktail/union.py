"""The union model: a (class-conditional) generator, its discriminator, class names, provenance.

It is stored as a model folder (``folder.py``) with its model card (``card.py``), locally, in
``cocktail/assets/`` or on the Hub. ``open_spec`` is where any source spec is opened, once: a model folder,
an example, a Hub id or ``.pkl``, a local ``.pkl`` (converted in memory), or a sampler or image folder, which
it only names; ``UnionModel.from_pretrained`` is ``open_spec`` for the specs that name a model folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .card import write_model_card
from .errors import CocktailError
from .files import file_sha256, staged_folder
from .folder import (
    INDEX_FILE,
    SEEDS_PER_CLASS,
    checked_class_names,
    read_index,
    read_networks,
    write_model_folder,
)
from .images import to_pil
from .networks import Discriminator, Generator
from .sampling import class_grid, generate, one_hot_classes, seed_latents
from .specs import NOT_FOUND, Kind, SourceRecord, Spec, parse

logger = logging.getLogger(__name__)


class UnionModel:
    """A generator with named classes, loadable from a folder or the Hub, that samples PIL images."""

    def __init__(self, generator: Generator, discriminator: Discriminator | None = None,
                 class_names: Sequence[str] | None = None, provenance: dict | None = None):
        class_names = checked_class_names(generator, discriminator, class_names)
        self.generator = generator.eval()
        self.discriminator = discriminator.eval() if discriminator is not None else None
        self.class_names = class_names
        self.provenance = dict(provenance or {})
        self.folder: Path | None = None  # the model folder it was loaded from; None when built in memory

    # -- loading and saving ------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, spec: str | Path, revision: str | None = None, load_discriminator: bool = True,
                        device: str | torch.device | None = None, torch_dtype: torch.dtype | None = None,
                        token: str | bool | None = None, local_files_only: bool | None = None) -> UnionModel:
        """Load from a local folder, a Hub id (``org/name[@revision]``) or a shipped ``example:<name>``."""
        spec = parse(spec).whole_model()
        if revision and spec.on_the_hub and spec.revision is None:
            spec = spec.at(revision)
        if spec.kind is Kind.IMAGE_FOLDER:
            raise CocktailError(f"{spec.path}: not a GAN Cocktail model folder (no generator/config.json)")
        if not spec.on_the_hub and spec.kind not in (Kind.EXAMPLE, Kind.FOLDER):
            raise CocktailError(f"{spec}: is a checkpoint file, not a model folder; convert it first with "
                                "scripts/convert.py" if spec.path.is_file() else f"{spec.base}: {NOT_FOUND}")
        return open_spec(spec, load_discriminator=load_discriminator, device=device, torch_dtype=torch_dtype,
                         token=token, local_files_only=local_files_only).model

    def save_pretrained(self, folder: str | Path, write_card: bool = True,
                        seeds_per_class: int = SEEDS_PER_CLASS) -> Path:
        """Write the folder layout; with ``write_card`` also the sample grid and the model card. All of it goes
        to a hidden sibling first (``files.staged_folder``), so a failed or killed save leaves no half model."""
        folder = Path(folder)
        with staged_folder(folder) as staged:
            write_model_folder(staged, self.generator, self.discriminator, self.class_names, self.provenance,
                               seeds_per_class=seeds_per_class if write_card else None)
            if write_card:
                write_model_card(staged, name=folder.resolve().name)
        return folder

    def to(self, device) -> UnionModel:
        self.generator.to(device)
        if self.discriminator is not None:
            self.discriminator.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- sampling ------------------------------------------------------------------------

    def class_index(self, label: str | int) -> int:
        """A class name or index → index, with a clear error listing the classes."""
        if isinstance(label, str) and label not in self.class_names and label.lstrip("-").isdigit():
            label = int(label)
        if isinstance(label, str):
            if label in self.class_names:
                return self.class_names.index(label)
        elif 0 <= int(label) < self.num_classes:
            return int(label)
        raise CocktailError(f"unknown class {label!r}; this model has: {', '.join(self.class_names)}")

    def labels_to_c(self, indices: Iterable[int]) -> torch.Tensor | None:
        """Class indices → the one-hot conditioning the generator expects (None if unconditional)."""
        return one_hot_classes(indices, self.generator.c_dim, self.device)

    def latents(self, seeds: Iterable[int]) -> torch.Tensor:
        """z for each seed, drawn on CPU so a seed means the same image on every device."""
        return seed_latents(seeds, self.generator.z_dim, self.device)

    def generate(self, class_label: str | int = 0, seeds: Iterable[int] = (0,), truncation: float = 1.0,
                 noise_mode: str = "const", batch_size: int = 32) -> torch.Tensor:
        """Images in [-1, 1] (NCHW) of one class for the given seeds."""
        return generate(self.generator, self.class_index(class_label), seeds, truncation=truncation,
                        noise_mode=noise_mode, batch_size=batch_size)

    def sample(self, class_label: str | int = 0, seeds: Iterable[int] = (0,), truncation: float = 1.0,
               noise_mode: str = "const"):
        """PIL images of one class, one per seed; the same seed always gives the same image."""
        return to_pil(self.generate(class_label, seeds, truncation=truncation, noise_mode=noise_mode))

    def sample_grid(self, seeds_per_class: int = SEEDS_PER_CLASS, truncation: float = 1.0,
                    seeds: Iterable[int] | None = None):
        """One row per class, the same seeds in every row (so rows are comparable)."""
        seeds = list(seeds) if seeds is not None else list(range(seeds_per_class))
        return class_grid(self.generator, self.num_classes, seeds, truncation=truncation)


@dataclass(frozen=True)
class Opened:
    """A source spec, opened: what it names, the model behind it, where its files are, and what provenance
    records of it as a merge source."""

    spec: Spec
    model: UnionModel | None  # None: a foreign sampler or an image folder, which the spec only names
    # The model folder it was read from (a Hub id's downloaded snapshot), or the image folder; None for a
    # checkpoint converted in memory and for a sampler.
    folder: Path | None
    record: SourceRecord


def open_spec(spec: str | Path | Mapping | Spec, *, load_discriminator: bool = True,
              device: str | torch.device | None = None, torch_dtype: torch.dtype | None = None,
              token: str | bool | None = None, local_files_only: bool | None = None) -> Opened:
    """Open any source spec (see ``specs``) once: a Hub id is resolved to one commit, whose files the model
    and the record both come from. A ``.pkl`` is converted in memory, without running its code."""
    spec = parse(spec)
    if spec.kind is Kind.PKL_FILE:
        if not spec.path.is_file():
            raise CocktailError(f"{spec.base}: checkpoint file not found")
        from .convert import load_stylegan2_pkl  # torch-heavy unpickling: only when a checkpoint is met

        networks = load_stylegan2_pkl(spec.path)
        model = UnionModel(networks["G_ema"], networks["D"] if load_discriminator else None)
        folder, record = None, SourceRecord(spec.text, sha256=file_sha256(spec.path))
    elif spec.kind in (Kind.EXAMPLE, Kind.FOLDER):
        folder, record = spec.path, SourceRecord(spec.text)
        model = _read_model_folder(folder, folder / INDEX_FILE, load_discriminator, torch_dtype)
    elif spec.on_the_hub:
        from .hub import resolve  # the Hub client is only needed for remote models

        resolved = resolve(spec, token=token, local_files_only=local_files_only)
        folder, record = resolved.local_path, resolved.record()
        model = _read_model_folder(folder, f"{spec} ({INDEX_FILE})", load_discriminator, torch_dtype)
    else:
        folder = spec.path if spec.kind is Kind.IMAGE_FOLDER else None
        return Opened(spec, None, folder, SourceRecord(spec.text))
    return Opened(spec, model.to(device) if device is not None else model, folder, record)


def _read_model_folder(folder: Path, where: str | Path, load_discriminator: bool, torch_dtype) -> UnionModel:
    """The model in a folder on this machine; errors name ``where`` (the index file, or the Hub spec)."""
    index = read_index(folder, where)
    generator, discriminator = read_networks(folder, load_discriminator, torch_dtype)
    try:
        model = UnionModel(generator, discriminator, index.get("class_names"), index.get("provenance"))
    except CocktailError as err:
        raise CocktailError(f"{where}: {err}") from None
    model.folder = folder
    return model
