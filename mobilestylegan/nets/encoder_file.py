"""Encoder files: a :class:`~mobilestylegan.nets.encoder.LatentEncoder` as ``.safetensors`` with its description.

The file holds the weights (float16 or float32; the whitening buffers always float32) and, in the safetensors
metadata, ``format`` (``mobilestylegan-encoder``), ``version``, ``config`` (the architecture, JSON),
``generator_hash`` (the generator it encodes for, :func:`~mobilestylegan.io.latent_space.generator_hash`) and
``info`` (how it was made, JSON). Reading checks every tensor's name and shape against the architecture the
config describes, so a damaged or foreign file is one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mobilestylegan.nets.encoder import EncoderConfig, LatentEncoder
from teacher.formats.common import CheckpointError
from teacher.fs import atomic_write

ENCODER_FORMAT = "mobilestylegan-encoder"
ENCODER_VERSION = 1
_FLOAT32_KEYS = ("w_mean", "colour")  # the whitening: kept in float32 whatever the weights' dtype


def save_encoder(
    path: str | Path,
    encoder: LatentEncoder,
    generator_hash: str,
    info: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``encoder`` to ``path`` atomically (weights in ``dtype``: float32 or float16)."""
    from safetensors.torch import save_file

    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"encoder weights are saved as float32 or float16, not {dtype}")
    state = {
        k: v.detach().cpu().contiguous().to(torch.float32 if k in _FLOAT32_KEYS else dtype)
        for k, v in encoder.state_dict().items()
    }
    meta = {
        "format": ENCODER_FORMAT,
        "version": str(ENCODER_VERSION),
        "config": json.dumps(encoder.cfg.to_dict()),
        "generator_hash": generator_hash,
        "info": json.dumps(info or {}),
    }
    return atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta))


def read_encoder(path: str | Path) -> tuple[LatentEncoder, dict[str, Any]]:
    """The encoder in ``path`` (float32, eval mode) and its description (``generator_hash``, ``info``, ``config``).
    A missing file, another kind of file or a wrong tensor is a :class:`CheckpointError` naming it."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"encoder file {p} does not exist")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != ENCODER_FORMAT:
                raise CheckpointError(
                    f"{p} is not an encoder file of this toolkit (no format={ENCODER_FORMAT} in its metadata); "
                    "encoders are written by `python train.py experiment=encoder_...`"
                )
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except SafetensorError as err:
        raise CheckpointError(f"{p} is not a readable .safetensors file ({err})") from None
    if int(meta.get("version", "0")) > ENCODER_VERSION:
        raise CheckpointError(f"{p} is an encoder file of version {meta['version']}; this toolkit reads up to 1")
    try:
        cfg = EncoderConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{p}: the encoder's config in its metadata is unusable ({err})") from None
    encoder = LatentEncoder(cfg)
    want = encoder.state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    wrong = [
        f"{k} {list(state[k].shape)} (expected {list(want[k].shape)})"
        for k in want
        if k in state and state[k].shape != want[k].shape
    ]
    if missing or extra or wrong:
        problems = [f"missing {missing}"] * bool(missing) + [f"unexpected {extra}"] * bool(extra)
        problems += [f"wrong shape: {', '.join(wrong)}"] * bool(wrong)
        raise CheckpointError(f"{p} does not match the encoder its config describes: {'; '.join(problems)}")
    encoder.load_state_dict({k: v.float() for k, v in state.items()})
    desc = {
        "generator_hash": meta.get("generator_hash", ""),
        "info": json.loads(meta.get("info") or "{}"),
        "config": cfg.to_dict(),
        "dtype": str(state["stem.weight"].dtype).removeprefix("torch."),
    }
    return encoder.eval().requires_grad_(False), desc


__all__ = ["ENCODER_FORMAT", "read_encoder", "save_encoder"]
