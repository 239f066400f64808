"""Formats as targets: a format registered from outside the toolkit exports, gates and runs without any change to the
pipeline; exports written before the restructuring still load, and today's exporter writes their bytes again."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from export.context import ExportContext
from export.errors import ExportError
from export.exporter import PARITY_SEEDS, SIZE_LIMIT, export
from export.manifest import read_manifest
from export.runtime import load_runtime
from export.targets import BenchRow, Target, format_names, get_target, register, unregister
from export.targets.onnx import write_onnx
from mobilestylegan.io.checkpoint import load_student
from mobilestylegan.student.sampling import seeded_z
from teacher.numerics import assert_parity, parity_tolerance
from tests.helpers.runtime import export_through_cli
from tests.helpers.students import export_student, torch_images
from tests.helpers.toolchains import require_toolchain

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "export_v1"


class ToyTarget(Target):
    """A seventh format, as a user would add one: ONNX graphs under another suffix and name, one precision, a manifest
    entry and a benchmark row of its own."""

    name = "toy"
    aliases = ("toy-alias",)
    title = "Toy"
    precisions = {"fp32": "float32"}
    extension = ".toy.onnx"
    engines = {"onnx": "pip install onnx", "onnxruntime": "pip install onnxruntime"}
    fixed_batch = True
    parity_backends = ("onnxruntime",)
    distributions = ("onnx",)
    bench_rows = {"toy-ort": BenchRow("fp32", "onnxruntime")}

    def convert(self, ctx: ExportContext, graph: str) -> dict[str, Any]:
        path = ctx.tmp / self.files(graph)[0]
        write_onnx(ctx, graph, path)
        return {"bytes_written": path.stat().st_size}

    def manifest_extras(self, ctx: ExportContext) -> dict[str, Any]:
        return {"toy": {"graphs": dict(ctx.records)}}

    def summary_lines(self, manifest: dict[str, Any], out: str) -> list[str]:
        return [f"  toy       {name}: {r['bytes_written']} bytes" for name, r in manifest["toy"]["graphs"].items()]


@pytest.fixture
def toy() -> Iterator[Target]:
    target = register(ToyTarget())
    yield target
    unregister(target.name)
    assert "toy" not in format_names(aliases=True)


def test_a_registered_format_exports_gates_and_runs(toy, tmp_path, capsys):
    G = export_student()
    assert "toy" in format_names() and get_target("toy-alias") is toy
    out, _ = export_through_cli(G, tmp_path, "toy")
    printed = capsys.readouterr().out
    assert "toy       synthesis:" in printed and "parity    onnxruntime max |diff|" in printed
    m = read_manifest(out)
    assert m["artefact_format"] == "toy" and sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "mapping.toy.onnx",
        "synthesis.toy.onnx",
    ]
    assert m["toy"]["graphs"]["synthesis"]["bytes_written"] == (out / "synthesis.toy.onnx").stat().st_size
    assert m["modulation"] == "weights" and "onnx" in m["versions"]
    # The gates ran: parity recomputed from the files (the record's numbers, not its "passed"), size from disk.
    rt = load_runtime(out)
    assert rt.backend == "onnxruntime"
    w = G.mapping.embed(seeded_z(list(PARITY_SEEDS), G.z_dim))
    recorded = m["parity"]["max_abs_diff"]["onnxruntime"]
    with torch.no_grad():
        ref = torch_images(G, list(PARITY_SEEDS))
    assert_parity(rt.synthesis(w.numpy()), ref, "toy format in ONNX Runtime vs PyTorch")
    for graph, diff in recorded.items():
        assert 0 <= diff <= m["parity"]["tolerance"][graph]
    assert m["parity"]["tolerance"]["synthesis"] == pytest.approx(parity_tolerance(ref), rel=0.05)
    gate = m["size_gate"]
    assert gate["gated_file"] == "synthesis.toy.onnx"
    assert gate["file_bytes"] == (out / "synthesis.toy.onnx").stat().st_size <= SIZE_LIMIT * gate["fp32_param_bytes"]
    # What the format does not offer is refused before any work, by the same rules as the built-in formats.
    with pytest.raises(ExportError, match="fp16 is offered for .* only"):
        export(G, "toy", tmp_path / "fp16", precision="fp16", progress=False)
    with pytest.raises(ExportError, match="the toy export needs a fixed batch"):
        export(G, "toy", tmp_path / "dyn", batch=None, progress=False)
    assert not (tmp_path / "fp16").exists() and not (tmp_path / "dyn").exists()


def test_a_registered_format_has_its_benchmark_row(toy):
    from export.bench.common import export_rows, runtimes

    assert "toy-ort" in runtimes() and export_rows()["toy-ort"] == ("toy", toy.bench_rows["toy-ort"])


def test_names_are_unique(toy):
    with pytest.raises(ValueError, match="registered already"):
        register(ToyTarget())
    with pytest.raises(ExportError, match="format must be one of .*; got 'nope'"):
        get_target("nope")


def test_litert_keeps_its_old_name():
    assert get_target("tflite") is get_target("litert") and "tflite" in format_names(aliases=True)


# ----------------------------------------------------------------------------------- exports from before the change


def _reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "reference.npz") as f:
        return {k: f[k] for k in f.files}


def test_an_old_onnx_export_still_runs():
    m = read_manifest(FIXTURE / "onnx")
    assert m["artefact_format"] == "onnx" and m["manifest_version"] == 1
    ref = _reference()
    for backend in ("onnxruntime", "openvino"):
        rt = load_runtime(FIXTURE / "onnx", backend=backend)
        assert_parity(rt.render(list(ref["seeds"])), ref["img"], f"old ONNX export in {backend}")
        assert_parity(rt.mapping(rt.z(list(ref["seeds"]))), ref["w"], f"old ONNX export's mapping in {backend}")


def test_an_old_litert_export_under_its_old_name_still_runs():
    require_toolchain(
        importlib.util.find_spec("ai_edge_litert") is not None, "ai-edge-litert", 'pip install -e ".[litert]"'
    )
    m = read_manifest(FIXTURE / "tflite")
    assert m["artefact_format"] == "tflite"
    ref = _reference()
    rt = load_runtime(FIXTURE / "tflite", threads=1)
    assert rt.backend == "litert"
    assert_parity(rt.render(list(ref["seeds"])), ref["img"], "old LiteRT export")


def test_the_exporter_writes_the_same_bytes_as_before(tmp_path):
    """Today's exporter on the fixture's student writes the fixture's graph files byte for byte (ONNX here; the LiteRT
    files too where litert-torch is installed)."""
    formats = [("onnx", "onnx")]
    if importlib.util.find_spec("litert_torch") is not None:
        formats.append(("litert", "tflite"))
    G = load_student(FIXTURE / "student.pt")
    for fmt, folder in formats:
        out = tmp_path / fmt
        m = export(G, fmt, out, progress=False)
        old = json.loads((FIXTURE / folder / "manifest.json").read_text())
        assert [g["files"] for g in m["graphs"].values()] == [g["files"] for g in old["graphs"].values()]
        for g in old["graphs"].values():
            for f in g["files"]:
                assert _sha256(out / f) == _sha256(FIXTURE / folder / f), f"{fmt}: {f} differs from before"
        assert {k: v for k, v in m.items() if k not in _RUN_SPECIFIC} == {
            k: v for k, v in old.items() if k not in _RUN_SPECIFIC
        } | {
            "artefact_format": fmt,
            # new since the fixture: what the export says about the latent encoder it could carry
            "encoder": {"included": False, "reason": "no encoder ships for this student; give one with --encoder"},
        }


# Manifest entries that differ between two runs of the same export (time, measured figures, the package version).
_RUN_SPECIFIC = {"created_utc", "timings_s", "parity", "quality", "toolkit_version", "versions"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
