"""Augmentations that make generated faces look like aligned photos to the encoder (the latent target is unchanged).

Each sample draws from its own generator, so a run is the same however many processes share a batch and wherever it
resumed. Per sample, in this order, each with probability ``p`` unless said otherwise:

- background (probability ``background``, 0 by default): everything outside a soft ellipse around the face and
  hair is replaced by a drawn backdrop, so that the encoder reads the face and not the scene: a photo's wall, studio
  backdrop or clothes are never a generated face's. The ellipse is in the aligned frame (FFHQ's crop puts the face
  where the ellipse is), its size and centre drawn per sample, its edge feathered; the backdrop is a smooth colour
  field (2..6 random colours per side, mostly grey, bicubically upsampled, as a blurred room or a studio's gradient)
  plus, half the time, finer grey texture (fabric, foliage, print). The latent target is unchanged (the scene is not
  the face's). Measured on the ffhq-1024 encoder it lowered PSNR on generated faces and on photos alike, hence off;
- misalignment (always, small): a similarity transform about the centre, rotation within ``rotate`` degrees, scale
  within ``1 +- scale``, shift within ``shift`` of the side: FFHQ's crop of a photo is never exact (landmark error);
  the border is reflected, as the aligner pads;
- colour: exposure (gain), gamma, contrast, saturation and white balance (per-channel gains);
- blur: a Gaussian of sigma up to ``blur`` input pixels (focus, motion, a resized small photo);
- noise: Gaussian, of standard deviation up to ``noise`` (on [0, 1]) (sensor noise);
- JPEG: a round trip at a quality drawn in ``[jpeg_min, 95]``.

Written here rather than taken from an augmentation library: each sample's randomness must come from its own
counter-based generator, which the libraries' batch-level parameter samplers do not offer.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


@dataclass(frozen=True)
class PhotoAugment:
    """The augmentation's strengths (see the module docstring); ``p = 0`` leaves only the misalignment, and
    ``rotate = scale = shift = 0`` with ``p = 0`` is the identity."""

    p: float = 0.5
    rotate: float = 3.0
    scale: float = 0.04
    shift: float = 0.03
    blur: float = 1.5
    noise: float = 0.03
    jpeg_min: int = 30
    background: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1 or not 0 <= self.background <= 1:
            raise ValueError(f"augment.p and augment.background must be within [0, 1], got {self.p}, {self.background}")
        if min(self.rotate, self.scale, self.shift, self.blur, self.noise) < 0 or not 1 <= self.jpeg_min <= 95:
            raise ValueError("augment strengths must be >= 0 and jpeg_min within 1..95")

    def __call__(self, img: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """Augment ``img`` ``[N, 3, S, S]`` (float, [-1, 1]); sample ``i`` draws from ``generators[i]``."""
        return torch.cat([self.one(img[i : i + 1], g) for i, g in enumerate(generators)])

    def one(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One image ``[1, 3, S, S]`` augmented with draws from ``g`` (the draws are the same whichever apply)."""
        u = torch.rand(16, generator=g).tolist()  # a fixed number of draws: the stream's use never depends on p
        if self.background:  # its draws come after the others' first draws (background 0 leaves the stream as it was)
            x = _backdrop(x, g, self.background)
        x = self._misalign(x, u[0:4])
        x01 = (x + 1) / 2
        if u[4] < self.p:
            x01 = self._colour(x01, u[5:11])
        if u[11] < self.p and self.blur > 0:
            x01 = _gaussian_blur(x01, self.blur * u[12])
        if u[13] < self.p and self.noise > 0:
            x01 = x01 + torch.randn(x01.shape, generator=g) * self.noise * u[14]
        x01 = x01.clamp(0, 1)
        if u[15] < self.p:
            x01 = _jpeg(x01, int(round(self.jpeg_min + (95 - self.jpeg_min) * float(torch.rand(1, generator=g)))))
        return x01 * 2 - 1

    def _misalign(self, x: torch.Tensor, u: list[float]) -> torch.Tensor:
        if not (self.rotate or self.scale or self.shift):
            return x
        angle = math.radians(self.rotate * (2 * u[0] - 1))
        s = 1 + self.scale * (2 * u[1] - 1)
        tx, ty = (2 * self.shift * (2 * v - 1) for v in (u[2], u[3]))  # affine_grid's units: the side is 2
        cos, sin = math.cos(angle) / s, math.sin(angle) / s
        theta = torch.tensor([[[cos, -sin, tx], [sin, cos, ty]]], dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    @staticmethod
    def _colour(x: torch.Tensor, u: list[float]) -> torch.Tensor:
        gain = 2 ** (0.5 * (2 * u[0] - 1))  # exposure: +-0.5 stop
        gamma = 2 ** (0.3 * (2 * u[1] - 1))
        contrast = 2 ** (0.3 * (2 * u[2] - 1))
        saturation = 2 ** (0.5 * (2 * u[3] - 1))
        balance = torch.tensor([1 + 0.08 * (2 * u[4] - 1), 1.0, 1 + 0.08 * (2 * u[5] - 1)])[None, :, None, None]
        x = (x * gain * balance).clamp(0, 1) ** gamma
        grey = (x * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
        x = grey + (x - grey) * saturation
        return (x - x.mean()) * contrast + x.mean()


def _backdrop(x: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """``x`` ``[1, 3, S, S]`` in [-1, 1] outside a drawn soft ellipse replaced by a drawn backdrop, with probability
    ``p`` (the draws are the same either way)."""
    u = torch.rand(9, generator=g).tolist()
    colours = torch.randn(1, 3, 8, 8, generator=g)
    texture = torch.randn(1, 1, 32, 32, generator=g)
    if u[0] >= p:
        return x
    s = x.shape[-1]
    # The ellipse keeps the face, hair and chin of an FFHQ-aligned crop: half-widths 0.36..0.46 and half-heights
    # 0.44..0.54 of the side, centred at x 0.5 +- 0.03, y 0.45 +- 0.03, feathered over ~6% of the side.
    ax, ay = 0.36 + 0.10 * u[1], 0.44 + 0.10 * u[2]
    cx, cy = 0.5 + 0.06 * (u[3] - 0.5), 0.45 + 0.06 * (u[4] - 0.5)
    t = (torch.arange(s, dtype=x.dtype) + 0.5) / s
    r = (((t[None, :] - cx) / ax) ** 2 + ((t[:, None] - cy) / ay) ** 2).sqrt()
    keep = ((1 - r) * min(ax, ay) / 0.06 + 0.5).clamp(0, 1)
    k = 2 + int(u[5] * 5)  # 2..6 colours per side
    c = colours[..., :k, :k]
    c = c.mean(1, keepdim=True) + 0.3 * (c - c.mean(1, keepdim=True))  # mostly grey, some colour
    field = F.interpolate(c, size=(s, s), mode="bicubic", align_corners=False)
    backdrop = torch.tanh(0.6 * field + 1.6 * (u[6] - 0.5))  # mostly mid-tones, sometimes light or dark
    if u[7] < 0.5:
        n = 16 if u[8] < 0.5 else 32  # cells per side of the texture
        backdrop = backdrop + 0.3 * u[8] * F.interpolate(
            texture[..., :n, :n], size=(s, s), mode="bilinear", align_corners=False
        )
    return x * keep + backdrop.clamp(-1, 1) * (1 - keep)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``x`` ``[1, C, H, W]`` (reflected border)."""
    if sigma <= 0.05:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _jpeg(x01: torch.Tensor, quality: int) -> torch.Tensor:
    """A JPEG round trip of ``x01`` ``[1, 3, H, W]`` in [0, 1] (Pillow, 4:2:0 chroma, as cameras save)."""
    arr = (x01[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(back).permute(2, 0, 1)[None].to(x01.dtype)


__all__ = ["PhotoAugment"]
