"""The distillation LightningModule: student and discriminator steps, EMA, validation, exact resume.

The networks are built elsewhere and injected. The student, its EMA and the discriminator are
registered submodules (in checkpoints); the frozen teacher (inside the triple source) and VGG16 are
held outside the module tree, so they never reach a checkpoint or an optimizer. Each iteration makes
its own triples on the training device from a ``torch.Generator`` whose state is checkpointed with
the global RNG states, so an interrupted run resumes to the same losses as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch

from mobilestylegan.data import TripleSource
from mobilestylegan.generator import StudentGenerator
from mobilestylegan.images import make_grid, save_png
from mobilestylegan.losses import (DiffAugment, PerceptualLoss, d_logistic_loss, g_nonsaturating_loss, lazy_r1_loss,
                                   pixel_loss, r1_penalty)
from teacher.discriminator import Discriminator


@dataclass
class LossWeights:
    """Args: see ``mobilestylegan.schema.LossSchema``."""

    pixel: float = 1.0
    perceptual: float = 1.0
    gan: float = 0.1
    pixel_l1: float = 1.0
    pixel_l2: float = 1.0
    r1_gamma: float = 10.0
    r1_interval: int = 16


class _Frozen:
    """Plain holder: what it keeps is not an ``nn.Module`` child, so not in state_dict or optimizers."""

    def __init__(self, **items: Any) -> None:
        self.__dict__.update(items)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images on [-1, 1] (peak-to-peak 2), both clamped to that range."""
    mse = (pred.clamp(-1, 1) - target.clamp(-1, 1)).square().mean(dim=[1, 2, 3])
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


class DistillationModule(L.LightningModule):
    """Distils ``source``'s teacher into ``student``.

    Args:
        student: The student (mapping frozen inside; its synthesis network is trained).
        source: Triple source wrapping the frozen teacher.
        discriminator: StyleGAN2 discriminator at the student's resolution, or None (no GAN loss).
        student_optimizer / discriminator_optimizer: Optimizer factories (``params -> Optimizer``).
        weights: Loss weights and R1 settings.
        perceptual: Perceptual loss (VGG16), or None when its weight is 0.
        augment: Differentiable augmentation before the discriminator, or None.
        batch_size: Triples per iteration.
        val_size / val_seed: The fixed validation set.
        baseline_samples: Teacher samples in the mean image of the trivial baseline (``source.mean_image``,
            seeded ``val_seed + 1``, so independent of the validation set).
        data_seed: Seed of the training triples' generator.
        ema_beta: Student EMA decay (0 = validate the raw student).
        grad_clip: Student gradient-norm clip, or None.
        lr_schedule / warmup_steps / total_steps / min_lr_ratio: Student learning-rate schedule.
        out_dir: Where validation grids are written (``val/``).
    """

    def __init__(self, student: StudentGenerator, source: TripleSource, discriminator: Discriminator | None,
                 student_optimizer: Callable, discriminator_optimizer: Callable | None, weights: LossWeights,
                 perceptual: PerceptualLoss | None = None, augment: DiffAugment | None = None, batch_size: int = 8,
                 val_size: int = 16, val_seed: int = 1234, baseline_samples: int = 256, data_seed: int = 0,
                 ema_beta: float = 0.999, grad_clip: float | None = None, lr_schedule: str = "constant",
                 warmup_steps: int = 0, total_steps: int = 1, min_lr_ratio: float = 0.05,
                 out_dir: str | Path = ".") -> None:
        super().__init__()
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        self.automatic_optimization = False
        self.student = student
        self.student_ema = copy.deepcopy(student).requires_grad_(False) if ema_beta > 0 else None
        self.discriminator = discriminator if weights.gan > 0 else None
        self.frozen = _Frozen(source=source, perceptual=perceptual if weights.perceptual > 0 else None,
                              augment=augment)
        self.make_student_opt, self.make_d_opt = student_optimizer, discriminator_optimizer
        self.w = weights
        self.batch_size, self.val_size, self.val_seed = batch_size, val_size, val_seed
        self.baseline_samples = baseline_samples
        self.ema_beta, self.grad_clip = ema_beta, grad_clip
        self.lr_schedule, self.warmup_steps, self.total_steps = lr_schedule, warmup_steps, max(total_steps, 1)
        self.min_lr_ratio = min_lr_ratio
        self.out_dir = Path(out_dir)
        self.data_rng = torch.Generator().manual_seed(data_seed)
        self.val_history: list[dict[str, float]] = []
        self.last_losses: dict[str, float] = {}
        self.baseline_psnr: float | None = None

    # ------------------------------------------------------------------ setup
    @property
    def n_optimizers(self) -> int:
        return 2 if self.discriminator is not None else 1

    @property
    def iteration(self) -> int:
        """Completed training iterations (Lightning counts every optimizer step in ``global_step``)."""
        return self.global_step // self.n_optimizers

    def configure_optimizers(self):
        opt_g = self.make_student_opt(self.student.synthesis.parameters())
        if self.discriminator is None:
            return opt_g
        return [opt_g, self.make_d_opt(self.discriminator.parameters())]

    def on_fit_start(self) -> None:
        # The frozen networks live outside the module tree: move them with it.
        self.frozen.source.to(self.device)
        if self.frozen.perceptual is not None:
            self.frozen.perceptual.to(self.device)

    def on_train_start(self) -> None:
        if not self.val_history:  # the first validation runs before any training step
            self._validate(record=True)

    # ------------------------------------------------------------------ training
    def _lr_factor(self, it: int) -> float:
        if it < self.warmup_steps:
            return (it + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return 1.0
        t = min(1.0, (it - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opts = self.optimizers()
        opt_g, opt_d = (opts[0], opts[1]) if isinstance(opts, list) else (opts, None)
        it = self.iteration
        for g in opt_g.param_groups:  # "peak_lr" lives in the optimizer state, so it survives a resume
            g.setdefault("peak_lr", g["lr"])
            g["lr"] = g["peak_lr"] * self._lr_factor(it)

        triple = self.frozen.source.sample(self.batch_size, self.data_rng, self.device)
        D = self.discriminator
        if D is not None:
            D.requires_grad_(False)
        img, wavelets = self.student.synthesis(triple.ws, noise=triple.noise, return_wavelets=True)
        parts: dict[str, torch.Tensor] = {}
        total = img.new_zeros([])
        if self.w.pixel > 0:
            loss, pix_parts = pixel_loss(wavelets, triple.wavelets, img, triple.images[-1],
                                         l1=self.w.pixel_l1, l2=self.w.pixel_l2)
            total = total + self.w.pixel * loss
            parts["pixel"] = loss
            parts.update({f"pixel/{k}": v for k, v in pix_parts.items()})
        if self.frozen.perceptual is not None:
            loss = self.frozen.perceptual(img, triple.images[-1])
            total = total + self.w.perceptual * loss
            parts["perceptual"] = loss
        if D is not None:
            loss = g_nonsaturating_loss(D(self._augment(img)))
            total = total + self.w.gan * loss
            parts["gan_g"] = loss
        parts["total"] = total
        self._check_finite(parts, it, "student")
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.grad_clip is not None:
            self.clip_gradients(opt_g, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()

        if D is not None:
            D.requires_grad_(True)
            real, fake = triple.images[-1], img.detach()
            loss_d = d_logistic_loss(D(self._augment(real)), D(self._augment(fake)))
            parts["gan_d"] = loss_d
            if it % self.w.r1_interval == 0:
                real_r1 = real.detach().requires_grad_(True)
                penalty = r1_penalty(real_r1, D(real_r1))
                loss_d = loss_d + lazy_r1_loss(penalty, self.w.r1_gamma, self.w.r1_interval)
                parts["r1"] = penalty
            self._check_finite({"gan_d": loss_d}, it, "discriminator")
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()

        self._update_ema(it)
        self.last_losses = {k: float(v.detach()) for k, v in parts.items()}
        bs = self.batch_size
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, on_step=True, batch_size=bs)
        self.log("lr", opt_g.param_groups[0]["lr"], on_step=True, batch_size=bs)
        self.log("loss", total.detach(), prog_bar=True, on_step=True, logger=False, batch_size=bs)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.frozen.augment is None else self.frozen.augment(x)

    @staticmethod
    def _check_finite(parts: dict[str, torch.Tensor], it: int, what: str) -> None:
        bad = {k: float(v.detach()) for k, v in parts.items() if not torch.isfinite(v).all()}
        if bad:
            raise FloatingPointError(
                f"non-finite {what} loss at iteration {it}: {bad}. Stopped before the optimizer step, so the "
                "last checkpoint is intact; lower the learning rate or enable optim.grad_clip, then resume.")

    @torch.no_grad()
    def _update_ema(self, it: int) -> None:
        if self.student_ema is None:
            return
        beta = min(self.ema_beta, (1 + it) / (10 + it))  # short memory while the student changes fast
        src, dst = self.student.synthesis, self.student_ema.synthesis
        for p_ema, p in zip(dst.parameters(), src.parameters()):
            p_ema.lerp_(p.detach(), 1 - beta)
        for b_ema, b in zip(dst.buffers(), src.buffers()):
            b_ema.copy_(b)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._validate(record=not self.trainer.sanity_checking, log=True)

    @torch.no_grad()
    def _validate(self, record: bool, log: bool = False) -> dict[str, float]:
        """Evaluate on the fixed set; ``log`` only from inside a Lightning loop (validation_step)."""
        val = self.frozen.source.fixed_set(self.val_size, self.val_seed, self.device)
        G = self.student_ema if self.student_ema is not None else self.student
        was_training = G.training
        G.eval()
        pred = torch.cat([G.synthesis(val.ws[i:i + 8], noise=[n[i:i + 8] for n in val.noise])
                          for i in range(0, len(val), 8)])
        G.train(was_training)
        target = val.images[-1]
        metrics = {"val/psnr": psnr(pred, target).mean().item(), "val/l1": (pred - target).abs().mean().item()}
        if self.frozen.perceptual is not None:
            metrics["val/vgg_dist"] = self.frozen.perceptual(pred, target).item()
        if self.baseline_psnr is None:  # the teacher's mean image, estimated on latents the validation set lacks
            mean_img = self.frozen.source.mean_image(self.baseline_samples, self.val_seed + 1, self.device)
            self.baseline_psnr = psnr(mean_img.to(target).expand_as(target), target).mean().item()
        metrics["val/baseline_psnr"] = self.baseline_psnr
        if record:
            self.val_history.append({"iteration": self.iteration, **metrics})
            if log:
                self.log_dict(metrics, sync_dist=True, batch_size=self.val_size)
            if self.global_rank == 0:
                self._save_grid(target, pred)
        return metrics

    def _save_grid(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        n = min(len(target), 8)
        rows = [t for i in range(n) for t in (target[i], pred[i], (target[i] - pred[i]).abs() * 2 - 1)]
        grid = make_grid(torch.stack(rows).float().cpu(), cols=3)
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
        checkpoint["distill"] = {
            "data_rng": self.data_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": random.getstate(),
            "numpy_rng": _numpy_state_plain(),
            "val_history": self.val_history,
            "baseline_psnr": self.baseline_psnr,
            "last_losses": self.last_losses,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("distill")
        if state is None:
            raise ValueError("not a distillation checkpoint of this toolkit (no 'distill' state)")
        self.data_rng.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        random.setstate(state["python_rng"])
        name, keys, pos, has_gauss, gauss = state["numpy_rng"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        self.val_history = list(state["val_history"])
        self.baseline_psnr = state["baseline_psnr"]
        self.last_losses = dict(state["last_losses"])


def _numpy_state_plain() -> tuple:
    """numpy's global RNG state as plain Python values (checkpoints stay loadable with weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return name, keys.tolist(), int(pos), int(has_gauss), float(gauss)
