"""Lightning loggers that need a check first (``logger`` config nodes name these with ``_target_``; the CSV logger
is Lightning's own). Each says which package to install instead of failing deep inside Lightning."""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from mobilestylegan.distill.schema import ConfigError

if TYPE_CHECKING:
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger


def tensorboard(save_dir: str, name: str = "logs") -> TensorBoardLogger:
    """Lightning's TensorBoard logger."""
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        return TensorBoardLogger(save_dir=save_dir, name=name)
    except ModuleNotFoundError as err:
        raise ConfigError("logger=tensorboard needs the tensorboard package: pip install tensorboard") from err


def wandb(save_dir: str, project: str = "mobilestylegan") -> WandbLogger:
    """Lightning's Weights & Biases logger: offline unless ``WANDB_API_KEY`` is set (never waits for a network)."""
    from lightning.pytorch.loggers import WandbLogger

    if importlib.util.find_spec("wandb") is None:
        raise ConfigError('logger=wandb needs wandb: pip install -e ".[wandb]"')
    return WandbLogger(project=project, save_dir=save_dir, offline=not os.environ.get("WANDB_API_KEY"))
