"""FFHQ's alignment: the oriented square crop that puts a face where the FFHQ training images have theirs.

From the eye centres and mouth corners (:meth:`~mobilestylegan.edit.faces.Face.ffhq_points`)::

    eye_avg = (eye_left + eye_right) / 2            eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) / 2      eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - rot90(eye_to_mouth);  x = x / |x| * max(2 |eye_to_eye|, 1.8 |eye_to_mouth|);  y = rot90(x)
    centre = eye_avg + 0.1 eye_to_mouth;    quad = centre + (-x - y, -x + y, x + y, x - y)

then the photo is shrunk by an integer factor when the quad is more than twice the output, cropped to the quad
plus a 10% border, padded where the quad leaves the photo (reflected, blurred towards the edge and faded to the
median colour), resampled onto a ``transform_size`` square and resized (Lanczos) to ``size``. FFHQ used
``transform_size=4096`` and ``size=1024``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mobilestylegan.edit.faces import Face, find_face


def _rot90(v: np.ndarray) -> np.ndarray:
    """(x, y) -> (-y, x): FFHQ's ``flipud(v) * [-1, 1]``."""
    return np.array([-v[1], v[0]])


def ffhq_quad(points: dict[str, np.ndarray]) -> np.ndarray:
    """The crop's corners ``[4, 2]`` (top-left, bottom-left, bottom-right, top-right) in the photo's pixels."""
    eye_l, eye_r = points["eye_left"], points["eye_right"]
    eye_avg, eye_to_eye = (eye_l + eye_r) / 2, eye_r - eye_l
    mouth_avg = (points["mouth_left"] + points["mouth_right"]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def to_aligned(points: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """Photo pixels -> the aligned image's pixels (``[..., 2]``): the quad's top-left corner goes to (0, 0)."""
    ex, ey = quad[3] - quad[0], quad[1] - quad[0]
    d = np.asarray(points, np.float64) - quad[0]
    return np.stack([d @ ex / (ex @ ex), d @ ey / (ey @ ey)], -1) * size


@dataclass
class Aligned:
    image: np.ndarray  # [size, size, 3] uint8
    face: Face
    quad: np.ndarray  # [4, 2] in the photo's pixels

    def where(self, points: np.ndarray) -> np.ndarray:
        """Photo pixels -> aligned pixels."""
        return to_aligned(points, self.quad, self.image.shape[0])


def _pad_reflect_blur(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom), then blend the padding towards a blur of itself and the median."""
    from scipy.ndimage import gaussian_filter

    left, top, right, bottom = pad
    out = np.pad(img.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = out.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = np.minimum(xx.astype(np.float32) / max(left, 1e-9), (w - 1 - xx).astype(np.float32) / max(right, 1e-9))
        fy = np.minimum(yy.astype(np.float32) / max(top, 1e-9), (h - 1 - yy).astype(np.float32) / max(bottom, 1e-9))
    mask = np.maximum(1 - fx, 1 - fy)[..., None]
    blur = qsize * 0.02
    out += (gaussian_filter(out, [blur, blur, 0]) - out) * np.clip(mask * 3 + 1, 0, 1)
    out += (np.median(out, axis=(0, 1)) - out) * np.clip(mask, 0, 1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def align_image(
    image: np.ndarray, face: Face, size: int = 1024, transform_size: int = 4096, padding: bool = True
) -> Aligned:
    """FFHQ's crop of an RGB uint8 photo around ``face``."""
    from PIL import Image

    quad0 = ffhq_quad(face.ffhq_points())
    quad = quad0.copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    img = Image.fromarray(image)
    shrink = int(math.floor(qsize / size * 0.5))
    if shrink > 1:
        new = (int(round(img.width / shrink)), int(round(img.height / shrink)))
        img = img.resize(new, Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
    border = max(int(round(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.width),
        min(hi[1] + border, img.height),
    )
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        quad -= crop[:2]
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = (
        max(-lo[0] + border, 0),
        max(-lo[1] + border, 0),
        max(hi[0] - img.width + border, 0),
        max(hi[1] - img.height + border, 0),
    )
    if padding and max(pad) > border - 4:
        pad = tuple(max(p, int(round(qsize * 0.3))) for p in pad)
        img = Image.fromarray(_pad_reflect_blur(np.asarray(img), pad, qsize))
        quad += pad[:2]
    # PIL's QUAD data: the source points of the output's top-left, bottom-left, bottom-right, top-right corners.
    img = img.transform((transform_size, transform_size), Image.QUAD, tuple(quad.ravel()), Image.BILINEAR)
    if size != transform_size:
        img = img.resize((size, size), Image.LANCZOS)
    return Aligned(image=np.asarray(img), face=face, quad=quad0)


def align(image: np.ndarray, size: int = 1024, **kwargs: int | bool) -> Aligned:
    """Find the largest face in an RGB uint8 photo and return FFHQ's crop of it (``kwargs``: :func:`align_image`'s
    ``transform_size`` and ``padding``)."""
    return align_image(image, find_face(image), size=size, **kwargs)
