"""What an export can be asked for, checked before any work starts, and the one error type of the exporter."""

from __future__ import annotations

import math

from mobilestylegan.student.lean import NOISE_MODES, W_INPUTS

FORMATS = ("onnx", "openvino", "executorch", "coreml")
PRECISIONS = ("fp32", "fp16", "int8")
NOISE = NOISE_MODES
ONNX_OPSET = 17
NOISE_CONST_FILE = "noise_const.npz"
# The exact versions the base install pins: named in the message when an engine is missing.
ENGINE_INSTALL = {"onnx": "pip install onnx==1.23.2", "onnxruntime": "pip install onnxruntime==1.31.1",
                  "openvino": "pip install openvino==2026.4.1", "nncf": "pip install nncf==3.4.0",
                  "executorch": 'pip install -e ".[executorch]" (executorch==1.5.1)',
                  "coremltools": 'pip install -e ".[coreml]" (coremltools==9.0)'}


class ExportError(Exception):
    """An export that cannot be made or failed a check; the message is one line for the user."""


def check_args(fmt, precision, w_input, noise, batch, psi, end_to_end, resolution) -> None:
    for name, value, allowed in (("format", fmt, FORMATS), ("precision", precision, PRECISIONS),
                                 ("w_input", w_input, W_INPUTS), ("noise", noise, NOISE)):
        if value not in allowed:
            raise ExportError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    if precision == "int8" and fmt != "openvino":
        raise ExportError("int8 is offered for OpenVINO only (NNCF post-training quantisation): "
                          "use --format openvino --precision int8")
    if fmt == "executorch" and precision != "fp32":
        raise ExportError(f"the executorch export is offered in fp32 only (XNNPACK, every conv delegated); got "
                          f"--precision {precision}")
    if fmt == "coreml" and precision not in ("fp16", "fp32"):
        raise ExportError(f"the coreml export is offered in fp16 (default) and fp32; got --precision {precision}")
    if fmt in ("executorch", "coreml") and batch is None:
        raise ExportError(f"the {fmt} export needs a fixed batch (--batch N); a dynamic batch is not offered")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ExportError(f"batch must be a positive integer or dynamic; got {batch!r}")
    if psi is not None and not (isinstance(psi, (int, float)) and math.isfinite(psi)):
        raise ExportError(f"truncation psi must be a finite number; got {psi!r}")
    if end_to_end and (w_input != "w" or noise == "input"):
        raise ExportError("the end-to-end graph takes z only: it needs --w-input w and --noise const or none")
    if resolution is not None and (not isinstance(resolution, int) or resolution < 16 or resolution & (resolution - 1)):
        raise ExportError(f"resolution must be a power of two >= 16; got {resolution!r}")


def require_engines(fmt: str, precision: str) -> None:
    needs = {"onnx": ["onnx", "onnxruntime"], "openvino": ["onnx", "openvino"], "executorch": ["executorch"],
             "coreml": ["coremltools"]}[fmt]
    if precision == "int8":
        needs.append("nncf")
    for mod in needs:
        try:
            __import__(mod)
        except ImportError as err:
            raise ExportError(f"{mod} is not installed ({err}), and the {fmt} {precision} export needs it: "
                              f"{ENGINE_INSTALL[mod]}") from None
