"""Student layers around the modulated convs: styled conv (noise, bias, lrelu), IDWT up-sampler, head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobilestylegan.student.modconv import ModulatedConv2d, ModulatedDWConv2d, style_affine
from mobilestylegan.student.wavelets import haar_synthesis_rows, idwt

WAVELET_CHANNELS = 12  # Haar bands of RGB: 3 LL + 3 colours x 3 high bands


class NoiseInjection(nn.Module):
    """``x + weight * noise`` with one learned scalar (``weight`` [1])."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return x if noise is None else x + self.weight * noise


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias -> LeakyReLU(0.2) (no gain, as in MobileStyleGAN).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        w_dim: Size of w.
        resolution: Spatial size (of the stored noise map).
        depthwise: Depthwise-separable conv (blocks) instead of a full conv (the 4x4 stage).
        kernel_size: Kernel size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        depthwise: bool = True,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        conv = ModulatedDWConv2d if depthwise else ModulatedConv2d
        self.conv = conv(in_channels, out_channels, w_dim, kernel_size)
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.resolution = resolution
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None, inference: bool = False
    ) -> torch.Tensor:
        """x ``[N, I, H, W]``, w ``[N, w_dim]``, noise ``[N or 1, 1, H, W]`` or None -> ``[N, O, H, W]``.
        ``inference``: gradients are off; the noise and the activation then run in place."""
        x = self.conv(x, w, self.bias.reshape(-1), inference=inference)  # the bias rides in the conv: one pass fewer
        if not inference:
            return F.leaky_relu(self.noise(x, noise), 0.2)
        # The same arithmetic in place, without allocating more feature maps.
        if noise is not None:
            x.add_(noise * self.noise.weight)
        return F.leaky_relu_(x, 0.2)


class IDWTUpsample(nn.Module):
    """Scale channels by ``affine(w)``, read them as Haar bands, inverse-transform: C -> C/4 at 2x.

    Args:
        in_channels: Input channels (a multiple of 4).
        w_dim: Size of w.
    """

    def __init__(self, in_channels: int, w_dim: int) -> None:
        super().__init__()
        if in_channels % 4:
            raise ValueError(f"IDWT up-sampling needs a multiple of 4 channels, got {in_channels}")
        self.modulation = style_affine(w_dim, in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, inference: bool = False) -> torch.Tensor:
        """``[N, C, h, w] -> [N, C/4, 2h, 2w]``. ``inference``: gradients are off and ``x`` is a temporary the
        caller no longer needs: it is scaled in place."""
        u = self.modulation(w)[:, :, None, None]
        return idwt(x.mul_(u) if inference else x * u, inference=inference)


class WaveletHead(nn.Module):
    """Prediction head: 1x1 modulated conv (no demodulation) to 12 wavelet channels, plus bias.

    After :meth:`fold_inverse_transform` the head outputs the image's four pixel phases per colour
    instead (channel ``c*4 + 2a + b``), so ``pixel_shuffle(head, 2)`` is the image: the inverse Haar
    transform is folded into the 1x1 weights (inference only).

    Args:
        in_channels: Feature channels.
        w_dim: Size of w.
    """

    def __init__(self, in_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, WAVELET_CHANNELS, w_dim, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, WAVELET_CHANNELS, 1, 1))
        self.phase_order = False

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # [N, C, h, w] -> [N, 12, h, w]
        return self.conv(x, w) + self.bias

    def to_image(self, out: torch.Tensor, inference: bool = False) -> torch.Tensor:
        """This head's output as an RGB image at twice its resolution (``inference``: see :func:`idwt`)."""
        return F.pixel_shuffle(out, 2) if self.phase_order else idwt(out, inference=inference)

    @torch.no_grad()
    def fold_inverse_transform(self) -> None:
        if not self.phase_order:
            m = haar_synthesis_rows(WAVELET_CHANNELS // 4).to(self.bias)
            self.conv.weight.copy_(torch.einsum("oi,ickl->ockl", m, self.conv.weight))
            self.bias.copy_((m @ self.bias.reshape(-1)).reshape(self.bias.shape))
            self.phase_order = True
