"""Step time of the data-parallel options for distillation, on CPU processes (gloo), side by side.

Options (each a real ``python train.py ...`` run, the paper's losses: pixel + VGG16 perceptual (random
weights) + GAN with R1 every 2nd step so that both kinds of discriminator step are in the median):

- ``1 process``: the same global batch in one process (the reference point).
- ``ddp``: ``trainer=ddp``, this toolkit's NetworkDDPStrategy (one DDP wrapper per trained network, no
  unused-parameter search).
- ``ddp_find_unused_parameters_true``: Lightning's wrapper around the whole LightningModule, which needs
  the unused-parameter search after every forward to run at all.

Lightning's plain DDP wrapper around the module (``find_unused_parameters=False``) fails on the first step,
and a static graph cannot describe the iteration (two backward passes over different parameter sets per
step, plus R1's double backward on some steps), so neither is a row here. The rounds alternate the
options so that drift of a shared machine hits all of them alike; the table gives the median over rounds
of each run's median step time (the first step of a run is not counted); each round starts with the next
option.

    python benchmarks/bench_ddp.py                      # every option, 3 rounds of 30 steps
    python benchmarks/bench_ddp.py --rounds 1 --steps 20 --channels 16,16,16,8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIONS = {
    "1 process": ["trainer.devices=1"],
    "ddp": ["trainer=ddp", "trainer.devices=2"],
    "ddp_find_unused_parameters_true": [
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.strategy=ddp_find_unused_parameters_true",
    ],
}


def run(option: str, args: argparse.Namespace, out: Path) -> dict:
    per_process = args.batch if option != "1 process" else 2 * args.batch
    cmd = [
        sys.executable,
        "train.py",
        "experiment=tiny",
        *OPTIONS[option],
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        f"trainer.steps={args.steps}",
        "trainer.val_every=100000",
        "trainer.checkpoint_every=100000",
        "loss.r1_interval=2",
        f"data.batch_size={per_process}",
        f"student.channels=[{args.channels}]",
        "trainer.progress_bar=false",
        "trainer.resume=null",
        f"hydra.run.dir={out}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads_per_process)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{option} failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text())


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=4, help="batch per process (1 process: twice this)")
    p.add_argument("--channels", default="64,64,32", help="the 32-px student's channel table")
    p.add_argument("--threads-per-process", type=int, default=1)
    args = p.parse_args(argv)
    times: dict[str, list[float]] = {k: [] for k in OPTIONS}
    final: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        names = list(OPTIONS)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # each round starts with another option
            for i, option in enumerate(order):
                s = run(option, args, Path(tmp) / f"{r}_{i}")
                times[option].append(s["step_seconds_median"])
                final[option] = s["final_losses"]["total"]
                print(f"round {r}: {option}: {s['step_seconds_median'] * 1000:.1f} ms/step", flush=True)
    print(f"\ncommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; {args.threads_per_process} thread(s) per process; "
        f"global batch {2 * args.batch}; student channels [{args.channels}] at 32 px; tiny 64-px teacher; "
        f"{args.steps} steps x {args.rounds} rounds\n"
    )
    base = statistics.median(times["ddp"])
    print("| option | median ms per step | relative to ddp | final total loss |")
    print("|---|---|---|---|")
    for option, ts in times.items():
        m = statistics.median(ts)
        print(f"| {option} | {m * 1000:.1f} | {m / base:.2f}x | {final[option]:.6f} |")


if __name__ == "__main__":
    main()
