"""One export, whatever its format: convert -> parity -> precision variant -> size -> quality -> the target's own
gates -> manifest, in a temporary directory (:class:`~export.context.ExportContext`). What differs between formats
is asked of the target (:class:`~export.targets.base.Target`); this module names none.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from export.context import NOISE_CONST_FILE, ExportContext
from export.gates import QUALITY_SEEDS, encoder_quality, parity, quality, size_gate
from export.manifest import FORMAT, MANIFEST_NAME, MANIFEST_VERSION, graph_bytes, io_spec
from export.runtime import load_runtime
from teacher.fs import atomic_write

if TYPE_CHECKING:
    from export.targets.base import Target


class Progress:
    """A one-line progress bar of named stages (or nothing)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc="export",
                unit="step",
                leave=False,
                bar_format="{desc}: {n}/{total} {postfix} [{elapsed}]",
            )

    def stage(self, name: str) -> None:
        """Finish the current stage (if any) and show ``name``."""
        if self.bar is not None:
            if self.bar.postfix:
                self.bar.update(1)
            self.bar.set_postfix_str(name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def stage_count(target: Target, precision: str) -> int:
    """The stages :func:`run` shows, with loading the student and moving into place (the progress bar's total)."""
    return 7 + (precision != "fp32" and not target.converts_at_precision) + (target.extra_gates_stage is not None)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` into ``directory``, atomically (strict JSON: no NaN or inf)."""
    import json

    text = json.dumps(manifest, indent=1, allow_nan=False) + "\n"
    return atomic_write(Path(directory) / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))


def run(ctx: ExportContext, target: Target, bar: Progress) -> dict[str, Any]:
    """Build, check and describe the export to ``target`` in ``ctx.tmp``; returns the manifest written there."""
    o = ctx.options
    with _timed(ctx, "convert_s", bar, f"converting to {target.name}"):
        for name in ctx.graphs:
            record = target.convert(ctx, name)
            if record is not None:
                ctx.records[name] = record
    extras = target.write_extra_files(ctx)
    if ctx.encoder is not None:
        extras["faces"] = _write_faces(ctx)
    if o.noise == "input":
        _write_const_noise(ctx)
    manifest = build_manifest(ctx, target)
    manifest.update(extras)
    write_manifest(ctx.tmp, manifest)

    with _timed(ctx, "parity_s", bar, "parity vs PyTorch"):
        manifest["parity"] = _parity(ctx, target) if o.parity else {"run": False}
        if o.parity and manifest.get("faces", {}).get("included"):
            from export.face_models import check_face_models

            manifest["faces"]["parity"] = {
                "reference": "the .tflite models in OpenVINO (f32); the parity rule",
                "max_abs_diff": check_face_models(ctx.tmp),
            }
    if o.precision != "fp32" and not target.converts_at_precision:
        with _timed(ctx, "variant_s", bar, f"making the {o.precision} variant"):
            merge(manifest, target.make_variant(ctx))
        write_manifest(ctx.tmp, manifest)

    bar.stage("size gate")
    manifest["size_gate"] = size_gate(ctx, target.files("synthesis"), target.weights_file("synthesis"))
    if ctx.encoder is not None:
        files = target.files("encoder")
        manifest["encoder"]["size_gate"] = size_gate(ctx, files, target.weights_file("encoder"), graph="encoder")
    for name in ctx.graphs:
        g = manifest["graphs"][name]
        g["bytes"] = graph_bytes([ctx.tmp / g["files"][0]])
    with _timed(ctx, "quality_s", bar, f"quality ({len(QUALITY_SEEDS)} seeds)"):
        rt = None if target.quality_not_run else load_runtime(ctx.tmp)  # opened once for both gates
        manifest["quality"] = quality(ctx, target.compute_precision(o.precision), target.quality_not_run, rt)
        if ctx.encoder is not None:
            manifest["encoder"]["quality"] = encoder_quality(ctx, target.quality_not_run, rt)
        del rt
    if target.extra_gates_stage is not None:
        label, key = target.extra_gates_stage
        with _timed(ctx, key, bar, label):
            manifest.update(target.extra_gates(ctx))
    manifest["timings_s"] = {k: round(v, 3) for k, v in ctx.timings.items()}

    bar.stage("writing the manifest")
    write_manifest(ctx.tmp, manifest)
    return manifest


def build_manifest(ctx: ExportContext, target: Target) -> dict[str, Any]:
    """The manifest before the gates: what the directory holds and how to run it (see :mod:`export.manifest`)."""
    G, o = ctx.G, ctx.options
    dynamic = o.batch is None
    graphs = {}
    for name in ctx.graphs:
        in_names, in_shapes, out_names, out_shapes = ctx.io(name)
        graphs[name] = {
            "files": target.files(name),
            "inputs": io_spec(in_names, in_shapes, dynamic),
            "outputs": io_spec(out_names, out_shapes, dynamic),
            **target.graph_manifest(ctx, name),
        }
    m: dict[str, Any] = {
        "format": FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "toolkit_version": _version(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "artefact_format": target.name,
        **target.manifest_header(ctx),
    }
    m.update(
        {
            "precision": o.precision,
            "weights_dtype": "float32",
            "batch": "dynamic" if dynamic else o.batch,
            "w_input": o.w_input,
            "modulation": ctx.modulation,
            "model": {
                "z_dim": G.z_dim,
                "w_dim": G.w_dim,
                "num_ws": G.num_ws,
                "img_resolution": G.img_resolution,
                "channels": list(G.cfg.channels),
            },
            "noise": _noise_entry(ctx, graphs),
            "truncation": {
                "psi": o.psi,
                "baked_into_mapping": o.psi is not None,
                "w_avg": [float(x) for x in G.mapping.w_avg.detach().float().cpu()],
            },
            "output": {
                "name": "img",
                "layout": "NCHW",
                "channels": "RGB",
                "range": "about [-1, 1], not clamped",
                "to_uint8": "clip to [-1, 1], (x + 1) * 127.5, round",
            },
            "seeds": "z for seed s = torch.randn(z_dim, generator=torch.Generator().manual_seed(s)); "
            "export.runtime.seeded_z reproduces it without torch",
            "graphs": graphs,
            "encoder": ctx.encoder_info,
            "source": ctx.source_info,
            "versions": {"torch": torch.__version__, **target.versions()},
            **target.manifest_extras(ctx),
        }
    )
    return m


def merge(manifest: dict[str, Any], updates: dict[str, Any]) -> None:
    """Apply ``updates`` to ``manifest``: a dict entry is updated key by key, anything else replaced."""
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key].update(value)
        else:
            manifest[key] = value


def _parity(ctx: ExportContext, target: Target) -> dict[str, Any]:
    elsewhere = target.parity_elsewhere(ctx)
    return parity(ctx, target.parity_backends) if elsewhere is None else elsewhere


def _write_faces(ctx: ExportContext) -> dict[str, Any]:
    """The face detector and landmark models beside an encoder (``faces/*.onnx``, for the runtime's ``--align``
    and the page), or why they are not there."""
    from mobilestylegan.edit.faces import INSTALL_HINT, landmark_package_installed

    if not landmark_package_installed():
        return {
            "included": False,
            "reason": f"the face models were not installed when this was exported ({INSTALL_HINT})",
        }
    from export.face_models import write_face_models

    info = write_face_models(ctx.tmp)
    models = info["models"]
    return {
        "included": True,
        "files": {k: m["file"] for k, m in models.items()},
        "outputs": {k: [p["stop"] - p["start"] for p in m["output"]["parts"]] for k, m in models.items()},
        "use": "python -m export.runtime DIR --encode PHOTO --align (export/runtime_faces.py)",
        **info,
    }


def _noise_entry(ctx: ExportContext, graphs: dict[str, Any]) -> dict[str, Any]:
    mode = ctx.options.noise
    noise: dict[str, Any] = {"mode": mode}
    if mode == "input":
        noise.update(
            inputs=ctx.graphs["synthesis"].input_names[1:],
            shapes=[i["shape"] for i in graphs["synthesis"]["inputs"][1:]],
            const_file=NOISE_CONST_FILE,
            meaning="unit-variance maps [B, 1, r, r] as the student takes them; the learned strengths are in the graph",
        )
    elif mode == "const":
        noise["meaning"] = "the student's constant maps, premultiplied by their strengths, baked in"
    return noise


def _write_const_noise(ctx: ExportContext) -> None:
    """The student's constant maps beside graphs that take noise as inputs (the runtime's default noise)."""
    maps = ctx.G.synthesis.make_noise(1, "const")
    names = ctx.graphs["synthesis"].input_names[1:]
    np.savez(ctx.tmp / NOISE_CONST_FILE, **{n: m.detach().float().numpy() for n, m in zip(names, maps)})


@contextmanager
def _timed(ctx: ExportContext, key: str, bar: Progress, stage: str) -> Iterator[None]:
    bar.stage(stage)
    t0 = time.perf_counter()
    yield
    ctx.timings[key] = time.perf_counter() - t0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mobilestylegan-toolkit")
    except PackageNotFoundError:
        return "unknown"
