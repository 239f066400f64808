"""What every checkpoint reader returns, and the checks they share: the strict key check and malformed settings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from teacher.config import DiscriminatorConfig, GeneratorConfig


class CheckpointError(ValueError):
    """A checkpoint file is unsupported, corrupt, or does not match the expected layout."""


@dataclass
class Checkpoint:
    """A checkpoint converted to the native layout.

    Args:
        source_format: Short name of the format the file was read from (``rosinality``, ``nvidia-pkl`` ...).
        g_config / g_state: Generator architecture and native state dict, or None if the file has none.
        d_config / d_state: Discriminator architecture and native state dict, or None.
        extra: Format-specific information (training args, where w_avg came from, ...). Mapping-only files
            (random-face's IR) put their mapping state in ``extra["mapping_state"]``.
    """

    source_format: str
    g_config: GeneratorConfig | None = None
    g_state: dict[str, torch.Tensor] | None = None
    d_config: DiscriminatorConfig | None = None
    d_state: dict[str, torch.Tensor] | None = None
    extra: dict = field(default_factory=dict)


def check_state_dict(
    what: str,
    got: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size | tuple[int, ...]],
) -> None:
    """Raise one CheckpointError naming every missing, unexpected and mis-shaped key.

    Args:
        what: Human-readable name of the thing being loaded (e.g. ``"rosinality g_ema in foo.pt"``).
        got: Converted state dict.
        expected: Key -> shape of the network it must load into.
    """
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    misshaped = sorted(
        f"{k}: file {tuple(got[k].shape)} vs network {tuple(expected[k])}"
        for k in set(got) & set(expected)
        if tuple(got[k].shape) != tuple(expected[k])
    )
    if missing or unexpected or misshaped:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items) - 12} more)" if len(items) > 12 else "")
                parts.append(f"{len(items)} {title} key(s): {shown}")
        raise CheckpointError(f"{what} does not match the network: " + "; ".join(parts))


@contextmanager
def malformed_settings(what: str) -> Iterator[None]:
    """Turn the TypeError, ValueError or AttributeError that network settings of the wrong types cause while a
    pickled network is read (e.g. a string where a number belongs) into one CheckpointError naming ``what``."""
    try:
        yield
    except CheckpointError:
        raise
    except (TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{what}: malformed network settings ({type(err).__name__}: {err})") from err
