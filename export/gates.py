"""The three checks every export passes before it is moved into place: parity, size and quality.

Each raises :class:`~export.options.ExportError` on failure (so a failed export writes nothing) and returns the
manifest entry that states what was measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from export.manifest import graph_bytes, json_number
from export.options import ONNX_FILES, ExportError
from teacher.numerics import PARITY_RULE, max_abs_diff, parity_tolerance, pooled_psnr_db

if TYPE_CHECKING:
    from export.job import Job

PARITY_SEEDS = (0, 1, 2, 3)
QUALITY_SEEDS = tuple(range(16))
QUALITY_GATE_DB = {"fp16": 40.0, "int8": 40.0}
SIZE_LIMIT = 1.15


def parity(job: Job) -> dict[str, Any]:
    """ONNX Runtime / OpenVINO f32 against the float64 PyTorch student on :data:`PARITY_SEEDS`."""
    from export.runtime import load_runtime

    if job.fmt == "coreml":
        return coreml_reference(job)
    backends = {"onnx": ["onnxruntime", "openvino"], "web": ["onnxruntime", "openvino"],
                "executorch": ["executorch"], "tflite": ["litert"]}.get(job.fmt, ["openvino"])
    results: dict[str, Any] = {}
    inputs = job.parity_inputs()
    refs = {name: job.reference(name, inputs[name]) for name in job.graphs}
    tolerances = {name: parity_tolerance(r) for name, r in refs.items()}
    failures = []
    for backend in backends:
        if backend == "openvino" and job.fmt in ONNX_FILES:
            try:
                import openvino  # noqa: F401
            except ImportError:
                results["openvino_f32"] = "not run: openvino is not installed"
                continue
        rt = load_runtime(job.tmp, backend=backend, precision_hint="f32" if backend == "openvino" else None)
        key = "openvino_f32" if backend == "openvino" else backend
        results[key] = {}
        for name, graph in rt.graphs.items():
            arrays = [t.numpy() for t in inputs[name]]
            got = rt._batched(graph.run, arrays)
            diff = max_abs_diff(got, refs[name])
            results[key][name] = diff
            if not diff <= tolerances[name]:
                failures.append(f"{key} {name} max |diff| {diff:.3g} > {tolerances[name]:.3g}")
        del rt
    if failures:
        raise ExportError(f"parity check failed on seeds {list(PARITY_SEEDS)}: " + "; ".join(failures)
                          + "; nothing was written")
    return {"run": True, "seeds": list(PARITY_SEEDS), "metric": "max abs difference",
            "tolerance": tolerances, "tolerance_rule": PARITY_RULE,
            "reference": "PyTorch student in float64, same inputs; W+ graphs get two seeds' ws mixed, noise "
                         "inputs get random maps", "max_abs_diff": results, "passed": True}


def size_gate(job: Job, manifest: dict[str, Any]) -> dict[str, Any]:
    """The file holding the synthesis weights (``.onnx``, ``.pte``, the IR's ``.bin``, a Core ML package's
    ``weight.bin``; the rest is a description of the ops, reported but not gated) against the bytes of the graph's
    parameters and baked noise at the precision the file stores them in (fp16 for an fp16 export, else fp32)."""
    g = manifest["graphs"]["synthesis"]
    gated = g["files"][{"openvino": 1, "coreml": 2}.get(job.fmt, 0)]
    file_bytes = (job.tmp / gated).stat().st_size
    total = graph_bytes([job.tmp / g["files"][0]])
    dtype = "fp16" if job.precision == "fp16" else "fp32"
    param_bytes = int(job.graphs["synthesis"].num_params_bytes()) // (2 if dtype == "fp16" else 1)
    ratio = file_bytes / param_bytes
    if ratio > SIZE_LIMIT:
        raise ExportError(f"size gate failed: {gated} weighs {file_bytes} bytes, {ratio:.3f}x the {param_bytes} "
                          f"{dtype} bytes of the graph's parameters and baked noise (limit {SIZE_LIMIT}x)")
    return {"gated_file": gated, "file_bytes": file_bytes, f"{dtype}_param_bytes": param_bytes,
            "ratio": round(ratio, 4), "limit": SIZE_LIMIT, "passed": True,
            "all_synthesis_files_bytes": total, "all_files_ratio": round(total / param_bytes, 4)}


def quality(job: Job, manifest: dict[str, Any]) -> dict[str, Any]:
    """Seeded z -> exported mapping -> exported synthesis (const noise), as the runtime runs it by default."""
    if job.fmt == "coreml":
        return {"run": False, "seeds": [], "psnr_db": None, "gate_db": None,
                "reason": "Core ML predicts on macOS only: mobilestylegan-export --check DIR there runs the check"}
    from export.runtime import load_runtime

    seeds = list(QUALITY_SEEDS)
    rt = load_runtime(job.tmp)
    got = rt.render(seeds)
    with torch.no_grad():
        ref = job.G.synthesis(job.reference_w(seeds), noise_mode="none" if job.noise == "none" else "const",
                              inference=True).numpy()
    per_image = [pooled_psnr_db(got[i:i + 1], ref[i:i + 1]) for i in range(len(seeds))]
    overall = pooled_psnr_db(got, ref)
    gate = QUALITY_GATE_DB.get(job.precision)
    compute = "f16" if job.fmt == "executorch" and job.precision == "fp16" else "f32"  # half programs
    measured = {n: (g._compiled.get_property("INFERENCE_PRECISION_HINT").to_string() if g.backend == "openvino"
                    else f"{compute} ({g.backend})") for n, g in rt.graphs.items()}
    del rt
    result = {"seeds": seeds, "metric": "PSNR dB, images clipped to [-1, 1], peak-to-peak 2",
              "reference": "fp32 PyTorch student: seeded z -> mapping -> synthesis (const noise)",
              "psnr_db": json_number(overall, 3), "min_image_psnr_db": json_number(min(per_image), 3),
              "max_abs_diff": float(np.abs(got - ref).max()), "gate_db": gate,
              "measured_inference_precision": {k: str(v).lower() for k, v in measured.items()},
              "passed": gate is None or overall >= gate}
    if not result["passed"]:
        raise ExportError(f"the {job.precision} variant reaches {overall:.1f} dB PSNR against fp32 PyTorch on "
                          f"{len(seeds)} seeds, below its {gate:g} dB gate; it is not offered (nothing was written)")
    return result


def browser(job: Job) -> dict[str, Any]:
    """The web page in headless Chromium (ONNX Runtime Web, WASM, 1 thread) on :data:`export.web.site.CHECK_CASES`:
    fp32 within the parity rule of the float64 student, fp16 at the 40 dB gate against the fp32 student; the same
    faces as the Python runtime (parity rule) and canvas pixels equal to ``to_uint8`` of the page's floats."""
    from export.web.browser import INSTALL, find_chromium

    if find_chromium() is None:
        return {"run": False, "reason": f"no Chromium on this machine ({INSTALL}); mobilestylegan-export --check DIR "
                                        "runs this check where there is one"}
    from export.web.site import CHECK_CASES, browser_render, compare_pixels, versus_runtime

    page = browser_render(job.tmp, CHECK_CASES, threads=1)
    got = np.concatenate(page["img"])
    failures = []
    result: dict[str, Any] = {"run": True, "browser": page["browser"], "threads": page["threads"],
                              "cases": [list(c) for c in CHECK_CASES]}
    if job.precision == "fp32":
        ref = job.reference_faces(CHECK_CASES, exact=True)
        diff, tol = max_abs_diff(got, ref), parity_tolerance(ref)
        result["vs_pytorch"] = {"reference": "float64 PyTorch student", "max_abs_diff": diff, "tolerance": tol}
        if not diff <= tol:
            failures.append(f"max |diff| {diff:.3g} > {tol:.3g} against the float64 student")
    else:
        db = pooled_psnr_db(got, job.reference_faces(CHECK_CASES, exact=False))
        gate = QUALITY_GATE_DB[job.precision]
        result["vs_pytorch"] = {"reference": "fp32 PyTorch student", "psnr_db": json_number(db, 3), "gate_db": gate}
        if not db >= gate:
            failures.append(f"{db:.1f} dB against the fp32 student, below the {gate:g} dB gate")
    result["vs_runtime"] = vs = versus_runtime(job.tmp, page)[0]
    if not vs["passed"]:
        failures.append(f"max |diff| {vs['max_abs_diff']:.3g} > {vs['tolerance']:.3g} against the Python runtime")
    result["pixels"] = pixels = compare_pixels(page["pixels"], page["img"])
    if pixels["max_level_diff"]:
        failures.append(f"the canvas differs from to_uint8 of the page's own floats by {pixels['max_level_diff']} "
                        "levels")
    if failures:
        raise ExportError("the web page in headless Chromium failed its check: " + "; ".join(failures)
                          + "; nothing was written")
    result["ms_per_image"] = [round(t[0][0], 1) for t in page["ms"]]
    result["passed"] = True
    return result


def coreml_reference(job: Job) -> dict[str, Any]:
    """Core ML cannot predict on Linux: store the parity inputs and float64 references for ``--check`` on a Mac."""
    from export.coreml import CHECK_FILE

    inputs = job.parity_inputs()
    arrays: dict[str, np.ndarray] = {}
    for name in job.graphs:
        in_names = job.io(name)[0]
        for n, t in zip(in_names, inputs[name]):
            arrays[f"{name}.{n}"] = t.float().numpy()
        arrays[f"{name}.reference"] = job.reference(name, inputs[name]).astype(np.float32)
    np.savez(job.tmp / CHECK_FILE, **arrays)
    return {"run": False, "seeds": list(PARITY_SEEDS), "reference_file": CHECK_FILE,
            "reason": "Core ML predicts on macOS only: mobilestylegan-export --check DIR there compares it with "
                      f"{CHECK_FILE} (parity rule for fp32; fp16: 40 dB PSNR on images, 1e-2 x peak on w)"}
