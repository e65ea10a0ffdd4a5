"""Inception features of a sample set (a source's samples or an image folder's images), cached by content.

A set's cache key holds what decides its features: the generator's weights (or a folder's file contents),
class, sample count, seed, truncation, resolution and device, so re-evaluating a model or reusing a source's
references costs nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import CocktailError
from ..files import file_sha256, weights_digest
from ..images import image_files, read_image, resize_images, to_uint8
from ..sources import ForeignSource, ModelSource, Source, load_source
from .cache import cached_features
from .inception import EXTRACTOR_SHA256, default_device, shared_extractor

FEATURES_VERSION = 1  # bump when anything that changes cached features changes (resize, quantisation)
SAMPLE_BATCH = 32  # generator batches: fixed, since per-batch noise seeding makes samples depend on it


def features_for_source(source: str | Path | Source, num_samples: int, *, resolution: int | None = None,
                        seed: int = 0, truncation: float = 1.0, batch_size: int | None = None, device=None,
                        cache_dir: str | Path | None = None, extractor: Callable | None = None,
                        progress: bool = True, description: str | None = None) -> np.ndarray:
    """Inception features [num_samples, 2048] of a source's samples, or of an image folder's images.

    ``source``: a ``Source``, or a spec that ``load_source`` reads (model folder, ``example:``, Hub id,
    ``spec#class``, TorchScript file, entry point; then ``resolution`` is needed) or an image folder
    (``num_samples`` of its images, all if None). Cached when the content can be named (entry points
    cannot): the same call again reads the cache.
    """
    device = torch.device(device or default_device())
    if isinstance(source, str | Path) and is_image_folder(source):
        return features_for_folder(source, num_samples, resolution=resolution, seed=seed, batch_size=batch_size,
                                   device=device, cache_dir=cache_dir, extractor=extractor, progress=progress,
                                   description=description)
    if isinstance(source, str | Path):
        if resolution is None:
            raise CocktailError(f"{source}: give the resolution to sample it at")
        source = load_source(source, resolution, device=device, truncation=truncation)
    if num_samples is None or num_samples < 1:
        raise CocktailError(f"num_samples must be a positive integer, got {num_samples}")
    key = _source_key(source, num_samples, seed, device)
    return _extracted(key, num_samples, lambda: _source_batches(source, num_samples, seed, device),
                      cache_dir, extractor, device, batch_size, progress, description or "samples")


def features_for_folder(folder: str | Path, num_images: int | None = None, *, resolution: int | None = None,
                        seed: int = 0, batch_size: int | None = None, device=None, cache_dir: str | Path | None = None,
                        extractor: Callable | None = None, progress: bool = True,
                        description: str | None = None) -> np.ndarray:
    """Features of an image folder's images (all, or a seeded random ``num_images`` of them).

    Images become RGB (grey repeated, alpha dropped) at ``resolution`` (the model's, cropped and resized
    as training data is; None keeps each image's size), then go to Inception like generated ones.
    """
    folder = Path(folder).expanduser()
    files = image_files(folder) if folder.is_dir() else []
    if not files:
        raise CocktailError(f"{folder}: no images (PNG/JPEG/WebP) found")
    chosen = files
    if num_images is not None and num_images < len(files):
        chosen = [files[i] for i in sorted(np.random.default_rng(seed).choice(len(files), num_images, replace=False))]
    key = {"kind": "folder", "digest": folder_digest(folder, files), "count": len(chosen),
           "seed": seed if len(chosen) < len(files) else None, "resolution": resolution}
    return _extracted(key, len(chosen), lambda: _folder_batches(chosen, resolution), cache_dir, extractor,
                      device, batch_size, progress, description or folder.name)


def folder_digest(folder: Path, files: list[Path]) -> str:
    """SHA-256 over every image's relative path and content: any changed, added or removed file changes it."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def is_image_folder(spec) -> bool:
    """A folder of images rather than a model folder (which holds ``generator/``)."""
    path = Path(spec).expanduser()
    return path.is_dir() and not (path / "generator").is_dir()


def _source_key(source: Source, num_samples: int, seed: int, device: torch.device) -> dict | None:
    """What decides a source's samples, or None when it cannot be named (a Python entry point)."""
    # The device is part of it: per-layer noise comes from that device's RNG, so samples differ across devices.
    common = {"count": num_samples, "seed": seed, "resolution": source.resolution, "device": device.type}
    if isinstance(source, ModelSource):
        return {"kind": "model", "weights": weights_digest(source.G), "class_index": source.class_index,
                "truncation": source.truncation, "noise": "random", **common}
    if isinstance(source, ForeignSource) and source.module is not None:
        return {"kind": "torchscript", "sha256": file_sha256(Path(source.spec).expanduser()), **common}
    return None


def _source_batches(source: Source, count: int, seed: int, device) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)  # latents drawn on the CPU: the same on every device
    for start in range(0, count, SAMPLE_BATCH):
        images, _ = source.sample(min(SAMPLE_BATCH, count - start), device, generator)
        yield _rgb(to_uint8(images))


def _folder_batches(files: list[Path], resolution: int | None) -> Iterator[torch.Tensor]:
    batch = []
    for path in files:
        image = _folder_image(path, resolution)
        if batch and image.shape != batch[0].shape:  # mixed sizes: each size goes through Inception's resize
            yield torch.stack(batch)
            batch = []
        batch.append(image)
        if len(batch) == SAMPLE_BATCH:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def _folder_image(path: Path, resolution: int | None) -> torch.Tensor:
    """An image file as uint8 RGB [3, H, W], at ``resolution`` (cropped and resized as training data is)
    unless None."""
    pixels = read_image(path)
    if resolution is None or pixels.shape[1:] == (resolution, resolution):
        return _rgb(pixels[None])[0]
    return to_uint8(resize_images(pixels[None], resolution))[0]


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 1 or 3, H, W] → three channels, grey repeated: Inception (and any extractor) sees RGB."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _extracted(key: dict | None, count: int, batches: Callable[[], Iterator[torch.Tensor]], cache_dir, extractor,
               device, batch_size: int, progress: bool, description: str) -> np.ndarray:
    """The features of ``batches()`` from the cache, or from the extractor (batched, with a progress bar) and
    then stored; a set without a key is never cached."""

    def extract() -> np.ndarray:
        run = extractor or shared_extractor(device, batch_size)
        chunks = []
        with tqdm(total=count, desc=description, unit="img", disable=not progress, leave=False) as bar:
            for images in batches():
                chunks.append(run(images))
                bar.update(len(images))
        return np.concatenate(chunks)[:count].astype(np.float32)

    if key is None:
        return extract()
    return cached_features({"version": FEATURES_VERSION, "extractor": EXTRACTOR_SHA256[:16], **key}, extract,
                           cache_dir)
