"""Images between files, uint8 arrays and tensors: reading photos, PNG files, grids and strips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from mobilestylegan.errors import UsageError
from teacher.fs import atomic_write


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, H, W, 3]`` uint8 (values outside are clipped)."""
    x = (img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def from_uint8(rgb: np.ndarray, size: int | None = None) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[1, 3, H, W]`` float32 in [-1, 1]; with ``size``, a square image Lanczos-resized to
    ``size`` pixels first."""
    if size is not None and rgb.shape[1] != size:
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.LANCZOS))
    arr = np.asarray(rgb, dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 ``[H, W, 3]`` (EXIF orientation applied). A missing file, or one PIL cannot read,
    is a :class:`UsageError` naming it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UsageError(f"{path} is not an image PIL can read ({err})") from None
    return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def centre_crop(rgb: np.ndarray) -> np.ndarray:
    """The largest square in the middle of an ``[H, W, C]`` image (the image itself when it is square); an odd
    margin leaves its extra pixel on the right or bottom."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return rgb[top : top + s, left : left + s]


def make_grid(img: torch.Tensor, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile ``[N, 3, H, W]`` images into one ``[rows*H', cols*W', 3]`` uint8 array."""
    arr = to_uint8(img)
    n, h, w, c = arr.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = arr[i]
    return grid


def difference_strip(target: torch.Tensor, image: torch.Tensor) -> np.ndarray:
    """target | image | 4x |difference| of two ``[1, 3, H, W]`` images in [-1, 1], side by side as one uint8
    ``[H, 3W, 3]`` array."""
    diff = ((image - target).abs() * 4 - 1).clamp(-1, 1)
    return np.concatenate([to_uint8(t)[0] for t in (target, image.clamp(-1, 1), diff)], axis=1)


def save_png(arr: np.ndarray, path: str | Path) -> Path:
    """Write an ``[H, W, 3]`` uint8 array as PNG, atomically."""
    from PIL import Image

    return atomic_write(Path(path), lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))
