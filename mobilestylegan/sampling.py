"""Seeded latents and the bundled tiny teacher's location."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

import teacher
from mobilestylegan.schema import EMBEDDED_TEACHER


def resolve_source(spec: str) -> str:
    """``embedded:tiny64`` -> the bundled tiny teacher's path; anything else unchanged."""
    if spec == EMBEDDED_TEACHER:
        return str(Path(teacher.__file__).parent / "assets" / "rosinality_tiny64.pt")
    return spec


def seeded_z(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """``[N, z_dim]``: row i is ``randn`` from a generator seeded with ``seeds[i]`` (batch-independent)."""
    for s in seeds:
        if s < 0:
            raise ValueError(f"seeds must be >= 0, got {s}")
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
