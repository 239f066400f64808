"""The perceptual distance: LPIPS v0.1 (VGG) with LPIPS's linear heads, or unit-normalised VGG16 features without
them, and where the heads' weight file is found.

LPIPS's heads come from the ``lpips`` pip package (``pip install --no-deps lpips==0.1.4``, only its weight file is
read, the package is never imported) or from the file ``$MOBILESTYLEGAN_LPIPS`` names.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from mobilestylegan.nets.resize import resize_square
from mobilestylegan.nets.vgg import FULL_FEATURE_CHANNELS, VGG16Full, load_vgg16_full
from teacher.formats.common import CheckpointError, check_state_dict

LPIPS_ENV = "MOBILESTYLEGAN_LPIPS"


def find_lpips_weights(path: str | os.PathLike | None = None) -> Path | None:
    """LPIPS's VGG linear heads: ``path``, else ``$MOBILESTYLEGAN_LPIPS``, else
    ``<lpips package>/weights/v0.1/vgg.pth`` of an installed ``lpips`` (located, not imported: it
    imports torchvision). None when none of them exists. A given ``path`` must exist."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(
                f"LPIPS weights not found at {p} (from `pip install --no-deps lpips==0.1.4`: "
                f"lpips/weights/v0.1/vgg.pth)"
            )
        return p
    env = os.environ.get(LPIPS_ENV)
    if env:
        return find_lpips_weights(env)
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.submodule_search_locations:
        cand = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "vgg.pth"
        if cand.is_file():
            return cand
    return None


def load_lpips_heads(path: str | os.PathLike) -> list[torch.Tensor]:
    """The five non-negative 1x1 weights ``lin{0..4}.model.1.weight`` ``[1, C, 1, 1]`` as ``[C]`` vectors."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected LPIPS's state dict")
    expected = {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(FULL_FEATURE_CHANNELS)}
    check_state_dict(f"LPIPS VGG heads in {path}", state, expected)
    return [state[f"lin{i}.model.1.weight"].flatten().float() for i in range(len(FULL_FEATURE_CHANNELS))]


class PerceptualDistance(nn.Module):
    """Per-pair distance of images ``[N, 3, H, W]`` in [-1, 1], both resized to ``size`` first::

        d(a, b) = sum_l mean_{h,w} sum_c w_lc (u_l(a) - u_l(b))_c^2,   u = f / (|f|_channels + 1e-10)

    over VGG16's relu1_2 .. relu5_3. With LPIPS's heads ``w`` this is LPIPS v0.1 (VGG): the
    ImageNet normalisation inside :class:`VGG16Full` equals LPIPS's input scaling layer. Without
    heads every ``w_lc = 1`` ("vgg-unit": unit-normalised feature squared distance summed over layers).

    Args:
        vgg: A :class:`VGG16Full` (the classifier is not needed).
        heads: LPIPS's five channel weight vectors, or None.
        size: Side both images are resized to (area when shrinking, bilinear when enlarging).
    """

    def __init__(self, vgg: VGG16Full, heads: list[torch.Tensor] | None = None, size: int = 256) -> None:
        super().__init__()
        self.vgg = vgg.eval().requires_grad_(False)
        self.size = size
        self.kind = "lpips-vgg-v0.1" if heads is not None else "vgg-unit"
        for i, c in enumerate(FULL_FEATURE_CHANNELS):
            w = heads[i] if heads is not None else torch.ones(c)
            self.register_buffer(f"w{i}", w.view(1, c, 1, 1).clone(), persistent=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The distance of each pair ``(a[i], b[i])``, ``[N]``."""
        if a.shape != b.shape:
            raise ValueError(f"PerceptualDistance: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
        n = a.shape[0]
        feats = self.vgg.relu_features(resize_square(torch.cat([a, b]), self.size))
        total = a.new_zeros(n)
        for i, f in enumerate(feats):
            u = f / (f.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + (getattr(self, f"w{i}") * (u[:n] - u[n:]).square()).sum(1).mean((1, 2))
        return total


def load_lpips(size: int) -> PerceptualDistance:
    """LPIPS-VGG at ``size`` pixels from the weight files found at their default locations (VGG16's and the heads').

    Raises:
        FileNotFoundError: The heads or VGG16 (:class:`~mobilestylegan.nets.vgg.VGGWeightsNotFoundError`) are
            missing; the message says how to get them.
    """
    heads_path = find_lpips_weights()
    if heads_path is None:
        raise FileNotFoundError(
            f"LPIPS heads not found (pip install --no-deps lpips==0.1.4, or set ${LPIPS_ENV} "
            "to its weights/v0.1/vgg.pth)"
        )
    vgg, _ = load_vgg16_full(None, classifier=False)
    return PerceptualDistance(vgg, load_lpips_heads(heads_path), size)


__all__ = ["LPIPS_ENV", "PerceptualDistance", "find_lpips_weights", "load_lpips", "load_lpips_heads"]
