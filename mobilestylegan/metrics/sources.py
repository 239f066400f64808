"""What is evaluated: generators, image folders and statistics files, each identified by a content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilestylegan.errors import UsageError
from mobilestylegan.io.arrays import save_npz
from mobilestylegan.io.load import load_generator_any
from teacher.fs import cache_root, sha256_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
STATS_FORMAT, STATS_VERSION = "mobilestylegan-stats", 1


@dataclass
class Source:
    """One side of the comparison. ``kind`` is ``generator``, ``folder`` or ``stats``."""

    spec: str
    kind: str
    ident: str  # content hash (folder), file sha256 (stats, checkpoint) or the pretrained name
    G: Any = None
    files: list[Path] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def _folder_hash(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}\0{sha256_file(f)}\n".encode())
    return "sha256:" + h.hexdigest()


def open_source(spec: str, device: str) -> Source:
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if len(files) < 2:
            raise UsageError(f"folder {path} holds {len(files)} png/jpg image(s); at least 2 are needed")
        return Source(spec, "folder", _folder_hash(files, path), files=files)
    if path.is_file() and path.suffix == ".npz":
        return Source(spec, "stats", "sha256:" + sha256_file(path), stats=load_stats(path))
    G = load_generator_any(spec, device).eval().requires_grad_(False)
    return Source(spec, "generator", "sha256:" + sha256_file(path) if path.is_file() else f"pretrained:{spec}", G=G)


def save_stats(
    path: Path,
    header: dict,
    mu: np.ndarray,
    sigma: np.ndarray,
    features: np.ndarray | None,
    vgg_features: np.ndarray | None,
) -> Path:
    """Write a statistics file atomically (npz: ``header`` JSON, ``mu``, ``sigma``, optional features)."""
    arrays = {
        "header": np.array(json.dumps(header | {"format": STATS_FORMAT, "version": STATS_VERSION})),
        "mu": mu,
        "sigma": sigma,
    }
    if features is not None:
        arrays["features"] = features
    if vgg_features is not None:
        arrays["vgg_features"] = vgg_features
    return save_npz(path, **arrays)


def load_stats(path: Path) -> dict[str, Any]:
    """Read a statistics file: ``header`` (dict), ``mu``, ``sigma``, ``features`` / ``vgg_features`` or None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        header = json.loads(str(data["header"]))
    except (OSError, ValueError, KeyError) as err:
        raise UsageError(f"{path} is not a mobilestylegan statistics file ({err})") from None
    if header.get("format") != STATS_FORMAT or header.get("version") != STATS_VERSION:
        raise UsageError(
            f"{path} is not a {STATS_FORMAT} v{STATS_VERSION} file (header {header.get('format')!r} "
            f"v{header.get('version')})"
        )
    return {
        "header": header,
        "mu": data["mu"],
        "sigma": data["sigma"],
        "features": data.get("features"),
        "vgg_features": data.get("vgg_features"),
    }


def cache_dir() -> Path:
    """Where feature statistics of generators and folders are cached."""
    return cache_root() / "stats"
