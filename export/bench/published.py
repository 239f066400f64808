"""The published IR side by side with our exports, in one process with alternating runs."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from export.bench.common import BenchError, latency_stats, progress_bar
from export.gates import QUALITY_GATE_DB
from export.manifest import json_number
from export.runtime import OpenVINOGraph


def want_published(args: argparse.Namespace) -> bool:
    return args.published == "yes" or (args.published == "auto" and args.source == "ffhq-1024")


def published_files() -> Path | None:
    from teacher.formats import openvino_ir
    from teacher.formats.common import CheckpointError

    try:
        return openvino_ir.random_face_files()["synthesis_xml"]
    except CheckpointError:
        return None


# ------------------------------------------------------------------------------------------------ side by side


def compare_published(
    args: argparse.Namespace, artifacts: dict[str, Any], ws_path: Path, ref_path: Path | None
) -> dict[str, Any]:
    """Alternating runs, in this process, of the published IR and our exported synthesis (OpenVINO only)."""
    from teacher.numerics import pooled_psnr_db

    published = published_files()
    if published is None:
        raise BenchError(
            "--compare-published needs the random-face package: pip install --no-deps random-face==2021.7.21.1"
        )
    variants: dict[str, tuple[str, str]] = {
        "published f32": (str(published), "f32"),
        "published bf16": (str(published), "bf16"),
    }
    f32 = artifacts.get("openvino-f32") or artifacts.get("openvino-bf16")
    if not f32 or "path" not in f32:
        raise BenchError("--compare-published needs our OpenVINO export: include openvino-f32 in --runtimes")
    variants["ours f32"] = (f32["path"], "f32")
    variants["ours bf16"] = (f32["path"], "bf16")
    int8 = artifacts.get("openvino-int8", {})
    if "path" in int8:
        variants["ours int8"] = (int8["path"], "f32")
    graphs = {k: OpenVINOGraph(p, args.threads, precision=h, perf_count=args.profile) for k, (p, h) in variants.items()}
    ws = np.load(ws_path)
    ref = np.load(ref_path) if ref_path is not None and args.source == "ffhq-1024" else None
    outs = {k: np.concatenate([g.run([np.ascontiguousarray(w)]) for w in ws]) for k, g in graphs.items()}
    w0 = [np.ascontiguousarray(ws[0])]
    for g in graphs.values():
        for _ in range(args.warmup):
            g.run(w0)
    times: dict[str, list[float]] = {k: [] for k in graphs}
    for _ in progress_bar(range(args.runs), not args.no_progress, desc="side by side"):
        for k, g in graphs.items():
            t = time.perf_counter()
            g.run(w0)
            times[k].append(time.perf_counter() - t)
    result: dict[str, Any] = {"threads": args.threads, "runs": args.runs, "variants": {}}
    base = statistics.median(times["published f32"])
    for k, g in graphs.items():
        entry = latency_stats(times[k])
        entry["ratio_to_published_f32"] = statistics.median(times[k]) / base
        entry["max_abs_diff_vs_published_f32"] = float(np.abs(outs[k] - outs["published f32"]).max())
        if ref is not None:
            entry["psnr_db"] = json_number(pooled_psnr_db(outs[k], ref))
            entry["passes_40db"] = entry["psnr_db"] is None or entry["psnr_db"] >= QUALITY_GATE_DB
        if args.profile:
            entry["profile"] = profile_summary(g.profiling_info())
        result["variants"][k] = entry
    ok = [k for k in result["variants"] if k.startswith("ours") and result["variants"][k].get("passes_40db", True)]
    if ok:
        best = min(ok, key=lambda k: result["variants"][k]["median_ms"])
        result["fastest_ours_passing_40db"] = {
            "variant": best,
            "ratio_to_published_f32": result["variants"][best]["ratio_to_published_f32"],
        }
    return result


def profile_summary(profiling_info: list[Any], top: int = 10) -> list[dict[str, Any]]:
    """OpenVINO per-layer counters of a request's last inference, summed by (layer type, exec type)."""
    agg: dict[tuple[str, str], list[float]] = {}
    for info in profiling_info:
        key = (info.node_type, info.exec_type)
        t = agg.setdefault(key, [0.0, 0])
        t[0] += info.real_time.total_seconds() * 1e3
        t[1] += 1
    total = sum(v[0] for v in agg.values()) or 1.0
    rows = sorted(agg.items(), key=lambda kv: -kv[1][0])[:top]
    return [
        {"layer_type": k[0], "exec_type": k[1], "ms": round(v[0], 3), "count": v[1], "share": round(v[0] / total, 3)}
        for k, v in rows
    ]
