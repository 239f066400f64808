"""Every option of every config group composes and is instantiated: the objects a run builds from it
(teacher loader, student, data, losses, optimizers, trainer, logger, module), without fitting where a GPU
or a weights file is needed. New options are picked up from ``conf/`` automatically."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.helpers.config import compose_cfg
from tests.helpers.paths import REPO
from tests.helpers.teachers import tiny_checkpoint

GROUPS = {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted((REPO / "conf").iterdir()) if d.is_dir()}
OPTIONS = [(group, option) for group, options in GROUPS.items() for option in options]
TINY = ["experiment=tiny", "data.val_size=2", "data.baseline_samples=2"]


def test_the_groups_are_the_documented_ones():
    assert set(GROUPS) == {"data", "experiment", "logger", "loss", "optim", "student", "teacher", "trainer"}
    assert len(OPTIONS) == sum(len(v) for v in GROUPS.values()) >= 18


def fake_stylegan2_ffhq(tmp_path: Path) -> Path:
    """A tiny StyleGAN2 in the TensorFlow release format of ``stylegan2-ffhq-config-f.pkl`` (G, D, Gs)."""
    from tests.helpers.fake_checkpoints import write_tf_pkl

    ck = tiny_checkpoint(32, with_d=True, seed=3)
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    write_tf_pkl(path, ck.g_config, ck.g_state, ck.d_config, ck.d_state)
    return path


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(group, option, tmp_path, monkeypatch, no_weight_files):
    from mobilestylegan.distill import run as training
    from mobilestylegan.distill.run import ConfigError

    if group == "experiment":  # every experiment also runs a fast_dev_run step in test_training.py
        _, cfg = compose_cfg([f"experiment={option}"])
        assert cfg.name == option and cfg.trainer.steps > 0
        return
    _, cfg = compose_cfg([*TINY, f"{group}={option}"])

    if group == "teacher":
        if option == "stylegan2_ffhq":
            # Its documented default path does not exist here: one error naming the file and where to get it.
            with pytest.raises(ConfigError, match=r"teacher.source.*stylegan2-ffhq-config-f\.pkl.*NVIDIA"):
                training.load_teacher(cfg.teacher.source)
            _, cfg = compose_cfg([*TINY, "teacher=stylegan2_ffhq", f"teacher.source={fake_stylegan2_ffhq(tmp_path)}"])
            module, objects = training.build_module(cfg, tmp_path)
            # discriminator=auto: the teacher file's D judges the student's 32-px images, loaded from it.
            from teacher.formats import read_checkpoint

            d_state = read_checkpoint(cfg.teacher.source).d_state
            got = objects["discriminator"].state_dict()
            assert all(torch.equal(got[k], v) for k, v in d_state.items())
        else:
            G = training.load_teacher(cfg.teacher.source)
            assert G.img_resolution == {"tiny": 64, "mobilestylegan_ffhq": 1024}[option]
        return

    if group == "student":
        teacher_source = "embedded:tiny64" if option == "tiny" else "ffhq-1024"
        _, cfg = compose_cfg([*TINY, f"student={option}", f"teacher.source={teacher_source}"])
        G = training.build_student(cfg, training.load_teacher(cfg.teacher.source))
        assert G.img_resolution == cfg.student.img_resolution and G.synthesis.training
        if option == "mobile1024":  # the published architecture, all heads, every parameter trainable
            assert sum(p.numel() for p in G.synthesis.parameters() if p.requires_grad) == 8_852_079
        return

    if group == "trainer":
        if option == "ddp":
            # As the README runs it on GPUs (experiment=tiny sets the CPU, ffhq1024 does not): on a machine
            # without a GPU the trainer refuses with one clear line ...
            if not torch.cuda.is_available():
                _, gpu_cfg = compose_cfg(["experiment=ffhq1024", "trainer=ddp"])
                with pytest.raises(ConfigError, match="trainer .*accelerator=gpu"):
                    training.build_trainer(gpu_cfg, tmp_path, 2)
            # ... and on 2 CPU processes it is the per-network DDP strategy.
            _, cfg = compose_cfg([*TINY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
        trainer, callbacks = training.build_trainer(cfg, tmp_path, 2)
        if option == "ddp":
            from mobilestylegan.distill.ddp import NetworkDDPStrategy

            assert isinstance(trainer.strategy, NetworkDDPStrategy) and trainer.world_size == 2
            assert trainer.precision == "bf16-mixed"
        else:
            assert trainer.world_size == 1 and trainer.precision == "32-true"
        assert trainer.max_steps == 2 * cfg.trainer.steps and callbacks[0].dirpath == str(tmp_path / "checkpoints")
        return

    if group == "logger":
        from lightning.pytorch import loggers

        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        monkeypatch.setenv("WANDB_DIR", str(tmp_path))
        monkeypatch.setenv("WANDB_SILENT", "true")
        logger = training.build_logger(cfg, tmp_path)
        want = {"csv": loggers.CSVLogger, "tensorboard": loggers.TensorBoardLogger, "wandb": loggers.WandbLogger}
        assert type(logger) is want[option]
        return

    # data, loss, optim: the whole module.
    module, objects = training.build_module(cfg, tmp_path)
    if group == "loss":
        has_gan = option == "paper"
        assert (module.discriminator is not None) == has_gan and (module.frozen.perceptual is not None) == has_gan
        assert (module.frozen.augment is not None) == has_gan
    if group == "optim":
        opts = module.configure_optimizers()
        opt_g, opt_d = opts
        assert type(opt_g) is torch.optim.Adam and opt_g.defaults["lr"] == cfg.optim.student.lr
        assert opt_d.defaults["betas"] == tuple(cfg.optim.discriminator.betas)
    if group == "data":
        assert module.batch_size == cfg.data.batch_size and module.val_size == cfg.data.val_size


# Nested groups: what a run builds from a _target_ node (schedule, discriminator, cache renderer).
NESTED = {
    f"{d.parent.name}/{d.name}": sorted(p.stem for p in d.glob("*.yaml"))
    for d in sorted((REPO / "conf").glob("*/*"))
    if d.is_dir()
}


def test_the_nested_groups_are_the_documented_ones():
    assert NESTED == {"optim/schedule": ["constant", "cosine"], "teacher/discriminator": ["auto", "file", "random"]}


def test_schedules_from_config():
    from mobilestylegan.distill import run as training

    _, cfg = compose_cfg([*TINY, "trainer.steps=11"])
    module, _ = training.build_module(cfg, Path("."))
    assert [module.schedule(i) for i in (0, 5, 10)] == [1.0, 1.0, 1.0]
    _, cfg = compose_cfg(
        [
            *TINY,
            "trainer.steps=11",
            "optim/schedule=cosine",
            "optim.schedule.warmup_steps=2",
            "optim.schedule.min_lr_ratio=0.1",
        ]
    )
    module, _ = training.build_module(cfg, Path("."))
    f = [module.schedule(i) for i in range(12)]
    assert f[:2] == [0.5, 1.0] and f[2] == 1.0  # linear warm-up, then the peak
    assert f[11] == pytest.approx(0.1, abs=1e-12) and f[10] == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 8 / 9)), abs=1e-12
    )
    assert all(a >= b for a, b in zip(f[2:], f[3:]))  # non-increasing after the warm-up


def test_discriminator_options_and_clear_errors(tmp_path):
    from mobilestylegan.distill import run as training
    from mobilestylegan.distill.run import ConfigError

    d_file = fake_stylegan2_ffhq(tmp_path)  # a 32-px D: the tiny student's resolution
    _, cfg = compose_cfg([*TINY, "teacher/discriminator=file", f"teacher.discriminator.path={d_file}"])
    _, objects = training.build_module(cfg, tmp_path)
    from teacher.formats import read_checkpoint

    want = read_checkpoint(d_file).d_state
    got = objects["discriminator"].state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items()) and objects["discriminator"].training
    _, cfg = compose_cfg([*TINY, "teacher/discriminator=file", "teacher.discriminator.path=/nonexistent/D.pkl"])
    with pytest.raises((ConfigError, Exception), match="nonexistent"):
        training.build_module(cfg, tmp_path)
    # The pre-_target_ string keys are refused when the config is composed, not hours later.
    for old in ("optim.lr_schedule=cosine", "logger.kind=wandb"):
        with pytest.raises(Exception, match="lr_schedule|kind"):
            compose_cfg([*TINY, old])
    _, cfg = compose_cfg([*TINY, "data.cache_size=4", "data.cache_renderer=openvino-bf16"])
    with pytest.raises(ConfigError, match="data.cache_renderer must be a config node with _target_"):
        training.build_module(cfg, tmp_path)
