"""``manifest.json``: what an export directory holds and how to run it.

Standard library only (no numpy, no torch), so the standalone runtime can read it. The exporter writes it
(:func:`export.pipeline.write_manifest`), :mod:`export.runtime` reads it. Layout (``MANIFEST_VERSION`` 1)::

    {"format": "mobilestylegan-export", "manifest_version": 1, "toolkit_version": "0.1.0",
     "artefact_format": the format's name (export.targets; "tflite" in LiteRT exports made before it was "litert"),
     "precision": "fp32" | "fp16" | "int8", "weights_dtype": what the files store,
     "batch": 1 | "dynamic", "w_input": "w" | "wplus", "modulation": "weights" | "activations",
     "model": {"z_dim", "w_dim", "num_ws", "img_resolution", "channels"},
     "noise": {"mode": "const" | "input" | "none", "inputs": [...], "shapes": [...], "const_file": ...},
     "truncation": {"psi": float | null, "baked_into_mapping": bool, "w_avg": [w_dim floats]},
     "graphs": {"mapping" | "synthesis" | "generator": {"files": [...], "bytes", "inputs": [{"name", "shape", "dtype"}],
                "outputs": [...], "inference_precision": "f32" | null (OpenVINO's CPU default)}},
     "output": {...}, "seeds": "...", "source": {...}, "versions": {...},
     "parity": {...}, "size_gate": {...}, "quality": {...}, "timings_s": {...},
     plus the format's own entries (its conversion records, e.g. "delegation", "litert", "coreml", "web", and its own
     gates' results, e.g. "browser"): see the format's module in export/targets/}

Shapes hold ints, with the string ``"batch"`` for a dynamic batch axis. A runtime opens ``graphs[name]["files"][0]``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT = "mobilestylegan-export"
MANIFEST_VERSION = 1
BATCH_AXIS = "batch"


class ManifestError(ValueError):
    """An export directory without a readable, consistent manifest."""


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check an export directory's manifest (the graph files must exist)."""
    d = Path(directory)
    path = d / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{d} holds no {MANIFEST_NAME}: not a mobilestylegan-export directory")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ManifestError(f"{path} cannot be read as JSON ({err})") from err
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a {FORMAT} manifest")
    if m.get("manifest_version") != MANIFEST_VERSION:
        raise ManifestError(
            f"{path}: manifest version {m.get('manifest_version')!r} is not supported "
            f"(this runtime reads version {MANIFEST_VERSION})"
        )
    graphs = m.get("graphs")
    if not isinstance(graphs, dict) or "synthesis" not in graphs or "mapping" not in graphs:
        raise ManifestError(f"{path} lists no mapping and synthesis graphs")
    for name, g in graphs.items():
        for f in g.get("files", []):
            if not (d / f).is_file():
                raise ManifestError(f"{d}: the {name} graph file {f} listed in {MANIFEST_NAME} is missing")
    return m


def graph_path(directory: str | os.PathLike, manifest: dict[str, Any], graph: str) -> Path:
    """The file a runtime opens for ``graph`` (the ``.onnx`` or the ``.xml``)."""
    return Path(directory) / manifest["graphs"][graph]["files"][0]


def io_spec(
    names: list[str], shapes: list[tuple[int, ...]], dynamic: bool, dtype: str = "float32"
) -> list[dict[str, Any]]:
    """``[{"name", "shape", "dtype"}]`` with the batch axis symbolic when ``dynamic``."""
    return [
        {
            "name": n,
            "shape": [BATCH_AXIS if (dynamic and i == 0) else int(s) for i, s in enumerate(shape)],
            "dtype": dtype,
        }
        for n, shape in zip(names, shapes)
    ]


def graph_bytes(paths: Sequence[str | os.PathLike]) -> int:
    """Bytes on disk of the graphs at ``paths``: an IR's ``.xml`` with its ``.bin``, an ``.onnx`` with its external
    ``.onnx.data`` when there is one, a Core ML package (given by its ``Manifest.json``) with everything in it."""
    total = 0
    for p in map(Path, paths):
        if p.name == "Manifest.json" and p.parent.suffix == ".mlpackage":
            total += sum(f.stat().st_size for f in p.parent.rglob("*") if f.is_file())
            continue
        total += p.stat().st_size
        if p.suffix == ".xml":
            total += p.with_suffix(".bin").stat().st_size
        if p.suffix == ".onnx":
            data = p.with_name(p.name + ".data")
            total += data.stat().st_size if data.exists() else 0
    return total


def json_number(x: float, digits: int | None = None) -> float | None:
    """``x`` as strict JSON holds it: None for inf and NaN (an identical image's PSNR), else rounded to ``digits``
    when given."""
    if not math.isfinite(x):
        return None
    return round(x, digits) if digits is not None else x
