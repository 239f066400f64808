"""ExecuTorch programs (``.pte``): writing one from a lean graph, and running one from numpy.

Writing: ``torch.export`` -> ``to_edge_transform_and_lower`` with the XNNPACK partitioner (the CPU engine behind
ExecuTorch on phones) -> ``to_executorch``. XNNPACK takes constant weights only, so the exporter hands over graphs
that modulate activations. Every convolution must end up in an XNNPACK delegate; what stays outside is reported.

fp16 programs: the graph is run in half precision between a cast of its float32 input and a cast of its output back
to float32 (the program's interface is the fp32 one). ExecuTorch 1.5.1's XNNPACK serialiser writes every dense
convolution's weights and bias as float32 even in a half graph (XNNPACK then converts them when the program loads),
which would leave an fp16 program at ~1.5x its fp16 weights; XNNPACK's runtime takes float16 conv weights as they
are, so while an fp16 program is lowered :func:`_conv_weights_kept_in_fp16` has the serialiser store them as given.
The size gate and the 40 dB quality gate (run in ExecuTorch's runtime) check the result.

Running: ExecuTorch's Python runtime works on torch tensors, so this module (unlike the rest of
:mod:`export.runtime`) needs torch; the runtime imports it only for ``.pte`` exports.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

INSTALL = 'pip install -e ".[executorch]"   (executorch==1.5.1)'


def _quiet_import() -> None:
    """torchao (imported by ExecuTorch) warns at import about its CUDA-only kernels, which a CPU export never uses."""
    logging.getLogger("torchao").setLevel(logging.ERROR)


def write_pte(module: Any, example: tuple, path: Path, fp16: bool = False) -> dict[str, Any]:
    """Lower ``module`` (called on ``example``) to an XNNPACK-delegated program at ``path``, in half precision with
    ``fp16`` (float32 in and out); returns what was delegated:
    ``{"delegates": n, "convolutions_outside": n, "ops_outside": [...]}``."""
    _quiet_import()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if fp16:
        module = HalfProgram(module).eval()
    with warnings.catch_warnings(), (_conv_weights_kept_in_fp16() if fp16 else contextlib.nullcontext()):
        warnings.simplefilter("ignore")
        program = torch.export.export(module, example)
        convolutions = sum(1 for n in program.graph.nodes if n.op == "call_function" and _is_conv(_name(n)))
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        calls = [n for n in edge.exported_program().graph_module.graph.nodes if n.op == "call_function"]
        buffer = edge.to_executorch().buffer
    Path(path).write_bytes(buffer)
    outside = [_name(n) for n in calls if "executorch_call_delegate" not in _name(n) and "getitem" not in _name(n)
               and not _name(n).startswith("alloc")]
    outside_convs = sum(_is_conv(o) for o in outside)
    return {"backend": "XNNPACK", "delegates": sum("executorch_call_delegate" in _name(n) for n in calls),
            "convolutions": convolutions, "convolutions_delegated": convolutions - outside_convs,
            "convolutions_outside": outside_convs, "ops_outside": sorted(set(outside))}


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

    from export.options import ExportError

    registry = node_visitor._node_visitor_dict
    target = "aten.convolution.default"
    if target not in registry:
        raise ExportError("this ExecuTorch has no XNNPACK convolution serialiser under its 1.5.1 name; install "
                          'executorch==1.5.1 (pip install -e ".[executorch]") or export --precision fp32')
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


class PteGraph:
    """One ``.pte`` program's ``forward``: ``run(list of float32 arrays) -> first output`` (numpy)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        _quiet_import()
        from executorch.runtime import Runtime

        if threads:
            torch.set_num_threads(int(threads))
            # XNNPACK's thread pool is ExecuTorch's own (it starts with one thread per core); set before any run.
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        self._method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        return self._method.execute(tensors)[0].numpy().copy()
