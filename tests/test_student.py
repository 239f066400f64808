"""The MobileStyleGAN student: wavelets, modulated convs, fusion, noise, W+, sizes, checkpoints."""

from __future__ import annotations

import itertools
import sys
import types

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mobilestylegan.io.checkpoint import load_student, save_student
from mobilestylegan.student.generator import teacher_noise_for_student
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.wavelets import dwt, idwt
from teacher import Generator, GeneratorConfig
from teacher.formats.common import CheckpointError
from teacher.numerics import assert_parity
from tests.helpers.students import tiny_student


def pytorch_wavelets():
    # pytorch_wavelets imports pkg_resources (gone from recent setuptools) for its DTCWT tables only.
    stub = types.ModuleType("pkg_resources")
    stub.resource_stream = None
    sys.modules.setdefault("pkg_resources", stub)
    import pytorch_wavelets

    return pytorch_wavelets


def test_haar_roundtrip_and_closed_form():
    x = torch.randn(2, 3, 16, 12, dtype=torch.float64)
    torch.testing.assert_close(idwt(dwt(x)), x, rtol=0, atol=1e-12)
    y = torch.randn(2, 12, 5, 7)
    assert_parity(dwt(idwt(y)), y, "dwt(idwt(y))")
    ll, hb = y[:, :3], y[:, 3:].reshape(2, 3, 3, 5, 7)
    img = idwt(y)
    for a, b in itertools.product((0, 1), (0, 1)):
        ref = 0.5 * (ll + (-1) ** a * hb[:, :, 0] + (-1) ** b * hb[:, :, 1] + (-1) ** (a + b) * hb[:, :, 2])
        assert_parity(img[:, :, a::2, b::2], ref, f"idwt phase {a}{b} vs closed form")
    # Orthonormal: energy is preserved.
    torch.testing.assert_close(dwt(x).square().sum(), x.square().sum())


def test_haar_matches_pytorch_wavelets():
    pw = pytorch_wavelets()
    x = torch.randn(2, 5, 16, 10)
    yl, yh = pw.DWTForward(J=1, wave="db1", mode="zero")(x)
    ours = dwt(x)
    assert_parity(ours[:, :5], yl, "dwt low band vs pytorch_wavelets")
    assert_parity(ours[:, 5:].reshape(2, 5, 3, 8, 5), yh[0], "dwt high bands vs pytorch_wavelets")
    assert_parity(idwt(ours), pw.DWTInverse(wave="db1", mode="zero")((yl, yh)), "idwt vs pytorch_wavelets")


def test_published_architecture_size_and_macs():
    net = MobileSynthesisNetwork(StudentConfig()).requires_grad_(False)
    n_all = sum(p.numel() for p in net.parameters())
    aux = [net.to_img1] + [b.to_img for b in net.layers[:-1]]
    n_aux = sum(p.numel() for h in aux for p in h.parameters())
    assert (n_all, n_all - n_aux, net.num_ws) == (8_852_079, 7_306_395, 23)
    ws = torch.randn(1, 23, 512)
    with FlopCounterMode(display=False) as fc:
        net(ws, return_wavelets=True)
    assert abs(fc.get_total_flops() / 2e9 - 7.545) < 0.001  # every head, as the paper counts (15.09 GFLOP)
    with FlopCounterMode(display=False) as fc:
        img = net(ws)
    assert img.shape == (1, 3, 1024, 1024)
    assert abs(fc.get_total_flops() / 2e9 - 7.359) < 0.001  # inference runs the last head only


@pytest.mark.parametrize("res", [64, 128, 256, 512])
def test_resolutions(res):
    cfg = StudentConfig.for_resolution(res, width=1 / 16)
    net = MobileSynthesisNetwork(cfg).eval()
    with torch.no_grad():
        img, wav = net(torch.randn(2, cfg.w_dim), return_wavelets=True, inference=True)
    assert img.shape == (2, 3, res, res)
    assert [w.shape[-1] for w in wav] == cfg.feature_resolutions and all(w.shape[1] == 12 for w in wav)
    assert_parity(idwt(wav[-1]), img, "idwt of the last head (autograd path) vs the image (in-place path)")


def test_config_validation():
    with pytest.raises(ValueError, match="needs 3 entries"):
        StudentConfig(img_resolution=32, channels=(16, 16))
    with pytest.raises(ValueError, match="multiples of 4"):
        StudentConfig(img_resolution=32, channels=(16, 18, 8))
    with pytest.raises(ValueError, match="power of two"):
        StudentConfig(img_resolution=96)
    with pytest.raises(ValueError, match="unknown StudentConfig"):
        StudentConfig.from_dict({"img_resolution": 64, "chanels": [1]})


def test_fuse_matches_unfused_and_removes_training_parts():
    G = tiny_student()
    ws = G.mapping(torch.randn(3, G.z_dim))
    with torch.no_grad():
        before = G.synthesis(ws)
        G.fuse()
        after = G.synthesis(ws)
    assert_parity(after, before, "fused vs unfused student")
    assert G.synthesis.to_img1 is None and all(b.to_img is None for b in G.synthesis.layers[:-1])
    names = [k for k, _ in G.synthesis.state_dict().items()]
    assert not any("style_inv" in k for k in names)
    with pytest.raises(ValueError, match="auxiliary heads"):
        G.synthesis(ws, return_wavelets=True)


def test_inference_forward_skips_auxiliary_heads():
    G = tiny_student()
    calls = []
    for i, block in enumerate(G.synthesis.layers):
        block.to_img.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    G.synthesis.to_img1.register_forward_hook(lambda m, a, o: calls.append("to_img1"))
    with torch.no_grad():
        G(torch.randn(1, G.z_dim))
    assert calls == [len(G.synthesis.layers) - 1]


def test_trainable_demodulation_flag():
    G = tiny_student(trainable_demod=True)
    assert any(n.endswith("style_inv") for n, _ in G.synthesis.named_parameters())
    G2 = tiny_student()
    assert not any(n.endswith("style_inv") for n, _ in G2.synthesis.named_parameters())
    assert any(n.endswith("style_inv") for n, _ in G2.synthesis.named_buffers())


def test_noise_modes_w_plus_and_teacher_noise():
    G = tiny_student()
    ws = G.mapping(torch.randn(2, G.z_dim))
    assert ws.shape == (2, G.num_ws, G.w_dim)
    with torch.no_grad():
        c1, c2 = G.synthesis(ws, "const"), G.synthesis(ws, "const")
        torch.testing.assert_close(c1, c2, rtol=0, atol=0)
        assert (G.synthesis(ws, "random") - c1).abs().max() > 1e-4
        none = G.synthesis(ws, "none")
        zeros = [torch.zeros(1, *s) for s in G.synthesis.noise_shapes]
        torch.testing.assert_close(G.synthesis(ws, noise=zeros), none, rtol=0, atol=0)  # x + 0 * strength is x
        # W == broadcast W+ (an expanded view vs the mapping's repeated copy: layouts differ, so rounding may)
        assert_parity(G.synthesis(ws[:, 0]), G.synthesis(ws), "W vs broadcast W+")
        # W+ routing: block i reads ws[3i+1] (up, conv1), ws[3i+2] (conv2), ws[3i+3] (head). At inference only
        # the last head runs, so the auxiliary heads' indices (and the unused last one) change nothing.
        n_blocks = len(G.synthesis.layers)
        for i in range(G.num_ws):
            ws2 = ws.clone()
            ws2[:, i] += 1
            change = (G.synthesis(ws2) - c1).abs().max().item()
            aux_head = i == 1 or (i % 3 == 0 and 3 <= i < 3 * n_blocks)
            if (aux_head and i != 1) or i == G.num_ws - 1:  # index 1 also drives block 0's up and conv1
                assert change == 0, i
            if i >= 3 * (n_blocks - 1) + 1 and i < G.num_ws - 1 or i == 0:
                assert change > 0, i
    # The teacher's noise at matching resolutions feeds the student.
    T = Generator(
        GeneratorConfig(
            z_dim=32, w_dim=32, img_resolution=64, channels={4: 8, 8: 8, 16: 8, 32: 8, 64: 8}, mapping_layers=1
        )
    )
    _, t_noise = T.synthesis(torch.randn(2, T.num_ws, 32), noise_mode="random", return_noise=True)
    s_noise = teacher_noise_for_student(t_noise, G.synthesis)
    assert [tuple(n.shape[1:]) for n in s_noise] == G.synthesis.noise_shapes
    with torch.no_grad():
        G.synthesis(ws, noise=s_noise)
    with pytest.raises(ValueError, match="noise maps"):
        G.synthesis(ws, noise=zeros[:3])


def test_mapping_is_frozen_and_truncation_works():
    G = tiny_student()
    G.train()
    assert not G.mapping.training and not any(p.requires_grad for p in G.mapping.parameters())
    assert all(p.requires_grad for p in G.synthesis.parameters())
    z = torch.randn(3, G.z_dim)
    w = G.mapping(z)
    t = G.mapping(z, truncation_psi=0.5, truncation_cutoff=4)
    assert_parity(t[:, :4], G.mapping.w_avg + 0.5 * (w[:, :4] - G.mapping.w_avg), "truncation (lerp) vs formula")
    torch.testing.assert_close(t[:, 4:], w[:, 4:], rtol=0, atol=0)  # beyond the cutoff: a copy


def test_student_trains():
    G = tiny_student()
    G.train()
    opt = torch.optim.Adam(G.synthesis.parameters(), lr=1e-3)
    ws = G.mapping(torch.randn(4, G.z_dim))
    target = torch.zeros(4, 3, 64, 64)
    losses = []
    for _ in range(5):
        img, wav = G.synthesis(ws, return_wavelets=True)
        loss = (img - target).square().mean() + sum(w.square().mean() for w in wav[:-1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_checkpoint_roundtrip_and_errors(tmp_path):
    G = tiny_student()
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        ref = G(z)
    save_student(tmp_path / "s.pt", G, info={"source": "test"})
    back = load_student(tmp_path / "s.pt")
    assert back.info == {"source": "test"} and not back.training
    with torch.no_grad():
        torch.testing.assert_close(back(z), ref, rtol=0, atol=0)
    G.fuse()
    save_student(tmp_path / "f.pt", G)
    fused = load_student(tmp_path / "f.pt")
    assert fused.synthesis.fused
    with torch.no_grad():
        assert_parity(fused(z), ref, "fused checkpoint vs unfused student")
    obj = torch.load(tmp_path / "s.pt", weights_only=True)
    obj["synthesis_state"].pop("layers.0.conv1.conv.weight_dw")
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"missing key\(s\): layers\.0\.conv1\.conv\.weight_dw"):
        load_student(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_student(tmp_path / "nope.pt")
    torch.save({"g_ema": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a native student"):
        load_student(tmp_path / "other.pt")


def test_inference_fast_path_equals_autograd_path():
    G = tiny_student()
    ws = G.mapping(torch.randn(2, G.z_dim))
    noise = G.synthesis.make_noise(2, "random")
    with torch.no_grad():
        fast = G.synthesis(ws, noise=noise, inference=True)
        plain = G.synthesis(ws, noise=noise)  # no_grad alone never selects the in-place kernels
    slow = G.synthesis(ws, noise=noise)  # parameters require grad: the out-of-place path
    assert slow.requires_grad
    assert_parity(fast, slow.detach(), "in-place inference path vs autograd path")
    torch.testing.assert_close(plain, slow.detach(), rtol=0, atol=0)  # the same kernels: exact
    with pytest.raises(RuntimeError, match="torch.no_grad"):
        G.synthesis(ws, noise=noise, inference=True)  # with autograd on it would corrupt the graph: refused
