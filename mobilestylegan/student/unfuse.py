"""Undoing a folded demodulation: the ``style_inv`` that makes a fused student trainable again.

A fused student carries its demodulation inside the conv weights (``W' = d * W``, no run-time normalisation).
To train it further the demodulation must become a run-time computation again without changing any
output: for each styled conv a non-negative ``a`` with ``scale^2 * gram @ a = 1`` (``gram[j, i] =
sum_k W'_jik^2``) is fitted by non-negative least squares and stored as ``style_inv = sqrt(a)``, so the
recomputed ``d`` is 1 and the weights stay as they are. Needs scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from teacher.formats.common import CheckpointError

if TYPE_CHECKING:
    from mobilestylegan.student.synthesis import MobileSynthesisNetwork

_DEMOD_EPS = 1e-8


def _demod_fit(gram: np.ndarray, scale: float, what: str, tol: float) -> tuple[np.ndarray, float]:
    """Non-negative a with ``scale^2 * gram @ a = 1`` (``gram[j, i] = sum_k W'_jik^2``); returns (a, max |d - 1|)."""
    try:
        from scipy.optimize import nnls
    except ImportError as err:  # scipy is an optional (dev) dependency
        raise ImportError(
            "importing the published student unfused needs scipy (pip install scipy); the default fused import does not"
        ) from err
    A = scale**2 * gram.astype(np.float64)
    a, _ = nnls(A, np.ones(A.shape[0]), maxiter=50 * A.shape[1])
    d = 1 / np.sqrt(A @ a + _DEMOD_EPS)
    err = float(np.abs(d - 1).max())
    if err > tol:
        raise CheckpointError(
            f"{what}: no demodulation vector reproduces the folded weights "
            f"(max |d - 1| = {err:.3g} > {tol}); the weights are not a folded demodulation"
        )
    return a, err


def unfuse_state(
    state: dict[str, torch.Tensor], synthesis: MobileSynthesisNetwork, what: str, tol: float = 1e-5
) -> dict[str, float]:
    """Add ``style_inv = sqrt(a)`` per styled conv so the recomputed demodulation is 1 (weights unchanged)."""
    fit: dict[str, float] = {}
    paths = ["conv1"] + [f"layers.{b}.conv{j}" for b in range(len(synthesis.layers)) for j in (1, 2)]
    for path, conv in zip(paths, synthesis.styled_convs()):
        if path == "conv1":
            w = state[f"{path}.conv.weight"].double().numpy()
            w = w.reshape(w.shape[-4:])  # [O, I, k, k]
            gram = (w**2).sum(axis=(2, 3))
        else:
            dw = state[f"{path}.conv.weight_dw"].double().numpy()  # [I, 1, k, k]
            pw = state[f"{path}.conv.weight_permute"].double().numpy()[:, :, 0, 0]  # [O, I]
            gram = pw**2 * (dw**2).sum(axis=(1, 2, 3))[None]
        a, err = _demod_fit(gram, conv.conv.scale, f"{what} ({path})", tol)
        style_inv = torch.from_numpy(np.sqrt(a).astype(np.float32))
        state[f"{path}.conv.style_inv"] = style_inv.reshape(tuple(conv.conv.style_inv.shape))  # [1, 1, I, 1, 1]
        fit[path] = err
    return fit
