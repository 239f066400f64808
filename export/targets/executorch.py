"""ExecuTorch: one ``.pte`` program per graph, XNNPACK-delegated (the CPU engine behind ExecuTorch on phones).

Writing: ``torch.export`` -> ``to_edge_transform_and_lower`` with the XNNPACK partitioner -> ``to_executorch``.
XNNPACK takes constant weights only, so the graphs modulate activations. Every convolution must end up in an XNNPACK
delegate, or the export fails; what stays outside is recorded in the manifest's ``delegation``.

fp16 programs: the graph runs in half precision between a cast of its float32 input and a cast of its output back to
float32 (:class:`HalfProgram`: the program's interface is the fp32 one). ExecuTorch 1.5.1's XNNPACK serialiser writes
every dense convolution's weights and bias as float32 even in a half graph (XNNPACK then converts them when the
program loads), which would leave an fp16 program at ~1.5x its fp16 weights; XNNPACK's runtime takes float16 conv
weights as they are, so while an fp16 program is lowered :func:`_conv_weights_kept_in_fp16` has the serialiser store
them as given. The size gate and the quality gate (run in ExecuTorch's runtime) check the result.

Running: :mod:`export.runtime_pte` (ExecuTorch's Python runtime works on torch tensors).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from export.errors import ExportError
from export.targets.base import BenchRow, Target

if TYPE_CHECKING:
    from export.context import ExportContext

INSTALL = 'pip install -e ".[executorch]" (executorch==1.5.1)'


def write_pte(module: torch.nn.Module, example: tuple, path: Path, fp16: bool = False) -> dict[str, Any]:
    """Lower ``module`` (called on ``example``) to an XNNPACK-delegated program at ``path``, in half precision with
    ``fp16`` (float32 in and out); returns what was delegated: ``{"backend", "delegates", "convolutions",
    "convolutions_delegated", "convolutions_outside", "ops_outside"}``."""
    from export.runtime_pte import quiet_torchao

    quiet_torchao()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if fp16:
        module = HalfProgram(module).eval()
    with warnings.catch_warnings(), _conv_weights_kept_in_fp16() if fp16 else contextlib.nullcontext():
        warnings.simplefilter("ignore")
        program = torch.export.export(module, example)
        convolutions = sum(1 for n in program.graph.nodes if n.op == "call_function" and _is_conv(_name(n)))
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        calls = [n for n in edge.exported_program().graph_module.graph.nodes if n.op == "call_function"]
        buffer = edge.to_executorch().buffer
    Path(path).write_bytes(buffer)
    outside = [
        _name(n)
        for n in calls
        if "executorch_call_delegate" not in _name(n) and "getitem" not in _name(n) and not _name(n).startswith("alloc")
    ]
    outside_convs = sum(_is_conv(o) for o in outside)
    return {
        "backend": "XNNPACK",
        "delegates": sum("executorch_call_delegate" in _name(n) for n in calls),
        "convolutions": convolutions,
        "convolutions_delegated": convolutions - outside_convs,
        "convolutions_outside": outside_convs,
        "ops_outside": sorted(set(outside)),
    }


class HalfProgram(torch.nn.Module):
    """A half-precision copy of a graph behind float32 casts: ``float32 inputs -> half graph -> float32``."""

    def __init__(self, graph: torch.nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(graph).half().eval()  # not "graph": torch.export unlifting owns that name

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.inner(*(x.half() for x in inputs)).float()


@contextlib.contextmanager
def _conv_weights_kept_in_fp16() -> Iterator[None]:
    """While lowering, XNNPACK's convolution serialiser keeps float16 weights and biases float16 (it forces float32
    otherwise; see the module docstring). The serialiser registry is restored on the way out."""
    from executorch.backends.xnnpack.operators import node_visitor

    registry = node_visitor._node_visitor_dict
    target = "aten.convolution.default"
    if target not in registry:
        raise ExportError(
            "this ExecuTorch has no XNNPACK convolution serialiser under its 1.5.1 name; install "
            'executorch==1.5.1 (pip install -e ".[executorch]") or export --precision fp32'
        )
    stock = registry[target]

    class ConvKeepingFp16(stock):
        def define_tensor(self, *args: Any, force_fp32: bool = False, **kwargs: Any) -> Any:
            return super().define_tensor(*args, force_fp32=False, **kwargs)

    registry[target] = ConvKeepingFp16
    try:
        yield
    finally:
        registry[target] = stock


def _is_conv(op: str) -> bool:
    return "conv2d" in op or "convolution" in op


def _name(node: Any) -> str:
    target = node.target
    return str(getattr(target, "__name__", None) or getattr(target, "name", None) or target)


class ExecuTorchTarget(Target):
    name = "executorch"
    title = "ExecuTorch"
    precisions = {"fp32": "float32", "fp16": "half-precision programs (XNNPACK fp16 kernels)"}
    extension = ".pte"
    engines = {"executorch": INSTALL}
    fixed_batch = True
    constant_weights = True
    parity_backends = ("executorch",)
    distributions = ("executorch",)
    bench_rows = {"executorch": BenchRow("fp32", "executorch"), "executorch-fp16": BenchRow("fp16", "executorch")}

    def convert(self, ctx: ExportContext, graph: str) -> dict[str, Any]:
        return self._write(ctx, graph, fp16=False)

    def make_variant(self, ctx: ExportContext) -> dict[str, Any]:
        for graph in ctx.graphs:  # fp16 (int8 is refused up front): lowered again as half-precision programs
            ctx.records[graph] = self._write(ctx, graph, fp16=True)
        return {
            "delegation": dict(ctx.records),
            "weights_dtype": "float16: half-precision programs (XNNPACK fp16 kernels), float32 input and output "
            "cast inside the program",
        }

    def _write(self, ctx: ExportContext, graph: str, fp16: bool) -> dict[str, Any]:
        d = write_pte(ctx.graphs[graph], ctx.example_inputs(graph), ctx.tmp / self.files(graph)[0], fp16=fp16)
        if d["convolutions_outside"]:
            raise ExportError(
                f"{d['convolutions_outside']} convolution(s) of the {graph} graph were not delegated to "
                f"XNNPACK (outside: {', '.join(d['ops_outside'])}); nothing was written"
            )
        return d

    def manifest_extras(self, ctx: ExportContext) -> dict[str, Any]:
        return {"delegation": dict(ctx.records)}

    def compute_precision(self, precision: str) -> str:
        return "f16" if precision == "fp16" else "f32"  # half programs compute in fp16

    def summary_lines(self, manifest: dict[str, Any], out: str) -> list[str]:
        return [
            f"  xnnpack   {name}: {d['convolutions_delegated']}/{d['convolutions']} convolutions delegated"
            + (f"; outside: {', '.join(d['ops_outside'])}" if d["ops_outside"] else "")
            for name, d in manifest.get("delegation", {}).items()
        ]
