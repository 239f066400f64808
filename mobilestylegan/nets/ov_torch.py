"""An OpenVINO model run as a differentiable PyTorch module (a small op set: enough for FaceNet).

OpenVINO reads graphs we cannot otherwise run in PyTorch (TensorFlow frozen graphs, ``.tflite``) but computes no
gradients. :class:`OVGraph` replays such a graph op by op with torch functions, its constants as buffers, so a loss
can flow through it. Written by hand: no maintained converter goes from OpenVINO (or a TensorFlow graph, without
TensorFlow) to PyTorch. Ops outside the set are refused when the module is built, naming them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (
    "Parameter",
    "Constant",
    "Result",
    "Convolution",
    "Add",
    "Subtract",
    "Multiply",
    "Divide",
    "Maximum",
    "Power",
    "Relu",
    "Concat",
    "MaxPool",
    "AvgPool",
    "Reshape",
    "Transpose",
    "MatMul",
    "ReduceSum",
)


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def _pads(
    attrs: dict[str, Any],
    spatial: tuple[int, int],
    kernel: tuple[int, int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[int]:
    """``F.pad`` order (left, right, top, bottom) from OpenVINO's auto_pad / pads_begin / pads_end."""
    auto = str(attrs.get("auto_pad", "explicit")).lower()
    if auto in ("same_upper", "same_lower"):
        (t, b), (lft, r) = (
            _same_pads(spatial[i], kernel[i], strides[i], dilations[i], auto == "same_upper") for i in range(2)
        )
        return [lft, r, t, b]
    if auto == "valid":
        return [0, 0, 0, 0]
    pb, pe = list(attrs.get("pads_begin", [0, 0])), list(attrs.get("pads_end", [0, 0]))
    return [pb[1], pe[1], pb[0], pe[0]]


class OVGraph(nn.Module):
    """``OVGraph(path_or_model)(x)``: the model's single output for its single input (torch tensors)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        import openvino as ov

        if isinstance(model, (str, os.PathLike)):
            model = ov.Core().read_model(str(model))
        ops = model.get_ordered_ops()
        unknown = sorted({op.get_type_name() for op in ops} - set(SUPPORTED))
        if unknown:
            raise ValueError(f"OVGraph cannot replay these OpenVINO ops: {', '.join(unknown)}")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError("OVGraph replays models with one input and one output")
        self.steps: list[tuple[str, str, list[str], dict[str, Any]]] = []
        self._arrays: dict[str, np.ndarray] = {}  # integer constants (shapes, axes, orders), by node name
        self._buffers: dict[str, str] = {}  # float constants: node name -> buffer name (they follow .to())
        for op in ops:
            name, kind = op.get_name(), op.get_type_name()
            srcs = [f"{v.get_node().get_name()}:{v.get_index()}" for v in op.input_values()]
            if kind == "Constant":
                data = np.array(op.get_data())
                if data.dtype.kind == "f":
                    self._buffers[name] = f"c{len(self._buffers)}"
                    self.register_buffer(
                        self._buffers[name], torch.from_numpy(data.astype(np.float32)), persistent=False
                    )
                else:
                    self._arrays[name] = data
                continue
            attrs = dict(op.get_attributes())
            if kind in ("Convolution", "MaxPool", "AvgPool"):
                shape = op.input_value(0).get_partial_shape()
                attrs["_spatial"] = (shape[2].get_length(), shape[3].get_length())
            self.steps.append((name, kind, srcs, attrs))
        self.input_name = f"{model.inputs[0].get_node().get_name()}:0"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, Any] = {self.input_name: x}

        def val(key: str) -> Any:
            if key in env:
                return env[key]
            node = key.rsplit(":", 1)[0]
            return getattr(self, self._buffers[node]) if node in self._buffers else self._arrays[node]

        for name, kind, srcs, a in self.steps:
            if kind == "Parameter":
                continue
            args = [val(s) for s in srcs]
            if kind == "Result":
                return args[0]
            env[f"{name}:0"] = self._apply(kind, args, a)
        raise RuntimeError("the model has no Result")

    @staticmethod
    def _apply(kind: str, args: list[Any], a: dict[str, Any]) -> torch.Tensor:
        if kind in ("Add", "Subtract", "Multiply", "Divide", "Maximum", "Power"):
            x, y = (torch.as_tensor(v, dtype=torch.float32) if isinstance(v, np.ndarray) else v for v in args)
            return {
                "Add": torch.add,
                "Subtract": torch.sub,
                "Multiply": torch.mul,
                "Divide": torch.div,
                "Maximum": torch.maximum,
                "Power": torch.pow,
            }[kind](x, y)
        if kind == "Relu":
            return F.relu(args[0])
        if kind == "Convolution":
            x, w = args
            k, s, d = tuple(w.shape[2:]), list(a["strides"]), list(a["dilations"])
            x = F.pad(x, _pads(a, a["_spatial"], k, s, d))
            return F.conv2d(x, w, stride=s, dilation=d)
        if kind in ("MaxPool", "AvgPool"):
            k, s = list(a["kernel"]), list(a["strides"])
            d = list(a.get("dilations", [1, 1]))
            pads = _pads(a, a["_spatial"], k, s, d)
            ceil = str(a.get("rounding_type", "floor")).lower() == "ceil"
            if kind == "MaxPool":
                x = F.pad(args[0], pads, value=float("-inf")) if any(pads) else args[0]
                return F.max_pool2d(x, k, s, dilation=d, ceil_mode=ceil)
            if any(pads) and a.get("exclude-pad", True):
                ones = F.pad(torch.ones_like(args[0][:, :1]), pads)
                x = F.pad(args[0], pads)
                return F.avg_pool2d(x, k, s, ceil_mode=ceil) / F.avg_pool2d(ones, k, s, ceil_mode=ceil)
            return F.avg_pool2d(F.pad(args[0], pads), k, s, ceil_mode=ceil)
        if kind == "Concat":
            return torch.cat(args, int(a["axis"]))
        if kind == "Reshape":
            x, shape = args[0], [int(v) for v in np.asarray(args[1]).ravel()]
            if a.get("special_zero", False):
                shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return x.reshape(shape)
        if kind == "Transpose":
            return args[0].permute(*[int(v) for v in np.asarray(args[1]).ravel()])
        if kind == "MatMul":
            x, y = (torch.as_tensor(v, dtype=torch.float32) if isinstance(v, np.ndarray) else v for v in args)
            x = x.transpose(-1, -2) if a.get("transpose_a") else x
            y = y.transpose(-1, -2) if a.get("transpose_b") else y
            return x @ y
        if kind == "ReduceSum":
            axes = [int(v) for v in np.asarray(args[1]).ravel()]
            return args[0].sum(dim=axes, keepdim=bool(a.get("keep_dims", False)))
        raise ValueError(f"OVGraph: unsupported op {kind}")
