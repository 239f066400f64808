"""Bringing images to a feature network's input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, C, H, W] -> [N, C, size, size]``: area (box average) when shrinking, bilinear with half-pixel centres
    when enlarging, the input itself when it already has that size."""
    h, w = img.shape[-2:]
    if (h, w) == (size, size):
        return img
    if h >= size and w >= size:
        return F.interpolate(img, size=(size, size), mode="area")
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
