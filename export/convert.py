"""PyTorch lean graph -> ONNX (TorchScript-based ``torch.onnx.export``) -> OpenVINO IR when asked for."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from export.options import ONNX_FILES, ExportError

if TYPE_CHECKING:
    from export.job import Job


def convert(job: Job, name: str) -> None:
    """Write graph ``name`` of ``job`` as ONNX (checked by ``onnx.checker``), OpenVINO IR or an ExecuTorch program."""
    module = job.graphs[name]
    in_names, in_shapes, out_names, _ = job.io(name)
    example = tuple(module.example_inputs(job.batch or 1))
    if job.fmt == "executorch":
        write_program(job, name, fp16=False)
        return
    if job.fmt == "tflite":
        from export.litert import write_tflite

        job.litert[name] = write_tflite(module, example, in_names, job.tmp / f"{name}.tflite", "fp32")
        return
    if job.fmt == "coreml":
        from export.coreml import write_mlpackage

        _, _, _, out_shapes = job.io(name)
        job.coreml_spec[name] = write_mlpackage(module, example, in_names, in_shapes, out_names, out_shapes,
                                                job.tmp / f"{name}.mlpackage", job.precision)
        return
    onnx_path = job.tmp / (name + ".onnx" if job.fmt in ONNX_FILES else f".{name}.onnx")
    dynamic = {n: {0: "batch"} for n in in_names + out_names} if job.batch is None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(onnx_path), input_names=in_names, output_names=out_names,
                          opset_version=job.opset, dynamo=False, do_constant_folding=True, dynamic_axes=dynamic)
    import onnx

    onnx.checker.check_model(str(onnx_path))
    if job.fmt == "openvino":
        # read_model, not convert_model: convert_model's graph fusions merge each baked noise map with the
        # next bias into one [1, C, r, r] constant, C times the map (1.4x the weights on a tiny student,
        # several times at 1024). The CPU plugin fuses what it needs at compile time.
        import openvino as ov

        model = ov.Core().read_model(str(onnx_path))
        model.set_friendly_name(f"mobilestylegan_{name}")
        ov.save_model(model, str(job.tmp / f"{name}.xml"), compress_to_fp16=False)
        del model
        onnx_path.unlink()


def write_program(job: Job, name: str, fp16: bool) -> None:
    """Graph ``name`` as an ExecuTorch program (fp32, or half precision behind float32 casts); every convolution
    must be delegated to XNNPACK."""
    from export.pte import write_pte

    module = job.graphs[name]
    example = tuple(module.example_inputs(job.batch or 1))
    job.delegation[name] = d = write_pte(module, example, job.tmp / f"{name}.pte", fp16=fp16)
    if d["convolutions_outside"]:
        raise ExportError(f"{d['convolutions_outside']} convolution(s) of the {name} graph were not delegated to "
                          f"XNNPACK (outside: {', '.join(d['ops_outside'])}); nothing was written")


def save_ov(model, path: Path, compress_to_fp16: bool) -> None:
    """Re-save an IR over itself (read_model maps the .bin, so write elsewhere first)."""
    import openvino as ov

    stage = path.with_name(f".{path.stem}.new.xml")
    ov.save_model(model, str(stage), compress_to_fp16=compress_to_fp16)
    del model
    os.replace(stage.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(stage, path)
