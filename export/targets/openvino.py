"""OpenVINO IR: ``.xml`` + ``.bin`` per graph, run by OpenVINO.

The IR is the ONNX graph (:func:`export.targets.onnx.write_onnx`) read by OpenVINO (``Core.read_model``) and saved
with ``save_model``: ``convert_model``'s graph fusions would merge each baked noise map with the next bias into one
``[1, C, r, r]`` constant, C times the map (1.4x the weights on a tiny student, several times at 1024 px); the CPU
plugin fuses what it needs at compile time.

Precisions:
- ``fp32``: float32 weights, run in f32 (the manifest tells the runtime ``INFERENCE_PRECISION_HINT=f32``).
- ``fp16``: weights compressed to fp16 (``save_model(compress_to_fp16=True)``); the synthesis graph runs at
  OpenVINO's CPU default (bf16 on CPUs with bf16, f16 on ARM, else f32: the manifest records what the quality gate
  measured), the mapping in f32.
- ``int8``: NNCF post-training quantisation of the synthesis graph (:func:`export.quantize.quantize_int8`) calibrated
  on synthesis inputs from seeded latents (:data:`CALIBRATION_SEEDS`); the mapping stays fp32; run with the f32 hint
  for the non-quantised ops. Quantisation needs constant conv weights, so int8 graphs modulate activations.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.errors import ExportError
from export.targets.base import PINNED, BenchRow, Target
from export.targets.onnx import write_onnx

if TYPE_CHECKING:
    from export.context import ExportContext, ExportOptions

CALIBRATION_SEEDS = tuple(range(10_000, 10_064))


def resave(model: Any, path: Path, compress_to_fp16: bool) -> None:
    """Save an IR over itself (``read_model`` maps the ``.bin``, so write beside it first, then rename)."""
    import openvino as ov

    stage = path.with_name(f".{path.stem}.new.xml")
    ov.save_model(model, str(stage), compress_to_fp16=compress_to_fp16)
    del model
    os.replace(stage.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(stage, path)


def calibration_inputs(ctx: ExportContext) -> list[dict[str, np.ndarray]]:
    """Synthesis inputs (and, under ``__z``, the z behind each) from :data:`CALIBRATION_SEEDS` for NNCF."""
    from mobilestylegan.student.sampling import seeded_z

    o, G = ctx.options, ctx.G
    b, seeds = o.batch or 1, list(CALIBRATION_SEEDS)
    w = ctx.reference_w(seeds).numpy()
    z = seeded_z(seeds, G.z_dim).numpy()
    names = ctx.graphs["synthesis"].input_names
    noise = [m.detach().float().numpy() for m in G.synthesis.make_noise(1, "const")]
    out = []
    for i in range(0, len(seeds) - b + 1, b):
        x = w[i : i + b]
        if o.w_input == "wplus":
            x = np.repeat(x[:, None], G.num_ws, axis=1)
        d = {names[0]: x}
        if o.noise == "input":
            d.update({n: np.repeat(m, b, axis=0) for n, m in zip(names[1:], noise)})
        d["__z"] = z[i : i + b]
        out.append(d)
    return out


def _quantizer() -> Callable:
    try:
        from export.quantize import quantize_int8
    except ImportError as err:
        raise ExportError(
            f"INT8 export needs export.quantize.quantize_int8 (NNCF post-training quantisation), "
            f"which this install lacks ({err}); export fp32 or fp16 instead"
        ) from None
    return quantize_int8


class OpenVINOTarget(Target):
    name = "openvino"
    title = "OpenVINO"
    precisions = {
        "fp32": "float32",
        "fp16": "fp16 weights, bf16 / f16 compute where the CPU has it",
        "int8": "NNCF post-training quantisation",
    }
    extension = ".xml"
    engines = {"onnx": PINNED["onnx"], "openvino": PINNED["openvino"]}
    precision_engines = {"int8": {"nncf": PINNED["nncf"]}}
    parity_backends = ("openvino",)
    distributions = ("openvino",)
    bench_rows = {
        "openvino-f32": BenchRow("fp32", "openvino", hint="f32"),
        "openvino-bf16": BenchRow("fp32", "openvino", hint="bf16"),
        "openvino-int8": BenchRow("int8", "openvino", hint="f32"),
    }

    def files(self, graph: str) -> list[str]:
        return [graph + ".xml", graph + ".bin"]

    def weights_file(self, graph: str) -> str:
        return graph + ".bin"

    def modulation(self, options: ExportOptions) -> str:
        return "activations" if options.precision == "int8" else super().modulation(options)

    def convert(self, ctx: ExportContext, graph: str) -> None:
        import openvino as ov

        onnx_path = ctx.tmp / f".{graph}.onnx"
        write_onnx(ctx, graph, onnx_path)
        model = ov.Core().read_model(str(onnx_path))
        model.set_friendly_name(f"mobilestylegan_{graph}")
        ov.save_model(model, str(ctx.tmp / f"{graph}.xml"), compress_to_fp16=False)
        del model
        onnx_path.unlink()

    def graph_manifest(self, ctx: ExportContext, graph: str) -> dict[str, Any]:
        """The precision the runtime runs the graph at: f32, except fp16 image graphs (synthesis, generator), which
        run at OpenVINO's CPU default (None: bf16 / f16 where the CPU has it); the mapping and the encoder write
        latents, which bf16's 8-bit mantissa would move by more than an image's rounding."""
        fp16_default = ctx.options.precision == "fp16" and graph not in ("mapping", "encoder")
        return {"inference_precision": None if fp16_default else "f32"}

    def make_variant(self, ctx: ExportContext) -> dict[str, Any]:
        if ctx.options.precision == "fp16":
            return self._fp16(ctx)
        return self._int8(ctx)

    def _fp16(self, ctx: ExportContext) -> dict[str, Any]:
        import openvino as ov

        core = ov.Core()
        for graph in ctx.graphs:
            path = ctx.tmp / f"{graph}.xml"
            resave(core.read_model(str(path)), path, compress_to_fp16=True)
        return {"weights_dtype": "float16"}

    def _int8(self, ctx: ExportContext) -> dict[str, Any]:
        import openvino as ov

        quantize_int8, core = _quantizer(), ov.Core()
        calib = calibration_inputs(ctx)
        for graph in ("synthesis", "generator"):
            if graph not in ctx.graphs:
                continue
            path = ctx.tmp / f"{graph}.xml"
            inputs = calib if graph == "synthesis" else [{"z": c["__z"]} for c in calib]
            feeds = [{k: v for k, v in c.items() if not k.startswith("__")} for c in inputs]
            try:
                q = quantize_int8(core.read_model(str(path)), feeds)
            except ExportError:
                raise
            except Exception as err:  # NNCF raises many types; the user gets one line
                raise ExportError(
                    f"INT8 quantisation of the {graph} graph failed: {type(err).__name__}: {err}"
                ) from err
            resave(q, path, compress_to_fp16=False)
        return {
            "weights_dtype": "int8 synthesis (NNCF), float32 mapping (and encoder)",
            "calibration": {
                "seeds": [CALIBRATION_SEEDS[0], CALIBRATION_SEEDS[-1]],
                "samples": len(CALIBRATION_SEEDS),
                "inputs": "seeded z -> PyTorch mapping (baked psi) -> w; const noise maps",
            },
        }
