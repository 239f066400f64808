"""Core ML export: ``.mlpackage`` (ML Program) per graph, fp16 by default, checked by its spec on Linux.

Core ML predicts on macOS only, so on Linux the exporter checks what it can read: the model's inputs and outputs
(names, shapes, float32), its operation count, and the weights file against the parameter bytes at the export's
precision. It also writes ``check_reference.npz`` (the parity inputs and the float64 PyTorch outputs), which
``mobilestylegan-export --check DIR`` compares with Core ML's own predictions on a Mac: the parity rule for fp32,
the 40 dB PSNR gate for fp16.
"""

from __future__ import annotations

import platform
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from export.options import ExportError

INSTALL = 'pip install -e ".[coreml]"   (coremltools==9.0)'
CHECK_FILE = "check_reference.npz"
CHECK_GATE_DB = 40.0
MAPPING_FP16_TOLERANCE = 1e-2  # fp16 mapping vs float64: far above 8 layers of fp16 rounding, far below a wrong weight
_FLOAT32 = 65568  # ArrayFeatureType.FLOAT32 in the Core ML spec


def files(name: str) -> list[str]:
    """The files of one graph's package: its manifest first (its folder is what Core ML opens), the weights last."""
    root = f"{name}.mlpackage"
    return [f"{root}/Manifest.json", f"{root}/Data/com.apple.CoreML/model.mlmodel",
            f"{root}/Data/com.apple.CoreML/weights/weight.bin"]


def write_mlpackage(module: Any, example: tuple, in_names: list[str], in_shapes: list[tuple[int, ...]],
                    out_names: list[str], out_shapes: list[tuple[int, ...]], path: Path, precision: str
                    ) -> dict[str, Any]:
    """Trace ``module``, convert it to an ML Program at ``precision`` (fp16 or fp32 compute and weights, float32
    inputs and outputs), save it at ``path`` and return its checked spec summary."""
    import coremltools as ct
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        model = ct.convert(traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                           inputs=[ct.TensorType(name=n, shape=s, dtype=np.float32) for n, s in zip(in_names, in_shapes)],
                           outputs=[ct.TensorType(name=n, dtype=np.float32) for n in out_names],
                           compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
    model.save(str(path))
    summary = spec_summary(model.get_spec())
    want_in = [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in zip(in_names, in_shapes)]
    if summary["inputs"] != want_in or [o["name"] for o in summary["outputs"]] != out_names or any(
            o["dtype"] != "float32" for o in summary["outputs"]):
        raise ExportError(f"the Core ML model's interface is not the graph's: inputs {summary['inputs']} (want "
                          f"{want_in}), outputs {summary['outputs']} (want {out_names}, float32)")
    return summary


def spec_summary(spec: Any) -> dict[str, Any]:
    """Inputs, outputs and operations of an ML Program spec."""
    def feature(f: Any) -> dict[str, Any]:
        t = f.type.multiArrayType
        return {"name": f.name, "shape": [int(d) for d in t.shape], "dtype": "float32" if t.dataType == _FLOAT32
                else str(t.dataType)}

    ops = Counter(op.type for fn in spec.mlProgram.functions.values()
                  for block in fn.block_specializations.values() for op in block.operations)
    return {"inputs": [feature(f) for f in spec.description.input],
            "outputs": [feature(f) for f in spec.description.output],
            "operations": sum(ops.values()), "convolutions": ops.get("conv", 0),
            "spec_version": int(spec.specificationVersion)}


def check(directory: str | Path, compute_units: str | None = None) -> dict[str, Any]:
    """Core ML's predictions on the stored parity inputs against the stored float64 references (macOS only):
    max |diff| within the parity rule for fp32 exports, PSNR >= :data:`CHECK_GATE_DB` for fp16 ones. The models
    load with ``compute_units`` (default: the export's, from its manifest)."""
    from export.manifest import read_manifest
    from teacher.numerics import max_abs_diff, parity_tolerance, pooled_psnr_db

    d = Path(directory)
    manifest = read_manifest(d)
    if manifest.get("artefact_format") != "coreml":
        raise ExportError(f"{d} is a {manifest.get('artefact_format')} export; --check runs Core ML exports")
    if platform.system() != "Darwin":
        raise ExportError(f"Core ML predicts on macOS only (this is {platform.system()}): copy {d} to a Mac and run "
                          f"mobilestylegan-export --check {d.name} there")
    import coremltools as ct

    cu = manifest.get("coreml", {}).get("compute_units", {})
    units = ct.ComputeUnit[(compute_units or (cu.get("default") if isinstance(cu, dict) else None) or "all").upper()]
    results: dict[str, Any] = {}
    with np.load(d / CHECK_FILE) as ref:
        for name, g in manifest["graphs"].items():
            model = ct.models.MLModel(str(d / Path(g["files"][0]).parent), compute_units=units)
            feeds = {i["name"]: ref[f"{name}.{i['name']}"] for i in g["inputs"]}
            got = np.concatenate([model.predict({k: v[j:j + 1] for k, v in feeds.items()})[g["outputs"][0]["name"]]
                                  for j in range(len(next(iter(feeds.values()))))])
            want = ref[f"{name}.reference"]
            if manifest["precision"] == "fp32":
                diff, tol = max_abs_diff(got, want), parity_tolerance(want)
                results[name] = {"max_abs_diff": diff, "tolerance": tol, "passed": diff <= tol}
            elif name == "mapping":  # w is no image: fp16 rounding of 8 layers, relative to the peak
                diff, tol = max_abs_diff(got, want), MAPPING_FP16_TOLERANCE * max(1.0, float(np.abs(want).max()))
                results[name] = {"max_abs_diff": diff, "tolerance": tol, "passed": diff <= tol}
            else:
                db = pooled_psnr_db(got, want)
                results[name] = {"psnr_db": db, "gate_db": CHECK_GATE_DB, "passed": db >= CHECK_GATE_DB}
    return results
