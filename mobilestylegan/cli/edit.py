"""``mobilestylegan-edit``: latents moved along a direction, rendered as strips (see
:mod:`mobilestylegan.edit.directions` and :mod:`mobilestylegan.edit.strips`).

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilestylegan.cli.common import parse_seeds, raise_mmap_threshold
from mobilestylegan.edit import directions as D
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
    """``a-b``, a range of the teacher's W+ entries (inclusive), or None for all of them."""
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)-(\d+)", text)
    if not m or int(m.group(1)) > int(m.group(2)):
        raise UsageError(f"--layers takes a range of the teacher's W+ entries such as 0-7, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = argparse.ArgumentParser(
        prog="mobilestylegan-edit",
        epilog=EXAMPLES,
        description="Edit latents along GANSpace / SeFa / boundary-file directions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("latents", nargs="*", metavar="LATENT.npy", help="projected latents (mobilestylegan-project)")
    p.add_argument("--seeds", help="seeded latents instead, e.g. 0-3")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi of seeded latents (default 1)")
    p.add_argument("--generator", required=True, metavar="SOURCE")
    p.add_argument("--direction", required=True, help="ganspace:J, sefa:J or FILE[:row] (.npy/.pt, [k, w_dim])")
    p.add_argument("--strength", default="-3:3:7", help="strengths in sigmas: START:STOP:COUNT or a list")
    p.add_argument("--layers", help="teacher W+ range a-b (inclusive; default: all)")
    p.add_argument("--compare", metavar="TEACHER", help="render the same edit on this generator under each strip")
    p.add_argument(
        "--directions-from",
        choices=("generator", "compare"),
        default="generator",
        help="compute ganspace/sefa on --generator (default) or on --compare",
    )
    p.add_argument("--ignore-hash", action="store_true", help="accept latents projected with another generator")
    p.add_argument(
        "--show-target",
        action="store_true",
        help="latent files: put the image each was projected from (named in its .json) first in its strip",
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        metavar="PX",
        help="faces in the strips at PX pixels (default: the generator's resolution)",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    return p


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


def main(argv: Sequence[str] | None = None) -> int:
    """Edit each latent and write its strip, the grid and edits.json; 0, or 2 on a usage error."""
    args = build_parser().parse_args(_join_strength(list(sys.argv[1:] if argv is None else argv)))
    raise_mmap_threshold(argv)
    try:
        return _run(args)
    except UsageError as err:
        print(f"mobilestylegan-edit: error: {err}", file=sys.stderr)
        return 2


def _generators(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """The generator, and the one ``--compare`` names (or None); they must share their W space."""
    from mobilestylegan.io.load import load_generator_any
    from teacher.formats.common import CheckpointError

    try:
        G = load_generator_any(args.generator, "cpu").float().eval()
        T = load_generator_any(args.compare, "cpu").float().eval() if args.compare else None
    except CheckpointError as err:
        raise UsageError(str(err)) from None
    if args.directions_from == "compare" and T is None:
        raise UsageError("--directions-from compare needs --compare TEACHER")
    if T is not None and T.w_dim != G.w_dim:
        raise UsageError(f"--compare renders w_dim {T.w_dim}, the generator w_dim {G.w_dim}: they share no W space")
    return G, T


def _latents(
    args: argparse.Namespace, G: torch.nn.Module, T: torch.nn.Module | None
) -> tuple[list[str], torch.Tensor, torch.Tensor | None]:
    """Names and W+ latents of ``--seeds`` or of the latent files, for the generator and for ``--compare``."""
    from mobilestylegan.edit.latents import load_latent, seeded_w
    from mobilestylegan.student.routing import student_to_teacher_ws
    from mobilestylegan.student.synthesis import MobileSynthesisNetwork

    if args.seeds:
        seeds = parse_seeds(args.seeds)
        w = seeded_w(G, seeds, args.trunc)
        ws_t = w[:, None].repeat(1, T.num_ws, 1) if T is not None else None
        return [f"seed{s:04d}" for s in seeds], w[:, None].repeat(1, G.num_ws, 1), ws_t
    ws = torch.cat([load_latent(p, G, check_hash=not args.ignore_hash) for p in args.latents])
    names = [Path(p).stem for p in args.latents]
    if T is None:
        return names, ws, None
    if not isinstance(G.synthesis, MobileSynthesisNetwork) or isinstance(T.synthesis, MobileSynthesisNetwork):
        raise UsageError("--compare with latent files maps a student's W+ to a StyleGAN2 teacher's")
    return names, ws, student_to_teacher_ws(ws, T.num_ws)


def _targets(args: argparse.Namespace, G: torch.nn.Module) -> list[torch.Tensor]:
    """The images the latent files were projected from, as ``[1, 3, R, R]`` in [-1, 1]."""
    from mobilestylegan.edit.latents import projected_image
    from mobilestylegan.edit.target_images import load_target

    if not args.latents or args.compare:
        raise UsageError("--show-target goes with latent files (and without --compare)")
    out = []
    for p in args.latents:
        image = projected_image(p)
        if image is None:
            raise UsageError(
                f"{Path(p).with_suffix('.json')} names no projected image: --show-target needs latents "
                "from mobilestylegan-project"
            )
        out.append(load_target(image, G.img_resolution).image)
    return out


def _out_dir(args: argparse.Namespace) -> Path:
    """The output folder, created."""
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {out}: {err.strerror}") from None
    return out


def _run(args: argparse.Namespace) -> int:
    """The command after parsing: every latent's strip, then the grid, edits.json and the summary lines."""
    from mobilestylegan.edit.strips import compare_edits, edited_images, strip_row
    from mobilestylegan.io.images import make_grid, save_png

    if bool(args.latents) == bool(args.seeds):
        raise UsageError("give latent files or --seeds (one of the two)")
    strengths = parse_strengths(args.strength)
    layers = parse_layers(args.layers)
    G, T = _generators(args)
    d = D.resolve(args.direction, T if args.directions_from == "compare" else G)
    names, ws, ws_t = _latents(args, G, T)
    targets = _targets(args, G) if args.show_target else None
    idx = D.layer_indices(G, layers)
    idx_t = D.layer_indices(T, layers) if T is not None else None
    out = _out_dir(args)
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", d.name)
    cols = len(strengths) + (targets is not None)
    strips, report = (
        [],
        {
            "direction": d.name,
            "sigma": d.sigma,
            "strengths": strengths,
            "layers": args.layers,
            "generator_ws": idx,
            "compare_ws": idx_t,
            "latents": [],
        },
    )
    for n, name in enumerate(names):
        row, entry = edited_images(G, ws[n : n + 1], d, strengths, idx), {"name": name}
        if T is not None:
            row, compared = compare_edits(row, edited_images(T, ws_t[n : n + 1], d, strengths, idx_t), strengths)
            entry.update(compared)
        row = strip_row(row, targets[n] if targets is not None else None, args.size)
        save_png(make_grid(row, cols=cols), out / f"{name}_{tag}.png")
        strips.append(row)
        report["latents"].append(entry)
    save_png(make_grid(torch.cat(strips).clamp(-1, 1), cols=cols), out / "grid.png")
    (out / "edits.json").write_text(json.dumps(report, indent=1) + "\n")
    _print_summary(report, out, d, len(idx), G.num_ws)
    return 0


def _print_summary(report: dict[str, Any], out: Path, d: D.Direction, n_edited: int, num_ws: int) -> None:
    """What was written, and per latent the comparison's PSNR and identity distance by strength."""
    print(
        f"wrote {len(report['latents'])} strip(s) and grid.png to {out} ({d.name}, sigma {d.sigma:.3g}, "
        f"{n_edited} W+ entries of {num_ws})"
    )
    for e in report["latents"]:
        if "psnr_db_student_vs_compare" in e:
            print(f"  {e['name']}: student vs compare PSNR by strength {e['psnr_db_student_vs_compare']} dB")
        if e.get("identity_student_vs_compare"):
            print(f"  {e['name']}: identity distance by strength {e['identity_student_vs_compare']}")


if __name__ == "__main__":
    sys.exit(main())
