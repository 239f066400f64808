"""Entry point: ``python train.py [experiment=NAME] [overrides]`` (Hydra). Tests call ``train(cfg)``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mobilestylegan.distill.schema import register_configs

register_configs()


def train(cfg: DictConfig, out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a distillation (or, with ``task: encoder``, an encoder's training); returns (summary, objects).
    ``summary.json`` is written to ``out_dir``; a distillation's holds the FaceNet identity distances of the final
    student's validation faces to the teacher's where FaceNet is installed."""
    from mobilestylegan.distill.run import ConfigError, run

    if cfg.task == "encoder":
        from mobilestylegan.distill.encoder_run import run_encoder

        return run_encoder(cfg, out_dir)
    if cfg.task != "distill":
        raise ConfigError(f"task must be distill or encoder, got {cfg.task!r}")
    from mobilestylegan.edit.identity import identity_distances

    return run(cfg, out_dir, identity=identity_distances)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from mobilestylegan.distill.run import ConfigError
    from teacher.formats.common import CheckpointError
    from teacher.fs import OutputPathError

    try:
        summary, objects = train(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, CheckpointError, OutputPathError, FloatingPointError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    if not objects["trainer"].is_global_zero:  # under DDP every process gets here; one report is enough
        return
    if summary.get("task") == "encoder":
        print(
            f"{summary['steps']} steps in {summary['seconds']} s; validation PSNR of encoded faces "
            f"{summary['val_psnr_first']:.2f} -> {summary['val_psnr_last']:.2f} dB at {summary['val_resolution']} px "
            f"(the mean latent: {summary['baseline_psnr']:.2f} dB); grid {summary['grid']}; "
            f"encoder {summary['encoder']}"
        )
        return
    gain = summary["val_psnr_last"] - summary["baseline_psnr"]
    ident = summary.get("identity") or {}
    identity = (
        f"; FaceNet identity distance to the teacher's faces: median {ident['median']:.2f}, worst {ident['worst']:.2f}"
        if ident.get("measured")
        else ""
    )
    print(
        f"{summary['steps']} steps in {summary['seconds']} s; validation PSNR {summary['val_psnr_first']:.2f} -> "
        f"{summary['val_psnr_last']:.2f} dB (mean-image baseline {summary['baseline_psnr']:.2f} dB, "
        f"{gain:+.2f} dB){identity}; grid {summary['grid']}; student {summary['student']}"
    )


if __name__ == "__main__":
    from mobilestylegan.cli.common import raise_mmap_threshold

    # PyTorch allocates its large feature maps anew in every training step; on glibc they otherwise come from fresh,
    # zero-filled mmap pages (the CPU then spends much of a step in the kernel).
    raise_mmap_threshold(None)
    main()
