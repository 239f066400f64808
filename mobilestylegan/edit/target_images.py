"""The images a projection aims at: an image file read, FFHQ-aligned or centre-cropped to a square, and brought to
the generator's resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mobilestylegan.errors import UsageError
from mobilestylegan.io.images import centre_crop, from_uint8, read_rgb


@dataclass
class TargetImage:
    """An image to project.

    Attributes:
        path: The image file.
        image: ``[1, 3, R, R]`` in [-1, 1] at the generator's resolution R.
        notes: What was done to the image that the user should hear about (a crop, several faces).
        aligned: With alignment, FFHQ's 1024 crop of the photo (uint8 ``[1024, 1024, 3]``): the image projected.
    """

    path: Path
    image: torch.Tensor
    notes: list[str] = field(default_factory=list)
    aligned: np.ndarray | None = None


def load_target(path: Path, resolution: int, align: bool = False) -> TargetImage:
    """An image file as a :class:`TargetImage` at ``resolution``. With ``align`` the largest face is cropped the way
    FFHQ was (:func:`~mobilestylegan.edit.align.align`); without it a non-square image is centre-cropped. Either
    square is then Lanczos-resized. A missing or unreadable file, or no face with ``align``, is a
    :class:`UsageError`."""
    rgb = read_rgb(path)
    if align:
        aligned, notes = _ffhq_crop(path, rgb)
        return TargetImage(path, from_uint8(aligned, resolution), notes, aligned)
    square = centre_crop(rgb)
    notes = [] if square.shape == rgb.shape else [f"centre-cropped {path.name} to {len(square)}x{len(square)}"]
    return TargetImage(path, from_uint8(square, resolution), notes)


def _ffhq_crop(path: Path, rgb: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """FFHQ's 1024 crop of the largest face in the photo, and a note when the photo shows several faces."""
    from mobilestylegan.edit.align import align as ffhq_align

    try:
        a = ffhq_align(rgb, size=1024)
    except UsageError as err:
        raise UsageError(f"{path}: {err}") from None
    notes = [f"{a.face.faces_found} faces in {path.name}; aligned the largest"] if a.face.faces_found > 1 else []
    return a.image, notes


__all__ = ["TargetImage", "load_target"]
