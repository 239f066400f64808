"""NVIDIA stylegan2-ada-pytorch / stylegan3 pickles: round trips, inference, strictness, refusals, safety."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import teacher
from teacher.config import DiscriminatorConfig, GeneratorConfig
from teacher.formats import CheckpointError, nvidia, read_checkpoint, tensorflow
from teacher.formats.layout import discriminator_shapes, generator_shapes
from teacher.formats.safe_pickle import pickle_globals
from tests.helpers.fake_checkpoints import (
    Global,
    Reduce,
    dump,
    evil_storage_blob,
    exec_payload,
    random_state,
    storage_blob,
    tensor_over_blob,
    write_nvidia_pkl,
    write_tf_pkl,
)

G_CFG = GeneratorConfig(
    z_dim=12, w_dim=16, img_resolution=16, channels={4: 16, 8: 16, 16: 8}, mapping_layers=3, conv_clamp=256.0
)
D_CFG = DiscriminatorConfig(img_resolution=16, channels={4: 16, 8: 16, 16: 8}, conv_clamp=256.0)


@pytest.fixture(scope="module")
def states() -> tuple[dict, dict]:
    return random_state(generator_shapes(G_CFG), 0), random_state(discriminator_shapes(D_CFG), 1)


def assert_same_state(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == torch.float32 and got[k].shape == want[k].shape and torch.equal(got[k], want[k]), k


def write(tmp_path, states, name="net.pkl", g_state=None, d_state=None, **options) -> str:
    path = str(tmp_path / name)
    write_nvidia_pkl(
        path,
        G_CFG,
        states[0] if g_state is None else g_state,
        D_CFG,
        states[1] if d_state is None else d_state,
        **options,
    )
    return path


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_roundtrip_generator_and_discriminator(tmp_path, states, protocol):
    path = write(tmp_path, states, protocol=protocol)
    ck = nvidia.read(path)
    assert ck.source_format == "nvidia-pkl" and ck.extra["generator_key"] == "G_ema"
    assert ck.g_config == G_CFG and ck.d_config == D_CFG
    assert_same_state(ck.g_state, states[0])
    assert_same_state(ck.d_state, states[1])
    assert ck.extra["training_set_kwargs"]["class_name"] == "training.dataset.ImageFolderDataset"
    assert ck.extra["g_init_kwargs"]["synthesis_kwargs"]["conv_clamp"] == 256.0


def test_read_checkpoint_detects_the_format_and_networks_load(tmp_path, states):
    path = write(tmp_path, states)
    with open(path, "rb") as fh:
        head = fh.read(64)
    assert b"torch_utils" not in head and nvidia.sniff(path, head)  # found past the first 64 bytes
    assert not tensorflow.sniff(path, head)
    ck = read_checkpoint(path)
    assert ck.source_format == "nvidia-pkl"
    G = teacher.Generator(ck.g_config)
    G.load_state_dict(ck.g_state, strict=True)
    D = teacher.Discriminator(ck.d_config)
    D.load_state_dict(ck.d_state, strict=True)
    with torch.no_grad():
        img = G(torch.randn(2, G_CFG.z_dim))
        assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
        assert D(img).shape == (2, 1)


def test_prefers_g_ema_and_falls_back_to_g(tmp_path, states):
    g_train = {k: v + 1 for k, v in states[0].items()}
    ck = nvidia.read(write(tmp_path, states, g_train_state=g_train))
    assert_same_state(ck.g_state, states[0])
    ck = nvidia.read(write(tmp_path, states, "g_only.pkl", g_train_state=g_train, networks=("G",)))
    assert ck.extra["generator_key"] == "G" and ck.d_config is None
    assert_same_state(ck.g_state, g_train)


def test_generator_only_and_bare_network(tmp_path, states):
    ck = nvidia.read(write(tmp_path, states, networks=("G_ema",)))
    assert ck.d_state is None and ck.g_config == G_CFG
    from tests.helpers.fake_checkpoints import nvidia_discriminator

    path = tmp_path / "bare_d.pkl"
    dump(path, nvidia_discriminator(D_CFG, states[1]), 3)
    ck = nvidia.read(str(path))
    assert ck.g_config is None and ck.d_config == D_CFG


# --- architecture inference ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["ada", "stylegan3", "none"])
@pytest.mark.parametrize("clamp", [None, 256.0])
def test_architecture_inferred_from_shapes(tmp_path, layout, clamp):
    # channels that no channel_base/channel_max pair produces, z_dim != w_dim, a custom filter
    custom = {} if layout == "none" else {"mapping_lr_mul": 0.05, "resample_filter": (1, 2, 1)}
    g_cfg = GeneratorConfig(
        z_dim=8,
        w_dim=12,
        img_resolution=32,
        channels={4: 16, 8: 12, 16: 12, 32: 8},
        mapping_layers=2,
        conv_clamp=clamp,
        **custom,
    )
    d_cfg = DiscriminatorConfig(
        img_resolution=32,
        channels={4: 16, 8: 12, 16: 12, 32: 8},
        img_channels=1,
        mbstd_group_size=2,
        mbstd_num_channels=2,
        conv_clamp=clamp,
    )
    g_state, d_state = random_state(generator_shapes(g_cfg), 2), random_state(discriminator_shapes(d_cfg), 3)
    path = str(tmp_path / "arch.pkl")
    write_nvidia_pkl(path, g_cfg, g_state, d_cfg, d_state, layout=layout)
    ck = nvidia.read(path)
    if layout == "none":  # no _init_kwargs: shapes, NVIDIA's defaults and the MinibatchStdLayer's attributes
        assert ck.g_config == GeneratorConfig.from_dict({**g_cfg.to_dict(), "conv_clamp": None})
        assert ck.d_config == DiscriminatorConfig.from_dict({**d_cfg.to_dict(), "conv_clamp": None})
    else:
        assert ck.g_config == g_cfg and ck.d_config == d_cfg
    assert ck.d_config.mbstd_num_channels == 2 and ck.d_config.img_channels == 1


def test_custom_filter_without_layout_is_refused(tmp_path):
    g_cfg = GeneratorConfig(
        z_dim=8, w_dim=8, img_resolution=8, channels={4: 8, 8: 8}, mapping_layers=1, resample_filter=(1, 2, 1)
    )
    path = str(tmp_path / "f.pkl")
    write_nvidia_pkl(path, g_cfg, random_state(generator_shapes(g_cfg)), layout="none", networks=("G_ema",))
    with pytest.raises(CheckpointError, match=r"resample_filter .* is not the filter \[1.0, 3.0, 3.0, 1.0\]"):
        nvidia.read(path)


def test_init_kwargs_must_agree_with_tensors(tmp_path, states):
    from tests.helpers.fake_checkpoints import nvidia_g_kwargs

    kw = {**nvidia_g_kwargs(G_CFG), "z_dim": 99}
    path = write(tmp_path, states, g_options={"kwargs": {"": kw}})
    with pytest.raises(CheckpointError, match=r"z_dim=99 but the tensors say 12"):
        nvidia.read(path)


# --- strictness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, key",
    [
        ("drop", "synthesis.b8.conv1.noise_const"),
        ("extra", "synthesis.b8.conv1.surprise"),
        ("shape", "synthesis.b8.conv1.bias"),
        ("drop", "mapping.w_avg"),
    ],
)
def test_generator_key_errors_name_the_key(tmp_path, states, edit, key):
    g = dict(states[0])
    if edit == "drop":
        del g[key]
    elif edit == "extra":
        g[key] = torch.zeros(3)
    else:
        g[key] = torch.zeros(15)
    with pytest.raises(
        CheckpointError,
        match={"drop": "missing", "extra": "unexpected", "shape": "mis-shaped"}[edit]
        + r" key\(s\): .*"
        + key.replace(".", r"\."),
    ):
        nvidia.read(write(tmp_path, states, g_state=g))


@pytest.mark.parametrize("edit, key", [("drop", "b4.fc.bias"), ("shape", "b8.conv1.weight"), ("extra", "b8.extra")])
def test_discriminator_key_errors_name_the_key(tmp_path, states, edit, key):
    d = dict(states[1])
    if edit == "drop":
        del d[key]
    elif edit == "extra":
        d[key] = torch.zeros(2)
    else:
        d[key] = torch.zeros(16, 16, 3, 5)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        nvidia.read(write(tmp_path, states, d_state=d))


# --- refusals -------------------------------------------------------------------------------------


def test_refuses_conditional_generator(tmp_path, states):
    g = {**states[0], "mapping.embed.weight": torch.zeros(16, 3), "mapping.embed.bias": torch.zeros(16)}
    with pytest.raises(CheckpointError, match="conditional generator"):
        nvidia.read(write(tmp_path, states, g_state=g))
    from tests.helpers.fake_checkpoints import nvidia_g_kwargs

    path = write(tmp_path, states, "c.pkl", g_options={"kwargs": {"": {**nvidia_g_kwargs(G_CFG), "c_dim": 3}}})
    with pytest.raises(CheckpointError, match=r"conditional generator \(c_dim=3"):
        nvidia.read(path)


def test_refuses_conditional_discriminator(tmp_path, states):
    d = {**states[1], "mapping.fc0.weight": torch.zeros(16, 16), "mapping.fc0.bias": torch.zeros(16)}
    with pytest.raises(CheckpointError, match="conditional discriminator"):
        nvidia.read(write(tmp_path, states, d_state=d))


@pytest.mark.parametrize("variant", ["resnet", "orig", "kwarg"])
def test_refuses_non_skip_synthesis(tmp_path, states, variant):
    g = dict(states[0])
    options = {}
    if variant == "resnet":
        g["synthesis.b8.skip.weight"] = torch.zeros(16, 16, 1, 1)
    elif variant == "orig":
        for k in [k for k in g if k.startswith("synthesis.b8.torgb.")]:
            del g[k]
    else:
        from tests.helpers.fake_checkpoints import nvidia_g_kwargs

        kw = nvidia_g_kwargs(G_CFG)
        kw["synthesis_kwargs"]["architecture"] = "orig"
        options = {"g_options": {"kwargs": {"": kw}}}
    with pytest.raises(CheckpointError, match=r"synthesis architecture '(resnet|orig)'; only 'skip'"):
        nvidia.read(write(tmp_path, states, g_state=g, **options))


@pytest.mark.parametrize("variant", ["skip", "orig"])
def test_refuses_non_resnet_discriminator(tmp_path, states, variant):
    d = dict(states[1])
    if variant == "skip":
        d["b8.fromrgb.weight"], d["b8.fromrgb.bias"] = torch.zeros(16, 3, 1, 1), torch.zeros(16)
    else:
        del d["b8.skip.weight"], d["b16.skip.weight"]
    with pytest.raises(CheckpointError, match=f"discriminator architecture '{variant}'; only 'resnet'"):
        nvidia.read(write(tmp_path, states, d_state=d))


def test_refuses_stylegan3(tmp_path):
    g = {
        "mapping.fc0.weight": torch.zeros(16, 12),
        "mapping.fc0.bias": torch.zeros(16),
        "mapping.w_avg": torch.zeros(16),
        "synthesis.input.weight": torch.zeros(16, 4),
        "synthesis.input.affine.weight": torch.zeros(4, 16),
        "synthesis.input.freqs": torch.zeros(16, 2),
        "synthesis.L0_36_16.weight": torch.zeros(16, 16, 3, 3),
        "synthesis.L0_36_16.magnitude_ema": torch.ones([]),
    }
    path = str(tmp_path / "sg3.pkl")
    write_nvidia_pkl(path, G_CFG, g, layout="none", networks=("G_ema",))
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        nvidia.read(path)


def test_whole_minibatch_stddev(tmp_path, states):
    """legacy.py writes mbstd_group_size=None (one group = the whole minibatch) for TF discriminators."""
    from tests.helpers.fake_checkpoints import nvidia_d_kwargs

    kw = nvidia_d_kwargs(D_CFG)
    kw["epilogue_kwargs"]["mbstd_group_size"] = None
    ck = nvidia.read(write(tmp_path, states, d_options={"kwargs": {"": kw}}))
    assert ck.d_config.mbstd_group_size is None
    D = teacher.Discriminator(ck.d_config)
    D.load_state_dict(ck.d_state)
    with torch.no_grad():
        assert D(torch.randn(3, 3, 16, 16)).shape == (3, 1)  # a batch of 3: one group of 3


def test_malformed_settings(tmp_path, states):
    from tests.helpers.fake_checkpoints import nvidia_d_kwargs, nvidia_g_kwargs

    kw = nvidia_d_kwargs(D_CFG)
    kw["epilogue_kwargs"]["mbstd_group_size"] = "four"
    with pytest.raises(CheckpointError, match="malformed network settings"):
        nvidia.read(write(tmp_path, states, d_options={"kwargs": {"": kw}}))
    kw = nvidia_g_kwargs(G_CFG)
    kw["synthesis_kwargs"]["resample_filter"] = 3
    with pytest.raises(CheckpointError, match="malformed network settings"):
        nvidia.read(write(tmp_path, states, "g.pkl", g_options={"kwargs": {"": kw}}))


def test_tensorflow_pickle_gets_a_pointer_to_the_right_reader(tmp_path, states):
    path = str(tmp_path / "tf.pkl")
    write_tf_pkl(path, G_CFG, states[0], D_CFG, states[1])
    with pytest.raises(CheckpointError, match=r"dnnlib\.tflib\.network\.Network.*tensorflow-pkl reader"):
        nvidia.read(path)


# --- corrupt files --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "tail"])
def test_corrupt_file(tmp_path, states, damage):
    path = Path(write(tmp_path, states))
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b"", "tail": data[:-1]}[damage]
    )
    with pytest.raises(CheckpointError):
        nvidia.read(str(path))


def test_pickle_globals(tmp_path, states):
    path = write(tmp_path, states, protocol=4)
    found = pickle_globals(path)
    assert {
        "torch_utils.persistence._reconstruct_persistent_obj",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch.storage._load_from_bytes",
        "collections.OrderedDict",
        "dnnlib.util.EasyDict",
    } <= found
    assert "?" not in "".join(found)
    assert "torch_utils.persistence._reconstruct_persistent_obj" in pickle_globals(write(tmp_path, states, protocol=2))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\xffnot a pickle" * 10)
    with pytest.raises(CheckpointError, match="not a pickle"):
        pickle_globals(junk)


# --- security: nothing in the file is ever executed ---------------------------------------------


PAYLOADS = [
    ("os", "system", lambda m: (f"touch {m}",)),
    ("posix", "system", lambda m: (f"touch {m}",)),
    ("builtins", "exec", lambda m: (f"open({str(m)!r}, 'w').close()",)),
    ("builtins", "eval", lambda m: (f"open({str(m)!r}, 'w').close()",)),
    ("subprocess", "Popen", lambda m: (["touch", str(m)],)),
    ("torch", "load", lambda m: (str(m),)),
]


@pytest.mark.parametrize("module, name, args", PAYLOADS)
@pytest.mark.parametrize("protocol", [2, 4])
def test_refuses_code_execution_at_the_top(tmp_path, module, name, args, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    dump(path, {"G_ema": Reduce(Global(module, name), args(marker))}, protocol)
    with pytest.raises(CheckpointError, match=rf"refused to load the global {module}\.{name}"):
        nvidia.read(str(path))
    assert not marker.exists()
    assert f"{module}.{name}" in pickle_globals(path)


def test_payload_is_live_under_plain_pickle(tmp_path):
    """Control: the same stream does run code when loaded the unsafe way."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    dump(path, {"G_ema": exec_payload(marker)}, 4)
    with open(path, "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_refuses_payload_nested_deep_in_a_valid_file(tmp_path, states):
    marker = tmp_path / "pwned"
    inject = {"synthesis.b16.conv0.affine": {"_hook": exec_payload(marker)}}
    path = write(tmp_path, states, g_options={"inject": inject})
    with pytest.raises(CheckpointError, match=r"builtins\.exec"):
        nvidia.read(path)
    assert not marker.exists()
    from tests.helpers.fake_checkpoints import EasyDict, nvidia_d_kwargs

    kw = nvidia_d_kwargs(D_CFG)
    kw["block_kwargs"] = EasyDict(resample_filter=exec_payload(marker))
    with pytest.raises(CheckpointError, match=r"builtins\.exec"):
        nvidia.read(write(tmp_path, states, "d.pkl", d_options={"kwargs": {"": kw}}))
    assert not marker.exists()


def test_refuses_payload_inside_a_storage_blob(tmp_path, states):
    marker = tmp_path / "pwned"
    blob = evil_storage_blob(marker)
    path = write(tmp_path, states, g_options={"inject": {"synthesis.b8": {"_cache": tensor_over_blob(blob)}}})
    with pytest.raises(CheckpointError, match=r"storage blob was refused by torch\.load\(weights_only=True\)"):
        nvidia.read(path)
    assert not marker.exists()
    # control: torch's own _load_from_bytes (weights_only=False) runs it
    alone = tmp_path / "alone.pkl"
    dump(alone, tensor_over_blob(blob), 4)
    with pytest.raises(CheckpointError, match="weights_only"):
        nvidia.read(str(alone))
    assert not marker.exists()
    with open(alone, "rb") as fh:
        try:
            pickle.load(fh)
        except Exception:  # the rebuilt "storage" is not one; the code has already run
            pass
    assert marker.exists()


def test_module_src_is_never_executed(tmp_path, states):
    marker = tmp_path / "pwned"
    src = f"open({str(marker)!r}, 'w').close()\n"
    ck = nvidia.read(write(tmp_path, states, g_options={"module_src": src}, d_options={"module_src": src}))
    assert ck.g_config == G_CFG and not marker.exists()


def test_refuses_persistent_ids_and_hooked_tensors(tmp_path):
    path = tmp_path / "persid.pkl"
    path.write_bytes(b"\x80\x02Pabc\n.")
    with pytest.raises(CheckpointError, match="persistent id"):
        nvidia.read(str(path))
    blob_tensor = tensor_over_blob(storage_blob(torch.zeros(1)))
    blob_tensor.args = blob_tensor.args[:5] + (OrderedDict([(0, "hook")]),)
    dump(path, {"G_ema": blob_tensor}, 4)
    with pytest.raises(CheckpointError, match="backward hooks"):
        nvidia.read(str(path))
    dump(path, Reduce(Global("torch._utils", "_rebuild_tensor_v2"), ("x", 0, (1,), (1,), False, OrderedDict())), 4)
    with pytest.raises(CheckpointError, match="not a storage"):
        nvidia.read(str(path))
