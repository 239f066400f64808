"""Rendering seeded samples from any generator that follows the teacher contract."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

import teacher
from mobilestylegan.schema import EMBEDDED_TEACHER, SampleConfig
from mobilestylegan.images import make_grid, save_png
from teacher.formats.native import atomic_write


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


@torch.no_grad()
def render(G: torch.nn.Module, seeds: Sequence[int], truncation_psi: float, noise_mode: str,
           batch_size: int, device: str) -> torch.Tensor:
    z = seeded_z(seeds, G.z_dim)
    out = []
    for i in tqdm(range(0, len(z), batch_size), desc="rendering", unit="batch", leave=False):
        ws = G.mapping(z[i:i + batch_size].to(device), truncation_psi=truncation_psi)
        out.append(G.synthesis(ws, noise_mode=noise_mode).cpu())
    return torch.cat(out)


def sample_job(cfg: SampleConfig, out_dir: Path) -> dict:
    """Render ``cfg.seeds`` with ``cfg.generator``, write ``samples.png`` and ``summary.json`` in ``out_dir``."""
    from mobilestylegan.generate import load_generator_any

    source = resolve_source(cfg.generator)
    G = load_generator_any(source, cfg.device)
    t0 = time.perf_counter()
    imgs = render(G, list(cfg.seeds), cfg.truncation_psi, cfg.noise_mode, cfg.batch_size, cfg.device)
    seconds = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    grid_path = save_png(make_grid(imgs, cols=cfg.grid_columns), out_dir / "samples.png")
    summary = {
        "job": "sample",
        "generator": source,
        "kind": type(G).__name__,
        "resolution": G.img_resolution,
        "num_ws": G.num_ws,
        "seeds": list(cfg.seeds),
        "truncation_psi": cfg.truncation_psi,
        "noise_mode": cfg.noise_mode,
        "image_mean": imgs.mean().item(),
        "image_std": imgs.std().item(),
        "seconds": round(seconds, 3),
        "grid": str(grid_path),
        "ops": teacher.ops.status(),
    }
    atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    return summary
