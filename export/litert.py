"""LiteRT (TensorFlow Lite) export: one ``.tflite`` flatbuffer per graph through ``litert-torch``, fp32 or fp16.

``litert_torch.convert`` runs ``torch.export`` and lowers to TFLite ops that the XNNPACK delegate (on by default
in the LiteRT interpreter) runs on phone CPUs. Constant conv weights only, as for ExecuTorch (the exporter picks
activation modulation). Left alone, the converter folds each baked noise map with the following bias into one
``[1, r, r, C]`` constant (C times the map: 286 MB instead of 32 MB at 1024 px); the lean graph reads its maps
through :meth:`~mobilestylegan.student.lean.LeanSynthesis._const_noise`, which this module routes through
litert-torch's optimisation barrier, and the size gate catches any other such growth.

fp16 stores the weights as float16 (litert-torch's fp16 recipe; the interpreter computes in float32 where the CPU
has no fp16 arithmetic); the noise maps and biases stay float32. int8 is litert-torch's dynamic-range recipe (int8
weights, activations quantised on the fly), offered only behind the 40 dB quality gate.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any

from export.options import ExportError

INSTALL = 'pip install -e ".[litert]"   (litert-torch==0.10.0, ai-edge-litert==2.3.0)'


def write_tflite(module: Any, example: tuple, in_names: list[str], path: Path, precision: str) -> dict[str, Any]:
    """Convert ``module`` (one input) at ``precision`` to ``path``; returns the file's signature and op counts."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "0")
    import litert_torch
    from litert_torch.backend.optimization_barrier import optimization_barrier

    if len(example) != 1:
        raise ExportError("the tflite export takes graphs with one input (noise baked: --noise const or none)")
    if hasattr(module, "_const_noise"):
        def through_barrier(name: str):
            m = getattr(module, f"{name}_noise")
            return optimization_barrier((m, m))[0]  # the one-tensor form does not lower in litert-torch 0.10

        module._const_noise = through_barrier
    # The signature input takes the name of forward's parameter.
    arg = next(iter(inspect.signature(module.forward).parameters))
    quant = None
    if precision in ("fp16", "int8"):
        from litert_torch.generative.quantize import quant_recipes

        quant = quant_recipes.full_fp16_recipe() if precision == "fp16" else quant_recipes.full_dynamic_recipe()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            edge = litert_torch.convert(module.eval(), sample_kwargs={arg: example[0]}, quant_config=quant)
            edge.export(str(path))
    except ExportError:
        raise
    except Exception as err:  # the converter raises many types; the user gets one line
        raise ExportError(f"litert-torch could not convert the {in_names[0]} graph: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}") from err
    finally:
        if "_const_noise" in vars(module):
            del module._const_noise
    return describe(path)


def describe(path: Path) -> dict[str, Any]:
    """The file's serving signature (input and output names) and its operator counts."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    sig = it.get_signature_list()
    if len(sig) != 1:
        raise ExportError(f"{path.name} has {len(sig)} signatures; the export writes one per file")
    key, io = next(iter(sig.items()))
    ops: dict[str, int] = {}
    for op in it._get_ops_details():
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    return {"signature": key, "inputs": list(io["inputs"]), "outputs": list(io["outputs"]),
            "operators": sum(ops.values()), "convolutions": ops.get("CONV_2D", 0) + ops.get("DEPTHWISE_CONV_2D", 0),
            "operator_counts": dict(sorted(ops.items()))}
