"""A cheap, differentiable stand-in for a student's coarse image: the encoder's image loss.

A full render through the generator costs far too much per training sample on a CPU. The coarse image, which
carries most of what PSNR measures (pose, shape, colours, background), is decided early: :class:`CoarseRender` runs
a student only up to its ``resolution``-px features (a small share of the full render's cost) and maps each feature
vector linearly to the 2x2 block of the image at twice that resolution, the map solved by least squares against the
generator's own images (float64 normal equations, a tiny ridge).

The loss compares the stand-in's image of the predicted latent with the stand-in's image of the true latent (cached
per pool sample), not with the rendered face: it is then exactly zero at the true latent, whatever the stand-in's
own error against the full render.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mobilestylegan.nets.resize import area_downsample
from mobilestylegan.student.synthesis import MobileSynthesisNetwork


class CoarseRender:
    """``ws [N, num_ws, w_dim] -> image [N, 3, 2r, 2r]``, differentiable in ``ws`` (see the module docstring).

    Args:
        synthesis: A student's synthesis network (frozen).
        resolution: The feature level ``r`` (4, 8, 16, ... below the image's resolution).
    """

    def __init__(self, synthesis: torch.nn.Module, resolution: int) -> None:
        if not isinstance(synthesis, MobileSynthesisNetwork):
            raise ValueError("the encoder's image loss runs a student's coarse layers: the generator must be a student")
        levels = list(synthesis.cfg.feature_resolutions)
        if resolution not in levels[:-1]:
            raise ValueError(f"image-loss resolution must be one of {levels[:-1]} for this student, got {resolution}")
        self.synthesis, self.resolution, self.levels = synthesis, resolution, levels.index(resolution) + 1
        self.weight: torch.Tensor | None = None  # [12, C + 1]

    def features(self, ws: torch.Tensor) -> torch.Tensor:
        """The student's features at ``resolution`` (constant noise), ``[N, C, r, r]``."""
        return self.synthesis.features(ws, None, self.levels)[-1]

    @torch.no_grad()
    def fit(self, ws: torch.Tensor, images: torch.Tensor, batch: int = 16, ridge: float = 1e-6) -> float:
        """Solve the map on latents ``ws`` and their images (any size >= ``2r``, area-downsampled); returns the fit's
        PSNR (dB) on those samples."""
        size = 2 * self.resolution
        gram = rhs = None
        for i in range(0, len(ws), batch):
            x = self._design(self.features(ws[i : i + batch]))
            y = F.pixel_unshuffle(area_downsample(images[i : i + batch].float(), size), 2)
            y = y.permute(0, 2, 3, 1).reshape(-1, 12).double()
            gram = x.T @ x if gram is None else gram + x.T @ x
            rhs = x.T @ y if rhs is None else rhs + x.T @ y
        gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
        self.weight = torch.linalg.solve(gram, rhs).T.float().contiguous()  # [12, C + 1]
        err = [
            (self(ws[i : i + batch]) - area_downsample(images[i : i + batch].float(), size)).square().flatten(1).mean(1)
            for i in range(0, len(ws), batch)
        ]
        return float((10 * torch.log10(4 / torch.cat(err))).mean())

    @staticmethod
    def _design(feats: torch.Tensor) -> torch.Tensor:
        x = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)

    def __call__(self, ws: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            raise RuntimeError("CoarseRender.fit must run first")
        f = self.features(ws)
        w = self.weight.to(f)
        out = F.conv2d(f, w[:, :-1, None, None], w[:, -1])
        return F.pixel_shuffle(out, 2)


__all__ = ["CoarseRender"]
