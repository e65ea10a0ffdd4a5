"""FID, KID and precision/recall of two sets of features: the numbers, with no images or models involved.

* FID = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), the square root through symmetric eigendecompositions in
  float64 (Σ₁ is singular whenever N < 2048).
* KID = the unbiased MMD² with the kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets.
* Precision / recall: the k-NN manifold estimates of Kynkäänniemi et al. (2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CocktailError


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
