"""ONNX: one ``.onnx`` file per graph, written by the TorchScript-based ``torch.onnx.export`` and checked by
``onnx.checker``; run by ONNX Runtime (and by OpenVINO, which reads ONNX too: the parity gate runs both).

fp16 stores every float32 initializer as float16, each followed by a Cast back to float32: half the file; ONNX
Runtime folds the Casts at load and computes in float32 (its x86 CPU provider has no fp16 convolutions; for fp16 or
bf16 compute use the OpenVINO format).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.targets.base import PINNED, BenchRow, Target

if TYPE_CHECKING:
    from export.context import ExportContext

FP16_MAX = 65504.0  # the largest float16: larger initializers stay float32


def write_onnx(ctx: ExportContext, graph: str, path: Path) -> None:
    """Graph ``graph`` of ``ctx`` as an ONNX file at ``path`` (opset ``ctx.options.opset``; a dynamic batch axis
    when the batch is dynamic), checked by ``onnx.checker``."""
    import onnx
    import torch

    in_names, _, out_names, _ = ctx.io(graph)
    dynamic = {n: {0: "batch"} for n in in_names + out_names} if ctx.options.batch is None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ctx.graphs[graph],
            ctx.example_inputs(graph),
            str(path),
            input_names=in_names,
            output_names=out_names,
            opset_version=ctx.options.opset,
            dynamo=False,
            do_constant_folding=True,
            dynamic_axes=dynamic,
        )
    onnx.checker.check_model(str(path))


def weights_to_fp16(path: Path) -> None:
    """Store every float32 initializer of an ONNX file as float16, each followed by a Cast back to float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts, keep = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < 2:
            keep.append(init)
            continue
        arr = numpy_helper.to_array(init)
        if np.abs(arr).max(initial=0) > FP16_MAX:
            keep.append(init)
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
        keep.append(half)
        casts.append(
            helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "__cast")
        )
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class OnnxTarget(Target):
    name = "onnx"
    title = "ONNX"
    precisions = {"fp32": "float32", "fp16": "float16 weights, float32 compute"}
    extension = ".onnx"
    engines = {"onnx": PINNED["onnx"], "onnxruntime": PINNED["onnxruntime"]}
    takes = ("opset",)
    parity_backends = ("onnxruntime", "openvino")
    distributions = ("onnx", "onnxruntime", "openvino")
    bench_rows = {"onnxruntime": BenchRow("fp32", "onnxruntime")}

    def convert(self, ctx: ExportContext, graph: str) -> None:
        write_onnx(ctx, graph, ctx.tmp / self.files(graph)[0])

    def make_variant(self, ctx: ExportContext) -> dict[str, Any]:
        for graph in ctx.graphs:  # fp16 (int8 is refused up front)
            weights_to_fp16(ctx.tmp / self.files(graph)[0])
        return {"weights_dtype": "float16 (Cast to float32 in the graph; ONNX Runtime computes in float32)"}

    def manifest_header(self, ctx: ExportContext) -> dict[str, Any]:
        return {"onnx_opset": ctx.options.opset}
