"""Our native checkpoint format: a config (JSON) plus state dicts in the native layout.

Two containers, both readable without executing code:
- ``.pt``: ``torch.save`` of ``{"format": "mobilestylegan-teacher", "version": 1, "g_config": {...},
  "g_state": {...}, "d_config": {...} | None, "d_state": {...} | None}`` (plain containers and tensors,
  so ``torch.load(weights_only=True)`` reads it).
- ``.safetensors``: tensors named ``G.<key>`` / ``D.<key>``; the configs are JSON strings in the
  metadata (``format``, ``version``, ``g_config``, ``d_config``).
Writes are atomic (temporary file in the same directory, then rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from teacher.config import DiscriminatorConfig, GeneratorConfig
from teacher.formats.common import Checkpoint, CheckpointError, check_state_dict
from teacher.formats.layout import discriminator_shapes, generator_shapes
from teacher.fs import atomic_write

FORMAT = "mobilestylegan-teacher"
VERSION = 1
SAFETENSORS_MAGIC_OFFSET = 8  # safetensors files start with a u64 header length, then '{'


def is_native_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def from_dict(obj: dict, path: str) -> Checkpoint:
    """Convert a loaded native ``.pt`` dict."""
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: native checkpoint version {obj.get('version')!r} is not supported "
            f"(this toolkit reads version {VERSION})"
        )
    return _build(path, obj.get("g_config"), obj.get("g_state"), obj.get("d_config"), obj.get("d_state"))


def _build(path: str, g_cfg: dict | None, g_state: dict | None, d_cfg: dict | None, d_state: dict | None) -> Checkpoint:
    ckpt = Checkpoint(source_format="native")
    try:
        if g_cfg is not None:
            ckpt.g_config = GeneratorConfig.from_dict(g_cfg)
        if d_cfg is not None:
            ckpt.d_config = DiscriminatorConfig.from_dict(d_cfg)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid config in native checkpoint: {err}") from err
    if ckpt.g_config is not None:
        ckpt.g_state = dict(g_state or {})
        check_state_dict(f"generator in {path}", ckpt.g_state, generator_shapes(ckpt.g_config))
    if ckpt.d_config is not None:
        ckpt.d_state = dict(d_state or {})
        check_state_dict(f"discriminator in {path}", ckpt.d_state, discriminator_shapes(ckpt.d_config))
    if ckpt.g_config is None and ckpt.d_config is None:
        raise CheckpointError(f"{path}: native checkpoint holds neither a generator nor a discriminator")
    return ckpt


def sniff_safetensors(head: bytes) -> bool:
    return (
        len(head) > SAFETENSORS_MAGIC_OFFSET and head[SAFETENSORS_MAGIC_OFFSET : SAFETENSORS_MAGIC_OFFSET + 1] == b"{"
    )


def read_safetensors(path: str) -> Checkpoint:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: safetensors file without our metadata (format={meta.get('format')!r}); "
            f"only native toolkit files are read in this container"
        )
    if meta.get("version") != str(VERSION):
        raise CheckpointError(f"{path}: native checkpoint version {meta.get('version')!r} is not supported")
    unknown = sorted(k for k in tensors if not k.startswith(("G.", "D.")))
    if unknown:
        raise CheckpointError(f"{path}: unexpected tensor name(s) {unknown[:8]} (expected G.* or D.*)")
    g_state = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
    d_state = {k[2:]: v for k, v in tensors.items() if k.startswith("D.")}
    loads = lambda s: None if s in (None, "null") else json.loads(s)  # noqa: E731
    return _build(path, loads(meta.get("g_config")), g_state, loads(meta.get("d_config")), d_state or None)


def save(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` as a native checkpoint; ``.safetensors`` suffix selects safetensors, else ``.pt``.

    The state dicts are checked against their configs first, so a written file always loads back.
    """
    path = Path(path)
    if ckpt.g_config is not None:
        check_state_dict("generator to save", ckpt.g_state or {}, generator_shapes(ckpt.g_config))
    if ckpt.d_config is not None:
        check_state_dict("discriminator to save", ckpt.d_state or {}, discriminator_shapes(ckpt.d_config))
    g_cfg = ckpt.g_config.to_dict() if ckpt.g_config else None
    d_cfg = ckpt.d_config.to_dict() if ckpt.d_config else None
    plain = lambda s: {k: v.detach().cpu().contiguous() for k, v in (s or {}).items()}  # noqa: E731
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        tensors = {f"G.{k}": v for k, v in plain(ckpt.g_state).items()}
        tensors.update({f"D.{k}": v for k, v in plain(ckpt.d_state).items()})
        meta = {
            "format": FORMAT,
            "version": str(VERSION),
            "g_config": json.dumps(g_cfg),
            "d_config": json.dumps(d_cfg),
            "source_format": ckpt.source_format,
        }
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "source_format": ckpt.source_format,
        "g_config": g_cfg,
        "g_state": plain(ckpt.g_state) if g_cfg else None,
        "d_config": d_cfg,
        "d_state": plain(ckpt.d_state) if d_cfg else None,
    }
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
