"""One student block: IDWT up-sampling, two depthwise-separable styled convs, a wavelet head."""

from __future__ import annotations

import torch
from torch import nn

from mobilestylegan.student.layers import IDWTUpsample, StyledConv, WaveletHead


class MobileSynthesisBlock(nn.Module):
    """``[N, C_in, r/2, r/2] -> [N, C_out, r, r]`` plus the head's wavelets ``[N, 12, r, r]``.

    Uses 3 ws: ws[0] for the up-sampler and conv1, ws[1] for conv2, ws[2] for the head.

    Args:
        in_channels: Channels entering (a multiple of 4; the IDWT leaves ``in_channels // 4``).
        out_channels: Channels of this block.
        w_dim: Size of w.
        resolution: Output resolution r.
        kernel_size: Depthwise kernel size.
    """

    num_ws = 3

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = IDWTUpsample(in_channels, w_dim)
        self.conv1 = StyledConv(in_channels // 4, out_channels, w_dim, resolution, kernel_size=kernel_size)
        self.conv2 = StyledConv(out_channels, out_channels, w_dim, resolution, kernel_size=kernel_size)
        self.to_img = WaveletHead(out_channels, w_dim)

    def forward(
        self,
        x: torch.Tensor,
        ws: torch.Tensor,
        noise: list[torch.Tensor | None],
        head: bool = True,
        inference: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ws ``[N, 3, w_dim]``, noise: two maps (or None). ``head=False`` skips the head. ``inference``: gradients
        are off and ``x`` may be overwritten (the in-place kernels)."""
        x = self.up(x, ws[:, 0], inference=inference)
        x = self.conv1(x, ws[:, 0], noise[0], inference=inference)
        x = self.conv2(x, ws[:, 1], noise[1], inference=inference)
        return x, (self.to_img(x, ws[:, 2]) if head else None)
