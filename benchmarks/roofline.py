"""How far the exported ffhq-1024 synthesis is from what this CPU can do: a roofline for issue #5's goals.

    .venv/bin/python benchmarks/roofline.py --threads 2 --runs 10

1. Measures, with OpenVINO on this machine and thread count, the ceilings that bound the graph: compute (a
   chain of 512 -> 512 1x1 convs on a 64x64 map: the student's own kernel at its most efficient shape) in
   f32 and bf16, and the throughput of a depthwise 3x3 conv on [1, 64, 512, 512] (the largest maps), in GB/s.
2. Counts, for the lean synthesis graph (W input, baked noise: the exported one), the MACs of every conv
   class (dense 1x1, depthwise, IDWT band mix) and the bytes the memory-bound ops read and write when
   nothing is fused, from the shapes the graph actually runs.
3. Times our exported graph and the published IR (random-face) alternately in this process, reads our
   graph's OpenVINO per-layer counters, and prints, per precision, the measured time of each op class next
   to a floor: dense 1x1 convs at the measured peak, depthwise convs at the lesser of the micro-benchmark's
   throughput and what they already take in our graph, and zero for the band mix, DepthToSpace and the
   element-wise passes (noise, bias, lrelu, style scales), which a perfect compiler could fuse into a
   neighbouring conv. The sum, against the published IR's latency, is the best ratio reachable with this
   CPU's kernels.

Everything printed is measured here; nothing is assumed about the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from export.bench.common import cpu_name

if TYPE_CHECKING:
    import openvino as ov  # typing only: imported lazily at run time

aten = torch.ops.aten


class _Census(TorchDispatchMode):
    """MACs of every convolution class and the elements read + written by the memory-bound ops."""

    def __init__(self) -> None:
        super().__init__()
        self.macs: dict[str, int] = defaultdict(int)
        self.elems: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(
        self, func: Any, types: tuple[type, ...], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        if func is aten.convolution.default:
            x, w, groups = args[0], args[1], args[8]
            o, i_per_g, kh, kw = w.shape
            macs = out.numel() * i_per_g * kh * kw
            if groups == 1 and kh == 1:
                kind = "dense 1x1 conv"
            elif i_per_g == 1:
                kind = "depthwise conv"
            else:
                kind = "IDWT band mix (grouped 1x1)"
            self.macs[kind] += macs
            if kind != "dense 1x1 conv":  # memory-bound: each reads its input and writes its output once
                self.elems[kind] += x.numel() + out.numel()
        elif func in (aten.pixel_shuffle.default,):
            self.elems["DepthToSpace"] += 2 * out.numel()
        elif func in (aten.add.Tensor, aten.mul.Tensor, aten.leaky_relu.default) and out.numel() >= 4096 * 16:
            self.elems["noise / bias / lrelu / scale (eltwise)"] += 2 * out.numel()
        return out


def _ov_compile(model: ov.Model | str, precision: str, threads: int, perf: bool = False) -> ov.CompiledModel:
    import openvino as ov

    cfg = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}
    if perf:
        cfg["PERF_COUNT"] = True
    return ov.Core().compile_model(model, "CPU", cfg)


def _time(fn: Callable[[], object], runs: int, warmup: int = 2, best: bool = False) -> float:
    """Median (or, for a ceiling, minimum) seconds of ``runs`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts) if best else statistics.median(ts)


def _micro(module: torch.nn.Module, shape: tuple[int, ...], precision: str, threads: int, runs: int) -> float:
    import openvino as ov

    x = torch.randn(shape)
    model = ov.convert_model(module.eval(), example_input=x)
    req = _ov_compile(model, precision, threads).create_infer_request()
    xa = x.numpy()
    return _time(lambda: req.infer({0: xa}), runs, best=True)


class _Chain(torch.nn.Module):
    """``depth`` identical layers (1x1 convs or depthwise 3x3 convs, each followed by a leaky ReLU), so the
    input copy and layout conversion of one inference are spread over many kernels."""

    def __init__(self, channels: int, depthwise: bool, depth: int) -> None:
        super().__init__()
        k, g = (3, channels) if depthwise else (1, 1)
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(channels, channels, k, padding=k // 2, groups=g) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return x


def ceilings(threads: int, runs: int, depth: int = 12) -> dict[str, dict[str, float]]:
    """Per precision: GFLOP/s of a 512 -> 512 1x1 conv on 64x64 (the student's most efficient shape), and
    GB/s (input read + output written, at the precision's width) of a depthwise 3x3 conv on [1, 64, 512, 512]
    (its largest maps); each the best time of a chain of ``depth`` such layers, divided by ``depth``."""
    out: dict[str, dict[str, float]] = {}
    for prec in ("f32", "bf16"):
        nbytes = 4 if prec == "f32" else 2
        t_pw = _micro(_Chain(512, False, depth), (1, 512, 64, 64), prec, threads, runs) / depth
        big = (1, 64, 512, 512)
        t_dw = _micro(_Chain(64, True, depth), big, prec, threads, runs) / depth
        out[prec] = {
            "peak_gflops": 2 * 512 * 512 * 64 * 64 / t_pw / 1e9,
            "dw_gbs": 2 * int(np.prod(big)) * nbytes / t_dw / 1e9,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import openvino as ov

    from export.exporter import export
    from mobilestylegan.io.pretrained import load_pretrained
    from mobilestylegan.student.lean import LeanSynthesis
    from teacher.formats import openvino_ir

    print(f"$ {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(f"machine: {cpu_name()}, {args.threads} threads; openvino {ov.get_version()}")

    G = load_pretrained("ffhq-1024")
    lean = LeanSynthesis(G.synthesis, w_input="w", noise="const").eval()
    census = _Census()
    with torch.no_grad(), census:
        lean(torch.zeros(1, G.w_dim))

    caps = ceilings(args.threads, args.runs)
    for prec, c in caps.items():
        print(f"ceilings {prec}: 1x1 conv {c['peak_gflops']:.0f} GFLOP/s, depthwise conv {c['dw_gbs']:.1f} GB/s")

    with tempfile.TemporaryDirectory() as tmp:
        export("ffhq-1024", "openvino", str(Path(tmp) / "ours"), precision="fp32", parity=False, progress=False)
        ours = next((Path(tmp) / "ours").glob("*synthesis*.xml"))
        published = openvino_ir.random_face_files()["synthesis_xml"]
        reqs = {}
        for name, path in (("published", published), ("ours", ours)):
            for prec in ("f32", "bf16"):
                reqs[(name, prec)] = _ov_compile(str(path), prec, args.threads, perf=True).create_infer_request()
        w = np.zeros((1, G.w_dim), np.float32)
        times: dict[tuple[str, str], list[float]] = defaultdict(list)
        for _k, r in reqs.items():
            r.infer({0: w})
        for _ in range(args.runs):
            for k, r in reqs.items():
                t = time.perf_counter()
                r.infer({0: w})
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        profiles = {prec: reqs[("ours", prec)].profiling_info for prec in ("f32", "bf16")}

    base = med[("published", "f32")]
    print(
        f"\nlatency, alternating, median of {args.runs}: published f32 {base:.1f} ms, bf16 "
        f"{med[('published', 'bf16')]:.1f} ms; ours f32 {med[('ours', 'f32')]:.1f} ms "
        f"({med[('ours', 'f32')] / base:.3f}x), bf16 {med[('ours', 'bf16')]:.1f} ms "
        f"({med[('ours', 'bf16')] / base:.3f}x)"
    )
    for prec in ("f32", "bf16"):
        c, nbytes = caps[prec], (4 if prec == "f32" else 2)
        measured: dict[str, float] = defaultdict(float)
        for info in profiles[prec]:
            t = info.real_time.total_seconds() * 1e3
            kind = {"Convolution": "dense 1x1 conv", "DepthToSpace": "DepthToSpace"}.get(info.node_type)
            if info.node_type == "GroupConvolution":
                kind = "depthwise conv" if "dw" in info.exec_type else "IDWT band mix (grouped 1x1)"
            measured[kind or "noise / bias / lrelu / scale (eltwise)"] += t
        print(f"\n{prec}: op class | GMAC | MB in + out (unfused) | measured ms | floor ms | floor basis")
        floor_total = 0.0
        for kind in (
            "dense 1x1 conv",
            "depthwise conv",
            "IDWT band mix (grouped 1x1)",
            "DepthToSpace",
            "noise / bias / lrelu / scale (eltwise)",
        ):
            macs, mb = census.macs.get(kind, 0), census.elems.get(kind, 0) * nbytes / 1e6
            if kind == "dense 1x1 conv":  # the peak: the micro-benchmark's, or what our graph reached if higher
                peak = max(c["peak_gflops"], 2 * macs / (measured.get(kind, 0.0) or float("inf")) / 1e6)
                floor, basis = 2 * macs / (peak * 1e9) * 1e3, f"MACs at {peak:.0f} GFLOP/s"
            elif kind == "depthwise conv":  # memory-bound; our graph already runs them faster than the micro
                floor = min(mb / c["dw_gbs"], measured.get(kind, 0.0))
                basis = f"min(bytes at {c['dw_gbs']:.1f} GB/s, measured)"
            else:
                floor, basis = 0.0, "0: could fuse into a neighbour"
            floor_total += floor
            print(f"  {kind} | {macs / 1e9:.2f} | {mb:.0f} | {measured.get(kind, 0.0):.1f} | {floor:.1f} | {basis}")
        goal = {"f32": 0.4, "bf16": 0.22}[prec]
        print(
            f"  total | | | {sum(measured.values()):.1f} | {floor_total:.1f} | floor {floor_total / base:.3f}x the "
            f"published f32 (measured {med[('ours', prec)] / base:.3f}x; goal {goal}x = {goal * base:.1f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
