"""INT8 post-training quantisation of an exported synthesis graph (OpenVINO IR, NNCF).

Why the default recipe fails. Every styled conv of the student reads ``x * s(w)``: a per-sample,
per-channel style scale. NNCF's default (every Convolution, GroupConvolution, MatMul and Multiply input
quantised per tensor) gives one activation scale to channels whose magnitudes differ by the style, and
quantises the modulation multiplies themselves: about 21 dB PSNR on the FFHQ-1024 student (quality is
measured against the fp32 PyTorch output on 16 fixed seeds, images clipped to [-1, 1], peak-to-peak 2).

The ``modulation-aware`` plan (the default):

1. Only the dense convolutions are quantised (pointwise 1x1 convs, the 4x4 stage's 3x3 conv, the head)
   and only at feature resolutions >= ``min_resolution``: that is where the MACs are (at 1024 px the
   pointwise convs at 256 and 512 px hold half of them). The modulation path (style MatMul, its slices
   and the ``x * s`` Multiply), the depthwise and IDWT band-mix convs and the low-resolution layers, which
   are the most sensitive (one 8-px pointwise conv alone costs the image 35 dB), stay in floating point.
2. Per-channel equalisation (SmoothQuant-style) of each quantised conv's input: the per-input-channel
   range left by the style scale is divided out of the activation and multiplied into the weight column
   (``W[:, c] * m_c``, ``x_c / m_c`` with ``m_c = amax_c^alpha / wmax_c^(1 - alpha)``), so one per-tensor
   activation scale fits every channel. ``x / m`` is an inserted per-channel Multiply that OpenVINO fuses
   into the producing depthwise conv.
3. NNCF ``quantize`` (preset MIXED: symmetric per-channel weights, asymmetric per-tensor activations)
   with everything but those convs in its ignored scope, calibrated on synthesis inputs from generated
   latents (:func:`calibration_inputs`).

The ``weights`` plan is NNCF weight compression (INT8_ASYM, activations stay float): a 4x smaller file,
no speed-up on CPU (OpenVINO decompresses conv weights at compile time).

Measured on the FFHQ-1024 student (16 seeds, PSNR vs fp32 PyTorch, 64 calibration latents; docs/export.md has
the commands): NNCF default 21.3 dB; MIXED preset 22.1; every dense conv 27.3; NNCF's own SmoothQuant on convs
27.9; modulation-aware, convs >= 256 px, alpha 0.75: 40.5 dB with the f32 hint for the float ops (39.6 with
bf16). Weight quantisation alone (per-channel INT8, every conv) already costs ~40 dB: the 40 dB gate leaves no
room for 8-bit activations in the low-resolution layers. Only the quantised half of the MACs runs in INT8; the
rest and the memory-bound depthwise convs do not, which bounds what INT8 can gain on a CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import openvino as ov

PLANS = ("modulation-aware", "conv", "default", "weights")
# Op types NNCF could quantise that the modulation-aware and conv plans keep in floating point.
_FLOAT_TYPES = (
    "GroupConvolution",
    "MatMul",
    "Multiply",
    "Add",
    "Subtract",
    "Divide",
    "ConvolutionBackpropData",
    "GroupConvolutionBackpropData",
    "Interpolate",
    "MVN",
    "ReduceMean",
    "ReduceSum",
    "Concat",
    "AvgPool",
    "MaxPool",
    "DepthToSpace",
    "Transpose",
    "Reshape",
    "PRelu",
    "Maximum",
    "Minimum",
    "Einsum",
    "Sqrt",
    "Power",
    "Split",
    "VariadicSplit",
    "StridedSlice",
    "Slice",
    "Gather",
)


def calibration_inputs(
    G: Any,
    seeds: Iterable[int] = range(10_000, 10_064),
    input_name: str = "w",
    truncation_psi: float | None = None,
    num_ws: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Synthesis inputs from generated latents: seeded z -> ``G.mapping`` -> one w per sample.

    Args:
        G: A generator with ``mapping`` and ``z_dim`` (student or teacher).
        seeds: Latent seeds (:func:`mobilestylegan.student.sampling.seeded_z`); keep them apart from evaluation seeds.
        input_name: The synthesis graph's w input name.
        truncation_psi: Truncation applied by the mapping (None: none).
        num_ws: Repeat w to ``[1, num_ws, w_dim]`` for a W+ graph (None: ``[1, w_dim]``).

    Returns:
        One feed dict per sample (batch 1), for :func:`quantize_int8`.
    """
    import torch

    from mobilestylegan.student.sampling import seeded_z

    seeds = list(seeds)
    with torch.no_grad():
        z = seeded_z(seeds, G.z_dim)
        kw = {} if truncation_psi is None else {"truncation_psi": truncation_psi}
        w = G.mapping(z, **kw)
        w = (w[:, 0] if w.ndim == 3 else w).float().numpy()
    out = []
    for row in w:
        x = row[None] if num_ws is None else np.repeat(row[None, None], num_ws, axis=1)
        out.append({input_name: np.ascontiguousarray(x)})
    return out


def quantize_int8(
    ov_model: ov.Model,
    calibration_inputs: Sequence[dict[str, np.ndarray]],
    plan: str = "modulation-aware",
    min_resolution: int = 256,
    alpha: float = 0.75,
    subset_size: int | None = None,
    fast_bias_correction: bool = True,
    progress: bool = False,
) -> ov.Model:
    """Quantise a synthesis (or end-to-end generator) OpenVINO model to INT8 with NNCF.

    Args:
        ov_model: An ``openvino.Model`` (f32 weights); not modified.
        calibration_inputs: Feed dicts (input name or index -> array), e.g. :func:`calibration_inputs`.
        plan: ``modulation-aware`` (see the module docstring), ``conv`` (every dense conv, no
            equalisation), ``default`` (NNCF defaults: every quantisable op) or ``weights``
            (weight-only INT8_ASYM compression, float activations).
        min_resolution: modulation-aware: quantise the dense convs whose output is at least this many
            pixels high; the others stay float.
        alpha: modulation-aware: equalisation strength (0: scale by the weights only, 1: by the
            activations only; None or < 0: no equalisation).
        subset_size: Calibration samples NNCF uses (None: all of ``calibration_inputs``).
        fast_bias_correction: NNCF's fast bias correction (compensates the mean shift of the
            quantised convs).
        progress: Show NNCF's progress bars.

    Returns:
        A new ``openvino.Model`` with FakeQuantize nodes (or compressed weights for ``weights``). Run the
        non-quantised ops with ``INFERENCE_PRECISION_HINT=f32`` for the quality it was measured at.

    Raises:
        ValueError: Unknown plan, empty calibration set or no conv to quantise.
    """
    import nncf

    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
    calib = [_feed(ov_model, c) for c in calibration_inputs]
    if not calib:
        raise ValueError("quantize_int8 needs at least one calibration input")
    model = ov_model.clone()
    with _nncf_quiet(progress):
        if plan == "weights":
            return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        dataset = nncf.Dataset(calib)
        n = len(calib) if subset_size is None else min(subset_size, len(calib))
        advanced = nncf.AdvancedQuantizationParameters(disable_bias_correction=not fast_bias_correction)
        if plan == "default":
            return nncf.quantize(model, dataset, subset_size=n, advanced_parameters=advanced)
        convs = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
        targets = convs if plan == "conv" else [c for c in convs if _out_height(c) >= min_resolution]
        if not targets:
            raise ValueError(f"no Convolution with output height >= {min_resolution} px to quantise")
        if plan == "modulation-aware" and alpha is not None and alpha >= 0:
            _equalize(model, targets, calib[:n], alpha)
        keep_names = {c.get_friendly_name() for c in targets}
        ignored = nncf.IgnoredScope(
            names=[c.get_friendly_name() for c in convs if c.get_friendly_name() not in keep_names],
            types=list(_FLOAT_TYPES),
            validate=False,
        )
        return nncf.quantize(
            model,
            dataset,
            subset_size=n,
            preset=nncf.QuantizationPreset.MIXED,
            ignored_scope=ignored,
            advanced_parameters=advanced,
        )


def fake_quantize_report(model: ov.Model) -> dict[str, Any]:
    """Where the FakeQuantize nodes of a quantised model sit: counts by consumer op type, and whether any
    feeds the modulation path (a Multiply or MatMul)."""
    fqs = [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    consumers = Counter(t.get_node().get_type_name() for fq in fqs for t in fq.output(0).get_target_inputs())
    return {
        "fake_quantize": len(fqs),
        "consumers": dict(consumers),
        "on_modulation_path": consumers.get("Multiply", 0) + consumers.get("MatMul", 0),
    }


# ------------------------------------------------------------------------------------------------ helpers


def _feed(model: ov.Model, sample: dict) -> dict:
    """Feed dict keyed by input index (NNCF passes it to ``infer``), checked against the model's inputs."""
    names = [set(p.get_names()) for p in model.inputs]
    out = {}
    for key, value in sample.items():
        if isinstance(key, int):
            idx = key
        else:
            idx = next((i for i, n in enumerate(names) if key in n), None)
            if idx is None:
                raise ValueError(
                    f"calibration input {key!r} is not an input of the model (inputs: {[sorted(n) for n in names]})"
                )
        out[idx] = np.ascontiguousarray(value, dtype=np.float32)
    if len(out) != len(names):
        raise ValueError(f"calibration samples feed {len(out)} of the model's {len(names)} inputs")
    return out


def _out_height(conv: ov.Node) -> int:
    ps = conv.output(0).get_partial_shape()
    return int(ps[2].get_length()) if ps.rank.is_static and ps[2].is_static else 0


def _weight_const(conv: ov.Node) -> ov.Node | None:
    node = conv.input_value(1).get_node()
    return node if node.get_type_name() == "Constant" else None


def _equalize(model: ov.Model, convs: list[ov.Node], calib: list[dict], alpha: float) -> None:
    """Per input channel c of each conv: ``x_c / m_c`` before it, ``W[:, c] * m_c`` in it (same output)."""
    import openvino as ov
    from openvino import opset13 as ops

    convs = [c for c in convs if _weight_const(c) is not None]
    probe = model.clone()
    by_name = {op.get_friendly_name(): op for op in probe.get_ordered_ops()}
    probe.add_outputs([by_name[c.get_friendly_name()].input_value(0) for c in convs])
    first = len(model.outputs)
    compiled = ov.Core().compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    amax = [None] * len(convs)
    for feed in calib:
        res = request.infer(feed)
        for i in range(len(convs)):
            a = np.abs(res[first + i]).max(axis=tuple(d for d in range(res[first + i].ndim) if d != 1))
            amax[i] = a if amax[i] is None else np.maximum(amax[i], a)
    del request, compiled, probe
    for conv, a in zip(convs, amax):
        wconst = _weight_const(conv)
        w = wconst.get_data().astype(np.float32)  # [O, I, kh, kw]
        wmax = np.abs(w).max(axis=(0, 2, 3))
        m = np.maximum(a, 1e-8) ** alpha / np.maximum(wmax, 1e-8) ** (1 - alpha)
        m = m / np.exp(np.log(m).mean())  # geometric mean 1: weights and activations keep their scale
        new_w = ops.constant((w * m[None, :, None, None]).astype(np.float32))
        new_w.set_friendly_name(wconst.get_friendly_name() + "/equalized")
        conv.input(1).replace_source_output(new_w.output(0))
        inv = ops.constant((1 / m).reshape(1, -1, 1, 1).astype(np.float32))
        scaled = ops.multiply(conv.input_value(0), inv)
        scaled.set_friendly_name(conv.get_friendly_name() + "/equalize")
        conv.input(0).replace_source_output(scaled.output(0))
    model.validate_nodes_and_infer_types()


class _nncf_quiet:
    """Silence NNCF's info logs and its progress bars (rich, written to stdout) unless asked for."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress

    def __enter__(self) -> _nncf_quiet:
        import contextlib
        import io
        import logging

        from nncf.common.logging import nncf_logger

        self.logger, self.level = nncf_logger, nncf_logger.level
        self.stdout = contextlib.redirect_stdout(io.StringIO())
        if not self.progress:
            nncf_logger.setLevel(logging.ERROR)
            self.stdout.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.progress:
            self.stdout.__exit__(*exc)
        self.logger.setLevel(self.level)
