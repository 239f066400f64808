"""The standalone runtime (export/runtime.py): seeded latents without torch, rendering in a process where
``import torch`` fails, and its command line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from export.exporter import export
from export.runtime import seeded_z as np_seeded_z
from mobilestylegan.io.checkpoint import save_student
from mobilestylegan.student.sampling import seeded_z
from teacher.numerics import assert_parity
from tests.helpers.runtime import run_without_torch, torch_free_env
from tests.helpers.students import export_student, torch_images


@pytest.mark.parametrize("z_dim", [16, 32, 40, 512])
def test_seeded_z_matches_torch(z_dim):
    seeds = [0, 1, 7, 12345, 2**31 + 5]
    # numpy's log/cos/sin against torch's vectorised ones: float32 rounding apart, not bit for bit.
    assert_parity(np_seeded_z(seeds, z_dim), seeded_z(seeds, z_dim).numpy(), "numpy seeded_z vs torch.randn")
    with pytest.raises(ValueError, match="z_dim >= 16"):
        np_seeded_z([0], 8)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    G = export_student()
    root = tmp_path_factory.mktemp("rt")
    save_student(root / "student.pt", G)
    dirs = {}
    for fmt in ("onnx", "openvino"):
        dirs[fmt] = root / fmt
        export(str(root / "student.pt"), fmt, dirs[fmt], batch=None, progress=False)
    return G, dirs


def test_runtime_renders_without_torch(exports, tmp_path):
    G, dirs = exports
    seeds = [0, 3, 11]
    script = textwrap.dedent(f"""\
        import sys
        import numpy as np
        from export.runtime import load_runtime
        for fmt, d in {{"onnx": {str(dirs["onnx"])!r}, "openvino": {str(dirs["openvino"])!r}}}.items():
            rt = load_runtime(d, threads=1)
            np.save({str(tmp_path)!r} + f"/{{fmt}}.npy", rt.render({seeds}))
            np.save({str(tmp_path)!r} + f"/{{fmt}}_psi.npy", rt.render({seeds}, truncation_psi=0.6))
            assert rt.generate({seeds}).dtype == np.uint8
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("ok")
        """)
    r = run_without_torch(script, tmp_path, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
    ref, ref_psi = torch_images(G, seeds), torch_images(G, seeds, psi=0.6)
    for fmt in ("onnx", "openvino"):
        assert_parity(np.load(tmp_path / f"{fmt}.npy"), ref, f"{fmt} without torch vs PyTorch")
        assert_parity(np.load(tmp_path / f"{fmt}_psi.npy"), ref_psi, f"{fmt} without torch, psi 0.6, vs PyTorch")


def test_runtime_command_line_without_torch(exports, tmp_path):
    G, dirs = exports
    out = tmp_path / "faces"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "export.runtime",
            str(dirs["openvino"]),
            "--seeds",
            "0-1,5",
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        env=torch_free_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png", "seed0005.png"]
    from PIL import Image

    img = np.asarray(Image.open(out / "seed0005.png"))
    ref = np.round((np.clip(torch_images(G, [5]), -1, 1) + 1) * 127.5).transpose(0, 2, 3, 1)[0]
    assert img.shape == (32, 32, 3) and np.abs(img.astype(int) - ref).max() <= 1
    bad = subprocess.run(
        [sys.executable, "-m", "export.runtime", str(tmp_path), "--out", str(out)],
        env=torch_free_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "holds no manifest.json" in bad.stderr and bad.stderr.count("\n") == 1


def test_runtime_missing_engine_is_one_clear_error(exports, tmp_path, monkeypatch):
    from export.runtime import RuntimeMissingError, load_runtime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(RuntimeMissingError, match="pip install onnxruntime=="):
        load_runtime(exports[1]["onnx"])
    # The ONNX file also runs in OpenVINO.
    rt = load_runtime(exports[1]["onnx"], backend="openvino", precision_hint="f32")
    assert_parity(rt.render([2]), torch_images(exports[0], [2]), "ONNX file in OpenVINO vs PyTorch")
