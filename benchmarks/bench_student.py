"""Size, MACs and PyTorch-eager CPU latency of the StyleGAN2 teacher and the MobileStyleGAN student.

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647 \
        .venv/bin/python benchmarks/bench_student.py --threads 2 --repeats 5

Latency: batch 1, ``torch.inference_mode``, one warm-up per model, then rounds that run every model
once in turn (side by side, so drift hits all alike); the median and min over rounds are printed.
Random weights (timing does not depend on their values). The allocator matters at 1024 px (fresh
feature maps are paged in on every forward with glibc's default mmap threshold), so the header
prints GLIBC_TUNABLES; run once with and once without it to see the difference.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import statistics
import sys
import time

import torch

import teacher
from export.bench.common import cpu_name
from mobilestylegan.student.complexity import count_macs, count_params
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig


def sizes(res: int) -> dict:
    T = teacher.Generator(teacher.GeneratorConfig.stylegan2(res)).eval().requires_grad_(False)
    S = MobileSynthesisNetwork(StudentConfig.for_resolution(res)).eval().requires_grad_(False)
    aux = [S.to_img1] + [b.to_img for b in S.layers[:-1]]
    t_ws, s_ws = torch.randn(1, T.num_ws, 512), torch.randn(1, S.num_ws, 512)
    t = count_macs(lambda: T.synthesis(t_ws))
    s_inf = count_macs(lambda: S(s_ws))
    s_train = count_macs(lambda: S(s_ws, return_wavelets=True))
    return {
        "res": res,
        "t_map": count_params(T.mapping),
        "t_syn": count_params(T.synthesis),
        "s_all": count_params(S),
        "s_noaux": count_params(S) - sum(count_params(h) for h in aux),
        "t_macs": t["macs"],
        "t_macs_paper": t["macs_paper"],
        "s_macs": s_inf["macs"],
        "s_macs_heads": s_train["macs"],
    }


def latency(res: int, repeats: int) -> dict[str, list[float]]:
    T = teacher.Generator(teacher.GeneratorConfig.stylegan2(res)).eval().requires_grad_(False)
    S = MobileSynthesisNetwork(StudentConfig.for_resolution(res)).eval().requires_grad_(False)
    F = copy.deepcopy(S).fuse()
    t_ws, s_ws = torch.randn(1, T.num_ws, 512), torch.randn(1, S.num_ws, 512)
    models = {
        "teacher": lambda: T.synthesis(t_ws),
        "student": lambda: S(s_ws, inference=True),
        "student fused": lambda: F(s_ws, inference=True),
    }
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for fn in models.values():
            fn()  # warm-up
        for _ in range(repeats):
            for name, fn in models.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolutions", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per model (after one warm-up)")
    p.add_argument("--no-latency", action="store_true", help="sizes and MACs only")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"command: {shlex.join([sys.executable] + sys.argv)}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}; "
        f"threads {torch.get_num_threads()}; GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}"
    )
    print()
    print("Parameters and MACs (G = 1e9). MACs: FlopCounterMode, transposed convs on their input grid;")
    print("'paper' = transposed convs as dense convs on the 2x output grid (the papers' 143 GMAC convention).")
    print(
        "Student 'inference' runs the last head only; 'all heads' is the training forward "
        "(paper's 15.09 = 2 x this, FLOPs)."
    )
    print()
    print(
        "| res | teacher params (mapping + synthesis) | student params (all heads / no aux) | teacher GMAC "
        "| teacher GMAC (paper) | student GMAC inference | student GMAC all heads | MAC ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for res in args.resolutions:
        s = sizes(res)
        print(
            f"| {res} | {s['t_map']:,} + {s['t_syn']:,} | {s['s_all']:,} / {s['s_noaux']:,} | {s['t_macs'] / 1e9:.2f} "
            f"| {s['t_macs_paper'] / 1e9:.2f} | {s['s_macs'] / 1e9:.3f} | {s['s_macs_heads'] / 1e9:.3f} "
            f"| {s['t_macs'] / s['s_macs']:.1f}x |"
        )
    if args.no_latency:
        return 0
    print()
    print(
        f"Latency, PyTorch eager, batch 1, {torch.get_num_threads()} threads, median (min) of {args.repeats} "
        "alternating rounds, seconds:"
    )
    print()
    print("| res | teacher | student | student fused | teacher / student fused | student / student fused |")
    print("|---|---|---|---|---|---|")
    for res in args.resolutions:
        t = latency(res, args.repeats)
        med = {k: statistics.median(v) for k, v in t.items()}
        cell = lambda k, med=med, t=t: f"{med[k]:.3f} ({min(t[k]):.3f})"  # noqa: E731
        print(
            f"| {res} | {cell('teacher')} | {cell('student')} | {cell('student fused')} "
            f"| {med['teacher'] / med['student fused']:.1f}x | {med['student'] / med['student fused']:.2f}x |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
