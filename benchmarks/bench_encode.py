"""How fast a photo becomes a latent: the exported encoder in the torch-free runtime, and the web page end to end.

    .venv/bin/python benchmarks/bench_encode.py --generator ffhq-1024 --encoder ENC.safetensors \\
        --photos tests/fixtures/photos/astronaut.png tests/fixtures/photos/grace_hopper.jpg \\
        --threads 2 --out bench_encode/

Exports the generator with the encoder twice into ``--out`` (OpenVINO fp32, and the web page: ONNX, fp16 weights;
both through every gate), unless they are there from an earlier run with the same encoder. Then, with ``--threads``:

- the runtime (``python -m export.runtime``'s code): the encoder graph alone on one face (OpenVINO f32, and ONNX
  Runtime on the web export's file), finding and aligning the face (``--align``: the export's face models in ONNX
  Runtime), and the synthesis graph, median of ``--repeats`` runs after one warm-up;
- the page in headless Chromium with ``--threads`` WASM threads (served cross-origin isolated on 127.0.0.1): each
  photo dropped twice, the first run loading the encoder and face models (cold), the second as a user's next photo
  (warm); the milliseconds of each stage as the page shows them, photo to face in all.

Prints the figures with the command, machine and threads, and writes ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from export.bench.common import cpu_name


def _median_ms(fn: object, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def _exported(out: Path, fmt: str, generator: str, encoder: str, **kw: object) -> Path:
    from export.exporter import export
    from export.manifest import read_manifest
    from teacher.fs import sha256_file

    d = out / fmt
    digest = sha256_file(encoder)
    if (d / "manifest.json").is_file() and read_manifest(d)["encoder"].get("source", {}).get("sha256") == digest:
        return d
    t0 = time.perf_counter()
    export(generator, fmt, d, encoder=encoder, force=True, progress=False, **kw)
    print(f"exported {fmt} in {time.perf_counter() - t0:.0f} s", flush=True)
    return d


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", default="ffhq-1024")
    p.add_argument("--encoder", required=True, help="an encoder file trained for the generator")
    p.add_argument("--photos", nargs="+", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default="bench_encode")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from export import runtime_faces
    from export.runtime import load_runtime, read_photo
    from export.web.site import browser_encode

    ov_dir = _exported(out, "openvino", args.generator, args.encoder, w_input="wplus")
    web_dir = _exported(out, "web", args.generator, args.encoder)
    results: dict[str, object] = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "threads": args.threads,
    }
    runtime: dict[str, dict[str, float]] = {}
    photos = [read_photo(ph) for ph in args.photos]
    for label, d, backend in (("openvino f32", ov_dir, "openvino"), ("onnxruntime", web_dir, "onnxruntime")):
        rt = load_runtime(d, threads=args.threads, backend=backend)
        models = rt.face_models(threads=args.threads)
        aligned = runtime_faces.align(models, photos[0], size=rt.img_resolution).image
        x = rt.encoder_input(aligned)
        ws = rt.encode(x)
        row = {
            "encoder_ms": _median_ms(lambda rt=rt, x=x: rt.encode(x), args.repeats),
            "find_and_align_ms": _median_ms(
                lambda m=models, r=rt.img_resolution: runtime_faces.align(m, photos[0], size=r),
                max(1, args.repeats // 3),
            ),
            "preprocess_ms": _median_ms(lambda rt=rt, a=aligned: rt.encoder_input(a), args.repeats),
            "synthesis_ms": _median_ms(lambda rt=rt, ws=ws: rt.synthesis(ws), max(1, args.repeats // 3)),
        }
        runtime[label] = row
        del rt
    results["runtime"] = runtime
    twice = [(Path(ph).name, Path(ph).read_bytes()) for ph in args.photos for _ in range(2)]
    page = browser_encode(web_dir, None, twice, align=True, threads=args.threads)
    results["page"] = {
        "browser": page["browser"],
        "threads": page["threads"],
        "isolated": page["isolated"],
        "runs": [
            {"photo": name, "run": "cold" if k % 2 == 0 else "warm", **(r.get("ms") or {"error": r.get("error")})}
            for k, ((name, _), r) in enumerate(zip(twice, page["photos"]))
        ],
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"command: {results['command']}\nmachine: {results['machine']}; threads {args.threads}")
    print("\nruntime (median ms)        encoder  preprocess  find+align  synthesis")
    for label, r in runtime.items():
        print(
            f"  {label:24s} {r['encoder_ms']:7.1f} {r['preprocess_ms']:11.1f} {r['find_and_align_ms']:11.1f}"
            f" {r['synthesis_ms']:10.1f}"
        )
    print(f"\npage ({page['browser']}, {page['threads']} WASM threads, isolated {page['isolated']}; ms)")
    print("  photo                run   read   find  align  encoder  synthesis  photo to face")
    for r in results["page"]["runs"]:
        if "error" in r:
            print(f"  {r['photo']:20s} {r['run']:4s} error: {r['error']}")
            continue
        print(
            f"  {r['photo']:20s} {r['run']:4s} {r['read']:6.0f} {r['find']:6.0f} {r['align']:6.0f} {r['encoder']:8.0f}"
            f" {r['synthesis']:10.0f} {r['total']:14.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
