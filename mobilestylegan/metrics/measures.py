"""Evaluation maths on features and images: FID, KID, precision/recall and PPL filtering (PSNR:
:func:`teacher.numerics.psnr_db`; the perceptual distance, LPIPS or unit-normalised VGG16, is a fixed network in
:mod:`mobilestylegan.nets.lpips`, re-exported here). Everything here is a pure function of its inputs;
:mod:`mobilestylegan.metrics.evaluator` renders images and extracts features, :mod:`mobilestylegan.metrics.registry`
turns them into metric lines with their conventions.

Definitions (features ``x`` ``[n, d]`` of one set, ``y`` ``[m, d]`` of the other):

- FID: ``|mu_x - mu_y|^2 + tr S_x + tr S_y - 2 tr sqrt(S_x^1/2 S_y S_x^1/2)`` in float64, S the
  unbiased covariance (``np.cov``, ddof 1). The trace term uses the symmetric form, whose square root
  comes from a symmetric eigendecomposition (negative eigenvalues from rounding clipped to 0): it
  equals ``tr sqrtm(S_x S_y)`` (same eigenvalues) without the complex round-off of a general sqrtm.
- KID: unbiased MMD^2 with the polynomial kernel ``k(a, b) = (a.b / d + 1)^3`` over random subsets
  (default 100 subsets of 1000, clipped to min(n, m)); mean and std over subsets.
- Precision / recall (Kynkaenniemi et al. 2019): each sample's k-NN radius (k = 3, itself excluded)
  in its own set; precision = share of generated samples inside at least one reference ball,
  recall = share of reference samples inside at least one generated ball.
- PPL: mean of the per-pair distances / eps^2 kept between the 1st (lower) and 99th (higher)
  percentiles, as StyleGAN's official code.
"""

from __future__ import annotations

import numpy as np
import torch

from mobilestylegan.nets.lpips import LPIPS_ENV, PerceptualDistance, find_lpips_weights, load_lpips_heads

__all__ = [
    "LPIPS_ENV",
    "PerceptualDistance",
    "feature_stats",
    "fid_from_features",
    "find_lpips_weights",
    "frechet_distance",
    "kid",
    "load_lpips_heads",
    "ppl_filtered_mean",
    "precision_recall",
    "trace_sqrt_product",
]


# ------------------------------------------------------------------------------------------------ FID


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[n, d]`` -> (mean ``[d]``, unbiased covariance ``[d, d]``), float64. Needs n >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"feature statistics need at least 2 samples [n, d], got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr sqrt(s1 s2)`` for covariances, as ``tr sqrt(s1^1/2 s2 s1^1/2)`` (symmetric PSD)."""
    r1 = _psd_sqrt(np.asarray(s1, dtype=np.float64))
    m = r1 @ np.asarray(s2, dtype=np.float64) @ r1
    vals = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(vals, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"statistics do not match: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}"
        )
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))  # rounding can give -1e-12 for identical sets


def fid_from_features(x: np.ndarray, y: np.ndarray) -> float:
    """FID of two feature sets ``[n, d]``, ``[m, d]`` (float64), the same number as
    ``frechet_distance(*feature_stats(x), *feature_stats(y))``.

    When ``max(n, m) <= d`` it takes an exact low-rank route instead of two d x d eigendecompositions:
    with ``A = (x - mu_x) / sqrt(n - 1)`` and ``B = (y - mu_y) / sqrt(m - 1)``, ``S_x = A^T A`` and
    ``S_y = B^T B``, the non-zero eigenvalues of ``S_x S_y`` are the squared singular values of
    ``A B^T`` ``[n, m]``, so ``tr sqrt(S_x S_y)`` is the sum of those singular values.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"FID needs two [n >= 2, d] feature sets of the same d, got {x.shape} and {y.shape}")
    if max(len(x), len(y)) > x.shape[1]:
        return frechet_distance(*feature_stats(x), *feature_stats(y))
    mu_x, mu_y = x.mean(0), y.mean(0)
    a, b = (x - mu_x) / np.sqrt(len(x) - 1), (y - mu_y) / np.sqrt(len(y) - 1)
    diff = mu_x - mu_y
    value = diff @ diff + (a * a).sum() + (b * b).sum() - 2 * np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float(max(value, 0.0))


# ------------------------------------------------------------------------------------------------ KID


def kid(
    x: np.ndarray, y: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float, int]:
    """Kernel Inception Distance: (mean, std over subsets, subset size used).

    Each subset draws ``s = min(subset_size, n, m)`` rows of ``x`` and of ``y`` without replacement
    and computes the unbiased MMD^2 with ``k(a, b) = (a.b / d + 1)^3``::

        (sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)) / (s (s - 1)) - 2 sum_{i,j} k(x_i, y_j) / s^2
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs two [n, d] feature sets of the same d, got {x.shape} and {y.shape}")
    s = min(subset_size, len(x), len(y))
    if s < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(x)} and {len(y)}")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for t in range(num_subsets):
        a = x[rng.choice(len(x), s, replace=False)]
        b = y[rng.choice(len(y), s, replace=False)]
        kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (s * (s - 1))
        values[t] = within - 2 * kxy.sum() / s**2
    return float(values.mean()), float(values.std()), s


# ------------------------------------------------------------------------------------ precision/recall


def _pairwise_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared euclidean distances ``[len(a), len(b)]``."""
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T).clamp_min(0)


def _knn_radii_sq(x: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    """Squared distance of each row to its k-th nearest other row ``[n]``."""
    out = []
    for i in range(0, len(x), batch):
        dist = _pairwise_sq(x[i : i + batch], x)
        out.append(dist.kthvalue(k + 1, dim=1).values)  # the (k+1)-th smallest: the row itself is at 0
    return torch.cat(out)


def _coverage(query: torch.Tensor, ref: torch.Tensor, radii_sq: torch.Tensor, batch: int) -> float:
    """Share of ``query`` rows within at least one ball (centre ``ref[j]``, radius ``radii[j]``)."""
    inside = 0
    for i in range(0, len(query), batch):
        inside += int((_pairwise_sq(query[i : i + batch], ref) <= radii_sq[None]).any(dim=1).sum())
    return inside / len(query)


def precision_recall(
    gen: np.ndarray,
    ref: np.ndarray,
    k: int = 3,
    batch: int = 1024,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019) of ``gen`` against ``ref`` features.

    Distances are computed in row blocks of ``batch`` on ``device`` in ``dtype`` (float32: the
    official code uses float16/32 too; 50k x 50k x 4096 in float64 is slow on most GPUs).
    """
    g = torch.as_tensor(np.asarray(gen)).to(device=device, dtype=dtype)
    r = torch.as_tensor(np.asarray(ref)).to(device=device, dtype=dtype)
    if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1]:
        raise ValueError(
            f"precision/recall need two [n, d] feature sets of the same d, got {tuple(g.shape)}, {tuple(r.shape)}"
        )
    if min(len(g), len(r)) <= k:
        raise ValueError(f"precision/recall with k={k} need more than {k} samples per set, got {len(g)}, {len(r)}")
    precision = _coverage(g, r, _knn_radii_sq(r, k, batch), batch)
    recall = _coverage(r, g, _knn_radii_sq(g, k, batch), batch)
    return precision, recall


# ------------------------------------------------------------------------------------------ PPL


def ppl_filtered_mean(dist: np.ndarray) -> float:
    """Mean of the distances between the 1st (``lower``) and 99th (``higher``) percentiles, inclusive."""
    d = np.asarray(dist, dtype=np.float64)
    lo, hi = np.percentile(d, 1, method="lower"), np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())
