"""Core ML export of a tiny student: on Linux the spec, the size gate and the stored check reference are verified;
Core ML's own predictions need macOS (``mobilestylegan-export --check``). Needs the ``coreml`` extra (skipped
without it, unless ``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is set: CI installs it)."""

from __future__ import annotations

import importlib.util
import platform

import numpy as np
import pytest
import torch

from export.exporter import PARITY_SEEDS, SIZE_LIMIT, ExportError, export
from export.manifest import read_manifest
from export.runtime import load_runtime
from mobilestylegan.cli.export import main as cli_main
from mobilestylegan.io.checkpoint import save_student
from mobilestylegan.student.lean import LeanSynthesis
from mobilestylegan.student.sampling import seeded_z
from teacher.mapping import truncate
from teacher.numerics import assert_parity
from tests.helpers.students import export_student
from tests.helpers.toolchains import require_toolchain


def need_coremltools() -> None:
    require_toolchain(importlib.util.find_spec("coremltools") is not None, "coremltools", 'pip install -e ".[coreml]"')


@pytest.fixture(scope="module")
def student_file(tmp_path_factory):
    need_coremltools()
    G = export_student()
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    save_student(path, G)
    return path, G


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_spec_size_and_check_reference(student_file, tmp_path, precision, capsys):
    path, G = student_file
    out = tmp_path / "cm"
    argv = [str(path), "--format", "coreml", "--out", str(out), "-q"] + (
        ["--precision", "fp32", "--compute-units", "cpu_and_ne"] if precision == "fp32" else []
    )
    assert cli_main(argv) == 0  # fp16 is the Core ML default
    m = read_manifest(out)
    assert m["artefact_format"] == "coreml" and m["precision"] == precision and m["modulation"] == "activations"
    assert m["coreml"]["compute_units"]["default"] == ("cpu_and_ne" if precision == "fp32" else "all")
    syn = m["coreml"]["models"]["synthesis"]
    assert syn["inputs"] == [{"name": "w", "shape": [1, G.w_dim], "dtype": "float32"}]
    assert [o["name"] for o in syn["outputs"]] == ["img"] and syn["outputs"][0]["dtype"] == "float32"
    assert syn["convolutions"] > 0 and syn["operations"] > syn["convolutions"]
    assert (out / "synthesis.mlpackage" / "Manifest.json").is_file()
    # Size gate recomputed: the weights file against the parameter bytes at the export's precision.
    lean = LeanSynthesis(G.synthesis, w_input="w", noise="const", modulation="activations")
    weights = out / "synthesis.mlpackage" / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    param_bytes = lean.num_params_bytes() // 2 if precision == "fp16" else lean.num_params_bytes()  # fp32: 4 each
    ratio = weights.stat().st_size / param_bytes
    assert ratio <= SIZE_LIMIT and ratio == pytest.approx(m["size_gate"]["ratio"], abs=1e-4)
    # The reference --check compares with on a Mac: the seeded inputs and the float64 student's outputs.
    assert m["parity"]["run"] is False and "macOS" in m["parity"]["reason"]
    with np.load(out / "check_reference.npz") as ref:
        seeds = list(PARITY_SEEDS)
        with torch.no_grad():
            G64 = G.double()
            w = truncate(G64.mapping.embed(seeded_z(seeds, G.z_dim).double()), G64.mapping.w_avg, 1.0)
            assert_parity(ref["mapping.reference"], w.numpy(), "stored mapping reference")
            assert_parity(
                ref["synthesis.reference"],
                G64.synthesis(torch.from_numpy(ref["synthesis.w"]).double(), noise_mode="const").numpy(),
                "stored image reference",
            )
            G.float()
    with pytest.raises(ValueError, match="Core ML on Apple devices"):
        load_runtime(out)
    capsys.readouterr()
    if platform.system() != "Darwin":
        assert cli_main(["--check", str(out)]) == 2
        assert "macOS only" in capsys.readouterr().err


def test_refused_options():
    G = export_student()
    with pytest.raises(ExportError, match="int8 is offered for OpenVINO"):
        export(G, "coreml", "/nonexistent/never-written", precision="int8", progress=False)
    with pytest.raises(ExportError, match="fixed batch"):
        export(G, "coreml", "/nonexistent/never-written", batch=None, progress=False)
    with pytest.raises(ExportError, match="are a Core ML choice"):
        export(G, "onnx", "/nonexistent/never-written", compute_units="cpu_only", progress=False)
    with pytest.raises(ExportError, match="are a Core ML choice"):
        export(G, "coreml", "/nonexistent/never-written", compute_units="npu", progress=False)
