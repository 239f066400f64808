"""The frozen StyleGAN2 teacher: networks, fused ops and checkpoint loaders.

G = teacher.load_generator("stylegan2-ffhq-config-f.pkl")   # any supported format
ws = G.mapping(z, truncation_psi=0.7)                       # [N, num_ws, w_dim]
img, noise = G.synthesis(ws, noise_mode="random", return_noise=True)
"""

from __future__ import annotations

import os

import torch

from teacher.config import DiscriminatorConfig, GeneratorConfig, default_channels
from teacher.discriminator import Discriminator
from teacher.formats import Checkpoint, CheckpointError, read_checkpoint
from teacher.formats.native import save as save_checkpoint
from teacher.generator import Generator, mix_styles, random_mixing_cutoff
from teacher.mapping import MappingNetwork, truncate
from teacher.synthesis import SynthesisNetwork

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "MappingNetwork",
    "SynthesisNetwork",
    "default_channels",
    "load_discriminator",
    "load_generator",
    "load_mapping",
    "mix_styles",
    "random_mixing_cutoff",
    "read_checkpoint",
    "save_checkpoint",
    "truncate",
]


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    module.eval().requires_grad_(False)
    return module


def generator_from_checkpoint(ckpt: Checkpoint, what: str = "checkpoint") -> Generator:
    if ckpt.g_config is None:
        hint = " (it holds only a mapping network: use teacher.load_mapping)" if "mapping_state" in ckpt.extra else ""
        raise CheckpointError(f"{what} holds no generator{hint}")
    G = Generator(ckpt.g_config)
    G.load_state_dict(ckpt.g_state, strict=True)
    return G


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator from any supported file: eval mode, gradients off."""
    return _frozen(generator_from_checkpoint(read_checkpoint(path), str(path)).to(device))


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Discriminator:
    """Load the discriminator stored in a checkpoint (rosinality ``d``, NVIDIA ``D``, TF ``D``, native)."""
    ckpt = read_checkpoint(path)
    if ckpt.d_config is None:
        raise CheckpointError(f"{path} holds no discriminator (a {ckpt.source_format} file with a generator only)")
    D = Discriminator(ckpt.d_config)
    D.load_state_dict(ckpt.d_state, strict=True)
    return _frozen(D.to(device))


def load_mapping(path: str | os.PathLike, device: str | torch.device = "cpu") -> MappingNetwork:
    """Load only the mapping network (returns one w per sample, ``[N, w_dim]``).

    Works on full generator checkpoints and on mapping-only files (random-face's OpenVINO IR).
    """
    ckpt = read_checkpoint(path)
    if ckpt.g_config is not None:
        cfg = ckpt.g_config
        state = {k[len("mapping.") :]: v for k, v in ckpt.g_state.items() if k.startswith("mapping.")}
        m = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul)
    elif "mapping_state" in ckpt.extra:
        info = ckpt.extra["mapping_info"]
        state = ckpt.extra["mapping_state"]
        m = MappingNetwork(info["z_dim"], info["w_dim"], info["num_layers"], info["lr_mul"])
    else:
        raise CheckpointError(f"{path} holds no mapping network")
    m.load_state_dict(state, strict=True)
    return _frozen(m.to(device))
