"""Native and rosinality checkpoints: round trips, strictness, corrupt input, atomic writes, the converter."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

import teacher
from mobilestylegan.cli.convert import main as convert_main
from teacher.formats import CheckpointError, read_checkpoint, rosinality
from teacher.fs import OutputPathError
from teacher.numerics import assert_parity
from tests.helpers.teachers import tiny_checkpoint


def assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_native_roundtrip_generator_and_discriminator(tmp_path, suffix):
    ck = tiny_checkpoint(32)
    path = teacher.save_checkpoint(tmp_path / f"model{suffix}", ck)
    back = read_checkpoint(path)
    assert back.source_format == "native"
    assert back.g_config == ck.g_config and back.d_config == ck.d_config
    assert_same_state(back.g_state, ck.g_state)
    assert_same_state(back.d_state, ck.d_state)
    D = teacher.load_discriminator(path)
    assert D(torch.randn(2, 3, 32, 32)).shape == (2, 1)
    assert [p.name for p in tmp_path.iterdir()] == [f"model{suffix}"]  # no temp files left


def test_native_pt_loads_with_weights_only(tmp_path):
    path = teacher.save_checkpoint(tmp_path / "m.pt", tiny_checkpoint(16, with_d=False))
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == "mobilestylegan-teacher" and obj["d_config"] is None


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda s: s.pop("synthesis.b8.conv0.weight"), r"1 missing key\(s\): synthesis\.b8\.conv0\.weight"),
        (lambda s: s.__setitem__("synthesis.b8.extra", torch.zeros(1)), r"1 unexpected key\(s\): synthesis\.b8\.extra"),
        (lambda s: s.__setitem__("mapping.fc1.bias", torch.zeros(3)), r"mis-shaped.*mapping\.fc1\.bias: file \(3,\)"),
    ],
)
def test_native_strictness(tmp_path, damage, match):
    ck = tiny_checkpoint(16, with_d=False)
    obj = {
        "format": "mobilestylegan-teacher",
        "version": 1,
        "g_config": ck.g_config.to_dict(),
        "g_state": dict(ck.g_state),
        "d_config": None,
        "d_state": None,
    }
    damage(obj["g_state"])
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=match):
        teacher.load_generator(tmp_path / "bad.pt")


def test_save_refuses_inconsistent_state_and_leaves_nothing(tmp_path):
    ck = tiny_checkpoint(16, with_d=False)
    ck.g_state.pop("mapping.w_avg")
    with pytest.raises(CheckpointError, match="mapping.w_avg"):
        teacher.save_checkpoint(tmp_path / "x.pt", ck)
    with pytest.raises(OutputPathError, match="does not exist"):
        teacher.save_checkpoint(tmp_path / "missing_dir" / "x.pt", tiny_checkpoint(16, with_d=False))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        teacher.save_checkpoint(tmp_path / "x.pt", tiny_checkpoint(16, with_d=False))
    assert list(tmp_path.iterdir()) == []


def test_native_version_and_config_errors(tmp_path):
    ck = tiny_checkpoint(16, with_d=False)
    base = {
        "format": "mobilestylegan-teacher",
        "g_config": ck.g_config.to_dict(),
        "g_state": ck.g_state,
        "d_config": None,
        "d_state": None,
    }
    torch.save({**base, "version": 99}, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        read_checkpoint(tmp_path / "v.pt")
    torch.save({**base, "version": 1, "g_config": {**ck.g_config.to_dict(), "widht": 3}}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="widht"):
        read_checkpoint(tmp_path / "c.pt")


def test_unreadable_files_get_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        read_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "junk.bin").write_bytes(b"hello world, not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="unrecognised checkpoint format"):
        read_checkpoint(tmp_path / "junk.bin")
    good = teacher.save_checkpoint(tmp_path / "good.pt", tiny_checkpoint(16, with_d=False))
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "trunc.pt")
    torch.save({"model": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a StyleGAN2 checkpoint we know"):
        read_checkpoint(tmp_path / "other.pt")
    # A class reference is inert data (never imported); a pickled call of anything is refused, unexecuted.
    torch.save({"g_ema": {"x": torch.zeros(1)}, "evil": argparse.ArgumentParser}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="not a StyleGAN2 checkpoint we know"):
        read_checkpoint(tmp_path / "code.pt")
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"g_ema": {"x": torch.zeros(1)}, "evil": Evil()}, tmp_path / "call.pt")
    with pytest.raises(CheckpointError, match=r"refused to call posix\.system.*nothing was executed"):
        read_checkpoint(tmp_path / "call.pt")
    assert not marker.exists()


def test_rosinality_training_checkpoint_roundtrip(tmp_path):
    """A training checkpoint (g, d, g_ema, optimiser states, argparse args) in rosinality's layout."""
    ck = tiny_checkpoint(32)
    d = rosinality.to_dict(ck)
    g_ema = d.pop("g_ema")
    latent_avg = d.pop("latent_avg")
    train = {
        "g": {k: v + 1 for k, v in g_ema.items()},
        "g_ema": g_ema,
        "d": d["d"],
        "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0]}]},
        "d_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0]}]},
        "args": argparse.Namespace(size=32, batch=16, r1=10.0),
        "ada_aug_p": 0.0,
    }
    torch.save(train, tmp_path / "050000.pt")
    back = read_checkpoint(tmp_path / "050000.pt")
    assert back.source_format == "rosinality" and back.extra["generator_key"] == "g_ema"
    assert back.extra["args"] == {"size": 32, "batch": 16, "r1": 10.0}
    assert back.g_config == ck.g_config and back.d_config == ck.d_config
    assert_same_state(back.d_state, ck.d_state)
    # No latent_avg in training checkpoints: w_avg is estimated from the mapping network.
    assert "mean of mapping" in back.extra["w_avg_source"]
    expected = {k: v for k, v in ck.g_state.items() if k != "mapping.w_avg"}
    assert_same_state({k: v for k, v in back.g_state.items() if k != "mapping.w_avg"}, expected)
    G = teacher.Generator(ck.g_config)
    G.load_state_dict(ck.g_state)
    with torch.no_grad():
        w = G.mapping.embed(torch.randn(4096, G.z_dim, generator=torch.Generator().manual_seed(0))).mean(0)
    assert_parity(back.g_state["mapping.w_avg"], w, "estimated w_avg vs mean of 4096 mapped z")
    # With latent_avg (what convert_weight.py writes), it is used as is.
    torch.save({"g_ema": g_ema, "latent_avg": latent_avg}, tmp_path / "ffhq.pt")
    assert_same_state(read_checkpoint(tmp_path / "ffhq.pt").g_state, ck.g_state)


def test_rosinality_errors(tmp_path):
    ck = tiny_checkpoint(16, with_d=False)
    d = rosinality.to_dict(ck)
    g = dict(d["g_ema"])
    g.pop("convs.1.conv.weight")
    torch.save({"g_ema": g, "latent_avg": d["latent_avg"]}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"missing key 'convs\.1\.conv\.weight'"):
        read_checkpoint(tmp_path / "a.pt")
    g = dict(d["g_ema"], **{"convs.0.conv.extra": torch.zeros(1)})
    torch.save({"g_ema": g, "latent_avg": d["latent_avg"]}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): convs\.0\.conv\.extra"):
        read_checkpoint(tmp_path / "b.pt")
    g = dict(d["g_ema"], **{"convs.0.conv.blur.kernel": torch.ones(4, 4)})
    torch.save({"g_ema": g, "latent_avg": d["latent_avg"]}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="blur kernel"):
        read_checkpoint(tmp_path / "c.pt")
    g = dict(d["g_ema"], **{"to_rgbs.0.conv.modulation.weight": torch.zeros(3, 3)})
    torch.save({"g_ema": g, "latent_avg": d["latent_avg"]}, tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match="mis-shaped.*b8.torgb.affine.weight"):
        read_checkpoint(tmp_path / "e.pt")
    torch.save({"g_ema": d["g_ema"], "latent_avg": torch.zeros(7)}, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="latent_avg has shape"):
        read_checkpoint(tmp_path / "f.pt")


def test_reference_fixture_through_native_and_rosinality_writer(rosinality_fixture, tmp_path):
    path, E = rosinality_fixture
    ck = read_checkpoint(path)
    out = teacher.save_checkpoint(tmp_path / "tiny.safetensors", ck)
    G = teacher.load_generator(out)
    with torch.no_grad():
        assert_parity(G.synthesis(E["wplus"]), E["img_c"], "safetensors round trip: img_c vs fixture")
    # Writing back to rosinality's layout gives exactly the original tensors.
    original = torch.load(path, weights_only=True)
    again = rosinality.to_dict(ck)
    assert_same_state(again["g_ema"], original["g_ema"])
    assert torch.equal(again["latent_avg"], original["latent_avg"])


def test_convert_cli(rosinality_fixture, tmp_path, capsys):
    path, E = rosinality_fixture
    out = tmp_path / "t.pt"
    assert convert_main([str(path), str(out)]) == 0
    assert "rosinality -> native" in capsys.readouterr().out
    with torch.no_grad():
        assert_parity(teacher.load_generator(out).synthesis(E["wplus"]), E["img_c"], "converted: img_c vs fixture")
    assert convert_main([str(path), str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert convert_main([str(path), str(tmp_path / "t.onnx")]) == 2
    assert convert_main([str(path), str(tmp_path / "d.pt"), "--only", "discriminator"]) == 1
    assert "no discriminator" in capsys.readouterr().err
    assert convert_main([str(tmp_path / "missing.pt"), str(tmp_path / "m.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["t.pt"]
