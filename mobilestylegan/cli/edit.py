"""``mobilestylegan-edit``: latents moved along a direction, rendered as strips (see
:mod:`mobilestylegan.edit.directions`).

Per latent a strip ``NAME_DIRECTION.png`` (one image per strength, left to right; with ``--compare`` the teacher's
row under the student's) and ``grid.png`` (every strip); ``edits.json`` records the direction, its sigma, the
strengths, the W+ entries changed and, with ``--compare``, per strength the PSNR (and, with FaceNet installed, the
identity distance) between the student's and the
teacher's edited images (at the smaller resolution) next to the unedited figure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mobilestylegan.cli.common import raise_mmap_threshold
from mobilestylegan.errors import UsageError

EXAMPLES = """examples:
  mobilestylegan-edit --seeds 0-3 --generator ffhq-1024 --direction ganspace:1 --strength -3:3:7 --out edits/
  mobilestylegan-edit proj/face.npy --generator ffhq-1024 --direction sefa:0 --layers 0-7 --out edits/
  mobilestylegan-edit --seeds 0,1 --generator student.pt --compare ffhq-1024 --directions-from compare \\
      --direction ganspace:0 --out edits/      # a direction found on the teacher, applied to both
  mobilestylegan-edit --seeds 5 --generator ffhq-1024 --direction smile_boundary.npy --out edits/
--layers a-b counts the teacher's (StyleGAN2's) W+ entries; a student's entries of the same layer resolutions are
edited, so one direction and one range drive both.
"""


def parse_strengths(text: str) -> list[float]:
    """``-3:3:7`` (start:stop:count) or ``-2,0,2``."""
    try:
        if ":" in text:
            a, b, n = text.split(":")
            n = int(n)
            if n < 1:
                raise ValueError
            return [float(x) for x in np.linspace(float(a), float(b), n)]
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"--strength takes START:STOP:COUNT or a comma list, got {text!r}") from None


def parse_layers(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)-(\d+)", text)
    if not m or int(m.group(1)) > int(m.group(2)):
        raise UsageError(f"--layers takes a range of the teacher's W+ entries such as 0-7, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mobilestylegan-edit", epilog=EXAMPLES,
                                description="Edit latents along GANSpace / SeFa / boundary-file directions.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("latents", nargs="*", metavar="LATENT.npy", help="projected latents (mobilestylegan-project)")
    p.add_argument("--seeds", help="seeded latents instead, e.g. 0-3")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi of seeded latents (default 1)")
    p.add_argument("--generator", required=True, metavar="SOURCE")
    p.add_argument("--direction", required=True, help="ganspace:J, sefa:J or FILE[:row] (.npy/.pt, [k, w_dim])")
    p.add_argument("--strength", default="-3:3:7", help="strengths in sigmas: START:STOP:COUNT or a list")
    p.add_argument("--layers", help="teacher W+ range a-b (inclusive; default: all)")
    p.add_argument("--compare", metavar="TEACHER", help="render the same edit on this generator under each strip")
    p.add_argument("--directions-from", choices=("generator", "compare"), default="generator",
                   help="compute ganspace/sefa on --generator (default) or on --compare")
    p.add_argument("--ignore-hash", action="store_true", help="accept latents projected with another generator")
    p.add_argument("--show-target", action="store_true",
                   help="latent files: put the image each was projected from (named in its .json) first in its strip")
    p.add_argument("--size", type=int, default=None, metavar="PX", help="faces in the strips at PX pixels (default: "
                                                                          "the generator's resolution)")
    p.add_argument("--out", required=True, metavar="DIR")
    return p


@torch.no_grad()
def render(G: torch.nn.Module, ws: torch.Tensor) -> torch.Tensor:
    return torch.cat([G.synthesis(ws[i:i + 1], noise_mode="const", inference=True) for i in range(len(ws))])


def _join_strength(argv: list[str]) -> list[str]:
    """``--strength -3:3:7`` as ``--strength=-3:3:7``: argparse would read a value starting with '-' as an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--strength" and i + 1 < len(argv):
            out.append(f"--strength={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _targets(args: argparse.Namespace, G: torch.nn.Module) -> list[torch.Tensor]:
    """The images the latent files were projected from, as ``[1, 3, R, R]`` in [-1, 1]."""
    from mobilestylegan.cli.project import load_target

    if not args.latents or args.compare:
        raise UsageError("--show-target goes with latent files (and without --compare)")
    out = []
    for p in args.latents:
        desc = Path(p).with_suffix(".json")
        meta = json.loads(desc.read_text()) if desc.is_file() else {}
        image = meta.get("target") or meta.get("image")  # with --align, the aligned crop that was projected
        if not image:
            raise UsageError(f"{desc} names no projected image: --show-target needs latents from "
                             "mobilestylegan-project")
        out.append(load_target(Path(image), G.img_resolution)[0])
    return out


def _identities(student: torch.Tensor, teacher: torch.Tensor) -> list[float | None] | None:
    """Per image, FaceNet's distance of the student's render to the teacher's (None where no face is found); None
    when FaceNet or the face models are not installed."""
    from mobilestylegan.edit import faces
    from mobilestylegan.io.images import to_uint8

    if faces.identity_model_path() is None or faces._package_dir(faces.LANDMARK_PACKAGE[2]) is None:
        return None
    out: list[float | None] = []
    for a, b in zip(to_uint8(student.clamp(-1, 1)), to_uint8(teacher.clamp(-1, 1))):
        try:
            out.append(round(faces.identity_between(b, a), 4))
        except UsageError:
            out.append(None)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_join_strength(list(sys.argv[1:] if argv is None else argv)))
    raise_mmap_threshold(argv)
    try:
        return _run(args)
    except UsageError as err:
        print(f"mobilestylegan-edit: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from mobilestylegan.cli.generate import parse_seeds
    from mobilestylegan.edit import directions as D
    from mobilestylegan.edit.latents import load_latent
    from mobilestylegan.io.images import make_grid, save_png
    from mobilestylegan.io.load import load_generator_any
    from mobilestylegan.student.routing import student_to_teacher_ws
    from mobilestylegan.student.sampling import seeded_z
    from mobilestylegan.student.synthesis import MobileSynthesisNetwork
    from teacher.formats.common import CheckpointError
    from teacher.mapping import truncate
    from teacher.numerics import psnr_db

    if bool(args.latents) == bool(args.seeds):
        raise UsageError("give latent files or --seeds (one of the two)")
    strengths = parse_strengths(args.strength)
    layers = parse_layers(args.layers)
    try:
        G = load_generator_any(args.generator, "cpu").float().eval()
        T = load_generator_any(args.compare, "cpu").float().eval() if args.compare else None
    except CheckpointError as err:
        raise UsageError(str(err)) from None
    if args.directions_from == "compare" and T is None:
        raise UsageError("--directions-from compare needs --compare TEACHER")
    if T is not None and T.w_dim != G.w_dim:
        raise UsageError(f"--compare renders w_dim {T.w_dim}, the generator w_dim {G.w_dim}: they share no W space")
    d = D.resolve(args.direction, T if args.directions_from == "compare" else G)
    if args.seeds:
        seeds = parse_seeds(args.seeds)
        with torch.no_grad():
            w = truncate(G.mapping.embed(seeded_z(seeds, G.z_dim)), G.mapping.w_avg, args.trunc)
        names = [f"seed{s:04d}" for s in seeds]
        ws = w[:, None].repeat(1, G.num_ws, 1)
        ws_t = w[:, None].repeat(1, T.num_ws, 1) if T is not None else None
    else:
        ws = torch.cat([load_latent(p, G, check_hash=not args.ignore_hash) for p in args.latents])
        names = [Path(p).stem for p in args.latents]
        if T is not None:
            if not isinstance(G.synthesis, MobileSynthesisNetwork) or isinstance(T.synthesis, MobileSynthesisNetwork):
                raise UsageError("--compare with latent files maps a student's W+ to a StyleGAN2 teacher's")
            ws_t = student_to_teacher_ws(ws, T.num_ws)
    targets = _targets(args, G) if args.show_target else None
    idx = D.layer_indices(G, layers)
    idx_t = D.layer_indices(T, layers) if T is not None else None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {out}: {err.strerror}") from None
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", d.name)
    strips, report = [], {"direction": d.name, "sigma": d.sigma, "strengths": strengths, "layers": args.layers,
                          "generator_ws": idx, "compare_ws": idx_t, "latents": []}
    for n, name in enumerate(names):
        edited = torch.cat([D.apply(ws[n:n + 1], d, s, idx) for s in strengths])
        imgs = render(G, edited)
        entry = {"name": name}
        if T is not None:
            imgs_t = render(T, torch.cat([D.apply(ws_t[n:n + 1], d, s, idx_t) for s in strengths]))
            size = min(imgs.shape[-1], imgs_t.shape[-1])
            a = F.interpolate(imgs, size=size, mode="area") if imgs.shape[-1] > size else imgs
            b = F.interpolate(imgs_t, size=size, mode="area") if imgs_t.shape[-1] > size else imgs_t
            entry["psnr_db_student_vs_compare"] = [round(float(x), 3) for x in psnr_db(a, b)]
            zero = int(np.argmin(np.abs(np.asarray(strengths))))
            entry["unedited_psnr_db"] = entry["psnr_db_student_vs_compare"][zero] if strengths[zero] == 0 else None
            entry["identity_student_vs_compare"] = _identities(a, b)
            row = torch.cat([a, b])
        else:
            row = imgs
        if targets is not None:
            row = torch.cat([F.interpolate(targets[n], size=row.shape[-1], mode="area")
                             if targets[n].shape[-1] > row.shape[-1] else targets[n], row])
        row = row.clamp(-1, 1)  # what a PNG shows, before any resizing
        if args.size and row.shape[-1] > args.size:
            row = F.interpolate(row, size=args.size, mode="area")
        grid = make_grid(row.clamp(-1, 1), cols=len(strengths) + (targets is not None))
        save_png(grid, out / f"{name}_{tag}.png")
        strips.append(row)
        report["latents"].append(entry)
    save_png(make_grid(torch.cat(strips).clamp(-1, 1), cols=len(strengths) + (targets is not None)), out / "grid.png")
    (out / "edits.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {len(names)} strip(s) and grid.png to {out} ({d.name}, sigma {d.sigma:.3g}, "
          f"{len(idx)} W+ entries of {G.num_ws})")
    for e in report["latents"]:
        if "psnr_db_student_vs_compare" in e:
            print(f"  {e['name']}: student vs compare PSNR by strength {e['psnr_db_student_vs_compare']} dB")
        if e.get("identity_student_vs_compare"):
            print(f"  {e['name']}: identity distance by strength {e['identity_student_vs_compare']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
