"""ONNX fp16 weights: half the file, float32 compute (every initializer stored as float16 and cast back in the graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def onnx_weights_to_fp16(path: Path) -> None:
    """Store every float32 initializer as float16, each followed by a Cast back to float32."""
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
        if np.abs(arr).max(initial=0) > 65504:
            keep.append(init)  # out of fp16 range: keep float32
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
