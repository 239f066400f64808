"""Distillation: config composition, fast_dev_run of every experiment, learning, exact resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from PIL import Image

from tests.helpers.config import compose_cfg, run_tiny
from tests.helpers.paths import REPO

ALL_EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
# Distillations; the encoder_* experiments train encoders (tests/test_encoder.py)
EXPERIMENTS = [e for e in ALL_EXPERIMENTS if not e.startswith("encoder_")]


def test_experiments_exist():
    assert ALL_EXPERIMENTS == ["demo_cpu", "encoder_ffhq1024", "encoder_tiny", "ffhq1024", "ffhq256", "tiny"]
    for exp in ALL_EXPERIMENTS:
        _, cfg = compose_cfg([f"experiment={exp}"])
        assert cfg.task == ("encoder" if exp.startswith("encoder_") else "distill")


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_composes(exp):
    _, cfg = compose_cfg([f"experiment={exp}"])
    assert cfg.trainer.steps > 0 and cfg.data.batch_size > 0
    if exp in ("ffhq1024", "ffhq256"):
        assert cfg.loss.gan == 0.1 and cfg.loss.perceptual == 1.0 and cfg.loss.pixel == 1.0
        assert cfg.optim.student.lr == 5e-4 and list(cfg.optim.student.betas) == [0.9, 0.999]


def test_typos_fail_at_composition():
    with pytest.raises(ConfigCompositionException):
        compose_cfg(["experiment=tiny", "loss.perceptal=1.0"])
    with pytest.raises(ConfigCompositionException):
        compose_cfg(["experiment=tiny", "data.batch_size=many"])


def tiny_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return ["experiment=tiny", *extra]


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_fast_dev_run_every_experiment(exp, tmp_path):
    """One training and one validation step of each experiment, on tiny stand-ins for the heavy parts
    (the StyleGAN2 FFHQ weights are not here; the published student teaches a 32-px student)."""
    small = [
        "data.batch_size=2",
        "data.val_size=2",
        "data.baseline_samples=2",
        "loss.allow_random_vgg=true",
        "loss.perceptual_size=32",
        "data.cache_size=0",
        "student.solve_heads=2",  # live teacher renders: a few (the demo solves on 512 of its pool)
        "trainer.fast_dev_run=true",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.progress_bar=false",
    ]
    if exp in ("ffhq1024", "ffhq256"):
        # Same recipe (pixel + VGG + GAN/R1) on the bundled tiny teacher: the StyleGAN2 FFHQ weights are not here.
        small += ["teacher=tiny", "student.img_resolution=32", "student.channels=[16,16,8]"]
    train, cfg = compose_cfg([f"experiment={exp}", *small])
    summary, objects = train.train(cfg, tmp_path)
    assert summary["steps"] == 1
    saved = json.loads((tmp_path / "summary.json").read_text())
    for key in ("steps", "val_psnr_first", "val_psnr_last", "baseline_psnr", "final_losses", "best_checkpoint"):
        assert key in saved
    assert all(torch.isfinite(torch.tensor(v)) for v in saved["final_losses"].values())
    if exp in ("ffhq1024", "ffhq256", "tiny"):
        assert {"pixel", "perceptual", "gan_g", "gan_d"} <= set(saved["final_losses"])


def test_tiny_learns_and_writes_artefacts(tmp_path):
    summary, objects = run_tiny(
        tmp_path,
        "trainer.steps=40",
        "trainer.val_every=20",
        "loss.gan=0",
        "loss.perceptual=0",
        "optim.student.lr=5e-3",
        "optim.ema_beta=0.9",
    )
    hist = summary["val_history"]
    assert [h["iteration"] for h in hist] == [0, 20, 40]
    assert summary["val_psnr_last"] > summary["val_psnr_first"] + 1.0  # it learns
    # The baseline predicts the teacher's mean image, estimated on latents the validation set does not hold
    # (data.baseline_samples = 256, seeded val_seed + 1), not the validation set's own mean. Recomputed here
    # from the documented draws (per sample: z, then the teacher's noise maps, from one generator) with the
    # teacher itself, a hand-written box filter and PSNR on [-1, 1] (peak-to-peak 2).
    teacher_G = objects["teacher"]

    def renders(n: int, seed: int) -> torch.Tensor:
        g, out = torch.Generator().manual_seed(seed), []
        for _ in range(n):
            z = torch.randn([1, teacher_G.mapping.z_dim], generator=g)
            noise = teacher_G.synthesis.make_noise(1, "random", device="cpu", generator=g)
            with torch.no_grad():
                img = teacher_G.synthesis(teacher_G.mapping(z), noise=noise).double()  # [1, 3, 64, 64], no psi
            out.append(img.reshape(1, 3, 32, 2, 32, 2).mean(dim=(3, 5)))  # 64 -> 32 box filter
        return torch.cat(out)

    def mean_psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
        mse = (pred.clamp(-1, 1) - target.clamp(-1, 1)).square().mean(dim=(1, 2, 3))
        return float((10 * torch.log10(4 / mse)).mean())

    val = renders(4, 1234)
    want = mean_psnr(renders(256, 1235).mean(0, keepdim=True).expand_as(val), val)
    assert abs(summary["baseline_psnr"] - want) < 1e-3  # float32 renders vs this float64 mean: ~1e-5 dB
    assert abs(summary["baseline_psnr"] - mean_psnr(val.mean(0, keepdim=True).expand_as(val), val)) > 1e-2
    # Checkpoints hold student, EMA and optimizer state but never the teacher or VGG.
    ck = torch.load(summary["last_checkpoint"], weights_only=False)
    keys = ck["state_dict"].keys()
    assert any(k.startswith("student.synthesis.") for k in keys) and any(k.startswith("student_ema.") for k in keys)
    assert not any("teacher" in k or "vgg" in k for k in keys)
    assert "distill" in ck and len(ck["optimizer_states"]) == 1
    assert (tmp_path / "val" / "latest.png").is_file() and Path(summary["student"]).is_file()
    from mobilestylegan.io.checkpoint import load_student

    G = load_student(summary["student"])
    assert G.img_resolution == 32


def losses_of(summary) -> dict:
    return summary["final_losses"]


def test_exact_resume(tmp_path):
    """A run interrupted at iteration 4 and resumed reaches the same losses as an uninterrupted one."""
    common = ["trainer.val_every=4", "trainer.checkpoint_every=4", "loss.r1_interval=2"]
    full, _ = run_tiny(tmp_path / "full", "trainer.steps=8", *common)
    part, _ = run_tiny(tmp_path / "part", "trainer.steps=4", *common)
    assert part["steps"] == 4
    resumed, _ = run_tiny(tmp_path / "part", "trainer.steps=8", *common)  # resume=auto picks up last.ckpt
    assert resumed["steps"] == 8
    a, b = losses_of(full), losses_of(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(a[k])), (k, a[k], b[k])
    assert resumed["val_psnr_first"] == full["val_psnr_first"]
    assert abs(resumed["val_psnr_last"] - full["val_psnr_last"]) < 1e-4


def test_bad_configuration_stops_early(tmp_path):
    from mobilestylegan.distill.run import ConfigError

    with pytest.raises(ConfigError, match="teacher.source"):
        run_tiny(tmp_path, "teacher.source=/nonexistent/stylegan2-ffhq-config-f.pkl")
    with pytest.raises(ConfigError, match="student"):
        run_tiny(tmp_path, "student.img_resolution=128", "student.channels=[16,16,16,16,8]")
    with pytest.raises(ConfigError, match="trainer.resume"):
        run_tiny(tmp_path, "trainer.resume=/nonexistent.ckpt")
    with pytest.raises(ConfigError, match="init_from_teacher.*needs a MobileStyleGAN teacher"):
        run_tiny(tmp_path, "student.init_from_teacher=true")
    with pytest.raises(ConfigError, match="set one of them"):
        run_tiny(tmp_path, "student.init_from_teacher=true", "student.init=ffhq-1024")


def test_nan_stops_without_corrupting_the_checkpoint(tmp_path):
    common = ["trainer.val_every=4", "trainer.checkpoint_every=4", "loss.gan=0", "loss.perceptual=0"]
    run_tiny(tmp_path, "trainer.steps=4", *common)
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(FloatingPointError, match="non-finite student loss"):
        run_tiny(tmp_path, "trainer.steps=8", "data.truncation_psi=nan", *common)  # NaN latents
    assert last.read_bytes() == before
    ck = torch.load(last, weights_only=False)
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


def test_run_ending_between_validations_validates_the_final_student(tmp_path):
    """steps not a multiple of val_every (or a max_minutes stop): one more validation after fit, on the
    trained EMA, and the first validation's metrics are not logged again at the end."""
    summary, objects = run_tiny(
        tmp_path, "trainer.steps=6", "trainer.val_every=4", "loss.gan=0", "loss.perceptual=0", "optim.student.lr=5e-3"
    )
    assert [h["iteration"] for h in summary["val_history"]] == [0, 4, 6]
    module = objects["module"]
    again = module._validate()["val/psnr"]
    assert abs(again - summary["val_psnr_last"]) < 1e-6 and summary["val_psnr_last"] > summary["val_psnr_first"]
    import csv

    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    logged = [float(r["val/psnr"]) for r in rows if r.get("val/psnr")]
    # Only in-loop validations are logged: the one at iteration 4, not the first (before training) nor the
    # final one after fit.
    at_4 = next(h["val/psnr"] for h in summary["val_history"] if h["iteration"] == 4)
    assert len(logged) == 1 and logged[0] == pytest.approx(at_4, rel=1e-6), logged


def test_tensorboard_logger_gets_metrics_and_the_grid(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_tiny(
        tmp_path, "logger=tensorboard", "trainer.steps=10", "trainer.val_every=5", "loss.gan=0", "loss.perceptual=0"
    )
    events = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = acc.Tags()
    assert {"val/psnr", "val/l1", "train/total"} <= set(tags["scalars"])
    images = acc.Images("val/teacher_student_diff")
    assert [im.step for im in images] == [0, 5, 10]  # before training, then every validation
    assert images[-1].width == Image.open(tmp_path / "val" / "latest.png").width


def test_wandb_logger_runs_offline_without_a_key(tmp_path, monkeypatch):
    """No API key: W&B writes an offline run (never waits for a server), with the grid as an image."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_tiny(tmp_path, "logger=wandb", "trainer.steps=2", "trainer.val_every=2", "loss.gan=0", "loss.perceptual=0")
    runs = list(tmp_path.rglob("offline-run-*"))
    assert runs, "no offline W&B run directory"
    assert list(runs[0].rglob("*.wandb")), "the offline run holds no data file"
    assert list(runs[0].rglob("val/teacher_student_diff_*.png")), "the grid was not logged as an image"


@pytest.mark.parametrize(
    "losses",
    [
        ["loss.pixel=1", "loss.perceptual=1", "loss.gan=0.1"],  # the paper
        ["loss.pixel=1", "loss.perceptual=0", "loss.gan=0"],  # pixel only (the demo)
        ["loss.pixel=0", "loss.perceptual=1", "loss.gan=0"],  # no pixel loss: the auxiliary heads are frozen
        ["loss.pixel=0", "loss.perceptual=0", "loss.gan=0.1"],  # GAN only
    ],
    ids=["paper", "pixel", "perceptual", "gan"],
)
def test_every_trainable_parameter_gets_a_gradient_in_its_step(losses, tmp_path):
    """What data-parallel training without an unused-parameter search relies on (mobilestylegan/distill/ddp.py):
    in the student step every trainable student parameter has a gradient and the discriminator none; in
    the discriminator step every discriminator parameter has one. Checked at every optimizer step of a
    2-iteration run, R1 step included."""
    import lightning as L

    from mobilestylegan.distill import run as training

    _, cfg = compose_cfg(
        [
            "experiment=tiny",
            *losses,
            "trainer.steps=2",
            "trainer.val_every=2",
            "trainer.checkpoint_every=2",
            "data.val_size=2",
            "data.baseline_samples=2",
            "logger=csv",
        ]
    )
    module, _ = training.build_module(cfg, tmp_path)
    trainer, _ = training.build_trainer(cfg, tmp_path, module.n_optimizers)
    seen, d_grads = [], []

    class Check(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            params = [p for g in optimizer.param_groups for p in g["params"]]
            is_student = any(p is q for p in params for q in pl_module.student.synthesis.parameters())
            trained = (
                list(pl_module.student.synthesis.parameters())
                if is_student
                else list(pl_module.discriminator.parameters())
            )
            missing = [i for i, p in enumerate(trained) if p.requires_grad and p.grad is None]
            seen.append(("student" if is_student else "discriminator", len(missing)))
            if pl_module.discriminator is None:
                return
            now = [None if p.grad is None else p.grad.clone() for p in pl_module.discriminator.parameters()]
            if is_student and d_grads:  # the student step left D's gradients as the last D step made them
                assert all(torch.equal(a, b) for a, b in zip(now, d_grads[-1]))
            if not is_student:
                d_grads.append(now)

    trainer.callbacks.append(Check())
    trainer.fit(module, train_dataloaders=training.steps_loader(), val_dataloaders=training.steps_loader(1))
    has_d = module.discriminator is not None
    want = [("student", 0), ("discriminator", 0)] * 2 if has_d else [("student", 0)] * 2
    assert seen == want
    frozen = [p for p in module.student.synthesis.parameters() if not p.requires_grad]
    assert bool(frozen) == (cfg.loss.pixel == 0)  # only the unread auxiliary heads are ever frozen


def test_cache_fills_on_the_training_device_when_fit_starts(tmp_path):
    """Building a run renders nothing (the teacher is still on the CPU then); the pool is rendered where the
    module trains when fit starts, and kept on the CPU."""
    from mobilestylegan.distill import run as training
    from mobilestylegan.distill.cache import CachedTripleSource

    _, cfg = compose_cfg(
        [
            "experiment=tiny",
            "data.cache_size=8",
            "trainer.fast_dev_run=true",
            "data.val_size=2",
            "data.baseline_samples=2",
        ]
    )
    module, objects = training.build_module(cfg, tmp_path)
    source = objects["source"]
    assert isinstance(source, CachedTripleSource) and not source.filled
    rendered_on = []
    teacher_synthesis = source.source.teacher.synthesis
    original = teacher_synthesis.forward

    def spy(ws, *args, **kwargs):
        rendered_on.append(ws.device)
        return original(ws, *args, **kwargs)

    teacher_synthesis.forward = spy
    trainer, _ = training.build_trainer(cfg, tmp_path, module.n_optimizers)
    trainer.fit(module, train_dataloaders=training.steps_loader(), val_dataloaders=training.steps_loader(1))
    assert source.filled and source.images.device.type == "cpu" and source.images.shape[0] == 8
    assert rendered_on and set(rendered_on) == {module.device}


def test_too_few_validation_latents_or_pool_triples_for_the_processes(tmp_path):
    """Checked when fit starts, as the process count is known only then: one clear line each."""
    from mobilestylegan.distill import run as training
    from mobilestylegan.distill.run import ConfigError

    _, cfg = compose_cfg(["experiment=tiny", "data.val_size=1", "data.cache_size=6", "data.batch_size=4"])
    module, _ = training.build_module(cfg, tmp_path)
    module.rank_world = lambda: (0, 2)
    with pytest.raises(ConfigError, match="data.val_size 1 is smaller than the 2 processes"):
        module.on_fit_start()
    module.val_size = 2
    with pytest.raises(ConfigError, match=r"data.batch_size 4 x 2 process\(es\) is more than the 6 triples"):
        module.on_fit_start()


def test_student_pruned_from_a_mobilestylegan_teacher_with_heads_solved(tmp_path):
    """student.init_from_teacher (prune_by=recon) + student.solve_heads on a tiny MobileStyleGAN teacher file: the
    heads are solved before the first validation (a higher step-0 PSNR than the pruned teacher's heads give), the
    summary says so, and a resumed run does not solve them again (it reaches the uninterrupted run's losses)."""
    from mobilestylegan.io.checkpoint import save_student
    from tests.helpers.students import tiny_student

    teacher_file = save_student(tmp_path / "teacher.pt", tiny_student(64, w_dim=32))
    common = [
        f"teacher.source={teacher_file}",
        "student.init_from_teacher=true",
        "student.channels=[8,8,8]",
        "data.style_mixing_prob=0",
        "loss.gan=0",
        "loss.perceptual=0",
        "trainer.val_every=2",
        "trainer.checkpoint_every=2",
    ]
    plain, _ = run_tiny(tmp_path / "plain", "trainer.steps=2", *common)
    solve = ["student.solve_heads=16", "student.prune_by=recon", "student.prune_samples=8"]
    full, _ = run_tiny(tmp_path / "full", "trainer.steps=4", *common, *solve)
    assert plain["head_solve"] is None
    hs = full["head_solve"]
    assert hs["samples"] == 16 and sorted(hs["fit_psnr"], key=int) == ["8", "16", "32"]
    assert full["val_psnr_first"] > plain["val_psnr_first"], (full["val_psnr_first"], plain["val_psnr_first"])
    run_tiny(tmp_path / "part", "trainer.steps=2", *common, *solve)
    resumed, _ = run_tiny(tmp_path / "part", "trainer.steps=4", *common, *solve)
    assert resumed["head_solve"]["fit_psnr"] == hs["fit_psnr"] and resumed["val_psnr_first"] == full["val_psnr_first"]
    for k, v in losses_of(full).items():
        assert abs(losses_of(resumed)[k] - v) <= 1e-5 * max(1.0, abs(v)), k


def test_summary_reports_identity_distances(tmp_path):
    """trainer.identity: after training, process 0 measures FaceNet identity distances of the validated student's
    faces to the teacher's (train.py passes mobilestylegan.edit.identity.identity_distances); without FaceNet the
    summary says why not."""
    from mobilestylegan.edit.faces import identity_model_path

    summary, _ = run_tiny(
        tmp_path, "trainer.steps=2", "trainer.val_every=2", "loss.gan=0", "loss.perceptual=0", "trainer.identity=true"
    )
    ident = summary["identity"]
    assert json.loads((tmp_path / "summary.json").read_text())["identity"] == ident
    if identity_model_path() is None:
        assert ident == {"measured": False, "reason": "FaceNet is not installed (bash scripts/setup.sh --identity)"}
    else:
        assert ident["measured"] and ident["count"] == 4 and len(ident["distances"]) == 4
        assert ident["worst"] >= ident["median"] >= 0
    off, _ = run_tiny(tmp_path / "off", "trainer.steps=1", "loss.gan=0", "loss.perceptual=0")
    assert "identity" not in off  # experiment=tiny turns it off
