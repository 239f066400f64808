"""Channel-pruned initialisation of a student from a MobileStyleGAN teacher (mobilestylegan/distill/prune.py)."""

from __future__ import annotations

import copy

import pytest
import torch

import teacher
from mobilestylegan.distill.prune import PruneError, prune_teacher, wavelet_group_channels
from mobilestylegan.student.generator import teacher_noise_for_student
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.wavelets import idwt
from teacher.numerics import assert_parity
from tests.helpers.teachers import randomize, tiny_g_config

W_DIM = 16


@pytest.fixture(scope="module")
def T() -> MobileSynthesisNetwork:
    """An unfused 64-px MobileStyleGAN teacher with auxiliary heads and non-trivial weights."""
    net = MobileSynthesisNetwork(StudentConfig(img_resolution=64, w_dim=W_DIM, channels=(16, 16, 16, 8)))
    return randomize(net, seed=3).eval().requires_grad_(False)


def render(net: MobileSynthesisNetwork, w: torch.Tensor, noise: list[torch.Tensor]):
    with torch.no_grad():
        return net(w, noise=noise, return_wavelets=net.to_img1 is not None)


def inputs(T: MobileSynthesisNetwork, n: int = 3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, W_DIM, generator=g), T.make_noise(n, "random", generator=g)


def test_wavelet_group_channels():
    # 16 channels = 4 groups: low bands 0..3, detail bands 4 + 3g + b.
    assert wavelet_group_channels(torch.tensor([1, 3]), 16).tolist() == [1, 3, 7, 8, 9, 13, 14, 15]


def test_same_widths_copy_the_teacher(T):
    S = prune_teacher(T, T.cfg)
    for k, v in T.state_dict().items():
        torch.testing.assert_close(S.state_dict()[k], v, rtol=0, atol=0)
    w, noise = inputs(T)
    (a, _), (b, _) = render(S, w, noise), render(T, w, noise)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same weights, inputs and kernels: exact
    assert S.training and all(p.requires_grad for p in S.parameters())  # a fresh trainable student


def test_lower_resolution_is_the_teacher_cut_there(T):
    """A 32-px student with the teacher's widths renders what the teacher's 32-px head shows."""
    cfg = StudentConfig(img_resolution=32, w_dim=W_DIM, channels=(16, 16, 16))
    S = prune_teacher(T, cfg)
    w, noise = inputs(T)
    img, _ = render(S, w, list(teacher_noise_for_student(noise, S)))
    _, wavelets = render(T, w, noise)
    ref = idwt(wavelets[2])
    assert_parity(img, ref, "32-px student vs the teacher's 32-px head")  # random weights: images of ~10^3


def test_fused_teacher_is_unfused_first(T):
    """The fused (inference) teacher prunes to the same features as the unfused one it came from."""
    fused = copy.deepcopy(T).fuse()
    cfg = StudentConfig(img_resolution=32, w_dim=W_DIM, channels=(16, 16, 16))
    a, b = prune_teacher(T, cfg), prune_teacher(fused, cfg)
    w, noise = inputs(T)
    noise = list(teacher_noise_for_student(noise, a))
    feats = {}
    for name, net in (("unfused", a), ("fused", b)):
        net.layers[-1].conv2.register_forward_hook(lambda m, i, o, name=name: feats.__setitem__(name, o))
        render(net, w, noise)
    # Random weights: features of ~10^2 (the rule scales with the peak).
    assert_parity(feats["fused"], feats["unfused"], "features pruned from the fused vs the unfused teacher")
    # The folded final head of a fused teacher is not copied: the student's last head starts at random.
    assert not torch.equal(b.layers[-1].to_img.conv.weight, a.layers[-1].to_img.conv.weight)


def test_pruning_keeps_the_groups_the_next_block_reads(T):
    t = copy.deepcopy(T)
    with torch.no_grad():  # level 0's groups 1 and 3 are never read by block 0: pruning 16 -> 8 drops them
        t.layers[0].conv1.conv.weight_permute[:, [1, 3]] = 0
    cfg = StudentConfig(img_resolution=64, w_dim=W_DIM, channels=(8, 8, 8, 4))
    S = prune_teacher(t, cfg)
    kept = wavelet_group_channels(torch.tensor([0, 2]), 16)
    torch.testing.assert_close(S.input.input, t.input.input[:, kept], rtol=0, atol=0)
    torch.testing.assert_close(S.conv1.conv.weight, t.conv1.conv.weight[kept][:, kept], rtol=0, atol=0)
    torch.testing.assert_close(S.layers[0].up.modulation.weight, t.layers[0].up.modulation.weight[kept], rtol=0, atol=0)
    w, noise = inputs(T)
    img, wavelets = render(S, w, noise)
    assert img.shape == (3, 3, 64, 64) and all(torch.isfinite(x).all() for x in wavelets)
    assert S.layers[0].conv1.conv.weight_permute.shape == (8, 2, 1, 1)
    torch.testing.assert_close(
        S.layers[0].conv1.conv.weight_dw, t.layers[0].conv1.conv.weight_dw[[0, 2]], rtol=0, atol=0
    )


def test_errors(T):
    with pytest.raises(PruneError, match=r"channels\[1\] = 32.*at most the teacher's 16"):
        prune_teacher(T, StudentConfig(img_resolution=64, w_dim=W_DIM, channels=(16, 32, 16, 8)))
    with pytest.raises(PruneError, match="resolution 128 above the teacher's 64"):
        prune_teacher(T, StudentConfig(img_resolution=128, w_dim=W_DIM, channels=(16, 16, 16, 8, 8)))
    with pytest.raises(PruneError, match="w_dim 8"):
        prune_teacher(T, StudentConfig(img_resolution=32, w_dim=8, channels=(16, 16, 16)))
    broken = copy.deepcopy(T).fuse()
    with torch.no_grad():  # no longer a folded demodulation: rows of unequal norm under any style_inv
        broken.layers[1].conv2.conv.weight_permute[0] *= 3
    with pytest.raises(PruneError, match="cannot recover the fused teacher's demodulation"):
        prune_teacher(broken, StudentConfig(img_resolution=32, w_dim=W_DIM, channels=(16, 16, 16)))
    G = teacher.Generator(tiny_g_config(32))
    with pytest.raises(PruneError, match="needs a MobileStyleGAN teacher"):
        prune_teacher(G.synthesis, StudentConfig(img_resolution=32, w_dim=16, channels=(16, 16, 16)))
