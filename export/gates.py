"""The checks every export passes before it is moved into place: parity, size and quality.

Each is a function of an :class:`~export.context.ExportContext` that raises :class:`~export.errors.ExportError` on
failure (so a failed export writes nothing) and returns the manifest entry that states what was measured. A target
with a check of its own adds it through :meth:`~export.targets.base.Target.extra_gates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from export.errors import ExportError
from export.manifest import graph_bytes, json_number
from teacher.numerics import PARITY_RULE, max_abs_diff, parity_tolerance, pooled_psnr_db

if TYPE_CHECKING:
    from export.context import ExportContext
    from export.runtime import Runtime

PARITY_SEEDS = (0, 1, 2, 3)
QUALITY_SEEDS = tuple(range(16))
# The PSNR (dB, against the fp32 PyTorch student) an fp16 or int8 variant must reach; fp32 files are held to the
# parity rule instead. The benchmark's rows and Core ML's --check use the same gate.
QUALITY_GATE_DB = 40.0
# The synthesis weights file may weigh at most this many times the bytes of the graph's parameters and baked noise.
SIZE_LIMIT = 1.15


def quality_gate_db(precision: str) -> float | None:
    """The quality gate of an export at ``precision`` (None for fp32, which the parity gate holds)."""
    return None if precision == "fp32" else QUALITY_GATE_DB


def parity(ctx: ExportContext, backends: Sequence[str]) -> dict[str, Any]:
    """The fp32 files in each of ``backends`` (OpenVINO told f32) against the float64 PyTorch student on
    :data:`PARITY_SEEDS`: max |diff| within the parity rule. The first backend is the export's own; another that is
    not installed is recorded as not run."""
    from export.runtime import RuntimeMissingError, load_runtime

    inputs = ctx.parity_inputs(PARITY_SEEDS)
    refs = {name: ctx.reference(name, inputs[name]) for name in ctx.graphs}
    tolerances = {name: parity_tolerance(r) for name, r in refs.items()}
    results: dict[str, Any] = {}
    failures = []
    for i, backend in enumerate(backends):
        key = "openvino_f32" if backend == "openvino" else backend
        try:
            rt = load_runtime(ctx.tmp, backend=backend, precision_hint="f32" if backend == "openvino" else None)
        except RuntimeMissingError:
            if i == 0:
                raise
            results[key] = f"not run: {backend} is not installed"
            continue
        results[key] = {}
        for name in rt.graphs:
            diff = max_abs_diff(rt.run_graph(name, [t.numpy() for t in inputs[name]]), refs[name])
            results[key][name] = diff
            if not diff <= tolerances[name]:
                failures.append(f"{key} {name} max |diff| {diff:.3g} > {tolerances[name]:.3g}")
        del rt
    if failures:
        raise ExportError(
            f"parity check failed on seeds {list(PARITY_SEEDS)}: " + "; ".join(failures) + "; nothing was written"
        )
    return {
        "run": True,
        "seeds": list(PARITY_SEEDS),
        "metric": "max abs difference",
        "tolerance": tolerances,
        "tolerance_rule": PARITY_RULE,
        "reference": "PyTorch student in float64, same inputs; W+ graphs get two seeds' ws mixed, noise "
        "inputs get random maps",
        "max_abs_diff": results,
        "passed": True,
    }


def size_gate(ctx: ExportContext, files: list[str], gated: str, graph: str = "synthesis") -> dict[str, Any]:
    """A graph's weights file ``gated`` (the format's :meth:`~export.targets.base.Target.weights_file`; the rest of
    its ``files`` describes the ops and is reported, not gated) against the bytes of the graph's parameters (and
    baked noise) at the precision the file stores them in (fp16 for an fp16 export, else fp32). The synthesis graph
    is gated in every export, the encoder graph where there is one."""
    file_bytes = (ctx.tmp / gated).stat().st_size
    total = graph_bytes([ctx.tmp / files[0]])
    dtype = "fp16" if ctx.options.precision == "fp16" else "fp32"
    param_bytes = int(ctx.graphs[graph].num_params_bytes()) // (2 if dtype == "fp16" else 1)
    ratio = file_bytes / param_bytes
    if ratio > SIZE_LIMIT:
        raise ExportError(
            f"size gate failed: {gated} weighs {file_bytes} bytes, {ratio:.3f}x the {param_bytes} "
            f"{dtype} bytes of the {graph} graph's parameters{' and baked noise' if graph == 'synthesis' else ''} "
            f"(limit {SIZE_LIMIT}x)"
        )
    return {
        "gated_file": gated,
        "file_bytes": file_bytes,
        f"{dtype}_param_bytes": param_bytes,
        "ratio": round(ratio, 4),
        "limit": SIZE_LIMIT,
        "passed": True,
        f"all_{graph}_files_bytes": total,
        "all_files_ratio": round(total / param_bytes, 4),
    }


def quality(
    ctx: ExportContext, compute_precision: str, not_run: str | None = None, rt: Runtime | None = None
) -> dict[str, Any]:
    """Seeded z -> exported mapping -> exported synthesis (const noise) in the export's own backend, as the runtime
    runs it by default, against the fp32 PyTorch student on :data:`QUALITY_SEEDS`; fp16 and int8 must reach
    :data:`QUALITY_GATE_DB`. ``compute_precision`` is recorded where the runtime cannot say what it computes in;
    ``not_run`` says why the files cannot run here (the gate is then recorded as not run); ``rt``: the export opened
    already (None: opened here)."""
    precision = ctx.options.precision
    if not_run:
        return {"run": False, "seeds": [], "psnr_db": None, "gate_db": None, "reason": not_run}
    from export.runtime import load_runtime

    seeds = list(QUALITY_SEEDS)
    rt = rt or load_runtime(ctx.tmp)
    got = rt.render(seeds)
    with torch.no_grad():
        noise = "none" if ctx.options.noise == "none" else "const"
        ref = ctx.G.synthesis(ctx.reference_w(seeds), noise_mode=noise, inference=True).numpy()
    per_image = [pooled_psnr_db(got[i : i + 1], ref[i : i + 1]) for i in range(len(seeds))]
    overall = pooled_psnr_db(got, ref)
    gate = quality_gate_db(precision)
    measured = {n: g.inference_precision() or f"{compute_precision} ({rt.backend})" for n, g in rt.graphs.items()}
    del rt
    result = {
        "seeds": seeds,
        "metric": "PSNR dB, images clipped to [-1, 1], peak-to-peak 2",
        "reference": "fp32 PyTorch student: seeded z -> mapping -> synthesis (const noise)",
        "psnr_db": json_number(overall, 3),
        "min_image_psnr_db": json_number(min(per_image), 3),
        "max_abs_diff": float(np.abs(got - ref).max()),
        "gate_db": gate,
        "measured_inference_precision": {k: str(v).lower() for k, v in measured.items()},
        "passed": gate is None or overall >= gate,
    }
    if not result["passed"]:
        raise ExportError(
            f"the {precision} variant reaches {overall:.1f} dB PSNR against fp32 PyTorch on "
            f"{len(seeds)} seeds, below its {gate:g} dB gate; it is not offered (nothing was written)"
        )
    return result


@torch.no_grad()
def latents_psnr_db(ctx: ExportContext, got: np.ndarray, want: np.ndarray) -> float:
    """How far apart two batches of W+ latents are where it matters: the PSNR between their faces, both rendered by
    the fp32 PyTorch student (const noise)."""
    imgs = [
        ctx.G.synthesis(torch.from_numpy(np.asarray(ws, np.float32)), noise_mode="const", inference=True).numpy()
        for ws in (got, want)
    ]
    return pooled_psnr_db(imgs[0], imgs[1])


def encoder_quality(ctx: ExportContext, not_run: str | None = None, rt: Runtime | None = None) -> dict[str, Any]:
    """The exported encoder, as the runtime runs it, against the fp32 PyTorch encoder on the faces of
    :data:`QUALITY_SEEDS` (:meth:`~export.context.ExportContext.encoder_inputs`): both latents rendered by the fp32
    PyTorch student (const noise), so the PSNR measures the encoder's rounding alone; fp16 and int8 exports must
    reach :data:`QUALITY_GATE_DB` (the encoder of an int8 export stays at float32 where the format quantises).
    ``rt``: the export opened already (None: opened here)."""
    precision = ctx.options.precision
    if not_run:
        return {"run": False, "seeds": [], "psnr_db": None, "gate_db": None, "reason": not_run}
    from export.runtime import load_runtime

    assert ctx.encoder is not None
    seeds = list(QUALITY_SEEDS)
    x = ctx.encoder_inputs(seeds)
    rt = rt or load_runtime(ctx.tmp)
    got = rt.encode(x.numpy())
    del rt
    with torch.no_grad():
        want = ctx.encoder(x).numpy()
    overall = latents_psnr_db(ctx, got, want)
    gate = quality_gate_db(precision)
    result = {
        "seeds": seeds,
        "metric": "PSNR dB of the exported encoder's latents rendered by the fp32 PyTorch student (const noise), "
        "images clipped to [-1, 1], peak-to-peak 2",
        "reference": "the fp32 PyTorch encoder's latents of the same inputs, rendered alike",
        "inputs": "the fp32 student's faces of the seeds (psi 0.7, const noise), stored as uint8, preprocessed",
        "psnr_db": json_number(overall, 3),
        "max_abs_diff_ws": float(np.abs(got - want).max()),
        "gate_db": gate,
        "passed": gate is None or overall >= gate,
    }
    if not result["passed"]:
        raise ExportError(
            f"the {precision} encoder's latents render at {overall:.1f} dB PSNR against the fp32 PyTorch encoder's on "
            f"{len(seeds)} faces, below the {gate:g} dB gate; it is not offered (nothing was written)"
        )
    return result
