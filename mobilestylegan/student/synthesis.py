"""The MobileStyleGAN synthesis network: ws -> Haar wavelets at every scale -> image."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mobilestylegan.student.block import MobileSynthesisBlock
from mobilestylegan.student.layers import StyledConv, WaveletHead
from teacher.layers import NOISE_MODES


def default_student_channels(img_resolution: int) -> list[int]:
    """The teacher's table ``min(32768 / r, 512)`` for feature resolutions 4..img_resolution/2."""
    n = _log2(img_resolution) - 2
    return [min(32768 // (4 * 2**i), 512) for i in range(n)]


def _log2(res: int) -> int:
    if not isinstance(res, int) or res < 16 or res & (res - 1):
        raise ValueError(f"student img_resolution must be a power of two >= 16, got {res!r}")
    return int(math.log2(res))


@dataclass(frozen=True)
class StudentConfig:
    """Architecture of a MobileStyleGAN student.

    Args:
        img_resolution: Output resolution (features stop at half of it; one final IDWT doubles it).
        w_dim: Size of w (the teacher's).
        channels: Feature channels at resolutions 4, 8, ..., img_resolution/2. Entries that feed an
            IDWT up-sampler (all but the last) must be multiples of 4.
        kernel_size: Depthwise kernel size.
        aux_heads: Build the auxiliary wavelet heads (multi-scale training loss). The inference forward
            never runs them; :meth:`MobileSynthesisNetwork.fuse` removes them.
        trainable_demod: Make the demodulation vectors ``style_inv`` trainable parameters (the
            original code keeps them as fixed random buffers; either way they are style-independent).
    """

    img_resolution: int = 1024
    w_dim: int = 512
    channels: tuple[int, ...] = field(default_factory=lambda: tuple(default_student_channels(1024)))
    kernel_size: int = 3
    aux_heads: bool = True
    trainable_demod: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        n = _log2(self.img_resolution) - 2
        if len(self.channels) != n:
            raise ValueError(
                f"StudentConfig.channels needs {n} entries (resolutions 4..{self.img_resolution // 2}) "
                f"for img_resolution {self.img_resolution}, got {len(self.channels)}"
            )
        bad = [c for c in self.channels[:-1] if c <= 0 or c % 4]
        if bad or self.channels[-1] <= 0:
            raise ValueError(
                f"StudentConfig.channels must be positive and (except the last) multiples of 4, "
                f"got {list(self.channels)}"
            )

    @property
    def num_ws(self) -> int:
        """W+ length: conv1, head1, then 3 per block (23 at 1024; the last index is unused, as in the original)."""
        return 2 + 3 * (len(self.channels) - 1)

    @property
    def feature_resolutions(self) -> list[int]:
        return [4 * 2**i for i in range(len(self.channels))]

    @classmethod
    def for_resolution(cls, img_resolution: int, width: float = 1.0, **kw: Any) -> StudentConfig:
        """Default channel table at any resolution, optionally scaled by ``width`` (rounded to multiples of 4)."""
        ch = [max(4, int(round(c * width / 4)) * 4) for c in default_student_channels(img_resolution)]
        return cls(img_resolution=img_resolution, channels=tuple(ch), **kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudentConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown StudentConfig field(s) {unknown}; known: {sorted(names)}")
        return cls(**d)


class MobileSynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` (or ``[N, w_dim]``) -> image ``[N, 3, R, R]``.

    Module names follow MobileStyleGAN.pytorch: ``input.input``, ``conv1``, ``to_img1``,
    ``layers.{i}`` (``up``, ``conv1``, ``conv2``, ``to_img``).

    Args:
        cfg: The architecture.
    """

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.w_dim, self.img_resolution, self.num_ws = cfg.w_dim, cfg.img_resolution, cfg.num_ws
        ch = cfg.channels
        self.input = nn.Module()
        self.input.input = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.conv1 = StyledConv(ch[0], ch[0], cfg.w_dim, 4, depthwise=False, kernel_size=cfg.kernel_size)
        self.to_img1 = WaveletHead(ch[0], cfg.w_dim) if cfg.aux_heads else None
        self.layers = nn.ModuleList(
            MobileSynthesisBlock(c_in, c_out, cfg.w_dim, 8 * 2**i, cfg.kernel_size)
            for i, (c_in, c_out) in enumerate(zip(ch[:-1], ch[1:]))
        )
        if not cfg.aux_heads:
            for block in self.layers[:-1]:
                block.to_img = None
        self.fused = False
        if not cfg.trainable_demod:
            self._demod_vectors_to_buffers()

    def _demod_vectors_to_buffers(self) -> None:
        for conv in self.styled_convs():
            value = conv.conv.style_inv.data
            del conv.conv.style_inv
            conv.conv.register_buffer("style_inv", value)

    def styled_convs(self) -> list[StyledConv]:
        """The noise-taking convs in noise order (4x4 conv, then conv1/conv2 of each block)."""
        return [self.conv1] + [c for block in self.layers for c in (block.conv1, block.conv2)]

    @property
    def noise_shapes(self) -> list[tuple[int, int, int]]:
        return [(1, c.resolution, c.resolution) for c in self.styled_convs()]

    def make_noise(
        self,
        batch: int,
        noise_mode: str = "random",
        device: torch.device | None = None,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor | None]:
        """Per-layer noise maps ``[N, 1, r, r]`` (``const``: the stored maps; ``none``: None entries)."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        out: list[torch.Tensor | None] = []
        for conv in self.styled_convs():
            r = conv.resolution
            if noise_mode == "const":
                out.append(conv.noise_const.expand(batch, 1, r, r))
            elif noise_mode == "random":
                dev = conv.noise_const.device if device is None else device
                out.append(torch.randn([batch, 1, r, r], device=dev, generator=generator))
            else:
                out.append(None)
        return out

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: list[torch.Tensor | None] | None = None,
        return_wavelets: bool = False,
        inference: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Render ``ws``.

        Args:
            ws: ``[N, num_ws, w_dim]`` (W+) or ``[N, w_dim]`` (W).
            noise_mode: ``const``, ``random`` or ``none`` (ignored when ``noise`` is given).
            noise: Explicit maps ``[N or 1, 1, r, r]`` per layer (``noise_shapes``), e.g. the teacher's.
            return_wavelets: Also return every head's wavelets (``[N, 12, r, r]`` for r = 4..R/2,
                coarse to fine; training only, needs ``aux_heads``). The last one is the image's.
            inference: The caller needs no gradients (run it under ``torch.no_grad()`` or
                ``torch.inference_mode()``): in-place kernels that allocate fewer feature maps and run faster on a
                CPU, the same image to float rounding. Off by default, so training and tracing never take it.
        """
        if inference and torch.is_grad_enabled():
            raise RuntimeError(
                "inference=True runs in-place kernels without autograd: call it under torch.no_grad() "
                "or torch.inference_mode()"
            )
        ws = self._wplus(ws)
        if return_wavelets and self.to_img1 is None:
            raise ValueError("return_wavelets needs the auxiliary heads (StudentConfig.aux_heads=True, not fused)")
        convs = self.styled_convs()
        if noise is None:
            noise = self.make_noise(ws.shape[0], noise_mode, device=ws.device)
        elif len(noise) != len(convs):
            raise ValueError(f"expected {len(convs)} noise maps, got {len(noise)}")
        x = self.input.input.expand(ws.shape[0], -1, -1, -1)
        x = self.conv1(x, ws[:, 0], noise[0], inference=inference)
        wavelets = [self.to_img1(x, ws[:, 1])] if return_wavelets else []
        last = len(self.layers) - 1
        for i, block in enumerate(self.layers):
            want_head = return_wavelets or i == last
            x, head = block(
                x, ws[:, 3 * i + 1 : 3 * i + 4], noise[1 + 2 * i : 3 + 2 * i], head=want_head, inference=inference
            )
            if return_wavelets:
                wavelets.append(head)
        img = self.layers[-1].to_img.to_image(head, inference=inference)
        return (img, wavelets) if return_wavelets else img

    def _wplus(self, ws: torch.Tensor) -> torch.Tensor:
        """``ws`` as W+ ``[N, num_ws, w_dim]`` (W ``[N, w_dim]`` repeated); a ValueError for any other shape."""
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, self.num_ws, -1)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}] or [N, {self.w_dim}], got {tuple(ws.shape)}")
        return ws

    def features(
        self, ws: torch.Tensor, noise: list[torch.Tensor | None] | None = None, levels: int | None = None
    ) -> list[torch.Tensor]:
        """The feature maps every head reads (``[N, channels[i], r, r]`` for r = 4, 8, ...), without running a
        head: the first ``levels`` of them (None: all). Only the layers up to that level run, so the coarse
        features of a large network are cheap. ``ws`` and ``noise`` as in :meth:`forward` (noise None: ``const``)."""
        levels = len(self.cfg.channels) if levels is None else levels
        if not 1 <= levels <= len(self.cfg.channels):
            raise ValueError(f"levels must be in [1, {len(self.cfg.channels)}], got {levels}")
        ws = self._wplus(ws)
        noise = self.make_noise(ws.shape[0], "const") if noise is None else noise
        x = self.conv1(self.input.input.expand(ws.shape[0], -1, -1, -1), ws[:, 0], noise[0])
        out = [x]
        for i, block in enumerate(self.layers[: levels - 1]):
            x, _ = block(x, ws[:, 3 * i + 1 : 3 * i + 4], noise[1 + 2 * i : 3 + 2 * i], head=False)
            out.append(x)
        return out

    def head_ws_index(self, level: int) -> int:
        """The W+ entry the head of feature level ``level`` reads (1 for the 4x4 head, ``3 * level`` after)."""
        return 1 if level == 0 else 3 * level

    def heads(self) -> list[WaveletHead | None]:
        """Every level's head, coarse to fine (None where the auxiliary heads were removed)."""
        return [self.to_img1] + [block.to_img for block in self.layers]

    @torch.no_grad()
    def fuse(self) -> MobileSynthesisNetwork:
        """Inference form: fold every demodulation into its weights, fold the final inverse Haar
        transform into the last head (the image is then a pixel shuffle of it) and remove the
        auxiliary heads. The output of ``forward`` is unchanged (to float rounding). Returns self.
        """
        for conv in self.styled_convs():
            conv.conv.fuse()
        self.layers[-1].to_img.fold_inverse_transform()
        self.to_img1 = None
        for block in self.layers[:-1]:
            block.to_img = None
        self.fused = True
        return self
