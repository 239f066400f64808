"""The web page: ONNX graphs (fp16 weights by default) plus a static site that renders them with onnxruntime-web
(:mod:`export.web`), checked in headless Chromium when there is one.

The page renders one face at a time (batch 1), bakes the noise, chooses truncation with its slider (no baked psi)
and edits projected W+ latents (W+ input by default); ``directions.json`` holds the generator's top GANSpace
directions for its sliders.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.errors import ExportError
from export.targets.base import BenchRow
from export.targets.onnx import OnnxTarget

if TYPE_CHECKING:
    from export.context import ExportContext, ExportOptions


def browser_gate(ctx: ExportContext) -> dict[str, Any]:
    """The page in headless Chromium (ONNX Runtime Web, WASM, 1 thread) on :data:`export.web.site.CHECK_CASES`: fp32
    within the parity rule of the float64 student, fp16 at the quality gate against the fp32 student; the same faces
    as the Python runtime (parity rule) and canvas pixels equal to ``to_uint8`` of the page's floats."""
    from export.gates import QUALITY_GATE_DB
    from export.manifest import json_number
    from export.web.browser import INSTALL, find_chromium
    from teacher.numerics import max_abs_diff, parity_tolerance, pooled_psnr_db

    if find_chromium() is None:
        return {
            "run": False,
            "reason": f"no Chromium on this machine ({INSTALL}); mobilestylegan-export --check DIR "
            "runs this check where there is one",
        }
    from export.web.site import CHECK_CASES, browser_render, compare_pixels, versus_runtime

    page = browser_render(ctx.tmp, CHECK_CASES, threads=1)
    got = np.concatenate(page["img"])
    failures = []
    result: dict[str, Any] = {
        "run": True,
        "browser": page["browser"],
        "threads": page["threads"],
        "cases": [list(c) for c in CHECK_CASES],
    }
    if ctx.options.precision == "fp32":
        ref = ctx.reference_faces(CHECK_CASES, exact=True)
        diff, tol = max_abs_diff(got, ref), parity_tolerance(ref)
        result["vs_pytorch"] = {"reference": "float64 PyTorch student", "max_abs_diff": diff, "tolerance": tol}
        if not diff <= tol:
            failures.append(f"max |diff| {diff:.3g} > {tol:.3g} against the float64 student")
    else:
        db = pooled_psnr_db(got, ctx.reference_faces(CHECK_CASES, exact=False))
        result["vs_pytorch"] = {
            "reference": "fp32 PyTorch student",
            "psnr_db": json_number(db, 3),
            "gate_db": QUALITY_GATE_DB,
        }
        if not db >= QUALITY_GATE_DB:
            failures.append(f"{db:.1f} dB against the fp32 student, below the {QUALITY_GATE_DB:g} dB gate")
    result["vs_runtime"] = vs = versus_runtime(ctx.tmp, page)[0]
    if not vs["passed"]:
        failures.append(f"max |diff| {vs['max_abs_diff']:.3g} > {vs['tolerance']:.3g} against the Python runtime")
    result["pixels"] = pixels = compare_pixels(page["pixels"], page["img"])
    if pixels["max_level_diff"]:
        failures.append(
            f"the canvas differs from to_uint8 of the page's own floats by {pixels['max_level_diff']} levels"
        )
    if ctx.encoder is not None:
        result["encoder"] = _encoder_in_the_page(ctx, failures)
    if failures:
        raise ExportError(
            "the web page in headless Chromium failed its check: " + "; ".join(failures) + "; nothing was written"
        )
    result["ms_per_image"] = [round(t[0][0], 1) for t in page["ms"]]
    result["passed"] = True
    return result


def _encoder_in_the_page(ctx: ExportContext, failures: list[str]) -> dict[str, Any]:
    """The page's encoder on the faces of :data:`export.web.site.CHECK_CASES`' seeds: fp32 within the parity rule of
    the float64 encoder, fp16 with its latents' images (rendered by the fp32 student) at the quality gate against
    the fp32 encoder's; and within the parity rule of the Python runtime's encoder on the same file."""
    import torch

    from export.gates import QUALITY_GATE_DB, latents_psnr_db
    from export.manifest import json_number
    from export.runtime import load_runtime
    from export.web.site import CHECK_CASES, browser_encode
    from teacher.numerics import max_abs_diff, parity_tolerance

    x = ctx.encoder_inputs([s for s, _ in CHECK_CASES])
    page = browser_encode(ctx.tmp, x.numpy()[:, None])
    got = np.concatenate(page["latents"])
    out: dict[str, Any] = {"inputs": "the fp32 student's faces of the check seeds (psi 0.7), as uint8, preprocessed"}
    if ctx.options.precision == "fp32":
        ref = ctx.reference("encoder", [x])
        diff, tol = max_abs_diff(got, ref), parity_tolerance(ref)
        out["vs_pytorch"] = {"reference": "float64 PyTorch encoder", "max_abs_diff": diff, "tolerance": tol}
        if not diff <= tol:
            failures.append(f"the encoder's max |diff| {diff:.3g} > {tol:.3g} against the float64 encoder")
    else:
        with torch.no_grad():
            db = latents_psnr_db(ctx, got, ctx.encoder(x).numpy())
        out["vs_pytorch"] = {
            "reference": "fp32 PyTorch encoder; both latents rendered by the fp32 student",
            "psnr_db": json_number(db, 3),
            "gate_db": QUALITY_GATE_DB,
        }
        if not db >= QUALITY_GATE_DB:
            failures.append(f"the encoder's latents render at {db:.1f} dB, below the {QUALITY_GATE_DB:g} dB gate")
    want = load_runtime(ctx.tmp, backend="onnxruntime").encode(x.numpy())
    diff, tol = max_abs_diff(got, want), parity_tolerance(want)
    out["vs_runtime"] = {"reference": "python -m export.runtime (ONNX Runtime)", "max_abs_diff": diff, "tolerance": tol}
    if not diff <= tol:
        failures.append(f"the encoder's max |diff| {diff:.3g} > {tol:.3g} against the Python runtime's")
    out["ms_per_face"] = [round(t, 1) for t in page["ms"]]
    return out


class WebTarget(OnnxTarget):
    name = "web"
    title = "the web page"
    precisions = {"fp16": "fp16 weights, fp32 compute", "fp32": "float32"}
    default_precision = "fp16"
    default_w_input = "wplus"  # the page edits projected W+ latents
    takes = ()
    extra_gates_stage = ("the page in headless Chromium", "browser_s")
    checks_elsewhere = True
    distributions = ("onnx", "onnxruntime")
    bench_rows = {
        f"browser-wasm{n}": BenchRow(
            "fp16",
            "browser",
            threads=n,
            graph="the web export's page (fp16 weights, fp32 compute), synthesis time as the page measures it "
            f"(performance.now), {n} WASM thread(s)",
        )
        for n in (1, 2)
    }

    def check(self, options: ExportOptions) -> None:
        super().check(options)
        if options.batch != 1:
            raise ExportError(
                f"the web page renders one face at a time: the web export needs --batch 1; "
                f"got {options.batch or 'dynamic'}"
            )
        if options.noise == "input":
            raise ExportError("the web export bakes the noise: use --noise const (default) or none")
        if options.truncation_psi is not None:
            raise ExportError("the web page chooses truncation with its slider: leave out --truncation-psi")
        if options.end_to_end:
            raise ExportError("the web page runs the mapping and synthesis graphs: leave out --end-to-end")

    def modulation(self, options: ExportOptions) -> str:
        # Folded weights: ONNX Runtime Web ran them faster at 1024 px than the activation form (1 and 2 WASM threads).
        return "weights"

    def write_extra_files(self, ctx: ExportContext) -> dict[str, Any]:
        from export.web.site import write_directions, write_site

        web = write_site(ctx.tmp)
        web["directions"] = write_directions(ctx.tmp, ctx.G)
        web["files"].append(web["directions"]["file"])
        return {"web": web}

    def extra_gates(self, ctx: ExportContext) -> dict[str, Any]:
        return {"browser": browser_gate(ctx)}

    def versions(self) -> dict[str, str]:
        from export.web.ort_files import VERSION

        return {"onnxruntime-web": VERSION, **super().versions()}

    def summary_lines(self, manifest: dict[str, Any], out: str) -> list[str]:
        lines = []
        b = manifest.get("browser")
        if b and not b.get("run"):
            lines.append(f"  browser   not run here: {b['reason']}")
        elif b:
            vs = b["vs_pytorch"]
            got = (
                f"max |diff| {vs['max_abs_diff']:.2g} (<= {vs['tolerance']:.2g})"
                if "max_abs_diff" in vs
                else f"{vs['psnr_db']:.1f} dB (gate {vs['gate_db']:g})"
            )
            lines.append(
                f"  browser   {b['browser']} WASM: {got} vs {vs['reference']}; canvas = CLI faces; "
                f"{min(b['ms_per_image']):.0f} ms per image, 1 thread"
            )
        lines.append(f"  serve     mobilestylegan-serve {out}   (then open the printed address)")
        return lines

    def check_export(self, directory: Path, compute_units: str | None = None) -> tuple[bool, list[str]]:
        from export.web.site import check

        r = check(directory)
        return r["passed"], [
            f"  {r['browser']} WASM ({r['threads']} thread) vs {r['reference']}: max |diff| {r['max_abs_diff']:.2g} "
            f"(<= {r['tolerance']:.2g}); canvas pixels within {r['pixels']['max_level_diff']} level(s) "
            f"({100 * r['pixels']['equal_fraction']:.2f}% equal); {min(r['ms_per_image']):.0f} ms per image "
            f"{'ok' if r['passed'] else 'FAILED'}"
        ]

    def bench_unavailable(self) -> str | None:
        from export.web.browser import INSTALL, find_chromium

        return None if find_chromium() is not None else f"no Chromium on this machine ({INSTALL})"
