"""Core ML: one ``.mlpackage`` (ML Program) per graph, fp16 by default, checked by its spec on Linux.

Core ML predicts on macOS only, so on Linux the export checks what it can read: each model's inputs and outputs
(names, shapes, float32), its operation count, and the weights file against the parameter bytes at the export's
precision. Instead of the parity gate it writes ``check_reference.npz`` (the parity inputs and the float64 PyTorch
outputs), which ``mobilestylegan-export --check DIR`` compares with Core ML's own predictions on a Mac: the parity
rule for fp32, the quality gate for fp16.
"""

from __future__ import annotations

import platform
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.errors import ExportError
from export.targets.base import BenchRow, Target

if TYPE_CHECKING:
    import torch

    from export.context import ExportContext, ExportOptions

INSTALL = 'pip install -e ".[coreml]" (coremltools==9.0)'
CHECK_FILE = "check_reference.npz"
# Core ML compute units (MLComputeUnits / coremltools.ComputeUnit), the device set the model is loaded for.
COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")
MAPPING_FP16_TOLERANCE = 1e-2  # fp16 mapping vs float64: far above 8 layers of fp16 rounding, far below a wrong weight
_FLOAT32 = 65568  # ArrayFeatureType.FLOAT32 in the Core ML spec


def write_mlpackage(
    module: torch.nn.Module,
    example: tuple,
    in_names: list[str],
    in_shapes: list[tuple[int, ...]],
    out_names: list[str],
    path: Path,
    precision: str,
) -> dict[str, Any]:
    """Trace ``module``, convert it to an ML Program at ``precision`` (fp16 or fp32 compute and weights, float32
    inputs and outputs), save it at ``path`` and return its checked spec summary."""
    import coremltools as ct
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        model = ct.convert(
            traced,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            inputs=[ct.TensorType(name=n, shape=s, dtype=np.float32) for n, s in zip(in_names, in_shapes)],
            outputs=[ct.TensorType(name=n, dtype=np.float32) for n in out_names],
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        )
    model.save(str(path))
    summary = spec_summary(model.get_spec())
    want_in = [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in zip(in_names, in_shapes)]
    if (
        summary["inputs"] != want_in
        or [o["name"] for o in summary["outputs"]] != out_names
        or any(o["dtype"] != "float32" for o in summary["outputs"])
    ):
        raise ExportError(
            f"the Core ML model's interface is not the graph's: inputs {summary['inputs']} (want "
            f"{want_in}), outputs {summary['outputs']} (want {out_names}, float32)"
        )
    return summary


def spec_summary(spec: Any) -> dict[str, Any]:
    """Inputs, outputs and operations of an ML Program spec."""

    def feature(f: Any) -> dict[str, Any]:
        t = f.type.multiArrayType
        return {
            "name": f.name,
            "shape": [int(d) for d in t.shape],
            "dtype": "float32" if t.dataType == _FLOAT32 else str(t.dataType),
        }

    ops = Counter(
        op.type
        for fn in spec.mlProgram.functions.values()
        for block in fn.block_specializations.values()
        for op in block.operations
    )
    return {
        "inputs": [feature(f) for f in spec.description.input],
        "outputs": [feature(f) for f in spec.description.output],
        "operations": sum(ops.values()),
        "convolutions": ops.get("conv", 0),
        "spec_version": int(spec.specificationVersion),
    }


def check(directory: str | Path, compute_units: str | None = None) -> dict[str, Any]:
    """Core ML's predictions on the stored parity inputs against the stored float64 references (macOS only):
    max |diff| within the parity rule for fp32 exports, the quality gate's PSNR for fp16 ones. The models load with
    ``compute_units`` (default: the export's, from its manifest)."""
    from export.gates import QUALITY_GATE_DB
    from export.manifest import read_manifest
    from teacher.numerics import max_abs_diff, parity_tolerance, pooled_psnr_db

    d = Path(directory)
    manifest = read_manifest(d)
    if platform.system() != "Darwin":
        raise ExportError(
            f"Core ML predicts on macOS only (this is {platform.system()}): copy {d} to a Mac and run "
            f"mobilestylegan-export --check {d.name} there"
        )
    import coremltools as ct

    cu = manifest.get("coreml", {}).get("compute_units", {})
    units = ct.ComputeUnit[(compute_units or (cu.get("default") if isinstance(cu, dict) else None) or "all").upper()]
    results: dict[str, Any] = {}
    models = {
        name: ct.models.MLModel(str(d / Path(g["files"][0]).parent), compute_units=units)
        for name, g in manifest["graphs"].items()
    }

    def predict(name: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        g = manifest["graphs"][name]
        n = len(next(iter(feeds.values())))
        out = g["outputs"][0]["name"]
        return np.concatenate(
            [models[name].predict({k: v[j : j + 1] for k, v in feeds.items()})[out] for j in range(n)]
        )

    with np.load(d / CHECK_FILE) as ref:
        for name, g in manifest["graphs"].items():
            got = predict(name, {i["name"]: ref[f"{name}.{i['name']}"] for i in g["inputs"]})
            want = ref[f"{name}.reference"]
            if manifest["precision"] == "fp32":
                diff, tol = max_abs_diff(got, want), parity_tolerance(want)
                results[name] = {"max_abs_diff": diff, "tolerance": tol, "passed": diff <= tol}
            elif name == "mapping":  # w is no image: fp16 rounding of 8 layers, relative to the peak
                diff, tol = max_abs_diff(got, want), MAPPING_FP16_TOLERANCE * max(1.0, float(np.abs(want).max()))
                results[name] = {"max_abs_diff": diff, "tolerance": tol, "passed": diff <= tol}
            elif name == "encoder":  # W+ is no image either: both latents rendered by the export's synthesis
                syn_in = manifest["graphs"]["synthesis"]["inputs"][0]["name"]
                db = pooled_psnr_db(predict("synthesis", {syn_in: got}), predict("synthesis", {syn_in: want}))
                results[name] = {"psnr_db": db, "gate_db": QUALITY_GATE_DB, "passed": db >= QUALITY_GATE_DB}
            else:
                db = pooled_psnr_db(got, want)
                results[name] = {"psnr_db": db, "gate_db": QUALITY_GATE_DB, "passed": db >= QUALITY_GATE_DB}
    return results


class CoreMLTarget(Target):
    name = "coreml"
    title = "Core ML"
    precisions = {"fp16": "fp16 compute and weights", "fp32": "fp32 compute and weights"}
    default_precision = "fp16"
    takes = ("compute_units",)
    fixed_batch = True
    constant_weights = True
    converts_at_precision = True
    checks_elsewhere = True
    quality_not_run = "Core ML predicts on macOS only: mobilestylegan-export --check DIR there runs the check"
    engines = {"coremltools": INSTALL}
    distributions = ("coremltools",)
    bench_rows = {
        "coreml": BenchRow(
            "fp16", None, note="macOS only: Core ML predicts on Apple devices (size: the fp16 .mlpackage)"
        )
    }

    def check(self, options: ExportOptions) -> None:
        super().check(options)
        if options.compute_units is not None and options.compute_units not in COMPUTE_UNITS:
            raise ExportError(
                f"compute units ({', '.join(COMPUTE_UNITS)}) are a Core ML choice; got "
                f"{options.compute_units!r} for --format {self.name}"
            )

    def files(self, graph: str) -> list[str]:
        """The package's manifest first (its folder is what Core ML opens), the weights last."""
        root = f"{graph}.mlpackage"
        return [
            f"{root}/Manifest.json",
            f"{root}/Data/com.apple.CoreML/model.mlmodel",
            f"{root}/Data/com.apple.CoreML/weights/weight.bin",
        ]

    def weights_file(self, graph: str) -> str:
        return self.files(graph)[2]

    def convert(self, ctx: ExportContext, graph: str) -> dict[str, Any]:
        in_names, in_shapes, out_names, _ = ctx.io(graph)
        return write_mlpackage(
            ctx.graphs[graph],
            ctx.example_inputs(graph),
            in_names,
            in_shapes,
            out_names,
            ctx.tmp / f"{graph}.mlpackage",
            ctx.options.precision,
        )

    def parity_elsewhere(self, ctx: ExportContext) -> dict[str, Any]:
        """Core ML cannot predict here: store the parity inputs and float64 references for ``--check`` on a Mac."""
        from export.gates import PARITY_SEEDS, QUALITY_GATE_DB

        inputs = ctx.parity_inputs(PARITY_SEEDS)
        arrays: dict[str, np.ndarray] = {}
        for name in ctx.graphs:
            for n, t in zip(ctx.io(name)[0], inputs[name]):
                arrays[f"{name}.{n}"] = t.float().numpy()
            arrays[f"{name}.reference"] = ctx.reference(name, inputs[name]).astype(np.float32)
        np.savez(ctx.tmp / CHECK_FILE, **arrays)
        return {
            "run": False,
            "seeds": list(PARITY_SEEDS),
            "reference_file": CHECK_FILE,
            "reason": "Core ML predicts on macOS only: mobilestylegan-export --check DIR there compares it with "
            f"{CHECK_FILE} (parity rule for fp32; fp16: {QUALITY_GATE_DB:g} dB PSNR on images, "
            f"{MAPPING_FP16_TOLERANCE:g} x peak on w)",
        }

    def manifest_extras(self, ctx: ExportContext) -> dict[str, Any]:
        return {
            "coreml": {
                "models": dict(ctx.records),
                "deployment_target": "iOS16 / macOS13 (ML Program)",
                "compute_units": {
                    "default": ctx.options.compute_units or "all",
                    "meaning": "MLModelConfiguration.computeUnits the app loads the model "
                    "with (all, cpuOnly, cpuAndGPU, cpuAndNeuralEngine); "
                    "--check loads with it",
                },
                "check": f"mobilestylegan-export --check DIR on macOS compares Core ML with {CHECK_FILE}",
            }
        }

    def summary_lines(self, manifest: dict[str, Any], out: str) -> list[str]:
        return [
            f"  coreml    {name}: {c['operations']} operations ({c['convolutions']} conv), inputs "
            + ", ".join(f"{i['name']} {i['shape']}" for i in c["inputs"])
            for name, c in manifest.get("coreml", {}).get("models", {}).items()
        ]

    def check_export(self, directory: Path, compute_units: str | None = None) -> tuple[bool, list[str]]:
        results = check(directory, compute_units)
        lines = []
        for name, r in results.items():
            got = (
                f"{r['psnr_db']:.1f} dB (gate {r['gate_db']:g})"
                if "psnr_db" in r
                else f"max |diff| {r['max_abs_diff']:.2g} (<= {r['tolerance']:.2g})"
            )
            lines.append(f"  {name:9s} Core ML vs float64 PyTorch: {got} {'ok' if r['passed'] else 'FAILED'}")
        return all(r["passed"] for r in results.values()), lines
