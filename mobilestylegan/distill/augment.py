"""Differentiable augmentation in front of the discriminator: flip, affine and resized crop composed into one warp,
with every random number drawn from the caller's per-sample generators."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DiffAugment(nn.Module):
    """Differentiable augmentation of discriminator inputs: flip, affine, resized crop, as one warp.

    Each of the three transforms is applied to each sample independently with probability ``p``:

    1. horizontal flip;
    2. affine: rotation in ``[-degrees, degrees]``, translation up to ``translate`` x the size on each
       axis, isotropic scale in ``scale``;
    3. crop of a random area fraction in ``crop_scale`` and aspect ratio (width / height, log-uniform) in
       ``crop_ratio`` at a uniform position, resized back to the input size.

    The three are composed into one affine map per sample and applied with a single bilinear
    ``grid_sample`` (``padding_mode`` outside the image), so an augmented image is resampled once, not
    three times (StyleGAN2-ADA composes its geometric augmentations the same way). A sample that draws
    none of them is returned unchanged. The output is differentiable w.r.t. the input, also twice
    (generator gradients; R1 with ``create_graph`` through it is tested).

    Randomness: every sample draws its parameters from a CPU ``torch.Generator`` the caller passes (11
    uniforms per sample, whatever ``p``), so a sample's augmentation does not depend on the batch it is
    in, the global RNG is never touched, and a distributed run augments each sample as a single process
    would. Call it with separate generators for the real and the fake batch. ``p = 0`` returns the input
    without drawing anything. Works on images in [-1, 1].

    Args:
        p: Per-sample probability of each transform (0 = identity).
        flip: Use the horizontal flip.
        degrees: Maximum absolute rotation in degrees (0 = none).
        translate: Maximum translation as a fraction of width / height (0 = none).
        scale: Range of the affine scale factor ((1, 1) = none).
        crop_scale: Range of the crop's area fraction; None disables the crop.
        crop_ratio: Range of the crop's aspect ratio (width / height).
        padding_mode: ``grid_sample`` padding outside the image: ``reflection`` (default: no border for D
            to spot), ``border`` or ``zeros``.
    """

    DRAWS = 11  # uniforms per sample: flip, affine (on, angle, tx, ty, scale), crop (on, area, ratio, x, y)

    def __init__(
        self,
        p: float = 0.5,
        flip: bool = True,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: tuple[float, float] = (0.9, 1.1),
        crop_scale: tuple[float, float] | None = (0.64, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        padding_mode: str = "reflection",
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"DiffAugment.p must be in [0, 1], got {p}")
        if padding_mode not in ("reflection", "border", "zeros"):
            raise ValueError(f"DiffAugment.padding_mode must be reflection, border or zeros, got {padding_mode!r}")
        if crop_scale is not None and not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"DiffAugment.crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        self._p = float(p)
        self.flip = bool(flip)
        self.degrees, self.translate = float(degrees), float(translate)
        self.scale = (float(scale[0]), float(scale[1]))
        self.crop_scale = None if crop_scale is None else (float(crop_scale[0]), float(crop_scale[1]))
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        self.padding_mode = padding_mode

    @property
    def p(self) -> float:
        """Per-sample probability of each transform."""
        return self._p

    def matrices(
        self, generators: torch.Generator | list[torch.Generator], n: int, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(theta [n, 2, 3], changed [n])``: per sample the map from output to input coordinates
        (``F.affine_grid``'s normalised convention) and whether any transform was drawn. ``generators`` is
        one generator per sample, or one generator that the samples draw from in turn."""
        gens = generators if isinstance(generators, (list, tuple)) else [generators] * n
        if len(gens) != n:
            raise ValueError(f"DiffAugment: {len(gens)} generators for {n} samples")
        u = torch.stack([torch.rand(self.DRAWS, generator=g, dtype=torch.float64) for g in gens])  # [n, 11]
        p, eye = self._p, torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
        flip_on = (u[:, 0] < p) & self.flip
        flip = eye.clone()
        flip[:, 0, 0] = torch.where(flip_on, -1.0, 1.0)
        # Affine, forward (input -> output) in pixel-aspect-corrected normalised coordinates.
        affine_on = (u[:, 1] < p) & (self.degrees != 0 or self.translate != 0 or self.scale != (1.0, 1.0))
        angle = torch.deg2rad((2 * u[:, 2] - 1) * self.degrees)
        zoom = self.scale[0] + u[:, 5] * (self.scale[1] - self.scale[0])
        aspect = torch.tensor([[width / 2, 0, 0], [0, height / 2, 0], [0, 0, 1]], dtype=torch.float64)
        rot = eye.clone()
        rot[:, 0, 0], rot[:, 0, 1] = torch.cos(angle) * zoom, -torch.sin(angle) * zoom
        rot[:, 1, 0], rot[:, 1, 1] = torch.sin(angle) * zoom, torch.cos(angle) * zoom
        rot = torch.linalg.inv(aspect) @ rot @ aspect
        rot[:, 0, 2] = 2 * self.translate * (2 * u[:, 3] - 1)
        rot[:, 1, 2] = 2 * self.translate * (2 * u[:, 4] - 1)
        affine_inv = torch.where(affine_on[:, None, None], torch.linalg.inv(rot), eye)
        # Resized crop: output coordinates -> coordinates inside the crop window.
        crop = eye.clone()
        crop_on = torch.zeros(n, dtype=torch.bool)
        if self.crop_scale is not None:
            crop_on = u[:, 6] < p
            area = self.crop_scale[0] + u[:, 7] * (self.crop_scale[1] - self.crop_scale[0])
            lo, hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
            ratio = torch.exp(lo + u[:, 8] * (hi - lo))
            w, h = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)  # fractions
            cx, cy = -1 + w + 2 * u[:, 9] * (1 - w), -1 + h + 2 * u[:, 10] * (1 - h)  # window centre
            crop[:, 0, 0], crop[:, 1, 1], crop[:, 0, 2], crop[:, 1, 2] = w, h, cx, cy
            crop = torch.where(crop_on[:, None, None], crop, eye)
        theta = flip @ affine_inv @ crop  # output -> crop window -> before the affine -> before the flip
        return theta[:, :2].float(), flip_on | affine_on | crop_on

    def forward(self, img: torch.Tensor, generators: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        """``img [N, C, H, W] -> [N, C, H, W]``; ``generators``: one CPU generator per sample (or one shared)."""
        if img.ndim != 4:
            raise ValueError(f"DiffAugment expects [N, C, H, W], got {tuple(img.shape)}")
        if self._p == 0:
            return img
        n, _, h, w = img.shape
        theta, changed = self.matrices(generators, n, h, w)
        if not bool(changed.any()):
            return img
        theta = theta.to(img.device, img.dtype)
        grid = F.affine_grid(theta, list(img.shape), align_corners=False)
        warped = F.grid_sample(img, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)
        return torch.where(changed.to(img.device).view(-1, 1, 1, 1), warped, img)

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, flip={self.flip}, degrees={self.degrees}, translate={self.translate}, "
            f"scale={self.scale}, crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}"
        )
