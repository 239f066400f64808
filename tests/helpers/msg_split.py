"""MobileStyleGAN.pytorch's split teacher files (``{"params", "ckpt"}``, mapping + synthesis) written from a native
generator state, in the layout of MobileStyleGAN's ``convert_rosinality_ckpt.py`` (module order of its
``MappingNetwork`` / ``SynthesisNetwork`` state dicts, FIR buffers included), spelled out independently of the
reader's key table."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from teacher.config import GeneratorConfig
from teacher.formats.layout import generator_shapes

FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])
FIR_2D = FIR[:, None] * FIR[None, :] / 64 * 4  # rosinality make_kernel(...) * factor**2


def tiny_config(res: int = 32) -> GeneratorConfig:
    channels = {4: 16, 8: 16, 16: 8, 32: 8, 64: 8}
    return GeneratorConfig(
        z_dim=16,
        w_dim=16,
        img_resolution=res,
        channels={r: c for r, c in channels.items() if r <= res},
        mapping_layers=3,
    )


def tiny_native_state(cfg: GeneratorConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random native state; noise maps and w_avg zero (the split files cannot hold them)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.zeros(s) if k.endswith("noise_const") or k == "mapping.w_avg" else torch.randn(s, generator=g)
        for k, s in generator_shapes(cfg).items()
    }


def _styled_conv(state: dict, native: str, up: bool) -> OrderedDict:
    out = OrderedDict()
    out["conv.weight"] = state[f"{native}.weight"][None]  # [1, out, in, 3, 3]
    if up:
        out["conv.blur.kernel"] = FIR_2D.clone()
    out["conv.modulation.weight"] = state[f"{native}.affine.weight"]
    out["conv.modulation.bias"] = state[f"{native}.affine.bias"]
    out["noise.weight"] = state[f"{native}.noise_strength"].reshape(1)
    out["activate.bias"] = state[f"{native}.bias"]
    return out


def _to_rgb(state: dict, native: str, up: bool) -> OrderedDict:
    out = OrderedDict()
    out["bias"] = state[f"{native}.bias"].reshape(1, 3, 1, 1)
    if up:
        out["upsample.kernel"] = FIR_2D.clone()
    out["conv.weight"] = state[f"{native}.weight"][None]  # [1, 3, C, 1, 1]
    out["conv.modulation.weight"] = state[f"{native}.affine.weight"]
    out["conv.modulation.bias"] = state[f"{native}.affine.bias"]
    return out


def _prefixed(prefix: str, d: OrderedDict) -> OrderedDict:
    return OrderedDict((f"{prefix}.{k}", v.clone()) for k, v in d.items())


def write_split(
    cfg: GeneratorConfig, state: dict, directory: Path, prefix: str = "tiny_", extra_params: dict | None = None
) -> tuple[Path, Path]:
    """Native generator state -> ``{prefix}mapping_network.ckpt`` + ``{prefix}synthesis_network.ckpt``."""
    mnet = OrderedDict()
    for i in range(cfg.mapping_layers):  # layers.0 is the parameter-free PixelNorm
        mnet[f"layers.{i + 1}.weight"] = state[f"mapping.fc{i}.weight"].clone()
        mnet[f"layers.{i + 1}.bias"] = state[f"mapping.fc{i}.bias"].clone()
    snet = OrderedDict()
    snet["input.input"] = state["synthesis.b4.const"][None].clone()
    snet.update(_prefixed("conv1", _styled_conv(state, "synthesis.b4.conv1", up=False)))
    snet.update(_prefixed("to_rgb1", _to_rgb(state, "synthesis.b4.torgb", up=False)))
    for j, res in enumerate(cfg.resolutions[1:]):
        snet.update(_prefixed(f"layers.{j}.conv1", _styled_conv(state, f"synthesis.b{res}.conv0", up=True)))
        snet.update(_prefixed(f"layers.{j}.conv2", _styled_conv(state, f"synthesis.b{res}.conv1", up=False)))
        snet.update(_prefixed(f"layers.{j}.to_rgb", _to_rgb(state, f"synthesis.b{res}.torgb", up=True)))
    snet["upsample.kernel"] = FIR_2D.clone()

    m_path, s_path = directory / f"{prefix}mapping_network.ckpt", directory / f"{prefix}synthesis_network.ckpt"
    torch.save({"params": {"style_dim": cfg.w_dim, "n_layers": cfg.mapping_layers}, "ckpt": mnet}, m_path)
    s_params = {
        "size": cfg.img_resolution,
        "style_dim": cfg.w_dim,
        "channels": [cfg.channels[r] for r in cfg.resolutions],
        **(extra_params or {}),
    }
    torch.save({"params": s_params, "ckpt": snet}, s_path)
    return m_path, s_path
