"""mobilestylegan-bench on a tiny student: two runtimes, each in its own worker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export import bench
from mobilestylegan.checkpoint import save_student
from mobilestylegan.complexity import count_params
from mobilestylegan.formats import load_any_student
from mobilestylegan.generator import StudentGenerator
from mobilestylegan.synthesis import StudentConfig
from teacher.mapping import MappingNetwork
from tests.helpers import randomize

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
    argv = [str(student_path), "--runtimes", "eager,openvino-f32", "--runs", "2", "--warmup", "1",
            "--quality-seeds", "2", "--teacher", str(TINY_TEACHER), "--threads", "1", "--no-progress",
            "--out", str(out)]
    assert bench.main(argv) == 0
    return out, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_json_rows(report, student_path):
    _, data, _ = report
    assert {"command", "machine", "conventions", "student", "rows"} <= set(data)
    assert data["machine"]["threads"] == 1
    for key in ("latency", "allocator", "macs", "quality", "params"):
        assert data["conventions"][key]
    rows = {(r["model"], r["runtime"]): r for r in data["rows"]}
    assert set(rows) == {("student", "eager"), ("student", "openvino-f32"), ("teacher", "eager")}
    want_params = count_params(load_any_student(student_path).synthesis)
    for (model, rt), r in rows.items():
        assert "error" not in r, r.get("error")
        assert 0 < r["min_ms"] <= r["median_ms"] and r["runs"] == 2
        assert r["macs"] > 0 and r["flops"] == 2 * r["macs"] and r["bytes"] > 0
        if model == "student":
            assert r["params"] == want_params
            assert r["psnr_db"] is None or r["psnr_db"] > 90  # fp32 runtimes against fp32 PyTorch
    assert rows[("student", "eager")]["allocator"] == bench.MMAP_TUNABLE
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
