"""A student beside its teacher: teacher | student | |difference| rows for the same w and the same seeded noise, and
the PSNR of each pair (``mobilestylegan-generate --compare``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mobilestylegan.errors import UsageError
from mobilestylegan.io.images import make_grid, save_png
from mobilestylegan.nets.resize import compare_at_smaller_resolution
from mobilestylegan.student.sampling import seeded_z


@torch.no_grad()
def compare(
    student: torch.nn.Module,
    teacher_G: torch.nn.Module,
    seeds: Sequence[int],
    psi: float,
    batch: int,
    device: str,
    outdir: Path,
) -> tuple[Path, dict]:
    """teacher | student | |difference| rows for the same w and the same (random, seeded) noise."""
    from mobilestylegan.student.generator import StudentGenerator, teacher_noise_for_student

    if not isinstance(student, StudentGenerator):
        raise UsageError("--compare needs a student SOURCE (the teacher is given with --compare)")
    if teacher_G.w_dim != student.w_dim or teacher_G.z_dim != student.z_dim:
        raise UsageError(
            f"teacher (z {teacher_G.z_dim}, w {teacher_G.w_dim}) and student (z {student.z_dim}, "
            f"w {student.w_dim}) do not share a latent space"
        )
    if teacher_G.img_resolution < student.img_resolution:
        raise UsageError(
            f"the teacher renders {teacher_G.img_resolution}px, less than the student's {student.img_resolution}px"
        )
    rows, psnrs = [], []
    for i in tqdm(range(0, len(seeds), batch), desc="comparing", unit="batch", leave=False):
        z = seeded_z(seeds[i : i + batch], teacher_G.z_dim).to(device)
        w_t = teacher_G.mapping(z, truncation_psi=psi)  # the teacher's mapping and truncation centre
        gen = torch.Generator(device=device).manual_seed(int(seeds[i]))
        t_img, t_noise = teacher_G.synthesis(
            w_t,
            noise=teacher_G.synthesis.make_noise(len(z), "random", generator=gen),
            return_noise=True,
            inference=True,
        )
        s_noise = teacher_noise_for_student(t_noise, student.synthesis)
        s_img = student.synthesis(w_t[:, :1].expand(-1, student.num_ws, -1), noise=s_noise, inference=True)
        s_img, t_img, psnr = compare_at_smaller_resolution(s_img, t_img)  # the teacher's is never the smaller
        diff = (t_img - s_img).abs()
        psnrs += psnr.tolist()
        for t, s, d in zip(t_img, s_img, diff):
            rows += [t, s, d * 2 - 1]  # |diff| shown on [0, 1] -> [-1, 1]
    grid = make_grid(torch.stack(rows).cpu(), cols=3)
    path = save_png(grid, outdir / "compare.png")
    return path, {"psnr_db": psnrs, "mean_psnr_db": float(np.mean(psnrs))}
