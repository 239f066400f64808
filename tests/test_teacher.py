"""The StyleGAN2 teacher: the external reference fixture, the contract, noise, truncation, mixing, D."""

from __future__ import annotations

import pytest
import torch

import teacher
from teacher.discriminator import minibatch_stddev
from teacher.formats.layout import discriminator_shapes, generator_shapes
from teacher.numerics import assert_parity
from tests.helpers.teachers import randomize, tiny_checkpoint, tiny_d_config, tiny_g_config


@pytest.fixture(scope="module")
def ref_G(rosinality_fixture):
    path, _ = rosinality_fixture
    return teacher.load_generator(path)


def test_reference_fixture_mapping(ref_G, rosinality_fixture):
    _, E = rosinality_fixture
    assert ref_G.num_ws == E["n_latent"] == 10
    assert_parity(ref_G.mapping.embed(E["z"]), E["ws_a"], "mapping vs fixture ws_a")
    assert_parity(ref_G.mapping(E["z"]), E["ws_a_broadcast"], "mapping vs fixture ws_a_broadcast")
    assert_parity(ref_G.mapping(E["z"], truncation_psi=E["psi_b"]), E["ws_b"], "truncated mapping vs fixture ws_b")
    torch.testing.assert_close(ref_G.mapping.w_avg, E["latent_avg"], rtol=0, atol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_reference_fixture_images(ref_G, rosinality_fixture, fused):
    _, E = rosinality_fixture
    with torch.no_grad():
        img_a = ref_G.synthesis(ref_G.mapping(E["z"]), noise_mode="const", fused_modconv=fused)
        img_b = ref_G(E["z"], truncation_psi=E["psi_b"], noise_mode="const", fused_modconv=fused)
        img_c = ref_G.synthesis(E["wplus"], noise_mode="const", fused_modconv=fused)
    for name, got in [("img_a", img_a), ("img_b", img_b), ("img_c", img_c)]:
        assert got.shape == (2, 3, 64, 64)
        assert_parity(got, E[name], f"{name} (fused_modconv={fused}) vs fixture")


def test_contract_attributes_and_frozen(ref_G):
    assert (ref_G.z_dim, ref_G.w_dim, ref_G.num_ws, ref_G.img_resolution) == (64, 64, 10, 64)
    assert not ref_G.training
    assert not any(p.requires_grad for p in ref_G.parameters())


@pytest.mark.parametrize("res", [8, 16, 64, 256])
def test_any_resolution_builds_and_renders(res):
    cfg = tiny_g_config(res)
    G = teacher.Generator(cfg).eval()
    sd = G.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == generator_shapes(cfg)
    assert cfg.num_ws == 2 * res.bit_length() - 4
    with torch.no_grad():
        img = G(torch.randn(2, cfg.z_dim))
    assert img.shape == (2, 3, res, res) and torch.isfinite(img).all()


def test_config_f_parameter_counts():
    G = teacher.Generator(teacher.GeneratorConfig.stylegan2(1024))
    assert sum(p.numel() for p in G.mapping.parameters()) == 2_101_248
    assert sum(p.numel() for p in G.synthesis.parameters()) == 28_268_812
    assert G.num_ws == 18 and len(G.state_dict()) == 156


def test_fused_and_plain_modconv_agree():
    G = randomize(teacher.Generator(tiny_g_config(32))).eval()
    ws = torch.randn(3, G.num_ws, G.w_dim)
    with torch.no_grad():
        a = G.synthesis(ws, fused_modconv=True)
        b = G.synthesis(ws, fused_modconv=False)
    assert_parity(a, b, "fused vs plain modconv")


def test_noise_modes_and_explicit_noise():
    G = randomize(teacher.Generator(tiny_g_config(32))).eval()
    ws = G.mapping(torch.randn(2, G.z_dim))
    with torch.no_grad():
        const1, const2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
        torch.testing.assert_close(const1, const2, rtol=0, atol=0)
        rand, used = G.synthesis(ws, noise_mode="random", return_noise=True)
        assert (rand - const1).abs().max() > 1e-3
        assert [tuple(n.shape) for n in used] == [(2, *s) for s in G.synthesis.noise_shapes]
        # Feeding back the returned noise reproduces the image exactly (what distillation relies on).
        torch.testing.assert_close(G.synthesis(ws, noise=used), rand, rtol=0, atol=0)
        explicit = [layer.noise_const[None, None] for layer in G.synthesis.noise_layers()]
        # Exact: the same maps, broadcast from [1, 1, r, r] instead of expanded (elementwise ops only).
        torch.testing.assert_close(G.synthesis(ws, noise=explicit), const1, rtol=0, atol=0)
        none = G.synthesis(ws, noise_mode="none")
        zeros = [torch.zeros(1, *s) for s in G.synthesis.noise_shapes]
        torch.testing.assert_close(G.synthesis(ws, noise=zeros), none, rtol=0, atol=0)  # x + 0 * strength is x
        assert (none - const1).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match="noise maps"):
        G.synthesis(ws, noise=zeros[:2])


def test_truncation_and_cutoff():
    G = randomize(teacher.Generator(tiny_g_config(16))).eval()
    z = torch.randn(4, G.z_dim)
    w = G.mapping(z)
    avg = G.mapping.w_avg
    assert_parity(G.mapping(z, truncation_psi=0.0), avg.expand_as(w), "psi 0 vs w_avg")
    assert_parity(G.mapping(z, truncation_psi=0.5), avg + 0.5 * (w - avg), "truncation (lerp) vs formula")
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert_parity(cut[:, :2], (avg + 0.5 * (w - avg))[:, :2], "truncation below the cutoff vs formula")
    torch.testing.assert_close(cut[:, 2:], w[:, 2:], rtol=0, atol=0)  # beyond the cutoff: a copy


def test_w_input_and_style_mixing():
    G = randomize(teacher.Generator(tiny_g_config(16))).eval()
    z1, z2 = torch.randn(3, G.z_dim), torch.randn(3, G.z_dim)
    w1, w2 = G.mapping(z1), G.mapping(z2)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(w1[:, 0]), G.synthesis(w1), rtol=0, atol=0)
    mixed = teacher.mix_styles(w1, w2, torch.tensor([1, 3, G.num_ws]))
    for got, want in [
        (mixed[0, :1], w1[0, :1]),
        (mixed[0, 1:], w2[0, 1:]),
        (mixed[1, :3], w1[1, :3]),
        (mixed[1, 3:], w2[1, 3:]),
        (mixed[2], w1[2]),
    ]:
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # mixing selects: copies
    cut = teacher.random_mixing_cutoff(1000, G.num_ws, 0.9, generator=torch.Generator().manual_seed(0))
    assert cut.min() >= 1 and cut.max() <= G.num_ws
    assert 0.05 < (cut == G.num_ws).float().mean() < 0.2
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.randn(2, G.num_ws + 1, G.w_dim))


def test_discriminator_shapes_r1_and_mbstd():
    cfg = tiny_d_config(32)
    D = randomize(teacher.Discriminator(cfg))
    assert {k: tuple(v.shape) for k, v in D.state_dict().items()} == discriminator_shapes(cfg)
    img = torch.randn(4, 3, 32, 32, requires_grad=True)
    logits = D(img)
    assert logits.shape == (4, 1)
    # R1: gradient penalty, differentiated again w.r.t. the weights (second order).
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    penalty = grad.square().sum(dim=[1, 2, 3]).mean()
    penalty.backward()
    assert D.b32.conv0.weight.grad is not None and D.b32.conv0.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expects images"):
        D(torch.randn(2, 3, 16, 16))


def test_minibatch_stddev_matches_definition():
    x = torch.randn(8, 6, 4, 4, dtype=torch.float64)
    out = minibatch_stddev(x, group_size=4, num_channels=2)
    assert out.shape == (8, 8, 4, 4)
    torch.testing.assert_close(out[:, :6], x)
    for i in range(8):
        group = x[i % 2 :: 2]  # sample i belongs to the group of samples with the same index mod M=2
        std = (group.var(dim=0, unbiased=False) + 1e-8).sqrt()  # [6, 4, 4]
        expected = std.reshape(2, 3, 4, 4).mean(dim=[1, 2, 3])
        torch.testing.assert_close(out[i, 6:, 0, 0], expected)


def test_generator_backward_works():
    G = teacher.Generator(tiny_g_config(16))
    img = G(torch.randn(2, G.z_dim), noise_mode="random")
    img.square().mean().backward()
    assert G.synthesis.b16.conv0.weight.grad.abs().sum() > 0
    assert G.mapping.fc0.weight.grad.abs().sum() > 0


def test_checkpoint_roundtrip_preserves_outputs(tmp_path):
    ck = tiny_checkpoint(16)
    path = teacher.save_checkpoint(tmp_path / "g.pt", ck)
    G = teacher.load_generator(path)
    G0 = teacher.Generator(ck.g_config).eval()
    G0.load_state_dict(ck.g_state)
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        torch.testing.assert_close(G(z), G0(z), rtol=0, atol=0)


def test_minibatch_stddev_whole_batch_group():
    x = torch.randn(6, 4, 4, 4, dtype=torch.float64)
    out = minibatch_stddev(x, group_size=None, num_channels=1)
    expected = (x.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(out[:, 4], expected.expand(6, 4, 4))
    torch.testing.assert_close(out, minibatch_stddev(x, group_size=6, num_channels=1))


def test_discriminator_mbstd_group_size_can_be_set():
    """set_mbstd_group_size gives the logits of a discriminator built with that group size (same weights), and its
    config says so."""
    cfg = tiny_d_config(16)
    D = randomize(teacher.Discriminator(cfg))
    img = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    logits = {}
    for group in (1, None):
        D.set_mbstd_group_size(group)
        built = teacher.Discriminator(tiny_d_config(16, mbstd_group_size=group))
        built.load_state_dict(D.state_dict())
        with torch.no_grad():
            logits[group] = D(img)
            torch.testing.assert_close(logits[group], built(img), rtol=0, atol=0)
        assert D.cfg.mbstd_group_size == group and D.b4.mbstd_group_size == group
    assert not torch.equal(logits[1], logits[None])  # the setting reaches the minibatch-stddev layer
    with pytest.raises(ValueError, match="group size must be >= 1"):
        D.set_mbstd_group_size(0)
