"""The distillation LightningModule: student and discriminator steps, EMA, validation, exact resume.

The networks are built elsewhere and injected. The student, its EMA and the discriminator are
registered submodules (in checkpoints); the frozen teacher (inside the triple source) and VGG16 are
held outside the module tree, so they never reach a checkpoint or an optimizer.

Randomness: sample ``i`` of iteration ``t`` draws its latents, noise and augmentations from generators
seeded by ``(data_seed, t, i)`` (:func:`mobilestylegan.distill.triples.sample_generator`). An interrupted run
therefore resumes to the same losses as an uninterrupted one, and a run is the same whatever the number of
processes: with P processes of ``batch_size`` B each, every iteration uses the global batch of P * B samples and
process r renders and trains on samples r * B .. (r + 1) * B - 1 of it; gradients, losses and validation metrics
are averaged over all P * B (see ``mobilestylegan/distill/ddp.py`` for the wrappers). The one batch-dependent part
is the discriminator's minibatch-stddev layer, whose groups form within each process's batch
(``loss.mbstd_group_size``).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mobilestylegan.distill.augment import DiffAugment
from mobilestylegan.distill.cache import CachedTripleSource
from mobilestylegan.distill.losses import (
    PerceptualLoss,
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_r1_loss,
    pixel_loss,
    r1_penalty,
)
from mobilestylegan.distill.schema import ConfigError, DataSchema, LossSchema
from mobilestylegan.distill.triples import (
    STREAM_AUG_FAKE,
    STREAM_AUG_REAL,
    STREAM_AUG_STUDENT,
    Triple,
    TripleSource,
    sample_generator,
    shard,
)
from mobilestylegan.io.images import make_grid, save_png
from mobilestylegan.student.generator import StudentGenerator
from teacher.discriminator import Discriminator
from teacher.numerics import psnr_db


@dataclass(frozen=True)
class Optimization:
    """How the networks are optimised.

    Args:
        student / discriminator: Optimizer factories (``params -> Optimizer``; the config's ``_partial_`` nodes).
        schedule: Iteration -> factor of the student's peak learning rate (:mod:`mobilestylegan.distill.schedule`).
        ema_beta: Student EMA decay (0 = validate the raw student).
        grad_clip: Student gradient-norm clip, or None.
    """

    student: Callable
    discriminator: Callable | None
    schedule: Callable[[int], float]
    ema_beta: float = 0.999
    grad_clip: float | None = None


class _Frozen:
    """Plain holder: what it keeps is not an ``nn.Module`` child, so not in state_dict or optimizers."""

    def __init__(self, **items: Any) -> None:
        self.__dict__.update(items)


class TrainingModule(L.LightningModule):
    """What the toolkit's LightningModules share (distillation, encoder training): the process layout of the running
    fit and loss values averaged over the processes."""

    def rank_world(self) -> tuple[int, int]:
        """``(global rank, number of processes)`` of the running fit; ``(0, 1)`` outside a distributed one."""
        if self._trainer is None or not (dist.is_available() and dist.is_initialized()):
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _mean_over_processes(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Detached loss values averaged over the processes (each is a mean over an equal share of the
        global batch, so this is the global batch's mean)."""
        values = torch.stack([v.detach().float() for v in parts.values()])
        _, world = self.rank_world()
        if world > 1:
            dist.all_reduce(values)
            values /= world
        return dict(zip(parts, values))


@torch.no_grad()
def ema_step(dst: nn.Module, src: nn.Module, ema_beta: float, it: int) -> None:
    """One EMA update of ``dst``'s parameters towards ``src``'s at iteration ``it`` (decay ``ema_beta``, shorter while
    the network changes fast in the first iterations); buffers are copied."""
    beta = min(ema_beta, (1 + it) / (10 + it))
    for p_ema, p in zip(dst.parameters(), src.parameters()):
        p_ema.lerp_(p.detach(), 1 - beta)
    for b_ema, b in zip(dst.buffers(), src.buffers()):
        b_ema.copy_(b)


class DistillationModule(TrainingModule):
    """Distils ``source``'s teacher into ``student``.

    Args:
        student: The student (mapping frozen inside; its synthesis network is trained).
        source: Triple source wrapping the frozen teacher (live, or a pool filled on the training device at
            the start of fit).
        discriminator: StyleGAN2 discriminator at the student's resolution, or None (no GAN loss).
        loss: Loss weights and R1 settings (``loss`` of the config).
        data: Batch size and validation set (``data`` of the config): ``batch_size`` triples per iteration and
            process (the global batch is this times the process count); ``val_size`` / ``val_seed``, the fixed
            validation set (split across processes, metrics over all of it); ``baseline_samples``, teacher
            samples in the mean image of the trivial baseline (``source.image_sum``, seeded ``val_seed + 1``).
        optim: Optimizers, learning-rate schedule, EMA and gradient clipping.
        perceptual: Perceptual loss (VGG16), or None when its weight is 0.
        augment: Differentiable augmentation before the discriminator, or None.
        data_seed: Seed of the training triples and augmentations.
        out_dir: Where validation grids are written (``val/``).
        solve_heads: Triples on which every head is solved in closed form before the first step
            (:func:`mobilestylegan.distill.heads.solve_heads`; split across processes); 0 = not solved.
    """

    def __init__(
        self,
        student: StudentGenerator,
        source: TripleSource | CachedTripleSource,
        discriminator: Discriminator | None,
        loss: LossSchema,
        data: DataSchema,
        optim: Optimization,
        perceptual: PerceptualLoss | None = None,
        augment: DiffAugment | None = None,
        data_seed: int = 0,
        out_dir: str | Path = ".",
        solve_heads: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.student = student
        weights = loss
        if weights.pixel <= 0:
            # Without the pixel loss nothing reads the auxiliary heads: frozen, so that every trainable
            # parameter gets a gradient in every student step (what DDP without an unused-parameter
            # search needs) and none is left untouched by the optimizer by accident.
            for head in _aux_heads(student.synthesis):
                head.requires_grad_(False)
        self.student_ema = copy.deepcopy(student).requires_grad_(False) if optim.ema_beta > 0 else None
        self.discriminator = discriminator if weights.gan > 0 else None
        self.frozen = _Frozen(source=source, perceptual=perceptual if weights.perceptual > 0 else None, augment=augment)
        # What the steps call: the networks themselves, or their DDP wrappers (NetworkDDPStrategy).
        self.nets = _Frozen(student=student.synthesis, discriminator=self.discriminator)
        self.make_student_opt, self.make_d_opt = optim.student, optim.discriminator
        self.loss_weights = loss
        self.batch_size, self.val_size, self.val_seed = data.batch_size, data.val_size, data.val_seed
        self.baseline_samples = data.baseline_samples
        self.ema_beta, self.grad_clip, self.schedule = optim.ema_beta, optim.grad_clip, optim.schedule
        self.out_dir = Path(out_dir)
        self.data_seed = int(data_seed)
        self.val_history: list[dict[str, float]] = []
        self.final_validation: dict[str, float] | None = None  # after fit, when it ended between validations
        self.last_losses: dict[str, float] = {}
        self.baseline_psnr: float | None = None
        self.step_seconds: list[float] = []  # wall time of each training step of this process (not saved)
        self.data_digest: dict[str, Any] | None = None  # this process's first batch, see rank_digests
        self.rank_digests: list[dict[str, Any]] = []
        self.peak_gpu_memory_gib: float | None = None  # this process's, on a CUDA device
        self.solve_heads = int(solve_heads)
        self.head_solve: dict[str, Any] | None = None  # what solving the heads found (saved in checkpoints)

    # ------------------------------------------------------------------ setup
    @property
    def n_optimizers(self) -> int:
        """Optimizers per iteration: the student's, and the discriminator's with a GAN loss."""
        return 2 if self.discriminator is not None else 1

    @property
    def iteration(self) -> int:
        """Completed training iterations (Lightning counts every optimizer step in ``global_step``)."""
        return self.global_step // self.n_optimizers

    def configure_optimizers(self) -> torch.optim.Optimizer | list[torch.optim.Optimizer]:
        """The student's optimizer over its trainable synthesis parameters (and the discriminator's, with one)."""
        opt_g = self.make_student_opt([p for p in self.student.synthesis.parameters() if p.requires_grad])
        if self.discriminator is None:
            return opt_g
        return [opt_g, self.make_d_opt(self.discriminator.parameters())]

    def wrap_networks(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Give each trained network its own data-parallel wrapper (``NetworkDDPStrategy``)."""
        self.nets.student = wrap(self.student.synthesis)
        if self.discriminator is not None:
            self.nets.discriminator = wrap(self.discriminator)

    def unwrap_networks(self) -> None:
        """Undo :meth:`wrap_networks`: the steps call the networks themselves again."""
        self.nets.student, self.nets.discriminator = self.student.synthesis, self.discriminator

    def on_fit_start(self) -> None:
        """Move the frozen networks (outside the module tree) to the device, check the batch and validation set
        against the process count, and fill a triple cache there."""
        self.frozen.source.to(self.device)
        if self.frozen.perceptual is not None:
            self.frozen.perceptual.to(self.device)
        source = self.frozen.source
        rank, world = self.rank_world()
        if self.val_size < world:
            raise ConfigError(
                f"data.val_size {self.val_size} is smaller than the {world} processes that share the "
                "validation set: use at least one validation latent per process"
            )
        if isinstance(source, CachedTripleSource):
            if self.batch_size * world > len(source):
                raise ConfigError(
                    f"data.batch_size {self.batch_size} x {world} process(es) is more than the "
                    f"{len(source)} triples of data.cache_size: lower the batch or grow the cache"
                )
            if not source.filled:  # rendered on the training device, 1 / world of it by each process
                source.fill(self.device, rank, world, broadcast=_broadcast if world > 1 else None)

    def on_train_start(self) -> None:
        """The first validation, before any training step (unless a resumed run has one)."""
        if not self.val_history:  # a fresh run (a resumed one has trained heads and a first validation)
            if self.solve_heads > 0:
                self._solve_heads()
            self._record_validation()

    def on_train_end(self) -> None:
        """The last validation, peak GPU memory and every process's first-batch fingerprint."""
        # One last validation if the run ended between validations (steps not a multiple of val_every,
        # or max_minutes). Kept out of checkpoints: a resumed run validates on its own schedule.
        if not self.val_history or self.val_history[-1]["iteration"] != self.iteration:
            self.final_validation = {"iteration": self.iteration, **self._validate(grid=True)}
        if self.device.type == "cuda":
            self.peak_gpu_memory_gib = torch.cuda.max_memory_allocated(self.device) / 2**30
        rank, world = self.rank_world()
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, self.data_digest)
            self.rank_digests = gathered
        else:
            self.rank_digests = [self.data_digest]

    def _solve_heads(self) -> None:
        """Every head of the student (and of its EMA) solved in closed form on ``solve_heads`` calibration triples,
        each process summing its share; the result is broadcast from process 0 so all processes hold the same."""
        from mobilestylegan.distill.heads import solve_heads

        t0 = time.perf_counter()
        rank, world = self.rank_world()
        triples = self.frozen.source.calibration(
            self.solve_heads, self.data_seed, self.batch_size, shard(self.solve_heads, rank, world), self.device
        )
        synthesis = self.student.synthesis
        solved = solve_heads(synthesis, triples, all_reduce=self._sum_over_processes if world > 1 else None)
        if world > 1:  # the same sums solve to the same heads; process 0's are made everyone's all the same
            for h in synthesis.heads():
                for p in h.parameters() if h is not None else ():
                    _broadcast(p.data, 0)
        if self.student_ema is not None:
            self.student_ema.load_state_dict(self.student.state_dict())
        self.head_solve = {
            "samples": solved.samples,
            "seconds": round(time.perf_counter() - t0, 1),
            "fit_psnr": dict(zip([str(r) for r in solved.resolutions], [round(p, 2) for p in solved.psnr])),
        }

    def _sum_over_processes(self, t: torch.Tensor) -> None:
        """All-reduce (sum) ``t`` in place by way of the training device (NCCL reduces CUDA tensors only)."""
        on_device = t.to(self.device)
        dist.all_reduce(on_device)
        t.copy_(on_device)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One iteration: the student step, the discriminator step (with a GAN loss), the EMA update and the logs."""
        t0 = time.perf_counter()
        opts = self.optimizers()
        opt_g, opt_d = (opts[0], opts[1]) if isinstance(opts, list) else (opts, None)
        it = self.iteration
        for g in opt_g.param_groups:  # "peak_lr" lives in the optimizer state, so it survives a resume
            g.setdefault("peak_lr", g["lr"])
            g["lr"] = g["peak_lr"] * self.schedule(it)
        triple, part, global_batch = self._training_batch(it)
        img, logged = self._student_step(opt_g, triple, it, part)
        if self.discriminator is not None:
            logged.update(self._discriminator_step(opt_d, triple.images[-1], img.detach(), it, part))
        self._update_ema(it)
        self.last_losses = {k: float(v) for k, v in logged.items()}
        self.log_dict({f"train/{k}": v for k, v in logged.items()}, on_step=True, batch_size=global_batch)
        self.log("lr", opt_g.param_groups[0]["lr"], on_step=True, batch_size=global_batch)
        self.log("loss", logged["total"], prog_bar=True, on_step=True, logger=False, batch_size=global_batch)
        self.step_seconds.append(time.perf_counter() - t0)

    def _training_batch(self, it: int) -> tuple[Triple, slice, int]:
        """This process's triples of iteration ``it``, its part of the global batch and the global batch size; the
        first batch's fingerprint is kept in ``data_digest``."""
        rank, world = self.rank_world()
        global_batch = self.batch_size * world
        part = shard(global_batch, rank, world)  # this process's samples of the global batch
        triple = self.frozen.source.sample_step(self.data_seed, it, global_batch, part, self.device)
        if self.data_digest is None:
            self.data_digest = {
                "rank": rank,
                "iteration": it,
                "samples": [part.start, part.stop],
                "sum": float(triple.ws.double().sum() + triple.images[-1].double().sum()),
            }
        return triple, part, global_batch

    def _student_step(
        self, opt_g: Any, triple: Triple, it: int, part: slice
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The student's render of the batch and one optimizer step on its loss; returns the render and the loss
        terms averaged over the processes (``total`` among them)."""
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)  # the student step only sends gradients through D to the image
        img, parts = self._student_losses(triple, it, part)
        total = parts["total"]
        logged = self._mean_over_processes(parts)  # every process then decides the same about NaNs
        self._check_finite(logged, it, "student")
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.grad_clip is not None:
            self.clip_gradients(opt_g, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        return img, logged

    def _student_losses(self, triple: Triple, it: int, part: slice) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The student's render and its loss terms (pixel and its parts, perceptual, GAN), weighted into ``total``."""
        w, D = self.loss_weights, self.discriminator
        if w.pixel > 0:
            img, wavelets = self.nets.student(triple.ws, noise=triple.noise, return_wavelets=True)
        else:
            img = self.nets.student(triple.ws, noise=triple.noise)
        parts: dict[str, torch.Tensor] = {}
        total = img.new_zeros([])
        if w.pixel > 0:
            loss, pix_parts = pixel_loss(
                wavelets, triple.wavelets, img, triple.images[-1], l1=w.pixel_l1, l2=w.pixel_l2
            )
            total = total + w.pixel * loss
            parts["pixel"] = loss
            parts.update({f"pixel/{k}": v for k, v in pix_parts.items()})
        if self.frozen.perceptual is not None:
            loss = self.frozen.perceptual(img, triple.images[-1])
            total = total + w.perceptual * loss
            parts["perceptual"] = loss
        if D is not None:
            loss = g_nonsaturating_loss(D(self._augment(img, it, part, STREAM_AUG_STUDENT)))
            total = total + w.gan * loss
            parts["gan_g"] = loss
        parts["total"] = total
        return img, parts

    def _discriminator_step(
        self, opt_d: Any, real: torch.Tensor, fake: torch.Tensor, it: int, part: slice
    ) -> dict[str, torch.Tensor]:
        """One discriminator step: the logistic loss on real (teacher) and fake (student) images, plus the lazy R1
        penalty every ``r1_interval`` iterations; returns the terms averaged over the processes."""
        w = self.loss_weights
        self.discriminator.requires_grad_(True)
        D_train = self.nets.discriminator
        loss_d = d_logistic_loss(
            D_train(self._augment(real, it, part, STREAM_AUG_REAL)),
            D_train(self._augment(fake, it, part, STREAM_AUG_FAKE)),
        )
        d_parts = {"gan_d": loss_d}
        if it % w.r1_interval == 0:
            real_r1 = real.detach().requires_grad_(True)
            penalty = r1_penalty(real_r1, D_train(real_r1))
            loss_d = loss_d + lazy_r1_loss(penalty, w.r1_gamma, w.r1_interval)
            d_parts["r1"] = penalty
        d_logged = self._mean_over_processes({**d_parts, "d_total": loss_d})
        self._check_finite({"gan_d": d_logged.pop("d_total")}, it, "discriminator")
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        return d_logged

    def _augment(self, x: torch.Tensor, it: int, part: slice, stream: int) -> torch.Tensor:
        if self.frozen.augment is None:
            return x
        gens = [sample_generator(self.data_seed, it, i, stream) for i in range(part.start, part.stop)]
        return self.frozen.augment(x, gens)

    @staticmethod
    def _check_finite(parts: dict[str, torch.Tensor], it: int, what: str) -> None:
        bad = {k: float(v.detach()) for k, v in parts.items() if not torch.isfinite(v).all()}
        if bad:
            raise FloatingPointError(
                f"non-finite {what} loss at iteration {it}: {bad}. Stopped before the optimizer step, so the "
                "last checkpoint is intact; lower the learning rate or enable optim.grad_clip, then resume."
            )

    @torch.no_grad()
    def _update_ema(self, it: int) -> None:
        if self.student_ema is None:
            return
        ema_step(self.student_ema.synthesis, self.student.synthesis, self.ema_beta, it)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Validate on the fixed set and log the metrics."""
        self._record_validation(log=True)

    def _record_validation(self, log: bool = False) -> None:
        metrics = self._validate(grid=True)
        self.val_history.append({"iteration": self.iteration, **metrics})
        if log:  # only from inside a Lightning loop (validation_step); the values are already global
            self.log_dict(metrics, batch_size=self.val_size)

    @torch.no_grad()
    def validation_renders(self, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``(teacher, student)`` images of process ``rank``'s share of the validation set, the student being the
        validated one (the EMA when there is one)."""
        val = self.frozen.source.fixed_set(self.val_size, self.val_seed, self.device, shard(self.val_size, rank, world))
        G = self.student_ema if self.student_ema is not None else self.student
        was_training = G.training
        G.eval()
        pred = torch.cat(
            [
                G.synthesis(val.ws[i : i + 8], noise=[n[i : i + 8] for n in val.noise], inference=True)
                for i in range(0, len(val), 8)
            ]
        )
        G.train(was_training)
        return val.images[-1], pred

    @torch.no_grad()
    def _validate(self, grid: bool = False, distributed: bool = True) -> dict[str, float]:
        """Metrics of the validated student on the fixed set. Under DDP every process evaluates its share
        of the set and the sums are reduced, so the numbers are those of the whole set; every process
        must call this at the same point. ``grid`` also writes the teacher | student | difference grid
        of the first 8 images (rank 0)."""
        rank, world = self.rank_world() if distributed else (0, 1)
        source = self.frozen.source
        target, pred = self.validation_renders(rank, world)
        if self.baseline_psnr is None:  # the teacher's mean image, estimated on latents the validation set lacks
            total, count = source.image_sum(self.baseline_samples, self.val_seed + 1, self.device, rank, world)
            count = torch.tensor([float(count)], dtype=torch.float64, device=total.device)
            if world > 1:
                dist.all_reduce(total)
                dist.all_reduce(count)
            self._mean_image = (total / count).float().to(target)
        names = ["val/psnr", "val/l1"] + (["val/vgg_dist"] if self.frozen.perceptual is not None else [])
        per_image = [psnr_db(pred, target), (pred - target).abs().flatten(1).mean(1)]
        if self.frozen.perceptual is not None:
            per_image.append(self.frozen.perceptual(pred, target, reduction="none"))
        if self.baseline_psnr is None:
            per_image.append(psnr_db(self._mean_image.expand_as(target), target))
        sums = torch.stack([v.double() for v in per_image]).sum(1)
        if world > 1:
            dist.all_reduce(sums)
        means = (sums / self.val_size).tolist()
        if self.baseline_psnr is None:
            self.baseline_psnr = means.pop()
        metrics = dict(zip(names, means))
        metrics["val/baseline_psnr"] = self.baseline_psnr
        if grid:
            self._save_grid(target, pred, shard(self.val_size, rank, world), world)
        return metrics

    def _save_grid(self, target: torch.Tensor, pred: torch.Tensor, part: slice, world: int) -> None:
        """Teacher | student | difference of the set's first images, gathered from every process."""
        n = min(self.val_size, 8)
        shown = torch.zeros(n, 2, *target.shape[1:], device=target.device, dtype=torch.float32)
        for g in range(part.start, min(part.stop, n)):
            shown[g, 0], shown[g, 1] = target[g - part.start], pred[g - part.start]
        if world > 1:
            dist.all_reduce(shown)
        if self.global_rank != 0:
            return
        rows = [t for i in range(n) for t in (shown[i, 0], shown[i, 1], (shown[i, 0] - shown[i, 1]).abs() * 2 - 1)]
        grid = make_grid(torch.stack(rows).cpu(), cols=3)
        (self.out_dir / "val").mkdir(parents=True, exist_ok=True)
        save_png(grid, self.out_dir / "val" / f"teacher_student_diff_{self.iteration:07d}.png")
        save_png(grid, self.out_dir / "val" / "latest.png")
        self._log_grid(grid)

    def _log_grid(self, grid: np.ndarray) -> None:
        """The grid (uint8 HWC) into image-capable loggers: TensorBoard and W&B (CSV has no images)."""
        if self._trainer is None:
            return
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/teacher_student_diff", grid, self.iteration, dataformats="HWC")
            elif isinstance(logger, WandbLogger):
                logger.log_image(key="val/teacher_student_diff", images=[grid], caption=["teacher | student | diff"])

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the ``distill`` state: what rebuilds the student, the RNG states and the validation history."""
        # The training data needs no saved state (it is a function of data_seed and the iteration); the
        # global RNG states are saved so that anything else drawing from them resumes exactly too.
        from mobilestylegan.io.checkpoint import mapping_config

        checkpoint["distill"] = {
            "student_config": self.student.cfg.to_dict(),  # so the file alone rebuilds the student
            "mapping_config": mapping_config(self.student.mapping),
            "data_seed": self.data_seed,
            **rng_states(),
            "val_history": self.val_history,
            "baseline_psnr": self.baseline_psnr,
            "last_losses": self.last_losses,
            "head_solve": self.head_solve,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`on_save_checkpoint` added; a checkpoint without it is a ValueError."""
        state = checkpoint.get("distill")
        if state is None:
            raise ValueError("not a distillation checkpoint of this toolkit (no 'distill' state)")
        restore_rng_states(state)
        self.val_history = list(state["val_history"])
        self.baseline_psnr = state["baseline_psnr"]
        self.last_losses = dict(state["last_losses"])
        self.head_solve = state.get("head_solve")


def _aux_heads(synthesis: nn.Module) -> list[nn.Module]:
    """The student's auxiliary wavelet heads (every head but the last, which makes the image)."""
    heads = [synthesis.to_img1] + [block.to_img for block in synthesis.layers[:-1]]
    return [h for h in heads if h is not None]


def _broadcast(tensor: torch.Tensor, src: int) -> None:
    dist.broadcast(tensor, src)


def rng_states() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, Python, numpy) as checkpoint entries; numpy's as plain Python values, so
    checkpoints stay loadable with ``weights_only=True``."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python_rng": random.getstate(),
        "numpy_rng": _numpy_state_plain(),
    }


def restore_rng_states(state: dict[str, Any]) -> None:
    """Set the global RNGs from :func:`rng_states`' entries in ``state``."""
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
    name, keys, pos, has_gauss, gauss = state["numpy_rng"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


def _numpy_state_plain() -> tuple:
    """numpy's global RNG state as plain Python values (checkpoints stay loadable with weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return name, keys.tolist(), int(pos), int(has_gauss), float(gauss)
