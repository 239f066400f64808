"""Building a distillation run from a composed config: networks, data, losses, trainer, summary.

``run(cfg, out_dir)`` is what ``train.py`` calls; every object is made here and injected into the
LightningModule, which only knows about steps, losses and optimizers.
"""

from __future__ import annotations

import datetime
import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

import teacher
from mobilestylegan.distill.cache import CachedTripleSource
from mobilestylegan.distill.module import DistillationModule, Optimization
from mobilestylegan.distill.schema import ConfigError
from mobilestylegan.distill.triples import TripleSource
from mobilestylegan.errors import UnknownSourceError
from mobilestylegan.io.checkpoint import save_student
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from teacher.formats.common import CheckpointError
from teacher.fs import atomic_write

STYLEGAN2_FFHQ_HINT = (
    "the official StyleGAN2 FFHQ config-f pickle is stylegan2-ffhq-config-f.pkl from NVIDIA's "
    "StyleGAN2 release (any format the loaders read works: TF .pkl, ada-pytorch .pkl, "
    "rosinality .pt); set teacher.source to its path"
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes to a temporary file and renames: a crash never leaves a
    half-written checkpoint (and never damages the previous one)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (``storage_options`` are not used)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def load_teacher(source: str, device: str = "cpu") -> torch.nn.Module:
    """The teacher ``teacher.source`` names (a file or a pretrained name), with a hint for a StyleGAN2 name."""
    from mobilestylegan.io.load import load_generator_any, resolve_source

    resolved = resolve_source(source)
    try:
        return load_generator_any(resolved, device)
    except UnknownSourceError as err:
        hint = f"; {STYLEGAN2_FFHQ_HINT}" if "stylegan2" in source.lower() else ""
        raise ConfigError(f"teacher.source: {err}{hint}") from None


def build_student(cfg: DictConfig, teacher_G: torch.nn.Module) -> StudentGenerator:
    """The student ``student`` describes: loaded from ``student.init``, or built around a copy of the teacher's
    mapping (channel-pruned from the teacher with ``init_from_teacher``, else freshly initialised)."""
    s = cfg.student
    if s.init is not None:
        if s.init_from_teacher:
            raise ConfigError(
                "student.init and student.init_from_teacher both say where the student starts: set one of them"
            )
        from mobilestylegan.io.load import load_any_student

        G = load_any_student(s.init)
        if G.synthesis.fused or G.synthesis.to_img1 is None:
            raise ConfigError(
                f"student.init: {s.init} is a fused (inference) student without auxiliary heads; "
                "training needs an unfused one with heads"
            )
        G.synthesis.requires_grad_(True)
        return G.train()
    try:
        if s.channels is not None:
            scfg = StudentConfig(
                img_resolution=s.img_resolution,
                w_dim=teacher_G.w_dim,
                channels=tuple(s.channels),
                kernel_size=s.kernel_size,
                trainable_demod=s.trainable_demod,
            )
        else:
            scfg = StudentConfig.for_resolution(
                s.img_resolution,
                width=s.width,
                w_dim=teacher_G.w_dim,
                kernel_size=s.kernel_size,
                trainable_demod=s.trainable_demod,
            )
    except ValueError as err:
        raise ConfigError(f"student: {err}") from None
    m = teacher_G.mapping
    mapping = teacher.MappingNetwork(m.z_dim, m.w_dim, m.num_layers, m.fc0.bias_gain)
    mapping.load_state_dict(m.state_dict())
    G = StudentGenerator(scfg, mapping)
    if s.init_from_teacher:
        from mobilestylegan.distill.prune import PruneError, prune_teacher

        try:
            ws, noise = _prune_samples(cfg, teacher_G) if s.prune_by != "weights" else (None, None)
            pruned = prune_teacher(teacher_G.synthesis, scfg, select=s.prune_by, ws=ws, noise=noise)
        except PruneError as err:
            raise ConfigError(f"student.init_from_teacher: {err}") from None
        G.synthesis.load_state_dict(pruned.state_dict())
    return G


@torch.no_grad()
def _prune_samples(cfg: DictConfig, teacher_G: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``student.prune_samples`` teacher W+ and noise maps for data-driven pruning (``prune_by`` data or recon),
    truncated like the training latents and seeded apart from the training and validation streams."""
    from teacher.mapping import truncate

    n = cfg.student.prune_samples
    if n < 1:
        raise ConfigError(f"student.prune_samples must be >= 1 with student.prune_by={cfg.student.prune_by}, got {n}")
    g = torch.Generator().manual_seed(cfg.trainer.seed + 2)
    z = torch.randn([n, teacher_G.mapping.z_dim], generator=g)
    noise = teacher_G.synthesis.make_noise(n, "random", device="cpu", generator=g)
    w = truncate(teacher_G.mapping.embed(z), teacher_G.mapping.w_avg, cfg.data.truncation_psi)
    return w[:, None].expand(-1, teacher_G.num_ws, -1), noise


def build_discriminator(cfg: DictConfig, student: StudentGenerator) -> teacher.Discriminator | None:
    """The discriminator ``teacher.discriminator`` names (None without a GAN loss), its minibatch-stddev groups of
    ``loss.mbstd_group_size`` samples when that is set."""
    if cfg.loss.gan <= 0:
        return None
    D = _instantiate("teacher.discriminator", cfg.teacher.discriminator)(cfg.teacher.source, student)
    group = cfg.loss.mbstd_group_size
    if group is not None:
        if group < 1:
            raise ConfigError(f"loss.mbstd_group_size must be >= 1 or null, got {group}")
        D.set_mbstd_group_size(group)
    return D


def build_logger(cfg: DictConfig, out_dir: Path) -> Logger:
    """The Lightning logger ``logger`` names, writing under ``out_dir``."""
    return _instantiate("logger", cfg.logger, save_dir=str(out_dir))


def _instantiate(key: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with one clear error naming the config key."""
    from hydra.errors import InstantiationException

    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"{key} must be a config node with _target_ (see conf/), got {node!r}")
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"{key}: {first}") from None


def build_module(cfg: DictConfig, out_dir: Path) -> tuple[DistillationModule, dict[str, Any]]:
    """The module and the objects injected into it. Everything is built on the CPU; Lightning moves the
    module to the training device and the module moves its teacher (and fills a triple cache) there when
    fit starts."""
    teacher_G = load_teacher(cfg.teacher.source, "cpu")
    student = build_student(cfg, teacher_G)
    source = build_source(cfg, teacher_G, student)
    perceptual = augment = None
    if cfg.loss.perceptual > 0:
        from mobilestylegan.distill.losses import PerceptualLoss
        from mobilestylegan.nets.vgg import load_vgg16

        vgg = load_vgg16(cfg.loss.vgg_weights, allow_random_weights=cfg.loss.allow_random_vgg)
        perceptual = PerceptualLoss(vgg, size=cfg.loss.perceptual_size)
    D = build_discriminator(cfg, student)
    if D is not None:
        from mobilestylegan.distill.augment import DiffAugment

        augment = DiffAugment(p=cfg.loss.augment_p)
    optim = build_optimization(cfg, D is not None)
    module = DistillationModule(
        student,
        source,
        D,
        loss=OmegaConf.to_object(cfg.loss),
        data=OmegaConf.to_object(cfg.data),
        optim=optim,
        perceptual=perceptual,
        augment=augment,
        data_seed=cfg.trainer.seed,
        out_dir=out_dir,
        solve_heads=cfg.student.solve_heads,
    )
    return module, {"teacher": teacher_G, "student": student, "discriminator": D, "source": source}


def build_source(
    cfg: DictConfig, teacher_G: torch.nn.Module, student: StudentGenerator
) -> TripleSource | CachedTripleSource:
    """The triple source ``data`` describes: the teacher rendering live, or a pool of ``data.cache_size`` triples
    (filled when fit starts, by the teacher or ``data.cache_renderer``)."""
    try:
        source = TripleSource(
            teacher_G,
            student.cfg,
            truncation_psi=cfg.data.truncation_psi,
            style_mixing_prob=cfg.data.style_mixing_prob,
            render_batch=cfg.data.render_batch,
        )
    except ValueError as err:
        raise ConfigError(f"student/teacher: {err}") from None
    if cfg.data.val_with_renderer and cfg.data.cache_renderer is None:
        raise ConfigError("data.val_with_renderer renders with data.cache_renderer: set one, or set it false")
    make = None
    if cfg.data.cache_renderer is not None and (cfg.data.cache_size > 0 or cfg.data.val_with_renderer):
        make = _instantiate("data.cache_renderer", cfg.data.cache_renderer)
    chunk = cfg.data.render_batch or 8
    # A MobileStyleGAN teacher compiles as its lean export graph, whose kernels are fastest at batch 1 on a CPU.
    batch = 1 if isinstance(teacher_G.synthesis, MobileSynthesisNetwork) else chunk
    renderer = dict(batch_size=batch, threads=cfg.trainer.threads, out_resolution=student.cfg.img_resolution)
    if cfg.data.val_with_renderer:  # in f32: validation measures against the teacher's own numbers
        source.eval_synthesis = make(teacher_G.synthesis, **renderer, precision="f32")
    if cfg.data.cache_size > 0:
        # None: the teacher itself renders, on the training device (the GPU when training on one).
        render_with = make(teacher_G.synthesis, **renderer) if make is not None else None
        # Filled when fit starts, on the training device.
        source = CachedTripleSource(
            source,
            size=cfg.data.cache_size,
            seed=cfg.trainer.seed + 1,
            chunk=chunk,
            progress=cfg.trainer.progress_bar,
            renderer=render_with,
        )
    return source


def build_strategy(tc: DictConfig) -> Any:
    """A ``_target_`` node is built (``trainer=ddp``: :class:`~mobilestylegan.distill.ddp.NetworkDDPStrategy`, each
    trained network wrapped on its own). A name goes to Lightning as it is (e.g. ``ddp_find_unused_parameters_true``:
    one wrapper around the whole module, with an unused-parameter search after every forward), except ``ddp``:
    Lightning's whole-module wrapper fails on this module's unused parameters, so the name means ours."""
    if isinstance(tc.strategy, DictConfig):
        return _instantiate("trainer.strategy", tc.strategy)
    if tc.strategy == "ddp":
        from mobilestylegan.distill.ddp import NetworkDDPStrategy

        return NetworkDDPStrategy()
    return tc.strategy


def build_trainer(cfg: DictConfig, out_dir: Path, n_optimizers: int) -> tuple[L.Trainer, list]:
    """The Lightning trainer of a run (nothing starts until ``fit``) and its checkpoint callbacks."""
    tc = cfg.trainer
    ckpt_dir = out_dir / "checkpoints"
    callbacks = []
    if not tc.fast_dev_run:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best",
                monitor="val/psnr",
                mode="max",
                save_top_k=1,
                save_last=True,
                every_n_train_steps=tc.checkpoint_every * n_optimizers,
            )
        )
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities import disable_possible_user_warnings

    disable_possible_user_warnings()
    # Our checkpoints hold the state after an iteration's optimizer steps on purpose: resuming from them
    # reproduces an uninterrupted run (tested), which is what this warning doubts.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    try:
        trainer = L.Trainer(
            max_steps=tc.steps * n_optimizers,
            max_epochs=-1,
            accelerator=tc.accelerator,
            devices=tc.devices,
            strategy=build_strategy(tc),
            num_nodes=tc.num_nodes,
            precision=tc.precision,
            logger=build_logger(cfg, out_dir) if not tc.fast_dev_run else False,
            callbacks=callbacks,
            val_check_interval=tc.val_every,
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
            limit_val_batches=1,
            fast_dev_run=tc.fast_dev_run,
            enable_progress_bar=tc.progress_bar,
            enable_model_summary=False,
            plugins=[AtomicCheckpointIO()],
            log_every_n_steps=10,
            max_time=datetime.timedelta(minutes=tc.max_minutes) if tc.max_minutes else None,
            default_root_dir=str(out_dir),
        )
    except (MisconfigurationException, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"trainer (accelerator={tc.accelerator}, devices={tc.devices}, strategy={tc.strategy}, "
            f"precision={tc.precision}): {first}"
        ) from None
    return trainer, callbacks


def run(
    cfg: DictConfig,
    out_dir: str | Path,
    identity: Callable[[torch.Tensor, torch.Tensor], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distil as configured; write checkpoints, the EMA student, grids and ``summary.json`` in ``out_dir``.

    Under DDP every process runs this function (Lightning starts the other processes at ``fit``); only
    global rank 0 writes files, and every process returns the same summary (but ``identity``).

    Args:
        cfg: The composed config.
        out_dir: Where the run writes.
        identity: ``(teacher images, student images) -> report`` (e.g.
            :func:`mobilestylegan.edit.identity.identity_distances`), run by process 0 on its share of the
            validation set after training; the report goes into the summary as ``identity``."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    tc = cfg.trainer
    module, objects, trainer, callbacks = fit(cfg, out_dir, build_module)
    ckpt_dir = out_dir / "checkpoints"
    history = module.val_history + ([module.final_validation] if module.final_validation else [])
    student_out = out_dir / "student.pt"
    G = module.student_ema if module.student_ema is not None else module.student
    init = cfg.student.init or ("teacher, channel-pruned" if cfg.student.init_from_teacher else "random")
    best = callbacks[0].best_model_path if callbacks else ""
    world = trainer.world_size
    steps = sorted(module.step_seconds[1:])  # the first step includes one-time work
    summary = {
        "name": cfg.name,
        "steps": module.iteration,
        "val_psnr_first": history[0]["val/psnr"],
        "val_psnr_last": history[-1]["val/psnr"],
        "baseline_psnr": module.baseline_psnr,
        "head_solve": module.head_solve,
        "final_losses": module.last_losses,
        "best_checkpoint": best,
        "last_checkpoint": str(ckpt_dir / "last.ckpt") if not tc.fast_dev_run else "",
        "student": str(student_out),
        "val_history": history,
        "processes": world,
        "batch_per_process": cfg.data.batch_size,
        "global_batch": cfg.data.batch_size * world,
        "step_seconds_median": steps[len(steps) // 2] if steps else None,
        "first_batches": module.rank_digests,
        "peak_gpu_memory_gib": module.peak_gpu_memory_gib,
        "seconds": round(time.perf_counter() - t0, 1),
        "grid": str(out_dir / "val" / "latest.png"),
    }
    if identity is not None and tc.identity and trainer.is_global_zero and not tc.fast_dev_run:
        target, pred = module.validation_renders(0, world)
        summary["identity"] = identity(target.cpu(), pred.cpu())
    if trainer.is_global_zero:
        save_student(
            student_out,
            G.cpu(),
            info={
                "source": "distillation",
                "teacher": cfg.teacher.source,
                "init": init,
                "iterations": module.iteration,
                "config": cfg.name,
            },
        )
        atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    return summary, {**objects, "module": module, "trainer": trainer}


def fit(
    cfg: DictConfig, out_dir: Path, build: Callable[[DictConfig, Path], tuple[L.LightningModule, dict[str, Any]]]
) -> tuple[Any, dict[str, Any], L.Trainer, list]:
    """The common course of a training run: threads and seeds, ``build(cfg, out_dir) -> (module, objects)``, the
    trainer, ``fit`` from the checkpoint ``trainer.resume`` names, then ``last.ckpt``. Returns the module, the built
    objects, the trainer and its checkpoint callbacks."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.trainer
    if tc.threads:
        torch.set_num_threads(tc.threads)
    L.seed_everything(tc.seed, workers=True, verbose=False)
    module, objects = build(cfg, out_dir)
    trainer, callbacks = build_trainer(cfg, out_dir, module.n_optimizers)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_path = resume_path(tc, ckpt_dir)
    trainer.fit(module, train_dataloaders=steps_loader(), val_dataloaders=steps_loader(1), ckpt_path=ckpt_path)
    if not tc.fast_dev_run:
        trainer.save_checkpoint(ckpt_dir / "last.ckpt")
    return module, objects, trainer, callbacks


def build_optimization(cfg: DictConfig, discriminator: bool) -> Optimization:
    """The ``optim`` group as :class:`Optimization` (the discriminator's optimizer only when there is one)."""
    return Optimization(
        student=_instantiate("optim.student", cfg.optim.student),
        discriminator=_instantiate("optim.discriminator", cfg.optim.discriminator) if discriminator else None,
        schedule=_instantiate("optim.schedule", cfg.optim.schedule)(total_steps=cfg.trainer.steps),
        ema_beta=cfg.optim.ema_beta,
        grad_clip=cfg.optim.grad_clip,
    )


def resume_path(tc: DictConfig, ckpt_dir: Path) -> str | None:
    """The checkpoint ``trainer.resume`` names: ``auto``, ``last.ckpt`` in ``ckpt_dir`` when there is one."""
    if tc.resume == "auto":
        last = ckpt_dir / "last.ckpt"
        return str(last) if last.is_file() else None
    if tc.resume:
        if not Path(tc.resume).is_file():
            raise ConfigError(f"trainer.resume: {tc.resume} does not exist")
        return tc.resume
    return None


def steps_loader(n: int | None = None):
    """Triples are made inside the step; the loader only counts steps (endless, or ``n`` items)."""
    from torch.utils.data import DataLoader, IterableDataset

    class _Steps(IterableDataset):
        def __iter__(self) -> Iterator[int]:
            i = 0
            while n is None or i < n:
                yield i
                i += 1

    # A private generator: a DataLoader iterator otherwise draws its base seed from the global RNG, which
    # the augmentation also uses, and a resumed run re-creates its iterators (exact resume breaks).
    return DataLoader(_Steps(), batch_size=None, generator=torch.Generator().manual_seed(0))


__all__ = ["AtomicCheckpointIO", "CheckpointError", "ConfigError", "run"]
