"""The FID Inception-v3 network (``pt_inception-2015-12-05``) in plain torch, and its input conventions.

This is the TensorFlow FID graph (``inception-2015-12-05``) as pytorch-fid ported it: torchvision's
Inception-v3 layout (``Conv2d_1a_3x3`` .. ``Mixed_7c``, ``fc`` with 1008 classes, no aux head) with
the FID-specific block variants: every branch average pool excludes the zero padding
(``count_include_pad=False``) and the last block (``Mixed_7c``) max-pools its pool branch. The state
dict keys are pytorch-fid's, so ``pt_inception-2015-12-05-6726825d.pth`` loads key for key. The
output is the 2048-d global average pool ("pool3") that FID, KID and clean-fid use.

Weights are never downloaded: get the file once with
``curl -L -o ~/.cache/mobilestylegan/weights/pt_inception-2015-12-05-6726825d.pth`` :data:`INCEPTION_URL`
and point ``--inception`` (or ``$MOBILESTYLEGAN_INCEPTION``) at it if it lives elsewhere.

Input conventions (:func:`preprocess`), images ``[N, 3, H, W]`` in [-1, 1]:

- ``clean`` (clean-fid): quantise to uint8, resize each channel as a float32 PIL image with
  bicubic filtering to 299 x 299, clip to [0, 255], divide by 255 (no second quantisation).
- ``legacy`` (pytorch-fid): map to [0, 1] (clamped; images read from files are u / 255) and
  resize with ``F.interpolate(mode="bilinear", align_corners=False)``, no quantisation.

The network maps [0, 1] to [-1, 1] itself (``2x - 1``, the FID graph's convention).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mobilestylegan.nets.weights import default_weights_path, locate, read_published_weights
from teacher.formats.common import check_state_dict

__all__ = [
    "FIDInceptionV3",
    "INCEPTION_ENV",
    "INCEPTION_FILENAME",
    "INCEPTION_SHA256_PREFIX",
    "INCEPTION_URL",
    "InceptionWeightsNotFoundError",
    "RESIZE_MODES",
    "default_inception_path",
    "load_inception",
    "preprocess",
]

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILENAME}"
# torch.hub's convention (what pytorch-fid relies on): the name carries the first 8 hex digits of the
# file's sha256. That prefix is what we verify. A third-party note reports the full digest below; we
# have not been able to check it here (no download), so it is documented, not enforced.
INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_SHA256_REPORTED = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_ENV = "MOBILESTYLEGAN_INCEPTION"
FEATURE_DIM = 2048
RESIZE_MODES = ("clean", "legacy")
_BN_EPS = 0.001  # TensorFlow's batch-norm epsilon, kept by the port


class InceptionWeightsNotFoundError(FileNotFoundError):
    """The FID Inception weights file is not where the options say."""


# --------------------------------------------------------------------------------------------- layers


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool ignores the zero padding (the FID variant of every pool branch).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, 1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 384 + 96 + c_in channels."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    """17x17 block with factorised 7x7 convs -> 768 channels."""

    def __init__(self, c_in: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 320 + 192 + c_in channels."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches -> 2048 channels.

    Args:
        c_in: Input channels.
        pool: ``"avg"`` (``Mixed_7b``, padding excluded) or ``"max"`` (``Mixed_7c``: the FID graph
            max-pools here, 3x3 stride 1 padding 1).
    """

    def __init__(self, c_in: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(c_in, 320, 1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


# -------------------------------------------------------------------------------------------- network


class FIDInceptionV3(nn.Module):
    """Images ``[N, 3, H, W]`` in [0, 1] (already resized, see :func:`preprocess`) -> pool3 ``[N, 2048]``.

    Any H, W >= 75 runs (the global pool adapts); FID's convention is 299. Build it with
    :func:`load_inception`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, 1008)  # the 1008-way logits: in the file, never run here
        self.random_weights = False

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3 or min(img.shape[-2:]) < 75:
            raise ValueError(f"FIDInceptionV3 expects images [N, 3, H, W] with H, W >= 75, got {tuple(img.shape)}")
        x = 2 * img - 1  # [0, 1] -> [-1, 1]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # [N, 64, 147, 147] at 299
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # [N, 192, 71, 71]
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)  # ... [N, 2048, 8, 8]
        return x.mean(dim=(2, 3))  # [N, 2048]


def default_inception_path() -> Path:
    """Where the FID Inception weights are looked for: ``$MOBILESTYLEGAN_INCEPTION``, else
    ``$MOBILESTYLEGAN_CACHE/weights/<file>``, else ``~/.cache/mobilestylegan/weights/<file>``."""
    return default_weights_path(INCEPTION_ENV, INCEPTION_FILENAME)


def how_to_get(path: Path) -> str:
    return (
        f"download the FID Inception-v3 weights from {INCEPTION_URL} (sha256 starts with "
        f"{INCEPTION_SHA256_PREFIX}) to {path}, or pass --inception /path/to/{INCEPTION_FILENAME} "
        f"(or set ${INCEPTION_ENV})"
    )


def _random_init(model: FIDInceptionV3, seed: int) -> None:
    """He-normal convs, identity batch norms: activations keep their scale through the ReLUs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.01)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * FEATURE_DIM**-0.5)
                m.bias.zero_()


def load_inception(
    path: str | os.PathLike | None, allow_random_weights: bool = False, seed: int = 0
) -> tuple[FIDInceptionV3, str]:
    """Build :class:`FIDInceptionV3` in eval mode with gradients off.

    Args:
        path: ``pt_inception-2015-12-05-6726825d.pth``; its sha256 must start with ``6726825d``, then
            every key and shape must match (``num_batches_tracked`` may be present or not). None: the
            default location :func:`default_inception_path`, or seeded random weights when
            ``allow_random_weights`` and nothing is there.
        allow_random_weights: Tests only. With no file found, return random weights (``.random_weights``
            set); numbers computed with them are not comparable with anything.
        seed: Seed of the random weights.

    Returns:
        ``(model, weights_id)``: the file's full sha256, or ``"random-seed{seed}"``.

    Raises:
        InceptionWeightsNotFoundError: No file (given, or at the default location without
            ``allow_random_weights``); the message names the path, URL and checksum prefix.
        CheckpointError: Wrong checksum, or missing / unexpected / mis-shaped keys.
    """
    model = FIDInceptionV3()
    path = locate(path, default_inception_path(), allow_random_weights)
    if path is None:
        _random_init(model, seed)
        model.random_weights = True
        return model.eval().requires_grad_(False), f"random-seed{seed}"
    if not path.is_file():
        raise InceptionWeightsNotFoundError(f"Inception weights not found at {path}: {how_to_get(path)}")
    state, digest = read_published_weights(
        path, f"pytorch-fid's {INCEPTION_FILENAME}", INCEPTION_SHA256_PREFIX, INCEPTION_URL
    )
    own = model.state_dict()
    # Batch-norm step counters carry no information; old files lack them.
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected = {k: v.shape for k, v in own.items() if not k.endswith("num_batches_tracked")}
    check_state_dict(f"FID Inception-v3 in {path}", state, expected)
    state |= {k: v for k, v in own.items() if k.endswith("num_batches_tracked")}
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False), digest


# ---------------------------------------------------------------------------------------- preprocess


def _pil_bicubic(arr: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[3, size, size]`` float32 in [0, 255]: each channel resized as a
    float ("F" mode) PIL image with bicubic filtering, then clipped (clean-fid's resize)."""
    from PIL import Image

    out = np.empty((3, size, size), dtype=np.float32)
    for c in range(3):
        channel = Image.fromarray(arr[:, :, c].astype(np.float32), mode="F")
        out[c] = np.asarray(channel.resize((size, size), resample=Image.Resampling.BICUBIC))
    return np.clip(out, 0, 255)


def preprocess(img: torch.Tensor, mode: str, size: int = 299) -> torch.Tensor:
    """Images ``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, size, size]`` in [0, 1] by convention ``mode``.

    ``clean``: uint8 quantisation (``round((x + 1) * 127.5)`` after clamping, exact for images read
    from 8-bit files), per-channel float PIL bicubic resize, clip to [0, 255], / 255. ``legacy``:
    ``(x + 1) / 2`` clamped to [0, 1], bilinear ``F.interpolate`` (``align_corners=False``).
    The result is on ``img``'s device.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {tuple(img.shape)}")
    if mode == "legacy":
        x = ((img.float() + 1) / 2).clamp(0, 1)
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    u8 = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([_pil_bicubic(a, size) for a in u8]) / 255.0
    return torch.from_numpy(out.astype(np.float32)).to(img.device)
