"""LiteRT (formerly TensorFlow Lite): one ``.tflite`` flatbuffer per graph through ``litert-torch``; ``--format
litert`` (``tflite`` is accepted as its older name).

``litert_torch.convert`` runs ``torch.export`` and lowers to TFLite ops that the XNNPACK delegate (on by default in
the LiteRT interpreter) runs on phone CPUs. Constant conv weights only, as for ExecuTorch (the graphs modulate
activations). Left alone, the converter folds each baked noise map with the following bias into one ``[1, r, r, C]``
constant (C times the map: 286 MB instead of 32 MB at 1024 px), so the lean graph reads its maps through litert-torch's
optimisation barrier (:meth:`LiteRTTarget.lean_synthesis_options`); the size gate catches any other such growth.

fp16 stores the weights as float16 (litert-torch's fp16 recipe; the interpreter computes in float32 where the CPU has
no fp16 arithmetic); the noise maps and biases stay float32. int8 is litert-torch's dynamic-range recipe (int8
weights, activations quantised on the fly), offered only behind the quality gate; the mapping stays fp32.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.errors import ExportError
from export.targets.base import BenchRow, Target

if TYPE_CHECKING:
    import torch

    from export.context import ExportContext, ExportOptions

INSTALL = 'pip install -e ".[litert]" (litert-torch==0.10.0, ai-edge-litert==2.3.0)'


def through_barrier(noise_map: torch.Tensor) -> torch.Tensor:
    """``noise_map`` through litert-torch's optimisation barrier (looked up at call time)."""
    from litert_torch.backend import optimization_barrier as barrier

    return barrier.optimization_barrier((noise_map, noise_map))[0]  # the one-tensor form does not lower in 0.10


def write_tflite(module: torch.nn.Module, example: tuple, path: Path, precision: str) -> dict[str, Any]:
    """Convert ``module`` (one input) at ``precision`` to ``path``; returns the file's signature and op counts."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "0")
    import litert_torch

    arg = next(iter(inspect.signature(module.forward).parameters))  # the signature input takes this name
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
        raise ExportError(
            f"litert-torch could not convert the {path.stem} graph: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}"
        ) from err
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
    return {
        "signature": key,
        "inputs": list(io["inputs"]),
        "outputs": list(io["outputs"]),
        "operators": sum(ops.values()),
        "convolutions": ops.get("CONV_2D", 0) + ops.get("DEPTHWISE_CONV_2D", 0),
        "operator_counts": dict(sorted(ops.items())),
    }


class LiteRTTarget(Target):
    name = "litert"
    aliases = ("tflite",)
    title = "LiteRT"
    precisions = {"fp32": "float32", "fp16": "float16 weights", "int8": "dynamic-range"}
    extension = ".tflite"
    engines = {"litert_torch": INSTALL, "ai_edge_litert": INSTALL}
    fixed_batch = True
    constant_weights = True
    parity_backends = ("litert",)
    distributions = ("litert-torch", "ai-edge-litert")
    bench_rows = {"litert": BenchRow("fp32", "litert"), "litert-fp16": BenchRow("fp16", "litert")}

    def check(self, options: ExportOptions) -> None:
        super().check(options)
        if options.noise == "input" or options.end_to_end:
            raise ExportError(
                f"the {self.name} export writes one-input mapping and synthesis graphs: --noise const "
                "or none, no --end-to-end"
            )

    def lean_synthesis_options(self) -> dict[str, Any]:
        return {"noise_barrier": through_barrier}

    def convert(self, ctx: ExportContext, graph: str) -> dict[str, Any]:
        return self._write(ctx, graph, "fp32")

    def make_variant(self, ctx: ExportContext) -> dict[str, Any]:
        precision = ctx.options.precision  # fp16 / int8: converted again with that recipe
        for graph in ctx.graphs:
            if precision == "int8" and graph in ("mapping", "encoder"):
                continue  # the latent graphs stay fp32
            ctx.records[graph] = self._write(ctx, graph, precision)
        return {
            "litert": {"graphs": dict(ctx.records)},
            "weights_dtype": "float16 (litert-torch fp16 recipe); noise maps and biases float32"
            if precision == "fp16"
            else "int8 synthesis (litert-torch dynamic-range recipe), float32 mapping (and encoder)",
        }

    def _write(self, ctx: ExportContext, graph: str, precision: str) -> dict[str, Any]:
        return write_tflite(ctx.graphs[graph], ctx.example_inputs(graph), ctx.tmp / self.files(graph)[0], precision)

    def manifest_extras(self, ctx: ExportContext) -> dict[str, Any]:
        return {
            "litert": {
                "graphs": dict(ctx.records),
                "delegate": "XNNPACK (the interpreter's default CPU delegate)",
                "run": "Interpreter(model_path, num_threads=N).get_signature_runner()(**{input: array})",
            }
        }

    def summary_lines(self, manifest: dict[str, Any], out: str) -> list[str]:
        return [
            f"  litert    {name}: {g['operators']} operators ({g['convolutions']} conv), signature "
            f"{g['inputs']} -> {g['outputs']}"
            for name, g in manifest.get("litert", {}).get("graphs", {}).items()
        ]
