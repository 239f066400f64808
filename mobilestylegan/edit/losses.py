"""The projection's image losses: MS-SSIM (Wang, Simoncelli and Bovik 2003) and the noise-map regulariser.

MS-SSIM is written here because kornia's ``MS_SSIMLoss`` is a different quantity (Zhao et al.'s mixture of an
L1 term and SSIM at several Gaussian widths on one resolution); this is the standard one: an 11-tap Gaussian window
(sigma 1.5), contrast-structure terms at 5 scales (2x box downsampling between them), luminance at the coarsest,
weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), images in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_C1, _C2 = 0.01**2, 0.03**2


def _window(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    g = (g / g.sum()).to(dtype=dtype, device=device)
    return g.view(1, 1, 1, 11).expand(channels, 1, 1, 11)


def _blur(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    x = F.conv2d(x, win, groups=c)
    return F.conv2d(x, win.transpose(2, 3), groups=c)


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image ``[N]`` of ``[N, C, H, W]`` images in [0, 1] (H, W >= 176: five scales of an 11-px
    window)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ms_ssim needs two [N, C, H, W] images of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    if min(a.shape[-2:]) < 11 * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        raise ValueError(f"ms_ssim needs images of at least 176 px, got {tuple(a.shape[-2:])}")
    win = _window(a.shape[1], a.dtype, a.device)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=a.dtype, device=a.device)
    values = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        mu_a, mu_b = _blur(a, win), _blur(b, win)
        var_a = _blur(a * a, win) - mu_a**2
        var_b = _blur(b * b, win) - mu_b**2
        cov = _blur(a * b, win) - mu_a * mu_b
        cs = (2 * cov + _C2) / (var_a + var_b + _C2)
        if scale == len(MS_SSIM_WEIGHTS) - 1:
            lum = (2 * mu_a * mu_b + _C1) / (mu_a**2 + mu_b**2 + _C1)
            values.append((lum * cs).mean(dim=(1, 2, 3)))
        else:
            values.append(cs.mean(dim=(1, 2, 3)))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    v = torch.stack(values, dim=1).clamp_min(1e-6)  # negative cs at a coarse scale would make the power undefined
    return torch.prod(v**weights, dim=1)


def noise_regularizer(maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and their 2x-downsampled pyramids (down to 8 px) of the squared lag-1 autocorrelations: zero
    for white noise, large when a map carries image structure (the StyleGAN2 projector's regulariser)."""
    total = maps[0].new_zeros(())
    for m in maps:
        x = m
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total
