"""Does a student draw the teacher's person? FaceNet identity distances between pairs of generated faces.

Measured, never trained on (FaceNet's training data is non-commercial: the network is opt-in, installed by
``bash scripts/setup.sh --identity``). Both faces are upsampled to ``size`` pixels (a 128-px student face is too
small for the detector) and FaceNet sees the same box in both: the box of the reference face's landmarks when the
landmark models are installed (``--faces``) and find a face, else :data:`FFHQ_IDENTITY_BOX`, where FFHQ's
alignment puts the face.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mobilestylegan.edit.faces import (
    IDENTITY_INSTALL_HINT,
    find_face,
    identity_crop_box,
    identity_distance,
    identity_model_path,
    landmark_package_installed,
)
from mobilestylegan.errors import UsageError

# (left, top, right, bottom) as fractions of the side: the landmark box (identity_crop_box, 10% margin) of an
# FFHQ-aligned face, the median over faces of the ffhq-1024 generator.
FFHQ_IDENTITY_BOX = (0.118, 0.199, 0.873, 0.973)


def _uint8(images: torch.Tensor, size: int) -> np.ndarray:
    """``[N, 3, R, R]`` in [-1, 1] -> ``[N, size, size, 3]`` uint8 (bicubic upsampling)."""
    x = images.detach().float().cpu()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def identity_distances(reference: torch.Tensor, other: torch.Tensor, size: int = 256) -> dict[str, Any]:
    """FaceNet distances of ``other`` to ``reference`` face by face (``[N, 3, R, R]`` in [-1, 1] each).

    Returns ``{"measured": True, "median", "mean", "worst", "count", "size", "boxes": {"landmarks": k, "ffhq": m},
    "distances"}``, or ``{"measured": False, "reason"}`` when FaceNet is not installed."""
    if reference.shape != other.shape or reference.ndim != 4:
        raise ValueError(
            f"identity_distances needs two [N, 3, R, R] batches, got {tuple(reference.shape)} and {tuple(other.shape)}"
        )
    if identity_model_path() is None:
        return {"measured": False, "reason": f"FaceNet is not installed ({IDENTITY_INSTALL_HINT})"}
    refs, others = _uint8(reference, size), _uint8(other, size)
    fixed = np.array(FFHQ_IDENTITY_BOX) * size
    landmarks = landmark_package_installed()
    dists, counts = [], {"landmarks": 0, "ffhq": 0}
    for a, b in zip(refs, others):
        box = fixed
        if landmarks:
            try:
                box = identity_crop_box(find_face(a))
            except UsageError:
                box = fixed
        counts["landmarks" if box is not fixed else "ffhq"] += 1
        dists.append(identity_distance(a, b, box))
    d = np.array(dists)
    return {
        "measured": True,
        "median": float(np.median(d)),
        "mean": float(d.mean()),
        "worst": float(d.max()),
        "count": len(d),
        "size": size,
        "boxes": counts,
        "distances": [round(float(x), 4) for x in d],
    }
