"""ExecuTorch programs (``.pte``): writing one from a lean graph, and running one from numpy.

Writing: ``torch.export`` -> ``to_edge_transform_and_lower`` with the XNNPACK partitioner (the CPU engine behind
ExecuTorch on phones) -> ``to_executorch``. XNNPACK takes constant weights only, so the exporter hands over graphs
that modulate activations. Every convolution must end up in an XNNPACK delegate; what stays outside is reported.

Running: ExecuTorch's Python runtime works on torch tensors, so this module (unlike the rest of
:mod:`export.runtime`) needs torch; the runtime imports it only for ``.pte`` exports.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

INSTALL = 'pip install -e ".[executorch]"   (executorch==1.5.1)'


def _quiet_import() -> None:
    """torchao (imported by ExecuTorch) warns at import about its CUDA-only kernels, which a CPU export never uses."""
    logging.getLogger("torchao").setLevel(logging.ERROR)


def write_pte(module: Any, example: tuple, path: Path) -> dict[str, Any]:
    """Lower ``module`` (called on ``example``) to an XNNPACK-delegated program at ``path``; returns what was
    delegated: ``{"delegates": n, "convolutions_outside": n, "ops_outside": [...]}``."""
    import torch

    _quiet_import()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with warnings.catch_warnings():
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


def _is_conv(op: str) -> bool:
    return "conv2d" in op or "convolution" in op


def _name(node: Any) -> str:
    target = node.target
    return str(getattr(target, "__name__", None) or getattr(target, "name", None) or target)


class PteGraph:
    """One ``.pte`` program's ``forward``: ``run(list of float32 arrays) -> first output`` (numpy)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        import torch

        _quiet_import()
        from executorch.runtime import Runtime

        if threads:
            torch.set_num_threads(int(threads))
            # XNNPACK's thread pool is ExecuTorch's own (it starts with one thread per core); set before any run.
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        self._torch = torch
        self._method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        tensors = [self._torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        return self._method.execute(tensors)[0].numpy().copy()
