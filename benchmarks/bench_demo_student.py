"""Candidate students for the CPU demo: step-0 PSNR after closed-form heads per channel-selection rule, and
optionally the PSNR reached in a wall-clock training budget, on one pool of teacher renders.

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647 .venv/bin/python benchmarks/bench_demo_student.py \\
        --channels 256,256,256,128,64 512,512,512,256,128 512,512,512,512,248 --select weights data recon
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647 .venv/bin/python benchmarks/bench_demo_student.py \\
        --channels 512,512,512,512,248 512,512,512,512,192 --train-minutes 5.4

The teacher is ``ffhq-1024``. The pool (``--pool`` faces, 128 px, no truncation or mixing, seed 1) is rendered
once by the demo's OpenVINO graph in f32 and kept in ``--pool-file`` for later runs (delete it to re-render); the
validation set is the demo's (64 latents, seed 1234). Every candidate is pruned from the teacher
(:func:`mobilestylegan.distill.prune.prune_teacher`), its heads solved on the pool's first ``--fit`` triples, and
validated (EMA-free, like the demo's first validation). With ``--train-minutes`` the ``weights``-rule student then
trains like the demo (batch 16, Adam at each ``--lrs`` peak with a 50-step warm-up and a cosine decay over the
budget, gradient clip 1, pixel loss L1 + 5 L2, EMA 0.99 ramped up like the module's) and its EMA is validated every
50 steps and at the end, once per ``--feature-weights`` entry (a weight above 0 adds the feature-distillation term:
the mean over levels of the MSE between the student's features and the teacher's kept channels of the same latents
and noise, the teacher's features computed live). Training runs one after the other, so figures of one run are
side by side.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from export.bench.common import cpu_name
from mobilestylegan.distill.cache import CachedTripleSource
from mobilestylegan.distill.heads import solve_heads
from mobilestylegan.distill.losses import pixel_loss
from mobilestylegan.distill.prune import SELECTIONS, kept_channels, prune_teacher
from mobilestylegan.distill.render import OpenVINOSynthesis
from mobilestylegan.distill.run import load_teacher
from mobilestylegan.distill.triples import Styles, TripleSource
from mobilestylegan.student.complexity import count_macs
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from teacher.numerics import psnr_db

RES = 128


def pool_and_val(T: torch.nn.Module, size: int, path: Path, threads: int) -> tuple[dict, object]:
    if path.is_file():
        d = torch.load(path, weights_only=False)
        if len(d["images"]) >= size:
            return d, d["val"]
    cfg = StudentConfig(img_resolution=RES, channels=(256, 256, 256, 128, 64))
    src = TripleSource(T, cfg, truncation_psi=1.0, style_mixing_prob=0.0, render_batch=8)
    ov = OpenVINOSynthesis(T.synthesis, batch_size=1, precision="f32", threads=threads, out_resolution=RES)
    t0 = time.perf_counter()
    pool = CachedTripleSource(src, size=size, seed=1, chunk=8, renderer=ov).fill("cpu")
    print(f"rendered {size} pool faces in {time.perf_counter() - t0:.0f} s", flush=True)
    src.eval_synthesis = ov
    val = src.fixed_set(64, 1234, "cpu")
    d = {"styles": pool.styles, "noise": pool.noise, "images": pool.images, "val": val}
    tmp = path.with_suffix(".tmp")
    torch.save(d, tmp)
    tmp.replace(path)
    return d, val


def validate(net: MobileSynthesisNetwork, val: object) -> float:
    with torch.no_grad():
        out = torch.cat(
            [net(val.ws[i : i + 16], noise=[m[i : i + 16] for m in val.noise]) for i in range(0, len(val), 16)]
        )
    return float(psnr_db(out, val.images[-1]).mean())


def train(
    net: MobileSynthesisNetwork,
    pool: CachedTripleSource,
    minutes: float,
    val: object,
    feature_weight: float = 0.0,
    teacher: MobileSynthesisNetwork | None = None,
    keep: list[torch.Tensor] | None = None,
    lr: float = 2e-3,
) -> dict:
    net.train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    feats: list[torch.Tensor] = []
    if feature_weight > 0:  # the heads' inputs are the student's features at every level
        for head in net.heads():
            head.register_forward_pre_hook(lambda m, inputs: feats.append(inputs[0]))
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    t0, it, hist = time.perf_counter(), 0, []
    while time.perf_counter() - t0 < minutes * 60:
        frac = (time.perf_counter() - t0) / (minutes * 60)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (it + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        batch = pool.get(torch.randperm(len(pool), generator=torch.Generator().manual_seed(1000 + it))[:16], "cpu")
        feats.clear()
        img, wavelets = net(batch.ws, noise=batch.noise, return_wavelets=True)
        loss, _ = pixel_loss(wavelets, batch.wavelets, img, batch.images[-1], l1=1.0, l2=5.0)
        if feature_weight > 0:
            with torch.no_grad():  # the teacher's features of the same latents and noise, its kept channels
                ws = batch.ws[:, :1].expand(-1, teacher.num_ws, -1)
                noise = list(batch.noise) + [None] * (len(teacher.noise_shapes) - len(batch.noise))
                target = teacher.features(ws, noise, levels=len(feats))
            terms = [(f - t[:, k]).square().mean() for f, t, k in zip(feats, target, keep)]
            loss = loss + feature_weight * sum(terms) / len(terms)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            beta = min(0.99, (1 + it) / (10 + it))  # the module's EMA: short memory at first
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - beta)
        it += 1
        if it % 50 == 0:
            hist.append([it, round(time.perf_counter() - t0), round(validate(ema, val), 2)])
            print("  step, seconds, PSNR:", hist[-1], flush=True)
    seconds = time.perf_counter() - t0
    return {"steps": it, "step_s": round(seconds / max(it, 1), 2), "final": round(validate(ema, val), 2), "hist": hist}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", nargs="+", required=True, help="candidates, e.g. 512,512,512,512,248")
    ap.add_argument("--select", nargs="+", default=["weights"], choices=SELECTIONS)
    ap.add_argument("--pool", type=int, default=1024)
    ap.add_argument("--fit", type=int, default=512, help="triples the heads are solved on")
    ap.add_argument("--train-minutes", type=float, default=0.0)
    ap.add_argument(
        "--feature-weights",
        type=float,
        nargs="+",
        default=[0.0],
        help="train once per weight of a feature term: mean over levels of the MSE between the student's features and "
        "the teacher's kept channels",
    )
    ap.add_argument("--lrs", type=float, nargs="+", default=[2e-3], help="train once per peak learning rate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pool-file", type=Path, default=Path("outputs/bench_demo_pool.pt"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("command: " + shlex.join([os.path.basename(sys.executable), *sys.argv]))
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; {args.threads} threads; torch {torch.__version__}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')}"
    )
    T = load_teacher("ffhq-1024")
    args.pool_file.parent.mkdir(parents=True, exist_ok=True)
    d, val = pool_and_val(T, args.pool, args.pool_file, args.threads)
    n = args.pool
    mean = d["images"][:n].float().mean(0, keepdim=True)
    print(f"mean image of the pool: {float(psnr_db(mean.expand_as(val.images[-1]), val.images[-1]).mean()):.2f} dB")
    g = torch.Generator().manual_seed(2)
    z = torch.randn([128, T.mapping.z_dim], generator=g)
    prune_noise = T.synthesis.make_noise(128, "random", device="cpu", generator=g)
    prune_ws = T.mapping.embed(z)[:, None].expand(-1, T.num_ws, -1)
    for text in args.channels:
        cfg = StudentConfig(img_resolution=RES, channels=tuple(int(c) for c in text.split(",")))
        pool = CachedTripleSource(TripleSource(T, cfg, style_mixing_prob=0.0), size=n, seed=1)
        pool.styles = Styles(d["styles"].w1[:n], d["styles"].w2[:n], d["styles"].crossover[:n])
        pool.noise, pool.images = [m[:n] for m in d["noise"]], d["images"][:n]
        fused = MobileSynthesisNetwork(cfg).fuse().requires_grad_(False)
        x = torch.zeros(1, cfg.num_ws, cfg.w_dim)
        gmac = count_macs(lambda fused=fused, x=x: fused(x))["macs"] / 1e9
        for rule in args.select:
            data = rule != "weights"
            t0 = time.perf_counter()
            S = prune_teacher(
                T.synthesis, cfg, select=rule, ws=prune_ws if data else None, noise=prune_noise if data else None
            )
            t1 = time.perf_counter()
            solved = solve_heads(S, pool.calibration(args.fit, 0, 16, slice(None), "cpu"))
            t2 = time.perf_counter()
            row = {
                "channels": list(cfg.channels),
                "gmac": round(gmac, 3),
                "select": rule,
                "step0_psnr": round(validate(S, val), 2),
                "head_fit_psnr": [round(p, 2) for p in solved.psnr],
                "prune_s": round(t1 - t0, 1),
                "solve_s": round(t2 - t1, 1),
            }
            print(json.dumps(row), flush=True)
            if args.train_minutes > 0 and rule == "weights":
                keep = kept_channels(T.synthesis, cfg)
                for lr in args.lrs:
                    for weight in args.feature_weights:
                        trained = train(copy.deepcopy(S), pool, args.train_minutes, val, weight, T.synthesis, keep, lr)
                        print(json.dumps({**row, "lr": lr, "feature_weight": weight, **trained}), flush=True)


if __name__ == "__main__":
    main()
