"""``mobilestylegan-export``: a student -> verified ONNX, OpenVINO, ExecuTorch, LiteRT, Core ML or web artefacts (see
:mod:`export.exporter`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from export.context import NOISE, ONNX_OPSET, PRECISIONS, W_INPUTS
from export.gates import QUALITY_GATE_DB
from export.targets import checkable, format_names, get_target, taking
from export.targets.coreml import COMPUTE_UNITS

EXAMPLES = f"""examples:
  mobilestylegan-export ffhq-1024 --format openvino --out exported/ffhq-ov
  mobilestylegan-export ffhq-1024 --format openvino --precision fp16 --out exported/ffhq-ov-fp16
  mobilestylegan-export student.pt --format onnx --batch dynamic --noise input --out exported/onnx
  mobilestylegan-export last.ckpt --format onnx --w-input wplus --truncation-psi 0.7 --end-to-end --out out/
  mobilestylegan-export ffhq-1024 --format executorch --out exported/ffhq-pte   # phones: XNNPACK, fp32
  mobilestylegan-export ffhq-1024 --format executorch --precision fp16 --out exported/ffhq-pte16  # half the size
  mobilestylegan-export ffhq-1024 --format litert --precision fp16 --out exported/ffhq-litert   # Android: LiteRT
  mobilestylegan-export ffhq-1024 --format coreml --out exported/ffhq-coreml     # Apple: ML Program, fp16
  mobilestylegan-export ffhq-1024 --format web --out exported/ffhq-web           # browser: a static site
  mobilestylegan-serve exported/ffhq-web                                          # then open http://127.0.0.1:8000/
  python -m export.runtime exported/ffhq-ov --seeds 0-3 --out faces/     # render without torch
  mobilestylegan-export student.pt --format openvino --encoder encoder.safetensors --out exported/with-encoder
  python -m export.runtime exported/with-encoder --encode face.png --out latents/   # a face -> its W+ latent
SOURCE is a native student checkpoint, a MobileStyleGAN.pytorch Lightning .ckpt or a pretrained name (ffhq-1024).
Every export is parity-checked against the float64 PyTorch student where its runtime exists here (ONNX Runtime,
OpenVINO f32, ExecuTorch, LiteRT; a web site also in headless Chromium when installed), 4 seeds, max |diff| within
2**11 float32 ulps of max(1, peak |output|), and quality-gated (PSNR vs fp32 PyTorch on 16 seeds; fp16 and int8
need {QUALITY_GATE_DB:g} dB); Core ML is checked by its spec here and by --check DIR on a Mac. A failed check writes
nothing. --format tflite is the older name of --format litert.
An encoder (face -> W+, trained by `python train.py experiment=encoder_ffhq1024`) is exported as one more graph,
behind the same gates (fp16: its latents must render at {QUALITY_GATE_DB:g} dB); with one the synthesis takes W+. The
encoder shipped for the student, if any, is included whenever the synthesis takes W+ (--no-encoder leaves it out).
"""


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch must be a positive integer or 'dynamic', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"batch must be a positive integer or 'dynamic', got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobilestylegan-export",
        epilog=EXAMPLES,
        description="Export a MobileStyleGAN student to ONNX, OpenVINO IR, ExecuTorch (XNNPACK), "
        "LiteRT, Core ML or a static web site, parity-checked and quality-gated.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", nargs="?", help="student checkpoint or pretrained name (ffhq-1024)")
    p.add_argument(
        "--format", dest="fmt", choices=format_names(aliases=True), metavar="{" + ",".join(format_names()) + "}"
    )
    p.add_argument("--out", metavar="DIR", help="output directory (must be new or empty)")
    p.add_argument(
        "--check",
        metavar="DIR",
        help="check an export where its runtime is: a Core ML export on macOS, a "
        "web export in headless Chromium; then exit",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="fp32 (default; Core ML and web: fp16); fp16 (OpenVINO: fp16 weights, bf16/f16 compute where "
        "the CPU has it; ONNX, web, LiteRT: fp16 weights, fp32 compute; Core ML, ExecuTorch: fp16 "
        "compute); int8 (OpenVINO: NNCF; LiteRT: dynamic-range), behind the "
        f"{QUALITY_GATE_DB:g} dB gate",
    )
    p.add_argument(
        "--w-input",
        default=None,
        choices=W_INPUTS,
        help="synthesis input: one w [B, w_dim] (default) or W+ [B, num_ws, w_dim] (the web default)",
    )
    p.add_argument(
        "--noise", default="const", choices=NOISE, help="noise: baked constants (default), graph inputs, or none"
    )
    p.add_argument("--batch", type=_batch, default=1, metavar="N|dynamic", help="batch size (default 1)")
    p.add_argument(
        "--truncation-psi",
        type=float,
        default=None,
        metavar="PSI",
        help="bake truncation into the mapping graph (default: choose psi at run time)",
    )
    p.add_argument("--end-to-end", action="store_true", help="also write one z -> image graph")
    p.add_argument(
        "--resolution", type=int, default=None, help="refuse the export unless the student renders this resolution"
    )
    p.add_argument("--opset", type=int, default=None, help=f"ONNX opset (default {ONNX_OPSET})")
    p.add_argument(
        "--compute-units",
        choices=COMPUTE_UNITS,
        default=None,
        help="Core ML: the compute units the model is meant for (default all); --check loads with them",
    )
    enc = p.add_mutually_exclusive_group()
    enc.add_argument(
        "--encoder",
        metavar="FILE|NAME",
        default=None,
        help="also export this latent encoder (a file from train.py experiment=encoder_..., or a shipped name); "
        "implies --w-input wplus. Default: the student's shipped encoder when the synthesis takes W+",
    )
    enc.add_argument("--no-encoder", action="store_true", help="export no encoder, even a shipped one")
    p.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from export.errors import ExportError
    from export.exporter import export

    if args.check:
        return _check(args.check, args.compute_units)
    missing = [flag for flag, v in (("SOURCE", args.source), ("--format", args.fmt), ("--out", args.out)) if not v]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    if args.opset is not None and "opset" not in get_target(args.fmt).takes:
        owners = ", ".join(f"--format {t.name}" for t in taking("opset"))
        print(f"error: --opset applies to {owners} only", file=sys.stderr)
        return 2
    try:
        m = export(
            args.source,
            args.fmt,
            args.out,
            precision=args.precision,
            w_input=args.w_input,
            noise=args.noise,
            batch=args.batch,
            truncation_psi=args.truncation_psi,
            end_to_end=args.end_to_end,
            progress=not args.quiet,
            force=args.force,
            resolution=args.resolution,
            opset=args.opset or ONNX_OPSET,
            compute_units=args.compute_units,
            encoder=False if args.no_encoder else args.encoder,
        )
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    print(summary(m, args.out))
    return 0


def _check(directory: str, compute_units: str | None = None) -> int:
    from pathlib import Path

    from export.errors import ExportError
    from export.manifest import ManifestError, read_manifest

    try:
        target = get_target(read_manifest(directory).get("artefact_format", ""))
        if target not in checkable():
            raise ExportError(
                f"{directory} is a {target.name} export, which its export checked here already; --check "
                f"runs {' and '.join(t.title for t in checkable())} exports"
            )
        passed, lines = target.check_export(Path(directory), compute_units)
    except (ExportError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0 if passed else 1


def summary(m: dict, out: str) -> str:
    """A few lines: files, parity, size, quality, then the format's own."""
    lines = [
        f"wrote {out} ({m['artefact_format']}"
        + (f", opset {m['onnx_opset']}" if "onnx_opset" in m else "")
        + f", {m['precision']}, batch {m['batch']}, {m['model']['img_resolution']}px)"
    ]
    for name, g in m["graphs"].items():
        shown = list(dict.fromkeys(f.split("/")[0] for f in g["files"]))  # a Core ML package: its folder
        lines.append(f"  {name:9s} {' + '.join(shown)}  {g['bytes'] / 1e6:.2f} MB")
    par = m.get("parity", {})
    if not par.get("run") and par.get("reason"):
        lines.append(f"  parity    not run here: {par['reason']}")
    if par.get("run"):
        worst = {k: max(v.values()) for k, v in par["max_abs_diff"].items() if isinstance(v, dict)}
        lines.append(
            "  parity    "
            + ", ".join(f"{k} max |diff| {v:.2g}" for k, v in worst.items())
            + f" (<= {max(par['tolerance'].values()):.2g}, vs float64 PyTorch)"
        )
    s = m["size_gate"]
    dtype = "fp16" if "fp16_param_bytes" in s else "fp32"
    lines.append(f"  size      {s['gated_file']} = {s['ratio']:.3f}x its {dtype} parameter bytes (<= {s['limit']})")
    q = m["quality"]
    if q.get("run") is not False:
        psnr = "inf" if q["psnr_db"] is None else f"{q['psnr_db']:.1f}"
        lines.append(
            f"  quality   {psnr} dB PSNR vs fp32 PyTorch on {len(q['seeds'])} seeds"
            + (f" (gate {q['gate_db']:g} dB)" if q["gate_db"] else "")
        )
    e = m.get("encoder") or {}
    if e.get("included"):
        eq = e.get("quality", {})
        line = f"  encoder   {e['input_size']}-px faces -> W+; size {e['size_gate']['ratio']:.3f}x its parameter bytes"
        if eq.get("run") is not False:
            psnr = "inf" if eq["psnr_db"] is None else f"{eq['psnr_db']:.1f}"
            line += f"; its latents render at {psnr} dB vs fp32 PyTorch's"
        lines.append(line)
    elif e.get("reason"):
        lines.append(f"  encoder   none: {e['reason']}")
    lines += get_target(m["artefact_format"]).summary_lines(m, out)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
