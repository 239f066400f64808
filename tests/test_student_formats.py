"""Students from MobileStyleGAN.pytorch Lightning checkpoints (a fixture written in their layout)."""

from __future__ import annotations

import math

import pytest
import torch

from mobilestylegan.io.load import load_any_student
from teacher.formats.common import CheckpointError
from tests.helpers.students import tiny_student


def write_original_ckpt(path, G, drop_style_inv: bool = False) -> None:
    """What bes-dev/MobileStyleGAN.pytorch's Lightning Distiller saves (the parts we read, plus noise)."""
    sd = {f"student.{k}": v for k, v in G.synthesis.state_dict().items() if not k.endswith("noise_const")}
    if drop_style_inv:
        sd = {k: v for k, v in sd.items() if not k.endswith("style_inv")}
    r = 1 / math.sqrt(2)
    filters = {
        "g0_col": torch.tensor([r, r]).reshape(1, 1, -1, 1),
        "g1_col": torch.tensor([r, -r]).reshape(1, 1, -1, 1),
        "g0_row": torch.tensor([r, r]).reshape(1, 1, 1, -1),
        "g1_row": torch.tensor([r, -r]).reshape(1, 1, 1, -1),
    }
    for prefix in ["student.idwt."] + [f"student.layers.{i}.up.idwt." for i in range(len(G.synthesis.layers))]:
        sd.update({prefix + k: v for k, v in filters.items()})
    sd["student.device_info"] = torch.zeros(1)
    for i in range(G.mapping.num_layers):
        sd[f"mapping_net.layers.{i + 1}.weight"] = getattr(G.mapping, f"fc{i}").weight.detach().clone()
        sd[f"mapping_net.layers.{i + 1}.bias"] = getattr(G.mapping, f"fc{i}").bias.detach().clone()
    sd["style_mean"] = G.mapping.w_avg[None, None].repeat(1, G.num_ws, 1)
    sd["synthesis_net.input.input"] = torch.zeros(1, 4, 4, 4)  # the frozen teacher: ignored
    sd["loss.gan_loss.m.convs.0.0.weight"] = torch.zeros(2, 3, 1, 1)
    sd["device_info"] = torch.tensor(1)
    ckpt = {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "1.0.2",
        "state_dict": sd,
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 5e-4, "params": [0]}]}],
        "lr_schedulers": [],
    }
    torch.save(ckpt, path)


def test_lightning_checkpoint_roundtrip(tmp_path):
    G = tiny_student()
    write_original_ckpt(tmp_path / "last.ckpt", G)
    back = load_any_student(tmp_path / "last.ckpt")
    assert back.cfg == G.cfg and back.info["source_format"] == "mobilestylegan-lightning"
    z = torch.randn(2, G.z_dim)
    noise = G.synthesis.make_noise(2, "random")
    with torch.no_grad():
        torch.testing.assert_close(
            back.mapping(z, truncation_psi=0.5), G.mapping(z, truncation_psi=0.5), rtol=0, atol=0
        )
        ws = G.mapping(z)
        torch.testing.assert_close(back.synthesis(ws, noise=noise), G.synthesis(ws, noise=noise), rtol=0, atol=0)
        # The original stores no noise maps: const noise is a seeded draw, identical on every load.
        again = load_any_student(tmp_path / "last.ckpt")
        torch.testing.assert_close(again.synthesis(ws), back.synthesis(ws), rtol=0, atol=0)


def test_lightning_checkpoint_errors(tmp_path):
    G = tiny_student()
    write_original_ckpt(tmp_path / "tanh.ckpt", G, drop_style_inv=True)
    with pytest.raises(CheckpointError, match="later MobileStyleGAN.pytorch revision"):
        load_any_student(tmp_path / "tanh.ckpt")
    write_original_ckpt(tmp_path / "a.ckpt", G)
    ck = torch.load(tmp_path / "a.ckpt", weights_only=True)
    ck["state_dict"]["student.layers.1.conv2.conv.weight_permute"] = torch.zeros(3, 3, 1, 1)
    torch.save(ck, tmp_path / "b.ckpt")
    with pytest.raises(CheckpointError, match=r"mis-shaped.*layers\.1\.conv2\.conv\.weight_permute"):
        load_any_student(tmp_path / "b.ckpt")
    ck = torch.load(tmp_path / "a.ckpt", weights_only=True)
    ck["state_dict"]["student.idwt.g1_row"] = torch.ones(1, 1, 1, 4)
    torch.save(ck, tmp_path / "c.ckpt")
    with pytest.raises(CheckpointError, match="not a Haar"):
        load_any_student(tmp_path / "c.ckpt")
    torch.save({"state_dict": {"model.x": torch.zeros(1)}}, tmp_path / "d.ckpt")
    with pytest.raises(CheckpointError, match="holds no student"):
        load_any_student(tmp_path / "d.ckpt")
    with pytest.raises(CheckpointError, match="not a pretrained name"):
        load_any_student(tmp_path / "missing.ckpt")
