"""``mobilestylegan-generate``: images, grids, style mixing, interpolation and teacher/student comparison."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from mobilestylegan.cli.common import parse_seeds
from mobilestylegan.errors import UsageError
from mobilestylegan.io.load import load_generator_any
from mobilestylegan.io.renders import generate_seeds, interpolate, style_mix
from mobilestylegan.metrics.compare import compare
from teacher.formats.common import CheckpointError
from teacher.fs import OutputPathError

EXAMPLES = """examples:
  mobilestylegan-generate ffhq-1024 --seeds 0-7 --trunc 0.7 --outdir out/       # 8 faces + grid.png
  mobilestylegan-generate student.pt --seeds 0,5,9 --noise-mode random
  mobilestylegan-generate ffhq-1024 --style-mix 1,2,3 --style-mix-cols 10,11,12 --style-mix-cutoff 8
  mobilestylegan-generate ffhq-1024 --interpolate 3,7 --steps 8                  # latent interpolation strip
  mobilestylegan-generate student.pt --compare teacher.pkl --seeds 0-3          # teacher | student | |diff|
SOURCE is a native student checkpoint, a pretrained name (ffhq-1024), a MobileStyleGAN.pytorch .ckpt, or
any teacher checkpoint the loaders read (rosinality .pt, NVIDIA/TF .pkl, native).
"""


def _check_outdir(outdir: Path) -> None:
    """Create the output folder; a :class:`UsageError` when it cannot be created or written to."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output directory {outdir}: {err.strerror}") from None
    if not os.access(outdir, os.W_OK):
        raise UsageError(f"output directory {outdir} is not writable")


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = argparse.ArgumentParser(
        prog="mobilestylegan-generate",
        description="Render images from a student or teacher.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    p.add_argument(
        "--style-mix-cutoff",
        type=int,
        default=None,
        help="first W+ layer taken from the column seed (default: num_ws // 2)",
    )
    p.add_argument("--interpolate", metavar="A,B", help="interpolation strip between two seeds")
    p.add_argument("--steps", type=int, default=8, help="images in the interpolation strip")
    p.add_argument("--compare", metavar="TEACHER", help="teacher checkpoint: write teacher | student | |diff|")
    return p


def run(args: argparse.Namespace) -> list[Path]:
    """Render what the arguments ask for; the files written."""
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
        path, stats = compare(
            G,
            teacher.load_generator(args.compare, device=args.device),
            seeds,
            args.trunc,
            args.batch_size,
            args.device,
            args.outdir,
        )
        print(f"student vs teacher PSNR: {stats['mean_psnr_db']:.2f} dB (mean over {len(seeds)} seeds)")
        return [path]
    if args.style_mix:
        cutoff = args.style_mix_cutoff if args.style_mix_cutoff is not None else G.num_ws // 2
        written.append(
            style_mix(
                G,
                parse_seeds(args.style_mix),
                parse_seeds(args.style_mix_cols),
                cutoff,
                noise_mode=args.noise_mode,
                outdir=args.outdir,
                **common,
            )
        )
    if args.interpolate:
        pair = parse_seeds(args.interpolate)
        if len(pair) != 2:
            raise UsageError(f"--interpolate takes two seeds A,B, got {args.interpolate!r}")
        written.append(
            interpolate(G, pair[0], pair[1], args.steps, noise_mode=args.noise_mode, outdir=args.outdir, **common)
        )
    if not written:
        written = generate_seeds(
            G, seeds, noise_mode=args.noise_mode, outdir=args.outdir, grid=not args.no_grid, **common
        )
    return written


def main(argv: list[str] | None = None) -> int:
    """The command: 0, or 2 on a usage error."""
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
