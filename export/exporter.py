"""Export a student to ONNX or OpenVINO IR, parity-checked and quality-gated.

``export(source, fmt, out_dir, ...)`` writes::

    out_dir/
      mapping.onnx | mapping.xml + mapping.bin          z [B, z_dim] -> w [B, w_dim] (psi optionally baked)
      synthesis.onnx | synthesis.xml + synthesis.bin    w [B, w_dim] or ws [B, num_ws, w_dim] (+ noise) -> img
      generator.onnx | generator.xml + .bin             optional end to end: z -> img
      noise_const.npz                                   the student's constant maps (only with noise inputs)
      manifest.json                                     see export/manifest.py

The graphs are :mod:`mobilestylegan.student.lean`'s lean modules, exported with the TorchScript-based
``torch.onnx.export`` (opset :data:`ONNX_OPSET`). The OpenVINO IR is that ONNX graph read by OpenVINO
(``Core.read_model``) and saved with ``save_model``: ``convert_model`` would fuse each baked noise map
with the next bias into a ``[1, C, r, r]`` constant, C times the map. Everything is built in a temporary directory
next to ``out_dir`` and renamed onto it only after every check has passed, so a failed export
leaves nothing behind. Checks, in order:

1. parity of the fp32 graphs against the PyTorch student (evaluated in float64, the exact value) on
   :data:`PARITY_SEEDS`: max |diff| within ``teacher.numerics.parity_tolerance`` (2**11 float32 ulps of
   max(1, peak |output|), derived from float32 rounding there) for ONNX Runtime and OpenVINO
   (``INFERENCE_PRECISION_HINT=f32``); an ONNX export is run by both, an IR by OpenVINO.
2. size: the synthesis file(s) may weigh at most :data:`SIZE_LIMIT` x the fp32 bytes of the graph's
   parameters and baked noise;
3. quality of the precision variant: PSNR of seeded z -> mapping -> synthesis (const noise) against the fp32
   PyTorch student on :data:`QUALITY_SEEDS`, run as the standalone runtime will run it; fp16 and int8
   must reach :data:`QUALITY_GATE_DB`.

Precisions:
- ``fp32``: float32 weights, run in f32 (OpenVINO is told ``INFERENCE_PRECISION_HINT=f32``).
- ``fp16``: OpenVINO: weights compressed to fp16 (``save_model(compress_to_fp16=True)``); the synthesis
  graph runs at OpenVINO's CPU default (bf16 on CPUs with bf16, f16 on ARM, else f32: the manifest
  records what the gate measured), the mapping in f32. ONNX: float16 initializers each followed by a
  Cast to float32: half the file, ONNX Runtime folds the Casts at load and computes in float32 (its x86
  CPU provider has no fp16 convolutions; for fp16/bf16 compute use the OpenVINO format).
- ``int8``: OpenVINO only: NNCF post-training quantisation of the synthesis graph
  (:func:`export.quantize.quantize_int8`) calibrated on synthesis inputs from seeded latents
  (:data:`CALIBRATION_SEEDS`); the mapping stays fp32; run with the f32 hint for the non-quantised ops.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from export.gates import PARITY_SEEDS, QUALITY_GATE_DB, QUALITY_SEEDS, SIZE_LIMIT
from export.job import Job, write_manifest
from export.options import FORMATS, NOISE, ONNX_OPSET, PRECISIONS, W_INPUTS, ExportError, check_args, require_engines
from export.outdir import move_into_place, prepare_out
from export.source import load_student
from export.variants import CALIBRATION_SEEDS

__all__ = ["CALIBRATION_SEEDS", "FORMATS", "NOISE", "ONNX_OPSET", "PARITY_SEEDS", "PRECISIONS", "QUALITY_GATE_DB",
           "QUALITY_SEEDS", "SIZE_LIMIT", "W_INPUTS", "ExportError", "export", "write_manifest"]


def export(source: Any, fmt: str, out_dir: str | os.PathLike, precision: str | None = None, w_input: str | None = None,
           noise: str = "const", batch: int | None = 1, truncation_psi: float | None = None,
           end_to_end: bool = False, parity: bool = True, progress: bool = True, force: bool = False,
           resolution: int | None = None, opset: int = ONNX_OPSET, compute_units: str | None = None) -> dict[str, Any]:
    """Export a student and return the manifest written to ``out_dir/manifest.json``.

    Args:
        source: A student checkpoint path (native ``.pt`` or MobileStyleGAN.pytorch ``.ckpt``), a pretrained
            name (``ffhq-1024``) or a :class:`~mobilestylegan.student.generator.StudentGenerator`.
        fmt: ``onnx``, ``openvino``, ``executorch``, ``tflite``, ``coreml`` or ``web`` (see :data:`FORMATS`).
        out_dir: Directory to create (refused if it exists and is not empty, unless ``force``).
        precision: ``fp32``, ``fp16`` or ``int8`` (OpenVINO and LiteRT only); None: ``fp16`` for Core ML and web,
            else ``fp32``.
        w_input: Synthesis input: ``w`` (one w, ``[B, w_dim]``) or ``wplus`` (``[B, num_ws, w_dim]``); None: ``wplus``
            for the web page (it edits projected W+ latents), else ``w``.
        noise: ``const`` (the student's maps baked in), ``input`` (one input per layer) or ``none``.
        batch: Fixed batch size, or None for a dynamic batch axis.
        truncation_psi: Bake truncation into the mapping graph (None: choose psi at run time from the
            manifest's ``w_avg``).
        end_to_end: Also write one ``generator`` graph z -> img (needs ``w_input="w"``, noise not ``input``).
        parity: Run the ORT/OpenVINO-vs-PyTorch parity check (fp32 graphs). Always on from the CLI.
        progress: Show a progress bar.
        force: Replace an existing non-empty ``out_dir``.
        resolution: Expected output resolution; an export of a student of another resolution is refused.
        opset: ONNX opset.
        compute_units: Core ML only: the compute units the model is meant to load with (``all`` (default),
            ``cpu_only``, ``cpu_and_gpu``, ``cpu_and_ne``); recorded in the manifest, used by ``--check``.

    Raises:
        ExportError: Bad arguments, not a student, missing runtime, unwritable directory, failed check.
    """
    if precision is None:
        precision = "fp16" if fmt in ("coreml", "web") else "fp32"
    if w_input is None:
        w_input = "wplus" if fmt == "web" else "w"
    check_args(fmt, precision, w_input, noise, batch, truncation_psi, end_to_end, resolution, compute_units)
    require_engines(fmt, precision)
    out = Path(out_dir)
    created = prepare_out(out, force)
    tmp: Path | None = None
    bar = _Progress(progress, total=7 + (precision != "fp32"))
    try:
        bar.stage("loading the student")
        G, source_info = load_student(source)
        if resolution is not None and resolution != G.img_resolution:
            raise ExportError(f"resolution mismatch: the student renders {G.img_resolution}px, "
                              f"--resolution asked for {resolution}px")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        job = Job(G, fmt, tmp, precision, w_input, noise, batch, truncation_psi, end_to_end, opset, source_info, bar,
                  compute_units=compute_units or "all")
        manifest = job.run(parity)
        bar.stage("moving into place")
        move_into_place(tmp, out)
        tmp = None
        bar.close()
        return manifest
    except BaseException:
        bar.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):  # parents this call created
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


class _Progress:
    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="export", unit="step", leave=False,
                            bar_format="{desc}: {n}/{total} {postfix} [{elapsed}]")

    def stage(self, name: str) -> None:
        if self.bar is not None:
            if self.bar.postfix:
                self.bar.update(1)
            self.bar.set_postfix_str(name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
