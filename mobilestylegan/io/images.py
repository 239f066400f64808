"""Turning image tensors into PNG files and grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from teacher.fs import atomic_write


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, H, W, 3]`` uint8 (values outside are clipped)."""
    x = (img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_grid(img: torch.Tensor, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile ``[N, 3, H, W]`` images into one ``[rows*H', cols*W', 3]`` uint8 array."""
    arr = to_uint8(img)
    n, h, w, c = arr.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = arr[i]
    return grid


def save_png(arr: np.ndarray, path: str | Path) -> Path:
    """Write an ``[H, W, 3]`` uint8 array as PNG, atomically."""
    from PIL import Image

    return atomic_write(Path(path), lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))
