"""ExecuTorch export of a tiny student: every conv in XNNPACK, parity and size recomputed here, the runtime renders
the same faces as PyTorch, fp16 programs pass their gates (and the size gate catches XNNPACK's fp32 conv weights).
Needs the ``executorch`` extra (skipped without it, unless
``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is set: CI installs it)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from export.exporter import PARITY_SEEDS, SIZE_LIMIT, ExportError, export
from export.manifest import read_manifest
from export.runtime import load_runtime
from mobilestylegan.student.lean import LeanSynthesis
from teacher.numerics import assert_parity, pooled_psnr_db
from tests.helpers.records import check_parity_record, check_parity_tolerances_are_fresh, check_quality_record
from tests.helpers.runtime import assert_runtime_cli_renders_the_pytorch_faces, export_through_cli
from tests.helpers.students import export_student, float64_reference
from tests.helpers.toolchains import require_toolchain


def need_executorch() -> None:
    require_toolchain(
        importlib.util.find_spec("executorch") is not None, "executorch", 'pip install -e ".[executorch]"'
    )


@pytest.fixture(scope="module")
def pte(tmp_path_factory):
    need_executorch()
    G = export_student()
    out, path = export_through_cli(G, tmp_path_factory.mktemp("pte"), "executorch")
    return out, G, path


def test_files_manifest_and_delegation(pte):
    out, G, _ = pte
    m = read_manifest(out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "mapping.pte", "synthesis.pte"]
    assert m["artefact_format"] == "executorch" and m["modulation"] == "activations" and m["precision"] == "fp32"
    d = m["delegation"]["synthesis"]
    assert d["backend"] == "XNNPACK" and d["convolutions"] > 0
    assert d["convolutions_delegated"] == d["convolutions"] and d["convolutions_outside"] == 0
    assert d["delegates"] == 1 and d["ops_outside"] == []  # nothing splits the program
    check_parity_record(m)  # every recorded max |diff| finite and within its recorded tolerance
    check_parity_tolerances_are_fresh(m, G)  # each tolerance the rule's on a fresh float64 reference
    assert set(m["parity"]["max_abs_diff"]) == {"executorch"}
    assert "executorch" in m["versions"]


def test_parity_and_size_recomputed(pte):
    out, G, _ = pte
    rt = load_runtime(out)
    assert rt.backend == "executorch"
    w, ref = float64_reference(G, PARITY_SEEDS)
    assert_parity(rt.synthesis(w.float().numpy()), ref.numpy(), "ExecuTorch synthesis vs float64 PyTorch")
    lean = LeanSynthesis(G.synthesis, w_input="w", noise="const", modulation="activations")
    ratio = (out / "synthesis.pte").stat().st_size / lean.num_params_bytes()
    assert ratio <= SIZE_LIMIT and ratio == pytest.approx(read_manifest(out)["size_gate"]["ratio"], abs=1e-4)


def test_runtime_cli_renders_the_pytorch_faces(pte, tmp_path):
    out, G, _ = pte
    assert_runtime_cli_renders_the_pytorch_faces(out, G, tmp_path / "faces")


# The fp16 tests' student is wider: a program's fixed structure (~20 kB here) would otherwise be a sizeable part of
# an fp16 file of a hundred kilobytes.
FP16_CHANNELS = (128, 128, 64)


def test_fp16_programs_pass_the_gates(tmp_path):
    """Half-precision programs behind float32 casts: about half the fp32 weights, every conv still in XNNPACK,
    40 dB in ExecuTorch's runtime (recomputed here against the fp32 PyTorch student); the XNNPACK serialiser is
    left as it was."""
    need_executorch()
    from executorch.backends.xnnpack.operators import node_visitor

    stock = node_visitor._node_visitor_dict["aten.convolution.default"]
    G = export_student(channels=FP16_CHANNELS)
    out, _ = export_through_cli(G, tmp_path, "executorch", "--precision", "fp16")
    assert node_visitor._node_visitor_dict["aten.convolution.default"] is stock
    m = read_manifest(out)
    assert m["precision"] == "fp16" and m["weights_dtype"].startswith("float16")
    check_quality_record(out, G, m)  # PSNR of the files on the recorded seeds, recomputed against the fp32 student
    assert m["quality"]["measured_inference_precision"]["synthesis"] == "f16 (executorch)"
    d = m["delegation"]["synthesis"]
    assert d["convolutions"] > 0 and d["convolutions_delegated"] == d["convolutions"]
    fp32_bytes = LeanSynthesis(G.synthesis, w_input="w", noise="const", modulation="activations").num_params_bytes()
    assert (out / "synthesis.pte").stat().st_size <= SIZE_LIMIT * fp32_bytes / 2
    rt = load_runtime(out)
    w, _ = float64_reference(G, PARITY_SEEDS)
    got = rt.synthesis(w.float().numpy())
    assert got.dtype == np.float32 and got.shape == (len(PARITY_SEEDS), 3, 32, 32)
    with torch.no_grad():
        ref = G.synthesis(w.float(), noise_mode="const", inference=True).numpy()
    assert pooled_psnr_db(got, ref) >= 40


def test_size_gate_catches_fp32_conv_weights(tmp_path, monkeypatch):
    """Left to itself ExecuTorch 1.5.1's XNNPACK serialiser writes dense conv weights as float32 inside an fp16
    program: the size gate refuses that file and nothing is written."""
    need_executorch()
    import contextlib

    from export.targets import executorch as target

    monkeypatch.setattr(target, "_conv_weights_kept_in_fp16", contextlib.nullcontext)
    with pytest.raises(ExportError, match=r"size gate failed: synthesis\.pte weighs \d+ bytes, [\d.]+x the \d+ fp16"):
        export(
            export_student(channels=FP16_CHANNELS), "executorch", tmp_path / "fp16", precision="fp16", progress=False
        )
    assert not any(tmp_path.iterdir())


def test_refused_options_and_missing_toolchain(tmp_path, monkeypatch):
    G = export_student()
    with pytest.raises(ExportError, match="int8 is offered for OpenVINO"):
        export(G, "executorch", tmp_path / "a", precision="int8", progress=False)
    with pytest.raises(ExportError, match="fixed batch"):
        export(G, "executorch", tmp_path / "b", batch=None, progress=False)
    monkeypatch.setitem(sys.modules, "executorch", None)  # import executorch now fails
    with pytest.raises(ExportError, match=r'executorch is not installed.*pip install -e "\.\[executorch\]"'):
        export(G, "executorch", tmp_path / "c", progress=False)
    assert not any(tmp_path.iterdir())  # nothing half-written
