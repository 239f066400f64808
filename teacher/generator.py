"""The StyleGAN2 generator: mapping + synthesis behind the contract every tool relies on."""

from __future__ import annotations

import torch
from torch import nn

from teacher.config import GeneratorConfig
from teacher.mapping import MappingNetwork
from teacher.synthesis import SynthesisNetwork


class Generator(nn.Module):
    """``G(z) = G.synthesis(G.mapping(z))``.

    Contract: ``G.mapping(z, truncation_psi=1.0, truncation_cutoff=None) -> ws [N, num_ws, w_dim]``;
    ``G.synthesis(ws, noise_mode="const", noise=None) -> img [N, 3, R, R]``; attributes ``z_dim``,
    ``w_dim``, ``num_ws``, ``img_resolution``, ``img_channels``, ``cfg``.

    Args:
        cfg: The architecture.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul, num_ws=cfg.num_ws)
        self.synthesis = SynthesisNetwork(cfg)

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        noise: list[torch.Tensor | None] | None = None,
        fused_modconv: bool = True,
    ) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, fused_modconv=fused_modconv)


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, cutoff: int | torch.Tensor) -> torch.Tensor:
    """Style mixing: layers ``>= cutoff`` take their w from ``ws2`` (both ``[N, num_ws, w_dim]``).

    ``cutoff`` is one int for the batch or a ``[N]`` tensor (one crossover point per sample).
    """
    if ws.shape != ws2.shape or ws.ndim != 3:
        raise ValueError(f"mix_styles needs two [N, num_ws, w_dim] tensors, got {tuple(ws.shape)}, {tuple(ws2.shape)}")
    layer = torch.arange(ws.shape[1], device=ws.device)
    cut = torch.as_tensor(cutoff, device=ws.device).reshape(-1, 1)  # [N or 1, 1]
    return torch.where((layer[None] >= cut)[:, :, None], ws2, ws)


def random_mixing_cutoff(
    batch: int, num_ws: int, prob: float, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Per-sample crossover points as in StyleGAN2 training: with probability ``prob`` a uniform
    cutoff in [1, num_ws), else ``num_ws`` (no mixing). Returns ``[N]`` int64."""
    cut = torch.randint(1, num_ws, [batch], generator=generator, device=device)
    mix = torch.rand([batch], generator=generator, device=device) < prob
    return torch.where(mix, cut, torch.full_like(cut, num_ws))
