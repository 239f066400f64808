"""Modulated convolutions of the student, with style-independent (trainable) demodulation.

Both convs modulate the *activations* (``x * scale * affine(w)``, per input channel) and demodulate
the *outputs* with coefficients computed from the weights and a learned vector ``style_inv`` that
stands in for the style. The coefficients therefore do not depend on w, and :meth:`fuse` folds them
into the weights once training is over (like batch-norm fusion): the fused conv has no
Pow/ReduceSum/Sqrt at run time and gives the same output.

State-dict names and shapes follow MobileStyleGAN.pytorch (``weight`` [O, I, k, k],
``weight_dw`` [I, 1, k, k], ``weight_permute`` [O, I, 1, 1], ``modulation`` a plain Linear with
bias initialised to 1, ``style_inv`` [1, 1, I, 1, 1]) so its checkpoints load by name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def style_affine(w_dim: int, channels: int) -> nn.Linear:
    """The affine that maps w to per-channel style scales, its bias initialised to 1 (styles start at 1)."""
    lin = nn.Linear(w_dim, channels)
    nn.init.ones_(lin.bias)
    return lin


class _StyleIndependentDemodulation(nn.Module):
    """What both convs share: output rows scaled by a w-independent demodulation that ``fuse`` folds
    into the parameter named by ``_folded`` (whose first axis is the output channel)."""

    _folded: str

    def _init_modulation(self, in_channels: int, w_dim: int, kernel_size: int, demodulate: bool) -> None:
        self.modulation = style_affine(w_dim, in_channels)
        self.demodulate = demodulate
        if demodulate:
            self.style_inv = nn.Parameter(torch.randn(1, 1, in_channels, 1, 1))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2

    def demodulation(self) -> torch.Tensor:  # [1, O, 1, 1]
        raise NotImplementedError

    def _demodulated(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` (output channel first) with the demodulation applied to its rows: the same as
        demodulating the conv's output, without another pass over the feature map."""
        return weight * self.demodulation().reshape(-1, 1, 1, 1) if self.demodulate else weight

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the demodulation into the weights and drop ``style_inv`` (same output, no run-time demod)."""
        if self.demodulate:
            getattr(self, self._folded).mul_(self.demodulation().reshape(-1, 1, 1, 1))
            del self.style_inv
            self.demodulate = False


class ModulatedConv2d(_StyleIndependentDemodulation):
    """Full k x k modulated conv (the 4x4 stage) or, with ``demodulate=False``, a prediction head.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        w_dim: Size of w.
        kernel_size: Square kernel size (padding keeps the size).
        demodulate: Apply the style-independent demodulation.
    """

    _folded = "weight"

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int, demodulate: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self._init_modulation(in_channels, w_dim, kernel_size, demodulate)

    def demodulation(self) -> torch.Tensor:
        """``[1, O, 1, 1]``: ``rsqrt(sum_{i,k} (scale * style_inv_i * W_oik)^2 + 1e-8)``."""
        d = (self.scale * self.style_inv * self.weight[None]).square().sum(dim=[2, 3, 4]) + 1e-8
        return d.rsqrt()[:, :, None, None]

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, inference: bool = False
    ) -> torch.Tensor:
        """x ``[N, I, H, W]``, w ``[N, w_dim]`` -> ``[N, O, H, W]`` (plus ``bias`` ``[O]``, if given).
        ``inference`` is accepted for a common signature: the computation is the same either way."""
        x = x * (self.scale * self.modulation(w))[:, :, None, None]
        return F.conv2d(x, self._demodulated(self.weight), bias, padding=self.padding)


class ModulatedDWConv2d(_StyleIndependentDemodulation):
    """Depthwise-separable modulated conv: modulate, depthwise k x k, pointwise 1x1, demodulate.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        w_dim: Size of w.
        kernel_size: Depthwise kernel size.
        demodulate: Apply the style-independent demodulation.
    """

    _folded = "weight_permute"

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 3, demodulate: bool = True
    ) -> None:
        super().__init__()
        self.weight_dw = nn.Parameter(torch.randn(in_channels, 1, kernel_size, kernel_size))
        self.weight_permute = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self._init_modulation(in_channels, w_dim, kernel_size, demodulate)

    def demodulation(self) -> torch.Tensor:
        """``[1, O, 1, 1]`` from the effective weight ``dw_ik * P_oi`` and ``style_inv``."""
        w = self.weight_dw.transpose(0, 1) * self.weight_permute  # [O, I, k, k]
        d = (self.scale * self.style_inv * w[None]).square().sum(dim=[2, 3, 4]) + 1e-8
        return d.rsqrt()[:, :, None, None]

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, inference: bool = False
    ) -> torch.Tensor:
        """x ``[N, I, H, W]``, w ``[N, w_dim]`` -> ``[N, O, H, W]`` (plus ``bias`` ``[O]``, if given).
        ``inference``: gradients are off; the modulation then goes into per-sample filters."""
        n, c, h, wd = x.shape
        s = self.scale * self.modulation(w)  # [N, I]
        if not inference:
            # Training (and tracing for export): modulate the activations, one shared depthwise conv
            # (faster than per-sample filters under autograd on a CPU).
            x = F.conv2d(x * s[:, :, None, None], self.weight_dw, padding=self.padding, groups=c)
        else:
            # Inference: modulating a depthwise conv's inputs == scaling its per-channel filters, so the
            # modulation goes into per-sample filters (one grouped conv) instead of a pass over x.
            k = self.weight_dw.shape[-1]
            weight = (self.weight_dw[None] * s[:, :, None, None, None]).reshape(n * c, 1, k, k)
            x = F.conv2d(x.reshape(1, n * c, h, wd), weight, padding=self.padding, groups=n * c).reshape(n, c, h, wd)
        return F.conv2d(x, self._demodulated(self.weight_permute), bias)
