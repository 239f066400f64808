"""The StyleGAN2 discriminator (residual architecture with minibatch-stddev)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from teacher.config import DiscriminatorConfig
from teacher.layers import Conv2dLayer, FullyConnected


class DiscriminatorBlock(nn.Module):
    """Residual block ``b{r}``: [fromrgb], conv0 3x3, conv1 3x3 down, plus a 1x1 down skip; sum * sqrt(0.5).

    Args:
        in_channels: Channels at resolution r (``tmp`` channels).
        out_channels: Channels after down-sampling to r/2.
        from_rgb: This block reads the image (highest resolution only).
        img_channels: Image channels.
        conv_clamp: Activation clamp, or None.
        resample_filter: 1-D FIR taps of the down-sampling blur.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        from_rgb: bool,
        img_channels: int,
        conv_clamp: float | None,
        resample_filter: tuple[float, ...],
    ) -> None:
        super().__init__()
        kw = dict(conv_clamp=conv_clamp, resample_filter=resample_filter)
        if from_rgb:
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation="lrelu", **kw)
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu", **kw)
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=True, gain=math.sqrt(0.5), **kw)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, down=True, gain=math.sqrt(0.5), **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, r, r]`` (the image at the highest resolution) -> ``[N, out_channels, r/2, r/2]``."""
        if hasattr(self, "fromrgb"):
            x = self.fromrgb(x)
        y = self.skip(x)
        return y + self.conv1(self.conv0(x))


def minibatch_stddev(x: torch.Tensor, group_size: int | None, num_channels: int) -> torch.Tensor:
    """Append ``num_channels`` maps of the mean stddev within groups of ``group_size`` samples
    (None: one group holding the whole batch)."""
    n, c, h, w = x.shape
    g = n if group_size is None else min(group_size, n)
    if n % g:
        raise ValueError(f"batch size {n} must be divisible by the minibatch-stddev group size {g}")
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)  # [G, M, F, c, H, W]; sample i is in group i % M
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [M, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Image ``[N, C, R, R]`` -> logit ``[N, 1]`` (no conditioning).

    Args:
        cfg: The architecture.
    """

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_resolution = cfg.img_resolution
        ch = cfg.channels
        kw = dict(conv_clamp=cfg.conv_clamp, resample_filter=cfg.resample_filter)
        res = cfg.img_resolution
        while res > 4:
            block = DiscriminatorBlock(ch[res], ch[res // 2], res == cfg.img_resolution, cfg.img_channels, **kw)
            setattr(self, f"b{res}", block)
            res //= 2
        self.b4 = DiscriminatorEpilogue(ch[4], cfg.mbstd_group_size, cfg.mbstd_num_channels, cfg.conv_clamp)

    def set_mbstd_group_size(self, group_size: int | None) -> None:
        """Form the minibatch-stddev groups of ``group_size`` samples from now on (None: one group holding the whole
        batch). No weight depends on it; :attr:`cfg` records the new size."""
        if group_size is not None and group_size < 1:
            raise ValueError(f"the minibatch-stddev group size must be >= 1 or None, got {group_size}")
        self.cfg = dataclasses.replace(self.cfg, mbstd_group_size=group_size)
        self.b4.mbstd_group_size = group_size

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, 1]`` of images ``[N, C, R, R]``."""
        expected = (self.cfg.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(
                f"discriminator expects images [N, {', '.join(map(str, expected))}], got {tuple(img.shape)}"
            )
        x = img
        res = self.img_resolution
        while res > 4:
            x = getattr(self, f"b{res}")(x)
            res //= 2
        return self.b4(x)


class DiscriminatorEpilogue(nn.Module):
    """``b4``: minibatch-stddev, 3x3 conv, FC, output FC."""

    def __init__(
        self, channels: int, mbstd_group_size: int | None, mbstd_num_channels: int, conv_clamp: float | None
    ) -> None:
        super().__init__()
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        self.conv = Conv2dLayer(channels + mbstd_num_channels, channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnected(channels * 16, channels, activation="lrelu")
        self.out = FullyConnected(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, 4, 4]`` -> logits ``[N, 1]``."""
        if self.mbstd_num_channels > 0:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))
