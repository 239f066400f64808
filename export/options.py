"""What an export can be asked for, checked before any work starts, and the one error type of the exporter."""

from __future__ import annotations

import math

from mobilestylegan.student.lean import NOISE_MODES, W_INPUTS

FORMATS = ("onnx", "openvino", "executorch", "coreml", "tflite", "web")
ONNX_FILES = ("onnx", "web")  # formats whose graphs are ONNX files
PRECISIONS = ("fp32", "fp16", "int8")
NOISE = NOISE_MODES
ONNX_OPSET = 17
NOISE_CONST_FILE = "noise_const.npz"
# Core ML compute units (MLComputeUnits / coremltools.ComputeUnit), the device set the model is loaded for.
COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")
# The exact versions the base install pins: named in the message when an engine is missing.
ENGINE_INSTALL = {"onnx": "pip install onnx==1.23.2", "onnxruntime": "pip install onnxruntime==1.31.1",
                  "openvino": "pip install openvino==2026.4.1", "nncf": "pip install nncf==3.4.0",
                  "executorch": 'pip install -e ".[executorch]" (executorch==1.5.1)',
                  "coremltools": 'pip install -e ".[coreml]" (coremltools==9.0)',
                  "litert_torch": 'pip install -e ".[litert]" (litert-torch==0.10.0, ai-edge-litert==2.3.0)',
                  "ai_edge_litert": 'pip install -e ".[litert]" (litert-torch==0.10.0, ai-edge-litert==2.3.0)'}


class ExportError(Exception):
    """An export that cannot be made or failed a check; the message is one line for the user."""


def check_args(fmt, precision, w_input, noise, batch, psi, end_to_end, resolution, compute_units=None) -> None:
    for name, value, allowed in (("format", fmt, FORMATS), ("precision", precision, PRECISIONS),
                                 ("w_input", w_input, W_INPUTS), ("noise", noise, NOISE)):
        if value not in allowed:
            raise ExportError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    if precision == "int8" and fmt not in ("openvino", "tflite"):
        raise ExportError("int8 is offered for OpenVINO (NNCF post-training quantisation) and LiteRT (dynamic-range) "
                          "only: use --format openvino --precision int8")
    if fmt == "coreml" and precision not in ("fp16", "fp32"):
        raise ExportError(f"the coreml export is offered in fp16 (default) and fp32; got --precision {precision}")
    if compute_units is not None and (fmt != "coreml" or compute_units not in COMPUTE_UNITS):
        raise ExportError(f"compute units ({', '.join(COMPUTE_UNITS)}) are a Core ML choice; got {compute_units!r} "
                          f"for --format {fmt}")
    if fmt == "web":
        _check_web(precision, noise, batch, psi, end_to_end)
    if fmt == "tflite" and precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"the tflite export is offered in fp32, fp16 and int8; got --precision {precision}")
    if fmt == "tflite" and (noise == "input" or end_to_end):
        raise ExportError("the tflite export writes one-input mapping and synthesis graphs: --noise const or none, "
                          "no --end-to-end")
    if fmt in ("executorch", "coreml", "tflite") and batch is None:
        raise ExportError(f"the {fmt} export needs a fixed batch (--batch N); a dynamic batch is not offered")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ExportError(f"batch must be a positive integer or dynamic; got {batch!r}")
    if psi is not None and not (isinstance(psi, (int, float)) and math.isfinite(psi)):
        raise ExportError(f"truncation psi must be a finite number; got {psi!r}")
    if end_to_end and (w_input != "w" or noise == "input"):
        raise ExportError("the end-to-end graph takes z only: it needs --w-input w and --noise const or none")
    if resolution is not None and (not isinstance(resolution, int) or resolution < 16 or resolution & (resolution - 1)):
        raise ExportError(f"resolution must be a power of two >= 16; got {resolution!r}")


def _check_web(precision, noise, batch, psi, end_to_end) -> None:
    if precision not in ("fp16", "fp32"):
        raise ExportError(f"the web export is offered in fp16 (default: fp16 weights, fp32 compute) and fp32; got "
                          f"--precision {precision}")
    if batch != 1:
        raise ExportError(f"the web page renders one face at a time: the web export needs --batch 1; "
                          f"got {batch or 'dynamic'}")
    if noise == "input":
        raise ExportError("the web export bakes the noise: use --noise const (default) or none")
    if psi is not None:
        raise ExportError("the web page chooses truncation with its slider: leave out --truncation-psi")
    if end_to_end:
        raise ExportError("the web page runs the mapping and synthesis graphs: leave out --end-to-end")


def require_engines(fmt: str, precision: str) -> None:
    needs = {"onnx": ["onnx", "onnxruntime"], "web": ["onnx", "onnxruntime"], "openvino": ["onnx", "openvino"],
             "executorch": ["executorch"],
             "coreml": ["coremltools"], "tflite": ["litert_torch", "ai_edge_litert"]}[fmt]
    if precision == "int8":
        needs.append("nncf")
    for mod in needs:
        try:
            __import__(mod)
        except ImportError as err:
            raise ExportError(f"{mod} is not installed ({err}), and the {fmt} {precision} export needs it: "
                              f"{ENGINE_INSTALL[mod]}") from None
