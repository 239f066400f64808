"""ExecuTorch export of a tiny student: every conv in XNNPACK, parity and size recomputed here, the runtime renders
the same faces as PyTorch. Needs the ``executorch`` extra (skipped without it, unless
``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is set: CI installs it)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from export.exporter import PARITY_SEEDS, ExportError, export
from export.manifest import read_manifest
from export.runtime import load_runtime
from mobilestylegan.cli.export import main as cli_main
from mobilestylegan.io.checkpoint import save_student
from mobilestylegan.student.lean import LeanSynthesis
from teacher.numerics import assert_parity
from tests.helpers import assert_runtime_cli_renders_the_pytorch_faces, float64_reference, require_toolchain
from tests.test_export import export_student


def need_executorch() -> None:
    require_toolchain(importlib.util.find_spec("executorch") is not None, "executorch", 'pip install -e ".[executorch]"')


@pytest.fixture(scope="module")
def pte(tmp_path_factory):
    need_executorch()
    G = export_student()
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    save_student(path, G)
    out = tmp_path_factory.mktemp("pte") / "export"
    assert cli_main([str(path), "--format", "executorch", "--out", str(out), "-q"]) == 0
    return out, G


def test_files_manifest_and_delegation(pte):
    out, _ = pte
    m = read_manifest(out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "mapping.pte", "synthesis.pte"]
    assert m["artefact_format"] == "executorch" and m["modulation"] == "activations" and m["precision"] == "fp32"
    d = m["delegation"]["synthesis"]
    assert d["backend"] == "XNNPACK" and d["convolutions"] > 0
    assert d["convolutions_delegated"] == d["convolutions"] and d["convolutions_outside"] == 0
    assert m["parity"]["passed"] and set(m["parity"]["max_abs_diff"]) == {"executorch"}
    assert "executorch" in m["versions"]


def test_parity_and_size_recomputed(pte):
    out, G = pte
    rt = load_runtime(out)
    assert rt.backend == "executorch"
    w, ref = float64_reference(G, PARITY_SEEDS)
    assert_parity(rt.synthesis(w.float().numpy()), ref.numpy(), "ExecuTorch synthesis vs float64 PyTorch")
    lean = LeanSynthesis(G.synthesis, w_input="w", noise="const", modulation="activations")
    ratio = (out / "synthesis.pte").stat().st_size / lean.num_params_bytes()
    assert ratio <= 1.15 and ratio == pytest.approx(read_manifest(out)["size_gate"]["ratio"], abs=1e-4)


def test_runtime_cli_renders_the_pytorch_faces(pte, tmp_path):
    out, G = pte
    assert_runtime_cli_renders_the_pytorch_faces(out, G, tmp_path / "faces")


def test_refused_options_and_missing_toolchain(tmp_path, monkeypatch):
    G = export_student()
    with pytest.raises(ExportError, match="fp32 only"):
        export(G, "executorch", tmp_path / "a", precision="fp16", progress=False)
    with pytest.raises(ExportError, match="fixed batch"):
        export(G, "executorch", tmp_path / "b", batch=None, progress=False)
    monkeypatch.setitem(sys.modules, "executorch", None)  # import executorch now fails
    with pytest.raises(ExportError, match=r'executorch is not installed.*pip install -e "\.\[executorch\]"'):
        export(G, "executorch", tmp_path / "c", progress=False)
    assert not any(tmp_path.iterdir())  # nothing half-written
