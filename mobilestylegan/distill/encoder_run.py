"""Building an encoder-training run from a composed config (``task: encoder``): generator, encoder, pool, trainer.

``run_encoder(cfg, out_dir)`` is what ``train.py`` calls for ``task: encoder``. It writes, in ``out_dir``:
``encoder.safetensors`` (the EMA encoder, :mod:`mobilestylegan.nets.encoder_file`, tied to its generator by hash),
``checkpoints/`` (``last.ckpt`` resumes exactly, ``best.ckpt`` by validation PSNR), ``val/latest.png`` (validation
faces beside their encoded renders), the logger's files and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mobilestylegan.distill.encoder_augment import PhotoAugment
from mobilestylegan.distill.encoder_data import (
    STREAM_ENCODER_STATS,
    EncoderPool,
    LatentSampling,
    draw_latents,
    torch_renderer,
    validation_set,
)
from mobilestylegan.distill.encoder_module import EncoderModule, ImageLoss
from mobilestylegan.distill.encoder_proxy import CoarseRender
from mobilestylegan.distill.run import _instantiate, build_optimization, fit
from mobilestylegan.distill.schema import ConfigError
from mobilestylegan.errors import UnknownSourceError
from mobilestylegan.io.latent_space import generator_hash, live_ws
from mobilestylegan.nets.encoder import EncoderConfig, LatentEncoder
from mobilestylegan.nets.encoder_file import save_encoder
from mobilestylegan.student.synthesis import MobileSynthesisNetwork
from teacher.fs import atomic_write

SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def load_generator(source: str) -> torch.nn.Module:
    """The generator ``encoder.generator`` names, frozen, float32, on the CPU."""
    from mobilestylegan.io.load import load_generator_any, resolve_source

    try:
        G = load_generator_any(resolve_source(source), "cpu")
    except UnknownSourceError as err:
        raise ConfigError(f"encoder.generator: {err}") from None
    return G.float().eval().requires_grad_(False)


def build_encoder(cfg: DictConfig, G: torch.nn.Module, sampling: LatentSampling) -> LatentEncoder:
    """The encoder ``encoder.*`` describes for ``G``'s live W+ entries, its whitening set from ``stats_samples``
    latents drawn as the pool draws them (its truncation range; a stream of their own)."""
    e = cfg.encoder
    try:
        ecfg = EncoderConfig(
            num_ws=G.num_ws,
            w_dim=G.w_dim,
            live=tuple(live_ws(G)),
            input_size=e.input_size,
            channels=tuple(e.channels) if e.channels is not None else None,
            reduce=e.reduce,
            hidden=e.hidden,
            offset_rank=e.offset_rank,
        )
    except ValueError as err:
        raise ConfigError(f"encoder: {err}") from None
    encoder = LatentEncoder(ecfg)
    ws, _ = draw_latents(
        G,
        cfg.trainer.seed + 3,
        range(e.stats_samples),
        LatentSampling(sampling.psi_min, sampling.psi_max, 0.0),
        STREAM_ENCODER_STATS,
        noise_mode="none",
    )
    encoder.set_statistics(ws[:, 0])
    return encoder


def build_renderers(cfg: DictConfig, G: torch.nn.Module) -> tuple[Any, Any]:
    """``(pool renderer, validation renderer)``: ``encoder.renderer`` compiled at the input size (its precision)
    and at the validation resolution (f32); without one, the generator itself (the pool's on the training
    device)."""
    e = cfg.encoder
    val_res = min(e.val_resolution, G.img_resolution)
    if e.renderer is None:
        return None, torch_renderer(G, val_res)
    make = _instantiate("encoder.renderer", e.renderer)
    # The lean student graph's kernels are fastest at batch 1 on a CPU.
    batch = 1 if isinstance(G.synthesis, MobileSynthesisNetwork) else 8
    common = dict(batch_size=batch, threads=cfg.trainer.threads)
    return make(G.synthesis, **common, out_resolution=e.input_size), make(
        G.synthesis, **common, out_resolution=val_res, precision="f32"
    )


def build_module(cfg: DictConfig, out_dir: Path) -> tuple[EncoderModule, dict[str, Any]]:
    """The module and what it was built from (everything on the CPU; the pool fills when fit starts)."""
    e = cfg.encoder
    if e.save_dtype not in SAVE_DTYPES:
        raise ConfigError(f"encoder.save_dtype must be one of {', '.join(SAVE_DTYPES)}, got {e.save_dtype!r}")
    G = load_generator(e.generator)
    if e.input_size > G.img_resolution:
        raise ConfigError(f"encoder.input_size {e.input_size} exceeds the generator's {G.img_resolution} px")
    try:
        sampling = LatentSampling(e.psi_min, e.psi_max, e.style_mixing_prob)
        augment = PhotoAugment(**OmegaConf.to_container(e.augment))
    except ValueError as err:
        raise ConfigError(f"encoder: {err}") from None
    encoder = build_encoder(cfg, G, sampling)
    pool_render, val_render = build_renderers(cfg, G)
    live = list(encoder.cfg.live)
    pool = EncoderPool(
        G,
        live,
        e.pool_size,
        seed=cfg.trainer.seed + 1,
        sampling=sampling,
        resolution=e.input_size,
        chunk=e.pool_chunk,
        directory=e.pool_dir or out_dir / "pool",
        renderer=pool_render,
        progress=cfg.trainer.progress_bar,
    )
    image = None
    if e.image_weight > 0:
        try:
            render = CoarseRender(G.synthesis, e.image_resolution)
        except ValueError as err:
            raise ConfigError(f"encoder.image_weight: {err}") from None
        if e.image_samples < 1 or e.image_fit < 1:
            raise ConfigError("encoder.image_samples and encoder.image_fit must be >= 1 with an image loss")
        image = ImageLoss(render, e.image_weight, e.image_samples, e.image_fit)
    val_res = min(e.val_resolution, G.img_resolution)
    val = validation_set(G, live, e.val_size, e.val_seed, e.val_psi, val_res, e.input_size, val_render)
    optim = build_optimization(cfg, discriminator=False)
    module = EncoderModule(
        encoder,
        G,
        pool,
        val,
        val_render,
        optim,
        augment,
        e.batch_size,
        data_seed=cfg.trainer.seed,
        out_dir=out_dir,
        spread_power=e.spread_power,
        image=image,
    )
    return module, {"generator": G, "encoder": encoder, "pool": pool, "val": val}


def run_encoder(cfg: DictConfig, out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train an encoder as configured; write its files in ``out_dir`` (see the module docstring). Under DDP every
    process runs this; process 0 writes the files."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    tc = cfg.trainer
    module, objects, trainer, callbacks = fit(cfg, out_dir, build_module)
    ckpt_dir = out_dir / "checkpoints"
    history = module.val_history + ([module.final_validation] if module.final_validation else [])
    G, enc = objects["generator"], module.validated.cpu()
    steps = sorted(module.step_seconds[1:])
    out = out_dir / "encoder.safetensors"
    world = trainer.world_size
    summary = {
        "name": cfg.name,
        "task": "encoder",
        "generator": cfg.encoder.generator,
        "generator_hash": generator_hash(G),
        "steps": module.iteration,
        "val_psnr_first": history[0]["val/psnr"],
        "val_psnr_last": history[-1]["val/psnr"],
        "val_latent_last": history[-1]["val/latent"],
        "baseline_psnr": module.baseline_psnr,
        "val_resolution": int(objects["val"].images.shape[-1]),
        "final_losses": module.last_losses,
        "val_history": history,
        "pool": {"size": len(objects["pool"]), "rendered": objects["pool"].rendered, "seconds": module.pool_seconds},
        "image_loss": module.image_fit,
        "parameters": sum(p.numel() for p in enc.parameters()),
        "encoder": str(out),
        "best_checkpoint": callbacks[0].best_model_path if callbacks else "",
        "last_checkpoint": str(ckpt_dir / "last.ckpt") if not tc.fast_dev_run else "",
        "processes": world,
        "global_batch": cfg.encoder.batch_size * world,
        "step_seconds_median": steps[len(steps) // 2] if steps else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "grid": str(out_dir / "val" / "latest.png"),
    }
    if trainer.is_global_zero:
        info = {
            "source": "train.py",
            "config": cfg.name,
            "iterations": module.iteration,
            "generator": cfg.encoder.generator,
        }
        save_encoder(out, enc, summary["generator_hash"], info, dtype=SAVE_DTYPES[cfg.encoder.save_dtype])
        summary["encoder_bytes"] = out.stat().st_size
        atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    return summary, {**objects, "module": module, "trainer": trainer}


__all__ = ["run_encoder"]
