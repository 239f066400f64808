"""Tiny random StyleGAN2 teachers: configs, randomised weights, checkpoints, a teacher/student pair on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import teacher
from teacher.config import DiscriminatorConfig, GeneratorConfig
from teacher.formats.common import Checkpoint
from teacher.mapping import MappingNetwork


def tiny_g_config(res: int = 32, w_dim: int = 16, **kw: Any) -> GeneratorConfig:
    channels = {4 * 2**i: max(16 >> i, 4) for i in range(res.bit_length() - 2)}
    return GeneratorConfig(z_dim=w_dim, w_dim=w_dim, img_resolution=res, channels=channels, mapping_layers=2, **kw)


def tiny_d_config(res: int = 32, **kw: Any) -> DiscriminatorConfig:
    channels = {4 * 2**i: max(16 >> i, 4) for i in range(res.bit_length() - 2)}
    return DiscriminatorConfig(img_resolution=res, channels=channels, **kw)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter and buffer non-trivial values (biases, noise strengths included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("resample_filter"):
                continue
            scale = 0.1 if name.endswith(("bias", "noise_strength", "w_avg")) else 1.0
            t.copy_(torch.randn(t.shape, generator=g) * scale + (1.0 if name.endswith("affine.bias") else 0.0))
    return module


def tiny_checkpoint(res: int = 32, with_d: bool = True, seed: int = 0) -> Checkpoint:
    gc = tiny_g_config(res)
    G = randomize(teacher.Generator(gc), seed)
    ck = Checkpoint("native", g_config=gc, g_state=dict(G.state_dict()))
    if with_d:
        dc = tiny_d_config(res)
        ck.d_config, ck.d_state = dc, dict(randomize(teacher.Discriminator(dc), seed + 1).state_dict())
    return ck


def tiny_teacher_student_pair(d: Path) -> tuple[teacher.Generator, MappingNetwork]:
    """A 64-px teacher saved as ``d/teacher.pt`` and a randomised 64-px student sharing its mapping, saved as
    ``d/student.pt``. Returns the teacher and the mapping (for more students)."""
    from mobilestylegan.io.checkpoint import save_student
    from mobilestylegan.student.generator import StudentGenerator
    from mobilestylegan.student.synthesis import StudentConfig

    gcfg = teacher.GeneratorConfig(
        z_dim=32, w_dim=32, img_resolution=64, mapping_layers=2, channels={4: 16, 8: 16, 16: 16, 32: 8, 64: 8}
    )
    T = randomize(teacher.Generator(gcfg), seed=1)
    teacher.save_checkpoint(d / "teacher.pt", Checkpoint("native", g_config=gcfg, g_state=T.state_dict()))
    mapping = teacher.MappingNetwork(32, 32, 2)
    mapping.load_state_dict({k[8:]: v for k, v in T.state_dict().items() if k.startswith("mapping.")})
    S = StudentGenerator(StudentConfig(img_resolution=64, w_dim=32, channels=(16, 16, 16, 8)), mapping)
    randomize(S.synthesis, seed=2)
    save_student(d / "student.pt", S)
    return T, mapping
