"""Latents of a generator as files: which W+ entries a generator reads, its fingerprint, and ``.npy`` + ``.json``.

A projected latent is saved as ``NAME.npy`` (``[1, num_ws, w_dim]`` float32, the full W+ the generator takes,
dead entries included) with ``NAME.json`` beside it: the generator's hash and ``num_ws``, the live indices, the
space it was optimised in and how it was made. Loading checks the shape and the hash, so a latent is never
silently rendered by a generator it was not made for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilestylegan.errors import UsageError
from mobilestylegan.io.arrays import save_npy
from mobilestylegan.io.latent_space import generator_hash
from teacher.fs import atomic_write

LATENT_FORMAT = "mobilestylegan-latent"


@torch.no_grad()
def seeded_w(G: torch.nn.Module, seeds: list[int], psi: float = 1.0) -> torch.Tensor:
    """``w = mapping(z)`` ``[N, w_dim]`` of the seeded z of ``seeds`` (one generator per seed), truncated toward the
    mapping's ``w_avg`` by ``psi``."""
    from mobilestylegan.student.sampling import seeded_z
    from teacher.mapping import truncate

    return truncate(G.mapping.embed(seeded_z(seeds, G.z_dim)), G.mapping.w_avg, psi)


def save_latent(path: str | Path, ws: torch.Tensor, G: torch.nn.Module, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``path`` (``.npy``, ``[1, num_ws, w_dim]``) and its ``.json`` description, atomically."""
    p = Path(path).with_suffix(".npy")
    arr = ws.detach().float().cpu().reshape(1, G.num_ws, G.w_dim).numpy()
    desc = {
        "format": LATENT_FORMAT,
        "generator_hash": generator_hash(G),
        "num_ws": G.num_ws,
        "w_dim": G.w_dim,
        "shape": list(arr.shape),
        **meta,
    }
    save_npy(p, arr)
    j = atomic_write(p.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(desc, indent=1) + "\n"))
    return p, j


def projected_image(path: str | Path) -> Path | None:
    """The image a latent file was projected from, as its ``.json`` names it (with alignment, the aligned crop that
    was projected; else the image file given); None without a description naming one."""
    desc = Path(path).with_suffix(".json")
    meta = json.loads(desc.read_text()) if desc.is_file() else {}
    image = meta.get("target") or meta.get("image")
    return Path(image) if image else None


def load_latent(path: str | Path, G: torch.nn.Module, check_hash: bool = True) -> torch.Tensor:
    """A latent file for ``G``: ``[1, num_ws, w_dim]`` (a ``[1, w_dim]`` or ``[w_dim]`` w is broadcast). Raises
    :class:`UsageError` naming the problem for a wrong shape or another generator's latent."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p} does not exist")
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UsageError(f"{p} is not a .npy array ({err})") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim == 2 and arr.shape == (1, G.w_dim):
        arr = np.repeat(arr[:, None], G.num_ws, axis=1)
    if arr.shape != (1, G.num_ws, G.w_dim):
        raise UsageError(
            f"{p} holds an array of shape {list(arr.shape)}; this generator takes [1, {G.num_ws}, "
            f"{G.w_dim}] (W+) or [1, {G.w_dim}] (w)"
        )
    desc_path = p.with_suffix(".json")
    if check_hash and desc_path.is_file():
        desc = json.loads(desc_path.read_text())
        want, got = desc.get("generator_hash"), generator_hash(G)
        if want and want != got:
            raise UsageError(
                f"{p} was projected with another generator (hash {want}; this one is {got}); render it "
                f"with that generator, or pass --ignore-hash to use it anyway"
            )
    return torch.from_numpy(arr.astype(np.float32))
