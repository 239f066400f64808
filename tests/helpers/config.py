"""The training configs composed as ``train.py`` composes them, outside a Hydra app; tiny training runs."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tests.helpers.paths import REPO


def compose_cfg(overrides: list[str]) -> tuple[ModuleType, DictConfig]:
    """``train.py``'s config (``conf/config.yaml``) with ``overrides``; returns the ``train`` module too."""
    import train  # registers the structured configs

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    # outside a Hydra app the ${hydra:...} resolver is unavailable: name the run after the experiment
    cfg.name = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "demo_cpu")
    return train, cfg


def run_tiny(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``experiment=tiny`` (plus ``extra`` overrides) into ``tmp_path``; returns ``train.train``'s result."""
    train, cfg = compose_cfg(["experiment=tiny", *extra])
    return train.train(cfg, tmp_path)
