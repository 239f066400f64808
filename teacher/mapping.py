"""The StyleGAN2 mapping network: z -> w, with truncation toward the tracked average w."""

from __future__ import annotations

import torch
from torch import nn

from teacher.layers import FullyConnected


class MappingNetwork(nn.Module):
    """PixelNorm(z), then ``num_layers`` equalized-lr FC layers with lrelu.

    Args:
        z_dim: Input latent size.
        w_dim: Output (and hidden) size.
        num_layers: Number of FC layers (8 in StyleGAN2).
        lr_mul: Learning-rate multiplier of the FC layers.
        num_ws: Broadcast w to ``[N, num_ws, w_dim]``; None returns ``[N, w_dim]``.
    """

    def __init__(
        self, z_dim: int, w_dim: int, num_layers: int = 8, lr_mul: float = 0.01, num_ws: int | None = None
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_layers, self.num_ws = z_dim, w_dim, num_layers, num_ws
        for i in range(num_layers):
            fc = FullyConnected(z_dim if i == 0 else w_dim, w_dim, activation="lrelu", lr_mul=lr_mul)
            setattr(self, f"fc{i}", fc)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """One w per sample, ``[N, z_dim] -> [N, w_dim]``, without truncation."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {tuple(z.shape)}")
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        """z ``[N, z_dim]`` -> w ``[N, w_dim]`` or ``[N, num_ws, w_dim]``.

        Truncation ``w_avg + psi * (w - w_avg)`` applies to the first ``truncation_cutoff`` ws
        (all of them when None).
        """
        w = self.embed(z)
        if self.num_ws is not None:
            w = w[:, None].repeat(1, self.num_ws, 1)
        return truncate(w, self.w_avg, truncation_psi, truncation_cutoff)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
    """Pull ``ws`` ([N, w_dim] or [N, num_ws, w_dim]) toward ``w_avg`` by ``psi``."""
    if psi == 1:
        return ws
    if ws.ndim == 2 or cutoff is None:
        return w_avg.to(ws.dtype).lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.to(ws.dtype).lerp(ws[:, :cutoff], psi)
    return ws
