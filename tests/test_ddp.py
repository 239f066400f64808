"""Data-parallel distillation on 2 CPU processes (gloo), started exactly as the README documents it:
``python train.py experiment=tiny trainer=ddp trainer.accelerator=cpu trainer.devices=2 ...``.

Lightning starts the second process by re-running the command line, so these runs are subprocesses of
``train.py`` (not in-process ``train()`` calls, which would re-run pytest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from teacher.numerics import assert_parity
from tests.helpers.config import compose_cfg
from tests.helpers.paths import REPO

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
# A short run with every loss on (pixel, VGG with random weights, GAN, R1 every 2nd step, augmentation), the heads
# solved in closed form first.
# Minibatch-stddev groups form within each process's batch, so a process count-independent run needs
# groups of one (loss.mbstd_group_size=1); everything else is the same by design.
RUN = [
    "experiment=tiny",
    "trainer.steps=4",
    "trainer.val_every=2",
    "trainer.checkpoint_every=2",
    "loss.mbstd_group_size=1",
    "student.solve_heads=6",  # each process solves the heads' sums over its 3 calibration triples
    "trainer.progress_bar=false",
]
PER_PROCESS = 2


def train_py(out: Path, *overrides: str) -> dict:
    """Run train.py as a user does; returns its summary.json."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MASTER_PORT", "MASTER_ADDR", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")
    }
    cmd = [sys.executable, str(REPO / "train.py"), *overrides, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}"
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, train_py(out, *RUN, *DDP, f"data.batch_size={PER_PROCESS}")


def assert_same_run(a: dict, b: dict) -> None:
    """Same losses and validation metrics, to float32 rounding (another batch split or process count changes
    summation orders only)."""
    assert a["steps"] == b["steps"] and a["final_losses"].keys() == b["final_losses"].keys()
    for k in a["final_losses"]:
        assert_parity(torch.tensor(a["final_losses"][k]), torch.tensor(b["final_losses"][k]), f"final loss {k}")
    assert [h["iteration"] for h in a["val_history"]] == [h["iteration"] for h in b["val_history"]]
    for ha, hb in zip(a["val_history"], b["val_history"]):
        for k in ("val/psnr", "val/l1", "val/vgg_dist", "val/baseline_psnr"):
            assert_parity(torch.tensor(ha[k]), torch.tensor(hb[k]), f"{k} at iteration {ha['iteration']}")


def test_two_processes_train_on_their_own_slices_and_equal_one_process(ddp_run, tmp_path):
    out, ddp = ddp_run
    assert ddp["steps"] == 4 and ddp["processes"] == 2 and ddp["global_batch"] == 2 * PER_PROCESS
    # Only rank 0 writes: one summary, one student, one checkpoint folder, one CSV log.
    assert (out / "student.pt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["version_0"]
    # Each process rendered its own half of every global batch: different triples ...
    first = ddp["first_batches"]
    assert [b["rank"] for b in first] == [0, 1] and [b["samples"] for b in first] == [[0, 2], [2, 4]]
    assert abs(first[0]["sum"] - first[1]["sum"]) > 1.0
    # ... that together are the single process's global batch, and the whole run is the same run.
    train, cfg = compose_cfg(
        [*RUN, f"data.batch_size={2 * PER_PROCESS}", "trainer.accelerator=cpu", "trainer.devices=1"]
    )
    single, _ = train.train(cfg, tmp_path)
    assert single["processes"] == 1 and single["global_batch"] == 2 * PER_PROCESS
    (whole,) = single["first_batches"]
    assert whole["samples"] == [0, 4]
    assert_parity(torch.tensor(first[0]["sum"] + first[1]["sum"]), torch.tensor(whole["sum"]), "first batch")
    assert ddp["head_solve"]["samples"] == single["head_solve"]["samples"] == 6
    assert_same_run(ddp, single)
    assert (
        single["final_losses"]["gan_g"] > 0 and single["final_losses"]["gan_d"] > 0
    )  # the GAN path ran (R1: steps 0, 2)


def test_resume_under_ddp_reproduces_the_uninterrupted_run(ddp_run, tmp_path):
    _, full = ddp_run
    out = tmp_path / "run"
    part = train_py(out, *RUN, *DDP, f"data.batch_size={PER_PROCESS}", "trainer.steps=2")
    assert part["steps"] == 2
    resumed = train_py(out, *RUN, *DDP, f"data.batch_size={PER_PROCESS}")  # trainer.resume=auto: last.ckpt
    assert resumed["steps"] == 4
    assert resumed["first_batches"][0]["iteration"] == 2  # it continued, not restarted
    assert_same_run(resumed, full)
