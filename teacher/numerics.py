"""The toolkit's one rule for comparing two float32 computations of the same values, and its one PSNR.

Two correct float32 computations of a network's output (another runtime, another kernel, another
summation order or batch size, fused vs unfused layers, or one of them in float64) differ by rounding
only. One float32 rounding is at most half an ulp, ``2**-24`` relative; a dot product of ``K`` terms
accumulates about ``sqrt(K)`` of them (random-walk model), and a network of ``L`` sequential layers
carries each layer's error into the next, so one computation is off the exact value by about
``L * sqrt(K) * 2**-24`` of its scale, and two of them differ by up to twice that. The budget is
``PARITY_ULPS = 2**11`` float32 ulps (``2**-23`` each, so ``2**-12``) of the compared tensor's scale,
``max(1, peak |reference|)`` (a batch of images has one scale, its peak): it covers two computations of a
network with ``L * sqrt(K) <= 2048``, e.g. 64 layers with 1024-term dot products. Every network here is
inside that (the 1024-px student: ~20 layers of at most 512 inputs per output; the 1024-px teacher: 18
layers of 4608), and the test networks are far smaller. A real bug (a wrong key, a missing gain or bias, a
shifted kernel) moves outputs by 1e-3 of their scale or more, four times the budget.

Nothing here depends on the CPU that ran the numbers: the rule follows from the float32 format alone.
Comparisons of computations that are exact by construction (copies, permutations, the same kernel on
the same input) stay exact (``atol=0``); float64 computations use the same budget in float64 ulps.
"""

from __future__ import annotations

import numpy as np
import torch

F32_EPS = 2.0**-23  # float32 ulp at 1.0
F64_EPS = 2.0**-52  # float64 ulp at 1.0 (the same budget for float64 computations)
PARITY_ULPS = 2**11
PARITY_RULE = "2**11 float32 ulps (2.44e-4) x max(1, peak |reference|)"

Array = torch.Tensor | np.ndarray


def parity_tolerance(reference: Array, eps: float = F32_EPS) -> float:
    """Largest ``max |a - reference|`` two correct float32 (``eps=F64_EPS``: float64) computations may show
    (see the module docstring)."""
    ref = _numpy(reference)
    peak = float(np.abs(ref).max()) if ref.size else 0.0
    return PARITY_ULPS * eps * max(1.0, peak)


def max_abs_diff(actual: Array, reference: Array) -> float:
    a, r = _numpy(actual), _numpy(reference)
    if a.shape != r.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {r.shape}")
    return float(np.abs(a - r).max()) if a.size else 0.0


def assert_parity(actual: Array, reference: Array, what: str = "values") -> float:
    """Raise ``AssertionError`` unless ``actual`` matches ``reference`` within :func:`parity_tolerance`.

    Returns the measured max |difference| (for reporting). NaNs or infinities in either never pass.
    """
    a, r = _numpy(actual), _numpy(reference)
    if not (np.isfinite(a).all() and np.isfinite(r).all()):
        raise AssertionError(f"{what}: non-finite values")
    diff, tol = max_abs_diff(a, r), parity_tolerance(r)
    if not diff <= tol:
        raise AssertionError(f"{what}: max |diff| {diff:.3g} > {tol:.3g} ({PARITY_RULE})")
    return diff


PSNR_CAP_DB = 100.0  # what identical images report where a finite number is needed (metrics, logs)


def psnr_db(a: Array, ref: Array, cap_db: float | None = PSNR_CAP_DB) -> torch.Tensor:
    """Per-image PSNR in dB, ``[N]`` float64, of images ``[N, C, H, W]`` in [-1, 1] (torch or numpy).

    Both are clamped to [-1, 1] first; ``10 log10(4 / MSE)`` (peak-to-peak 2: the same number as peak 1 on
    [0, 1]), the MSE in float64 (float32 on MPS, which has no float64). ``cap_db`` bounds the result: the MSE is
    floored at ``4 * 10**(-cap_db / 10)``, so identical images give ``cap_db``; ``None`` leaves them at inf.
    """
    x = _tensor(a)
    y = _tensor(ref).to(x.device)
    mse = (x.clamp(-1, 1) - y.clamp(-1, 1)).square().flatten(1).mean(1)
    if cap_db is not None:
        mse = mse.clamp_min(4 * 10 ** (-cap_db / 10))
    return 10 * torch.log10(4 / mse)


def pooled_psnr_db(a: Array, ref: Array, cap_db: float | None = None) -> float:
    """One PSNR over a whole set of images (the MSE over all their pixels), uncapped by default: the figure the
    export and benchmark quality gates state."""
    return float(psnr_db(_tensor(a).reshape(1, -1), _tensor(ref).reshape(1, -1), cap_db)[0])


def _tensor(x: Array) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, dtype=np.float64))
    return t.to(torch.float32 if t.device.type == "mps" else torch.float64)


def _numpy(x: Array) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


__all__ = [
    "F32_EPS",
    "F64_EPS",
    "PARITY_RULE",
    "PARITY_ULPS",
    "PSNR_CAP_DB",
    "assert_parity",
    "max_abs_diff",
    "parity_tolerance",
    "pooled_psnr_db",
    "psnr_db",
]
