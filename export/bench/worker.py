"""The worker: one (model, runtime) timed in its own process (``python -m export.bench SPEC.json``).

It stays free of torch for the ONNX Runtime and OpenVINO runtimes; the images it renders for the quality check
go back to the driver in a file, and the driver computes the PSNR.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from export.bench.common import TORCH_RUNTIMES, latency_stats, progress_bar
from export.bench.runners import ov_torch_runner, torch_runner


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one (model, runtime) in this process; ``spec`` comes from :func:`export.bench.driver.run_bench`."""
    threads, runtime = spec["threads"], spec["runtime"]
    if spec.get("backend") == "browser":
        return browser_worker(spec)
    extra: dict[str, Any] = {}
    t0 = time.perf_counter()
    if runtime in TORCH_RUNTIMES:
        run, extra = torch_runner(spec, threads)
    elif spec.get("path") is None:
        run, extra = ov_torch_runner(spec, threads)
    else:
        from export.runtime import open_graph  # the export's own engine, as the runtime runs it

        graph = open_graph(spec["path"], spec["backend"], threads, precision=spec.get("hint"))
        run = lambda w: graph.run([w])  # noqa: E731
        if precision := graph.inference_precision():
            extra["inference_precision"] = precision
    extra["load_s"] = time.perf_counter() - t0
    ws = np.load(spec["ws"]) if spec.get("ws") else np.zeros((1, 1, spec["w_dim"]), np.float32)
    w0 = np.ascontiguousarray(ws[0])
    out: dict[str, Any] = {}
    if spec.get("images"):  # rendered for the quality check, which the driver makes (this process stays torch-free)
        np.save(spec["images"], np.concatenate([run(np.ascontiguousarray(w)) for w in ws]))
    for _ in range(spec["warmup"]):
        run(w0)
    times = []
    for _ in progress_bar(range(spec["runs"]), spec.get("progress", False), desc=f"  {spec['label']}", leave=False):
        t = time.perf_counter()
        run(w0)
        times.append(time.perf_counter() - t)
    out.update(latency_stats(times))
    out.update(extra)
    return out


def browser_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The web export's page in headless Chromium: seeds 0..N-1 rendered for the quality check (psi 1: the same w as
    the reference), then seed 0 ``warmup + runs`` times; the synthesis time is the page's own measurement."""
    from export.web.site import browser_render

    site, threads = Path(spec["path"]).parent, spec["row_threads"]
    t0 = time.perf_counter()
    if spec.get("images"):
        page = browser_render(site, [(s, 1.0) for s in spec["seeds"]], threads=threads)
        np.save(spec["images"], np.concatenate(page["img"]))
    page = browser_render(site, [(0, 1.0)], threads=threads, repeats=spec["warmup"] + spec["runs"], images=False)
    times = [t[2] / 1e3 for t in page["ms"][0][spec["warmup"] :]]
    out = latency_stats(times)
    out.update(
        browser=page["browser"],
        wasm_threads=page["threads"],
        cross_origin_isolated=page["isolated"],
        mapping_median_ms=sorted(t[1] for t in page["ms"][0][spec["warmup"] :])[len(times) // 2],
        load_and_render_s=time.perf_counter() - t0,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m export.bench SPEC.json``: run :func:`worker` on the spec, write its result where the spec says."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[-1]).read_text())
    Path(spec["result"]).write_text(json.dumps(worker(spec)))
    return 0
