"""Closed-form heads: every wavelet head's 1x1 weights and bias solved by least squares before training.

A head is a 1x1 modulated conv plus a bias: with its modulation neutral (``affine(w) = 1`` for every w: weight 0,
bias 1) it is a plain linear map from the features at its level to the 12 wavelet channels of the teacher's
image there, so the best head for given features is a least-squares problem with ``C + 1`` unknowns per output
channel (C features and a constant). Random heads waste the first hundreds of training steps finding it.

The features of a few hundred triples do not fit in memory at once (at 64 px, 256 channels: 4 MB a sample), so
the normal equations ``[X 1]^T [X 1]`` and ``[X 1]^T Y`` are accumulated in float64 chunk by chunk, summed over
the processes of a distributed run (they are sums), and solved once with a small ridge for conditioning:
``ridge * mean(diag(X^T X))`` added to the feature block's diagonal. Training then learns the modulation from
its neutral start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from mobilestylegan.distill.triples import Triple
from mobilestylegan.student.synthesis import MobileSynthesisNetwork

DEFAULT_RIDGE = 1e-6

__all__ = ["DEFAULT_RIDGE", "HeadSolve", "NormalEquations", "solve_heads"]


class NormalEquations:
    """``A = [X 1]^T [X 1]`` and ``B = [X 1]^T Y`` of a linear least-squares fit, accumulated in float64.

    Args:
        features: Columns of X (a constant column is appended for the bias).
        outputs: Columns of Y.
    """

    block = 8192

    def __init__(self, features: int, outputs: int) -> None:
        self.a = torch.zeros(features + 1, features + 1, dtype=torch.float64)
        self.b = torch.zeros(features + 1, outputs, dtype=torch.float64)
        self.yy = torch.zeros(outputs, dtype=torch.float64)  # sum of squared targets, for the residual
        self.count = torch.zeros(1, dtype=torch.float64)  # rows added

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Rows ``x [M, features]`` with targets ``y [M, outputs]`` (any device; summed on the CPU in float64).

        The products are taken in the rows' dtype over blocks of at most :attr:`block` rows (float32 features:
        a block's sums carry a relative rounding of about ``sqrt(block) * 2**-24``) and summed in float64."""
        n = x.shape[1]
        for i in range(0, x.shape[0], self.block):
            xb, yb = x[i : i + self.block], y[i : i + self.block].to(x.dtype)
            self.a[:n, :n] += (xb.T @ xb).double().cpu()
            sx = xb.double().sum(0).cpu()
            self.a[:n, n] += sx
            self.a[n, :n] += sx
            self.b[:n] += (xb.T @ yb).double().cpu()
            self.b[n] += yb.double().sum(0).cpu()
            self.yy += yb.double().square().sum(0).cpu()
        self.a[n, n] += x.shape[0]
        self.count += x.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        """The sums, to all-reduce across processes (in place)."""
        return [self.a, self.b, self.yy, self.count]

    def solve(self, ridge: float = DEFAULT_RIDGE) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``(weight [outputs, features], bias [outputs], residual mean square)`` of the ridge solution."""
        if float(self.count) == 0:
            raise ValueError("no rows were added to the normal equations")
        a = self.a.clone()
        n = a.shape[0] - 1
        diag = torch.arange(n)
        a[diag, diag] += ridge * float(a[diag, diag].mean().clamp_min(1e-30))
        beta = torch.linalg.solve(a, self.b)  # [features + 1, outputs]
        # ||Y - X beta||^2 = Y^T Y - 2 beta^T B + beta^T A beta (with the unregularised A).
        sse = self.yy.sum() - 2 * (beta * self.b).sum() + (beta * (self.a @ beta)).sum()
        return beta[:n].T.float(), beta[n].float(), float(sse.clamp_min(0)) / (float(self.count) * self.b.shape[1])


@dataclass
class HeadSolve:
    """What :func:`solve_heads` did: per head (coarse to fine) the resolution, the fit's mean squared error on the
    wavelets (the image's at that level: the Haar transform is orthonormal) and its PSNR for images in [-1, 1]; the
    triples fitted on (over all processes)."""

    resolutions: list[int]
    mse: list[float]
    samples: int

    @property
    def psnr(self) -> list[float]:
        return [10 * torch.log10(torch.tensor(4.0 / max(m, 1e-20))).item() for m in self.mse]


@torch.no_grad()
def solve_heads(
    synthesis: MobileSynthesisNetwork,
    triples: Iterable[Triple],
    ridge: float = DEFAULT_RIDGE,
    all_reduce: Callable[[torch.Tensor], None] | None = None,
) -> HeadSolve:
    """Set every head of ``synthesis`` to the least-squares map from its level's features to the teacher's
    wavelets of ``triples`` (modulation neutral); returns the fit's errors.

    Args:
        synthesis: An unfused student with heads (the last one at least); its other layers are left alone.
        triples: Batches to fit on (their ``ws``, ``noise`` and ``wavelets``).
        ridge: Relative ridge on the feature block of the normal equations.
        all_reduce: Sums a tensor across processes in place (a distributed run: each process passes its own
            share of the triples and every process ends with the same heads).
    """
    if synthesis.fused:
        raise ValueError("solve_heads needs an unfused student (the fused head outputs pixel phases)")
    heads = synthesis.heads()
    levels = [i for i, h in enumerate(heads) if h is not None]
    eqs = {i: NormalEquations(synthesis.cfg.channels[i], heads[i].bias.numel()) for i in levels}
    samples = torch.zeros(1, dtype=torch.float64)
    for triple in triples:
        feats = synthesis.features(triple.ws, triple.noise)
        for i in levels:
            x = feats[i].permute(0, 2, 3, 1).reshape(-1, feats[i].shape[1])
            y = triple.wavelets[i].permute(0, 2, 3, 1).reshape(-1, triple.wavelets[i].shape[1])
            eqs[i].add(x, y)
        samples += len(triple)
    if all_reduce is not None:
        for t in [samples, *(t for eq in eqs.values() for t in eq.tensors())]:
            all_reduce(t)
    mse = []
    for i in levels:
        head = heads[i]
        weight, bias, err = eqs[i].solve(ridge)
        conv = head.conv
        conv.modulation.weight.zero_()
        conv.modulation.bias.fill_(1.0)
        # head(x) = conv.scale * W x + b with the neutral style.
        conv.weight.copy_((weight / conv.scale).reshape(conv.weight.shape).to(conv.weight))
        head.bias.copy_(bias.reshape(head.bias.shape).to(head.bias))
        mse.append(err)
    res = [synthesis.cfg.feature_resolutions[i] * 2 for i in levels]
    return HeadSolve(resolutions=res, mse=mse, samples=int(samples))
