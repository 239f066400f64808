"""Bringing images to a common size: a feature network's input size, a smaller level of a pyramid, or the smaller of
two generators' resolutions before comparing their images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from teacher.numerics import psnr_db


def area_downsample(img: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, C, H, W] -> [N, C, size, size]`` by box averaging (``F.interpolate``'s area mode); the input itself when
    it is no larger than ``size`` on either side. Box filters of power-of-two factors compose, so downsampling in
    steps equals (to float rounding) downsampling at once."""
    if img.shape[-2] <= size and img.shape[-1] <= size:
        return img
    return F.interpolate(img, size=(size, size), mode="area")


def resize_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, C, H, W] -> [N, C, size, size]``: area (box average) when shrinking, bilinear with half-pixel centres
    when enlarging, the input itself when it already has that size."""
    h, w = img.shape[-2:]
    if (h, w) == (size, size):
        return img
    if h >= size and w >= size:
        return area_downsample(img, size)
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)


def compare_at_smaller_resolution(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two batches of square images in [-1, 1] at the smaller of their two resolutions (the larger batch
    area-downsampled), and the per-image PSNR of ``a`` against ``b`` there (:func:`teacher.numerics.psnr_db`,
    ``[N]``): how two generators of different resolutions are compared."""
    size = min(a.shape[-1], b.shape[-1])
    a, b = area_downsample(a, size), area_downsample(b, size)
    return a, b, psnr_db(a, b)


__all__ = ["area_downsample", "compare_at_smaller_resolution", "resize_square"]
