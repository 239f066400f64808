"""The GPU check behind ``scripts/gpu_check.sh``: everything that needs a CUDA GPU, one table at the end.

1. ``pytest -m gpu``: the CUDA kernels against the reference, the self-test guard, the GPU build.
2. ``benchmarks/bench_ops.py --device cuda --batch 8``: each fused op, our kernel vs the reference, and the
   1024-px config-f teacher forward at batch 1 and 8 (its own table is kept in the log).
3. One ``experiment=ffhq1024`` distillation run at batch 8 on a random-weight config-f teacher (the paper's
   recipe: pixel + VGG16 perceptual (random weights) + GAN with R1), once with our kernels
   (``MOBILESTYLEGAN_OPS=auto``) and once with the reference (``ref``): median step time, images per second,
   peak GPU memory.
4. With 2 or more GPUs, the same run with ``trainer=ddp`` on 2 GPUs (batch 8 per GPU).

Each part runs in its own process, so one failure does not hide the others. Example:

    bash scripts/gpu_check.sh                      # OUT_DIR=outputs/gpu_check
    python benchmarks/gpu_check.py --out /tmp/gc --steps 6 --skip-pytest
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], log: Path, env: dict | None = None, timeout: int = 900) -> tuple[int, str, float]:
    """Run ``cmd``, tee its output to ``log``; return (exit code, output, seconds)."""
    t0 = time.perf_counter()
    print(f"\n$ {' '.join(cmd)}", flush=True)
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code, out = 124, f"{err.stdout or ''}{err.stderr or ''}\n(timed out after {timeout} s)"
    log.write_text(out)
    print(out[-3000:], flush=True)
    return code, out, time.perf_counter() - t0


def random_config_f_teacher(path: Path) -> Path:
    """A StyleGAN2 config-f (1024 px, 28.3M synthesis parameters) with random weights, in the native format."""
    import torch

    import teacher
    from teacher.formats.common import Checkpoint

    if not path.is_file():
        torch.manual_seed(0)
        cfg = teacher.GeneratorConfig()
        G = teacher.Generator(cfg)
        teacher.save_checkpoint(path, Checkpoint("native", g_config=cfg, g_state=G.state_dict()))
    return path


# --dry-run-cpu: the same plumbing on the CPU with the tiny models (checks this script without a GPU).
DRY_RUN = ["student=tiny", "loss.perceptual_size=32", "data.batch_size=2", "trainer.accelerator=cpu"]


def distill(out: Path, name: str, teacher_file: Path | str, steps: int, ops_impl: str, extra: list[str]) -> dict:
    run_dir = out / name
    cmd = [
        sys.executable,
        "train.py",
        "experiment=ffhq1024",
        f"teacher.source={teacher_file}",
        "loss.allow_random_vgg=true",
        "data.batch_size=8",
        f"trainer.steps={steps}",
        "trainer.val_every=100000",
        "trainer.checkpoint_every=100000",
        "data.val_size=8",
        "data.baseline_samples=8",
        "trainer.progress_bar=false",
        "trainer.resume=null",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    code, text, seconds = sh(cmd, out / f"{name}.log", env={"MOBILESTYLEGAN_OPS": ops_impl})
    summary_file = run_dir / "summary.json"
    if code != 0 or not summary_file.is_file():
        return {"run": name, "ok": False, "error": text.strip().splitlines()[-1][:200] if text.strip() else code}
    s = json.loads(summary_file.read_text())
    step = s["step_seconds_median"]
    return {
        "run": name,
        "ok": True,
        "ops": ops_impl,
        "processes": s["processes"],
        "global_batch": s["global_batch"],
        "step_s": step,
        "images_per_s": s["global_batch"] / step if step else None,
        "peak_gib": s["peak_gpu_memory_gib"],
        "wall_s": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/gpu_check", help="folder for logs and results")
    p.add_argument("--steps", type=int, default=8, help="distillation steps per run (the first is not timed)")
    p.add_argument("--skip-pytest", action="store_true")
    p.add_argument("--skip-ops", action="store_true")
    p.add_argument("--dry-run-cpu", action="store_true", help="tiny models on the CPU: checks the script itself")
    args = p.parse_args(argv)
    import torch

    out = (REPO / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dry = args.dry_run_cpu
    if dry:
        args.skip_pytest = args.skip_ops = True
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch: nothing to check", file=sys.stderr)
        return 2
    gpus = 0 if dry else torch.cuda.device_count()
    gpu = "none (dry run on the CPU)" if dry else f"{torch.cuda.get_device_name(0)} x {gpus}"
    header = (
        f"GPU: {gpu}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"command: {' '.join([sys.executable, *sys.argv])}"
    )
    rows: list[tuple[str, str]] = []

    if not args.skip_pytest:
        code, text, secs = sh(
            [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"], out / "pytest_gpu.log"
        )
        tail = next((ln for ln in reversed(text.splitlines()) if re.search(r"\d+ (passed|failed|error)", ln)), "?")
        rows.append(("pytest -m gpu", f"{tail.strip()} ({secs:.0f} s, exit {code})"))

    if not args.skip_ops:
        code, text, secs = sh(
            [sys.executable, "benchmarks/bench_ops.py", "--device", "cuda", "--batch", "8"], out / "bench_ops.md"
        )
        lines = text.splitlines()
        start = next((i for i, ln in enumerate(lines) if re.match(r"-+  -+", ln)), None)
        for line in lines[start + 1 :] if start is not None else []:  # op, shape, ref ms, cuda ms, ref/cuda, diff
            cols = re.split(r"\s{2,}", line.strip())
            if len(cols) == 6:
                rows.append(
                    (f"{cols[0]} {cols[1]}", f"ref {cols[2]} ms, cuda {cols[3]} ms: {cols[4]}, max |diff| {cols[5]}")
                )
        rows.append(("bench_ops.py", f"exit {code}, {secs:.0f} s (its table: bench_ops.md)"))

    teacher_file = "embedded:tiny64" if dry else random_config_f_teacher(out / "config_f_random.pt")
    one = DRY_RUN + ["trainer.devices=1"] if dry else ["trainer.accelerator=gpu", "trainer.devices=1"]
    runs = [
        distill(out, "distill_fused", teacher_file, args.steps, "auto", one),
        distill(out, "distill_ref", teacher_file, args.steps, "ref", one),
    ]
    if gpus >= 2:
        runs.append(
            distill(
                out,
                "distill_ddp2_fused",
                teacher_file,
                args.steps,
                "auto",
                ["trainer=ddp", "trainer.devices=2", "trainer.precision=32-true"],
            )
        )
    else:
        rows.append(("DDP on 2 GPUs", "not run: one GPU"))
    for r in runs:
        if r["ok"]:
            peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f} GiB"
            rows.append(
                (
                    f"ffhq1024 step, batch {r['global_batch']} on {r['processes']} GPU(s), ops={r['ops']}",
                    f"{r['step_s'] * 1000:.0f} ms/step, {r['images_per_s']:.1f} img/s, peak {peak} "
                    f"(run {r['wall_s']} s)",
                )
            )
        else:
            rows.append((f"{r['run']}", f"FAILED: {r['error']}"))
    fused, ref = runs[0], runs[1]
    if fused["ok"] and ref["ok"] and not dry:
        rows.append(
            (
                "ffhq1024 step, fused vs reference",
                f"{ref['step_s'] / fused['step_s']:.2f}x faster, {fused['peak_gib'] / ref['peak_gib']:.2f}x the memory",
            )
        )
    (out / "results.json").write_text(json.dumps({"header": header, "rows": rows, "runs": runs}, indent=1))
    width = max(len(k) for k, _ in rows)
    print(f"\n{header}\n")
    print(f"| {'check'.ljust(width)} | result |\n|{'-' * (width + 2)}|--------|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
