"""StyleGAN2 building blocks with equalized learning rate.

Weights are stored raw (unit-variance init) and scaled at run time, so checkpoints of both
reference implementations load without rescaling (see ``teacher/formats/layout.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from teacher.ops import ACTIVATIONS, bias_act, setup_filter, upfirdn2d

NOISE_MODES = ("const", "random", "none")


class FullyConnected(nn.Module):
    """Equalized-lr linear layer: ``act(x @ (W * lr_mul / sqrt(in)).T + b * lr_mul)``.

    Args:
        in_features: Input size.
        out_features: Output size.
        activation: Any ``teacher.ops.ACTIVATIONS`` name (lrelu includes the sqrt(2) gain).
        lr_mul: Learning-rate multiplier (0.01 in the mapping network).
        bias_init: Initial *effective* bias (1 for style affines).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        lr_mul: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, act={self.activation}"


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: bool = False,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution (no bias, no up-sampling filter).

    Args:
        x: Input ``[N, I, H, W]``.
        weight: Effective (already gain-scaled) weight ``[O, I, k, k]``.
        styles: Per-sample input-channel scales ``[N, I]``.
        demodulate: Normalise each output filter to unit norm (``1 / sqrt(sum w'^2 + 1e-8)``).
        up: Transposed convolution with stride 2 and no padding (output ``2H + k - 2``), the caller blurs.
        fused: One grouped convolution over the batch (per-sample weights) instead of modulating
            activations around a shared convolution. Both compute the same thing.
    Returns:
        ``[N, O, H', W']``.
    """
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    pad = 0 if up else kh // 2
    wmod = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    dcoefs = (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None  # [N, O]
    if not fused:
        x = x * styles[:, :, None, None]
        if up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, weight, padding=pad)
        return x if dcoefs is None else x * dcoefs[:, :, None, None]
    if dcoefs is not None:
        wmod = wmod * dcoefs[:, :, None, None, None]
    x = x.reshape(1, n * c_in, h, w)
    if up:
        wt = wmod.transpose(1, 2).reshape(n * c_in, c_out, kh, kw)  # [N*I, O, k, k]
        x = F.conv_transpose2d(x, wt, stride=2, groups=n)
    else:
        x = F.conv2d(x, wmod.reshape(n * c_out, c_in, kh, kw), padding=pad, groups=n)
    return x.reshape(n, c_out, x.shape[2], x.shape[3])


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + lrelu, optionally up-sampling x2.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        w_dim: Size of w.
        resolution: Output resolution (size of the noise map).
        up: Up-sample x2 (transposed conv then a [1,3,3,1] blur with pad 1, as in StyleGAN2).
        conv_clamp: Clamp the activations to +-conv_clamp, or None.
        resample_filter: 1-D FIR taps of the blur.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool = False,
        conv_clamp: float | None = None,
        resample_filter: tuple[float, ...] = (1, 3, 3, 1),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.up = up
        self.resolution = resolution
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", setup_filter(resample_filter, gain=4), persistent=False)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None, fused_modconv: bool = True
    ) -> torch.Tensor:
        """x [N, I, r', r'], w [N, w_dim], noise [N or 1, 1, r, r] or None (no noise).

        The caller resolves the noise (``make_noise``), so this layer never draws it itself.
        """
        styles = self.affine(w)  # [N, I]
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, up=self.up, fused=fused_modconv)
        if self.up:
            x = upfirdn2d(x, self.resample_filter, padding=1)  # [N, O, r, r]
        if noise is not None:
            x = x + noise * self.noise_strength
        return bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)

    def make_noise(
        self,
        batch: int,
        noise_mode: str,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | None:
        """Noise map ``[N, 1, r, r]`` for a mode, or None for ``"none"``."""
        r = self.resolution
        if noise_mode == "const":
            return self.noise_const.to(dtype=dtype)[None, None].expand(batch, 1, r, r)
        if noise_mode == "random":
            device = self.noise_const.device if device is None else device
            return torch.randn([batch, 1, r, r], device=device, generator=generator, dtype=self.noise_const.dtype).to(
                dtype=dtype
            )
        if noise_mode == "none":
            return None
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation, plus bias.

    Args:
        in_channels: Feature channels.
        out_channels: Image channels.
        w_dim: Size of w.
        conv_clamp: Clamp the output to +-conv_clamp, or None.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # [N, I]
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Equalized-lr conv with optional x2 down-sampling (blur, then stride 2), bias and activation.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        bias: Learn a bias.
        activation: Any ``teacher.ops.ACTIVATIONS`` name.
        down: Down-sample x2.
        gain: Extra output gain (sqrt(0.5) in residual blocks).
        conv_clamp: Clamp the output to +-conv_clamp*gain, or None.
        resample_filter: 1-D FIR taps of the anti-aliasing blur.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: bool = False,
        gain: float = 1.0,
        conv_clamp: float | None = None,
        resample_filter: tuple[float, ...] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.gain = gain
        self.conv_clamp = conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        k = w.shape[-1]
        if self.down:
            # Blur, then a stride-2 conv without padding: the StyleGAN2 anti-aliased down-sampling.
            p = self.resample_filter.shape[-1] - 2 + k - 1
            x = upfirdn2d(x, self.resample_filter, padding=[(p + 1) // 2, p // 2, (p + 1) // 2, p // 2])
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=k // 2)
        clamp = None if self.conv_clamp is None else self.conv_clamp * self.gain
        act_gain = self.gain * ACTIVATIONS[self.activation].default_gain
        return bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=clamp)
