"""Export a student to any registered format, parity-checked and quality-gated: :func:`export`.

``export(source, fmt, out_dir, ...)`` writes ``out_dir/`` with one file set per graph (the format's, see
:mod:`export.targets`) and ``manifest.json`` (:mod:`export.manifest`)::

    mapping      z [B, z_dim] -> w [B, w_dim] (psi optionally baked)
    synthesis    w [B, w_dim] or ws [B, num_ws, w_dim] (+ noise) -> img [B, 3, R, R]
    generator    optional end to end: z -> img
    encoder      optional: an aligned face img [B, 3, S, S] -> ws [B, num_ws, w_dim] (see export.encoder)
    noise_const.npz   the student's constant maps (only with noise inputs)

The graphs are :mod:`mobilestylegan.student.lean`'s lean modules. Everything is built in a temporary directory next
to ``out_dir`` and renamed onto it only after every check has passed (:mod:`export.pipeline`), so a failed export
leaves nothing behind. The checks (:mod:`export.gates`):

1. parity of the fp32 files against the PyTorch student evaluated in float64 (the exact value) on
   :data:`PARITY_SEEDS`: max |diff| within ``teacher.numerics.parity_tolerance`` (2**11 float32 ulps of
   max(1, peak |output|), derived from float32 rounding there), in every runtime here that runs the files;
2. size: the synthesis weights file may weigh at most :data:`SIZE_LIMIT` x the bytes of the graph's parameters and
   baked noise at the precision it stores them in;
3. quality of a precision variant: PSNR of seeded z -> mapping -> synthesis (const noise) against the fp32 PyTorch
   student on :data:`QUALITY_SEEDS`, run as the standalone runtime runs it; fp16 and int8 must reach
   :data:`QUALITY_GATE_DB`;
4. the format's own checks (the web page in headless Chromium).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from export.context import NOISE, ONNX_OPSET, PRECISIONS, W_INPUTS, ExportContext
from export.encoder import NEEDS_WPLUS, export_encoder
from export.errors import ExportError
from export.gates import PARITY_SEEDS, QUALITY_GATE_DB, QUALITY_SEEDS, SIZE_LIMIT
from export.outdir import staged
from export.pipeline import Progress, run, stage_count, write_manifest
from export.source import load_student
from export.targets import format_names, get_target, options_for
from export.targets.openvino import CALIBRATION_SEEDS

FORMATS = format_names()

__all__ = [
    "CALIBRATION_SEEDS",
    "FORMATS",
    "NOISE",
    "ONNX_OPSET",
    "PARITY_SEEDS",
    "PRECISIONS",
    "QUALITY_GATE_DB",
    "QUALITY_SEEDS",
    "SIZE_LIMIT",
    "W_INPUTS",
    "ExportError",
    "export",
    "write_manifest",
]


def export(
    source: Any,
    fmt: str,
    out_dir: str | os.PathLike,
    precision: str | None = None,
    w_input: str | None = None,
    noise: str = "const",
    batch: int | None = 1,
    truncation_psi: float | None = None,
    end_to_end: bool = False,
    parity: bool = True,
    progress: bool = True,
    force: bool = False,
    resolution: int | None = None,
    opset: int = ONNX_OPSET,
    compute_units: str | None = None,
    encoder: Any = None,
) -> dict[str, Any]:
    """Export a student and return the manifest written to ``out_dir/manifest.json``.

    Args:
        source: A student checkpoint path (native ``.pt`` or MobileStyleGAN.pytorch ``.ckpt``), a pretrained
            name (``ffhq-1024``) or a :class:`~mobilestylegan.student.generator.StudentGenerator`.
        fmt: A registered format (:data:`FORMATS`: ``onnx``, ``openvino``, ``executorch``, ``coreml``, ``litert``
            (also ``tflite``), ``web``).
        out_dir: Directory to create (refused if it exists and is not empty, unless ``force``).
        precision: ``fp32``, ``fp16`` or ``int8`` where the format offers it; None: the format's default (fp16 for
            Core ML and the web page, else fp32).
        w_input: Synthesis input: ``w`` (one w, ``[B, w_dim]``) or ``wplus`` (``[B, num_ws, w_dim]``); None: the
            format's default (``wplus`` for the web page, which edits projected W+ latents, else ``w``).
        noise: ``const`` (the student's maps baked in), ``input`` (one input per layer) or ``none``.
        batch: Fixed batch size, or None for a dynamic batch axis.
        truncation_psi: Bake truncation into the mapping graph (None: choose psi at run time from the
            manifest's ``w_avg``).
        end_to_end: Also write one ``generator`` graph z -> img (needs ``w_input="w"``, noise not ``input``).
        parity: Run the parity gate (fp32 files against the float64 student). Always on from the CLI.
        progress: Show a progress bar.
        force: Replace an existing non-empty ``out_dir``.
        resolution: Expected output resolution; an export of a student of another resolution is refused.
        opset: ONNX opset of the formats that write ONNX graphs.
        compute_units: Core ML only: the compute units the model is meant to load with (``all`` (default),
            ``cpu_only``, ``cpu_and_gpu``, ``cpu_and_ne``); recorded in the manifest, used by ``--check``.
        encoder: The latent encoder to export beside the generator (the ``encoder`` graph, face -> W+): an encoder
            file, a shipped name or a :class:`~mobilestylegan.nets.encoder.LatentEncoder` (it must be trained for
            this student, and the synthesis then takes W+ unless ``w_input`` says otherwise, which is refused);
            None: the encoder shipped for the student, when the synthesis takes W+; False: none.

    Raises:
        ExportError: Bad arguments, not a student, missing runtime, unwritable directory, failed check.
    """
    target = get_target(fmt)
    if encoder is not None and encoder is not False:
        if w_input not in (None, "wplus"):
            raise ExportError(NEEDS_WPLUS)
        w_input = "wplus"
    options = options_for(
        target,
        precision=precision,
        w_input=w_input,
        noise=noise,
        batch=batch,
        truncation_psi=truncation_psi,
        end_to_end=end_to_end,
        resolution=resolution,
        opset=opset,
        compute_units=compute_units,
        parity=parity,
    )
    target.require_engines(options.precision)
    bar = Progress(progress, total=stage_count(target, options.precision))
    try:
        with staged(Path(out_dir), force) as tmp:
            bar.stage("loading the student")
            G, source_info = load_student(source)
            if resolution is not None and resolution != G.img_resolution:
                raise ExportError(
                    f"resolution mismatch: the student renders {G.img_resolution}px, "
                    f"--resolution asked for {resolution}px"
                )
            enc, encoder_info = export_encoder(encoder, G, options.w_input)
            ctx = ExportContext(
                G,
                options,
                tmp,
                source_info,
                modulation=target.modulation(options),
                synthesis_options=target.lean_synthesis_options(),
                encoder=enc,
                encoder_info=encoder_info,
            )
            manifest = run(ctx, target, bar)
            bar.stage("moving into place")
    finally:
        bar.close()
    return manifest
