"""The web export's static site, and rendering with it in headless Chromium.

A site is an export directory (``manifest.json``, ``mapping.onnx``, ``synthesis.onnx``) plus ``index.html``,
``app.js``, ``seeded_z.js`` and ``ort/`` (the onnxruntime-web files, :mod:`export.web.ort_files`). The page draws
each face on a canvas; :func:`browser_render` reads back the float image and the canvas pixels through the page's
``window.msg`` interface, which is what the export's browser gate, ``mobilestylegan-export --check DIR`` and the
benchmark's browser rows measure.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import ExportError
from export.web import ort_files

HERE = Path(__file__).resolve().parent
PAGE_FILES = ("index.html", "app.js", "faces.js", "seeded_z.js")
ORT_FOLDER = "ort"
# (seed, psi) pairs the browser checks render: no truncation, and the page's own truncation at two strengths.
CHECK_CASES = ((0, 1.0), (1, 0.7), (2, 0.5), (3, 1.0))


def write_site(directory: Path) -> dict[str, Any]:
    """Copy the page and the runtime files into an export directory; returns the manifest's ``web`` entry."""
    for name in PAGE_FILES:
        shutil.copyfile(HERE / name, directory / name)
    runtime = [f"{ORT_FOLDER}/{n}" for n in ort_files.copy_into(directory / ORT_FOLDER)]
    return {
        "page": "index.html",
        "files": [*PAGE_FILES, *runtime],
        "runtime": f"onnxruntime-web {ort_files.VERSION} (WebAssembly, SIMD + threads), shipped in {ORT_FOLDER}/",
        "serve": "mobilestylegan-serve DIR (127.0.0.1, cross-origin isolated: WASM threads)",
        "url_parameters": {
            "seed": "0..2**32-1",
            "psi": "truncation, 0..1",
            "threads": "WASM threads (default: up to 4 when the page is cross-origin isolated, else 1)",
        },
        "same_faces_as": "mobilestylegan-generate SOURCE --seeds N --trunc PSI (and python -m export.runtime)",
    }


DIRECTIONS_FILE = "directions.json"
WEB_DIRECTIONS = 5


def write_directions(directory: Path, G: Any, k: int = WEB_DIRECTIONS) -> dict[str, Any]:
    """The generator's top ``k`` GANSpace directions (unit vectors and sigmas, see
    :mod:`mobilestylegan.edit.directions`) as ``directions.json`` for the page's sliders; returns the manifest's
    ``directions`` entry."""
    from mobilestylegan.edit.directions import compute

    dirs, sigmas = compute(G, "ganspace", k)
    items = [
        {"name": f"ganspace:{j}", "sigma": float(sigmas[j]), "vector": [float(x) for x in dirs[j]]} for j in range(k)
    ]
    (directory / DIRECTIONS_FILE).write_text(
        json.dumps(
            {"method": "ganspace", "units": "sigmas of mapped w", "layers": "all W+ entries", "directions": items}
        )
    )
    return {
        "file": DIRECTIONS_FILE,
        "method": "ganspace",
        "count": k,
        "edit": "ws + sum_k strength_k * sigma_k * vector_k on every W+ entry (mobilestylegan-edit, no --layers)",
    }


def _harness(cases: Sequence[tuple[int, float]], repeats: int, images: bool) -> str:
    """The expression evaluated in the page: render each case ``repeats`` times, return times (and the last images)."""
    return f"""(async () => {{
  const info = await window.msg.ready;
  const out = [];
  for (const [seed, psi] of {json.dumps([[int(s), float(p)] for s, p in cases])}) {{
    const times = [];
    let r = null;
    for (let k = 0; k < {int(repeats)}; k++) {{
      r = await window.msg.render(seed, psi);
      times.push([r.ms, r.mappingMs, r.synthesisMs]);
    }}
    out.push({{ times, img: {str(images).lower()} ? window.msg.base64(r.img) : null,
               pixels: {str(images).lower()} ? window.msg.base64(r.pixels) : null }});
  }}
  return {{ info, out }};
}})()"""


def _edit_harness(cases: Sequence[tuple[Any, list[float]]]) -> str:
    """Render each (seed or base64 .npy bytes, strengths) through the page's edit path; return float images."""
    return f"""(async () => {{
  await window.msg.ready;
  const out = [];
  for (const [base, strengths] of {json.dumps([[b, list(s)] for b, s in cases])}) {{
    const r = typeof base === "number" ? await window.msg.render(base, 1, strengths)
                                       : await window.msg.renderNpy(base, strengths);
    out.push(window.msg.base64(r.img));
  }}
  return {{ info: await window.msg.ready, out }};
}})()"""


def browser_edits(
    directory: str | Path, cases: Sequence[tuple[Any, list[float]]], timeout_s: float = 600.0
) -> list[np.ndarray]:
    """Edited faces from the page: each case is (seed, strengths) or (.npy bytes, strengths) -> ``[1, 3, R, R]``."""
    from export.web.browser import chromium, served

    cases = [(b if isinstance(b, int) else base64.b64encode(b).decode(), s) for b, s in cases]
    with served(directory) as base, chromium(timeout_s) as browser:
        result = browser.evaluate(f"{base}index.html?check=1&threads=1", _edit_harness(cases))
    size = int(result["info"]["size"])
    return [np.frombuffer(base64.b64decode(c), np.float32).reshape(1, 3, size, size) for c in result["out"]]


def browser_render(
    directory: str | Path,
    cases: Sequence[tuple[int, float]] = CHECK_CASES,
    threads: int = 1,
    repeats: int = 1,
    images: bool = True,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Serve ``directory`` on 127.0.0.1, open its page in headless Chromium with ``threads`` WASM threads and render
    each ``(seed, psi)``.

    Returns ``{"browser", "threads", "isolated", "ms": [[total, mapping, synthesis] per repeat] per case, "img":
    [1, 3, R, R] float32 per case, "pixels": [R, R, 3] uint8 per case (what the canvas shows)}``.
    """
    from export.web.browser import chromium, served

    d = Path(directory)
    missing = [n for n in (*PAGE_FILES, "manifest.json") if not (d / n).is_file()]
    if missing:
        raise ExportError(f"{d} is not a web export (no {', '.join(missing)}); make one with --format web")
    with served(d) as base, chromium(timeout_s) as browser:
        result = browser.evaluate(f"{base}index.html?check=1&threads={int(threads)}", _harness(cases, repeats, images))
        version = browser.version
    info = result["info"]
    size = int(info["size"])
    out: dict[str, Any] = {
        "browser": version,
        "threads": int(info["threads"]),
        "isolated": bool(info["isolated"]),
        "ms": [c["times"] for c in result["out"]],
        "img": [],
        "pixels": [],
    }
    if images:
        for c in result["out"]:
            out["img"].append(np.frombuffer(base64.b64decode(c["img"]), np.float32).reshape(1, 3, size, size))
            rgba = np.frombuffer(base64.b64decode(c["pixels"]), np.uint8).reshape(size, size, 4)
            if not (rgba[..., 3] == 255).all():
                raise ExportError("the page's canvas is not opaque: its pixels cannot be compared")
            out["pixels"].append(rgba[..., :3])
    return out


def _encode_harness(inputs: list[str], photos: list[tuple[str, str]], align: bool | None) -> str:
    """Encode each base64 float32 input with the page's encoder, then each (name, base64 bytes) photo through the
    page's own photo path; finally render a seed (the page must stay usable after a refused photo)."""
    return f"""(async () => {{
  const info = await window.msg.ready;
  const b64 = window.msg.base64;
  const encoded = [];
  for (const x of {json.dumps(inputs)}) {{
    const r = await window.msg.encodeBase64(x);
    encoded.push({{ latent: b64(r.latent), ms: r.ms }});
  }}
  const photos = [];
  for (const [name, bytes] of {json.dumps(photos)}) {{
    const r = await window.msg.photoFromBase64(bytes, name, {json.dumps(align)});
    photos.push(r.error ? {{ error: r.error }}
                        : {{ x: b64(r.x), latent: b64(r.latent), rgba: b64(r.rgba), img: b64(r.img), ms: r.ms,
                             status: r.status, points: r.points, quad: r.quad }});
  }}
  const after = await window.msg.render(0, 0.7);
  return {{ info, encoded, photos, after: b64(after.img) }};
}})()"""


def browser_encode(
    directory: str | Path,
    inputs: np.ndarray | None = None,
    photos: Sequence[tuple[str, bytes]] = (),
    align: bool | None = None,
    threads: int = 1,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """The page's encoder in headless Chromium (``threads`` WASM threads): ``inputs`` ``[N, 3, S, S]`` encoded one
    by one, and ``photos`` (file name, file bytes) through the page's photo path (read, align (None: when the export
    carries the face models) or centre-crop, encode, render).

    Returns ``{"browser", "latents": [1, num_ws, w_dim] per input, "ms": per input, "photos": per photo either
    {"error": message} or {"x", "latent", "rgba" [R, R, 4], "img" [1, 3, R, R], "ms", "status", "points", "quad"},
    "after": the image of seed 0 rendered after the photos}``.
    """
    from export.web.browser import chromium, served

    d = Path(directory)
    manifest = json.loads((d / "manifest.json").read_text())
    enc = manifest.get("encoder") or {}
    if not enc.get("included"):
        raise ExportError(f"{d} carries no encoder; export with --encoder FILE")
    m = manifest["model"]
    size, s, shape = m["img_resolution"], enc["input_size"], (1, m["num_ws"], m["w_dim"])
    xs = [] if inputs is None else [base64.b64encode(np.ascontiguousarray(x, np.float32)).decode() for x in inputs]
    files = [(name, base64.b64encode(data).decode()) for name, data in photos]
    with served(d) as url, chromium(timeout_s) as browser:
        page = f"{url}index.html?check=1&threads={int(threads)}"
        result = browser.evaluate(page, _encode_harness(xs, files, align))
        version = browser.version

    def arr(b64: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        return np.frombuffer(base64.b64decode(b64), dtype).reshape(shape)

    photos_out = []
    for p in result["photos"]:
        if "error" in p:
            photos_out.append({"error": p["error"]})
            continue
        photos_out.append(
            {
                "x": arr(p["x"], np.float32, (1, 3, s, s)),
                "latent": arr(p["latent"], np.float32, shape),
                "rgba": arr(p["rgba"], np.uint8, (size, size, 4)),
                "img": arr(p["img"], np.float32, (1, 3, size, size)),
                "ms": p["ms"],
                "status": p["status"],
                "points": p.get("points"),
                "quad": p.get("quad"),
            }
        )
    return {
        "browser": version,
        "threads": int(result["info"]["threads"]),
        "isolated": bool(result["info"]["isolated"]),
        "latents": [arr(e["latent"], np.float32, shape) for e in result["encoded"]],
        "ms": [e["ms"] for e in result["encoded"]],
        "photos": photos_out,
        "after": arr(result["after"], np.float32, (1, 3, size, size)),
    }


def compare_pixels(pixels: Sequence[np.ndarray], imgs: Sequence[np.ndarray]) -> dict[str, Any]:
    """The canvas pixels against ``to_uint8`` of float images: equal where the floats agree; a float32 difference far
    below half a level can still move a value across a rounding boundary, so 1 level is the bound."""
    from export.runtime import to_uint8

    want = np.concatenate([to_uint8(i) for i in imgs]).astype(np.int16)
    got = np.stack(list(pixels)).astype(np.int16)
    diff = np.abs(got - want)
    return {
        "max_level_diff": int(diff.max()),
        "equal_fraction": round(float((diff == 0).mean()), 6),
        "passed": bool(diff.max() <= 1),
    }


def versus_runtime(directory: Path, page: dict[str, Any]) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The page's float images of :data:`CHECK_CASES` against the Python runtime's on the same files, within the
    parity rule (both compute in float32: ONNX Runtime's kernels natively and compiled to WASM). Returns the figures
    and the runtime's images."""
    from export.runtime import load_runtime
    from teacher.numerics import max_abs_diff, parity_tolerance

    rt = load_runtime(directory, backend="onnxruntime")
    want = [rt.render([s], truncation_psi=p) for s, p in CHECK_CASES]
    ref = np.concatenate(want)
    diff, tol = max_abs_diff(np.concatenate(page["img"]), ref), parity_tolerance(ref)
    return {
        "reference": "python -m export.runtime on the same files (ONNX Runtime)",
        "max_abs_diff": diff,
        "tolerance": tol,
        "passed": bool(diff <= tol),
    }, want


def check(directory: str | Path, threads: int = 1) -> dict[str, Any]:
    """The page against the Python runtime on the same files (``mobilestylegan-export --check DIR``): float images
    within the parity rule and the canvas pixels within one level of the runtime's uint8 faces."""
    d = Path(directory)
    page = browser_render(d, CHECK_CASES, threads=threads)
    vs, want = versus_runtime(d, page)
    pixels = compare_pixels(page["pixels"], want)
    return {
        "browser": page["browser"],
        "threads": page["threads"],
        "cases": [list(c) for c in CHECK_CASES],
        **vs,
        "pixels": pixels,
        "ms_per_image": [round(t[0][0], 1) for t in page["ms"]],
        "passed": bool(vs["passed"] and pixels["passed"]),
    }
