"""The published MobileStyleGAN FFHQ-1024 student, imported from its OpenVINO IR into our network.

The PyPI package ``random-face==2021.7.21.1`` (Apache-2.0) ships the authors' student as
``random_face/data/SynthesisNetwork.{xml,bin}`` (input one w ``[1, 512]``, output ``[1, 3, 1024, 1024]``)
next to the StyleGAN2 FFHQ mapping network ``MappingNetwork.{xml,bin}``. The graph is mapped
constant by constant in ``IR_ANATOMY.md`` (shared docs); in short:

- the affines, depthwise weights, biases, the constant input and the head keep their PyTorch names
  (``m.layers.3.conv1.conv.weight_dw`` ...) and load 1:1 (affine bias ``[1, C] -> [C]``, depthwise
  ``[C, 1, 1, k, k] -> [C, 1, k, k]``);
- demodulation is folded into the unnamed pointwise weights (``Mul_*_copy``) and the 4x4 stage's
  3x3 weight, so they load into a *fused* student (no demodulation at run time);
- each noise strength is folded into its constant noise map ``[1, 1, r, r]``: we store
  ``noise.weight = std(map)`` and ``noise_const = map / std(map)``, so ``noise_mode="const"``
  reproduces the IR and ``noise_mode="random"`` draws fresh N(0, 1) maps at the trained strength;
- the auxiliary heads, ``style_inv`` and ``w_avg`` are not in the files (``w_avg`` is estimated by
  ``teacher.formats.openvino_ir.read_mapping_ir``).

:func:`import_published_ir` does not trust positions blindly: it follows the data flow from the
constant input to the image, checks every op, attribute, shape and name on the way (modulation
scales against our ``1/sqrt(C_in k^2)``, the IDWT filters tap by tap), and refuses graphs with any
compute op it did not visit. :func:`load_pretrained` converts once and caches a native checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilestylegan.io.checkpoint import load_student, save_student
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from teacher.formats import openvino_ir
from teacher.formats.native import sha256_file
from teacher.formats.common import CheckpointError, check_state_dict
from teacher.mapping import MappingNetwork

log = logging.getLogger(__name__)

IMPORTER_VERSION = 2  # bump when the conversion changes: cached checkpoints are then re-imported
CACHE_ENV = "MOBILESTYLEGAN_CACHE"
INSTALL_HINT = openvino_ir.INSTALL_HINT  # "pip install --no-deps random-face==2021.7.21.1"
_LRELU_SLOPE = 0.2
_HAAR_TAP = 1 / math.sqrt(2)
_DEMOD_EPS = 1e-8
# Ops that only compute shapes (batch size) in this graph; they may stay unvisited.
_SHAPE_OPS = {"Constant", "ShapeOf", "Gather", "Unsqueeze", "Concat", "Broadcast"}


@dataclass(frozen=True)
class PretrainedSpec:
    """A published student we know how to import.

    Args:
        description: One line for ``--list`` and error messages.
        requirement: The pip requirement that ships the files.
        install_hint: The command that installs them.
        config: Our architecture for it (the IR has no auxiliary heads).
    """

    description: str
    requirement: str
    install_hint: str
    config: StudentConfig = field(default_factory=lambda: StudentConfig(aux_heads=False))


PRETRAINED: dict[str, PretrainedSpec] = {
    "ffhq-1024": PretrainedSpec(
        description="MobileStyleGAN FFHQ 1024x1024 (bes-dev, published as OpenVINO IR in random-face), "
                    "with the StyleGAN2 FFHQ mapping network",
        requirement="random-face==2021.7.21.1",
        install_hint=INSTALL_HINT,
    ),
}


# ---------------------------------------------------------------------------------------------
# Reading the synthesis graph


@dataclass
class _Style:
    """One affine of w: ``module`` is our module path owning ``modulation`` (``layers.3.conv1.conv``)."""

    module: str
    weight: np.ndarray  # [C, w_dim]
    bias: np.ndarray  # [C]
    scale: float | None  # the separate scalar Multiply, None if absent


class _GraphReader:
    """Follows the published student's data path op by op and collects its constants as our state."""

    def __init__(self, model, what: str) -> None:
        self.model, self.what = model, what
        self.visited: set[str] = set()
        params, results = model.get_parameters(), model.get_results()
        if len(params) != 1 or len(results) != 1:
            self.fail(f"expected one input (w) and one output (image), got {len(params)} and {len(results)}")
        self.param, self.result = params[0], results[0]
        self.visit(self.param)
        self.visit(self.result)
        self.consts = {op.get_friendly_name(): op for op in model.get_ordered_ops()
                       if op.get_type_name() == "Constant"}

    def fail(self, msg: str):
        raise CheckpointError(f"{self.what}: {msg}; this is not the published MobileStyleGAN student graph")

    def visit(self, node) -> None:
        self.visited.add(node.get_name())

    # -- small graph helpers ------------------------------------------------------------------

    def next_op(self, output, op_type: str):
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

    def other_input(self, node, data_index: int):
        if node.get_input_size() != 2:
            self.fail(f"{node.get_friendly_name()} has {node.get_input_size()} inputs, expected 2")
        return node.input(1 - data_index).get_source_output()

    def const(self, output, shape: tuple[int, ...], name: str | None = None) -> np.ndarray:
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

    def int_const(self, output) -> list[int]:
        node = output.get_node()
        if node.get_type_name() != "Constant":
            self.fail(f"expected an integer constant, found {node.get_type_name()} ({node.get_friendly_name()})")
        self.visit(node)
        return [int(v) for v in np.atleast_1d(node.get_data())]

    def shape_of(self, output) -> tuple[int, ...]:
        ps = output.get_partial_shape()
        if not ps.is_static:
            self.fail(f"{output.get_node().get_friendly_name()} has a dynamic shape {ps}")
        return tuple(int(d) for d in ps.to_shape())

    def check_attrs(self, node, **want: Any) -> None:
        attrs = node.get_attributes()
        for key, value in want.items():
            got = attrs.get(key)
            got = list(got) if isinstance(got, (list, tuple)) else got
            if got != value:
                self.fail(f"{node.get_friendly_name()}: attribute {key} = {got!r}, expected {value!r}")

    def check_slope(self, prelu, data_index: int) -> None:
        if data_index != 0:
            self.fail(f"{prelu.get_friendly_name()}: data must be the first PRelu input")
        slope = self.const(prelu.input(1).get_source_output(), (1,))
        if abs(float(slope[0]) - _LRELU_SLOPE) > 1e-6:
            self.fail(f"{prelu.get_friendly_name()} has slope {float(slope[0])}, expected a leaky ReLU 0.2")

    # -- patterns -----------------------------------------------------------------------------

    def style(self, output, channels: int, w_dim: int) -> _Style:
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
        module = w_name[2:-len(suffix)]
        weight = self.const(mm.input(1).get_source_output(), (channels, w_dim), w_name)
        bias = self.const(add.input(1 - mm_index).get_source_output(), (1, channels),
                          f"m.{module}.modulation.bias")
        return _Style(module, weight, bias.reshape(channels), scale)

    def modulate(self, x, module: str, channels: int, w_dim: int, scale: float | None):
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

    def conv(self, x, op_type: str, weight_shape: tuple[int, ...], pad: int, name: str | None = None):
        node, idx = self.next_op(x, op_type)
        if idx != 0:
            self.fail(f"{node.get_friendly_name()}: data must be the first input")
        self.check_attrs(node, strides=[1, 1], dilations=[1, 1], pads_begin=[pad, pad], pads_end=[pad, pad])
        weight = self.const(node.input(1).get_source_output(), weight_shape, name)
        return node.output(0), weight

    def add_const(self, x, shape: tuple[int, ...], name: str | None = None):
        node, idx = self.next_op(x, "Add")
        return node.output(0), self.const(self.other_input(node, idx), shape, name)

    def styled_conv(self, x, path: str, conv_module, c_in: int, c_out: int, res: int, w_dim: int,
                    depthwise: bool) -> tuple[Any, dict[str, np.ndarray]]:
        """modulate -> [depthwise ->] conv -> + noise map -> + bias -> leaky ReLU (IR_ANATOMY §3)."""
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

    def idwt(self, x, c: int) -> Any:
        """The Haar synthesis of IR_ANATOMY §7, checked op by op and tap by tap: 4C -> C channels at 2x."""
        _, _, h, w = self.shape_of(x)
        split, _ = self.next_op(x, "VariadicSplit")
        if self.int_const(split.input(1).get_source_output()) != [1] or \
                self.int_const(split.input(2).get_source_output()) != [c, 3 * c]:
            self.fail(f"{split.get_friendly_name()} does not split channels into LL ({c}) and high bands ({3 * c})")
        ll = split.output(0)
        reshape, _ = self.next_op(split.output(1), "Reshape")
        if self.shape_of(reshape.output(0)) != (1, c, 3, h, w):  # band index fastest: channel c + 3*i + b
            self.fail(f"{reshape.get_friendly_name()} does not reshape the high bands to [1,{c},3,{h},{w}]")
        bands_split, _ = self.next_op(reshape.output(0), "VariadicSplit")
        if self.int_const(bands_split.input(1).get_source_output()) != [2] or \
                self.int_const(bands_split.input(2).get_source_output()) != [1, 1, 1]:
            self.fail(f"{bands_split.get_friendly_name()} does not split the 3 bands")
        bands = []
        for b in range(3):
            squeeze, _ = self.next_op(bands_split.output(b), "Squeeze")
            if self.int_const(squeeze.input(1).get_source_output()) != [2]:
                self.fail(f"{squeeze.get_friendly_name()} does not squeeze the band axis")
            bands.append(squeeze.output(0))

        def tconv(src, axis: str, kind: int):
            node, idx = self.next_op(src, "GroupConvolutionBackpropData")
            if idx != 0 or node.get_input_size() != 2:
                self.fail(f"{node.get_friendly_name()}: unexpected inputs")
            strides, kshape = ([2, 1], (2, 1)) if axis == "H" else ([1, 2], (1, 2))
            self.check_attrs(node, strides=strides, dilations=[1, 1], pads_begin=[0, 0], pads_end=[0, 0],
                             output_padding=[0, 0])
            taps = self.const(node.input(1).get_source_output(), (c, 1, 1) + kshape).reshape(c, 2)
            want = np.array([_HAAR_TAP, _HAAR_TAP if kind == 0 else -_HAAR_TAP], dtype=np.float32)
            if not np.allclose(taps, want, rtol=0, atol=1e-6):
                self.fail(f"{node.get_friendly_name()}: Haar filter taps {taps[0].tolist()}, expected {want.tolist()} "
                          f"along {axis}")
            return node

        def join(a, b):
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
        stray = [f"{op.get_type_name()} {op.get_friendly_name()}" for op in self.model.get_ordered_ops()
                 if op.get_name() not in self.visited and op.get_type_name() not in _SHAPE_OPS]
        if stray:
            self.fail(f"{len(stray)} op(s) outside the expected data path: {', '.join(stray[:8])}")
        floats = [op.get_friendly_name() for op in self.model.get_ordered_ops()
                  if op.get_type_name() == "Constant" and op.get_name() not in self.visited
                  and op.get_element_type().is_real()]
        if floats:
            self.fail(f"{len(floats)} float constant(s) not accounted for: {', '.join(floats[:8])}")


def _read_synthesis(xml_path: Path, synthesis, what: str) -> dict[str, np.ndarray]:
    """Walk the IR from ``m.input.input`` to the image; returns our (fused) state, noise still folded."""
    model = openvino_ir._read_model(xml_path)
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


def _split_noise(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """``<layer>.noise_map`` (strength folded in) -> ``noise.weight = std``, ``noise_const = map / std``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.endswith(".noise_map"):
            out[key] = torch.from_numpy(value)
            continue
        layer = key[:-len(".noise_map")]
        std = float(value.astype(np.float64).std())
        unit = value.astype(np.float64) / std if std > 0 else np.zeros_like(value, dtype=np.float64)
        out[f"{layer}.noise.weight"] = torch.tensor([std], dtype=torch.float32)
        out[f"{layer}.noise_const"] = torch.from_numpy(unit.astype(np.float32))
    return out


# ---------------------------------------------------------------------------------------------
# Optional: an unfused student with trainable demodulation (IR_ANATOMY §10.1b)


def _demod_fit(gram: np.ndarray, scale: float, what: str, tol: float) -> tuple[np.ndarray, float]:
    """Non-negative a with ``scale^2 * gram @ a = 1`` (``gram[j, i] = sum_k W'_jik^2``); returns (a, max |d - 1|)."""
    try:
        from scipy.optimize import nnls
    except ImportError as err:  # scipy is an optional (dev) dependency
        raise ImportError("importing the published student unfused needs scipy (pip install scipy); "
                          "the default fused import does not") from err
    A = scale**2 * gram.astype(np.float64)
    a, _ = nnls(A, np.ones(A.shape[0]), maxiter=50 * A.shape[1])
    d = 1 / np.sqrt(A @ a + _DEMOD_EPS)
    err = float(np.abs(d - 1).max())
    if err > tol:
        raise CheckpointError(f"{what}: no demodulation vector reproduces the folded weights "
                              f"(max |d - 1| = {err:.3g} > {tol}); the weights are not a folded demodulation")
    return a, err


def unfuse_state(state: dict[str, torch.Tensor], synthesis, what: str, tol: float = 1e-5) -> dict[str, float]:
    """Add ``style_inv = sqrt(a)`` per styled conv so the recomputed demodulation is 1 (weights unchanged)."""
    fit: dict[str, float] = {}
    paths = ["conv1"] + [f"layers.{b}.conv{j}" for b in range(len(synthesis.layers)) for j in (1, 2)]
    for path, conv in zip(paths, synthesis.styled_convs()):
        if path == "conv1":
            w = state[f"{path}.conv.weight"].double().numpy()
            w = w.reshape(w.shape[-4:])  # [O, I, k, k]
            gram = (w**2).sum(axis=(2, 3))
        else:
            dw = state[f"{path}.conv.weight_dw"].double().numpy()  # [I, 1, k, k]
            pw = state[f"{path}.conv.weight_permute"].double().numpy()[:, :, 0, 0]  # [O, I]
            gram = pw**2 * (dw**2).sum(axis=(1, 2, 3))[None]
        a, err = _demod_fit(gram, conv.conv.scale, f"{what} ({path})", tol)
        style_inv = torch.from_numpy(np.sqrt(a).astype(np.float32))
        state[f"{path}.conv.style_inv"] = style_inv.reshape(tuple(conv.conv.style_inv.shape))  # [1, 1, I, 1, 1]
        fit[path] = err
    return fit


# ---------------------------------------------------------------------------------------------
# Public API


def import_published_ir(xml_path: str | os.PathLike, mapping_xml_path: str | os.PathLike,
                        unfused: bool = False) -> StudentGenerator:
    """Convert the published MobileStyleGAN student (OpenVINO IR) and its mapping network.

    Args:
        xml_path: ``SynthesisNetwork.xml`` (the ``.bin`` next to it is read too).
        mapping_xml_path: ``MappingNetwork.xml`` (converted by ``teacher.formats.openvino_ir``).
        unfused: Return an unfused student whose demodulation is computed at run time (for further
            training): the folded weights are kept and ``style_inv`` is fitted by non-negative least
            squares so the recomputed demodulation is 1 (max deviation recorded in ``info``). Needs
            scipy. The original ``style_inv`` is not recoverable (only its square up to a
            non-unique solution) and the auxiliary heads are absent either way.

    Returns:
        A :class:`StudentGenerator` (eval mode, gradients off) with ``info`` describing provenance;
        fused unless ``unfused``. ``G(z, noise_mode="const")`` (no truncation) reproduces the IR fed
        with ``G.mapping(z)[:, 0]``; ``noise_mode="random"`` draws fresh noise at the trained strengths.

    Raises:
        CheckpointError: A file is missing or the graph is not the published student's.
    """
    xml_path, mapping_xml_path = Path(xml_path), Path(mapping_xml_path)
    what = f"published student IR {xml_path}"
    cfg = PRETRAINED["ffhq-1024"].config
    # The synthesis graph first (fails fast on a wrong file); our layers give the expected shapes and scales.
    state = _split_noise(_read_synthesis(xml_path, MobileSynthesisNetwork(cfg), what))
    mapping_state, mapping_info = openvino_ir.read_mapping_ir(mapping_xml_path)
    mapping = MappingNetwork(mapping_info["z_dim"], mapping_info["w_dim"], mapping_info["num_layers"],
                             mapping_info["lr_mul"])
    mapping.load_state_dict(mapping_state, strict=True)
    G = StudentGenerator(cfg, mapping)
    info: dict[str, Any] = {}
    if unfused:
        info["demod_fit_max_abs_d_minus_1"] = unfuse_state(state, G.synthesis, what)
    else:
        for conv in G.synthesis.styled_convs():  # the IR is fused: no style_inv, demodulation in the weights
            conv.conv.fuse()
    expected = {k: tuple(v.shape) for k, v in G.synthesis.state_dict().items()}
    check_state_dict(what, state, expected)
    G.synthesis.load_state_dict(state, strict=True)
    if not unfused:
        G.synthesis.fuse()  # the rest of the inference form (the final inverse transform into the head)

    info.update({
        "source": "MobileStyleGAN FFHQ-1024 student, OpenVINO IR from random-face==2021.7.21.1 (Apache-2.0)",
        "source_files": {p.name: {"path": str(p), "sha256": sha256_file(p)}
                         for p in _ir_pair(xml_path) + _ir_pair(mapping_xml_path)},
        "importer_version": IMPORTER_VERSION,
        "fused": not unfused,
        "noise": "IR noise maps have the strength folded in: noise.weight = std(map), noise_const = map / std",
        "w_avg_source": mapping_info["w_avg_source"],
        "missing_from_source": "auxiliary heads, style_inv, w_avg",
    })
    G.info = info
    return G.eval().requires_grad_(False)


def load_pretrained(name: str = "ffhq-1024", device: str | torch.device = "cpu",
                    cache_dir: str | os.PathLike | None = None) -> StudentGenerator:
    """A published student, ready to sample: eval mode, gradients off, fused.

    The first call converts the installed random-face IR files and caches a native checkpoint at
    ``<cache>/pretrained/<name>.pt`` (``<cache>`` = ``cache_dir``, else ``$MOBILESTYLEGAN_CACHE``,
    else ``~/.cache/mobilestylegan``); later calls read it. The cache is keyed by the sha256 of the
    four IR files and the importer version: if they change, or the cached file is unreadable, it is
    re-imported (and overwritten atomically). Nothing is downloaded.

    Args:
        name: One of :data:`PRETRAINED` (``"ffhq-1024"``).
        device: Where to put the generator.
        cache_dir: Cache root (see above).

    Raises:
        CheckpointError: Unknown name, random-face not installed (the message has the install
            command), or the files are not the published student.
    """
    spec = _spec(name)
    try:
        files = openvino_ir.random_face_files()
    except CheckpointError as err:
        raise CheckpointError(f"the pretrained student {name!r} is read from the random-face package, which was not "
                              f"found; install it (without its dependencies) with: {spec.install_hint}  ({err})"
                              ) from err
    digests = {p.name: sha256_file(p) for p in files.values()}
    path = cache_path(name, cache_dir)
    G = _read_cache(path, name, digests)
    if G is None:
        G = import_published_ir(files["synthesis_xml"], files["mapping_xml"])
        G.info["pretrained_name"] = name
        path.parent.mkdir(parents=True, exist_ok=True)
        save_student(path, G, G.info)
    return G.eval().requires_grad_(False).to(device)


def cache_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/pretrained/<name>.pt`` (see :func:`load_pretrained`)."""
    _spec(name)
    root = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV)
    root = root or Path.home() / ".cache" / "mobilestylegan"
    return Path(root).expanduser() / "pretrained" / f"{name}.pt"


def _spec(name: str) -> PretrainedSpec:
    if name not in PRETRAINED:
        raise CheckpointError(f"unknown pretrained model {name!r}; known: {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def _read_cache(path: Path, name: str, digests: dict[str, str]) -> StudentGenerator | None:
    """The cached generator if it is readable and made from these files by this importer, else None."""
    if not path.is_file():
        return None
    try:
        G = load_student(path)
    except CheckpointError as err:
        log.warning("re-importing %s: the cached checkpoint %s is unreadable (%s)", name, path, err)
        return None
    info = G.info
    cached = {k: v.get("sha256") for k, v in (info.get("source_files") or {}).items() if isinstance(v, dict)}
    if (info.get("pretrained_name") != name or info.get("importer_version") != IMPORTER_VERSION
            or cached != digests or not G.synthesis.fused):
        log.info("re-importing %s: the cached checkpoint %s was made from other files or another importer", name, path)
        return None
    return G


def _ir_pair(xml_path: Path) -> list[Path]:
    return [xml_path, xml_path.with_suffix(".bin")]


# ---------------------------------------------------------------------------------------------
# CLI

EXAMPLES = f"""examples:
  mobilestylegan-import ffhq-1024 ffhq1024_student.pt             # fused, ready for sampling / export
  mobilestylegan-import ffhq-1024 ffhq1024_unfused.pt --unfused   # run-time demodulation (needs scipy)
  mobilestylegan-import --list

The source files come from the random-face package; install it with:
  {INSTALL_HINT}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mobilestylegan-import",
        description="Convert a published MobileStyleGAN student (OpenVINO IR) into a native student checkpoint "
                    "(.pt, readable with mobilestylegan.io.checkpoint.load_student). Nothing is downloaded.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help=f"published model: {', '.join(sorted(PRETRAINED))}")
    p.add_argument("output", nargs="?", type=Path, help="output file (*.pt)")
    p.add_argument("--unfused", action="store_true",
                   help="keep demodulation as a run-time computation (style_inv fitted by NNLS; needs scipy)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--list", action="store_true", help="list the known published models and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for key in sorted(PRETRAINED):
            print(f"{key}: {PRETRAINED[key].description} (needs: {PRETRAINED[key].install_hint})")
        return 0
    if args.name is None or args.output is None:
        print("error: give a model name and an output file (see --help)", file=sys.stderr)
        return 2
    if args.name not in PRETRAINED:
        print(f"error: unknown model {args.name!r}; known: {', '.join(sorted(PRETRAINED))}", file=sys.stderr)
        return 2
    if args.output.suffix != ".pt":
        print(f"error: output {args.output} must end in .pt", file=sys.stderr)
        return 2
    if not args.output.resolve().parent.is_dir():
        print(f"error: output directory {args.output.parent} does not exist; create it first", file=sys.stderr)
        return 2
    if args.output.exists() and not args.force:
        print(f"error: {args.output} exists; pass --force to overwrite", file=sys.stderr)
        return 2
    try:
        try:
            files = openvino_ir.random_face_files()
        except CheckpointError as err:
            raise CheckpointError(f"{err}. Install command: {PRETRAINED[args.name].install_hint}") from err
        print(f"importing {files['synthesis_xml']} ...", file=sys.stderr)
        G = import_published_ir(files["synthesis_xml"], files["mapping_xml"], unfused=args.unfused)
        G.info["pretrained_name"] = args.name
        save_student(args.output, G, G.info)
    except (CheckpointError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    n = sum(p.numel() for p in G.synthesis.parameters())
    print(f"wrote {args.output}: {args.name}, {'unfused' if args.unfused else 'fused'} student, "
          f"{n:,} synthesis parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
