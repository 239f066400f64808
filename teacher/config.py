"""Architecture descriptions of the StyleGAN2 generator and discriminator.

A config is everything needed to build an empty network; together with a state dict in the native
key layout (see ``teacher/formats/native.py``) it is a complete checkpoint. Configs are plain
frozen dataclasses that round-trip through JSON (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


def default_channels(img_resolution: int, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """StyleGAN2 config-f channel table: ``min(channel_base // res, channel_max)`` for res 4..img_resolution."""
    return {4 * 2**i: min(channel_base // (4 * 2**i), channel_max) for i in range(_log2(img_resolution) - 1)}


def _log2(res: int) -> int:
    if not isinstance(res, int) or res < 4 or res & (res - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {res!r}")
    return int(math.log2(res))


def _int_keys(table: dict[Any, int]) -> dict[int, int]:
    return {int(k): int(v) for k, v in sorted(table.items(), key=lambda kv: int(kv[0]))}


def _normalise(cfg: GeneratorConfig | DiscriminatorConfig) -> None:
    """Give a config's channel table int keys and its filter float taps (JSON brings strings and lists), then check
    its resolution and channel table."""
    name = type(cfg).__name__
    object.__setattr__(cfg, "channels", _int_keys(cfg.channels))
    object.__setattr__(cfg, "resample_filter", tuple(float(t) for t in cfg.resample_filter))
    if cfg.img_resolution < 8:
        raise ValueError(f"{name}.img_resolution must be >= 8, got {cfg.img_resolution}")
    _check_channels(name, cfg.channels, cfg.img_resolution)


def _to_dict(cfg: GeneratorConfig | DiscriminatorConfig) -> dict[str, Any]:
    """A config as JSON-ready values: string channel keys, the filter as a list."""
    d = dataclasses.asdict(cfg)
    d["channels"] = {str(k): v for k, v in cfg.channels.items()}
    d["resample_filter"] = list(cfg.resample_filter)
    return d


def _check_channels(name: str, channels: dict[int, int], img_resolution: int) -> None:
    expected = [4 * 2**i for i in range(_log2(img_resolution) - 1)]
    if sorted(channels) != expected:
        raise ValueError(f"{name}.channels must have one entry per resolution {expected}, got {sorted(channels)}")
    bad = {r: c for r, c in channels.items() if c <= 0}
    if bad:
        raise ValueError(f"{name}.channels must be positive, got {bad}")


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a StyleGAN2 generator (skip synthesis, config-f style).

    Args:
        z_dim: Latent z size.
        w_dim: Intermediate latent w size (also the hidden width of the mapping MLP).
        img_resolution: Output resolution, a power of two in 8..1024 (any power of two >= 8 works).
        channels: Feature channels per resolution ``{4: c4, 8: c8, ..., img_resolution: c}``.
        img_channels: Image channels (3 = RGB).
        mapping_layers: Number of fully connected layers in the mapping network.
        mapping_lr_mul: Learning-rate multiplier of the mapping layers (equalized lr).
        conv_clamp: Clamp synthesis activations to +-conv_clamp (NVIDIA's ada models use 256), or None.
        resample_filter: 1-D low-pass FIR taps used for every up-sampling.
    """

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    channels: dict[int, int] = field(default_factory=lambda: default_channels(1024))
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)

    def __post_init__(self) -> None:
        _normalise(self)
        for name in ("z_dim", "w_dim", "mapping_layers", "img_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GeneratorConfig.{name} must be positive, got {getattr(self, name)}")

    @property
    def num_ws(self) -> int:
        """Number of per-layer w vectors (W+ length): 2*log2(res) - 2 (18 at 1024)."""
        return 2 * _log2(self.img_resolution) - 2

    @property
    def resolutions(self) -> list[int]:
        """The synthesis resolutions, 4 .. img_resolution."""
        return sorted(self.channels)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values (:meth:`from_dict` reads them back)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneratorConfig:
        """The config of :meth:`to_dict`'s values (unknown fields are a ValueError)."""
        return cls(**_known_fields(cls, d))

    @classmethod
    def stylegan2(cls, img_resolution: int = 1024, z_dim: int = 512, w_dim: int = 512, **kw: Any) -> GeneratorConfig:
        """Config-f defaults at a given resolution."""
        return cls(
            z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, channels=default_channels(img_resolution), **kw
        )


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a StyleGAN2 discriminator (residual, minibatch-stddev).

    Args:
        img_resolution: Input resolution (power of two >= 8).
        channels: Feature channels per resolution ``{4: c4, ..., img_resolution: c}``; block ``b{r}``
            maps ``channels[r]`` to ``channels[r // 2]``.
        img_channels: Input image channels.
        mbstd_group_size: Minibatch-stddev group size (clipped to the batch size); None = the whole batch
            (what NVIDIA's legacy.py writes for converted TF discriminators).
        mbstd_num_channels: Number of stddev feature channels appended.
        conv_clamp: Clamp activations to +-conv_clamp, or None.
        resample_filter: 1-D low-pass FIR taps used for every down-sampling.
    """

    img_resolution: int = 1024
    channels: dict[int, int] = field(default_factory=lambda: default_channels(1024))
    img_channels: int = 3
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)

    def __post_init__(self) -> None:
        _normalise(self)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values (:meth:`from_dict` reads them back)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiscriminatorConfig:
        """The config of :meth:`to_dict`'s values (unknown fields are a ValueError)."""
        return cls(**_known_fields(cls, d))


def _known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    return dict(d)
