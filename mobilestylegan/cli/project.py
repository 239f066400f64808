"""``mobilestylegan-project``: photos (or renders) into a generator's latent space
(see :mod:`mobilestylegan.edit.project`; the files are written by :mod:`mobilestylegan.edit.outputs`).

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
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from mobilestylegan.cli.common import raise_mmap_threshold
from mobilestylegan.edit.encoder import INITS
from mobilestylegan.edit.project import LPIPS_MODES, SPACES, Projection, ProjectOptions, Projector
from mobilestylegan.edit.target_images import TargetImage
from mobilestylegan.errors import UsageError

EXAMPLES = """examples:
  mobilestylegan-project face.png --generator ffhq-1024 --out proj/                 # W+, 200 steps
  mobilestylegan-project photo.jpg --align --generator ffhq-1024 --out proj/        # any photo: FFHQ's crop first
  mobilestylegan-project a.png b.png --generator student.pt --space w --steps 300 --out proj/
  mobilestylegan-project face.png --generator ffhq-1024 --steps 58 --proxy-steps 50 --out proj/  # 50 cheap steps
  mobilestylegan-project face.png --generator student.pt --encoder enc/encoder.safetensors --steps 0 --out proj/
  mobilestylegan-project face.png --generator ffhq-1024 --init nearest --steps 100 --out proj/
Without --align the image should be an FFHQ-aligned face (eyes and mouth where FFHQ puts them); a non-square image
is centre-cropped. --align needs the face models (bash scripts/setup.sh --faces); the identity distance needs FaceNet
(bash scripts/setup.sh --identity; its training data's licence is non-commercial).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = argparse.ArgumentParser(
        prog="mobilestylegan-project",
        epilog=EXAMPLES,
        description="Project images into a generator's W or W+ space.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--generator",
        required=True,
        metavar="SOURCE",
        help="any student or teacher the toolkit loads (ffhq-1024, student.pt, a StyleGAN2 checkpoint)",
    )
    p.add_argument("--space", choices=SPACES, default="wplus", help="optimise one w, or each live W+ entry (default)")
    p.add_argument(
        "--init",
        choices=INITS,
        default=None,
        help="where the optimisation starts: encoder (default when the generator has one, or with --encoder), the "
        "mean w, or the nearest of pre-rendered faces",
    )
    p.add_argument(
        "--encoder",
        default=None,
        metavar="FILE",
        help="an encoder file for --init encoder (train.py experiment=encoder_... writes one); default: the one "
        "shipped for the generator, if any",
    )
    p.add_argument("--nearest-faces", type=int, default=512, help="faces rendered (once, cached) for --init nearest")
    p.add_argument("--steps", type=int, default=200, help="optimisation steps (0: the start latent as it is)")
    p.add_argument("--lr", type=float, default=None, help="Adam's peak learning rate (default: ProjectOptions.lr)")
    p.add_argument(
        "--w-noise",
        type=float,
        default=None,
        help="the latent perturbation at the start, in w's spread (default: ProjectOptions.w_noise)",
    )
    p.add_argument(
        "--w-steps",
        type=int,
        default=None,
        help="wplus: the first N steps optimise one shared w (default: ProjectOptions.w_steps)",
    )
    p.add_argument(
        "--proxy-steps",
        type=int,
        default=0,
        help="students: the first N steps on a truncated student at --proxy-resolution (default 0)",
    )
    p.add_argument("--proxy-resolution", type=int, default=128)
    p.add_argument(
        "--proxy-refresh",
        type=int,
        default=10,
        help="proxy steps between two full renders that anchor the proxy's image (0: never; default 10)",
    )
    p.add_argument("--loss-resolution", type=int, default=256)
    p.add_argument(
        "--optimize-noise",
        action="store_true",
        help="also optimise the noise maps (saved beside the latent; exports with baked noise ignore them)",
    )
    p.add_argument(
        "--align",
        action="store_true",
        help="crop each photo the way FFHQ was cropped (largest face; needs bash scripts/setup.sh --faces)",
    )
    p.add_argument("--msssim-weight", type=float, default=1.0)
    p.add_argument(
        "--lpips",
        choices=LPIPS_MODES,
        default="auto",
        help="add LPIPS-VGG to the loss: auto (default) when VGG16 and LPIPS weights are found",
    )
    p.add_argument("--lpips-weight", type=float, default=1.0)
    p.add_argument(
        "--identity-weight",
        type=float,
        default=0.0,
        help="add W x (1 - cos) of FaceNet embeddings to the loss (default 0: off; needs "
        "bash scripts/setup.sh --faces --identity)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _options(args: argparse.Namespace) -> ProjectOptions:
    """The projection options the arguments give (ProjectOptions' own defaults where an option is left out)."""
    opts = ProjectOptions(
        space=args.space,
        steps=args.steps,
        loss_resolution=args.loss_resolution,
        optimize_noise=args.optimize_noise,
        msssim_weight=args.msssim_weight,
        lpips=args.lpips,
        perceptual_weight=args.lpips_weight,
        identity_weight=args.identity_weight,
        proxy_steps=args.proxy_steps,
        proxy_resolution=args.proxy_resolution,
        proxy_refresh=args.proxy_refresh,
        seed=args.seed,
    )
    for name in ("lr", "w_noise", "w_steps"):
        if getattr(args, name) is not None:
            setattr(opts, name, getattr(args, name))
    return opts


class _Start:
    """Where each projection starts (``--init``): the encoder's latent, the nearest bank face's, or the mean."""

    def __init__(self, args: argparse.Namespace, G: torch.nn.Module) -> None:
        from mobilestylegan.edit.encoder import load_encoder, shipped_encoder_for

        self.G, self.nearest_faces, self.encoder, self.note = G, args.nearest_faces, None, None
        init = args.init
        if init is None:
            source = args.encoder or shipped_encoder_for(G)
            init = "encoder" if source else "mean"
            if not source:
                self.note = "no encoder for this generator (give one with --encoder FILE): starting from the mean w"
        elif init == "encoder":
            source = args.encoder or shipped_encoder_for(G)
            if not source:
                raise UsageError(
                    "--init encoder: no encoder ships for this generator; give one with --encoder FILE (train it with "
                    "`python train.py experiment=encoder_ffhq1024 encoder.generator=SOURCE`) or use --init mean"
                )
        elif args.encoder:
            raise UsageError(f"--encoder is for --init encoder, not --init {init}")
        if init == "encoder":
            self.encoder = load_encoder(source, G)
        self.init = init

    def latent(self, target: torch.Tensor) -> torch.Tensor | None:
        """The start latent for ``target`` (None: the mean w, computed by the projector)."""
        if self.init == "encoder":
            from mobilestylegan.edit.encoder import encode

            return encode(self.encoder, target)
        if self.init == "nearest":
            from mobilestylegan.edit.encoder import nearest_latent

            return nearest_latent(self.G, target, self.nearest_faces)
        return None


def _prepare(args: argparse.Namespace, out: Path) -> tuple[torch.nn.Module, Projector, list[TargetImage], _Start]:
    """The generator, the projector, every target and the start, checked before any projection starts (missing face
    models, unreadable images, a missing or mismatched encoder and LPIPS asked for without its weights are errors
    here)."""
    from mobilestylegan.edit.faces import require_face_models
    from mobilestylegan.edit.target_images import load_target
    from mobilestylegan.io.load import load_generator_any

    G = load_generator_any(args.generator, "cpu").float().eval()
    out.mkdir(parents=True, exist_ok=True)
    opts = _options(args)
    opts.check(G)
    if args.align or opts.identity_weight:
        require_face_models(identity=bool(opts.identity_weight))
    if args.nearest_faces < 1:
        raise UsageError(f"--nearest-faces must be >= 1, got {args.nearest_faces}")
    start = _Start(args, G)
    targets = [load_target(Path(p), G.img_resolution, args.align) for p in args.images]
    return G, Projector(G, opts), targets, start


def _project_one(projector: Projector, target: TargetImage, start: _Start, quiet: bool) -> Projection:
    """One projection from its start latent, with a progress bar (the start's time counts in the projection's)."""
    import time

    from tqdm import tqdm

    t0 = time.perf_counter()
    init = start.latent(target.image)
    with tqdm(total=projector.opts.steps, desc=target.path.name, unit="step", disable=quiet, leave=False) as bar:

        def on_step(step: int, loss: float, phase: str) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{phase} loss {loss:.4g}")

        r = projector.project(target.image, on_step=on_step, init=init)
    r.init, r.seconds = start.init, time.perf_counter() - t0
    return r


def main(argv: Sequence[str] | None = None) -> int:
    """Project each image and write its files; 0, 2 on a usage error, 130 when Ctrl-C stopped an image."""
    args = build_parser().parse_args(argv)
    raise_mmap_threshold(argv)
    from mobilestylegan.edit.outputs import write_projection
    from teacher.formats.common import CheckpointError
    from teacher.fs import OutputPathError

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        G, projector, targets, start = _prepare(args, out)
    except (UsageError, CheckpointError, OutputPathError) as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot create {out}: {err.strerror}")
    _note(projector.note)
    _note(start.note)
    identity_said = False
    for target in targets:
        for note in target.notes:
            _note(note)
        try:
            r = _project_one(projector, target, start, args.quiet)
        except UsageError as err:
            return _error(str(err))
        line, why = write_projection(
            out, target, r, G, projector.opts, str(args.generator), lpips=projector.perceptual is not None
        )
        if why and not identity_said:
            _note(why)
            identity_said = True
        print(json.dumps(line))
        if r.interrupted:
            return 130
    return 0


def _note(text: str | None) -> None:
    """A note for the user on stderr (nothing for None)."""
    if text:
        print(f"note: {text}", file=sys.stderr)


def _error(text: str) -> int:
    """Print the error as the command's one line on stderr; the exit status 2."""
    print(f"mobilestylegan-project: error: {text}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
