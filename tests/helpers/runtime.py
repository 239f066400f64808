"""The standalone runtime's command line (``python -m export.runtime``) against the PyTorch student."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.sampling import seeded_z
from tests.helpers.paths import REPO

# A sitecustomize that makes torch (and the toolkit's torch-based packages) unimportable in a child interpreter.
NO_TORCH = textwrap.dedent("""\
    import sys
    for name in ("torch", "torchvision", "lightning", "mobilestylegan", "teacher"):
        sys.modules[name] = None  # any import of these raises ImportError
    """)
# The first lines of a script run that way: it fails unless torch really is out of reach.
TORCH_ABSENT = textwrap.dedent("""\
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch was importable")
    """)


def torch_free_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a child interpreter without torch (:data:`NO_TORCH`) that imports this repository."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_TORCH)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    return env


def run_without_torch(body: str, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Python source ``body`` in a child interpreter where torch cannot be imported (checked first)."""
    script = TORCH_ABSENT + textwrap.dedent(body)
    env = torch_free_env(tmp_path)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


def assert_runtime_cli_renders_the_pytorch_faces(
    directory: Path, G: StudentGenerator, faces_dir: Path, *extra: str
) -> None:
    """``python -m export.runtime DIR --seeds 0-1`` writes the PyTorch student's faces (const noise), to one uint8 step
    (float rounding may flip one)."""
    from export.runtime import main as runtime_main

    assert runtime_main([str(directory), "--seeds", "0-1", *extra, "--out", str(faces_dir)]) == 0
    got = np.stack([np.array(Image.open(faces_dir / f"seed{s:04d}.png")) for s in (0, 1)])
    with torch.no_grad():
        img = G.synthesis(G.mapping(seeded_z([0, 1], G.z_dim)), noise_mode="const")
    want = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def export_through_cli(G: StudentGenerator, root: Path, fmt: str, *extra: str) -> tuple[Path, Path]:
    """``G`` saved as ``root/student.pt`` and exported by ``mobilestylegan-export --format fmt`` (quiet) into
    ``root/export``, as a user would; returns (the export directory, the checkpoint)."""
    from mobilestylegan.cli.export import main as cli_main
    from mobilestylegan.io.checkpoint import save_student

    ckpt, out = root / "student.pt", root / "export"
    save_student(ckpt, G)
    assert cli_main([str(ckpt), "--format", fmt, "--out", str(out), "-q", *extra]) == 0
    return out, ckpt


def quick_bench(source: Path, runtimes: list[str], out: Path) -> dict[str, dict]:
    """``mobilestylegan-bench SOURCE --runtimes ...`` with 3 timed runs, 2 quality seeds, one thread and no teacher,
    as a user would run it; returns bench.json's rows by runtime."""
    import json

    from mobilestylegan.cli import bench

    argv = [str(source), "--runtimes", ",".join(runtimes), "--runs", "3", "--warmup", "1", "--quality-seeds", "2"]
    assert bench.main([*argv, "--no-teacher", "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    return {r["runtime"]: r for r in json.loads((out / "bench.json").read_text())["rows"]}
