"""Tiny students with every term active, their PyTorch images and float64 references."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.sampling import seeded_z
from mobilestylegan.student.synthesis import StudentConfig
from teacher.mapping import MappingNetwork, truncate
from tests.helpers.teachers import randomize


def export_student(
    res: int = 32, w_dim: int = 32, channels: Sequence[int] = (64, 64, 32), seed: int = 0
) -> StudentGenerator:
    """A tiny student with every term active: non-zero noise strengths, biases and w_avg (default init leaves
    them at zero). Images are mostly within a few units, but peak at ~19 (seed 0) and ~11 (seed 3).

    The default initialisation draws from torch's global RNG seeded with ``seed`` inside a fork of it: the
    weights depend on ``seed`` only, and the caller's global RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StudentGenerator(
            StudentConfig(img_resolution=res, w_dim=w_dim, channels=channels), MappingNetwork(w_dim, w_dim, 2)
        )
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in G.named_parameters():
            if name.endswith("noise.weight"):
                t.copy_(0.2 + 0.1 * torch.rand(t.shape, generator=g))
            elif name.endswith("modulation.bias"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
        G.mapping.w_avg.copy_(0.5 * torch.randn(w_dim, generator=g))
    return G.eval().requires_grad_(False)


def tiny_student(res: int = 64, w_dim: int = 32, **kw: object) -> StudentGenerator:
    """A randomised student with 16 channels per block (mapping seed 5, synthesis seed 6)."""
    cfg = StudentConfig(img_resolution=res, w_dim=w_dim, channels=tuple([16] * (res.bit_length() - 3)), **kw)
    G = StudentGenerator(cfg, randomize(MappingNetwork(w_dim, w_dim, 2), seed=5))
    randomize(G.synthesis, seed=6)
    return G.eval()


def torch_images(G: StudentGenerator, seeds: Sequence[int], psi: float = 1.0, noise_mode: str = "const") -> np.ndarray:
    """The PyTorch student's float32 images of seeded z, ``[N, 3, R, R]``."""
    with torch.no_grad():
        return G.synthesis(G.mapping(seeded_z(seeds, G.z_dim), truncation_psi=psi), noise_mode=noise_mode).numpy()


def float64_reference(G: StudentGenerator, seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The student in float64 on seeded latents (psi 1, const noise): w ``[N, w_dim]`` and images, both float64."""
    G64 = copy.deepcopy(G).double()
    with torch.no_grad():
        w = truncate(G64.mapping.embed(seeded_z(list(seeds), G.z_dim).double()), G64.mapping.w_avg, 1.0)
        return w, G64.synthesis(w, noise_mode="const")
