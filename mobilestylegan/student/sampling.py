"""Seeded latents: the same seed gives the same z in every tool of the toolkit."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def seeded_z(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """``[N, z_dim]``: row i is ``randn`` from a generator seeded with ``seeds[i]`` (batch-independent)."""
    for s in seeds:
        if s < 0:
            raise ValueError(f"seeds must be >= 0, got {s}")
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
