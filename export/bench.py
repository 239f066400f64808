"""``mobilestylegan-bench``: size, MACs and batch-1 CPU latency of a student (and a teacher baseline)
across runtimes, as one markdown table (``DIR/bench.md``) and one JSON file (``DIR/bench.json``).

    mobilestylegan-bench ffhq-1024 --threads 2 --runs 20 --out bench/
    mobilestylegan-bench student.pt --teacher stylegan2-ffhq.pkl --runtimes eager,openvino-f32
    mobilestylegan-bench ffhq-1024 --compare-published --profile --runs 30 --out bench/

What is measured (stated again in the outputs):

- The student graph is :class:`mobilestylegan.student.lean.LeanSynthesis` (one w input, the constant noise maps baked
  in): PyTorch eager and ``torch.compile`` run it directly, ONNX Runtime and OpenVINO run its export
  (:func:`export.exporter.export`; INT8 = that IR quantised by :func:`export.quantize.quantize_int8`).
- Latency: batch 1, ``--warmup`` untimed runs, then the median and min of ``--runs`` timed runs, each
  runtime in its own process (``python -m export.bench --worker SPEC``) with ``--threads`` threads
  (``torch.set_num_threads``, ORT ``intra_op_num_threads``, OpenVINO ``INFERENCE_NUM_THREADS``), so thread
  pools of different runtimes never compete. PyTorch workers run with
  ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647`` (SPEC §5: with glibc's default threshold
  eager PyTorch spends most of a 1024-px forward paging in fresh feature maps); set ``--allocator
  default`` to measure without it.
- Quality: PSNR of each runtime's output against the fp32 PyTorch student on ``--quality-seeds`` seeded
  w's (images clipped to [-1, 1], peak-to-peak 2; the exporter's gate uses the same definition).
- Params: ``count_params`` of the student's (fused) synthesis network; MACs: ``FlopCounterMode`` / 2 of
  one inference forward (last head only), FLOPs = 2 x MACs; for the teacher also the papers' convention
  (transposed convs on their 2x output grid).
- Baselines: ``--teacher`` (any StyleGAN2 checkpoint: eager, compile and OpenVINO); without it, a
  config-f StyleGAN2 with random weights (timing and MACs only), and for ``ffhq-1024`` the published
  OpenVINO IR from ``random-face`` (same weights).

``--compare-published`` measures the export goals side by side: in one process, alternating runs of the
published IR (f32 and bf16 hints) and our exported synthesis (f32, bf16, INT8 if it passes 40 dB), with
median latency ratios, max |diff| against the published IR and PSNR against fp32 PyTorch.
``--profile`` adds OpenVINO's per-layer counters (``PERF_COUNT``), summed by layer type.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

RUNTIMES = ("eager", "compile", "onnxruntime", "openvino-f32", "openvino-bf16", "openvino-int8")
DEFAULT_RUNTIMES = RUNTIMES
TORCH_RUNTIMES = ("eager", "compile")
OV_HINTS = {"openvino-f32": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}
MMAP_TUNABLE = "glibc.malloc.mmap_threshold=2147483647"
QUALITY_GATE_DB = 40.0
PUBLISHED_INPUT = "style"


class BenchError(Exception):
    """A benchmark that cannot run; the message is one line for the user."""


# ------------------------------------------------------------------------------------------------ helpers

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict[str, Any]:
    import onnxruntime
    import openvino
    import torch

    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__, "platform": platform.platform()}


def latency_stats(times_s: Sequence[float]) -> dict[str, Any]:
    ms = [1e3 * t for t in times_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "runs": len(ms), "all_ms": [round(t, 3) for t in ms]}


def file_bytes(paths: Sequence[Path]) -> int:
    total = 0
    for p in paths:
        p = Path(p)
        total += p.stat().st_size
        if p.suffix == ".xml":
            total += p.with_suffix(".bin").stat().st_size
        if p.suffix == ".onnx":
            data = p.with_name(p.name + ".data")
            total += data.stat().st_size if data.exists() else 0
    return total


def _progress(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kw)


# ------------------------------------------------------------------------------------------------ runners
# A runner maps a w array [1, w_dim] to an image array [1, 3, R, R]; built inside the worker process.

def _ov_runner(path: str, hint: str | None, threads: int, perf_count: bool = False, input_name: str | None = None
               ) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    if perf_count:
        config["PERF_COUNT"] = True
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()

    def run(w: np.ndarray) -> np.ndarray:
        return request.infer({0: w})[0].copy()

    return run, (compiled, request)


def _ort_runner(path: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda w: sess.run(None, {name: w})[0]


def _torch_module(spec: dict[str, Any]):
    """The PyTorch module a torch worker times: the lean student graph or a teacher synthesis."""
    import torch

    if spec["model"] == "student":
        from mobilestylegan.student.lean import LeanSynthesis
        from mobilestylegan.io.load import load_any_student

        G = load_any_student(spec["source"])
        return LeanSynthesis(G.synthesis, w_input="w", noise="const").eval()
    T = _load_teacher(spec["source"])
    syn = T.synthesis

    class _W(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.syn = syn

        def forward(self, w):
            return self.syn(w, noise_mode="const")

    return _W().eval()


def _load_teacher(source: str):
    import torch

    import teacher

    if source == "config-f-random":
        torch.manual_seed(0)
        return teacher.Generator(teacher.GeneratorConfig.stylegan2(1024)).eval().requires_grad_(False)
    return teacher.load_generator(source)


def _torch_runner(spec: dict[str, Any], threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    import torch

    torch.set_num_threads(threads)
    module = _torch_module(spec)
    extra: dict[str, Any] = {}
    if spec["runtime"] == "compile":
        fn = torch.compile(module)
        t0 = time.perf_counter()
        with torch.inference_mode():
            fn(torch.zeros(1, spec["w_dim"]))
        extra["compile_s"] = time.perf_counter() - t0
    else:
        fn = module

    def run(w: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return fn(torch.from_numpy(w)).numpy()

    return run, extra


def _ov_torch_runner(spec: dict[str, Any], threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """OpenVINO on a teacher: converted in the worker from the traced PyTorch synthesis."""
    import warnings

    import openvino as ov
    import torch

    module = _torch_module(spec)
    t0 = time.perf_counter()
    with torch.enable_grad(), warnings.catch_warnings():  # the export-friendly (traceable) formulation
        warnings.simplefilter("ignore")
        w = torch.zeros(1, spec["w_dim"])
        traced = torch.jit.trace(module, (w,), check_trace=False)
        model = ov.convert_model(traced, input=[tuple(w.shape)])
    run, _ = _ov_runner(model, OV_HINTS[spec["runtime"]], threads)
    return run, {"convert_s": time.perf_counter() - t0}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one (model, runtime) in this process; ``spec`` comes from :func:`run_bench`."""
    threads, runtime = spec["threads"], spec["runtime"]
    extra: dict[str, Any] = {}
    t0 = time.perf_counter()
    if runtime in TORCH_RUNTIMES:
        run, extra = _torch_runner(spec, threads)
    elif spec.get("path") is None:
        run, extra = _ov_torch_runner(spec, threads)
    elif runtime == "onnxruntime":
        run = _ort_runner(spec["path"], threads)
    else:
        run, (compiled, _) = _ov_runner(spec["path"], OV_HINTS[runtime], threads)
        extra["inference_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    extra["load_s"] = time.perf_counter() - t0
    ws = np.load(spec["ws"]) if spec.get("ws") else np.zeros((1, 1, spec["w_dim"]), np.float32)
    w0 = np.ascontiguousarray(ws[0])
    out: dict[str, Any] = {}
    if spec.get("images"):  # rendered for the quality check, which the driver makes (this process stays torch-free)
        np.save(spec["images"], np.concatenate([run(np.ascontiguousarray(w)) for w in ws]))
    for _ in range(spec["warmup"]):
        run(w0)
    times = []
    for _ in _progress(range(spec["runs"]), spec.get("progress", False), desc=f"  {spec['label']}", leave=False):
        t = time.perf_counter()
        run(w0)
        times.append(time.perf_counter() - t)
    out.update(latency_stats(times))
    out.update(extra)
    return out


def _finite(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else x


# ------------------------------------------------------------------------------------------------ driver

def _run_worker(spec: dict[str, Any], work: Path, allocator: str) -> dict[str, Any]:
    from teacher.numerics import pooled_psnr_db

    spec_path = work / f"spec_{spec['label'].replace(' ', '_').replace('/', '_')}.json"
    result_path = spec_path.with_suffix(".result.json")
    images_path = spec_path.with_suffix(".images.npy")
    spec = dict(spec, result=str(result_path), images=str(images_path) if spec.get("ref") else None)
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    if spec["runtime"] in TORCH_RUNTIMES and allocator == "mmap-threshold":
        env["GLIBC_TUNABLES"] = MMAP_TUNABLE
    cmd = [sys.executable, "-m", "export.bench", "--worker", str(spec_path)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None if spec.get("progress") else subprocess.PIPE,
                          text=True, cwd=os.getcwd())
    if proc.returncode != 0 or not result_path.exists():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        return {"error": f"worker failed (exit {proc.returncode}): {' | '.join(tail)}"}
    result = json.loads(result_path.read_text())
    if spec["images"]:
        imgs, ref = np.load(images_path), np.load(spec["ref"], mmap_mode="r")
        images_path.unlink()
        result["psnr_db"] = _finite(pooled_psnr_db(imgs, ref))
        result["min_image_psnr_db"] = _finite(min(pooled_psnr_db(imgs[i:i + 1], ref[i:i + 1]) for i in range(len(imgs))))
        result["max_abs_diff"] = float(np.abs(imgs - ref).max())
    result["env"] = {"GLIBC_TUNABLES": env.get("GLIBC_TUNABLES", "(unset)")}
    return result


def _student_artifacts(source: str, runtimes: Sequence[str], work: Path, progress: bool) -> dict[str, Any]:
    """Export the student once per format/precision the runtimes need (via :func:`export.exporter.export`)."""
    from export.exporter import ExportError, export
    from export.manifest import graph_path

    need = {"onnxruntime": ("onnx", "fp32"), "openvino-f32": ("openvino", "fp32"),
            "openvino-bf16": ("openvino", "fp32"), "openvino-int8": ("openvino", "int8")}
    out: dict[str, Any] = {}
    done: dict[tuple[str, str], Any] = {}
    for rt in runtimes:
        if rt not in need:
            continue
        key = need[rt]
        if key not in done:
            d = work / f"export_{key[0]}_{key[1]}"
            try:
                manifest = export(source, key[0], d, precision=key[1], progress=progress, force=True)
                path = graph_path(d, manifest, "synthesis")
                done[key] = {"path": str(path), "bytes": file_bytes([path]), "quality": manifest.get("quality")}
            except ExportError as err:  # reported in the table row; anything else is a bug and propagates
                done[key] = {"error": str(err)}
        out[rt] = done[key]
    return out


def _student_reference(G, seeds: Sequence[int], work: Path) -> tuple[Path, Path]:
    import torch

    from mobilestylegan.student.sampling import seeded_z

    with torch.no_grad():
        w = G.mapping(seeded_z(seeds, G.z_dim))
        w = w[:, 0] if w.ndim == 3 else w
        imgs = np.concatenate([G.synthesis(w[i:i + 1], noise_mode="const").numpy() for i in range(len(seeds))])
    ws_path, ref_path = work / "quality_ws.npy", work / "quality_ref.npy"
    np.save(ws_path, w.numpy()[:, None].astype(np.float32))  # [N, 1, w_dim]: one batch-1 input each
    np.save(ref_path, imgs.astype(np.float32))
    return ws_path, ref_path


def student_sizes(G) -> dict[str, Any]:
    import torch

    from mobilestylegan.student.complexity import count_macs, count_params

    syn = G.synthesis
    w = torch.zeros(1, G.w_dim)
    with torch.no_grad():
        macs = count_macs(lambda: syn(w, noise_mode="const"))
    return {"params": count_params(syn), "mapping_params": count_params(G.mapping),
            "macs": macs["macs"], "flops": 2 * macs["macs"],
            "fp32_bytes": 4 * (count_params(syn) + sum(b.numel() for b in syn.buffers()))}


def teacher_sizes(T) -> dict[str, Any]:
    import torch

    from mobilestylegan.student.complexity import count_macs, count_params

    w = torch.zeros(1, T.w_dim)
    with torch.no_grad():
        macs = count_macs(lambda: T.synthesis(w, noise_mode="const"))
    return {"params": count_params(T.synthesis), "mapping_params": count_params(T.mapping), "w_dim": T.w_dim,
            "macs": macs["macs"], "flops": 2 * macs["macs"], "macs_paper": macs["macs_paper"],
            "fp32_bytes": 4 * count_params(T.synthesis)}


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Build the artefacts, run every (model, runtime) worker, write ``bench.json`` and ``bench.md``."""
    from mobilestylegan.io.load import load_any_student

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "artifacts"
    work.mkdir(exist_ok=True)
    progress = not args.no_progress
    seeds = list(range(args.quality_seeds))

    G = load_any_student(args.source)
    sizes = student_sizes(G)
    ws_path, ref_path = _student_reference(G, seeds, work) if seeds else (None, None)
    if not seeds:
        ws_path = work / "quality_ws.npy"
        np.save(ws_path, np.zeros((1, 1, G.w_dim), np.float32))
    rows: list[dict[str, Any]] = []
    artifacts = _student_artifacts(args.source, args.runtimes, work, progress)
    tasks: list[dict[str, Any]] = []
    base = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "progress": progress}
    for rt in args.runtimes:
        row = {"model": "student", "runtime": rt, "params": sizes["params"], "macs": sizes["macs"],
               "flops": sizes["flops"], "graph": "mobilestylegan.student.lean.LeanSynthesis (w input, const noise)"}
        art = artifacts.get(rt, {})
        if "error" in art:
            rows.append(dict(row, error=art["error"]))
            continue
        row["bytes"] = art.get("bytes", sizes["fp32_bytes"])
        row["bytes_note"] = "exported synthesis file(s)" if art else "fp32 weights + buffers in memory"
        spec = dict(base, model="student", runtime=rt, source=args.source, path=art.get("path"), w_dim=G.w_dim,
                    ws=str(ws_path), ref=str(ref_path) if ref_path else None, label=f"student {rt}")
        tasks.append(spec)
        rows.append(row)

    published = _published_files() if _want_published(args) else None
    if published is not None:
        for rt in ("openvino-f32", "openvino-bf16"):
            spec = dict(base, model="published", runtime=rt, path=str(published), ws=str(ws_path), w_dim=G.w_dim,
                        ref=str(ref_path) if (ref_path and args.source == "ffhq-1024") else None,
                        label=f"published {rt}")
            tasks.append(spec)
            rows.append({"model": "published", "runtime": rt, "params": None, "macs": sizes["macs"],
                         "flops": sizes["flops"], "bytes": file_bytes([published]),
                         "graph": "random-face SynthesisNetwork.xml (published IR, same weights as ffhq-1024)"})

    teacher_rt = [rt for rt in args.teacher_runtimes if rt in ("eager", "compile", "openvino-f32", "openvino-bf16")]
    if teacher_rt and not args.no_teacher:
        tsource = args.teacher or "config-f-random"
        T = _load_teacher(tsource)
        tsizes = teacher_sizes(T)
        del T
        label = "teacher" if args.teacher else "teacher (config-f, random weights, timing only)"
        for rt in teacher_rt:
            spec = dict(base, model="teacher", runtime=rt, source=tsource, path=None, ws=None, ref=None,
                        w_dim=tsizes["w_dim"],
                        label=f"teacher {rt}", runs=min(args.runs, args.teacher_runs), warmup=min(args.warmup, 1))
            tasks.append(spec)
            rows.append({"model": label, "runtime": rt, "params": tsizes["params"], "macs": tsizes["macs"],
                         "flops": tsizes["flops"], "macs_paper": tsizes["macs_paper"], "bytes": tsizes["fp32_bytes"],
                         "bytes_note": "fp32 weights in memory", "graph": f"StyleGAN2 synthesis ({tsource})"})

    task_rows = [r for r in rows if "error" not in r]
    for spec, row in zip(_progress(tasks, progress, desc="runtimes"), task_rows):
        row.update(_run_worker(spec, work, args.allocator))
        row["allocator"] = row.get("env", {}).get("GLIBC_TUNABLES", "(unset)")
    report = {
        "command": shlex.join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": machine_info(args.threads),
        "conventions": {
            "latency": f"batch 1, {args.warmup} warm-up then median/min of {args.runs} runs (teacher: "
                       f"{min(args.runs, args.teacher_runs)}), one process per runtime, {args.threads} threads",
            "allocator": f"PyTorch workers: GLIBC_TUNABLES={MMAP_TUNABLE}" if args.allocator == "mmap-threshold"
                         else "glibc defaults everywhere",
            "params": "count_params of the (fused) synthesis network; mapping separately",
            "macs": "FlopCounterMode / 2, one inference forward (last head only); flops = 2 x macs; "
                    "macs_paper (teacher): transposed convs on their 2x output grid",
            "quality": f"PSNR vs fp32 PyTorch student on seeds 0..{len(seeds) - 1}, clipped to [-1, 1], "
                       "peak-to-peak 2",
            "bytes": "exported synthesis file(s) (xml+bin, onnx), else fp32 weights in memory",
        },
        "student": dict(sizes, source=args.source),
        "rows": rows,
    }
    if args.compare_published:
        report["compare_published"] = compare_published(args, artifacts, ws_path, ref_path)
    (out / "bench.json").write_text(json.dumps(report, indent=1, default=_json_default))
    (out / "bench.md").write_text(markdown(report))
    return report


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)


def _want_published(args: argparse.Namespace) -> bool:
    return args.published == "yes" or (args.published == "auto" and args.source == "ffhq-1024")


def _published_files() -> Path | None:
    from teacher.formats import openvino_ir
    from teacher.formats.common import CheckpointError

    try:
        return openvino_ir.random_face_files()["synthesis_xml"]
    except CheckpointError:
        return None


# ------------------------------------------------------------------------------------------------ side by side

def compare_published(args: argparse.Namespace, artifacts: dict[str, Any], ws_path: Path, ref_path: Path | None
                      ) -> dict[str, Any]:
    """Alternating runs, in this process, of the published IR and our exported synthesis (OpenVINO only)."""
    from teacher.numerics import pooled_psnr_db

    published = _published_files()
    if published is None:
        raise BenchError("--compare-published needs the random-face package: pip install --no-deps random-face==2021.7.21.1")
    variants: dict[str, tuple[str, str]] = {"published f32": (str(published), "f32"),
                                            "published bf16": (str(published), "bf16")}
    f32 = artifacts.get("openvino-f32") or artifacts.get("openvino-bf16")
    if not f32 or "path" not in f32:
        raise BenchError("--compare-published needs our OpenVINO export: include openvino-f32 in --runtimes")
    variants["ours f32"] = (f32["path"], "f32")
    variants["ours bf16"] = (f32["path"], "bf16")
    int8 = artifacts.get("openvino-int8", {})
    if "path" in int8:
        variants["ours int8"] = (int8["path"], "f32")
    runners = {k: _ov_runner(p, h, args.threads, perf_count=args.profile)[0:2] for k, (p, h) in variants.items()}
    ws = np.load(ws_path)
    ref = np.load(ref_path) if ref_path is not None and args.source == "ffhq-1024" else None
    outs = {k: np.concatenate([r(np.ascontiguousarray(w)) for w in ws]) for k, (r, _) in runners.items()}
    for k, (run, _) in runners.items():
        for _ in range(args.warmup):
            run(np.ascontiguousarray(ws[0]))
    times: dict[str, list[float]] = {k: [] for k in runners}
    w0 = np.ascontiguousarray(ws[0])
    for _ in _progress(range(args.runs), not args.no_progress, desc="side by side"):
        for k, (run, _) in runners.items():
            t = time.perf_counter()
            run(w0)
            times[k].append(time.perf_counter() - t)
    result: dict[str, Any] = {"threads": args.threads, "runs": args.runs, "variants": {}}
    base = statistics.median(times["published f32"])
    for k in runners:
        entry = latency_stats(times[k])
        entry["ratio_to_published_f32"] = statistics.median(times[k]) / base
        entry["max_abs_diff_vs_published_f32"] = float(np.abs(outs[k] - outs["published f32"]).max())
        if ref is not None:
            entry["psnr_db"] = _finite(pooled_psnr_db(outs[k], ref))
            entry["passes_40db"] = entry["psnr_db"] is None or entry["psnr_db"] >= QUALITY_GATE_DB
        if args.profile:
            entry["profile"] = profile_summary(runners[k][1][1])
        result["variants"][k] = entry
    ok = [k for k in result["variants"] if k.startswith("ours") and result["variants"][k].get("passes_40db", True)]
    if ok:
        best = min(ok, key=lambda k: result["variants"][k]["median_ms"])
        result["fastest_ours_passing_40db"] = {"variant": best,
                                               "ratio_to_published_f32": result["variants"][best]["ratio_to_published_f32"]}
    return result


def profile_summary(request, top: int = 10) -> list[dict[str, Any]]:
    """OpenVINO per-layer counters of the request's last inference, summed by (layer type, exec type)."""
    agg: dict[tuple[str, str], list[float]] = {}
    for info in request.profiling_info:
        key = (info.node_type, info.exec_type)
        t = agg.setdefault(key, [0.0, 0])
        t[0] += info.real_time.total_seconds() * 1e3
        t[1] += 1
    total = sum(v[0] for v in agg.values()) or 1.0
    rows = sorted(agg.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"layer_type": k[0], "exec_type": k[1], "ms": round(v[0], 3), "count": v[1], "share": round(v[0] / total, 3)}
            for k, v in rows]


# ------------------------------------------------------------------------------------------------ report

def _fmt(x: Any, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def markdown(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["conventions"]
    lines = ["# mobilestylegan-bench", "",
             f"`{report['command']}`", "",
             f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['threads']} threads; torch {m['torch']}, "
             f"onnxruntime {m['onnxruntime']}, openvino {m['openvino']}.",
             f"Latency: {c['latency']}. Allocator: {c['allocator']}.",
             f"MACs: {c['macs']}. Quality: {c['quality']}.", "",
             "| model | runtime | params | GMAC | GFLOP | size MB | median ms | min ms | PSNR dB | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        note = r.get("error", "")
        if not note:
            extra = []
            if "compile_s" in r:
                extra.append(f"compile {r['compile_s']:.0f} s")
            if r.get("inference_precision"):
                extra.append(f"precision {r['inference_precision']}")
            if r.get("macs_paper"):
                extra.append(f"{r['macs_paper'] / 1e9:.1f} GMAC paper convention")
            if r["runtime"] in TORCH_RUNTIMES:
                extra.append(f"GLIBC_TUNABLES={r.get('allocator', '?')}")
            note = "; ".join(extra)
        params = "—" if r.get("params") is None else f"{r['params']:,}"
        lines.append(f"| {r['model']} | {r['runtime']} | {params} | {_fmt(r.get('macs') and r['macs'] / 1e9, '.2f')} "
                     f"| {_fmt(r.get('flops') and r['flops'] / 1e9, '.2f')} | {_fmt(r.get('bytes') and r['bytes'] / 1e6, '.1f')} "
                     f"| {_fmt(r.get('median_ms'))} | {_fmt(r.get('min_ms'))} | {_fmt(r.get('psnr_db'))} | {note} |")
    cp = report.get("compare_published")
    if cp:
        lines += ["", f"## Side by side with the published IR (one process, alternating, {cp['runs']} rounds, "
                      f"{cp['threads']} threads)", "",
                  "| variant | median ms | min ms | ratio to published f32 | max abs diff vs published f32 | PSNR dB |",
                  "|---|---|---|---|---|---|"]
        for k, v in cp["variants"].items():
            lines.append(f"| {k} | {v['median_ms']:.1f} | {v['min_ms']:.1f} | {v['ratio_to_published_f32']:.3f} "
                         f"| {v['max_abs_diff_vs_published_f32']:.2e} | {_fmt(v.get('psnr_db'))} |")
        best = cp.get("fastest_ours_passing_40db")
        if best:
            lines += ["", f"Fastest of ours with PSNR >= 40 dB: {best['variant']}, "
                          f"{best['ratio_to_published_f32']:.3f}x the published IR's f32 latency."]
        for k, v in cp["variants"].items():
            if "profile" in v:
                lines += ["", f"OpenVINO per-layer counters, {k} (last run, top layer types):", "",
                          "| layer type | exec type | ms | count | share |", "|---|---|---|---|---|"]
                lines += [f"| {p['layer_type']} | {p['exec_type']} | {p['ms']:.2f} | {p['count']} | {p['share']:.0%} |"
                          for p in v["profile"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ CLI

def _runtimes(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in RUNTIMES]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown runtime(s) {bad}; choose from {', '.join(RUNTIMES)}")
    return items


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mobilestylegan-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="student: pretrained name (ffhq-1024), native checkpoint or Lightning .ckpt")
    p.add_argument("--teacher", help="StyleGAN2 checkpoint for the baseline rows (default: config-f, random weights, "
                                     "timing only)")
    p.add_argument("--no-teacher", action="store_true", help="skip the teacher rows")
    p.add_argument("--teacher-runtimes", type=_runtimes, default=["eager"],
                   help="runtimes for the teacher (eager, compile, openvino-f32, openvino-bf16; default eager)")
    p.add_argument("--teacher-runs", type=_positive, default=3, help="timed runs for the teacher (default 3)")
    p.add_argument("--runtimes", type=_runtimes, default=list(DEFAULT_RUNTIMES),
                   help=f"comma-separated, from {','.join(RUNTIMES)} (default all)")
    p.add_argument("--threads", type=_positive, default=2)
    p.add_argument("--runs", type=_positive, default=20, help="timed runs per runtime (default 20)")
    p.add_argument("--warmup", type=_non_negative, default=3, help="untimed runs first (default 3)")
    p.add_argument("--quality-seeds", type=_non_negative, default=16, help="seeds for PSNR (0: skip)")
    p.add_argument("--published", choices=("auto", "yes", "no"), default="auto",
                   help="rows for random-face's published IR (auto: when SOURCE is ffhq-1024)")
    p.add_argument("--compare-published", action="store_true",
                   help="side-by-side goal measurement against the published IR (one process, alternating runs)")
    p.add_argument("--profile", action="store_true", help="with --compare-published: OpenVINO per-layer counters")
    p.add_argument("--allocator", choices=("mmap-threshold", "default"), default="mmap-threshold",
                   help=f"PyTorch workers' glibc setting (mmap-threshold: GLIBC_TUNABLES={MMAP_TUNABLE})")
    p.add_argument("--out", default="bench", help="output directory for bench.md, bench.json, artifacts/")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        spec = json.loads(Path(argv[1]).read_text())
        result = worker(spec)
        Path(spec["result"]).write_text(json.dumps(result))
        return 0
    args = build_parser().parse_args(argv)
    if args.profile and not args.compare_published:
        build_parser().error("--profile goes with --compare-published")
    try:
        run_bench(args)
    except BenchError as err:
        print(f"mobilestylegan-bench: error: {err}", file=sys.stderr)
        return 2
    print((Path(args.out) / "bench.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
