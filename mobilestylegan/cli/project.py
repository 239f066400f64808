"""``mobilestylegan-project``: photos (or renders) into a generator's latent space
(see :mod:`mobilestylegan.edit.project`).

Per image NAME, in ``--out``: ``NAME_aligned.png`` (with ``--align``: FFHQ's crop of the photo, the target),
``NAME.npy`` + ``NAME.json`` (the W+ latent, the generator's hash, its num_ws and
live entries), ``NAME_noise.npz`` (with ``--optimize-noise``), ``NAME.png`` (the reconstruction),
``NAME_strip.png`` (target | reconstruction | 4x |difference|), ``NAME_loss.png`` (the loss per step) and one line
of ``projections.jsonl`` (PSNR and MS-SSIM at the loss resolution, the identity distance when FaceNet is installed,
steps, seconds). Ctrl-C stops the current image
and writes what it has.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mobilestylegan.cli.common import raise_mmap_threshold
from mobilestylegan.edit.project import SPACES, ProjectOptions, project
from mobilestylegan.errors import UsageError

EXAMPLES = """examples:
  mobilestylegan-project face.png --generator ffhq-1024 --out proj/                 # W+, 200 steps
  mobilestylegan-project photo.jpg --align --generator ffhq-1024 --out proj/        # any photo: FFHQ's crop first
  mobilestylegan-project a.png b.png --generator student.pt --space w --steps 300 --out proj/
  mobilestylegan-project face.png --generator ffhq-1024 --proxy-steps 150 --steps 200 --out proj/   # faster warm-up
Without --align the image should be an FFHQ-aligned face (eyes and mouth where FFHQ puts them); a non-square image
is centre-cropped. --align needs the face models (bash scripts/setup.sh --faces); the identity distance needs FaceNet
(bash scripts/setup.sh --identity; its training data's licence is non-commercial).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mobilestylegan-project", epilog=EXAMPLES,
                                description="Project images into a generator's W or W+ space.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--generator", required=True, metavar="SOURCE",
                   help="any student or teacher the toolkit loads (ffhq-1024, student.pt, a StyleGAN2 checkpoint)")
    p.add_argument("--space", choices=SPACES, default="wplus", help="optimise one w, or each live W+ entry (default)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=None, help="Adam's peak learning rate (default: ProjectOptions.lr)")
    p.add_argument("--w-noise", type=float, default=None,
                   help="the latent perturbation at the start, in w's spread (default: ProjectOptions.w_noise)")
    p.add_argument("--w-steps", type=int, default=None,
                   help="wplus: the first N steps optimise one shared w (default: ProjectOptions.w_steps)")
    p.add_argument("--proxy-steps", type=int, default=0,
                   help="students: the first N steps on a truncated student at --proxy-resolution (default 0)")
    p.add_argument("--proxy-resolution", type=int, default=128)
    p.add_argument("--loss-resolution", type=int, default=256)
    p.add_argument("--optimize-noise", action="store_true",
                   help="also optimise the noise maps (saved beside the latent; exports with baked noise ignore them)")
    p.add_argument("--align", action="store_true",
                   help="crop each photo the way FFHQ was cropped (largest face; needs bash scripts/setup.sh --faces)")
    p.add_argument("--msssim-weight", type=float, default=1.0)
    p.add_argument("--lpips", choices=("auto", "on", "off"), default="auto",
                   help="add LPIPS-VGG to the loss: auto (default) when VGG16 and LPIPS weights are found")
    p.add_argument("--lpips-weight", type=float, default=1.0)
    p.add_argument("--identity-weight", type=float, default=0.0,
                   help="add W x (1 - cos) of FaceNet embeddings to the loss (default 0: off; needs "
                        "bash scripts/setup.sh --faces --identity)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 ``[H, W, 3]`` (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UsageError(f"{path} is not an image PIL can read ({err})") from None
    return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def load_target(path: Path, resolution: int, align: bool = False) -> tuple[torch.Tensor, list[str], np.ndarray | None]:
    """An image file -> ``[1, 3, R, R]`` in [-1, 1]; notes for the user; FFHQ's 1024 crop with ``align``.

    Without ``align`` the image is centre-cropped to a square and Lanczos-resized."""
    from PIL import Image

    rgb = read_rgb(path)
    notes, aligned = [], None
    if align:
        from mobilestylegan.edit.align import align as ffhq_align

        try:
            a = ffhq_align(rgb, size=1024)
        except UsageError as err:
            raise UsageError(f"{path}: {err}") from None
        if a.face.faces_found > 1:
            notes.append(f"{a.face.faces_found} faces in {path.name}; aligned the largest")
        aligned = a.image
        im = Image.fromarray(aligned)
    else:
        im = Image.fromarray(rgb)
        if im.width != im.height:
            s = min(im.size)
            left, top = (im.width - s) // 2, (im.height - s) // 2
            im = im.crop((left, top, left + s, top + s))
            notes.append(f"centre-cropped {path.name} to {s}x{s}")
    if im.width != resolution:
        im = im.resize((resolution, resolution), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous(), notes, aligned


def perceptual_term(mode: str, size: int):
    """LPIPS-VGG for the loss, or None; and a note when ``auto`` leaves it out. ``on`` without weights: UsageError."""
    if mode == "off":
        return None, None
    from mobilestylegan.metrics.measures import PerceptualDistance, find_lpips_weights, load_lpips_heads
    from mobilestylegan.nets.vgg import VGGWeightsNotFoundError, load_vgg16_full

    try:
        heads_path = find_lpips_weights()
        if heads_path is None:
            raise FileNotFoundError("LPIPS heads not found (pip install --no-deps lpips==0.1.4, or set "
                                    "$MOBILESTYLEGAN_LPIPS to its weights/v0.1/vgg.pth)")
        vgg, _ = load_vgg16_full(None, classifier=False)
    except (FileNotFoundError, VGGWeightsNotFoundError) as err:
        if mode == "on":
            raise UsageError(f"--lpips on: {err}") from None
        return None, f"LPIPS left out of the loss: {err}"
    return PerceptualDistance(vgg, load_lpips_heads(heads_path), size), None


def identity_or_note(target: np.ndarray, other: np.ndarray, box: np.ndarray | None = None
                     ) -> tuple[float | None, str | None]:
    """The identity distance of a reconstruction to its target (on ``box``, by default the target's face), or None
    and why not."""
    from mobilestylegan.edit.faces import identity_between

    try:
        return identity_between(target, other, box), None
    except UsageError as err:
        return None, f"identity distance not measured: {err}"


def loss_plot(losses: list[float], phases: list[str], path: Path, size: tuple[int, int] = (640, 320)) -> None:
    """log10(loss) per step as a line (proxy steps grey, full steps blue) on a white canvas, with its range."""
    from PIL import Image, ImageDraw

    from mobilestylegan.io.images import save_png

    w, h, pad = size[0], size[1], 40
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    y = [math.log10(max(v, 1e-12)) for v in losses]
    lo, hi = min(y), max(y)
    hi = hi if hi > lo else lo + 1
    pts = [(pad + (w - 2 * pad) * i / max(1, len(y) - 1), h - pad - (h - 2 * pad) * (v - lo) / (hi - lo))
           for i, v in enumerate(y)]
    d.rectangle([pad, pad, w - pad, h - pad], outline="black")
    for i in range(1, len(pts)):
        d.line([pts[i - 1], pts[i]], fill=(150, 150, 150) if phases[i] == "proxy" else (30, 80, 200), width=2)
    d.text((pad, 8), f"loss per step (log10): {10**hi:.3g} .. {10**lo:.3g}; grey: proxy warm-up", fill="black")
    d.text((pad, h - pad + 8), f"0 .. {len(y)} steps", fill="black")
    save_png(np.asarray(img), path)


def strip(target: torch.Tensor, recon: torch.Tensor) -> np.ndarray:
    """target | reconstruction | 4x |difference| as one uint8 image."""
    from mobilestylegan.io.images import to_uint8

    diff = ((recon - target).abs() * 4 - 1).clamp(-1, 1)
    return np.concatenate([to_uint8(t)[0] for t in (target, recon.clamp(-1, 1), diff)], axis=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_mmap_threshold(argv)
    from tqdm import tqdm

    from mobilestylegan.edit.latents import save_latent
    from mobilestylegan.io.arrays import save_npz
    from mobilestylegan.io.images import save_png, to_uint8
    from mobilestylegan.io.load import load_generator_any
    from teacher.formats.common import CheckpointError
    from teacher.fs import OutputPathError

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        G = load_generator_any(args.generator, "cpu").float().eval()
        out.mkdir(parents=True, exist_ok=True)
        opts = ProjectOptions(space=args.space, steps=args.steps, loss_resolution=args.loss_resolution,
                              optimize_noise=args.optimize_noise, msssim_weight=args.msssim_weight,
                              perceptual_weight=args.lpips_weight, identity_weight=args.identity_weight,
                              proxy_steps=args.proxy_steps, proxy_resolution=args.proxy_resolution, seed=args.seed)
        for name in ("lr", "w_noise", "w_steps"):
            if getattr(args, name) is not None:
                setattr(opts, name, getattr(args, name))
        opts.check(G)
        if args.align or opts.identity_weight:  # missing face models: one error before any work
            from mobilestylegan.edit.faces import identity_network, landmark_model_dir

            landmark_model_dir()
            if opts.identity_weight:
                identity_network()
        targets = [(Path(p), *load_target(Path(p), G.img_resolution, args.align)) for p in args.images]
        perceptual, lpips_note = perceptual_term(args.lpips, min(opts.loss_resolution, G.img_resolution))
    except (UsageError, CheckpointError, OutputPathError) as err:
        print(f"mobilestylegan-project: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"mobilestylegan-project: error: cannot create {out}: {err.strerror}", file=sys.stderr)
        return 2
    if lpips_note:
        print(f"note: {lpips_note}", file=sys.stderr)
    interrupted = False
    identity_said = False
    for path, target, notes, aligned in targets:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        bar = tqdm(total=opts.steps, desc=path.name, unit="step", disable=args.quiet, leave=False)

        def on_step(step: int, loss: float, phase: str) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{phase} loss {loss:.4g}")

        try:
            identity_loss = None
            if opts.identity_weight:
                from mobilestylegan.edit.faces import IdentityLoss

                identity_loss = IdentityLoss(to_uint8(target)[0])
            r = project(G, target, opts, on_step=on_step, perceptual=perceptual, identity=identity_loss)
        except UsageError as err:
            bar.close()
            print(f"mobilestylegan-project: error: {err}", file=sys.stderr)
            return 2
        bar.close()
        name = path.stem
        if aligned is not None:
            save_png(aligned, out / f"{name}_aligned.png")
        meta = {"space": opts.space, "live_ws": r.live, "steps": r.steps_done, "source": str(args.generator),
                "image": str(path), "psnr_db": round(r.psnr_db, 3), "loss_resolution": min(opts.loss_resolution,
                                                                                            G.img_resolution)}
        if aligned is not None:
            meta["target"] = str(out / f"{name}_aligned.png")  # the image projected (FFHQ's crop of the photo)
        save_latent(out / f"{name}.npy", r.ws, G, meta)
        if r.noise is not None:
            arrays = {f"noise{i}": m.numpy() for i, m in enumerate(r.noise)}
            save_npz(out / f"{name}_noise.npz", **arrays)
        recon = to_uint8(r.image.clamp(-1, 1))[0]
        save_png(recon, out / f"{name}.png")
        identity, why = identity_or_note(to_uint8(target)[0], recon,
                                         identity_loss.box if identity_loss is not None else None)
        if why and not identity_said:
            print(f"note: {why}", file=sys.stderr)
            identity_said = True
        save_png(strip(target, r.image), out / f"{name}_strip.png")
        loss_plot(r.losses, r.phases, out / f"{name}_loss.png")
        line = {"image": str(path), "latent": str(out / f"{name}.npy"), "space": opts.space,
                "psnr_db": round(r.psnr_db, 3), "msssim": None if math.isnan(r.msssim) else round(r.msssim, 5),
                "resolution": meta["loss_resolution"],
                "identity_distance": None if identity is None else round(identity, 4),
                "aligned": aligned is not None, "lpips": perceptual is not None,
                "identity_weight": opts.identity_weight, "steps": r.steps_done,
                "proxy_steps": min(opts.proxy_steps, r.steps_done), "seconds": round(r.seconds, 2),
                "interrupted": r.interrupted}
        with open(out / "projections.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
        print(json.dumps(line))
        if r.interrupted:
            interrupted = True
            break
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
