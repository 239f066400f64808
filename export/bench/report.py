"""The benchmark's markdown report (``bench.md``) from its JSON report."""

from __future__ import annotations

from typing import Any

from export.bench.common import TORCH_RUNTIMES

# Row entries shown scaled: GMAC, GFLOP, MB.
_SCALED = (("macs", 1e9, ".2f"), ("flops", 1e9, ".2f"), ("bytes", 1e6, ".1f"))


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def markdown(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["conventions"]
    lines = [
        "# mobilestylegan-bench",
        "",
        f"`{report['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['threads']} threads; torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}, openvino {m['openvino']}.",
        f"Latency: {c['latency']}. Allocator: {c['allocator']}.",
        f"MACs: {c['macs']}. Quality: {c['quality']}.",
        "",
        "| model | runtime | params | GMAC | GFLOP | size MB | median ms | min ms | PSNR dB | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
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
            if r.get("wasm_threads"):
                extra.append(f"{r['browser']}, {r['wasm_threads']} WASM thread(s)")
            if r["runtime"] in TORCH_RUNTIMES:
                extra.append(f"GLIBC_TUNABLES={r.get('allocator', '?')}")
            note = "; ".join(extra)
        params = "—" if r.get("params") is None else f"{r['params']:,}"
        macs, flops, size = (_fmt(r.get(k) and r[k] / d, spec) for k, d, spec in _SCALED)
        lines.append(
            f"| {r['model']} | {r['runtime']} | {params} | {macs} | {flops} | {size} "
            f"| {_fmt(r.get('median_ms'))} | {_fmt(r.get('min_ms'))} | {_fmt(r.get('psnr_db'))} | {note} |"
        )
    cp = report.get("compare_published")
    if cp:
        lines += [
            "",
            f"## Side by side with the published IR (one process, alternating, {cp['runs']} rounds, "
            f"{cp['threads']} threads)",
            "",
            "| variant | median ms | min ms | ratio to published f32 | max abs diff vs published f32 | PSNR dB |",
            "|---|---|---|---|---|---|",
        ]
        for k, v in cp["variants"].items():
            lines.append(
                f"| {k} | {v['median_ms']:.1f} | {v['min_ms']:.1f} | {v['ratio_to_published_f32']:.3f} "
                f"| {v['max_abs_diff_vs_published_f32']:.2e} | {_fmt(v.get('psnr_db'))} |"
            )
        best = cp.get("fastest_ours_passing_40db")
        if best:
            lines += [
                "",
                f"Fastest of ours with PSNR >= 40 dB: {best['variant']}, "
                f"{best['ratio_to_published_f32']:.3f}x the published IR's f32 latency.",
            ]
        for k, v in cp["variants"].items():
            if "profile" in v:
                lines += [
                    "",
                    f"OpenVINO per-layer counters, {k} (last run, top layer types):",
                    "",
                    "| layer type | exec type | ms | count | share |",
                    "|---|---|---|---|---|",
                ]
                lines += [
                    f"| {p['layer_type']} | {p['exec_type']} | {p['ms']:.2f} | {p['count']} | {p['share']:.0%} |"
                    for p in v["profile"]
                ]
    return "\n".join(lines) + "\n"
