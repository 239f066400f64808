"""Images from seeds, written as PNG files: one per seed and a grid, a style-mixing grid, an interpolation strip
(``mobilestylegan-generate``). Works on any generator with ``mapping`` and ``synthesis`` (a student or a teacher)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from mobilestylegan.errors import UsageError
from mobilestylegan.io.images import make_grid, save_png, to_uint8
from mobilestylegan.student.sampling import seeded_z


@torch.no_grad()
def render_ws(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str, batch: int, desc: str) -> torch.Tensor:
    """The images of ``ws``, ``batch`` at a time, float32 on the CPU."""
    out = []
    for i in tqdm(range(0, len(ws), batch), desc=desc, unit="batch", leave=False, disable=len(ws) <= batch):
        out.append(G.synthesis(ws[i : i + batch], noise_mode=noise_mode, inference=True).float().cpu())
    return torch.cat(out)


def seeded_ws(G: torch.nn.Module, seeds: Sequence[int], psi: float, device: str) -> torch.Tensor:
    """The truncated W+ of seeded latents."""
    with torch.no_grad():
        return G.mapping(seeded_z(seeds, G.z_dim).to(device), truncation_psi=psi)


def generate_seeds(
    G: torch.nn.Module,
    seeds: Sequence[int],
    psi: float,
    noise_mode: str,
    batch: int,
    device: str,
    outdir: Path,
    grid: bool,
) -> list[Path]:
    """``seedNNNN.png`` per seed (and ``grid.png`` of them all with ``grid``)."""
    imgs = render_ws(G, seeded_ws(G, seeds, psi, device), noise_mode, batch, "rendering")
    paths = [save_png(arr, outdir / f"seed{s:04d}.png") for s, arr in zip(seeds, to_uint8(imgs))]
    if grid:
        paths.append(save_png(make_grid(imgs), outdir / "grid.png"))
    return paths


def style_mix(
    G: torch.nn.Module,
    rows: Sequence[int],
    cols: Sequence[int],
    cutoff: int,
    psi: float,
    noise_mode: str,
    batch: int,
    device: str,
    outdir: Path,
) -> Path:
    """Row seeds give the coarse layers (< cutoff), column seeds the fine ones; originals on the border."""
    import teacher

    if not 0 < cutoff < G.num_ws:
        raise UsageError(f"--style-mix-cutoff must be in 1..{G.num_ws - 1} for this generator, got {cutoff}")
    w_rows, w_cols = seeded_ws(G, rows, psi, device), seeded_ws(G, cols, psi, device)
    mixed = [
        teacher.mix_styles(w_rows[r : r + 1], w_cols[c : c + 1], cutoff)
        for r in range(len(rows))
        for c in range(len(cols))
    ]
    ws = torch.cat([w_cols, w_rows, *mixed])
    imgs = render_ws(G, ws, noise_mode, batch, "style mixing")
    n_c, n_r = len(cols), len(rows)
    blank = torch.full_like(imgs[:1], 1.0)
    tiles = [blank, *imgs[:n_c]]
    for r in range(n_r):
        tiles += [imgs[n_c + r : n_c + r + 1], *imgs[n_c + n_r + r * n_c : n_c + n_r + (r + 1) * n_c]]
    tiles = [t if t.ndim == 4 else t[None] for t in tiles]
    return save_png(make_grid(torch.cat(tiles), cols=n_c + 1), outdir / "style_mix.png")


def interpolate(
    G: torch.nn.Module,
    seed_a: int,
    seed_b: int,
    steps: int,
    psi: float,
    noise_mode: str,
    batch: int,
    device: str,
    outdir: Path,
) -> Path:
    """Linear interpolation in W between two seeds, as one strip."""
    if steps < 2:
        raise UsageError(f"--steps must be >= 2, got {steps}")
    w = seeded_ws(G, [seed_a, seed_b], psi, device)
    t = torch.linspace(0, 1, steps, device=w.device).reshape(-1, 1, 1)
    imgs = render_ws(G, w[0:1].lerp(w[1:2], t), noise_mode, batch, "interpolating")
    return save_png(make_grid(imgs, cols=steps), outdir / f"interp_{seed_a}_{seed_b}.png")
