"""TensorFlow StyleGAN2 release pickles: the legacy.py transposes and flips, round trips, strictness,
refusals, corrupt input and safety (nothing is imported from TF, nothing is executed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import teacher
from teacher.config import DiscriminatorConfig, GeneratorConfig
from teacher.formats import CheckpointError, nvidia, read_checkpoint, tensorflow
from teacher.formats.layout import discriminator_shapes, generator_shapes
from teacher.formats.safe_pickle import pickle_globals
from teacher.numerics import assert_parity
from tests.helpers.fake_checkpoints import (
    Global,
    Reduce,
    dump,
    exec_payload,
    random_state,
    storage_blob,
    tensor_over_blob,
    tf_discriminator_variables,
    tf_mapping_variables,
    tf_synthesis_variables,
    write_nvidia_pkl,
    write_tf_pkl,
)

G_CFG = GeneratorConfig(z_dim=12, w_dim=16, img_resolution=16, channels={4: 16, 8: 16, 16: 8}, mapping_layers=3)
D_CFG = DiscriminatorConfig(img_resolution=16, channels={4: 16, 8: 16, 16: 8})


@pytest.fixture(scope="module")
def states() -> tuple[dict, dict]:
    return random_state(generator_shapes(G_CFG), 0), random_state(discriminator_shapes(D_CFG), 1)


def assert_same_state(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == torch.float32 and got[k].shape == want[k].shape and torch.equal(got[k], want[k]), k


def write(tmp_path, states, name="tf.pkl", g_state=None, d_state=None, **options) -> str:
    path = str(tmp_path / name)
    write_tf_pkl(
        path,
        G_CFG,
        states[0] if g_state is None else g_state,
        D_CFG,
        states[1] if d_state is None else d_state,
        **options,
    )
    return path


# --- the writer follows NVIDIA's legacy.py facts (checked here once, independently of the reader) -----


def test_fake_writer_uses_tf_layouts(states):
    g, d = states
    syn = dict(tf_synthesis_variables(G_CFG, g))
    mapping = dict(tf_mapping_variables(G_CFG, g))
    disc = dict(tf_discriminator_variables(D_CFG, d))
    assert mapping["Dense0/weight"].shape == (12, 16)  # [in, out]
    np.testing.assert_array_equal(mapping["Dense1/weight"], g["mapping.fc1.weight"].numpy().T)
    assert syn["4x4/Const/const"].shape == (1, 16, 4, 4) and syn["noise0"].shape == (1, 1, 4, 4)
    w_up, w = g["synthesis.b16.conv0.weight"].numpy(), g["synthesis.b16.conv1.weight"].numpy()  # [out, in, kh, kw]
    tf_up, tf = syn["16x16/Conv0_up/weight"], syn["16x16/Conv1/weight"]  # [kh, kw, in, out]
    assert tf_up.shape == (3, 3, 16, 8) and tf.shape == (3, 3, 8, 8)
    for o, i, kh, kw in [(0, 0, 0, 0), (7, 15, 0, 2), (3, 5, 1, 2), (2, 9, 2, 1)]:
        assert tf_up[2 - kh, 2 - kw, i, o] == w_up[o, i, kh, kw]  # Conv0_up: flipped in both spatial axes
        assert tf[kh, kw, i % 8, o] == w[o, i % 8, kh, kw]
    np.testing.assert_array_equal(
        syn["8x8/Conv1/mod_bias"] + np.float32(1), g["synthesis.b8.conv1.affine.bias"].numpy()
    )
    np.testing.assert_array_equal(syn["8x8/Conv1/mod_weight"], g["synthesis.b8.conv1.affine.weight"].numpy().T)
    # noise{2*log2(r)-5} feeds b{r}.conv0, noise{2*log2(r)-4} b{r}.conv1
    np.testing.assert_array_equal(syn["noise3"][0, 0], g["synthesis.b16.conv0.noise_const"].numpy())
    np.testing.assert_array_equal(syn["noise4"][0, 0], g["synthesis.b16.conv1.noise_const"].numpy())
    assert isinstance(syn["4x4/Conv/noise_strength"], np.float32)
    assert disc["16x16/Skip/weight"].shape == (1, 1, 8, 16) and "16x16/Skip/bias" not in disc
    np.testing.assert_array_equal(disc["8x8/Conv1_down/weight"], d["b8.conv1.weight"].numpy().transpose(2, 3, 1, 0))
    assert disc["4x4/Dense0/weight"].shape == (16 * 16, 16) and disc["Output/weight"].shape == (16, 1)


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4])
def test_roundtrip_gs_and_d(tmp_path, states, protocol):
    g_train = {k: v * 2 for k, v in states[0].items()}  # G differs from Gs: the reader must take Gs
    ck = tensorflow.read(write(tmp_path, states, protocol=protocol, g_train_state=g_train))
    assert ck.source_format == "tensorflow-pkl" and ck.extra["generator_key"] == "Gs"
    assert ck.g_config == G_CFG and ck.d_config == D_CFG
    assert_same_state(ck.g_state, states[0])
    assert_same_state(ck.d_state, states[1])


def test_read_checkpoint_detects_the_format_and_networks_load(tmp_path, states):
    path = write(tmp_path, states)
    head = Path(path).read_bytes()[:64]
    assert tensorflow.sniff(path, head) and not nvidia.sniff(path, head)
    ck = read_checkpoint(path)
    assert ck.source_format == "tensorflow-pkl"
    G = teacher.Generator(ck.g_config)
    G.load_state_dict(ck.g_state, strict=True)
    D = teacher.Discriminator(ck.d_config)
    D.load_state_dict(ck.d_state, strict=True)
    with torch.no_grad():
        img = G(torch.randn(2, G_CFG.z_dim))
        assert img.shape == (2, 3, 16, 16) and D(img).shape == (2, 1)


def test_gs_alone(tmp_path, states):
    ck = tensorflow.read(write(tmp_path, states, gs_only=True))
    assert ck.d_config is None and ck.d_state is None
    assert_same_state(ck.g_state, states[0])


def test_mod_bias_of_any_value_is_restored_to_float32_rounding(tmp_path, states):
    g = dict(states[0])
    g["synthesis.b8.conv0.affine.bias"] = torch.randn(16) * 3  # outside [0.5, 2] (x - 1) + 1 may round
    ck = tensorflow.read(write(tmp_path, states, g_state=g))
    assert_parity(
        ck.g_state["synthesis.b8.conv0.affine.bias"],
        g["synthesis.b8.conv0.affine.bias"],
        "modulation bias after TF's (x - 1) + 1",
    )


@pytest.mark.parametrize("clamp", [None, 256.0])
def test_architecture_inferred_from_shapes(tmp_path, clamp):
    g_cfg = GeneratorConfig(
        z_dim=8,
        w_dim=12,
        img_resolution=32,
        channels={4: 16, 8: 12, 16: 12, 32: 8},
        mapping_layers=2,
        img_channels=1,
        conv_clamp=clamp,
        mapping_lr_mul=0.05,
        resample_filter=(1, 2, 1),
    )
    d_cfg = DiscriminatorConfig(
        img_resolution=32,
        channels={4: 16, 8: 12, 16: 12, 32: 8},
        img_channels=1,
        mbstd_group_size=8,
        mbstd_num_channels=2,
        conv_clamp=clamp,
        resample_filter=(1, 2, 1),
    )
    path = str(tmp_path / "arch.pkl")
    extra = {"mapping_lrmul": 0.05, "resample_kernel": [1, 2, 1]}
    write_tf_pkl(
        path,
        g_cfg,
        random_state(generator_shapes(g_cfg)),
        d_cfg,
        random_state(discriminator_shapes(d_cfg)),
        g_options={"static_kwargs": extra},
        d_options={"static_kwargs": {"resample_kernel": [1, 2, 1], "conv_clamp": clamp}},
    )
    ck = tensorflow.read(path)
    assert ck.g_config == g_cfg and ck.d_config == d_cfg


def test_static_kwargs_must_agree_with_tensors(tmp_path, states):
    path = write(tmp_path, states, g_options={"static_kwargs": {"resolution": 32}})
    with pytest.raises(CheckpointError, match="resolution=32 but the tensors say 16"):
        tensorflow.read(path)
    path = write(tmp_path, states, "fmap.pkl", g_options={"static_kwargs": {"fmap_base": 128}})
    with pytest.raises(CheckpointError, match="fmap_base/fmap_max"):
        tensorflow.read(path)


# --- strictness -----------------------------------------------------------------------------------


def test_missing_variable_is_named(tmp_path, states):
    path = write(tmp_path, states, g_options={"drop_vars": ("synthesis/8x8/Conv1/bias",)})
    with pytest.raises(CheckpointError, match=r"missing key\(s\): synthesis\.b8\.conv1\.bias"):
        tensorflow.read(path)
    path = write(tmp_path, states, "d.pkl", d_options={"drop_vars": ("Output/bias",)})
    with pytest.raises(CheckpointError, match=r"missing key\(s\): b4\.out\.bias"):
        tensorflow.read(path)


def test_unknown_variable_is_named(tmp_path, states):
    path = write(tmp_path, states, g_options={"extra_vars": {"synthesis/8x8/Conv1/surprise": np.zeros(3, np.float32)}})
    with pytest.raises(CheckpointError, match="no native counterpart: synthesis/8x8/Conv1/surprise"):
        tensorflow.read(path)
    extra = {"4x4/Dense1/weight": np.zeros((2, 2), np.float32)}
    path = write(tmp_path, states, "d.pkl", d_options={"extra_vars": extra})
    with pytest.raises(CheckpointError, match="4x4/Dense1/weight"):
        tensorflow.read(path)


def test_misshaped_variable_is_named(tmp_path, states):
    path = write(
        tmp_path,
        states,
        g_options={
            "drop_vars": ("synthesis/8x8/Conv1/bias",),
            "extra_vars": {"synthesis/8x8/Conv1/bias": np.zeros(15, np.float32)},
        },
    )
    with pytest.raises(CheckpointError, match=r"mis-shaped key\(s\): synthesis\.b8\.conv1\.bias: file \(15,\)"):
        tensorflow.read(path)
    path = write(
        tmp_path,
        states,
        "rank.pkl",
        g_options={
            "drop_vars": ("synthesis/8x8/Conv1/weight",),
            "extra_vars": {"synthesis/8x8/Conv1/weight": np.zeros((9, 16, 16), np.float32)},
        },
    )
    with pytest.raises(CheckpointError, match=r"Conv1/weight -> synthesis\.b8\.conv1\.weight: expected 4 dims"):
        tensorflow.read(path)


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["kwarg", "variable"])
def test_refuses_conditional_networks(tmp_path, states, how):
    if how == "kwarg":
        options = {"g_options": {"static_kwargs": {"label_size": 10}}}
    else:
        options = {"g_options": {"extra_vars": {"mapping/LabelConcat/weight": np.zeros((10, 12), np.float32)}}}
    with pytest.raises(CheckpointError, match="conditional generator"):
        tensorflow.read(write(tmp_path, states, **options))
    options = (
        {"d_options": {"static_kwargs": {"label_size": 10}}}
        if how == "kwarg"
        else {"d_options": {"extra_vars": {"LabelEmbed/weight": np.zeros((10, 16), np.float32)}}}
    )
    with pytest.raises(CheckpointError, match="conditional discriminator"):
        tensorflow.read(write(tmp_path, states, "d.pkl", **options))


@pytest.mark.parametrize("how", ["resnet", "orig"])
def test_refuses_non_skip_synthesis(tmp_path, states, how):
    if how == "resnet":
        options = {
            "static_kwargs": {"architecture": "resnet"},
            "extra_vars": {"synthesis/8x8/Skip/weight": np.zeros((1, 1, 16, 16), np.float32)},
        }
    else:  # progressive growing (configs B-D, StyleGAN1): ToRGB_lod{n}
        options = {
            "drop_vars": ("synthesis/8x8/ToRGB/weight",),
            "extra_vars": {"synthesis/ToRGB_lod1/weight": np.zeros((1, 1, 16, 3), np.float32)},
        }
    with pytest.raises(CheckpointError, match=rf"synthesis architecture '{how}.*only 'skip'"):
        tensorflow.read(write(tmp_path, states, g_options=options))


@pytest.mark.parametrize("how", ["skip", "orig", "kwarg"])
def test_refuses_non_resnet_discriminator(tmp_path, states, how):
    options = {
        "skip": {"extra_vars": {"8x8/FromRGB/weight": np.zeros((1, 1, 3, 16), np.float32)}},
        "orig": {"drop_vars": ("8x8/Skip/weight",)},
        "kwarg": {"static_kwargs": {"architecture": "skip"}},
    }[how]
    with pytest.raises(
        CheckpointError,
        match=rf"discriminator architecture '{how.replace('kwarg', 'skip')}'; "
        "only 'resnet' is supported",
    ):
        tensorflow.read(write(tmp_path, states, d_options=options))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"normalize_latents": False}, "normalize_latents"),
        ({"mapping_nonlinearity": "relu"}, "lrelu"),
        ({"use_noise": False}, "noise"),
    ],
)
def test_refuses_unsupported_generator_settings(tmp_path, states, kwargs, match):
    with pytest.raises(CheckpointError, match=match):
        tensorflow.read(write(tmp_path, states, g_options={"static_kwargs": kwargs}))


def test_refuses_old_pickle_versions_and_wrong_structures(tmp_path, states):
    from tests.helpers.fake_checkpoints import tf_generator

    gs = tf_generator(G_CFG, states[0])
    gs.state["version"] = 3
    path = tmp_path / "v3.pkl"
    dump(path, gs, 4)
    with pytest.raises(CheckpointError, match="pickle version 3"):
        tensorflow.read(str(path))
    dump(path, [1, 2, 3], 4)
    with pytest.raises(CheckpointError, match=r"expected a \(G, D, Gs\) tuple"):
        tensorflow.read(str(path))


def test_nvidia_pickle_gets_a_pointer_to_the_right_reader(tmp_path, states):
    path = str(tmp_path / "nv.pkl")
    write_nvidia_pkl(path, G_CFG, states[0], networks=("G_ema",))
    with pytest.raises(CheckpointError, match="nvidia-pkl reader"):
        tensorflow.read(path)


# --- corrupt files --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file(tmp_path, states, damage):
    path = Path(write(tmp_path, states))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 3], "garbage": os.urandom(2048), "empty": b""}[damage])
    with pytest.raises(CheckpointError):
        tensorflow.read(str(path))


def test_pickle_globals(tmp_path, states):
    found = pickle_globals(write(tmp_path, states))
    assert found == {
        "dnnlib.tflib.network.Network",
        "numpy.core.multiarray._reconstruct",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray.scalar",
    }
    assert "dnnlib.tflib.network.Network" in pickle_globals(write(tmp_path, states, "p2.pkl", protocol=2))


# --- security -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["variables", "static_kwargs", "top"])
def test_refuses_code_execution(tmp_path, states, where):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    if where == "top":
        dump(path, Reduce(Global("os", "system"), (f"touch {marker}",)), 4)
        name = r"os\.system"
    else:
        options = (
            {"extra_vars": {"synthesis/8x8/Conv1/evil": exec_payload(marker)}}
            if where == "variables"
            else {"static_kwargs": {"resample_kernel": exec_payload(marker)}}
        )
        write_tf_pkl(str(path), G_CFG, states[0], D_CFG, states[1], g_options=options)
        name = r"builtins\.exec"
    with pytest.raises(CheckpointError, match=f"refused to load the global {name}"):
        tensorflow.read(str(path))
    assert not marker.exists()


def test_refuses_torch_globals(tmp_path, states):
    """A TF pickle holds numpy arrays only: torch's rebuild functions (and their blobs) are refused."""
    marker = tmp_path / "pwned"
    blob_tensor = tensor_over_blob(storage_blob(torch.zeros(4)), (4,))
    path = write(tmp_path, states, g_options={"extra_vars": {"synthesis/4x4/Conv/t": blob_tensor}})
    with pytest.raises(CheckpointError, match=r"refused to load the global torch\._utils\._rebuild_tensor_v2"):
        tensorflow.read(path)
    assert not marker.exists()


def test_build_module_src_is_never_executed(tmp_path, states):
    from tests.helpers.fake_checkpoints import tf_discriminator, tf_generator

    marker = tmp_path / "pwned"
    src = f"open({str(marker)!r}, 'w').close()\n"
    gs = tf_generator(G_CFG, states[0])
    d = tf_discriminator(D_CFG, states[1])
    for net in (gs, gs.state["components"]["mapping"], gs.state["components"]["synthesis"], d):
        net.state["build_module_src"] = src
    path = tmp_path / "src.pkl"
    dump(path, (gs, d, gs), 4)
    ck = tensorflow.read(str(path))
    assert ck.g_config == G_CFG and not marker.exists()
