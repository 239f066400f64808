"""FFHQ's alignment (:mod:`export.runtime_faces`, where the recipe is written out) on a photo's largest face, found
by the face models in OpenVINO (:func:`mobilestylegan.edit.faces.find_face`)."""

from __future__ import annotations

import numpy as np

from export.runtime_faces import Aligned, align_image, ffhq_quad, to_aligned
from mobilestylegan.edit.faces import find_face


def align(image: np.ndarray, size: int = 1024, **kwargs: int | bool) -> Aligned:
    """Find the largest face in an RGB uint8 photo and return FFHQ's crop of it (``kwargs``:
    :func:`~export.runtime_faces.align_image`'s ``transform_size`` and ``padding``)."""
    return align_image(image, find_face(image), size=size, **kwargs)


__all__ = ["Aligned", "align", "align_image", "ffhq_quad", "to_aligned"]
