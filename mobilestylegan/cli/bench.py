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
  runtime in its own process (``python -m export.bench SPEC.json``) with ``--threads`` threads
  (``torch.set_num_threads``, ORT ``intra_op_num_threads``, OpenVINO ``INFERENCE_NUM_THREADS``), so thread
  pools of different runtimes never compete. PyTorch workers run with
  ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647`` (with glibc's default threshold
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
import sys

from export.bench.common import DEFAULT_RUNTIMES, TEACHER_RUNTIMES, BenchError, runtimes
from mobilestylegan.allocator import MMAP_TUNABLE


def _runtimes(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in runtimes()]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown runtime(s) {bad}; choose from {', '.join(runtimes())}")
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
    p = argparse.ArgumentParser(
        prog="mobilestylegan-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", help="student: pretrained name (ffhq-1024), native checkpoint or Lightning .ckpt")
    p.add_argument(
        "--teacher", help="StyleGAN2 checkpoint for the baseline rows (default: config-f, random weights, timing only)"
    )
    p.add_argument("--no-teacher", action="store_true", help="skip the teacher rows")
    p.add_argument(
        "--teacher-runtimes",
        type=_runtimes,
        default=["eager"],
        help=f"runtimes for the teacher ({', '.join(TEACHER_RUNTIMES)}; default eager)",
    )
    p.add_argument("--teacher-runs", type=_positive, default=3, help="timed runs for the teacher (default 3)")
    p.add_argument(
        "--runtimes",
        type=_runtimes,
        default=list(DEFAULT_RUNTIMES),
        help=f"comma-separated, from {','.join(runtimes())} (default: {','.join(DEFAULT_RUNTIMES)})",
    )
    p.add_argument("--threads", type=_positive, default=2)
    p.add_argument("--runs", type=_positive, default=20, help="timed runs per runtime (default 20)")
    p.add_argument("--warmup", type=_non_negative, default=3, help="untimed runs first (default 3)")
    p.add_argument("--quality-seeds", type=_non_negative, default=16, help="seeds for PSNR (0: skip)")
    p.add_argument(
        "--published",
        choices=("auto", "yes", "no"),
        default="auto",
        help="rows for random-face's published IR (auto: when SOURCE is ffhq-1024)",
    )
    p.add_argument(
        "--compare-published",
        action="store_true",
        help="side-by-side goal measurement against the published IR (one process, alternating runs)",
    )
    p.add_argument("--profile", action="store_true", help="with --compare-published: OpenVINO per-layer counters")
    p.add_argument(
        "--allocator",
        choices=("mmap-threshold", "default"),
        default="mmap-threshold",
        help=f"PyTorch workers' glibc setting (mmap-threshold: GLIBC_TUNABLES={MMAP_TUNABLE})",
    )
    p.add_argument("--out", default="bench", help="output directory for bench.md, bench.json, artifacts/")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.profile and not args.compare_published:
        build_parser().error("--profile goes with --compare-published")
    from pathlib import Path

    from export.bench.driver import run_bench

    try:
        run_bench(args)
    except BenchError as err:
        print(f"mobilestylegan-bench: error: {err}", file=sys.stderr)
        return 2
    print((Path(args.out) / "bench.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
