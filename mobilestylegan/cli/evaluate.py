"""``mobilestylegan-eval``: FID, KID, precision/recall, PPL, student-vs-teacher fidelity and size, with every
convention written next to every number (one JSON line per metric, plus a table).

A SOURCE, on either side, is a generator (checkpoint path or pretrained name), a folder of images
(png/jpg, searched recursively, all of them used) or a statistics file (``.npz`` written by
``--save-ref-stats``). Conventions (see README "Evaluation"):

- Generators: sample i uses ``z = seeded_z(seed + i)``, truncation ``--trunc`` and random noise drawn per
  sample from its own seeded stream, so results do not depend on the batch size. Two generators on the
  two sides render the same z, the same w (the reference's mapping, broadcast) and the same noise maps.
- FID/KID: pytorch-fid's Inception-v3 port (``pt_inception-2015-12-05``), pool3 2048-d, 299 px,
  ``--resize clean`` (uint8 + PIL bicubic, clean-fid) or ``legacy`` (float + bilinear, pytorch-fid).
- Precision/recall: VGG16 fc2 (4096-d, after ReLU) of the same preprocessing at 224 px, k = 3.
- PPL (W space) and the fidelity perceptual distance: LPIPS-VGG (if LPIPS's heads are found) or the
  unit-normalised VGG16 feature distance, at 256 px.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mobilestylegan.errors import UsageError
from mobilestylegan.metrics.evaluator import EvalOptions, Evaluator
from mobilestylegan.metrics.registry import REGISTRY, evaluate
from mobilestylegan.metrics.sources import open_source
from mobilestylegan.nets.inception import InceptionWeightsNotFoundError
from mobilestylegan.nets.vgg import VGGWeightsNotFoundError
from teacher.formats.common import CheckpointError
from teacher.fs import OutputPathError

EXAMPLES = """examples:
  mobilestylegan-eval --gen student.pt --ref ffhq1024/ --metrics fid,kid,pr --num 50000
  mobilestylegan-eval --gen student.pt --gen teacher.pkl --ref ffhq_stats.npz --metrics fid,kid
  mobilestylegan-eval --gen student.pt --ref teacher.pkl --metrics fidelity,fid,complexity --num 1000
  mobilestylegan-eval --gen ffhq-1024 --metrics ppl,complexity --num 10000 --device cuda --out results.jsonl
  mobilestylegan-eval --gen images/ --ref ffhq1024/ --save-ref-stats ffhq_stats.npz --metrics fid
metrics: fid, kid, pr (precision + recall), ppl, fidelity (psnr, l1, perceptual; --ref a generator),
complexity (params, macs). Weights (never downloaded): --inception / $MOBILESTYLEGAN_INCEPTION,
--vgg / $MOBILESTYLEGAN_VGG16, --lpips / $MOBILESTYLEGAN_LPIPS (optional).
"""
METRICS = tuple(REGISTRY)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobilestylegan-eval",
        description="Evaluate generators with stated conventions.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--gen",
        action="append",
        required=True,
        metavar="SOURCE",
        help="generator, image folder or statistics file to evaluate (repeat for several)",
    )
    p.add_argument("--ref", metavar="SOURCE", help="reference: image folder, statistics file or generator (teacher)")
    p.add_argument("--metrics", default="fid,kid", help=f"comma-separated from {', '.join(METRICS)} (default fid,kid)")
    p.add_argument("--num", type=int, default=50000, help="samples per generator (default 50000; folders: all images)")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i (default 0)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1 = none)")
    p.add_argument(
        "--resize",
        choices=["clean", "legacy"],
        default="clean",
        help="clean: uint8 + PIL bicubic (clean-fid); legacy: float + bilinear (pytorch-fid)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--out", type=Path, help="append one JSON line per metric to this file")
    p.add_argument("--save-ref-stats", type=Path, metavar="FILE.npz", help="write the reference's statistics here")
    p.add_argument(
        "--inception",
        help="pt_inception-2015-12-05-6726825d.pth (default: $MOBILESTYLEGAN_INCEPTION or "
        "~/.cache/mobilestylegan/weights/)",
    )
    p.add_argument(
        "--vgg", help="vgg16-397923af.pth (default: $MOBILESTYLEGAN_VGG16 or ~/.cache/mobilestylegan/weights/)"
    )
    p.add_argument(
        "--lpips",
        help="LPIPS heads lpips/weights/v0.1/vgg.pth (default: $MOBILESTYLEGAN_LPIPS or an "
        "installed lpips package; without them PPL uses the vgg-unit distance)",
    )
    p.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="TESTS ONLY: seeded random Inception/VGG weights when files are missing; every number is "
        "marked comparable=false",
    )
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--ppl-eps", type=float, default=1e-4)
    p.add_argument("--ppl-sampling", choices=["full", "end"], default="full", help="t ~ U(0,1) (full) or t = 0 (end)")
    p.add_argument("--no-ppl-crop", dest="ppl_crop", action="store_false", help="no StyleGAN face crop before PPL")
    p.add_argument("--inception-size", type=int, default=299, help="non-standard values make numbers non-comparable")
    p.add_argument("--pr-size", type=int, default=224, help="VGG16 input for precision/recall (standard 224)")
    p.add_argument("--lpips-size", type=int, default=256, help="perceptual-distance input for ppl/fidelity (256)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _validate(a: argparse.Namespace) -> list[str]:
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise UsageError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}")
    for name, low in (
        ("num", 2),
        ("batch_size", 1),
        ("kid_subsets", 1),
        ("kid_subset_size", 2),
        ("inception_size", 75),
        ("pr_size", 32),
        ("lpips_size", 16),
    ):
        if getattr(a, name) < low:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(a, name)}")
    if not 0 < a.ppl_eps < 1:
        raise UsageError(f"--ppl-eps must be in (0, 1), got {a.ppl_eps}")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device")
    for path in (a.out, a.save_ref_stats):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"output directory {path.parent} does not exist")
    if a.save_ref_stats is not None and a.ref is None:
        raise UsageError("--save-ref-stats needs --ref")
    return list(dict.fromkeys(metrics))


def format_table(lines: list[dict]) -> str:
    rows = [("gen", "metric", "value", "std", "n", "comparable")]
    for d in lines:
        v = d["value"]
        if isinstance(v, float):
            value = f"{v:.4g}" if abs(v) < 1e6 else f"{v:.4e}"
        else:
            value = str(v)
        std = f"{d['std']:.3g}" if "std" in d else ""
        rows.append(
            (
                Path(d["gen"]).name or d["gen"],
                d["metric"],
                value,
                std,
                str(d.get("num_samples") or ""),
                "yes" if d["comparable"] else "NO",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(a: argparse.Namespace) -> list[dict]:
    metrics = _validate(a)
    ev = Evaluator(EvalOptions.from_namespace(a), metrics)
    ref = open_source(a.ref, a.device) if a.ref else None
    out: list[dict] = []
    for spec in a.gen:
        gen = open_source(spec, a.device)
        for line in evaluate(ev, gen, ref, metrics):
            out.append(line)
            if a.out is not None:
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(line) + "\n")
    if a.save_ref_stats is not None:
        ev.save_reference_stats(ref, a.save_ref_stats, with_vgg="pr" in metrics)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        lines = run(args)
    except (
        UsageError,
        CheckpointError,
        OutputPathError,
        InceptionWeightsNotFoundError,
        VGGWeightsNotFoundError,
        FileNotFoundError,
    ) as err:
        print(f"mobilestylegan-eval: error: {err}", file=sys.stderr)
        return 2
    print(format_table(lines))
    if args.out is not None:
        print(f"appended {len(lines)} line(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
