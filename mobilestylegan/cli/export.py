"""``mobilestylegan-export``: a student -> verified ONNX, OpenVINO, ExecuTorch, LiteRT, Core ML or web artefacts (see
:mod:`export.exporter`)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from export.options import COMPUTE_UNITS, FORMATS, NOISE, PRECISIONS, W_INPUTS

EXAMPLES = """examples:
  mobilestylegan-export ffhq-1024 --format openvino --out exported/ffhq-ov
  mobilestylegan-export ffhq-1024 --format openvino --precision fp16 --out exported/ffhq-ov-fp16
  mobilestylegan-export student.pt --format onnx --batch dynamic --noise input --out exported/onnx
  mobilestylegan-export last.ckpt --format onnx --w-input wplus --truncation-psi 0.7 --end-to-end --out out/
  mobilestylegan-export ffhq-1024 --format executorch --out exported/ffhq-pte   # phones: XNNPACK, fp32
  mobilestylegan-export ffhq-1024 --format executorch --precision fp16 --out exported/ffhq-pte16  # half the size
  mobilestylegan-export ffhq-1024 --format tflite --precision fp16 --out exported/ffhq-tflite   # Android: LiteRT
  mobilestylegan-export ffhq-1024 --format coreml --out exported/ffhq-coreml     # Apple: ML Program, fp16
  mobilestylegan-export ffhq-1024 --format web --out exported/ffhq-web           # browser: a static site
  mobilestylegan-serve exported/ffhq-web                                          # then open http://127.0.0.1:8000/
  python -m export.runtime exported/ffhq-ov --seeds 0-3 --out faces/     # render without torch
SOURCE is a native student checkpoint, a MobileStyleGAN.pytorch Lightning .ckpt or a pretrained name (ffhq-1024).
Every export is parity-checked against the float64 PyTorch student where its runtime exists here (ONNX Runtime,
OpenVINO f32, ExecuTorch, LiteRT; a web site also in headless Chromium when installed), 4 seeds, max |diff| within
2**11 float32 ulps of max(1, peak |output|), and quality-gated (PSNR vs fp32 PyTorch on 16 seeds; fp16 and int8
need 40 dB); Core ML is checked by its spec here and by --check DIR on a Mac. A failed check writes nothing.
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
    p = argparse.ArgumentParser(prog="mobilestylegan-export", epilog=EXAMPLES,
                                description="Export a MobileStyleGAN student to ONNX, OpenVINO IR, ExecuTorch (XNNPACK), "
                                            "LiteRT, Core ML or a static web site, parity-checked and quality-gated.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", nargs="?", help="student checkpoint or pretrained name (ffhq-1024)")
    p.add_argument("--format", dest="fmt", choices=FORMATS)
    p.add_argument("--out", metavar="DIR", help="output directory (must be new or empty)")
    p.add_argument("--check", metavar="DIR", help="check an export where its runtime is: a Core ML export on macOS, a "
                                                  "web export in headless Chromium; then exit")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="fp32 (default; Core ML and web: fp16); fp16 (OpenVINO: fp16 weights, bf16/f16 compute where "
                        "the CPU has it; ONNX, web, LiteRT: fp16 weights, fp32 compute; Core ML, ExecuTorch: fp16 "
                        "compute); int8 (OpenVINO: NNCF; LiteRT: dynamic-range), behind the 40 dB gate")
    p.add_argument("--w-input", default=None, choices=W_INPUTS,
                   help="synthesis input: one w [B, w_dim] (default) or W+ [B, num_ws, w_dim] (the web default)")
    p.add_argument("--noise", default="const", choices=NOISE,
                   help="noise: baked constants (default), graph inputs, or none")
    p.add_argument("--batch", type=_batch, default=1, metavar="N|dynamic", help="batch size (default 1)")
    p.add_argument("--truncation-psi", type=float, default=None, metavar="PSI",
                   help="bake truncation into the mapping graph (default: choose psi at run time)")
    p.add_argument("--end-to-end", action="store_true", help="also write one z -> image graph")
    p.add_argument("--resolution", type=int, default=None,
                   help="refuse the export unless the student renders this resolution")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--compute-units", choices=COMPUTE_UNITS, default=None,
                   help="Core ML: the compute units the model is meant for (default all); --check loads with them")
    p.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from export.exporter import ONNX_OPSET, ExportError, export

    if args.check:
        return _check(args.check, args.compute_units)
    missing = [flag for flag, v in (("SOURCE", args.source), ("--format", args.fmt), ("--out", args.out)) if not v]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")

    if args.opset is not None and args.fmt != "onnx":
        print("error: --opset applies to --format onnx only", file=sys.stderr)
        return 2
    try:
        m = export(args.source, args.fmt, args.out, precision=args.precision, w_input=args.w_input, noise=args.noise,
                   batch=args.batch, truncation_psi=args.truncation_psi, end_to_end=args.end_to_end,
                   progress=not args.quiet, force=args.force, resolution=args.resolution,
                   opset=args.opset or ONNX_OPSET, compute_units=args.compute_units)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    print(summary(m, args.out))
    return 0


def _check(directory: str, compute_units: str | None = None) -> int:
    from export.coreml import check
    from export.manifest import ManifestError, read_manifest
    from export.options import ExportError

    try:
        if read_manifest(directory).get("artefact_format") == "web":
            return _check_web(directory)
        results = check(directory, compute_units)
    except (ExportError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, r in results.items():
        got = f"{r['psnr_db']:.1f} dB (gate {r['gate_db']:g})" if "psnr_db" in r else \
            f"max |diff| {r['max_abs_diff']:.2g} (<= {r['tolerance']:.2g})"
        print(f"  {name:9s} Core ML vs float64 PyTorch: {got} {'ok' if r['passed'] else 'FAILED'}")
    return 0 if all(r["passed"] for r in results.values()) else 1


def _check_web(directory: str) -> int:
    from export.web.site import check

    r = check(directory)
    print(f"  {r['browser']} WASM ({r['threads']} thread) vs {r['reference']}: max |diff| {r['max_abs_diff']:.2g} "
          f"(<= {r['tolerance']:.2g}); canvas pixels within {r['pixels']['max_level_diff']} level(s) "
          f"({100 * r['pixels']['equal_fraction']:.2f}% equal); {min(r['ms_per_image']):.0f} ms per image "
          f"{'ok' if r['passed'] else 'FAILED'}")
    return 0 if r["passed"] else 1


def summary(m: dict, out: str) -> str:
    """A few lines: files, parity, size, quality."""
    lines = [f"wrote {out} ({m['artefact_format']}"
             + (f", opset {m['onnx_opset']}" if "onnx_opset" in m else "")
             + f", {m['precision']}, batch {m['batch']}, {m['model']['img_resolution']}px)"]
    for name, g in m["graphs"].items():
        shown = list(dict.fromkeys(f.split("/")[0] for f in g["files"]))  # a Core ML package: its folder
        lines.append(f"  {name:9s} {' + '.join(shown)}  {g['bytes'] / 1e6:.2f} MB")
    par = m.get("parity", {})
    if not par.get("run") and par.get("reason"):
        lines.append(f"  parity    not run here: {par['reason']}")
    if par.get("run"):
        worst = {k: max(v.values()) for k, v in par["max_abs_diff"].items() if isinstance(v, dict)}
        lines.append("  parity    " + ", ".join(f"{k} max |diff| {v:.2g}" for k, v in worst.items())
                     + f" (<= {max(par['tolerance'].values()):.2g}, vs float64 PyTorch)")
    s = m["size_gate"]
    dtype = "fp16" if "fp16_param_bytes" in s else "fp32"
    lines.append(f"  size      {s['gated_file']} = {s['ratio']:.3f}x its {dtype} parameter bytes (<= {s['limit']})")
    for name, c in m.get("coreml", {}).get("models", {}).items():
        lines.append(f"  coreml    {name}: {c['operations']} operations ({c['convolutions']} conv), inputs "
                     + ", ".join(f"{i['name']} {i['shape']}" for i in c["inputs"]))
    for name, g in m.get("litert", {}).get("graphs", {}).items():
        lines.append(f"  litert    {name}: {g['operators']} operators ({g['convolutions']} conv), signature "
                     f"{g['inputs']} -> {g['outputs']}")
    for name, d in m.get("delegation", {}).items():
        lines.append(f"  xnnpack   {name}: {d['convolutions_delegated']}/{d['convolutions']} convolutions delegated"
                     + (f"; outside: {', '.join(d['ops_outside'])}" if d["ops_outside"] else ""))
    q = m["quality"]
    if q.get("run") is False:
        return "\n".join(lines)
    psnr = "inf" if q["psnr_db"] is None else f"{q['psnr_db']:.1f}"
    lines.append(f"  quality   {psnr} dB PSNR vs fp32 PyTorch on {len(q['seeds'])} seeds"
                 + (f" (gate {q['gate_db']:g} dB)" if q["gate_db"] else ""))
    b = m.get("browser")
    if b and not b.get("run"):
        lines.append(f"  browser   not run here: {b['reason']}")
    elif b:
        vs = b["vs_pytorch"]
        got = (f"max |diff| {vs['max_abs_diff']:.2g} (<= {vs['tolerance']:.2g})" if "max_abs_diff" in vs
               else f"{vs['psnr_db']:.1f} dB (gate {vs['gate_db']:g})")
        lines.append(f"  browser   {b['browser']} WASM: {got} vs {vs['reference']}; canvas = CLI faces; "
                     f"{min(b['ms_per_image']):.0f} ms per image, 1 thread")
    if m["artefact_format"] == "web":
        lines.append(f"  serve     mobilestylegan-serve {out}   (then open the printed address)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
