"""The latent encoder: an aligned face in, the W+ latent a generator renders it from out, in one forward pass.

Architecture: a plain CNN trained from scratch (no pretrained backbone is assumed): a stride-2 stem, then one stage
per halving of the resolution down to 4x4, each a stride-2 3x3 convolution followed by a residual 3x3 convolution
(LeakyReLU 0.2, no normalisation layers: nothing batch-dependent, so training, export and a batch of one agree).
The 4x4 features are reduced by a 1x1 convolution, flattened and mapped to a hidden vector, from which two linear
heads predict, in *whitened* W coordinates:

- one base latent ``b`` (``w_dim`` values) shared by every W+ entry;
- an offset ``o_k`` per *live* entry (the entries the generator reads), of rank ``offset_rank``: it moves only the
  ``offset_rank`` leading principal directions of W (the directions of largest spread; e4e's idea of a W+ latent
  kept near W by small per-entry deltas).

Whitened coordinates: with the mean ``mu`` and covariance ``V diag(lambda) V^T`` of mapped latents,
``u = diag(lambda)^-1/2 V^T (w - mu)`` has zero mean and unit covariance, and ``w = mu + u @ colour`` with
``colour = diag(lambda)^1/2 V^T`` (rows ordered by decreasing ``lambda``). The encoder holds ``mu`` and ``colour``
as buffers, so its output is a plain W+ latent any runtime can feed to the generator; training compares whitened
latents (:meth:`LatentEncoder.whitened`), so every direction of W counts alike.

The dead entries (those the generator never reads) are filled from the nearest live entry below, the convention of
saved projection latents.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    """The shape of a :class:`LatentEncoder`.

    Args:
        num_ws: Entries of the generator's W+.
        w_dim: Width of w.
        live: The W+ indices the generator reads (predicted; the rest are filled).
        input_size: Side of the square input image (a power of two, 16..1024).
        channels: Channels of the stem and of each stage; ``log2(input_size) - 2`` values (the stem halves the
            input, each stage halves again down to 4x4). None: :func:`default_channels`.
        reduce: Channels of the 1x1 reduction of the 4x4 features before the flatten.
        hidden: Width of the hidden vector the heads read.
        offset_rank: Principal directions each live entry's offset may move (0: one w for every entry).
    """

    num_ws: int
    w_dim: int
    live: tuple[int, ...]
    input_size: int = 128
    channels: tuple[int, ...] | None = None
    reduce: int = 128
    hidden: int = 512
    offset_rank: int = 128

    def __post_init__(self) -> None:
        size = self.input_size
        if size < 16 or size > 1024 or size & (size - 1):
            raise ValueError(f"encoder input_size must be a power of two in 16..1024, got {size}")
        object.__setattr__(self, "live", tuple(int(i) for i in self.live))
        channels = default_channels(size) if self.channels is None else self.channels
        object.__setattr__(self, "channels", tuple(int(c) for c in channels))
        stages = int(math.log2(size)) - 2
        if len(self.channels) != stages:
            raise ValueError(
                f"encoder channels must list {stages} widths for a {size}-px input (stem + one per halving to 4x4), "
                f"got {len(self.channels)}: {list(self.channels)}"
            )
        if not self.live or sorted(set(self.live)) != list(self.live) or not 0 <= self.live[0] <= self.live[-1]:
            raise ValueError(f"encoder live entries must be sorted distinct indices, got {list(self.live)}")
        if self.live[-1] >= self.num_ws:
            raise ValueError(f"encoder live entry {self.live[-1]} is outside a W+ of {self.num_ws} entries")
        if not 0 <= self.offset_rank <= self.w_dim:
            raise ValueError(f"encoder offset_rank must be within 0..w_dim ({self.w_dim}), got {self.offset_rank}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["live"], d["channels"] = list(self.live), list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def default_channels(input_size: int) -> tuple[int, ...]:
    """The default widths for an input side: 32 at the stem, doubling per stage up to 512 (128 px: 32..512)."""
    return tuple(min(512, 32 * 2**i) for i in range(int(math.log2(input_size)) - 2))


class _Stage(nn.Module):
    """A stride-2 3x3 convolution, then a residual 3x3 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.down(x), 0.2)
        return x + F.leaky_relu(self.conv(x), 0.2)


def trunk(m: nn.Module, img: torch.Tensor) -> torch.Tensor:
    """The hidden vector ``[N, hidden]`` of images already at the input size, through ``m``'s ``stem``,
    ``stages``, ``reduce`` and ``fc`` (a :class:`LatentEncoder` or its export graph)."""
    x = F.leaky_relu(m.stem(img), 0.2)
    for stage in m.stages:
        x = stage(x)
    x = F.leaky_relu(m.reduce(x), 0.2)
    return F.leaky_relu(m.fc(x.flatten(1)), 0.2)


class LatentEncoder(nn.Module):
    """Face image ``[N, 3, S, S]`` in [-1, 1] -> W+ ``[N, num_ws, w_dim]`` (see the module docstring).

    Images of another size are area-resized to ``input_size`` first (in the graph).
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.stem = nn.Conv2d(3, ch[0], 3, stride=2, padding=1)
        self.stages = nn.ModuleList(_Stage(a, b) for a, b in zip(ch[:-1], ch[1:]))
        self.reduce = nn.Conv2d(ch[-1], cfg.reduce, 1)
        self.fc = nn.Linear(cfg.reduce * 16, cfg.hidden)
        self.base = nn.Linear(cfg.hidden, cfg.w_dim)
        n_live = len(cfg.live)
        self.offsets = nn.Linear(cfg.hidden, n_live * cfg.offset_rank) if cfg.offset_rank else None
        # Small starting offsets: training begins from "one w for every entry".
        if self.offsets is not None:
            nn.init.normal_(self.offsets.weight, std=1e-3)
            nn.init.zeros_(self.offsets.bias)
        self.register_buffer("w_mean", torch.zeros(cfg.w_dim))
        self.register_buffer("colour", torch.eye(cfg.w_dim))
        # Which live entry fills each W+ entry (dead entries take the nearest live entry below).
        fill, k = [], 0
        for i in range(cfg.num_ws):
            if k + 1 < n_live and cfg.live[k + 1] <= i:
                k += 1
            fill.append(k)
        self.register_buffer("fill", torch.tensor(fill, dtype=torch.long), persistent=False)

    @torch.no_grad()
    def set_statistics(self, ws: torch.Tensor) -> None:
        """Set the whitening from sample latents ``[n, w_dim]`` (mapped w, any dtype; float64 inside)."""
        w = ws.detach().double().reshape(-1, self.cfg.w_dim).cpu()
        mean = w.mean(0)
        cov = torch.cov((w - mean).T)
        lam, vec = torch.linalg.eigh(cov)
        lam, vec = lam.flip(0).clamp_min(lam.max() * 1e-6), vec.flip(1)  # decreasing spread; float32-safe floor
        self.w_mean.copy_(mean.float())
        self.colour.copy_((lam.sqrt()[:, None] * vec.T).float())

    def whiten(self, ws: torch.Tensor) -> torch.Tensor:
        """Latents ``[..., w_dim]`` -> whitened coordinates (float64 solve of ``u @ colour = w - mean``)."""
        colour = self.colour.double()
        u = torch.linalg.solve(colour.T, (ws.double() - self.w_mean.double()).reshape(-1, self.cfg.w_dim).T).T
        return u.reshape(ws.shape).to(ws.dtype)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """The hidden vector ``[N, hidden]`` of an image batch."""
        size = self.cfg.input_size
        if img.shape[-1] != size or img.shape[-2] != size:
            img = F.interpolate(img, size=(size, size), mode="area" if img.shape[-1] > size else "bilinear")
        return trunk(self, img)

    def whitened(self, img: torch.Tensor) -> torch.Tensor:
        """The live entries in whitened coordinates, ``[N, n_live, w_dim]``."""
        h = self.features(img)
        base = self.base(h)[:, None]
        n_live, r = len(self.cfg.live), self.cfg.offset_rank
        if self.offsets is None:
            return base.expand(-1, n_live, -1)
        off = self.offsets(h).reshape(-1, n_live, r)
        return base + F.pad(off, (0, self.cfg.w_dim - r))

    def live_ws(self, img: torch.Tensor) -> torch.Tensor:
        """The live entries as latents, ``[N, n_live, w_dim]``."""
        return self.whitened(img) @ self.colour + self.w_mean

    def forward(self, img: torch.Tensor, whitened: bool = False) -> torch.Tensor:
        """The full W+ ``[N, num_ws, w_dim]`` (dead entries filled from the nearest live entry below); with
        ``whitened``, :meth:`whitened` (what training compares; a data-parallel wrapper calls ``forward``)."""
        if whitened:
            return self.whitened(img)
        return self.live_ws(img).index_select(1, self.fill)


__all__ = ["EncoderConfig", "LatentEncoder", "default_channels", "trunk"]
