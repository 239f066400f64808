"""Reading the published student's OpenVINO synthesis graph into our module names, op by op.

The walk starts at the constant input and follows the data flow to the image. Every op, attribute, shape
and name on the way is checked against what our :class:`~mobilestylegan.student.synthesis.MobileSynthesisNetwork`
of the same configuration expects (modulation scales against our ``1/sqrt(C_in k^2)``, the IDWT filters tap by
tap), and a graph with any compute op or float constant the walk did not visit is refused. What the graph holds:

- the affines, depthwise weights, biases, the constant input and the head keep their PyTorch names
  (``m.layers.3.conv1.conv.weight_dw`` ...) and load 1:1 (affine bias ``[1, C] -> [C]``, depthwise
  ``[C, 1, 1, k, k] -> [C, 1, k, k]``);
- demodulation is folded into the unnamed pointwise weights (``Mul_*_copy``) and the 4x4 stage's 3x3 weight,
  so they load into a *fused* student;
- each noise strength is folded into its constant noise map ``[1, 1, r, r]``: :func:`split_noise` stores
  ``noise.weight = std(map)`` and ``noise_const = map / std(map)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch

from teacher.formats import openvino_ir
from teacher.formats.common import CheckpointError

if TYPE_CHECKING:
    import openvino as ov  # typing only: read through teacher.formats.openvino_ir, imported lazily

    from mobilestylegan.student.modconv import ModulatedConv2d, ModulatedDWConv2d
    from mobilestylegan.student.synthesis import MobileSynthesisNetwork

_LRELU_SLOPE = 0.2
_HAAR_TAP = 1 / math.sqrt(2)
# Ops that only compute shapes (batch size) in this graph; they may stay unvisited.
_SHAPE_OPS = {"Constant", "ShapeOf", "Gather", "Unsqueeze", "Concat", "Broadcast"}


@dataclass
class _Style:
    """One affine of w: ``module`` is our module path owning ``modulation`` (``layers.3.conv1.conv``)."""

    module: str
    weight: np.ndarray  # [C, w_dim]
    bias: np.ndarray  # [C]
    scale: float | None  # the separate scalar Multiply, None if absent


class _GraphReader:
    """Follows the published student's data path op by op and collects its constants as our state."""

    def __init__(self, model: ov.Model, what: str) -> None:
        self.model, self.what = model, what
        self.visited: set[str] = set()
        params, results = model.get_parameters(), model.get_results()
        if len(params) != 1 or len(results) != 1:
            self.fail(f"expected one input (w) and one output (image), got {len(params)} and {len(results)}")
        self.param, self.result = params[0], results[0]
        self.visit(self.param)
        self.visit(self.result)
        self.consts = {op.get_friendly_name(): op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"}

    def fail(self, msg: str) -> NoReturn:
        raise CheckpointError(f"{self.what}: {msg}; this is not the published MobileStyleGAN student graph")

    def visit(self, node: ov.Node) -> None:
        self.visited.add(node.get_name())

    # -- small graph helpers ------------------------------------------------------------------

    def next_op(self, output: ov.Output, op_type: str) -> tuple[ov.Node, int]:
        """The only consumer of ``output`` (ShapeOf readers aside); returns (node, data input index)."""
        targets = [t for t in output.get_target_inputs() if t.get_node().get_type_name() != "ShapeOf"]
        src = output.get_node().get_friendly_name()
        if len(targets) != 1:
            self.fail(f"{src} feeds {len(targets)} ops, expected exactly one ({op_type})")
        node = targets[0].get_node()
        if node.get_type_name() != op_type:
            self.fail(f"expected {op_type} after {src}, found {node.get_type_name()} ({node.get_friendly_name()})")
        self.visit(node)
        return node, targets[0].get_index()

    def other_input(self, node: ov.Node, data_index: int) -> ov.Output:
        if node.get_input_size() != 2:
            self.fail(f"{node.get_friendly_name()} has {node.get_input_size()} inputs, expected 2")
        return node.input(1 - data_index).get_source_output()

    def const(self, output: ov.Output, shape: tuple[int, ...], name: str | None = None) -> np.ndarray:
        """A float32 Constant of the given shape (and friendly name), as a float32 copy."""
        node = output.get_node()
        if node.get_type_name() != "Constant":
            self.fail(f"expected a constant, found {node.get_type_name()} ({node.get_friendly_name()})")
        label = node.get_friendly_name()
        if name is not None and label != name:
            self.fail(f"expected the constant {name!r}, found {label!r}")
        if node.get_element_type().get_type_name() != "f32":
            self.fail(f"constant {label} is {node.get_element_type()}, expected f32")
        value = np.array(node.get_data(), dtype=np.float32, copy=True)
        if value.shape != tuple(shape):
            self.fail(f"constant {label} has shape {list(value.shape)}, expected {list(shape)}")
        self.visit(node)
        return value

    def int_const(self, output: ov.Output) -> list[int]:
        node = output.get_node()
        if node.get_type_name() != "Constant":
            self.fail(f"expected an integer constant, found {node.get_type_name()} ({node.get_friendly_name()})")
        self.visit(node)
        return [int(v) for v in np.atleast_1d(node.get_data())]

    def shape_of(self, output: ov.Output) -> tuple[int, ...]:
        ps = output.get_partial_shape()
        if not ps.is_static:
            self.fail(f"{output.get_node().get_friendly_name()} has a dynamic shape {ps}")
        return tuple(int(d) for d in ps.to_shape())

    def check_attrs(self, node: ov.Node, **want: Any) -> None:
        attrs = node.get_attributes()
        for key, value in want.items():
            got = attrs.get(key)
            got = list(got) if isinstance(got, (list, tuple)) else got
            if got != value:
                self.fail(f"{node.get_friendly_name()}: attribute {key} = {got!r}, expected {value!r}")

    def check_slope(self, prelu: ov.Node, data_index: int) -> None:
        if data_index != 0:
            self.fail(f"{prelu.get_friendly_name()}: data must be the first PRelu input")
        slope = self.const(prelu.input(1).get_source_output(), (1,))
        if abs(float(slope[0]) - _LRELU_SLOPE) > 1e-6:
            self.fail(f"{prelu.get_friendly_name()} has slope {float(slope[0])}, expected a leaky ReLU 0.2")

    # -- patterns -----------------------------------------------------------------------------

    def style(self, output: ov.Output, channels: int, w_dim: int) -> _Style:
        """``[Multiply(scale)](Reshape(Add(MatMul(w, W^T), b)))`` -> the affine and its scale."""
        node, scale = output.get_node(), None
        if node.get_type_name() == "Multiply":
            self.visit(node)
            a, b = (node.input(i).get_source_output() for i in range(2))
            if b.get_node().get_type_name() == "Constant":
                a, b = b, a
            scale = float(self.const(a, (1, 1, 1, 1))[0, 0, 0, 0])
            node = b.get_node()
        if node.get_type_name() != "Reshape":
            self.fail(f"style branch: expected Reshape, found {node.get_type_name()} ({node.get_friendly_name()})")
        self.visit(node)
        if self.shape_of(node.output(0)) != (1, channels, 1, 1):
            self.fail(f"{node.get_friendly_name()} gives {self.shape_of(node.output(0))}, expected [1,{channels},1,1]")
        add = node.input(0).get_source_output().get_node()
        if add.get_type_name() != "Add":
            self.fail(f"style branch: expected Add before {node.get_friendly_name()}, found {add.get_type_name()}")
        self.visit(add)
        mm_index = 0 if add.input(0).get_source_output().get_node().get_type_name() == "MatMul" else 1
        mm = add.input(mm_index).get_source_output().get_node()
        if mm.get_type_name() != "MatMul":
            self.fail(f"style branch: {add.get_friendly_name()} does not add a bias to a MatMul")
        self.visit(mm)
        self.check_attrs(mm, transpose_a=False, transpose_b=True)
        if mm.input(0).get_source_output().get_node().get_name() != self.param.get_name():
            self.fail(f"{mm.get_friendly_name()} does not read the input w")
        w_node = mm.input(1).get_source_output().get_node()
        w_name = w_node.get_friendly_name()
        suffix = ".modulation.weight"
        if not (w_name.startswith("m.") and w_name.endswith(suffix)):
            self.fail(f"{mm.get_friendly_name()}: weight {w_name!r} is not named m.<module>{suffix}")
        module = w_name[2 : -len(suffix)]
        weight = self.const(mm.input(1).get_source_output(), (channels, w_dim), w_name)
        bias = self.const(add.input(1 - mm_index).get_source_output(), (1, channels), f"m.{module}.modulation.bias")
        return _Style(module, weight, bias.reshape(channels), scale)

    def modulate(
        self, x: ov.Output, module: str, channels: int, w_dim: int, scale: float | None
    ) -> tuple[ov.Output, _Style]:
        """``x * style`` with the style of ``module``; checks the name and the scale (None: no scale)."""
        mul, idx = self.next_op(x, "Multiply")
        st = self.style(self.other_input(mul, idx), channels, w_dim)
        if st.module != module:
            self.fail(f"{mul.get_friendly_name()} is modulated by m.{st.module}, expected m.{module}")
        if scale is None and st.scale is not None:
            self.fail(f"m.{module}: unexpected modulation scale {st.scale}")
        if scale is not None and (st.scale is None or abs(st.scale - scale) > 1e-6 * scale):
            self.fail(f"m.{module}: modulation scale {st.scale}, expected 1/sqrt(C_in*k^2) = {scale}")
        return mul.output(0), st

    def conv(
        self, x: ov.Output, op_type: str, weight_shape: tuple[int, ...], pad: int, name: str | None = None
    ) -> tuple[ov.Output, np.ndarray]:
        node, idx = self.next_op(x, op_type)
        if idx != 0:
            self.fail(f"{node.get_friendly_name()}: data must be the first input")
        self.check_attrs(node, strides=[1, 1], dilations=[1, 1], pads_begin=[pad, pad], pads_end=[pad, pad])
        weight = self.const(node.input(1).get_source_output(), weight_shape, name)
        return node.output(0), weight

    def add_const(self, x: ov.Output, shape: tuple[int, ...], name: str | None = None) -> tuple[ov.Output, np.ndarray]:
        node, idx = self.next_op(x, "Add")
        return node.output(0), self.const(self.other_input(node, idx), shape, name)

    def styled_conv(
        self,
        x: ov.Output,
        path: str,
        conv_module: ModulatedConv2d | ModulatedDWConv2d,
        c_in: int,
        c_out: int,
        res: int,
        w_dim: int,
        depthwise: bool,
    ) -> tuple[ov.Output, dict[str, np.ndarray]]:
        """modulate -> [depthwise ->] conv -> + noise map -> + bias -> leaky ReLU."""
        k = conv_module.weight_dw.shape[-1] if depthwise else conv_module.weight.shape[-1]
        x, st = self.modulate(x, f"{path}.conv", c_in, w_dim, conv_module.scale)
        out = {f"{path}.conv.modulation.weight": st.weight, f"{path}.conv.modulation.bias": st.bias}
        if depthwise:
            x, dw = self.conv(x, "GroupConvolution", (c_in, 1, 1, k, k), k // 2, f"m.{path}.conv.weight_dw")
            x, pw = self.conv(x, "Convolution", (c_out, c_in, 1, 1), 0)
            out[f"{path}.conv.weight_dw"] = dw.reshape(c_in, 1, k, k)
            out[f"{path}.conv.weight_permute"] = pw
        else:
            x, full = self.conv(x, "Convolution", (c_out, c_in, k, k), k // 2)
            # our layout is [O, I, k, k] (or MobileStyleGAN.pytorch's [1, O, I, k, k]): same order, take its shape
            out[f"{path}.conv.weight"] = full.reshape(tuple(conv_module.weight.shape))
        x, noise = self.add_const(x, (1, 1, res, res))
        x, bias = self.add_const(x, (1, c_out, 1, 1), f"m.{path}.bias")
        act, idx = self.next_op(x, "PRelu")
        self.check_slope(act, idx)
        out[f"{path}.bias"] = bias
        out[f"{path}.noise_map"] = noise  # split into strength and unit map by the caller
        return act.output(0), out

    def idwt(self, x: ov.Output, c: int) -> ov.Output:
        """The graph's Haar synthesis, checked op by op and tap by tap: 4C -> C channels at 2x."""
        _, _, h, w = self.shape_of(x)
        split, _ = self.next_op(x, "VariadicSplit")
        if self.int_const(split.input(1).get_source_output()) != [1] or self.int_const(
            split.input(2).get_source_output()
        ) != [c, 3 * c]:
            self.fail(f"{split.get_friendly_name()} does not split channels into LL ({c}) and high bands ({3 * c})")
        ll = split.output(0)
        reshape, _ = self.next_op(split.output(1), "Reshape")
        if self.shape_of(reshape.output(0)) != (1, c, 3, h, w):  # band index fastest: channel c + 3*i + b
            self.fail(f"{reshape.get_friendly_name()} does not reshape the high bands to [1,{c},3,{h},{w}]")
        bands_split, _ = self.next_op(reshape.output(0), "VariadicSplit")
        if self.int_const(bands_split.input(1).get_source_output()) != [2] or self.int_const(
            bands_split.input(2).get_source_output()
        ) != [1, 1, 1]:
            self.fail(f"{bands_split.get_friendly_name()} does not split the 3 bands")
        bands = []
        for b in range(3):
            squeeze, _ = self.next_op(bands_split.output(b), "Squeeze")
            if self.int_const(squeeze.input(1).get_source_output()) != [2]:
                self.fail(f"{squeeze.get_friendly_name()} does not squeeze the band axis")
            bands.append(squeeze.output(0))

        def tconv(src: ov.Output, axis: str, kind: int) -> ov.Node:
            node, idx = self.next_op(src, "GroupConvolutionBackpropData")
            if idx != 0 or node.get_input_size() != 2:
                self.fail(f"{node.get_friendly_name()}: unexpected inputs")
            strides, kshape = ([2, 1], (2, 1)) if axis == "H" else ([1, 2], (1, 2))
            self.check_attrs(
                node, strides=strides, dilations=[1, 1], pads_begin=[0, 0], pads_end=[0, 0], output_padding=[0, 0]
            )
            taps = self.const(node.input(1).get_source_output(), (c, 1, 1) + kshape).reshape(c, 2)
            want = np.array([_HAAR_TAP, _HAAR_TAP if kind == 0 else -_HAAR_TAP], dtype=np.float32)
            if not np.allclose(taps, want, rtol=0, atol=1e-6):
                self.fail(
                    f"{node.get_friendly_name()}: Haar filter taps {taps[0].tolist()}, expected {want.tolist()} "
                    f"along {axis}"
                )
            return node

        def join(a: ov.Node, b: ov.Node) -> ov.Node:
            add, idx = self.next_op(a.output(0), "Add")
            if self.other_input(add, idx).get_node().get_name() != b.get_name():
                self.fail(f"{add.get_friendly_name()} does not add the expected IDWT branches")
            return add

        lo = join(tconv(ll, "H", 0), tconv(bands[0], "H", 1))  # rows: LL + (-1)^a B0
        hi = join(tconv(bands[1], "H", 0), tconv(bands[2], "H", 1))  # rows: B1 + (-1)^a B2
        y = join(tconv(lo.output(0), "W", 0), tconv(hi.output(0), "W", 1))  # cols: lo + (-1)^b hi
        if self.shape_of(y.output(0)) != (1, c, 2 * h, 2 * w):
            self.fail(f"{y.get_friendly_name()} gives {self.shape_of(y.output(0))}, expected [1,{c},{2 * h},{2 * w}]")
        return y.output(0)

    def check_everything_visited(self) -> None:
        stray = [
            f"{op.get_type_name()} {op.get_friendly_name()}"
            for op in self.model.get_ordered_ops()
            if op.get_name() not in self.visited and op.get_type_name() not in _SHAPE_OPS
        ]
        if stray:
            self.fail(f"{len(stray)} op(s) outside the expected data path: {', '.join(stray[:8])}")
        floats = [
            op.get_friendly_name()
            for op in self.model.get_ordered_ops()
            if op.get_type_name() == "Constant"
            and op.get_name() not in self.visited
            and op.get_element_type().is_real()
        ]
        if floats:
            self.fail(f"{len(floats)} float constant(s) not accounted for: {', '.join(floats[:8])}")


def read_synthesis(xml_path: Path, synthesis: MobileSynthesisNetwork, what: str) -> dict[str, np.ndarray]:
    """Walk the IR from ``m.input.input`` to the image; returns our (fused) state, noise still folded."""
    model = openvino_ir.read_model(xml_path)
    g = _GraphReader(model, what)
    cfg = synthesis.cfg
    ch, w_dim = cfg.channels, cfg.w_dim
    in_shape = g.shape_of(g.param.output(0))
    out_shape = g.shape_of(g.result.input(0).get_source_output())
    if in_shape != (1, w_dim):
        g.fail(f"input shape {list(in_shape)}, expected [1, {w_dim}]")
    if out_shape != (1, 3, cfg.img_resolution, cfg.img_resolution):
        g.fail(f"output shape {list(out_shape)}, expected [1, 3, {cfg.img_resolution}, {cfg.img_resolution}]")

    if "m.input.input" not in g.consts:
        g.fail("no constant named m.input.input")
    const_in = g.consts["m.input.input"].output(0)
    state: dict[str, np.ndarray] = {"input.input": g.const(const_in, (1, ch[0], 4, 4), "m.input.input")}
    # The constant is broadcast/tiled to the batch (shape-preserving at batch 1, checked) then modulated.
    x = const_in
    for op_type in ("Broadcast", "Tile"):
        node, idx = g.next_op(x, op_type)
        if idx != 0 or g.shape_of(node.output(0)) != (1, ch[0], 4, 4):
            g.fail(f"{node.get_friendly_name()} changes the constant input's shape")
        x = node.output(0)

    x, s = g.styled_conv(x, "conv1", synthesis.conv1.conv, ch[0], ch[0], 4, w_dim, depthwise=False)
    state.update(s)
    for i, block in enumerate(synthesis.layers):
        path, c_in, c_out, res = f"layers.{i}", ch[i], ch[i + 1], block.resolution
        x, st = g.modulate(x, f"{path}.up", c_in, w_dim, scale=None)  # the up-sampler has no scale
        state[f"{path}.up.modulation.weight"], state[f"{path}.up.modulation.bias"] = st.weight, st.bias
        x = g.idwt(x, c_in // 4)
        x, s = g.styled_conv(x, f"{path}.conv1", block.conv1.conv, c_in // 4, c_out, res, w_dim, depthwise=True)
        state.update(s)
        x, s = g.styled_conv(x, f"{path}.conv2", block.conv2.conv, c_out, c_out, res, w_dim, depthwise=True)
        state.update(s)

    head_path = f"layers.{len(synthesis.layers) - 1}.to_img"
    head = synthesis.layers[-1].to_img
    n_wav = head.bias.shape[1]
    x, st = g.modulate(x, f"{head_path}.conv", ch[-1], w_dim, head.conv.scale)
    state[f"{head_path}.conv.modulation.weight"], state[f"{head_path}.conv.modulation.bias"] = st.weight, st.bias
    x, hw = g.conv(x, "Convolution", (n_wav, ch[-1], 1, 1), 0, f"m.{head_path}.conv.weight")
    state[f"{head_path}.conv.weight"] = hw.reshape(tuple(head.conv.weight.shape))
    x, state[f"{head_path}.bias"] = g.add_const(x, (1, n_wav, 1, 1), f"m.{head_path}.bias")
    img = g.idwt(x, 3)
    if img.get_node().get_name() != g.result.input(0).get_source_output().get_node().get_name():
        g.fail("the final IDWT is not the graph's output")
    g.check_everything_visited()
    return state


def split_noise(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """``<layer>.noise_map`` (strength folded in) -> ``noise.weight = std``, ``noise_const = map / std``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.endswith(".noise_map"):
            out[key] = torch.from_numpy(value)
            continue
        layer = key[: -len(".noise_map")]
        std = float(value.astype(np.float64).std())
        unit = value.astype(np.float64) / std if std > 0 else np.zeros_like(value, dtype=np.float64)
        out[f"{layer}.noise.weight"] = torch.tensor([std], dtype=torch.float32)
        out[f"{layer}.noise_const"] = torch.from_numpy(unit.astype(np.float32))
    return out
