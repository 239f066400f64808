"""Published weight files of the fixed feature networks: where they are looked for and how they are read.

Weights are never downloaded. A file is found at an explicit path, else at ``$<NETWORK ENV>``, else at
``<cache>/weights/<file name>`` (``<cache>``: :func:`teacher.fs.cache_root`). Every file is checked against the
sha256 prefix its publisher puts in the file name before it is read, tensors only.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from teacher.formats.common import CheckpointError
from teacher.fs import cache_root, sha256_file


def default_weights_path(env: str, filename: str) -> Path:
    """``$env``, else ``<cache>/weights/<filename>`` (whether or not the file exists)."""
    explicit = os.environ.get(env)
    if explicit:
        return Path(explicit).expanduser()
    return cache_root() / "weights" / filename


def locate(path: str | os.PathLike | None, default: Path, allow_random_weights: bool) -> Path | None:
    """The weights file to read, or None for "use seeded random weights".

    ``allow_random_weights`` means one thing for every network: with no ``path`` and nothing at the default
    location, random weights (tests only; numbers made with them compare with nothing). A file at the default
    location is always used, and a given ``path`` is always read (one that does not exist is an error there).
    """
    if path is not None:
        return Path(path).expanduser()
    if allow_random_weights and not default.is_file():
        return None
    return default


def read_published_weights(path: Path, what: str, sha256_prefix: str, url: str) -> tuple[dict[str, torch.Tensor], str]:
    """sha256-prefix and type checks of an existing published weights file (``what``, e.g. "torchvision's
    vgg16-397923af.pth"); returns (state dict, sha256). Tensors only (``weights_only``)."""
    digest = sha256_file(path)
    if not digest.startswith(sha256_prefix):
        raise CheckpointError(
            f"{path} is not {what}: its sha256 is {digest}, expected one starting with "
            f"{sha256_prefix} (re-download it from {url})"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return state, digest
