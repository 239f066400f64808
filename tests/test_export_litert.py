"""LiteRT export of a tiny student: the LiteRT interpreter renders the PyTorch faces, the size gate holds (and catches
the converter's noise + bias folding), fp16 passes its gate. Needs the ``litert`` extra (skipped without it, unless
``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is set: CI installs it)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from export.exporter import PARITY_SEEDS, SIZE_LIMIT, ExportError, export
from export.manifest import read_manifest
from export.runtime import load_runtime
from mobilestylegan.student.lean import LeanSynthesis
from mobilestylegan.student.sampling import seeded_z
from teacher.numerics import assert_parity
from tests.helpers.records import check_parity_record, check_parity_tolerances_are_fresh, check_quality_record
from tests.helpers.runtime import assert_runtime_cli_renders_the_pytorch_faces, export_through_cli, quick_bench
from tests.helpers.students import export_student, float64_reference
from tests.helpers.toolchains import require_toolchain

# Wider than the other formats' test student: a flatbuffer's fixed structure (~0.3 kB per operator) would otherwise
# be a sizeable part of an fp16 file of a hundred kilobytes.
CHANNELS = (128, 128, 64)


def need_litert() -> None:
    require_toolchain(
        all(importlib.util.find_spec(m) is not None for m in ("litert_torch", "ai_edge_litert")),
        "litert-torch",
        'pip install -e ".[litert]"',
    )


@pytest.fixture(scope="module")
def litert(tmp_path_factory):
    need_litert()
    G = export_student(channels=CHANNELS)
    out, path = export_through_cli(G, tmp_path_factory.mktemp("litert"), "litert")
    return out, G, path


def test_files_manifest_and_signatures(litert):
    out, G, _ = litert
    m = read_manifest(out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "mapping.tflite", "synthesis.tflite"]
    assert m["artefact_format"] == "litert" and m["modulation"] == "activations" and m["precision"] == "fp32"
    syn = m["litert"]["graphs"]["synthesis"]
    assert syn["inputs"] == ["w"] and len(syn["outputs"]) == 1 and syn["convolutions"] > 0
    assert m["litert"]["graphs"]["mapping"]["inputs"] == ["z"]
    check_parity_record(m)  # every recorded max |diff| finite and within its recorded tolerance
    check_parity_tolerances_are_fresh(m, G)  # each tolerance the rule's on a fresh float64 reference
    assert set(m["parity"]["max_abs_diff"]) == {"litert"}
    assert "litert-torch" in m["versions"] and "ai-edge-litert" in m["versions"]


def test_parity_and_size_recomputed(litert):
    out, G, _ = litert
    rt = load_runtime(out, threads=2)
    assert rt.backend == "litert"
    w, ref = float64_reference(G, PARITY_SEEDS)
    z = seeded_z(list(PARITY_SEEDS), G.z_dim).numpy()
    assert_parity(rt.mapping(z), w.numpy(), "LiteRT mapping vs float64 PyTorch")
    assert_parity(rt.synthesis(w.float().numpy()), ref.numpy(), "LiteRT synthesis vs float64 PyTorch")
    lean = LeanSynthesis(G.synthesis, w_input="w", noise="const", modulation="activations")
    ratio = (out / "synthesis.tflite").stat().st_size / lean.num_params_bytes()
    assert ratio <= SIZE_LIMIT and ratio == pytest.approx(read_manifest(out)["size_gate"]["ratio"], abs=1e-4)


def test_runtime_cli_renders_the_pytorch_faces(litert, tmp_path):
    out, G, _ = litert
    assert_runtime_cli_renders_the_pytorch_faces(out, G, tmp_path / "faces", "--threads", "1")


def test_fp16_weights_pass_the_gates(litert, tmp_path):
    out, G, ckpt = litert
    m = export(str(ckpt), "litert", tmp_path / "fp16", precision="fp16", progress=False)
    assert m["precision"] == "fp16" and m["quality"]["psnr_db"] >= 40
    check_quality_record(tmp_path / "fp16", G, m)  # PSNR of the files, recomputed against the fp32 student
    s = m["size_gate"]
    fp32 = (out / "synthesis.tflite").stat().st_size
    assert s["file_bytes"] == (tmp_path / "fp16" / "synthesis.tflite").stat().st_size
    assert "fp16_param_bytes" in s and s["file_bytes"] <= SIZE_LIMIT * s["fp16_param_bytes"]
    assert s["file_bytes"] < 0.6 * fp32


def test_dynamic_range_int8_stands_behind_the_quality_gate(litert, tmp_path):
    """Dynamic-range INT8 (int8 weights, activations quantised at run time) is written only if it reaches 40 dB. On
    this student it does not (about 34 dB): the export says so, with the figure, and writes nothing."""
    _, _, ckpt = litert
    out = tmp_path / "int8"
    with pytest.raises(ExportError, match=r"the int8 variant reaches [\d.]+ dB PSNR .* below its 40 dB gate"):
        export(str(ckpt), "litert", out, precision="int8", progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_size_gate_catches_the_folded_noise(tmp_path, monkeypatch):
    """Without the barrier the converter folds each noise map with the next bias into a [1, r, r, C] constant: the
    size gate refuses the file and nothing is written."""
    need_litert()
    from litert_torch.backend import optimization_barrier as barrier_module

    monkeypatch.setattr(barrier_module, "optimization_barrier", lambda pair: pair)
    out = tmp_path / "folded"
    with pytest.raises(ExportError, match=r"size gate failed: synthesis\.tflite weighs"):
        export(export_student(channels=CHANNELS), "litert", out, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_refused_options_and_missing_toolchain(tmp_path, monkeypatch):
    G = export_student()
    with pytest.raises(ExportError, match="fixed batch"):
        export(G, "tflite", tmp_path / "b", batch=None, progress=False)  # the format's older name is refused alike
    with pytest.raises(ExportError, match="--noise const or none"):
        export(G, "litert", tmp_path / "c", noise="input", progress=False)
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # import litert_torch now fails
    with pytest.raises(ExportError, match=r'litert_torch is not installed.*pip install -e "\.\[litert\]"'):
        export(G, "litert", tmp_path / "d", progress=False)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_bench_row(litert, tmp_path):
    _, _, ckpt = litert
    out = tmp_path / "bench"
    rows = quick_bench(ckpt, ["onnxruntime", "litert"], out)
    r = rows["litert"]
    assert "error" not in r, r.get("error")
    assert r["runs"] == len(r["all_ms"]) == 3 and r["psnr_db"] > 90
    assert r["bytes"] == (out / "artifacts" / "export_litert_fp32" / "synthesis.tflite").stat().st_size
