"""Inversion quality against wall time: projection started from ``mean``, ``nearest`` and ``encoder``, side by side.

    .venv/bin/python benchmarks/bench_inversion.py --generator ffhq-1024 --encoder ENC.safetensors \\
        --seeds 16 --photos tests/fixtures/photos/astronaut.png tests/fixtures/photos/grace_hopper.jpg \\
        --steps 60 --keep 0 5 10 20 30 45 60 --out bench_inversion/

Targets: ``--seeds`` generated faces (seeds 900000.., which no training stream draws; psi 0.7; the generator's
constant noise), each written as a PNG and read back the way ``mobilestylegan-project`` reads an image, and the
``--photos``, FFHQ-aligned (``--align``'s recipe). Every target is projected from each start with the command's
defaults (W+, the loss at 256 px; ``--lpips off`` unless asked) for ``--steps`` steps; the latent after each
``--keep`` step count is rendered afterwards (outside the timing) and measured: PSNR at 256 px against the target,
and FaceNet's identity distance where FaceNet is installed. A row's seconds are the projection's own wall time from
the start latent's computation on (the encoder's forward pass, or the nearest face's search) to that step; loading
the generator and the nearest faces' bank (rendered once per generator, then cached) are reported apart.

Prints one table per target kind (mean and worst over the targets at each step) with the command, machine and
threads; writes ``results.json`` and, with ``--plot``, PSNR against seconds per start as a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from export.bench.common import cpu_name
from mobilestylegan.edit.encoder import encode, load_encoder, nearest_bank, nearest_latent
from mobilestylegan.edit.faces import identity_or_reason
from mobilestylegan.edit.project import ProjectOptions, Projector
from mobilestylegan.edit.target_images import load_target
from mobilestylegan.io.images import save_png, to_uint8
from mobilestylegan.io.load import load_generator_any
from mobilestylegan.nets.resize import area_downsample
from teacher.numerics import psnr_db

FIRST_SEED = 900_000


def targets(G: torch.nn.Module, n_seeds: int, photos: list[str], out: Path) -> list[tuple[str, str, object]]:
    """``(kind, name, TargetImage)`` of the generated faces and the aligned photos."""
    from teacher.mapping import truncate

    faces = out / "faces"
    faces.mkdir(parents=True, exist_ok=True)
    found = []
    for s in range(FIRST_SEED, FIRST_SEED + n_seeds):
        path = faces / f"seed{s}.png"
        if not path.is_file():
            z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(s))
            with torch.no_grad():
                w = truncate(G.mapping.embed(z), G.mapping.w_avg, 0.7)
                img = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
            save_png(to_uint8(img.clamp(-1, 1))[0], path)
        found.append(("generated", path.stem, load_target(path, G.img_resolution)))
    for p in photos:
        found.append(("photo", Path(p).stem, load_target(Path(p), G.img_resolution, align=True)))
    return found


def measure(G: torch.nn.Module, target: object, ws: torch.Tensor, box: np.ndarray | None) -> tuple[float, float | None]:
    """PSNR at 256 px and the identity distance (None without FaceNet) of the render of ``ws``."""
    with torch.no_grad():
        img = G.synthesis(ws, noise_mode="const", inference=True).clamp(-1, 1)
    res = min(256, G.img_resolution)
    psnr = float(psnr_db(area_downsample(img, res), area_downsample(target.image, res))[0])
    identity, _ = identity_or_reason(to_uint8(target.image)[0], to_uint8(img)[0], box)
    return psnr, identity


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", default="ffhq-1024")
    p.add_argument("--encoder", required=True, help="encoder file or shipped name")
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--photos", nargs="*", default=[])
    p.add_argument("--inits", nargs="+", default=["mean", "nearest", "encoder"])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--keep", type=int, nargs="+", default=[0, 5, 10, 20, 30, 45, 60])
    p.add_argument("--lr", type=float, default=None, help="refinement's peak learning rate (default: the command's)")
    p.add_argument("--proxy-steps", type=int, default=0, help="the first N steps on the truncated student")
    p.add_argument("--proxy-resolution", type=int, default=128)
    p.add_argument("--proxy-refresh", type=int, default=10)
    p.add_argument("--lpips", default="off")
    p.add_argument("--nearest-faces", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench_inversion")
    p.add_argument("--plot", default=None, help="write PSNR against seconds as this PNG")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    G = load_generator_any(args.generator, "cpu").float().eval()
    load_s = time.perf_counter() - t0
    enc = load_encoder(args.encoder, G) if "encoder" in args.inits else None
    t0 = time.perf_counter()
    if "nearest" in args.inits:
        nearest_bank(G, args.nearest_faces)
    bank_s = time.perf_counter() - t0
    opts = ProjectOptions(
        steps=args.steps,
        lpips=args.lpips,
        proxy_steps=args.proxy_steps,
        proxy_resolution=args.proxy_resolution,
        proxy_refresh=args.proxy_refresh,
    )
    if args.lr is not None:
        opts.lr = args.lr
    projector = Projector(G, opts)
    keep = sorted(k for k in set(args.keep) if 0 <= k <= args.steps)
    rows = []
    for kind, name, target in targets(G, args.seeds, args.photos, out):
        for init in args.inits:
            t_start = time.perf_counter()
            if init == "encoder":
                start = encode(enc, target.image)
            elif init == "nearest":
                start = nearest_latent(G, target.image, args.nearest_faces)
            else:
                start = None
            start_s = time.perf_counter() - t_start
            r = projector.project(target.image, init=start, keep=keep)
            for k in keep:
                psnr, identity = measure(G, target, r.snapshots[k], r.identity_box)
                rows.append(
                    dict(
                        kind=kind,
                        name=name,
                        init=init,
                        step=k,
                        seconds=start_s + r.snapshot_seconds[k],
                        psnr=psnr,
                        identity=identity,
                    )
                )
            last = rows[-1]
            print(
                f"{kind} {name} {init}: {last['psnr']:.2f} dB after {last['step']} steps, {last['seconds']:.1f} s",
                file=sys.stderr,
            )
    report(rows, args, load_s, bank_s, out)
    if args.plot:
        plot(rows, Path(args.plot))
    return 0


def report(rows: list[dict], args: argparse.Namespace, load_s: float, bank_s: float, out: Path) -> None:
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs; torch threads {args.threads}")
    print(
        f"generator load {load_s:.1f} s; nearest bank ({args.nearest_faces} faces, once per generator) {bank_s:.1f} s"
    )
    summary = []
    for kind in ("generated", "photo"):
        sub = [r for r in rows if r["kind"] == kind]
        if not sub:
            continue
        print(
            f"\n{kind} ({len({r['name'] for r in sub})} targets): PSNR at 256 px mean / worst, identity mean / worst, s"
        )
        for init in args.inits:
            for k in sorted({r["step"] for r in sub}):
                at = [r for r in sub if r["init"] == init and r["step"] == k]
                ps = [r["psnr"] for r in at]
                ids = [r["identity"] for r in at if r["identity"] is not None]
                secs = float(np.mean([r["seconds"] for r in at]))
                entry = dict(
                    kind=kind,
                    init=init,
                    step=k,
                    seconds=secs,
                    psnr_mean=float(np.mean(ps)),
                    psnr_worst=float(min(ps)),
                    identity_mean=float(np.mean(ids)) if ids else None,
                    identity_worst=float(max(ids)) if ids else None,
                )
                summary.append(entry)
                ident = f"{entry['identity_mean']:.2f} / {entry['identity_worst']:.2f}" if ids else "n/a"
                print(
                    f"  {init:8s} step {k:4d}  {secs:6.1f} s  {entry['psnr_mean']:6.2f} / {entry['psnr_worst']:6.2f} dB"
                    f"  identity {ident}"
                )
        if kind == "photo":
            for name in sorted({r["name"] for r in sub}):
                for init in args.inits:
                    at = [r for r in sub if r["name"] == name and r["init"] == init]
                    cells = ", ".join(
                        f"{r['step']}: {r['psnr']:.2f} dB"
                        + (f"/{r['identity']:.2f}" if r["identity"] is not None else "")
                        for r in at
                    )
                    print(f"  {name} {init}: {cells}")
    (out / "results.json").write_text(json.dumps({"rows": rows, "summary": summary, "argv": sys.argv}, indent=1))


def plot(rows: list[dict], path: Path) -> None:
    """PSNR (mean over targets) against seconds, one line per start, one panel per target kind."""
    from PIL import Image, ImageDraw

    kinds = [k for k in ("generated", "photo") if any(r["kind"] == k for r in rows)]
    colours = {"mean": (120, 120, 120), "nearest": (40, 140, 60), "encoder": (30, 80, 200)}
    w, h, pad = 520, 360, 50
    img = Image.new("RGB", (w * len(kinds), h), "white")
    d = ImageDraw.Draw(img)
    for panel, kind in enumerate(kinds):
        sub = [r for r in rows if r["kind"] == kind]
        lines = {}
        for init in colours:
            pts = sorted(
                (
                    float(np.mean([r["seconds"] for r in sub if r["init"] == init and r["step"] == k])),
                    float(np.mean([r["psnr"] for r in sub if r["init"] == init and r["step"] == k])),
                )
                for k in sorted({r["step"] for r in sub if r["init"] == init})
            )
            if pts:
                lines[init] = pts
        xs = [x for pts in lines.values() for x, _ in pts]
        ys = [y for pts in lines.values() for _, y in pts]
        x0, x1, y0, y1 = 0.0, max(xs) * 1.05, min(ys) - 1, max(ys) + 1
        ox = panel * w
        d.rectangle([ox + pad, pad, ox + w - pad, h - pad], outline="black")
        for init, pts in lines.items():
            xy = [
                (ox + pad + (w - 2 * pad) * (x - x0) / (x1 - x0), h - pad - (h - 2 * pad) * (y - y0) / (y1 - y0))
                for x, y in pts
            ]
            d.line(xy, fill=colours[init], width=2)
            for cx, cy in xy:
                d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colours[init])
        d.text((ox + pad, 10), f"{kind}: PSNR (dB, 256 px, mean) against wall seconds", fill="black")
        d.text((ox + pad, h - pad + 6), f"0 .. {x1:.0f} s", fill="black")
        d.text((ox + 6, pad), f"{y1:.0f}", fill="black")
        d.text((ox + 6, h - pad - 10), f"{y0:.0f}", fill="black")
        for i, init in enumerate(lines):
            d.text((ox + w - pad - 90, pad + 8 + 14 * i), init, fill=colours[init])
    save_png(np.asarray(img), path)


if __name__ == "__main__":
    sys.exit(main())
