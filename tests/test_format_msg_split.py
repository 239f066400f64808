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
from teacher.formats import mobilestylegan
from teacher.formats.common import CheckpointError
from teacher.numerics import assert_parity
from tests.helpers.msg_split import FIR_2D, tiny_config, tiny_native_state, write_split


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


@pytest.mark.parametrize(
    "which, edit, named",
    [
        ("s", lambda o: o["ckpt"].pop("layers.1.conv2.noise.weight"), "missing.*layers.1.conv2.noise.weight"),
        ("s", lambda o: o["ckpt"].__setitem__("noises.noise_0", torch.zeros(1, 1, 4, 4)), "unexpected.*noises.noise_0"),
        (
            "s",
            lambda o: o["ckpt"].__setitem__("to_rgb1.bias", torch.zeros(3)),
            r"mis-shaped.*to_rgb1.bias: file \(3,\)",
        ),
        (
            "s",
            lambda o: o["ckpt"].__setitem__("layers.0.conv1.conv.weight", torch.zeros(1, 16, 8, 3, 3)),
            "mis-shaped.*layers.0.conv1.conv.weight",
        ),
        ("s", lambda o: o["ckpt"].__setitem__("upsample.kernel", torch.ones(4, 4)), "FIR buffer.*upsample.kernel"),
        ("s", lambda o: o["params"].__setitem__("size", 64), "size 64 does not fit"),
        ("s", lambda o: o["params"].__setitem__("trunc", 1), r"unknown \['trunc'\]"),
        ("m", lambda o: o["ckpt"].pop("layers.3.bias"), "missing.*layers.3.bias"),
        ("m", lambda o: o["ckpt"].__setitem__("layers.4.weight", torch.zeros(16, 16)), "unexpected.*layers.4.weight"),
        ("m", lambda o: o["ckpt"].__setitem__("layers.1.weight", torch.zeros(16, 8)), "mis-shaped.*layers.1.weight"),
        ("m", lambda o: o["params"].__setitem__("style_dim", 8), "style_dim differs"),
        ("m", lambda o: o.__setitem__("latent_avg", torch.zeros(16)), "expected keys"),
    ],
)
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
    mnet = OrderedDict((f"layers.{k[len('style.') :]}", v) for k, v in src.items() if k.startswith("style."))
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
    torch.save(
        {"params": {"style_dim": style_dim, "n_layers": len(mnet) // 2}, "ckpt": mnet},
        tmp_path / "fx_mapping_network.ckpt",
    )
    torch.save(
        {"params": {"size": 2 ** (2 + n_blocks), "style_dim": style_dim, "channels": channels}, "ckpt": snet},
        tmp_path / "fx_synthesis_network.ckpt",
    )

    ckpt = mobilestylegan.read(tmp_path)
    G = teacher.Generator(ckpt.g_config).eval()
    G.load_state_dict(ckpt.g_state, strict=True)
    noise = [src[f"noises.noise_{i}"] for i in range(len(G.synthesis.noise_layers()))]
    with torch.no_grad():
        ws = G.mapping(expected["z"])
        img = G.synthesis(expected["wplus"], noise=noise)
    assert_parity(ws, expected["ws_a_broadcast"], "mapping vs fixture ws_a_broadcast")
    assert_parity(img, expected["img_c"], "synthesis vs fixture img_c")
