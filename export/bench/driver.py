"""The driver: exports the student once per format, renders the quality references, runs every worker process
and writes ``bench.json`` and ``bench.md``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.bench.common import TEACHER_RUNTIMES, TORCH_RUNTIMES, export_rows, machine_info, progress_bar
from export.bench.published import compare_published, published_files, want_published
from export.bench.report import markdown
from export.bench.runners import load_teacher
from export.manifest import graph_bytes, json_number
from mobilestylegan.allocator import MMAP_TUNABLE, with_mmap_tunable
from teacher.fs import atomic_write

if TYPE_CHECKING:
    import torch

    from mobilestylegan.student.generator import StudentGenerator


def _run_worker(spec: dict[str, Any], work: Path, allocator: str) -> dict[str, Any]:
    from teacher.numerics import pooled_psnr_db

    spec_path = work / f"spec_{spec['label'].replace(' ', '_').replace('/', '_')}.json"
    result_path = spec_path.with_suffix(".result.json")
    images_path = spec_path.with_suffix(".images.npy")
    spec = dict(spec, result=str(result_path), images=str(images_path) if spec.get("ref") else None)
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    if spec["runtime"] in TORCH_RUNTIMES and allocator == "mmap-threshold":
        env = with_mmap_tunable(env)
    cmd = [sys.executable, "-m", "export.bench", str(spec_path)]
    proc = subprocess.run(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=None if spec.get("progress") else subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    if proc.returncode != 0 or not result_path.exists():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        return {"error": f"worker failed (exit {proc.returncode}): {' | '.join(tail)}"}
    result = json.loads(result_path.read_text())
    if spec["images"]:
        imgs, ref = np.load(images_path), np.load(spec["ref"], mmap_mode="r")
        images_path.unlink()
        result["psnr_db"] = json_number(pooled_psnr_db(imgs, ref))
        result["min_image_psnr_db"] = json_number(
            min(pooled_psnr_db(imgs[i : i + 1], ref[i : i + 1]) for i in range(len(imgs)))
        )
        result["max_abs_diff"] = float(np.abs(imgs - ref).max())
    result["env"] = {"GLIBC_TUNABLES": env.get("GLIBC_TUNABLES", "(unset)")}
    return result


def _student_artifacts(source: str, runtimes: Sequence[str], work: Path, progress: bool) -> dict[str, Any]:
    """Export the student once per format/precision the rows need (via :func:`export.exporter.export`)."""
    from export.errors import ExportError
    from export.exporter import export
    from export.manifest import graph_path
    from export.targets import get_target

    rows = export_rows()
    out: dict[str, Any] = {}
    done: dict[tuple[str, str], Any] = {}
    for rt in runtimes:
        if rt not in rows:
            continue
        fmt, row = rows[rt]
        key = (fmt, row.precision)
        unavailable = get_target(fmt).bench_unavailable()
        if unavailable:
            out[rt] = {"error": unavailable}
            continue
        if key not in done:
            d = work / f"export_{fmt}_{row.precision}"
            try:
                # the generator's graphs only: the rows time the synthesis (the encoder has its own benchmark)
                manifest = export(source, fmt, d, precision=row.precision, progress=progress, force=True, encoder=False)
                path = graph_path(d, manifest, "synthesis")
                done[key] = {"path": str(path), "bytes": graph_bytes([path]), "quality": manifest.get("quality")}
            except ExportError as err:  # reported in the table row; anything else is a bug and propagates
                done[key] = {"error": str(err)}
        out[rt] = done[key]
    return out


def _student_reference(G: StudentGenerator, seeds: Sequence[int], work: Path) -> tuple[Path, Path]:
    import torch

    from mobilestylegan.student.sampling import seeded_z

    with torch.no_grad():
        w = G.mapping(seeded_z(seeds, G.z_dim))
        w = w[:, 0] if w.ndim == 3 else w
        imgs = np.concatenate(
            [G.synthesis(w[i : i + 1], noise_mode="const", inference=True).numpy() for i in range(len(seeds))]
        )
    ws_path, ref_path = work / "quality_ws.npy", work / "quality_ref.npy"
    np.save(ws_path, w.numpy()[:, None].astype(np.float32))  # [N, 1, w_dim]: one batch-1 input each
    np.save(ref_path, imgs.astype(np.float32))
    return ws_path, ref_path


def student_sizes(G: StudentGenerator) -> dict[str, Any]:
    """Parameters, MACs and fp32 bytes of the student's synthesis network (and its mapping's parameters)."""
    import torch

    from mobilestylegan.student.complexity import count_macs, count_params

    syn = G.synthesis
    w = torch.zeros(1, G.w_dim)
    with torch.no_grad():
        macs = count_macs(lambda: syn(w, noise_mode="const", inference=True))
    return {
        "params": count_params(syn),
        "mapping_params": count_params(G.mapping),
        "macs": macs["macs"],
        "flops": 2 * macs["macs"],
        "fp32_bytes": 4 * (count_params(syn) + sum(b.numel() for b in syn.buffers())),
    }


def teacher_sizes(T: torch.nn.Module) -> dict[str, Any]:
    """Parameters and MACs (both conventions) of a teacher's synthesis network."""
    import torch

    from mobilestylegan.student.complexity import count_macs, count_params

    w = torch.zeros(1, T.w_dim)
    with torch.no_grad():
        macs = count_macs(lambda: T.synthesis(w, noise_mode="const"))
    return {
        "params": count_params(T.synthesis),
        "mapping_params": count_params(T.mapping),
        "w_dim": T.w_dim,
        "macs": macs["macs"],
        "flops": 2 * macs["macs"],
        "macs_paper": macs["macs_paper"],
        "fp32_bytes": 4 * count_params(T.synthesis),
    }


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
    artifacts = _student_artifacts(args.source, args.runtimes, work, progress)
    base = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "progress": progress}
    rows, tasks = _student_rows(args, G, sizes, artifacts, base, ws_path, ref_path)
    for part in (_published_rows(args, sizes, base, ws_path, ref_path, G.w_dim), _teacher_rows(args, base)):
        rows += part[0]
        tasks += part[1]

    task_rows = [r for r in rows if "error" not in r]
    for spec, row in zip(progress_bar(tasks, progress, desc="runtimes"), task_rows):
        row.update(_run_worker(spec, work, args.allocator))
        row["allocator"] = row.get("env", {}).get("GLIBC_TUNABLES", "(unset)")
    report = {
        "command": shlex.join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": machine_info(args.threads),
        "conventions": _conventions(args, len(seeds)),
        "student": dict(sizes, source=args.source),
        "rows": rows,
    }
    if args.compare_published:
        report["compare_published"] = compare_published(args, artifacts, ws_path, ref_path)
    text = json.dumps(report, indent=1, default=_json_default)
    atomic_write(out / "bench.json", lambda tmp: Path(tmp).write_text(text))
    atomic_write(out / "bench.md", lambda tmp: Path(tmp).write_text(markdown(report)))
    return report


Rows = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # table rows, worker specs (one per row that runs)


def _student_rows(
    args: argparse.Namespace,
    G: Any,
    sizes: dict[str, Any],
    artifacts: dict[str, Any],
    base: dict[str, Any],
    ws_path: Path,
    ref_path: Path | None,
) -> Rows:
    rows, tasks = [], []
    exports = export_rows()
    for rt in args.runtimes:
        row = {
            "model": "student",
            "runtime": rt,
            "params": sizes["params"],
            "macs": sizes["macs"],
            "flops": sizes["flops"],
            "graph": "mobilestylegan.student.lean.LeanSynthesis (w input, const noise)",
        }
        art = artifacts.get(rt, {})
        if "error" in art:
            rows.append(dict(row, error=art["error"]))
            continue
        row["bytes"] = art.get("bytes", sizes["fp32_bytes"])
        row["bytes_note"] = "exported synthesis file(s)" if art else "fp32 weights in memory"
        spec = exports[rt][1] if rt in exports else None
        if spec is not None and spec.backend is None:  # exported and sized here; its runtime is elsewhere
            rows.append(dict(row, error=spec.note))
            continue
        if spec is not None and spec.graph:
            row["graph"] = spec.graph
        tasks.append(
            dict(
                base,
                model="student",
                runtime=rt,
                source=args.source,
                path=art.get("path"),
                w_dim=G.w_dim,
                ws=str(ws_path),
                ref=str(ref_path) if ref_path else None,
                label=f"student {rt}",
                seeds=list(range(args.quality_seeds)),
                **_backend(rt),
            )
        )
        rows.append(row)
    return rows, tasks


def _backend(runtime: str) -> dict[str, Any]:
    """What the worker needs to know of a row: the backend that runs it, OpenVINO's hint, fixed thread counts (all
    None for the PyTorch rows)."""
    spec = export_rows().get(runtime, (None, None))[1]
    if spec is None:
        return {"backend": None, "hint": None, "row_threads": None}
    return {"backend": spec.backend, "hint": spec.hint, "row_threads": spec.threads}


def _published_rows(
    args: argparse.Namespace,
    sizes: dict[str, Any],
    base: dict[str, Any],
    ws_path: Path,
    ref_path: Path | None,
    w_dim: int,
) -> Rows:
    published = published_files() if want_published(args) else None
    rows, tasks = [], []
    if published is None:
        return rows, tasks
    for rt in ("openvino-f32", "openvino-bf16"):
        tasks.append(
            dict(
                base,
                model="published",
                runtime=rt,
                path=str(published),
                ws=str(ws_path),
                w_dim=w_dim,
                ref=str(ref_path) if (ref_path and args.source == "ffhq-1024") else None,
                label=f"published {rt}",
                **_backend(rt),
            )
        )
        rows.append(
            {
                "model": "published",
                "runtime": rt,
                "params": None,
                "macs": sizes["macs"],
                "flops": sizes["flops"],
                "bytes": graph_bytes([published]),
                "graph": "random-face SynthesisNetwork.xml (published IR, same weights as ffhq-1024)",
            }
        )
    return rows, tasks


def _teacher_rows(args: argparse.Namespace, base: dict[str, Any]) -> Rows:
    teacher_rt = [rt for rt in args.teacher_runtimes if rt in TEACHER_RUNTIMES]
    rows, tasks = [], []
    if not teacher_rt or args.no_teacher:
        return rows, tasks
    tsource = args.teacher or "config-f-random"
    T = load_teacher(tsource)
    tsizes = teacher_sizes(T)
    del T
    label = "teacher" if args.teacher else "teacher (config-f, random weights, timing only)"
    for rt in teacher_rt:
        tasks.append(
            dict(
                base,
                model="teacher",
                runtime=rt,
                source=tsource,
                path=None,
                ws=None,
                ref=None,
                w_dim=tsizes["w_dim"],
                label=f"teacher {rt}",
                runs=min(args.runs, args.teacher_runs),
                warmup=min(args.warmup, 1),
                **_backend(rt),
            )
        )
        rows.append(
            {
                "model": label,
                "runtime": rt,
                "params": tsizes["params"],
                "macs": tsizes["macs"],
                "flops": tsizes["flops"],
                "macs_paper": tsizes["macs_paper"],
                "bytes": tsizes["fp32_bytes"],
                "bytes_note": "fp32 weights in memory",
                "graph": f"StyleGAN2 synthesis ({tsource})",
            }
        )
    return rows, tasks


def _conventions(args: argparse.Namespace, n_seeds: int) -> dict[str, str]:
    return {
        "latency": f"batch 1, {args.warmup} warm-up then median/min of {args.runs} runs (teacher: "
        f"{min(args.runs, args.teacher_runs)}), one process per runtime, {args.threads} threads",
        "allocator": f"PyTorch workers: GLIBC_TUNABLES={MMAP_TUNABLE}"
        if args.allocator == "mmap-threshold"
        else "glibc defaults everywhere",
        "params": "count_params of the (fused) synthesis network; mapping separately",
        "macs": "FlopCounterMode / 2, one inference forward (last head only); flops = 2 x macs; "
        "macs_paper (teacher): transposed convs on their 2x output grid",
        "quality": f"PSNR vs fp32 PyTorch student on seeds 0..{n_seeds - 1}, clipped to [-1, 1], peak-to-peak 2",
        "bytes": "exported synthesis file(s) (xml+bin, onnx), else fp32 weights in memory",
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)
