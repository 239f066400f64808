"""Haar wavelet transforms in the student's channel layout.

A wavelet tensor with 4C channels at h x w holds, for C image/feature channels, the low-pass band
LL in channels ``0..C-1`` and the three high bands of channel c in ``C + 3c + b`` (b = 0, 1, 2;
band-fastest, as ``[N, C, 3, h, w]``). This is the layout of MobileStyleGAN and of
pytorch-wavelets' ``DWTForward/DWTInverse(wave="db1", mode="zero")`` (``yh[0][:, :, b]`` = band b).

With a, b the row/column parity of an output pixel:
``y[2i+a, 2j+b] = (LL + (-1)^a B0 + (-1)^b B1 + (-1)^(a+b) B2) / 2``.
The 4x4 matrix is symmetric and orthonormal, so the forward transform uses the same matrix.
Both directions are a per-channel 4 -> 4 band mix plus a pixel (un)shuffle: cheap, exact, and
export-friendly (DepthToSpace / SpaceToDepth in ONNX and OpenVINO).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows: output phase (a, b) in (0,0), (0,1), (1,0), (1,1); columns: LL, B0, B1, B2.
HAAR = 0.5 * torch.tensor(
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, 1.0]]
)


def _bands(x: torch.Tensor) -> torch.Tensor:
    """``[N, 4C, h, w]`` (student layout) -> ``[N, C, 4, h, w]`` (LL, B0, B1, B2)."""
    n, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f"a wavelet tensor needs a multiple of 4 channels, got {c4}")
    c = c4 // 4
    return torch.cat([x[:, :c, None], x[:, c:].reshape(n, c, 3, h, w)], dim=2)


def _unbands(b: torch.Tensor) -> torch.Tensor:
    """``[N, C, 4, h, w]`` -> ``[N, 4C, h, w]`` (student layout)."""
    n, c, _, h, w = b.shape
    return torch.cat([b[:, :, 0], b[:, :, 1:].reshape(n, 3 * c, h, w)], dim=1)


def idwt(x: torch.Tensor, inference: bool = False) -> torch.Tensor:
    """Inverse Haar transform: ``[N, 4C, h, w]`` -> ``[N, C, 2h, 2w]``.

    By default: the 4x4 band mix as one matrix product, then a pixel shuffle (differentiable, traceable;
    FlopCounterMode counts the mix: 4 MACs per output pixel). ``inference=True`` (gradients must be off): on
    strided views, with s = LL + B2, d = LL - B2, t = B0 + B1, u = B0 - B1, the four phases
    (s + t, d + u, d - u, s - t) / 2 are written straight into place (faster on a CPU).
    """
    if not inference:
        b = _bands(x)
        n, c, _, h, w = b.shape
        phases = torch.einsum("pk,nckhw->ncphw", HAAR.to(x), b)  # [N, C, 4, h, w]
        return F.pixel_shuffle(phases.reshape(n, c * 4, h, w), 2)
    n, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f"a wavelet tensor needs a multiple of 4 channels, got {c4}")
    c = c4 // 4
    ll = x[:, :c]
    b0, b1, b2 = x[:, c:].reshape(n, c, 3, h, w).unbind(2)
    s, d, t, u = (ll + b2) * 0.5, (ll - b2) * 0.5, (b0 + b1) * 0.5, (b0 - b1) * 0.5
    out = x.new_empty(n, c, h, 2, w, 2)
    torch.add(s, t, out=out[:, :, :, 0, :, 0])
    torch.add(d, u, out=out[:, :, :, 0, :, 1])
    torch.sub(d, u, out=out[:, :, :, 1, :, 0])
    torch.sub(s, t, out=out[:, :, :, 1, :, 1])
    return out.reshape(n, c, 2 * h, 2 * w)


def haar_synthesis_rows(channels: int) -> torch.Tensor:
    """``[4C, 4C]`` matrix taking a student-layout wavelet vector to phase order ``c*4 + (2a + b)``,
    i.e. ``idwt(x) == pixel_shuffle(conv1x1(x, haar_synthesis_rows(C)), 2)``. Used to fold the final
    inverse transform into the last head's weights."""
    m = torch.zeros(4 * channels, 4 * channels)
    for c in range(channels):
        src = [c] + [channels + 3 * c + b for b in range(3)]  # LL, B0, B1, B2 of channel c
        for p in range(4):
            m[4 * c + p, src] = HAAR[p]
    return m


def dwt(x: torch.Tensor) -> torch.Tensor:
    """Forward Haar transform: ``[N, C, H, W]`` (H, W even) -> ``[N, 4C, H/2, W/2]``."""
    n, c, hh, ww = x.shape
    if hh % 2 or ww % 2:
        raise ValueError(f"dwt needs an even height and width, got {hh}x{ww}")
    phases = F.pixel_unshuffle(x, 2).reshape(n, c, 4, hh // 2, ww // 2)
    return _unbands(torch.einsum("pk,ncphw->nckhw", HAAR.to(x), phases))
