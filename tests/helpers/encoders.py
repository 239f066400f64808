"""Small latent encoders for export tests: random weights, the generator's whitening, saved bound to its hash."""

from __future__ import annotations

from pathlib import Path

import torch

from mobilestylegan.io.latent_space import generator_hash, live_ws, mapped_w
from mobilestylegan.nets.encoder import EncoderConfig, LatentEncoder
from mobilestylegan.nets.encoder_file import save_encoder


def export_encoder(G: torch.nn.Module, input_size: int = 16, seed: int = 0) -> LatentEncoder:
    """A random encoder for ``G`` with ~100k parameters (big enough that a format's fixed overhead stays within the
    size gate), its whitening from 256 mapped latents; weights depend on ``seed`` only."""
    stages = input_size.bit_length() - 3
    cfg = EncoderConfig(
        G.num_ws,
        G.w_dim,
        tuple(live_ws(G)),
        input_size=input_size,
        channels=tuple(min(32, 16 * 2**i) for i in range(stages)),
        reduce=32,
        hidden=128,
        offset_rank=min(16, G.w_dim),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = LatentEncoder(cfg)
        with torch.no_grad():  # offsets as large as the base, so every head matters in parity checks
            enc.offsets.weight.normal_(0, 0.05)
    enc.set_statistics(mapped_w(G, 256, seed))
    return enc.eval().requires_grad_(False)


def save_export_encoder(G: torch.nn.Module, path: Path, **kw: object) -> Path:
    """:func:`export_encoder` saved to ``path`` (float32), bound to ``G``'s hash."""
    save_encoder(path, export_encoder(G, **kw), generator_hash(G))
    return Path(path)
