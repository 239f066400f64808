"""The StyleGAN2 synthesis network (skip architecture)."""

from __future__ import annotations

import torch
from torch import nn

from teacher.config import GeneratorConfig
from teacher.layers import SynthesisLayer, ToRGB
from teacher.ops import setup_filter, upsample2d


class SynthesisBlock(nn.Module):
    """One resolution: [up-sampling conv0], conv1, ToRGB added to the up-sampled running image.

    Args:
        in_channels: Channels coming from the previous block (0 for the 4x4 block with its constant).
        out_channels: Channels of this block.
        w_dim: Size of w.
        resolution: Output resolution of the block.
        img_channels: Image channels.
        conv_clamp: Activation clamp, or None.
        resample_filter: 1-D FIR taps for every up-sampling.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None,
        resample_filter: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.resolution = resolution
        kw = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, resample_filter=resample_filter)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=True, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **kw)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.num_conv = 1 if in_channels == 0 else 2

    def layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.num_conv == 1 else [self.conv0, self.conv1]

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise: list[torch.Tensor | None],
        fused_modconv: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws ``[N, num_conv + 1, w_dim]``; noise: one map (or None) per conv layer."""
        if self.num_conv == 1:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)  # [N, C, 4, 4]
            x = self.conv1(x, ws[:, 0], noise[0], fused_modconv=fused_modconv)
        else:
            x = self.conv0(x, ws[:, 0], noise[0], fused_modconv=fused_modconv)
            x = self.conv1(x, ws[:, 1], noise[1], fused_modconv=fused_modconv)
        y = self.torgb(x, ws[:, self.num_conv], fused_modconv=fused_modconv)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` -> image ``[N, img_channels, R, R]``.

    W+ routing (shared by NVIDIA's and rosinality's code): block 4 uses ws[0] (conv) and ws[1]
    (ToRGB); block j >= 1 uses ws[2j-1] (conv0), ws[2j] (conv1), ws[2j+1] (ToRGB), so each ToRGB
    shares its w with the next block's conv0.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.w_dim, self.img_resolution, self.img_channels = cfg.w_dim, cfg.img_resolution, cfg.img_channels
        self.num_ws = cfg.num_ws
        for res in cfg.resolutions:
            block = SynthesisBlock(
                0 if res == 4 else cfg.channels[res // 2],
                cfg.channels[res],
                cfg.w_dim,
                res,
                cfg.img_channels,
                cfg.conv_clamp,
                cfg.resample_filter,
            )
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.cfg.resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """Conv layers in W+/noise order (rosinality's ``noises.noise_i`` order)."""
        return [layer for block in self.blocks() for layer in block.layers()]

    @property
    def noise_shapes(self) -> list[tuple[int, int, int]]:
        return [(1, layer.resolution, layer.resolution) for layer in self.noise_layers()]

    def make_noise(
        self,
        batch: int,
        noise_mode: str = "random",
        device: torch.device | None = None,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor | None]:
        """The per-layer noise maps ``[N, 1, r, r]`` for ``noise_mode`` (None entries for "none")."""
        return [
            layer.make_noise(batch, noise_mode, device=device, generator=generator) for layer in self.noise_layers()
        ]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: list[torch.Tensor | None] | None = None,
        fused_modconv: bool = True,
        return_noise: bool = False,
        inference: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Render ``ws``.

        Args:
            ws: ``[N, num_ws, w_dim]`` (W+), or ``[N, w_dim]`` (W, broadcast to every layer).
            noise_mode: ``"const"`` (the stored maps), ``"random"`` or ``"none"``.
            noise: Explicit per-layer maps ``[N or 1, 1, r, r]`` (see ``noise_shapes``); overrides noise_mode.
            fused_modconv: Grouped-conv modulation (True) or activation modulation (False); same result.
            return_noise: Also return the noise maps that were used (to feed a student the same noise).
            inference: The caller needs no gradients. Accepted so that every generator renders through one call
                signature; this network computes the same either way.
        """
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, self.num_ws, -1)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}] or [N, {self.w_dim}], got {tuple(ws.shape)}")
        layers = self.noise_layers()
        if noise is None:
            noise = self.make_noise(ws.shape[0], noise_mode, device=ws.device)
        elif len(noise) != len(layers):
            raise ValueError(f"expected {len(layers)} noise maps, got {len(noise)}")
        x = img = None
        w_idx = n_idx = 0
        for block in self.blocks():
            x, img = block(
                x,
                img,
                ws[:, w_idx : w_idx + block.num_conv + 1],
                noise[n_idx : n_idx + block.num_conv],
                fused_modconv=fused_modconv,
            )
            w_idx += block.num_conv
            n_idx += block.num_conv
        return (img, list(noise)) if return_noise else img
