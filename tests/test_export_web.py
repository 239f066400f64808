"""The web export of a tiny student, rendered by its own page in headless Chromium.

The page is served by the installed ``mobilestylegan-serve`` on 127.0.0.1 and driven like a user would (URL
parameters, the "new face" button); its canvas pixels are compared with the Python runtime and with
``mobilestylegan-generate``. Needs Chromium and the onnxruntime-web files in the cache (``python -m
export.web.ort_files``); skipped without them unless ``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is set (CI).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.exporter import SIZE_LIMIT, ExportError, export
from export.manifest import read_manifest
from export.runtime import load_runtime, to_uint8
from mobilestylegan.cli.export import main as cli_main
from mobilestylegan.io.load import load_any_student
from teacher.numerics import assert_parity
from tests.helpers.records import check_browser_record, check_quality_record
from tests.helpers.runtime import export_through_cli, quick_bench
from tests.helpers.students import export_student
from tests.helpers.toolchains import require_toolchain

# Wider than the other formats' test student: the W+ graph's fixed structure would otherwise be a sizeable part of an
# fp16 file of a hundred kilobytes.
CHANNELS = (128, 128, 64)


def need_browser_toolchain() -> None:
    from export.web import ort_files
    from export.web.browser import INSTALL, find_chromium

    require_toolchain(find_chromium() is not None, "Chromium", INSTALL)
    try:
        ort_files.locate(fetch=False)
        present = True
    except ExportError:
        present = False
    require_toolchain(present, f"onnxruntime-web {ort_files.VERSION}", "python -m export.web.ort_files")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """The default web export (fp16 weights) of a tiny student checkpoint, through the CLI; and the checkpoint."""
    need_browser_toolchain()
    return export_through_cli(export_student(channels=CHANNELS), tmp_path_factory.mktemp("web"), "web")


def command(name: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", f"mobilestylegan.cli.{name.split('-')[1]}"]


class Served:
    """``mobilestylegan-serve DIR --port 0`` as a user starts it; ``url`` is the address it prints."""

    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen(
            [*command("mobilestylegan-serve"), str(directory), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert " at http://127.0.0.1:" in line, line + self.proc.stderr.read()
        self.url = line.split(" at ", 1)[1].split()[0]

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def canvas_after(status_prefix: str, action: str = "") -> str:
    """An expression: do ``action``, wait until the status line starts with ``status_prefix``, return the canvas
    pixels (base64 RGBA), the status, the page's query string and the timing line."""
    return f"""(async () => {{
  await window.msg.ready;
  {action}
  const status = document.getElementById("status");
  for (let i = 0; !status.textContent.startsWith({json.dumps(status_prefix)}); i++) {{
    if (status.className === "error") throw new Error(status.textContent);
    await new Promise((r) => setTimeout(r, 20));
  }}
  const c = document.getElementById("face");
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  return {{ pixels: window.msg.base64(px), status: status.textContent, search: location.search,
           timing: document.getElementById("timing").textContent, size: c.width }};
}})()"""


def rgb(result: dict) -> np.ndarray:
    s = result["size"]
    return np.frombuffer(base64.b64decode(result["pixels"]), np.uint8).reshape(s, s, 4)[..., :3]


def test_files_manifest_and_export_time_browser_check(web):
    out, ckpt = web
    m = read_manifest(out)
    assert m["artefact_format"] == "web" and m["precision"] == "fp16" and m["batch"] == 1
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == sorted(
        [
            "app.js",
            "faces.js",
            "directions.json",
            "index.html",
            "manifest.json",
            "mapping.onnx",
            "seeded_z.js",
            "synthesis.onnx",
            "ort/NOTICE.txt",
            "ort/ort-wasm-simd-threaded.mjs",
            "ort/ort-wasm-simd-threaded.wasm",
            "ort/ort.wasm.min.mjs",
        ]
    )
    assert sorted(m["web"]["files"]) == sorted(n for n in names if not n.endswith(".onnx") and n != "manifest.json")
    assert m["versions"]["onnxruntime-web"] == "1.30.0"
    b = m["browser"]
    assert b["run"] and b["threads"] == 1 and b["vs_pytorch"]["psnr_db"] >= 40
    assert b["vs_runtime"]["max_abs_diff"] <= b["vs_runtime"]["tolerance"] and b["pixels"]["max_level_diff"] == 0
    G = load_any_student(ckpt)
    check_browser_record(out, G, m)  # the browser's figures against tolerances and gates recomputed here
    check_quality_record(out, G, m)  # the fp16 files' PSNR, recomputed against the fp32 student
    s = m["size_gate"]  # fp16 weights are gated against fp16 parameter bytes
    assert "fp16_param_bytes" in s and s["file_bytes"] == (out / "synthesis.onnx").stat().st_size
    assert s["file_bytes"] <= SIZE_LIMIT * s["fp16_param_bytes"]


def test_page_from_a_link_and_the_new_face_button_show_the_runtime_faces(web):
    from export.web.browser import chromium

    out, _ = web
    rt = load_runtime(out)
    with Served(out) as served, chromium(120) as browser:
        linked = browser.evaluate(served.url + "index.html?seed=5&psi=0.5", canvas_after("seed 5, psi 0.5"))
        assert "ms per image" in linked["timing"] and "1 WASM thread" not in linked["timing"]  # isolated: threads
        got = rgb(linked)
        want = rt.generate([5], truncation_psi=0.5)[0]
        assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= 1
        assert (got == want).mean() > 0.99
        # The button draws a new seed and puts it in the address: the link reproduces the face.
        clicked = browser.evaluate(
            served.url + "index.html?seed=5&psi=0.5",
            canvas_after(
                "seed ",
                "await new Promise((r) => setTimeout(r, 0));"
                ' document.getElementById("status").textContent = "";'
                ' document.getElementById("new").click();',
            ),
        )
    seed = int(clicked["status"].split(",")[0].split()[1])
    assert seed != 5 and clicked["search"].startswith(f"?seed={seed}&psi=0.5")
    want = rt.generate([seed], truncation_psi=0.5)[0]
    assert np.abs(rgb(clicked).astype(int) - want).max() <= 1


def test_fp32_page_reproduces_mobilestylegan_generate(web, tmp_path):
    """The fp32 site's canvas is the PNG mobilestylegan-generate writes for the same seed and psi (within one
    level of rounding: the browser computes in float32, the CLI's PyTorch student too, in another order)."""
    from PIL import Image

    from export.web.site import browser_render

    _, ckpt = web
    site = tmp_path / "fp32"
    m = export(str(ckpt), "web", site, precision="fp32", progress=False)
    vs = m["browser"]["vs_pytorch"]
    assert vs["max_abs_diff"] <= vs["tolerance"]
    check_browser_record(site, load_any_student(ckpt), m)  # tolerances recomputed from the float64 student and runtime
    faces = tmp_path / "faces"
    done = subprocess.run(
        [*command("mobilestylegan-generate"), str(ckpt), "--seeds", "7", "--trunc", "0.7", "--outdir", str(faces)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    png = np.asarray(Image.open(next(faces.glob("*7*.png"))).convert("RGB"))
    page = browser_render(site, [(7, 0.7)])
    assert page["pixels"][0].shape == png.shape and np.abs(page["pixels"][0].astype(int) - png).max() <= 1
    assert_parity(page["img"][0], load_runtime(site).render([7], truncation_psi=0.7), "page vs runtime, fp32")


def test_check_command_and_a_broken_site(web, tmp_path, capsys):
    import shutil

    out, _ = web
    assert cli_main(["--check", str(out)]) == 0
    assert "canvas pixels within" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "synthesis.onnx").write_bytes(b"not a graph")
    assert cli_main(["--check", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the page at http://127.0.0.1:") and "Traceback" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "2"], "one face at a time"),
        (["--noise", "input"], "bakes the noise"),
        (["--precision", "int8"], "int8 is offered for OpenVINO"),
        (["--truncation-psi", "0.7"], "chooses truncation with its slider"),
    ],
)
def test_web_refuses_what_the_page_cannot_run(args, message, tmp_path, capsys):
    out = tmp_path / "site"
    assert cli_main(["ffhq-1024", "--format", "web", "--out", str(out), "-q", *args]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_runtime_files_are_verified(tmp_path, monkeypatch):
    from export.web import ort_files

    fake = tmp_path / "onnxruntime-web-1.30.0.tgz"
    fake.write_bytes(b"\x1f\x8b not the tarball")
    monkeypatch.setenv(ort_files.ENV, str(fake))
    with pytest.raises(ExportError, match="differs from npm's integrity"):
        ort_files.locate()
    folder = tmp_path / "dist"
    folder.mkdir()
    for name in ort_files.FILES:
        (folder / name).write_bytes(b"tampered")
    monkeypatch.setenv(ort_files.ENV, str(folder))
    with pytest.raises(ExportError, match="sha256 differs"):
        ort_files.locate()
    # A failed web export writes nothing.
    out = tmp_path / "site"
    with pytest.raises(ExportError, match="sha256 differs"):
        export(export_student(channels=CHANNELS), "web", out, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".site.*"))


def test_bench_rows_for_the_browser_and_core_ml(web, tmp_path):
    """mobilestylegan-bench's browser rows (1 and 2 WASM threads, in Chromium, cross-origin isolated) and the Core ML
    row (sized, "macOS only")."""
    import importlib.util

    _, ckpt = web
    runtimes = ["browser-wasm1", "browser-wasm2"] + (["coreml"] if importlib.util.find_spec("coremltools") else [])
    out = tmp_path / "bench"
    rows = quick_bench(ckpt, runtimes, out)
    assert set(rows) == set(runtimes)
    site = out / "artifacts" / "export_web_fp16"
    for rt, threads in (("browser-wasm1", 1), ("browser-wasm2", 2)):
        r = rows[rt]
        assert "error" not in r, r.get("error")
        assert r["wasm_threads"] == threads and r["cross_origin_isolated"] and r["runs"] == len(r["all_ms"]) == 3
        assert r["psnr_db"] > 40 and r["bytes"] == (site / "synthesis.onnx").stat().st_size
    if "coreml" in rows:
        assert rows["coreml"]["error"].startswith("macOS only") and rows["coreml"]["bytes"] > 0
    md = (out / "bench.md").read_text()
    assert "| student | browser-wasm2 |" in md and "2 WASM thread(s)" in md


def edited_ws(ws: np.ndarray, directions: list[dict], strengths: list[float]) -> np.ndarray:
    """What the page computes: ws + strength * sigma * vector on every entry, direction by direction, in float32."""
    out = ws.astype(np.float32).copy()
    for d, s in zip(directions, strengths):
        if s:
            out = out + np.float32(s * d["sigma"]) * np.asarray(d["vector"], np.float32)
    return out


def test_page_edits_seeds_and_loaded_latents_as_python_does(web, tmp_path):
    import io

    from export.web.site import browser_edits
    from mobilestylegan.edit.directions import compute

    out, ckpt = web
    m = read_manifest(out)
    assert m["w_input"] == "wplus" and m["web"]["directions"]["count"] == 5 and "directions.json" in m["web"]["files"]
    dirs = json.loads((out / "directions.json").read_text())["directions"]
    want, sigmas = compute(load_any_student(ckpt), "ganspace", 5)
    assert np.allclose([d["vector"] for d in dirs], want.numpy(), atol=1e-7)
    assert np.allclose([d["sigma"] for d in dirs], sigmas.numpy(), rtol=1e-6)
    rt = load_runtime(out)
    strengths = [1.5, 0.0, -2.0, 0.0, 0.5]
    ws = np.repeat(rt.mapping(rt.z([3]))[:, None], rt.num_ws, axis=1)
    g = np.random.default_rng(0)
    latent = (
        np.asarray(m["truncation"]["w_avg"], np.float32) + 0.5 * g.standard_normal((1, rt.num_ws, rt.w_dim))
    ).astype(np.float32)  # a W+ latent as mobilestylegan-project writes one
    buf = io.BytesIO()
    np.save(buf, latent)
    got = browser_edits(out, [(3, strengths), (buf.getvalue(), [0.0] * 5), (buf.getvalue(), strengths)])
    assert_parity(got[0], rt.synthesis(edited_ws(ws, dirs, strengths)), "page edit of seed 3")
    assert_parity(got[1], rt.synthesis(latent), "page render of a loaded latent")
    assert_parity(got[2], rt.synthesis(edited_ws(latent, dirs, strengths)), "page edit of a loaded latent")
    assert np.abs(got[2] - got[1]).max() > 0.05  # the edit changes the face


def test_a_slider_edits_the_face_and_the_link_keeps_it(web):
    from export.web.browser import chromium

    out, _ = web
    rt = load_runtime(out)
    dirs = json.loads((out / "directions.json").read_text())["directions"]
    move = 'const s = document.getElementById("dir1"); s.value = "2"; s.dispatchEvent(new Event("input"));'
    with Served(out) as served, chromium(120) as browser:
        r = browser.evaluate(served.url + "index.html?seed=5&psi=0.5", canvas_after("seed 5, psi 0.5, edits", move))
        sliders = browser.evaluate(
            served.url + "index.html?seed=5&psi=0.5&edit=0,2,0,0,0", canvas_after("seed 5, psi 0.5, edits 0,2,0,0,0")
        )
    assert r["status"] == "seed 5, psi 0.5, edits 0,2,0,0,0" and "edit=0%2C2%2C0%2C0%2C0" in r["search"]
    ws = np.repeat(rt.mapping(rt.z([5]), truncation_psi=0.5)[:, None], rt.num_ws, axis=1)
    want = to_uint8(rt.synthesis(edited_ws(ws, dirs, [0, 2, 0, 0, 0])))[0]
    for res in (r, sliders):  # moved by hand, and opened from the link
        assert np.abs(rgb(res).astype(int) - want).max() <= 1
