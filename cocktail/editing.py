"""Editing in the union's shared latent space: style mixing, interpolation and PCA directions.

A merged union draws every class from one W space, so operations on w work *across* classes:
coarse styles of a cat with fine styles of a face, a walk from one class to another, or a
direction found on all classes at once (GANSpace-style PCA of W, no labels needed) applied to
any one of them. Everything here is a pure function of a :class:`~cocktail.union.UnionModel`
and plain arguments, so the demo stays thin and each operation is unit-tested on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .errors import CocktailError, first_line
from .files import replace_file
from .images import to_pil
from .provenance import Provenance
from .union import UnionModel

ANIMATION_FORMATS = ("gif", "webp")

logger = logging.getLogger(__name__)


# -- W space -----------------------------------------------------------------------------


@torch.no_grad()
def class_ws(model: UnionModel, class_label: str | int, seeds: Iterable[int], truncation: float = 1.0):
    """The per-layer latents [N, num_ws, w_dim] that ``model.sample`` would draw for these seeds."""
    seeds = list(seeds)
    z = model.latents(seeds)
    c = model.labels_to_c([model.class_index(class_label)] * len(seeds))
    return model.generator.mapping(z, c, truncation_psi=truncation)


@torch.no_grad()
def synthesize(model: UnionModel, ws: torch.Tensor, batch_size: int = 16) -> list[Image.Image]:
    """Images for per-layer latents, in batches, with the constant noise that makes seeds reproducible."""
    ws = ws.to(model.device)
    images = [model.generator.synthesis(ws[i : i + batch_size], noise_mode="const").float()
              for i in range(0, len(ws), batch_size)]
    return to_pil(torch.cat(images))


def mix_ws(coarse: torch.Tensor, fine: torch.Tensor, crossover: int) -> torch.Tensor:
    """Layers ``[0, crossover)`` from ``coarse`` (pose, shape), the rest from ``fine`` (colour, texture)."""
    num_ws = coarse.shape[1]
    if not 1 <= int(crossover) <= num_ws - 1:
        raise CocktailError(f"crossover layer must be between 1 and {num_ws - 1}, got {crossover}")
    mixed = fine.clone()
    mixed[:, : int(crossover)] = coarse[:, : int(crossover)]
    return mixed


def style_mix(model: UnionModel, coarse: tuple[str | int, int], fine: tuple[str | int, int], crossover: int,
              truncation: float = 1.0) -> list[Image.Image]:
    """``[coarse image, fine image, mix]`` for two (class, seed) pairs, possibly of different classes."""
    coarse_ws = class_ws(model, coarse[0], [coarse[1]], truncation)
    fine_ws = class_ws(model, fine[0], [fine[1]], truncation)
    return synthesize(model, torch.cat([coarse_ws, fine_ws, mix_ws(coarse_ws, fine_ws, crossover)]))


def interpolate(model: UnionModel, start: tuple[str | int, int], end: tuple[str | int, int], steps: int,
                truncation: float = 1.0) -> list[Image.Image]:
    """``steps`` frames on the straight line in W between two (class, seed) pairs, endpoints included."""
    if int(steps) < 2:
        raise CocktailError(f"interpolation needs at least 2 steps, got {steps}")
    w0 = class_ws(model, start[0], [start[1]], truncation)
    w1 = class_ws(model, end[0], [end[1]], truncation)
    t = torch.linspace(0, 1, int(steps), device=w0.device).view(-1, 1, 1)
    return synthesize(model, w0.lerp(w1, t))


def save_animation(frames: Sequence[Image.Image], path: str | Path, frame_ms: int = 120,
                   boomerang: bool = True) -> Path:
    """A looping GIF or WebP (by suffix); ``boomerang`` plays back and forth so the loop has no jump.

    Written under a temporary name and renamed, so a reader (a visitor downloading the previous copy of the
    same file) never sees half of one.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ANIMATION_FORMATS:
        raise CocktailError(f"{path}: animations are written as {' or '.join(ANIMATION_FORMATS)}")
    if not frames:
        raise CocktailError("no frames to animate")
    frames = [f.convert("RGB") for f in frames]
    if boomerang and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, lambda temporary: frames[0].save(
        temporary, format=fmt.upper(), save_all=True, append_images=frames[1:], duration=frame_ms, loop=0,
        **({"lossless": True} if fmt == "webp" else {})))
    return path


# -- PCA directions --------------------------------------------------------------------------


@dataclass
class Directions:
    """Principal directions of W: unit ``components`` [K, w_dim], each with its ``stddev`` of w along it."""

    mean: torch.Tensor
    components: torch.Tensor
    stddev: torch.Tensor
    explained_variance_ratio: torch.Tensor

    def __len__(self) -> int:
        return len(self.components)


@torch.no_grad()
def pca_directions(model: UnionModel, num_components: int = 10, num_samples: int = 4096, seed: int = 0,
                   batch_size: int = 1024) -> Directions:
    """GANSpace-style directions: PCA of w over random z *and random classes*.

    Pooling all classes finds directions of the shared space, which is what lets a direction act
    on every domain; no attribute labels are involved. Signs are fixed (largest coordinate
    positive) so the same model always gives the same directions.
    """
    generator = model.generator
    if not 1 <= num_components <= min(generator.w_dim, num_samples - 1):
        raise CocktailError(f"num_components must be between 1 and {min(generator.w_dim, num_samples - 1)}, "
                            f"got {num_components}")
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn([num_samples, generator.z_dim], generator=rng)
    labels = torch.randint(model.num_classes, [num_samples], generator=rng)
    ws = []
    for i in range(0, num_samples, batch_size):
        c = model.labels_to_c(labels[i : i + batch_size].tolist())
        ws.append(generator.mapping(z[i : i + batch_size].to(model.device), c)[:, 0].float().cpu())
    w = torch.cat(ws).double()
    mean = w.mean(0)
    _, singular_values, vh = torch.linalg.svd(w - mean, full_matrices=False)
    variance = singular_values**2 / (num_samples - 1)
    components = vh[:num_components]
    signs = components.gather(1, components.abs().argmax(1, keepdim=True)).sign()
    return Directions(mean=mean.float(), components=(components * signs).float(),
                      stddev=variance[:num_components].sqrt().float(),
                      explained_variance_ratio=(variance[:num_components] / variance.sum()).float())


def shift_ws(ws: torch.Tensor, directions: Directions, index: int, strength: float) -> torch.Tensor:
    """Move every layer's w by ``strength`` standard deviations along direction ``index``."""
    if not 0 <= int(index) < len(directions):
        raise CocktailError(f"direction index must be between 0 and {len(directions) - 1}, got {index}")
    step = strength * directions.stddev[int(index)] * directions.components[int(index)]
    return ws + step.to(ws.device, ws.dtype)


def edit(model: UnionModel, directions: Directions, index: int, strength: float, class_label: str | int,
         seeds: Iterable[int], truncation: float = 1.0) -> list[Image.Image]:
    """Images of one class for these seeds, moved along a PCA direction (strength 0 = unedited)."""
    ws = class_ws(model, class_label, seeds, truncation)
    return synthesize(model, shift_ws(ws, directions, index, strength))


# -- comparing with the source models ----------------------------------------------------------


@dataclass
class SourceModel:
    """A source recorded in the union's provenance, the union class it became, and the loaded model if any."""

    name: str
    spec: str | None
    class_index: int
    model: UnionModel | None = None
    note: str | None = None


def load_sources(model: UnionModel, local_files_only: bool | None = None, *, hub_only: bool = False,
                 limit: int | None = None, deadline: float | None = None) -> list[SourceModel]:
    """Try to load each provenance source with ``UnionModel.from_pretrained``; a note says why not.

    Sources may be foreign samplers (TorchScript, image folders) or unreachable Hub repos; a
    comparison is optional, so every failure becomes a note instead of an exception.
    ``hub_only`` is for a model someone else published: its provenance is data, so a source is only
    fetched as a Hub repo at its recorded commit (``SourceRecord.pinned_hub_spec``), never from a local path.
    At most ``limit`` sources are loaded, and none is started after ``deadline`` (``time.monotonic()``).
    """
    sources, loaded = [], 0
    for position, record in enumerate(Provenance.from_dict(model.provenance).sources):
        name = str(record.name or record.spec or f"source {position}")
        index = model.class_names.index(name) if name in model.class_names else position
        spec = record.spec or record.repo_id
        revision = None if "@" in str(spec) else (record.commit or record.revision)
        source = SourceModel(name=name, spec=spec, class_index=index)
        sources.append(source)
        if index >= model.num_classes:
            source.note = f"{name}: no union class corresponds to it"
            continue
        if hub_only:
            try:
                spec, revision = record.pinned_hub_spec(), None
            except CocktailError as err:
                source.note = (f"{name}: not loaded ({err}; a model from the Hub only leads to Hub sources "
                               "at their recorded commit)")
                continue
        if not spec:
            source.note = f"{name}: provenance names no loadable model"
        elif limit is not None and loaded >= limit:
            source.note = f"{name}: not loaded (at most {limit} source models are tried)"
        elif deadline is not None and time.monotonic() > deadline:
            source.note = f"{name}: not loaded (the time for loading source models ran out)"
        else:
            loaded += 1
            try:
                source.model = UnionModel.from_pretrained(
                    spec, revision=revision, load_discriminator=False, device=model.device,
                    local_files_only=local_files_only)
            except Exception as err:  # any failure to load only removes this one comparison
                logger.info("source %s not loaded: %s", spec, err)
                source.note = f"{name}: {spec} could not be loaded ({first_line(err)})"
    return sources


def compare(model: UnionModel, sources: Sequence[SourceModel], seed: int, truncation: float = 1.0):
    """``[(label, union image, source image or None)]``: the same seed through the union and each source."""
    rows = []
    for source in sources:
        if source.class_index >= model.num_classes:
            continue
        union_image = model.sample(source.class_index, [seed], truncation=truncation)[0]
        source_image = None
        if source.model is not None:
            own_class = source.name if source.name in source.model.class_names else 0
            source_image = source.model.sample(own_class, [seed], truncation=truncation)[0]
        rows.append((source.name, union_image, source_image))
    return rows
