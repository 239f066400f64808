"""VGG16 feature extractor: torchvision's key layout, strict and hash-checked loading, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mobilestylegan.nets import vgg as vgg_mod
from mobilestylegan.nets.vgg import VGG16Features, VGGWeightsNotFoundError, default_vgg16_path, load_vgg16
from teacher.formats.common import CheckpointError
from teacher.numerics import assert_parity
from tests.helpers.vgg import fake_state, save_hashed, tv_shapes

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fake_file(tmp_path_factory) -> tuple[Path, str, dict[str, torch.Tensor]]:
    state = fake_state()
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    return path, save_hashed(state, path), state


def test_layout_matches_torchvision():
    model = VGG16Features()
    expected = {k: v for k, v in tv_shapes().items() if k.startswith("features.") and int(k.split(".")[1]) <= 21}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    kinds = [type(m).__name__ for m in model.features]
    assert len(kinds) == 23
    assert [i for i, k in enumerate(kinds) if k == "MaxPool2d"] == [4, 9, 16]
    assert [kinds[i] for i in vgg_mod.FEATURE_LAYERS] == ["ReLU"] * 4


def test_wrong_hash_is_refused(fake_file):
    path, digest, _ = fake_file
    with pytest.raises(CheckpointError, match="397923af") as err:
        load_vgg16(path)
    assert digest in str(err.value) and "download.pytorch.org" in str(err.value)


def test_strict_load_and_features_by_hand(fake_file, monkeypatch):
    path, digest, state = fake_file
    monkeypatch.setattr(vgg_mod, "VGG16_SHA256_PREFIX", digest[:8])
    model = load_vgg16(str(path))
    assert not model.training and not model.random_weights
    assert not any(p.requires_grad for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key

    img = torch.rand(2, 3, 16, 16) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((img + 1) / 2 - mean) / std

    def conv_relu(x, i):
        return F.relu(F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))

    relu1_2 = conv_relu(conv_relu(x, 0), 2)
    relu2_2 = conv_relu(conv_relu(F.max_pool2d(relu1_2, 2), 5), 7)
    relu3_3 = conv_relu(conv_relu(conv_relu(F.max_pool2d(relu2_2, 2), 10), 12), 14)
    feats = model(img)
    for name, got, want in zip(("relu1_2", "relu2_2", "relu3_3"), feats, (relu1_2, relu2_2, relu3_3)):
        assert_parity(got, want, f"{name} vs by hand")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("features.19.bias"), "missing key.*features.19.bias"),
        (
            lambda s: s.__setitem__("features.7.weight", torch.zeros(()).expand(128, 64, 3, 3)),
            "mis-shaped.*features.7.weight",
        ),
        (lambda s: s.__setitem__("features.3.weight", torch.zeros(1)), "unexpected key.*features.3.weight"),
    ],
)
def test_key_errors_name_the_keys(tmp_path, monkeypatch, edit, message):
    state = fake_state(random_up_to=-1)  # all zero-stride: a tiny file
    edit(state)
    path = tmp_path / "vgg16-397923af.pth"
    monkeypatch.setattr(vgg_mod, "VGG16_SHA256_PREFIX", save_hashed(state, path)[:8])
    with pytest.raises(CheckpointError, match=message):
        load_vgg16(path)


def test_missing_file_message(tmp_path):
    path = tmp_path / "nowhere" / "vgg16-397923af.pth"
    with pytest.raises(VGGWeightsNotFoundError) as err:
        load_vgg16(path, allow_random_weights=True)  # a given path never falls back to random weights
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for part in (
        str(path),
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "397923af",
        "loss.vgg_weights",
        "MOBILESTYLEGAN_VGG16",
    ):
        assert part in msg


def test_none_without_flag_reads_the_default_path(fake_file, tmp_path, monkeypatch):
    missing = tmp_path / "absent.pth"
    monkeypatch.setenv("MOBILESTYLEGAN_VGG16", str(missing))
    with pytest.raises(VGGWeightsNotFoundError, match="loss.vgg_weights") as err:
        load_vgg16(None)
    assert str(missing) in str(err.value)
    path, digest, _ = fake_file
    monkeypatch.setenv("MOBILESTYLEGAN_VGG16", str(path))
    monkeypatch.setattr(vgg_mod, "VGG16_SHA256_PREFIX", digest[:8])
    assert not load_vgg16(None).random_weights
    assert not load_vgg16(None, allow_random_weights=True).random_weights  # a file at the default location wins


def test_random_weights_and_feature_shapes():
    a, b = load_vgg16(None, allow_random_weights=True), load_vgg16(None, allow_random_weights=True)
    assert a.random_weights and not a.training
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    img = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_()
    feats = a(img)
    assert [tuple(f.shape) for f in feats] == [(2, 64, 64, 64), (2, 128, 32, 32), (2, 256, 16, 16), (2, 512, 8, 8)]
    assert all(f.abs().sum() > 0 for f in feats)
    feats[-1].sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in a.parameters())


def test_default_path(monkeypatch, tmp_path):
    monkeypatch.delenv("MOBILESTYLEGAN_VGG16", raising=False)
    monkeypatch.delenv("MOBILESTYLEGAN_CACHE", raising=False)
    assert default_vgg16_path() == Path.home() / ".cache" / "mobilestylegan" / "weights" / "vgg16-397923af.pth"
    monkeypatch.setenv("MOBILESTYLEGAN_CACHE", str(tmp_path))
    assert default_vgg16_path() == tmp_path / "weights" / "vgg16-397923af.pth"
    monkeypatch.setenv("MOBILESTYLEGAN_VGG16", str(tmp_path / "v.pth"))
    assert default_vgg16_path() == tmp_path / "v.pth"
