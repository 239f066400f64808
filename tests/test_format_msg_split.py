"""MobileStyleGAN.pytorch's split teacher files (``{"params", "ckpt"}``, mapping + synthesis).

The writer below produces the files in the layout of MobileStyleGAN's ``convert_rosinality_ckpt.py``
(module order of its ``MappingNetwork`` / ``SynthesisNetwork`` state dicts, FIR buffers included).
It is spelled out independently of the reader's key table, and a second test converts the shared
rosinality fixture the way that script does and checks the images against the reference outputs.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import teacher
from teacher.config import GeneratorConfig
from teacher.formats import mobilestylegan
from teacher.formats.common import CheckpointError
from teacher.formats.layout import generator_shapes
from teacher.numerics import assert_parity

FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])
FIR_2D = FIR[:, None] * FIR[None, :] / 64 * 4  # rosinality make_kernel(...) * factor**2


def tiny_config(res: int = 32) -> GeneratorConfig:
    channels = {4: 16, 8: 16, 16: 8, 32: 8, 64: 8}
    return GeneratorConfig(z_dim=16, w_dim=16, img_resolution=res,
                           channels={r: c for r, c in channels.items() if r <= res}, mapping_layers=3)


def tiny_native_state(cfg: GeneratorConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random native state; noise maps and w_avg zero (the split files cannot hold them)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.zeros(s) if k.endswith("noise_const") or k == "mapping.w_avg" else torch.randn(s, generator=g)
            for k, s in generator_shapes(cfg).items()}


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


def write_split(cfg: GeneratorConfig, state: dict, directory: Path, prefix: str = "tiny_",
                extra_params: dict | None = None) -> tuple[Path, Path]:
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
    s_params = {"size": cfg.img_resolution, "style_dim": cfg.w_dim,
                "channels": [cfg.channels[r] for r in cfg.resolutions], **(extra_params or {})}
    torch.save({"params": s_params, "ckpt": snet}, s_path)
    return m_path, s_path


@pytest.fixture
def pair(tmp_path):
    cfg = tiny_config()
    state = tiny_native_state(cfg)
    return cfg, state, write_split(cfg, state, tmp_path)


def assert_same_state(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == torch.float32 and torch.equal(got[k], want[k]), k


def test_round_trip_directory_and_either_file(pair, tmp_path):
    cfg, state, (m_path, s_path) = pair
    for source in (tmp_path, m_path, s_path):
        ckpt = mobilestylegan.read(source)
        assert ckpt.source_format == "mobilestylegan-split"
        assert ckpt.g_config == cfg
        assert_same_state(ckpt.g_state, state)
        assert ckpt.extra["noise_const_missing"] and ckpt.extra["w_avg_missing"]
    G = teacher.Generator(cfg)
    G.load_state_dict(ckpt.g_state, strict=True)


def test_generic_reader_detects_the_format(pair, tmp_path):
    cfg, state, (m_path, s_path) = pair
    for source in (tmp_path, s_path):
        ckpt = teacher.read_checkpoint(source)
        assert ckpt.source_format == "mobilestylegan-split"
        assert_same_state(ckpt.g_state, state)


def test_published_params_variant(tmp_path):
    """The published FFHQ file's params may carry input_shape (MobileStyleGAN's Distiller reads it)."""
    cfg = tiny_config(16)
    state = tiny_native_state(cfg, seed=1)
    m_path, s_path = write_split(cfg, state, tmp_path, prefix="x_", extra_params={"input_shape": (4, 4)})
    assert_same_state(mobilestylegan.read_pair(m_path, s_path).g_state, state)


def test_sniff(pair, tmp_path):
    _, _, (m_path, s_path) = pair
    assert mobilestylegan.sniff(tmp_path, b"")
    for p in (m_path, s_path):
        assert mobilestylegan.sniff(p, p.read_bytes()[:64])
    other = tmp_path / "other.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": torch.zeros(2)}, other)
    assert not mobilestylegan.sniff(other, other.read_bytes()[:64])
    assert not mobilestylegan.sniff(tmp_path / "empty_dir_does_not_exist", b"")


def test_lone_file_asks_for_both(pair):
    _, _, (m_path, s_path) = pair
    m_path.unlink()
    with pytest.raises(CheckpointError, match="synthesis network.*directory.*read_pair"):
        mobilestylegan.read(s_path)


def test_directory_errors(pair, tmp_path):
    cfg, state, _ = pair
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no MobileStyleGAN mapping/synthesis file pair"):
        mobilestylegan.read(empty)
    write_split(cfg, state, tmp_path, prefix="second_")
    with pytest.raises(CheckpointError, match="2 MobileStyleGAN file pairs"):
        mobilestylegan.read(tmp_path)


def test_swapped_files(pair):
    _, _, (m_path, s_path) = pair
    with pytest.raises(CheckpointError, match="not the mapping network"):
        mobilestylegan.read_pair(s_path, m_path)


def _edit(path: Path, fn) -> None:
    obj = torch.load(path, weights_only=True)
    fn(obj)
    torch.save(obj, path)


@pytest.mark.parametrize("which, edit, named", [
    ("s", lambda o: o["ckpt"].pop("layers.1.conv2.noise.weight"), "missing.*layers.1.conv2.noise.weight"),
    ("s", lambda o: o["ckpt"].__setitem__("noises.noise_0", torch.zeros(1, 1, 4, 4)), "unexpected.*noises.noise_0"),
    ("s", lambda o: o["ckpt"].__setitem__("to_rgb1.bias", torch.zeros(3)), r"mis-shaped.*to_rgb1.bias: file \(3,\)"),
    ("s", lambda o: o["ckpt"].__setitem__("layers.0.conv1.conv.weight", torch.zeros(1, 16, 8, 3, 3)),
     "mis-shaped.*layers.0.conv1.conv.weight"),
    ("s", lambda o: o["ckpt"].__setitem__("upsample.kernel", torch.ones(4, 4)), "FIR buffer.*upsample.kernel"),
    ("s", lambda o: o["params"].__setitem__("size", 64), "size 64 does not fit"),
    ("s", lambda o: o["params"].__setitem__("trunc", 1), r"unknown \['trunc'\]"),
    ("m", lambda o: o["ckpt"].pop("layers.3.bias"), "missing.*layers.3.bias"),
    ("m", lambda o: o["ckpt"].__setitem__("layers.4.weight", torch.zeros(16, 16)), "unexpected.*layers.4.weight"),
    ("m", lambda o: o["ckpt"].__setitem__("layers.1.weight", torch.zeros(16, 8)), "mis-shaped.*layers.1.weight"),
    ("m", lambda o: o["params"].__setitem__("style_dim", 8), "style_dim differs"),
    ("m", lambda o: o.__setitem__("latent_avg", torch.zeros(16)), "expected keys"),
])
def test_strict(pair, which, edit, named):
    _, _, (m_path, s_path) = pair
    _edit(m_path if which == "m" else s_path, edit)
    with pytest.raises(CheckpointError, match=named):
        mobilestylegan.read_pair(m_path, s_path)


def test_converted_rosinality_fixture_renders_like_the_reference(rosinality_fixture, tmp_path):
    """Split the shared rosinality checkpoint the way convert_rosinality_ckpt.py does, read it back and
    render with the fixture's own noise maps: the reference images must come out."""
    path, expected = rosinality_fixture
    src = torch.load(path, weights_only=True)["g_ema"]
    mnet = OrderedDict((f"layers.{k[len('style.'):]}", v) for k, v in src.items() if k.startswith("style."))
    snet = OrderedDict()
    for k, v in src.items():
        head, _, rest = k.partition(".")
        if head in ("input", "conv1", "to_rgb1"):
            snet[k] = v
        elif head == "convs":
            i, _, tail = rest.partition(".")
            snet[f"layers.{int(i) // 2}.{'conv1' if int(i) % 2 == 0 else 'conv2'}.{tail}"] = v
        elif head == "to_rgbs":
            i, _, tail = rest.partition(".")
            snet[f"layers.{i}.to_rgb.{tail}"] = v
    snet["upsample.kernel"] = FIR_2D.clone()
    n_blocks = len([k for k in snet if k.endswith(".conv2.noise.weight")])
    channels = [snet["input.input"].shape[1]]
    channels += [snet[f"layers.{j}.conv2.activate.bias"].shape[0] for j in range(n_blocks)]
    style_dim = mnet["layers.1.bias"].shape[0]
    torch.save({"params": {"style_dim": style_dim, "n_layers": len(mnet) // 2}, "ckpt": mnet},
               tmp_path / "fx_mapping_network.ckpt")
    torch.save({"params": {"size": 2 ** (2 + n_blocks), "style_dim": style_dim, "channels": channels}, "ckpt": snet},
               tmp_path / "fx_synthesis_network.ckpt")

    ckpt = mobilestylegan.read(tmp_path)
    G = teacher.Generator(ckpt.g_config).eval()
    G.load_state_dict(ckpt.g_state, strict=True)
    noise = [src[f"noises.noise_{i}"] for i in range(len(G.synthesis.noise_layers()))]
    with torch.no_grad():
        ws = G.mapping(expected["z"])
        img = G.synthesis(expected["wplus"], noise=noise)
    assert_parity(ws, expected["ws_a_broadcast"], "mapping vs fixture ws_a_broadcast")
    assert_parity(img, expected["img_c"], "synthesis vs fixture img_c")
