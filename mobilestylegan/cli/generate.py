"""``mobilestylegan-generate``: images, grids, style mixing, interpolation and teacher/student comparison."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export.runtime import parse_seeds as runtime_parse_seeds
from mobilestylegan.errors import UsageError
from mobilestylegan.io.images import make_grid, save_png, to_uint8
from mobilestylegan.io.load import load_generator_any
from mobilestylegan.student.sampling import seeded_z
from teacher.formats.common import CheckpointError
from teacher.fs import OutputPathError
from teacher.numerics import psnr_db

EXAMPLES = """examples:
  mobilestylegan-generate ffhq-1024 --seeds 0-7 --trunc 0.7 --outdir out/       # 8 faces + grid.png
  mobilestylegan-generate student.pt --seeds 0,5,9 --noise-mode random
  mobilestylegan-generate ffhq-1024 --style-mix 1,2,3 --style-mix-cols 10,11,12 --style-mix-cutoff 8
  mobilestylegan-generate ffhq-1024 --interpolate 3,7 --steps 8                  # latent interpolation strip
  mobilestylegan-generate student.pt --compare teacher.pkl --seeds 0-3          # teacher | student | |diff|
SOURCE is a native student checkpoint, a pretrained name (ffhq-1024), a MobileStyleGAN.pytorch .ckpt, or
any teacher checkpoint the loaders read (rosinality .pt, NVIDIA/TF .pkl, native).
"""


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7,10-11"`` -> [0, 1, 2, 3, 7, 10, 11] (the torch-free parser of ``export.runtime``)."""
    try:
        return runtime_parse_seeds(text)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _check_outdir(outdir: Path) -> None:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output directory {outdir}: {err.strerror}") from None
    if not os.access(outdir, os.W_OK):
        raise UsageError(f"output directory {outdir} is not writable")


@torch.no_grad()
def _render_ws(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str, batch: int, desc: str) -> torch.Tensor:
    out = []
    for i in tqdm(range(0, len(ws), batch), desc=desc, unit="batch", leave=False, disable=len(ws) <= batch):
        out.append(G.synthesis(ws[i:i + batch], noise_mode=noise_mode, inference=True).float().cpu())
    return torch.cat(out)


def _ws(G: torch.nn.Module, seeds: Sequence[int], psi: float, device: str) -> torch.Tensor:
    with torch.no_grad():
        return G.mapping(seeded_z(seeds, G.z_dim).to(device), truncation_psi=psi)


def generate_seeds(G, seeds, psi, noise_mode, batch, device, outdir: Path, grid: bool) -> list[Path]:
    imgs = _render_ws(G, _ws(G, seeds, psi, device), noise_mode, batch, "rendering")
    paths = [save_png(arr, outdir / f"seed{s:04d}.png") for s, arr in zip(seeds, to_uint8(imgs))]
    if grid:
        paths.append(save_png(make_grid(imgs), outdir / "grid.png"))
    return paths


def style_mix(G, rows, cols, cutoff, psi, noise_mode, batch, device, outdir: Path) -> Path:
    """Row seeds give the coarse layers (< cutoff), column seeds the fine ones; originals on the border."""
    import teacher

    if not 0 < cutoff < G.num_ws:
        raise UsageError(f"--style-mix-cutoff must be in 1..{G.num_ws - 1} for this generator, got {cutoff}")
    w_rows, w_cols = _ws(G, rows, psi, device), _ws(G, cols, psi, device)
    mixed = [teacher.mix_styles(w_rows[r:r + 1], w_cols[c:c + 1], cutoff) for r in range(len(rows)) for c in range(len(cols))]
    ws = torch.cat([w_cols, w_rows, *mixed])
    imgs = _render_ws(G, ws, noise_mode, batch, "style mixing")
    n_c, n_r = len(cols), len(rows)
    blank = torch.full_like(imgs[:1], 1.0)
    tiles = [blank, *imgs[:n_c]]
    for r in range(n_r):
        tiles += [imgs[n_c + r:n_c + r + 1], *imgs[n_c + n_r + r * n_c:n_c + n_r + (r + 1) * n_c]]
    tiles = [t if t.ndim == 4 else t[None] for t in tiles]
    return save_png(make_grid(torch.cat(tiles), cols=n_c + 1), outdir / "style_mix.png")


def interpolate(G, seed_a, seed_b, steps, psi, noise_mode, batch, device, outdir: Path) -> Path:
    """Linear interpolation in W between two seeds, as one strip."""
    if steps < 2:
        raise UsageError(f"--steps must be >= 2, got {steps}")
    w = _ws(G, [seed_a, seed_b], psi, device)
    t = torch.linspace(0, 1, steps, device=w.device).reshape(-1, 1, 1)
    imgs = _render_ws(G, w[0:1].lerp(w[1:2], t), noise_mode, batch, "interpolating")
    return save_png(make_grid(imgs, cols=steps), outdir / f"interp_{seed_a}_{seed_b}.png")


@torch.no_grad()
def compare(student, teacher_G, seeds, psi, batch, device, outdir: Path) -> tuple[Path, dict]:
    """teacher | student | |difference| rows for the same w and the same (random, seeded) noise."""
    from mobilestylegan.student.generator import StudentGenerator, teacher_noise_for_student

    if not isinstance(student, StudentGenerator):
        raise UsageError("--compare needs a student SOURCE (the teacher is given with --compare)")
    if teacher_G.w_dim != student.w_dim or teacher_G.z_dim != student.z_dim:
        raise UsageError(f"teacher (z {teacher_G.z_dim}, w {teacher_G.w_dim}) and student (z {student.z_dim}, "
                         f"w {student.w_dim}) do not share a latent space")
    if teacher_G.img_resolution < student.img_resolution:
        raise UsageError(f"the teacher renders {teacher_G.img_resolution}px, less than the student's "
                         f"{student.img_resolution}px")
    rows, psnrs = [], []
    for i in tqdm(range(0, len(seeds), batch), desc="comparing", unit="batch", leave=False):
        z = seeded_z(seeds[i:i + batch], teacher_G.z_dim).to(device)
        w_t = teacher_G.mapping(z, truncation_psi=psi)  # the teacher's mapping and truncation centre
        gen = torch.Generator(device=device).manual_seed(int(seeds[i]))
        t_img, t_noise = teacher_G.synthesis(w_t, noise=teacher_G.synthesis.make_noise(len(z), "random", generator=gen),
                                             return_noise=True, inference=True)
        s_noise = teacher_noise_for_student(t_noise, student.synthesis)
        s_img = student.synthesis(w_t[:, :1].expand(-1, student.num_ws, -1), noise=s_noise, inference=True)
        if t_img.shape[-1] != s_img.shape[-1]:
            t_img = F.interpolate(t_img, size=s_img.shape[-2:], mode="area")
        diff = (t_img - s_img).abs()
        psnrs += psnr_db(s_img, t_img).tolist()
        for t, s, d in zip(t_img, s_img, diff):
            rows += [t, s, d * 2 - 1]  # |diff| shown on [0, 1] -> [-1, 1]
    grid = make_grid(torch.stack(rows).cpu(), cols=3)
    path = save_png(grid, outdir / "compare.png")
    return path, {"psnr_db": psnrs, "mean_psnr_db": float(np.mean(psnrs))}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mobilestylegan-generate", description="Render images from a student or teacher.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="checkpoint path or pretrained name (e.g. ffhq-1024)")
    p.add_argument("--seeds", default="0-7", help="seeds and ranges, e.g. 0-7,12 (default 0-7)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1 = none)")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--outdir", type=Path, default=Path("generated"))
    p.add_argument("--no-grid", action="store_true", help="do not write grid.png")
    p.add_argument("--style-mix", metavar="ROW_SEEDS", help="style-mixing grid: seeds giving the coarse styles")
    p.add_argument("--style-mix-cols", metavar="COL_SEEDS", default="100-103", help="seeds giving the fine styles")
    p.add_argument("--style-mix-cutoff", type=int, default=None,
                   help="first W+ layer taken from the column seed (default: num_ws // 2)")
    p.add_argument("--interpolate", metavar="A,B", help="interpolation strip between two seeds")
    p.add_argument("--steps", type=int, default=8, help="images in the interpolation strip")
    p.add_argument("--compare", metavar="TEACHER", help="teacher checkpoint: write teacher | student | |diff|")
    return p


def run(args: argparse.Namespace) -> list[Path]:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device")
    seeds = parse_seeds(args.seeds)
    _check_outdir(args.outdir)
    G = load_generator_any(args.source, args.device)
    common = dict(psi=args.trunc, batch=args.batch_size, device=args.device)
    written: list[Path] = []
    if args.compare:
        import teacher

        if not Path(args.compare).exists():
            raise UsageError(f"teacher checkpoint {args.compare} does not exist")
        path, stats = compare(G, teacher.load_generator(args.compare, device=args.device), seeds,
                              args.trunc, args.batch_size, args.device, args.outdir)
        print(f"student vs teacher PSNR: {stats['mean_psnr_db']:.2f} dB (mean over {len(seeds)} seeds)")
        return [path]
    if args.style_mix:
        cutoff = args.style_mix_cutoff if args.style_mix_cutoff is not None else G.num_ws // 2
        written.append(style_mix(G, parse_seeds(args.style_mix), parse_seeds(args.style_mix_cols), cutoff,
                                 noise_mode=args.noise_mode, outdir=args.outdir, **common))
    if args.interpolate:
        pair = parse_seeds(args.interpolate)
        if len(pair) != 2:
            raise UsageError(f"--interpolate takes two seeds A,B, got {args.interpolate!r}")
        written.append(interpolate(G, pair[0], pair[1], args.steps, noise_mode=args.noise_mode,
                                   outdir=args.outdir, **common))
    if not written:
        written = generate_seeds(G, seeds, noise_mode=args.noise_mode, outdir=args.outdir,
                                 grid=not args.no_grid, **common)
    return written


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = run(args)
    except (UsageError, CheckpointError, OutputPathError) as err:
        print(f"mobilestylegan-generate: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} file(s) to {args.outdir}" + (f": {written[-1].name}" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
