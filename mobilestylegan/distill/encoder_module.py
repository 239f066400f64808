"""The encoder's LightningModule: a data-free latent regression with EMA, validation by rendering, exact resume.

A step draws ``batch_size`` pool samples per process (sample ``i`` of iteration ``t`` picks its pool index and its
augmentation from its own counter-based generators, as distillation does, so a run resumes exactly and is the same
whatever the number of processes), augments the images (:class:`~mobilestylegan.distill.encoder_augment.PhotoAugment`)
and regresses the encoder's whitened live entries onto the sample's (mean squared error in whitened W: every
direction of W weighs alike, whatever its spread).

Validation encodes the fixed validation faces with the validated encoder (the EMA when there is one), renders the
latents with the generator and reports the PSNR against the faces (``val/psnr``, at the validation set's
resolution), the whitened latent error (``val/latent``) and, once, the PSNR of the mean latent
(``val/baseline_psnr``: the generator's mean face for every input, where projection from ``mean`` starts).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mobilestylegan.distill.encoder_augment import PhotoAugment
from mobilestylegan.distill.encoder_data import (
    STREAM_ENCODER_AUG,
    STREAM_ENCODER_PICK,
    EncoderPool,
    Renderer,
    ValidationSet,
    from_uint8,
)
from mobilestylegan.distill.encoder_proxy import CoarseRender
from mobilestylegan.distill.module import (
    Optimization,
    TrainingModule,
    _Frozen,
    ema_step,
    restore_rng_states,
    rng_states,
)
from mobilestylegan.distill.triples import sample_generator, shard
from mobilestylegan.io.images import make_grid, save_png
from mobilestylegan.nets.encoder import LatentEncoder
from teacher.numerics import psnr_db


class EncoderModule(TrainingModule):
    """Trains ``encoder`` to invert ``generator`` from the generator's own faces.

    Args:
        encoder: The encoder (its whitening already set).
        generator: The frozen generator (for validation renders; held outside the module tree).
        pool: The training pairs (filled on the training process when fit starts).
        val: The fixed validation faces.
        render: ``(ws, noise) -> images`` at the validation set's resolution (float32), for validation.
        optim: Optimizer factory (``student``), schedule, EMA and gradient clipping (the distillation's).
        augment: The photo augmentation of the training images.
        batch_size: Samples per iteration and process.
        data_seed: Seed of the picks and augmentations.
        out_dir: Where validation grids are written (``val/``).
        spread_power: Weight of each whitened direction in the loss, as its spread (variance in W) to this power,
            normalised to mean 1: 0 weighs every direction alike (whitened MSE), 1 is the MSE in W itself.
        image: The image loss: a coarse render (:class:`~mobilestylegan.distill.encoder_proxy.CoarseRender`, fitted
            on the pool's first ``image_fit`` samples when fit starts), its weight, and how many samples of each
            global batch it reads (the first ones; None: no image loss).
    """

    def __init__(
        self,
        encoder: LatentEncoder,
        generator: nn.Module,
        pool: EncoderPool,
        val: ValidationSet,
        render: Renderer,
        optim: Optimization,
        augment: PhotoAugment,
        batch_size: int,
        data_seed: int = 0,
        out_dir: str | Path = ".",
        spread_power: float = 0.0,
        image: ImageLoss | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.encoder = encoder
        self.encoder_ema = copy.deepcopy(encoder).requires_grad_(False) if optim.ema_beta > 0 else None
        self.frozen = _Frozen(generator=generator, pool=pool, val=val, render=render, augment=augment)
        self.nets = _Frozen(encoder=encoder)
        self.make_opt, self.schedule = optim.student, optim.schedule
        self.ema_beta, self.grad_clip = optim.ema_beta, optim.grad_clip
        self.batch_size, self.data_seed = int(batch_size), int(data_seed)
        self.out_dir = Path(out_dir)
        self.val_history: list[dict[str, float]] = []
        self.final_validation: dict[str, float] | None = None
        self.last_losses: dict[str, float] = {}
        self.baseline_psnr: float | None = None
        self.step_seconds: list[float] = []
        self.pool_seconds: float | None = None
        whiten = torch.linalg.inv(encoder.colour.double()).float()  # u = (w - mean) @ whiten
        self.register_buffer("whiten", whiten, persistent=False)
        spread = encoder.colour.double().square().sum(1) ** spread_power  # row k of colour: sqrt(lambda_k) v_k
        self.register_buffer("loss_weight", (spread / spread.mean()).float(), persistent=False)
        self.image = image
        self.image_targets: torch.Tensor | None = None  # the coarse render of each pool sample's own latent
        self.image_fit: dict[str, float] | None = None

    # ------------------------------------------------------------------ setup
    n_optimizers = 1

    @property
    def iteration(self) -> int:
        return self.global_step

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make_opt([p for p in self.encoder.parameters() if p.requires_grad])

    def wrap_networks(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Give the encoder a data-parallel wrapper (``NetworkDDPStrategy``)."""
        self.nets.encoder = wrap(self.encoder)

    def unwrap_networks(self) -> None:
        self.nets.encoder = self.encoder

    def on_fit_start(self) -> None:
        """Fill the pool (this process's share of the missing chunks, then every chunk) and check the batch."""
        rank, world = self.rank_world()
        if len(self.frozen.val) < world:
            raise ValueError(f"encoder.val_size {len(self.frozen.val)} is smaller than the {world} processes")
        pool = self.frozen.pool
        if not pool.filled:
            t0 = time.perf_counter()
            pool.fill(rank, world, barrier=dist.barrier if world > 1 else None)
            self.pool_seconds = round(time.perf_counter() - t0, 1)
        if self.image is not None and self.image_targets is None:
            self._fit_image_loss()

    @torch.no_grad()
    def _fit_image_loss(self) -> None:
        """Fit the coarse render on the pool's first samples and render every pool sample's own latent with it (every
        process computes the same from the same pool)."""
        t0 = time.perf_counter()
        pool, render, fill = self.frozen.pool, self.image.render, self.encoder.fill.cpu()
        n = min(self.image.fit_samples, len(pool))
        fit_psnr = render.fit(pool.ws[:n][:, fill], from_uint8(pool.images[:n]))
        self.image_targets = torch.cat([render(pool.ws[i : i + 32][:, fill]).half() for i in range(0, len(pool), 32)])
        self.image_fit = {
            "resolution": 2 * render.resolution,
            "fit_samples": n,
            "fit_psnr": round(fit_psnr, 2),
            "seconds": round(time.perf_counter() - t0, 1),
        }

    def on_train_start(self) -> None:
        if not self.val_history:
            self._record_validation()

    def on_train_end(self) -> None:
        if not self.val_history or self.val_history[-1]["iteration"] != self.iteration:
            self.final_validation = {"iteration": self.iteration, **self._validate(grid=True)}

    # ------------------------------------------------------------------ training
    def training_batch(self, it: int, part: slice) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Samples ``part`` of iteration ``it``: the augmented images ``[n, 3, S, S]`` and their whitened live
        latents ``[n, n_live, w_dim]``, on the training device, and their pool indices."""
        pool = self.frozen.pool
        picks = [
            int(torch.randint(len(pool), (1,), generator=sample_generator(self.data_seed, it, i, STREAM_ENCODER_PICK)))
            for i in range(part.start, part.stop)
        ]
        gens = [sample_generator(self.data_seed, it, i, STREAM_ENCODER_AUG) for i in range(part.start, part.stop)]
        images = self.frozen.augment(from_uint8(pool.images[picks]), gens)
        ws = pool.ws[picks].to(self.device)
        target = (ws - self.encoder.w_mean) @ self.whiten
        return images.to(self.device), target, picks

    def training_step(self, batch: Any, batch_idx: int) -> None:
        t0 = time.perf_counter()
        opt = self.optimizers()
        it = self.iteration
        for g in opt.param_groups:  # "peak_lr" lives in the optimizer state, so it survives a resume
            g.setdefault("peak_lr", g["lr"])
            g["lr"] = g["peak_lr"] * self.schedule(it)
        rank, world = self.rank_world()
        global_batch = self.batch_size * world
        part = shard(global_batch, rank, world)
        images, target, picks = self.training_batch(it, part)
        pred = self.nets.encoder(images, whitened=True)
        latent = ((pred - target).square() * self.loss_weight).mean()
        parts = {"latent": latent}
        loss = latent
        if self.image is not None:
            parts["image"] = self._image_term(pred, picks, part, world)
            loss = loss + self.image.weight * parts["image"]
        parts["total"] = loss
        logged = self._mean_over_processes(parts)
        if not torch.isfinite(logged["total"]):
            raise FloatingPointError(
                f"non-finite encoder loss at iteration {it}. Stopped before the optimizer step, so the last checkpoint "
                "is intact; lower the learning rate or enable optim.grad_clip, then resume."
            )
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.grad_clip is not None:
            self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        self._update_ema(it)
        self.last_losses = {k: float(v) for k, v in logged.items()}
        self.log_dict({f"train/{k}": v for k, v in logged.items()}, on_step=True, batch_size=global_batch)
        self.log("lr", opt.param_groups[0]["lr"], on_step=True, batch_size=global_batch)
        self.log("loss", logged["total"], prog_bar=True, on_step=True, logger=False, batch_size=global_batch)
        self.step_seconds.append(time.perf_counter() - t0)

    def _image_term(self, pred: torch.Tensor, picks: list[int], part: slice, world: int) -> torch.Tensor:
        """The coarse-render MSE of the global batch's first ``image.samples`` samples, as this process's share:
        ``world`` x its samples' sum / ``image.samples`` (data parallelism averages the processes' gradients, so
        the total is the mean over those samples whichever process holds them)."""
        k = self.image.samples
        local = [j for j in range(len(picks)) if part.start + j < k]
        if not local:
            return pred.sum() * 0  # a graph for the gradient all-reduce all the same
        live = pred[local] @ self.encoder.colour + self.encoder.w_mean
        img = self.image.render(live.index_select(1, self.encoder.fill))
        goal = self.image_targets[[picks[j] for j in local]].to(img)
        return (img - goal).square().flatten(1).mean(1).sum() * world / k

    def _update_ema(self, it: int) -> None:
        if self.encoder_ema is not None:
            ema_step(self.encoder_ema, self.encoder, self.ema_beta, it)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._record_validation(log=True)

    def _record_validation(self, log: bool = False) -> None:
        metrics = self._validate(grid=True)
        self.val_history.append({"iteration": self.iteration, **metrics})
        if log:
            self.log_dict(metrics, batch_size=len(self.frozen.val))

    @property
    def validated(self) -> LatentEncoder:
        """The encoder validation measures and the run saves: the EMA when there is one."""
        return self.encoder_ema if self.encoder_ema is not None else self.encoder

    @torch.no_grad()
    def _render(self, ws: torch.Tensor) -> torch.Tensor:
        G = self.frozen.generator
        noise = [m.float().cpu() for m in G.synthesis.make_noise(len(ws), "const")]
        return self.frozen.render(ws.cpu(), noise).float()

    @torch.no_grad()
    def _validate(self, grid: bool = False) -> dict[str, float]:
        """PSNR, latent error and (once) the mean latent's PSNR over the validation set; each process measures its
        share and the sums are reduced."""
        rank, world = self.rank_world()
        val = self.frozen.val
        part = shard(len(val), rank, world)
        enc = self.validated
        was = enc.training
        enc.eval()
        inputs = from_uint8(val.inputs[part]).to(self.device)
        whitened = torch.cat([enc(inputs[i : i + 16], whitened=True) for i in range(0, len(inputs), 16)])
        wplus = (whitened @ enc.colour + enc.w_mean).index_select(1, enc.fill).cpu()  # what enc(inputs) returns
        whitened = whitened.cpu()
        enc.train(was)
        target = (val.ws[part] - enc.w_mean.cpu()) @ self.whiten.cpu()
        pred = self._render(wplus)
        per_image = [psnr_db(pred, val.images[part]), (whitened - target).square().flatten(1).mean(1)]
        if self.baseline_psnr is None:
            mean = enc.w_mean.cpu()[None, None].expand(len(pred), enc.cfg.num_ws, -1)
            per_image.append(psnr_db(self._render(mean), val.images[part]))
        sums = torch.stack([v.double() for v in per_image]).sum(1).to(self.device)
        if world > 1:
            dist.all_reduce(sums)
        means = (sums / len(val)).tolist()
        if self.baseline_psnr is None:
            self.baseline_psnr = means.pop()
        metrics = {"val/psnr": means[0], "val/latent": means[1], "val/baseline_psnr": self.baseline_psnr}
        if grid and rank == 0:
            self._save_grid(val.images[part][:8], pred[:8])
        return metrics

    def _save_grid(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        rows = [t for i in range(len(target)) for t in (target[i], pred[i])]
        grid = make_grid(torch.stack(rows), cols=4)
        (self.out_dir / "val").mkdir(parents=True, exist_ok=True)
        save_png(grid, self.out_dir / "val" / f"face_encoded_{self.iteration:07d}.png")
        save_png(grid, self.out_dir / "val" / "latest.png")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the ``encoder_train`` state: the architecture, the RNG states and the validation history."""
        checkpoint["encoder_train"] = {
            "encoder_config": self.encoder.cfg.to_dict(),
            "data_seed": self.data_seed,
            **rng_states(),
            "val_history": self.val_history,
            "baseline_psnr": self.baseline_psnr,
            "last_losses": self.last_losses,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("encoder_train")
        if state is None:
            raise ValueError("not an encoder-training checkpoint of this toolkit (no 'encoder_train' state)")
        if state["encoder_config"] != self.encoder.cfg.to_dict():
            raise ValueError(
                "the checkpoint's encoder architecture differs from this run's config: resume with the same encoder.* "
                "settings, or start in a new output directory"
            )
        restore_rng_states(state)
        self.val_history = list(state["val_history"])
        self.baseline_psnr = state["baseline_psnr"]
        self.last_losses = dict(state["last_losses"])


@dataclass(frozen=True)
class ImageLoss:
    """The encoder's image loss (see :class:`EncoderModule`)."""

    render: CoarseRender
    weight: float
    samples: int
    fit_samples: int = 256


__all__ = ["EncoderModule", "ImageLoss"]
