"""Tiny random teachers for tests."""

from __future__ import annotations

import torch

import teacher
from teacher.config import DiscriminatorConfig, GeneratorConfig
from teacher.formats.common import Checkpoint


def tiny_g_config(res: int = 32, w_dim: int = 16, **kw) -> GeneratorConfig:
    channels = {4 * 2**i: max(16 >> i, 4) for i in range(res.bit_length() - 2)}
    return GeneratorConfig(z_dim=w_dim, w_dim=w_dim, img_resolution=res, channels=channels, mapping_layers=2, **kw)


def tiny_d_config(res: int = 32, **kw) -> DiscriminatorConfig:
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


def tiny_teacher_student_pair(d):
    """A 64-px teacher saved as ``d/teacher.pt`` and a randomised 64-px student sharing its mapping, saved as
    ``d/student.pt``. Returns the teacher and the mapping (for more students)."""
    from mobilestylegan.io.checkpoint import save_student
    from mobilestylegan.student.generator import StudentGenerator
    from mobilestylegan.student.synthesis import StudentConfig

    gcfg = teacher.GeneratorConfig(z_dim=32, w_dim=32, img_resolution=64, mapping_layers=2,
                                   channels={4: 16, 8: 16, 16: 16, 32: 8, 64: 8})
    T = randomize(teacher.Generator(gcfg), seed=1)
    teacher.save_checkpoint(d / "teacher.pt", Checkpoint("native", g_config=gcfg, g_state=T.state_dict()))
    mapping = teacher.MappingNetwork(32, 32, 2)
    mapping.load_state_dict({k[8:]: v for k, v in T.state_dict().items() if k.startswith("mapping.")})
    S = StudentGenerator(StudentConfig(img_resolution=64, w_dim=32, channels=(16, 16, 16, 8)), mapping)
    randomize(S.synthesis, seed=2)
    save_student(d / "student.pt", S)
    return T, mapping


def require_toolchain(present: bool, what: str, install: str) -> None:
    """Skip a test whose optional toolchain is missing, or fail it when ``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is set
    (CI installs every toolchain and sets it, so no such test is silently skipped there)."""
    import os

    import pytest

    if present:
        return
    if os.environ.get("MOBILESTYLEGAN_REQUIRE_TOOLCHAINS"):
        pytest.fail(f"{what} is missing but $MOBILESTYLEGAN_REQUIRE_TOOLCHAINS is set: {install}")
    pytest.skip(f"{what} is not installed ({install})")


def assert_runtime_cli_renders_the_pytorch_faces(directory, G, faces_dir, *extra: str) -> None:
    """``python -m export.runtime DIR --seeds 0-1`` writes the PyTorch student's faces (const noise), to one uint8 step
    (float rounding may flip one)."""
    import numpy as np
    from PIL import Image

    from export.runtime import main as runtime_main
    from mobilestylegan.student.sampling import seeded_z

    assert runtime_main([str(directory), "--seeds", "0-1", *extra, "--out", str(faces_dir)]) == 0
    got = np.stack([np.array(Image.open(faces_dir / f"seed{s:04d}.png")) for s in (0, 1)])
    with torch.no_grad():
        img = G.synthesis(G.mapping(seeded_z([0, 1], G.z_dim)), noise_mode="const")
    want = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def float64_reference(G, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    """The student in float64 on seeded latents (psi 1, const noise): w ``[N, w_dim]`` and images, both float64."""
    import copy

    from mobilestylegan.student.sampling import seeded_z
    from teacher.mapping import truncate

    G64 = copy.deepcopy(G).double()
    with torch.no_grad():
        w = truncate(G64.mapping.embed(seeded_z(list(seeds), G.z_dim).double()), G64.mapping.w_avg, 1.0)
        return w, G64.synthesis(w, noise_mode="const")
