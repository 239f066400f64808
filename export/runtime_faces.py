"""Faces in photos and FFHQ's alignment with numpy and Pillow only: what ``python -m export.runtime --align`` and
``mobilestylegan-project --align`` share (the toolkit's :mod:`mobilestylegan.edit.faces` and
:mod:`mobilestylegan.edit.align` run these functions with the models in OpenVINO; the runtime with an export's
converted copies). Like :mod:`export.runtime`, this module imports neither torch nor the toolkit.

The networks are Google's MediaPipe face detector (two variants: ``full`` for faces of any size, ``short`` for
close-ups; boxes and six keypoints) and face mesh (468 3-D points on a 192x192 crop), Apache-2.0. They are given as
a :class:`FaceModels`: ``run(name, x)`` returns the model's outputs in their TFLite order (detectors: raw boxes and
keypoints ``[1, N, 16]``, score logits ``[1, N, 1]``; ``landmark``: points ``[1, 1404]`` (or any shape holding
468 x 3 values) and the face-flag logit).

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``, its centre is at
``i + 0.5``; points are ``(x, y)``.

FFHQ's alignment, from the eye centres and mouth corners (:meth:`Face.ffhq_points`)::

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
from typing import Protocol

import numpy as np


class NoFaceError(ValueError):
    """No usable face in the photo (the message says which step failed)."""


class FaceModels(Protocol):
    """The three networks: ``run("full" | "short" | "landmark", x NHWC float32) -> outputs in TFLite order``."""

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]: ...


# The MediaPipe model each name stands for (its TFLite file; the export's ONNX copy is named after it).
MODEL_FILES = {
    "full": "face_detection_full_range.tflite",
    "short": "face_detection_short_range.tflite",
    "landmark": "face_landmark.tflite",
}
# The detectors' SSD anchor layouts: input side, and (stride of a feature map, anchors per cell) per map.
DETECTORS = {"short": (128, ((8, 2), (16, 6))), "full": (192, ((4, 1),))}
MIN_SCORE = 0.5
NMS_IOU = 0.3
LANDMARK_SIZE = 192
ROI_SCALE = 1.5  # side of the landmark crop / long side of the face box
FACE_FLAG = 0.5
# (scale, dx, dy) of the final crops whose landmarks are averaged; shifts in units of the crop's side.
JITTER = tuple((ds, dx, dy) for ds in (0.92, 1.0, 1.08) for dx, dy in ((0, 0), (0.03, 0.03), (-0.03, -0.03)))

# Face mesh indices: the eye contours (the eye on the image's left first, for an unmirrored photo) and the mouth
# corners; the eye centres are the contour means, as FFHQ's recipe takes the means of dlib's six eyelid points.
EYE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_RIGHT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MOUTH_LEFT, MOUTH_RIGHT = 61, 291


@dataclass
class Detection:
    box: np.ndarray  # [4] x0, y0, x1, y1 in pixels
    keypoints: np.ndarray  # [6, 2]: eye (image left), eye (image right), nose tip, mouth, two tragions
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


@dataclass
class Face:
    detection: Detection
    landmarks: np.ndarray  # [468, 3] x, y in pixels; z in the same scale, relative
    faces_found: int

    def ffhq_points(self) -> dict[str, np.ndarray]:
        """The four points FFHQ's alignment uses."""
        lm = self.landmarks[:, :2].astype(np.float64)
        return {
            "eye_left": lm[list(EYE_LEFT)].mean(0),
            "eye_right": lm[list(EYE_RIGHT)].mean(0),
            "mouth_left": lm[MOUTH_LEFT],
            "mouth_right": lm[MOUTH_RIGHT],
        }


def as_rgb_array(image: object) -> np.ndarray:
    """An RGB uint8 array ``[H, W, 3]`` from such an array or a PIL image."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3]; got {image.dtype} {image.shape}")
    return image


def _anchors(side: int, layout: tuple[tuple[int, int], ...]) -> np.ndarray:
    out = []
    for stride, per_cell in layout:
        n = side // stride
        c = (np.arange(n, dtype=np.float32) + 0.5) / n
        yy, xx = np.meshgrid(c, c, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], 1)
        out.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(out)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def _weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray) -> list[Detection]:
    """MediaPipe's weighted non-maximum suppression: each cluster (IoU > 0.3 with its best box) becomes the
    score-weighted mean of its boxes and keypoints, with the best score."""
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    alive = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        member = alive & (_iou(boxes[i], boxes) > NMS_IOU)
        member[i] = True
        w = scores[member][:, None]
        out.append(
            Detection(
                box=(boxes[member] * w).sum(0) / w.sum(),
                keypoints=(kps[member] * w[:, :, None]).sum(0) / w.sum(),
                score=float(scores[i]),
            )
        )
        alive &= ~member
    return out


def detector_input(img: np.ndarray, model: str = "full") -> tuple[np.ndarray, int, int, int]:
    """A photo letterboxed onto a square (centred), resized (bilinear) to the detector's side, in [-1, 1]:
    ``(x [1, side, side, 3], square side, x offset, y offset)``."""
    from PIL import Image

    side = DETECTORS[model][0]
    h, w = img.shape[:2]
    s = max(h, w)
    canvas = np.zeros((s, s, 3), np.uint8)
    ox, oy = (s - w) // 2, (s - h) // 2
    canvas[oy : oy + h, ox : ox + w] = img
    x = np.asarray(Image.fromarray(canvas).resize((side, side), Image.BILINEAR), np.float32) / 127.5 - 1
    return x[None], s, ox, oy


def detect(models: FaceModels, image: object, model: str = "full") -> list[Detection]:
    """Faces in an RGB uint8 image, largest first. ``model``: ``full`` (faces of any size) or ``short`` (close-ups)."""
    img = as_rgb_array(image)
    side, layout = DETECTORS[model]
    x, s, ox, oy = detector_input(img, model)
    raw, logits = models.run(model, x)[:2]
    raw, logits = raw.reshape(-1, 16).astype(np.float64), logits.reshape(-1).astype(np.float64)
    scores = 1 / (1 + np.exp(-np.clip(logits, -80, 80)))
    keep = scores > MIN_SCORE
    if not keep.any():
        return []
    anchors = _anchors(side, layout)[keep].astype(np.float64)
    raw, scores = raw[keep] / side, scores[keep]
    centre = raw[:, 0:2] + anchors
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    kps = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]
    # back to the photo's pixels
    boxes = boxes * s - np.array([ox, oy, ox, oy])
    kps = kps * s - np.array([ox, oy])
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    dets = _weighted_nms(boxes[valid], kps[valid], scores[valid])
    return sorted(dets, key=lambda d: -d.area)


def crop_square(
    img: np.ndarray, centre: np.ndarray, side: float, angle: float, out: int
) -> tuple[np.ndarray, np.ndarray]:
    """A square ``out x out`` crop of side ``side`` pixels centred at ``centre``, rotated by ``angle`` (radians,
    the crop's x axis at that angle in the photo); and the 2x3 matrix mapping crop coordinates to the photo's."""
    from PIL import Image

    c, s = math.cos(angle), math.sin(angle)
    k = side / out
    # photo = centre + R @ ((crop - out/2) * k)
    m = np.array([[c * k, -s * k, centre[0] - (c - s) * side / 2], [s * k, c * k, centre[1] - (s + c) * side / 2]])
    src = Image.fromarray(img)
    shrink = int(k // 2)
    if shrink >= 2:  # pre-shrink so the bilinear sampling does not alias (crop -> shrunk photo: m / shrink)
        src = src.reduce(shrink)
    crop = src.transform((out, out), Image.AFFINE, tuple((m / max(shrink, 1)).ravel()), Image.BILINEAR)
    return np.asarray(crop), m


def _landmarks_in(
    models: FaceModels, img: np.ndarray, centre: np.ndarray, side: float, angle: float
) -> np.ndarray | None:
    crop, m = crop_square(img, centre, side, angle, LANDMARK_SIZE)
    raw, flag = models.run("landmark", (crop.astype(np.float32) / 255)[None])[:2]
    if 1 / (1 + math.exp(-float(np.clip(flag.ravel()[-1], -80, 80)))) <= FACE_FLAG:
        return None
    pts = raw.reshape(-1, 3).astype(np.float64)
    xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
    z = pts[:, 2:] * (side / LANDMARK_SIZE)
    return np.concatenate([xy, z], 1)


def _eye_angle(left: np.ndarray, right: np.ndarray) -> float:
    d = right - left
    return math.atan2(d[1], d[0])


def _roi_from(lm: np.ndarray) -> tuple[np.ndarray, float, float]:
    """MediaPipe's crop around landmarks: their box's centre, 1.5x its long side, eye corners 33 and 263 level."""
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    return (lo + hi) / 2, ROI_SCALE * float((hi - lo).max()), _eye_angle(lm[33, :2], lm[263, :2])


def find_face(models: FaceModels, image: object, refine: int = 1) -> Face:
    """The largest face in an RGB uint8 photo, with its 468 landmarks.

    The landmark crop is MediaPipe's: a square 1.5x the detector's box, turned so the eyes are level; ``refine``
    more passes re-crop around the previous landmarks (their box, eye corners 33 and 263 levelled); the result
    is the mean over nine crops around the last estimate (three scales, three positions).
    Raises :class:`NoFaceError` when no face is found."""
    img = as_rgb_array(image)
    dets = detect(models, img, "full") or detect(models, img, "short")
    if not dets:
        raise NoFaceError("no face found in the photo")
    d = dets[0]
    centre = (d.box[:2] + d.box[2:]) / 2
    side = ROI_SCALE * float(max(d.box[2] - d.box[0], d.box[3] - d.box[1]))
    lm = _landmarks_in(models, img, centre, side, _eye_angle(d.keypoints[0], d.keypoints[1]))
    if lm is None:
        raise NoFaceError(
            "a face was detected but its landmarks could not be placed (too small, blurred or turned away?)"
        )
    for _ in range(refine):
        nxt = _landmarks_in(models, img, *_roi_from(lm))
        if nxt is None:
            break
        lm = nxt
    # The mean over a few crops of slightly different scale and position: one crop's points jitter by a fraction
    # of a crop pixel, which an upscaled small face multiplies.
    centre, side, angle = _roi_from(lm)
    runs = []
    for ds, dx, dy in JITTER:
        one = _landmarks_in(models, img, centre + side * np.array([dx, dy]), side * ds, angle)
        if one is not None:
            runs.append(one)
    if runs:
        lm = np.mean(runs, 0)
    return Face(detection=d, landmarks=lm, faces_found=len(dets))


# ----------------------------------------------------------------------------------------------- alignment


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


def gaussian_blur(img: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``[H, W, C]`` float32 blurred along H and W by a Gaussian of ``sigma`` pixels cut at ``truncate`` sigmas,
    borders mirrored through the edge pixels (scipy.ndimage's ``reflect``): one separable pass per axis, by FFT in
    float64 (the padding blur reaches ~80 px)."""
    r = int(truncate * sigma + 0.5)
    if r < 1:
        return img.astype(np.float32)
    t = np.arange(-r, r + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    out = img.astype(np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        widths = [(0, 0)] * out.ndim
        widths[axis] = (r, r)
        padded = np.pad(out, widths, mode="symmetric")
        size = padded.shape[axis] + 2 * r
        spectrum = np.fft.rfft(padded, size, axis=axis)
        k = np.fft.rfft(kernel, size)
        shape = [1] * out.ndim
        shape[axis] = -1
        full = np.fft.irfft(spectrum * k.reshape(shape), size, axis=axis)
        out = np.take(full, np.arange(2 * r, 2 * r + n), axis=axis)
    return out.astype(np.float32)


def _pad_reflect_blur(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom), then blend the padding towards a blur of itself and the median."""
    left, top, right, bottom = pad
    out = np.pad(img.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = out.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = np.minimum(xx.astype(np.float32) / max(left, 1e-9), (w - 1 - xx).astype(np.float32) / max(right, 1e-9))
        fy = np.minimum(yy.astype(np.float32) / max(top, 1e-9), (h - 1 - yy).astype(np.float32) / max(bottom, 1e-9))
    mask = np.maximum(1 - fx, 1 - fy)[..., None]
    out += (gaussian_blur(out, qsize * 0.02) - out) * np.clip(mask * 3 + 1, 0, 1)
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


def align(models: FaceModels, image: np.ndarray, size: int = 1024, **kwargs: int | bool) -> Aligned:
    """Find the largest face in an RGB uint8 photo and return FFHQ's crop of it (``kwargs``: :func:`align_image`'s
    ``transform_size`` and ``padding``)."""
    return align_image(image, find_face(models, image), size=size, **kwargs)


__all__ = [
    "EYE_LEFT",
    "EYE_RIGHT",
    "MOUTH_LEFT",
    "MOUTH_RIGHT",
    "MODEL_FILES",
    "Aligned",
    "Detection",
    "Face",
    "FaceModels",
    "NoFaceError",
    "align",
    "align_image",
    "crop_square",
    "detect",
    "detector_input",
    "ffhq_quad",
    "find_face",
    "gaussian_blur",
    "to_aligned",
]
