"""The lean inference graphs (mobilestylegan/student/lean.py) compute exactly what the student computes."""

from __future__ import annotations

import pytest
import torch

from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.lean import LeanGenerator, LeanMapping, LeanSynthesis, band_interleave
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.wavelets import idwt
from teacher.mapping import MappingNetwork
from teacher.numerics import assert_parity


def perturbed_student(seed: int = 0) -> MobileSynthesisNetwork:
    """A tiny student whose biases, noise strengths and demodulation vectors are all non-trivial."""
    torch.manual_seed(seed)
    net = MobileSynthesisNetwork(StudentConfig(img_resolution=32, w_dim=16, channels=(16, 16, 8), trainable_demod=True))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("w_input", ["w", "wplus"])
@pytest.mark.parametrize("noise", ["const", "input", "none"])
@pytest.mark.parametrize(
    "idwt_mode,modulation", [("conv", "weights"), ("conv", "activations"), ("matmul", "activations")]
)
def test_lean_synthesis_equals_the_student(w_input, noise, idwt_mode, modulation):
    net = perturbed_student()
    lean = LeanSynthesis(net, w_input, noise, idwt_mode, modulation)
    assert not net.fused and net.to_img1 is not None  # the source is left alone
    inputs = lean.example_inputs(3)
    assert [tuple(t.shape) for t in inputs] == lean.input_shapes(3)
    assert len(lean.input_names) == len(inputs)
    ws = inputs[0] if w_input == "wplus" else inputs[0][:, None].expand(-1, net.num_ws, -1)
    with torch.no_grad():
        ref = net(ws, noise=list(inputs[1:])) if noise == "input" else net(ws, noise_mode=noise)
        out = lean(*inputs)
    assert out.shape == (3, 3, 32, 32)
    assert ref.abs().max() > 1  # a real image-scale signal, not zeros
    assert_parity(out, ref, "lean synthesis vs student")


def test_lean_synthesis_has_no_demodulation_and_counts_its_bytes():
    net = perturbed_student()
    lean = LeanSynthesis(net)
    names = [n for n, _ in lean.named_buffers()]
    assert not any("style_inv" in n for n in names)
    # One merged affine for W input: all styles of the network in one matmul.
    assert lean.style_weight.shape == (16, lean.style_dim)
    fused = MobileSynthesisNetwork(net.cfg)
    fused.load_state_dict(net.state_dict())
    fused.fuse()
    params = sum(p.numel() for p in fused.parameters()) + sum(c.noise_const.numel() for c in fused.styled_convs())
    extra = lean.num_params_bytes() // 4 - params
    # Extra constants: only the band-mix weights (a 4x4 Haar matrix per channel, one tensor per distinct
    # width: both blocks mix 4 channels here), less the noise strengths folded into the baked maps; the style
    # affines are concatenated, not duplicated.
    assert extra == 16 * 4 - len(fused.styled_convs())


def test_band_interleave_with_the_haar_mix_is_the_idwt():
    x = torch.randn(2, 16, 5, 5)
    perm = band_interleave(16)
    lean = LeanSynthesis(perturbed_student())
    mixed = torch.nn.functional.conv2d(x[:, perm], lean.haar_conv4, groups=4)
    assert_parity(torch.nn.functional.pixel_shuffle(mixed, 2), idwt(x), "Haar band mix + pixel shuffle vs idwt")


@pytest.mark.parametrize("psi", [None, 0.7])
def test_lean_mapping_folds_gains_and_truncation(psi):
    torch.manual_seed(1)
    m = MappingNetwork(16, 16, 4)
    m.w_avg.normal_()
    lean = LeanMapping(m, psi)
    z = torch.randn(5, 16)
    with torch.no_grad():
        assert_parity(lean(z), m(z, truncation_psi=psi or 1.0), "lean mapping vs mapping")


def test_lean_generator_end_to_end():
    net = perturbed_student()
    torch.manual_seed(2)
    G = StudentGenerator(net.cfg, MappingNetwork(16, 16, 2))
    G.synthesis.load_state_dict(net.state_dict())
    G.mapping.w_avg.normal_()
    gen = LeanGenerator(LeanMapping(G.mapping, 0.5), LeanSynthesis(G.synthesis))
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert_parity(gen(z), G.eval()(z, truncation_psi=0.5), "lean generator vs student generator")
    with pytest.raises(ValueError, match="w_input='w'"):
        LeanGenerator(LeanMapping(G.mapping), LeanSynthesis(G.synthesis, w_input="wplus"))


def test_lean_rejects_bad_options():
    net = perturbed_student()
    with pytest.raises(ValueError, match="noise"):
        LeanSynthesis(net, noise="random")
    with pytest.raises(ValueError, match="idwt='conv'"):
        LeanSynthesis(net, idwt="matmul", modulation="weights")
    with pytest.raises(TypeError, match="MobileSynthesisNetwork"):
        LeanSynthesis(torch.nn.Linear(2, 2))
    lean = LeanSynthesis(net, noise="input")
    with pytest.raises(ValueError, match="noise inputs"):
        lean(torch.zeros(1, 16))
