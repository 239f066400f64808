"""Time the fused ops (upfirdn2d, bias_act) and the teacher forward on the 1024-px StyleGAN2 shapes.

On CUDA: our NVRTC kernels (``impl="cuda"``) against the reference (``impl="ref"``).
On CPU: the reference against the literal definition of upfirdn2d (zero-insert, pad, conv, subsample).

Each op row is forward + backward (gradient w.r.t. the input), median of ``--repeats`` runs after
warm-up; the teacher is a forward pass in eval mode without gradients.

Examples:
    python benchmarks/bench_ops.py --quick                 # CPU machine: no 1024-px op rows, one repeat
    python benchmarks/bench_ops.py --device cuda --batch 8
    MOBILESTYLEGAN_CACHE=/tmp/k python benchmarks/bench_ops.py --device cuda --no-teacher
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

import teacher
from teacher import ops
from teacher.ops.upfirdn2d import upfirdn2d_naive

Fn = Callable[[], object]


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = f"CPU {cpu} ({os.cpu_count()} logical cores)"
    if device.type == "cuda":
        out += f"; GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds (synchronised on CUDA)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def fwd_bwd(op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[Fn, Callable[[], torch.Tensor]]:
    """A closure running forward + backward of ``op`` at ``x``, and one returning the output (for diffs)."""
    x = x.detach().requires_grad_()
    with torch.no_grad():
        gy = torch.randn_like(op(x))

    def run() -> None:
        x.grad = None
        op(x).backward(gy)

    def out() -> torch.Tensor:
        with torch.no_grad():
            return op(x)

    return run, out


def op_cases(batch: int, device: torch.device, quick: bool) -> list[tuple[str, str, torch.Tensor, dict]]:
    """(op, label, input, kwargs) for the teacher's shapes at 1024 px."""
    channels = teacher.default_channels(1024)
    f = ops.setup_filter([1, 3, 3, 1], device=device)
    rs = (64, 128, 256, 512)
    cases = []
    for r in rs:
        cases.append(
            (
                "upfirdn2d",
                f"ToRGB skip up x2 [{batch},3,{r},{r}]",
                torch.randn([batch, 3, r, r], device=device),
                dict(f=f, up=2, padding=[2, 1, 2, 1], gain=4),
            )
        )
    for r in rs:
        c = channels[2 * r]
        cases.append(
            (
                "upfirdn2d",
                f"blur after up-conv [{batch},{c},{2 * r + 1},{2 * r + 1}]",
                torch.randn([batch, c, 2 * r + 1, 2 * r + 1], device=device),
                dict(f=f, padding=1, gain=4),
            )
        )
    for r in rs + (() if quick else (1024,)):
        c = channels[r]
        cases.append(
            (
                "bias_act",
                f"lrelu+bias [{batch},{c},{r},{r}]",
                torch.randn([batch, c, r, r], device=device),
                dict(b=torch.randn([c], device=device), act="lrelu"),
            )
        )
    return cases


def bench_ops(args: argparse.Namespace, device: torch.device) -> list[list[str]]:
    rows = []
    a_name, b_name = ("ref", "cuda") if device.type == "cuda" else ("naive", "ref")
    for op, label, x, kw in op_cases(args.batch, device, args.quick):
        if op == "upfirdn2d":
            f, up, pad, gain = kw["f"], kw.get("up", 1), kw["padding"], kw["gain"]
            impls = {
                "naive": functools.partial(upfirdn2d_naive, f=f, up=up, padding=pad, gain=gain),
                "ref": functools.partial(ops.upfirdn2d, f=f, up=up, padding=pad, gain=gain, impl="ref"),
                "cuda": functools.partial(ops.upfirdn2d, f=f, up=up, padding=pad, gain=gain, impl="cuda"),
            }
        else:
            impls = {
                name: functools.partial(ops.bias_act, b=kw["b"], act=kw["act"], impl=name) for name in ("ref", "cuda")
            }
        names = [n for n in (a_name, b_name) if n in impls]
        times, outs = {}, {}
        for name in names:
            run, out = fwd_bwd(impls[name], x)
            times[name] = timeit(run, device, args.warmup, args.repeats)
            outs[name] = out()
        diff = (outs[names[0]] - outs[names[-1]]).abs().max().item() if len(names) == 2 else float("nan")
        speedup = times[names[0]] / times[names[-1]] if len(names) == 2 else float("nan")
        rows.append(
            [
                op,
                label,
                *(f"{times[n]:.2f}" if n in times else "-" for n in (a_name, b_name)),
                f"{speedup:.2f}x" if len(names) == 2 else "-",
                f"{diff:.1e}" if len(names) == 2 else "-",
            ]
        )
        del x, outs
    return rows


def bench_teacher(args: argparse.Namespace, device: torch.device, columns: tuple[str, str]) -> list[list[str]]:
    """Whole generator forward; ``columns`` are the two implementation columns of the table."""
    torch.manual_seed(0)
    G = teacher.Generator(teacher.GeneratorConfig.stylegan2(1024)).eval().requires_grad_(False).to(device)
    impls = ("ref", "cuda") if device.type == "cuda" else ("ref",)
    batches = (1, 8) if device.type == "cuda" else (1,)
    reps = 1 if device.type == "cpu" and args.quick else args.repeats
    rows = []
    for batch in batches:
        z = torch.randn([batch, 512], device=device)
        times, imgs = {}, {}
        for impl in impls:
            os.environ["MOBILESTYLEGAN_OPS"] = impl  # the networks read it on every op call

            def run(impl: str = impl, z: torch.Tensor = z, imgs: dict[str, torch.Tensor] = imgs) -> None:
                with torch.no_grad():
                    imgs[impl] = G(z, noise_mode="const")

            times[impl] = timeit(run, device, 1, reps)
        os.environ.pop("MOBILESTYLEGAN_OPS", None)
        two = len(impls) == 2
        rows.append(
            [
                "teacher",
                f"G forward 1024px batch {batch}",
                *(f"{times[c]:.1f}" if c in times else "-" for c in columns),
                f"{times['ref'] / times['cuda']:.2f}x" if two else "-",
                f"{(imgs['ref'] - imgs['cuda']).abs().max().item():.1e}" if two else "-",
            ]
        )
    return rows


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:  # text columns left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--batch", type=int, default=None, help="batch of the op shapes (default: 8 on CUDA, 1 on CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row (default: 20 CUDA, 5 CPU; --quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 3; --quick 1)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and shapes (CPU: under 3 minutes)")
    p.add_argument("--no-teacher", dest="teacher", action="store_false", help="skip the whole-teacher forward")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    for name in ("threads", "batch", "repeats", "warmup"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            p.error(f"--{name} must be positive, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batch = args.batch or (8 if cuda else 1)
    args.repeats = args.repeats or (3 if args.quick else 20 if cuda else 5)
    args.warmup = 1 if args.quick and args.warmup is None else 3 if args.warmup is None else args.warmup
    if cuda:
        torch.backends.cudnn.benchmark = True  # give the reference its best cuDNN algorithms

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine: {machine(device)}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}, batch {args.batch}, "
        f"median of {args.repeats} after {args.warmup} warm-up"
    )
    print(
        f"allocator: GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}, "
        f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '(unset)')}"
    )
    if cuda:
        from teacher.ops import cuda as cuda_ops

        for op in ("upfirdn2d", "bias_act"):
            cuda_ops.build(op)  # compile outside the timings
        print(f"kernels: {cuda_ops.status()}")
    print("times in ms; forward + backward for ops, forward only (no grad) for the teacher\n")
    a, b = ("ref", "cuda") if cuda else ("naive", "ref")
    header = ["op", "shape", a, b, f"{a}/{b}", "max|diff|"]
    rows = bench_ops(args, device)
    if args.teacher:
        rows += bench_teacher(args, device, (a, b))
    print_table(header, rows)


if __name__ == "__main__":
    main()
