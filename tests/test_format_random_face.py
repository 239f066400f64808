"""The real StyleGAN2 FFHQ mapping network from random-face's OpenVINO IR: converted to our raw
layout and run by ``teacher.MappingNetwork``, compared with OpenVINO running the original IR."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import numpy as np
import pytest
import torch

import teacher
from teacher.formats import openvino_ir
from teacher.formats.common import CheckpointError
from teacher.numerics import assert_parity

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def checkpoint(ir_files):
    return openvino_ir.read(ir_files["mapping_xml"])  # = read_mapping_ir(...) wrapped in a Checkpoint


@pytest.fixture(scope="module")
def converted(checkpoint):
    return checkpoint.extra["mapping_state"], checkpoint.extra["mapping_info"]


def openvino_mapping(xml_path, z: np.ndarray) -> np.ndarray:
    """The original IR on OpenVINO's CPU plugin in float32 (its default here is bf16)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml_path))
    model.reshape({model.inputs[0].get_any_name(): list(z.shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(z.astype(np.float32))[compiled.outputs[0]]


def test_matches_openvino(ir_files, converted):
    state, info = converted
    z = torch.randn([8, info["z_dim"]], generator=torch.Generator().manual_seed(123))
    expected = openvino_mapping(ir_files["mapping_xml"], z.numpy())  # [8, 512]

    mapping = teacher.MappingNetwork(info["z_dim"], info["w_dim"], info["num_layers"], info["lr_mul"]).eval()
    mapping.load_state_dict(state, strict=True)
    with torch.no_grad():
        w = mapping(z)
    diff = float(np.abs(w.numpy() - expected).max())
    print(f"max abs diff vs OpenVINO f32 over 8 z: {diff:.3g} (|w| up to {np.abs(expected).max():.2f})")
    assert w.shape == (8, 512)
    assert diff <= TOLERANCE


def test_generic_loader(ir_files, converted):
    """teacher.load_mapping detects the format from the file and gives the same network."""
    state, info = converted
    z = torch.randn([4, info["z_dim"]], generator=torch.Generator().manual_seed(5))
    mapping = teacher.MappingNetwork(info["z_dim"], info["w_dim"], info["num_layers"], info["lr_mul"]).eval()
    mapping.load_state_dict(state, strict=True)
    loaded = teacher.load_mapping(ir_files["mapping_xml"])
    with torch.no_grad():
        assert torch.equal(loaded(z), mapping(z))


def test_structure_and_raw_scales(converted):
    state, info = converted
    assert {k: info[k] for k in ("z_dim", "w_dim", "num_layers", "lr_mul")} == {
        "z_dim": 512,
        "w_dim": 512,
        "num_layers": 8,
        "lr_mul": 0.01,
    }
    assert info["output_shape"] == [1, 512]  # a single w, not a broadcast W+
    assert (info["input_name"], info["output_name"]) == ("var", "style")
    assert "estimated" in info["w_avg_source"]
    assert sorted(state) == sorted([f"fc{i}.{p}" for i in range(8) for p in ("weight", "bias")] + ["w_avg"])
    assert all(t.dtype == torch.float32 for t in state.values())
    # Effective weights have std 1/sqrt(512); raw ones std 1 / lr_mul = 100 (StyleGAN2's init scale).
    for i in range(8):
        assert 90 < float(state[f"fc{i}.weight"].std()) < 110


def test_w_avg_is_the_seeded_mean(converted):
    state, info = converted
    mapping = teacher.MappingNetwork(512, 512, 8, info["lr_mul"]).eval()
    mapping.load_state_dict(state, strict=True)
    z = torch.randn([info["w_avg_samples"], 512], generator=torch.Generator().manual_seed(info["w_avg_seed"]))
    with torch.no_grad():
        w_mean = mapping(z).double().mean(0).float()
    assert_parity(state["w_avg"], w_mean, "imported w_avg vs seeded mean recomputed")


def test_read_and_sniff(ir_files, checkpoint):
    mapping_xml, synthesis_xml = ir_files["mapping_xml"], ir_files["synthesis_xml"]
    head = mapping_xml.read_bytes()[:64]
    assert openvino_ir.sniff(mapping_xml, head)
    assert not openvino_ir.sniff(synthesis_xml, synthesis_xml.read_bytes()[:64])
    assert not openvino_ir.sniff(ir_files["mapping_bin"], ir_files["mapping_bin"].read_bytes()[:64])

    ckpt = checkpoint
    assert ckpt.source_format == "openvino-ir-mapping"
    assert ckpt.g_config is None and ckpt.g_state is None
    assert set(ckpt.extra) == {"mapping_state", "mapping_info"}


def test_synthesis_ir_is_rejected(ir_files):
    with pytest.raises(CheckpointError, match="not a (StyleGAN2 )?mapping network IR"):
        openvino_ir.read_mapping_ir(ir_files["synthesis_xml"])


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        openvino_ir.read_mapping_ir(tmp_path / "MappingNetwork.xml")


def test_missing_package_names_the_install_command(monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    with pytest.raises(CheckpointError) as err:
        openvino_ir.random_face_files()
    assert "pip install --no-deps random-face==2021.7.21.1" in str(err.value)
