"""Entry point: ``python train.py [overrides]`` (Hydra). Tests call ``train(cfg)`` directly."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mobilestylegan.schema import MainConfig, register_configs

register_configs()


def train(cfg: DictConfig | MainConfig, out_dir: str | Path) -> dict:
    """Run the main job and return its summary (written to ``out_dir/summary.json``)."""
    from mobilestylegan.sampling import sample_job

    sample_cfg = OmegaConf.to_object(cfg).sample if isinstance(cfg, DictConfig) else cfg.sample
    return sample_job(sample_cfg, Path(out_dir))


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    summary = train(cfg, HydraConfig.get().runtime.output_dir)
    print(f"wrote {summary['grid']} ({len(summary['seeds'])} samples at {summary['resolution']}px, "
          f"{summary['seconds']} s)")


if __name__ == "__main__":
    main()
