"""The browser side of the web export: the JavaScript port of seeded_z against the numpy one (Node.js).

Skipped without ``node``, unless ``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is set (CI sets it and installs Node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export.runtime import seeded_z
from teacher.numerics import assert_parity
from tests.helpers.toolchains import require_toolchain

SEEDED_Z_JS = Path(__file__).resolve().parents[1] / "export" / "web" / "seeded_z.js"


def node() -> str:
    exe = shutil.which("node") or shutil.which("nodejs")
    require_toolchain(exe is not None, "Node.js", "apt-get install nodejs")
    return exe


def js_seeded_z(seeds: list[int], z_dim: int) -> np.ndarray:
    script = (
        f"const {{ seededZ }} = require({json.dumps(str(SEEDED_Z_JS))});"
        f"console.log(JSON.stringify({json.dumps(seeds)}.map((s) => Array.from(seededZ(s, {z_dim})))));"
    )
    out = subprocess.run([node(), "-e", script], capture_output=True, text=True, timeout=60, check=True).stdout
    return np.asarray(json.loads(out), dtype=np.float32)


@pytest.mark.parametrize("z_dim", [512, 16, 520])  # the FFHQ mapping's, one block, a redrawn tail block
def test_js_seeded_z_is_the_numpy_one(z_dim):
    seeds = [0, 1, 123, 2**31, 2**32 - 1]
    got, want = js_seeded_z(seeds, z_dim), seeded_z(seeds, z_dim)
    assert got.shape == want.shape == (len(seeds), z_dim)
    # The same uint32 stream and uniforms exactly; log/cos/sin may round differently in the last bit.
    assert_parity(got, want, f"seededZ vs seeded_z, z_dim {z_dim}")
    assert np.abs(got - want).max() <= 8 * np.spacing(np.float32(np.abs(want).max()))
    assert (got == want).mean() > 0.5


def test_js_seeded_z_refuses_what_torch_would_not_reproduce():
    script = (
        f"const {{ seededZ }} = require({json.dumps(str(SEEDED_Z_JS))});"
        "for (const [s, d] of [[0, 8], [-1, 512], [1.5, 512]]) {"
        "  try { seededZ(s, d); console.log('accepted'); } catch (e) { console.log(e.message); } }"
    )
    lines = subprocess.run(
        [node(), "-e", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert lines[0].startswith("seeded latents are reproduced for zDim >= 16") and all(
        line.startswith("seed must be in") for line in lines[1:]
    )


# ------------------------------------------------------------------------------------------ the local server


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>faces</title>")
    (site / "ort.wasm").write_bytes(b"\0asm\1\0\0\0")
    (site / "app.mjs").write_text("export const x = 1;")
    return site


def _get(url: str):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, b""


def test_server_isolates_the_page_and_types_wasm(tmp_path):
    import threading

    from export.web.server import ISOLATION_HEADERS, make_server

    server = make_server(_site(tmp_path), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        status, headers, body = _get(base + "/")
        assert status == 200 and b"faces" in body
        assert all(headers[k] == v for k, v in ISOLATION_HEADERS.items()) and headers["Cache-Control"] == "no-store"
        assert _get(base + "/ort.wasm")[1]["Content-Type"] == "application/wasm"
        assert _get(base + "/app.mjs")[1]["Content-Type"] == "text/javascript"
        status, headers, _ = _get(base + "/missing.onnx")
        assert status == 404 and headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    finally:
        server.shutdown()
        server.server_close()


def test_serve_cli_as_a_user_runs_it(tmp_path):
    import sys

    site = _site(tmp_path)
    exe = Path(sys.executable).parent / "mobilestylegan-serve"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mobilestylegan.cli.serve"]
    proc = subprocess.Popen([*cmd, str(site), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {site} at http://127.0.0.1:")
        url = line.split(" at ", 1)[1].split()[0]
        assert _get(url)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run([*cmd, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "holds no index.html" in bad.stderr and "Traceback" not in bad.stderr


def test_missing_toolchains_skip_here_and_fail_in_ci(monkeypatch):
    monkeypatch.delenv("MOBILESTYLEGAN_REQUIRE_TOOLCHAINS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="x is not installed"):
        require_toolchain(False, "x", "pip install x")
    monkeypatch.setenv("MOBILESTYLEGAN_REQUIRE_TOOLCHAINS", "1")
    with pytest.raises(pytest.fail.Exception, match="x is missing but"):
        require_toolchain(False, "x", "pip install x")
    require_toolchain(True, "x", "pip install x")  # present: nothing happens


def test_a_browser_that_dies_is_one_clear_error(monkeypatch, tmp_path):
    """A Chromium that exits at once (here /bin/false) gives a PageError naming that, and leaves no profile folder."""
    import tempfile

    from export.web.browser import CHROMIUM_ENV, Chromium, PageError, find_chromium

    monkeypatch.setenv(CHROMIUM_ENV, "/bin/false")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert find_chromium() == "/bin/false"
    with pytest.raises(PageError, match="Chromium exited"):
        Chromium(timeout_s=20)
    assert not list(tmp_path.glob("msg-chromium.*"))
    monkeypatch.setenv(CHROMIUM_ENV, str(tmp_path / "no-such-browser"))
    assert find_chromium() is None
