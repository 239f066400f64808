"""The fp16 and int8 variants, made from the checked fp32 graphs (and then quality-gated)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from export.convert import save_ov, write_program
from export.fp16 import onnx_weights_to_fp16
from export.options import ONNX_FILES, ExportError

if TYPE_CHECKING:
    from export.job import Job

CALIBRATION_SEEDS = tuple(range(10_000, 10_064))


def make_variant(job: Job, manifest: dict[str, Any]) -> None:
    """Turn the fp32 graphs in ``job.tmp`` into ``job.precision`` in place; notes what was done in ``manifest``."""
    if job.fmt == "tflite":  # fp16 / int8: converted again with that recipe (the mapping stays fp32 for int8)
        from export.litert import write_tflite

        for name, module in job.graphs.items():
            if job.precision == "int8" and name == "mapping":
                continue
            example = tuple(module.example_inputs(job.batch or 1))
            job.litert[name] = write_tflite(module, example, job.io(name)[0], job.tmp / f"{name}.tflite",
                                            job.precision)
            manifest["litert"]["graphs"][name] = job.litert[name]
        manifest["weights_dtype"] = ("float16 (litert-torch fp16 recipe); noise maps and biases float32"
                                     if job.precision == "fp16" else
                                     "int8 synthesis (litert-torch dynamic-range recipe), float32 mapping")
        return
    if job.fmt == "executorch":  # fp16 (int8 was refused up front): lowered again as half-precision programs
        for name in job.graphs:
            write_program(job, name, fp16=True)
        manifest["delegation"] = job.delegation
        manifest["weights_dtype"] = ("float16: half-precision programs (XNNPACK fp16 kernels), float32 input and "
                                     "output cast inside the program")
        return
    if job.fmt in ONNX_FILES:  # fp16 (int8 was refused up front)
        for name in job.graphs:
            onnx_weights_to_fp16(job.tmp / f"{name}.onnx")
        manifest["weights_dtype"] = "float16 (Cast to float32 in the graph; ONNX Runtime computes in float32)"
        return
    import openvino as ov

    core = ov.Core()
    if job.precision == "fp16":
        for name in job.graphs:
            path = job.tmp / f"{name}.xml"
            model = core.read_model(str(path))
            save_ov(model, path, compress_to_fp16=True)
            # OpenVINO's CPU default (bf16 / f16 where supported) for the heavy graphs; the mapping in f32.
            manifest["graphs"][name]["inference_precision"] = "f32" if name == "mapping" else None
        manifest["weights_dtype"] = "float16"
        return
    quantize_int8 = _quantizer()
    calib = calibration_inputs(job)
    for name in ("synthesis", "generator"):
        if name not in job.graphs:
            continue
        path = job.tmp / f"{name}.xml"
        inputs = calib if name == "synthesis" else [{"z": c["__z"]} for c in calib]
        feeds = [{k: v for k, v in c.items() if not k.startswith("__")} for c in inputs]
        try:
            q = quantize_int8(core.read_model(str(path)), feeds)
        except ExportError:
            raise
        except Exception as err:  # NNCF raises many types; the user gets one line
            raise ExportError(f"INT8 quantisation of the {name} graph failed: {type(err).__name__}: {err}") from err
        save_ov(q, path, compress_to_fp16=False)
    manifest["weights_dtype"] = "int8 synthesis (NNCF), float32 mapping"
    manifest["calibration"] = {"seeds": [CALIBRATION_SEEDS[0], CALIBRATION_SEEDS[-1]],
                               "samples": len(CALIBRATION_SEEDS),
                               "inputs": "seeded z -> PyTorch mapping (baked psi) -> w; const noise maps"}


def calibration_inputs(job: Job) -> list[dict[str, np.ndarray]]:
    """Synthesis inputs (and the z behind each) from :data:`CALIBRATION_SEEDS` for NNCF."""
    from mobilestylegan.student.sampling import seeded_z

    b = job.batch or 1
    seeds = list(CALIBRATION_SEEDS)
    w = job.reference_w(seeds).numpy()
    z = seeded_z(seeds, job.G.z_dim).numpy()
    names = job.graphs["synthesis"].input_names
    noise = [m.detach().float().numpy() for m in job.G.synthesis.make_noise(1, "const")]
    out = []
    for i in range(0, len(seeds) - b + 1, b):
        x = w[i:i + b]
        if job.w_input == "wplus":
            x = np.repeat(x[:, None], job.G.num_ws, axis=1)
        d = {names[0]: x}
        if job.noise == "input":
            d.update({n: np.repeat(m, b, axis=0) for n, m in zip(names[1:], noise)})
        d["__z"] = z[i:i + b]
        out.append(d)
    return out


def _quantizer() -> Callable:
    try:
        from export.quantize import quantize_int8
    except ImportError as err:
        raise ExportError(f"INT8 export needs export.quantize.quantize_int8 (NNCF post-training quantisation), "
                          f"which this install lacks ({err}); export fp32 or fp16 instead") from None
    return quantize_int8
