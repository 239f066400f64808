"""mobilestylegan-bench on a tiny student: two runtimes, each in its own worker process."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mobilestylegan.allocator import MMAP_TUNABLE
from mobilestylegan.cli import bench
from mobilestylegan.io.checkpoint import save_student
from mobilestylegan.io.load import load_any_student
from mobilestylegan.student.complexity import count_params
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import StudentConfig
from teacher import load_generator
from teacher.mapping import MappingNetwork
from tests.helpers.teachers import randomize

pytest.importorskip("openvino")

W = 16
TINY_TEACHER = Path(__file__).resolve().parents[1] / "teacher" / "assets" / "rosinality_tiny64.pt"


@pytest.fixture(scope="module")
def student_path(tmp_path_factory) -> Path:
    mapping = randomize(MappingNetwork(W, W, 2), seed=4)
    G = StudentGenerator(StudentConfig(img_resolution=64, w_dim=W, channels=(16, 16, 16, 8)), mapping)
    randomize(G.synthesis, seed=5)
    return save_student(tmp_path_factory.mktemp("student") / "tiny.pt", G.eval())


@pytest.fixture(scope="module")
def report(student_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        str(student_path),
        "--runtimes",
        "eager,openvino-f32",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--quality-seeds",
        "2",
        "--teacher",
        str(TINY_TEACHER),
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert bench.main(argv) == 0
    return out, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def macs(synthesis, w_dim: int) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        synthesis(torch.zeros(1, w_dim), noise_mode="const", inference=True)
    return counter.get_total_flops() / 2


def test_json_rows(report, student_path):
    out, data, _ = report
    assert {"command", "machine", "conventions", "student", "rows"} <= set(data)
    assert data["machine"]["threads"] == 1
    for key in ("latency", "allocator", "macs", "quality", "params"):
        assert data["conventions"][key]
    rows = {(r["model"], r["runtime"]): r for r in data["rows"]}
    assert set(rows) == {("student", "eager"), ("student", "openvino-f32"), ("teacher", "eager")}
    S = load_any_student(student_path).requires_grad_(False)
    T = load_generator(TINY_TEACHER).requires_grad_(False)
    # Independently: params, MACs (FlopCounterMode / 2 of one batch-1 forward) and sizes.
    want = {
        "student": {
            "params": count_params(S.synthesis),
            "macs": macs(S.synthesis, S.w_dim),
            "bytes": 4 * (count_params(S.synthesis) + sum(b.numel() for b in S.synthesis.buffers())),
        },
        "teacher": {
            "params": count_params(T.synthesis),
            "macs": macs(T.synthesis, T.w_dim),
            "bytes": 4 * count_params(T.synthesis),
        },
    }
    ir = out / "artifacts" / "export_openvino_fp32" / "synthesis.xml"
    for (model, rt), r in rows.items():
        assert "error" not in r, r.get("error")
        # Latency: the reported median and min are those of the recorded per-run times, one per --runs.
        assert r["runs"] == len(r["all_ms"]) == 2 and all(t > 0 for t in r["all_ms"])
        assert r["median_ms"] == pytest.approx(statistics.median(r["all_ms"]), abs=1e-3)  # all_ms: 3 decimals
        assert r["min_ms"] == pytest.approx(min(r["all_ms"]), abs=1e-3)
        assert r["macs"] == want[model]["macs"] > 0 and r["flops"] == 2 * r["macs"]
        assert r["params"] == want[model]["params"]
        if (model, rt) == ("student", "openvino-f32"):  # the exported IR, xml + bin
            assert r["bytes"] == os.path.getsize(ir) + os.path.getsize(ir.with_suffix(".bin"))
        else:  # fp32 weights (and buffers) in memory
            assert r["bytes"] == want[model]["bytes"]
        if model == "student":
            assert r["psnr_db"] is None or r["psnr_db"] > 90  # fp32 runtimes against fp32 PyTorch
    assert rows[("student", "eager")]["allocator"] == MMAP_TUNABLE
    assert rows[("student", "openvino-f32")]["inference_precision"] == "f32"
    assert rows[("teacher", "eager")]["macs_paper"] >= rows[("teacher", "eager")]["macs"]


def test_markdown_table(report):
    _, data, md = report
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| model | runtime | params | GMAC")
    assert len(table) == 1 + len(data["rows"])  # header + one line per row
    assert "student | openvino-f32" in md and "GLIBC_TUNABLES" in md and data["command"] in md


def test_bad_runtime_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["ffhq-1024", "--runtimes", "eager,tensorrt"])
    assert "tensorrt" in capsys.readouterr().err
