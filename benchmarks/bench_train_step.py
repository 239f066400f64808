"""CPU training-step time of a student: eager PyTorch against channels-last, bf16 autocast and torch.compile.

    .venv/bin/python benchmarks/bench_train_step.py --modes eager                     # glibc's default allocator
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647 \\
        .venv/bin/python benchmarks/bench_train_step.py --modes eager,channels_last,bf16,compile

One step is what the demo's module does per iteration: the student's forward with every head (batch 16), the pixel
loss (L1 + 5 L2 on the wavelets and the image), backward and an Adam step; random weights and targets (the time
does not depend on their values). Each mode gets a fresh copy of the same student, one warm-up step (for
``compile``: the compilation, printed as ``first``), then ``--repeats`` timed steps; the median is printed. Modes run
one after the other in one process; run the allocator comparison as two commands (the setting only takes effect
at process start).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shlex
import statistics
import sys
import time

import torch

from export.bench.common import cpu_name
from mobilestylegan.distill.losses import pixel_loss
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.wavelets import dwt

MODES = ("eager", "channels_last", "bf16", "compile")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", default="512,512,512,512,248", help="widths at 4..R/2 px")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--modes", default="eager,channels_last", help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; known: {', '.join(MODES)}")
    torch.set_num_threads(args.threads)
    cfg = StudentConfig(img_resolution=args.resolution, channels=tuple(int(c) for c in args.channels.split(",")))
    print("command: " + shlex.join([os.path.basename(sys.executable), *sys.argv]))
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; {args.threads} threads; torch {torch.__version__}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')}; "
        f"student {list(cfg.channels)} at {cfg.img_resolution} px"
    )
    torch.manual_seed(0)
    base = MobileSynthesisNetwork(cfg)
    ws = torch.randn(args.batch, cfg.num_ws, cfg.w_dim)
    noise = base.make_noise(args.batch, "random")
    images = [torch.randn(args.batch, 3, 2 * r, 2 * r) for r in cfg.feature_resolutions]
    wavelets = [dwt(i) for i in images]
    for mode in modes:
        net = copy.deepcopy(base)
        if mode == "channels_last":
            for p in net.parameters():
                if p.ndim == 4:
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        forward = torch.compile(net) if mode == "compile" else net

        def step(net: torch.nn.Module = forward, opt: torch.optim.Optimizer = opt, mode: str = mode) -> None:
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()
            with autocast:
                img, heads = net(ws, noise=noise, return_wavelets=True)
            loss, _ = pixel_loss([h.float() for h in heads], wavelets, img.float(), images[-1], l1=1.0, l2=5.0)
            opt.zero_grad()
            loss.backward()
            opt.step()

        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        print(f"{mode:14s} median step {statistics.median(times):.3f} s (first {first:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
