"""Typed (structured) Hydra configs. A typo in YAML or on the command line fails at composition."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

EMBEDDED_TEACHER = "embedded:tiny64"


@dataclass
class SampleConfig:
    """Render a grid of samples from any generator.

    Args:
        generator: A pretrained name (``ffhq-1024``: the published MobileStyleGAN FFHQ student), a student
            or teacher checkpoint in any supported format, or ``embedded:tiny64`` (the bundled tiny teacher).
        seeds: One image per seed (z drawn from ``torch.Generator().manual_seed(seed)``).
        truncation_psi: Truncation toward the average w (1 = none).
        noise_mode: ``const`` (stored noise), ``random`` or ``none``.
        batch_size: Images rendered per forward pass.
        device: ``cpu`` or ``cuda``.
        grid_columns: Columns of the output grid.
    """

    generator: str = "ffhq-1024"
    seeds: list[int] = field(default_factory=lambda: list(range(8)))
    truncation_psi: float = 0.7
    noise_mode: str = "const"
    batch_size: int = 4
    device: str = "cpu"
    grid_columns: int = 4


@dataclass
class MainConfig:
    sample: SampleConfig = field(default_factory=SampleConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="main_schema", node=MainConfig)
