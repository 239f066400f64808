"""What ``mobilestylegan-project`` writes per image into its output folder.

``NAME_aligned.png`` (with alignment: FFHQ's crop of the photo, the image projected), ``NAME.npy`` + ``NAME.json``
(the W+ latent and its description), ``NAME_noise.npz`` (optimised noise maps), ``NAME.png`` (the reconstruction),
``NAME_strip.png`` (target | reconstruction | 4x |difference|), ``NAME_loss.png`` (the loss per step) and one line of
``projections.jsonl``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilestylegan.edit.faces import identity_or_reason
from mobilestylegan.edit.latents import save_latent
from mobilestylegan.edit.project import Projection, ProjectOptions
from mobilestylegan.edit.target_images import TargetImage
from mobilestylegan.io.arrays import save_npz
from mobilestylegan.io.images import difference_strip, save_png, to_uint8

LINES_FILE = "projections.jsonl"


def loss_plot(losses: list[float], phases: list[str], path: Path, size: tuple[int, int] = (640, 320)) -> None:
    """log10(loss) per step as a line (proxy steps grey, full steps blue) on a white canvas, with its range, as PNG."""
    from PIL import Image, ImageDraw

    w, h, pad = size[0], size[1], 40
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    if not losses:  # --steps 0: the start latent as it is
        d.text((pad, h // 2), "0 optimisation steps: the start latent, unrefined", fill="black")
        save_png(np.asarray(img), path)
        return
    y = [math.log10(max(v, 1e-12)) for v in losses]
    lo, hi = min(y), max(y)
    hi = hi if hi > lo else lo + 1
    pts = [
        (pad + (w - 2 * pad) * i / max(1, len(y) - 1), h - pad - (h - 2 * pad) * (v - lo) / (hi - lo))
        for i, v in enumerate(y)
    ]
    d.rectangle([pad, pad, w - pad, h - pad], outline="black")
    for i in range(1, len(pts)):
        d.line([pts[i - 1], pts[i]], fill=(150, 150, 150) if phases[i] == "proxy" else (30, 80, 200), width=2)
    d.text((pad, 8), f"loss per step (log10): {10**hi:.3g} .. {10**lo:.3g}; grey: proxy warm-up", fill="black")
    d.text((pad, h - pad + 8), f"0 .. {len(y)} steps", fill="black")
    save_png(np.asarray(img), path)


def write_projection(
    out: Path, target: TargetImage, r: Projection, G: torch.nn.Module, opts: ProjectOptions, source: str, lpips: bool
) -> tuple[dict[str, Any], str | None]:
    """Write the files of ``target``'s projection ``r`` into ``out`` and append its line to ``projections.jsonl``.

    ``source`` names the generator ``G`` in the latent's description, ``lpips`` says whether LPIPS was in the loss.
    Returns the line (the image, the latent file, PSNR and MS-SSIM at the loss resolution, the identity distance,
    how the projection ran) and, when the identity distance could not be measured, why.
    """
    name = target.path.stem
    if target.aligned is not None:
        save_png(target.aligned, out / f"{name}_aligned.png")
    meta = _save_latent(out / f"{name}.npy", target, r, G, opts, source)
    if r.noise is not None:
        save_npz(out / f"{name}_noise.npz", **{f"noise{i}": m.numpy() for i, m in enumerate(r.noise)})
    recon = to_uint8(r.image.clamp(-1, 1))[0]
    save_png(recon, out / f"{name}.png")
    identity, why = identity_or_reason(to_uint8(target.image)[0], recon, r.identity_box)
    save_png(difference_strip(target.image, r.image), out / f"{name}_strip.png")
    loss_plot(r.losses, r.phases, out / f"{name}_loss.png")
    line = {
        "image": str(target.path),
        "latent": str(out / f"{name}.npy"),
        "space": opts.space,
        "init": r.init,
        "psnr_db": round(r.psnr_db, 3),
        "msssim": None if math.isnan(r.msssim) else round(r.msssim, 5),
        "resolution": meta["loss_resolution"],
        "identity_distance": None if identity is None else round(identity, 4),
        "aligned": target.aligned is not None,
        "lpips": lpips,
        "identity_weight": opts.identity_weight,
        "steps": r.steps_done,
        "proxy_steps": min(opts.proxy_steps, r.steps_done),
        "seconds": round(r.seconds, 2),
        "interrupted": r.interrupted,
    }
    with open(out / LINES_FILE, "a") as fh:
        fh.write(json.dumps(line) + "\n")
    return line, why


def _save_latent(
    path: Path, target: TargetImage, r: Projection, G: torch.nn.Module, opts: ProjectOptions, source: str
) -> dict[str, Any]:
    """Save the latent and its description (what :func:`~mobilestylegan.edit.latents.projected_image` reads back);
    returns the description's projection part."""
    meta = {
        "space": opts.space,
        "init": r.init,
        "live_ws": r.live,
        "steps": r.steps_done,
        "source": source,
        "image": str(target.path),
        "psnr_db": round(r.psnr_db, 3),
        "loss_resolution": min(opts.loss_resolution, G.img_resolution),
    }
    if target.aligned is not None:
        meta["target"] = str(path.with_name(f"{target.path.stem}_aligned.png"))  # the image projected
    save_latent(path, r.ws, G, meta)
    return meta


__all__ = ["LINES_FILE", "loss_plot", "write_projection"]
