"""Where projection starts: a trained encoder's latent, the mean latent, or the nearest of pre-rendered faces.

- ``encoder``: :func:`load_encoder` reads an encoder file (``python train.py experiment=encoder_...`` writes one) or a
  shipped one by name, and checks that it was trained for the generator at hand (by hash).
- ``mean``: the mean of mapped latents (the StyleGAN2 projector's start).
- ``nearest``: the latent of the closest of ``n`` pre-rendered generator faces (psi 0.7), compared as 32x32
  thumbnails with each colour channel's mean removed (pose, shape and shading rather than exposure); the cheap
  baseline an encoder must beat. The faces are rendered once per generator and cached by its hash under
  ``cache_root()/nearest``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mobilestylegan.errors import UsageError
from mobilestylegan.io.arrays import save_npz
from mobilestylegan.io.latent_space import generator_hash
from mobilestylegan.nets.encoder import LatentEncoder
from mobilestylegan.nets.encoder_file import read_encoder
from mobilestylegan.nets.resize import area_downsample
from teacher.fs import cache_root

INITS = ("encoder", "mean", "nearest")
ASSETS = Path(__file__).resolve().parent / "assets"


@dataclass(frozen=True)
class ShippedEncoder:
    """An encoder in the repository: its file under ``mobilestylegan/edit/assets`` and the generator it encodes for."""

    file: str
    generator: str
    generator_hash: str


# Encoders in the repository, each made by its documented command (docs/project_edit.md): ffhq-1024's by
# `python train.py experiment=encoder_ffhq1024` (12288 faces of the published student, 3000 steps).
SHIPPED: dict[str, ShippedEncoder] = {
    "ffhq-1024": ShippedEncoder("ffhq-1024-encoder.safetensors", "ffhq-1024", "d3cfde71c357d696"),
}


def load_encoder(source: str | Path, generator: torch.nn.Module | None = None) -> LatentEncoder:
    """The encoder ``source`` names (a shipped name such as ``ffhq-1024``, or an encoder file), float32 in eval mode,
    with ``generator_hash`` and ``info`` attributes. With ``generator``, an encoder trained for another generator is a
    :class:`UsageError` naming both hashes and the fix."""
    from teacher.formats.common import CheckpointError

    name = str(source)
    if name in SHIPPED:
        path = ASSETS / SHIPPED[name].file
    elif Path(name).is_file():
        path = Path(name)
    else:
        shipped = f" (shipped: {', '.join(SHIPPED)})" if SHIPPED else " (none ships with this version)"
        raise UsageError(
            f"no encoder {name!r}: give an encoder file written by `python train.py experiment=encoder_ffhq1024` "
            f"(or another encoder_* experiment) or a shipped name{shipped}"
        )
    try:
        encoder, desc = read_encoder(path)
    except CheckpointError as err:
        raise UsageError(str(err)) from None
    encoder.generator_hash, encoder.info = desc["generator_hash"], desc["info"]
    if generator is not None:
        got = generator_hash(generator)
        if desc["generator_hash"] != got:
            trained_for = desc["info"].get("generator", "another generator")
            raise UsageError(
                f"the encoder {path} was trained for {trained_for} (hash {desc['generator_hash']}), not this generator "
                f"(hash {got}); train one for it with `python train.py experiment=encoder_ffhq1024 "
                f"encoder.generator=SOURCE` or start from --init mean"
            )
    return encoder


def shipped_encoder_for(G: torch.nn.Module) -> str | None:
    """The name of the shipped encoder trained for ``G`` (by hash), or None."""
    h = generator_hash(G)
    return next((name for name, s in SHIPPED.items() if s.generator_hash == h and (ASSETS / s.file).is_file()), None)


@torch.no_grad()
def encode(encoder: LatentEncoder, target: torch.Tensor) -> torch.Tensor:
    """The encoder's W+ ``[1, num_ws, w_dim]`` for an aligned face ``[1, 3, R, R]`` in [-1, 1] (any R; area-resized
    to the encoder's input)."""
    return encoder(target.float())


THUMB = 32


def _thumbnails(img: torch.Tensor) -> torch.Tensor:
    """The nearest-face features: 32x32 thumbnails, each channel's mean removed, flattened ``[N, 3072]``."""
    t = area_downsample(img.float(), THUMB)
    return (t - t.mean(dim=(2, 3), keepdim=True)).flatten(1)


@torch.no_grad()
def nearest_bank(
    G: torch.nn.Module, n: int = 512, psi: float = 0.7, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w [n, w_dim], thumbnail features [n, 3072])`` of ``n`` seeded faces, cached by the generator's hash."""
    path = cache_root() / "nearest" / f"{generator_hash(G)}-{n}-{psi:g}-{seed}.npz"
    if path.is_file():
        data = np.load(path)
        return torch.from_numpy(data["w"]), torch.from_numpy(data["features"])
    from mobilestylegan.io.latent_space import mapped_w
    from teacher.mapping import truncate

    w = truncate(mapped_w(G, n, seed).float(), G.mapping.w_avg.float().cpu(), psi)
    feats = []
    for i in range(0, n, 4):
        img = G.synthesis(w[i : i + 4, None].expand(-1, G.num_ws, -1), noise_mode="const")
        feats.append(_thumbnails(img))
    features = torch.cat(feats)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, w=w.numpy(), features=features.numpy())
    return w, features


def nearest_latent(G: torch.nn.Module, target: torch.Tensor, n: int = 512) -> torch.Tensor:
    """The W+ ``[1, num_ws, w_dim]`` of the bank face closest to ``target`` (see the module docstring)."""
    w, features = nearest_bank(G, n)
    k = int(torch.cdist(_thumbnails(target), features).argmin())
    return w[k][None, None].expand(1, G.num_ws, -1).clone()


__all__ = ["INITS", "SHIPPED", "encode", "load_encoder", "nearest_bank", "nearest_latent", "shipped_encoder_for"]
