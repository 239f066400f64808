"""Distillation losses against hand formulas; R1 through the discriminator's double backward; DiffAugment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import teacher
from mobilestylegan.distill.augment import DiffAugment
from mobilestylegan.distill.losses import (
    PerceptualLoss,
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_r1_loss,
    pixel_loss,
    r1_penalty,
)
from mobilestylegan.nets.vgg import load_vgg16
from teacher.numerics import assert_parity

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_d(dtype: torch.dtype = torch.float32) -> teacher.Discriminator:
    D = teacher.Discriminator(teacher.DiscriminatorConfig(img_resolution=16, channels={4: 8, 8: 8, 16: 8}))
    return D.to(dtype)


@pytest.fixture(scope="module")
def vgg():
    return load_vgg16(None, allow_random_weights=True)


# ----------------------------------------------------------------------------------------------- pixel


def test_pixel_loss_matches_hand_formula():
    heads_p = [torch.randn(2, 12, 4, 4), torch.randn(2, 12, 8, 8)]
    heads_t = [torch.randn(2, 12, 4, 4), torch.randn(2, 12, 8, 8)]
    img_p, img_t = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    l1, l2 = 0.7, 1.3

    def l1_of(a, b):
        return sum(abs(x - y) for x, y in zip(a.flatten().tolist(), b.flatten().tolist())) / a.numel()

    def l2_of(a, b):
        return sum((x - y) ** 2 for x, y in zip(a.flatten().tolist(), b.flatten().tolist())) / a.numel()

    w_l1 = (l1_of(heads_p[0], heads_t[0]) + l1_of(heads_p[1], heads_t[1])) / 2
    w_l2 = (l2_of(heads_p[0], heads_t[0]) + l2_of(heads_p[1], heads_t[1])) / 2
    rgb_l1, rgb_l2 = l1_of(img_p, img_t), l2_of(img_p, img_t)
    total, parts = pixel_loss(heads_p, heads_t, img_p, img_t, l1=l1, l2=l2)
    expect = {
        "wavelet_l1": w_l1,
        "wavelet_l2": w_l2,
        "rgb_l1": rgb_l1,
        "rgb_l2": rgb_l2,
        "wavelet": l1 * w_l1 + l2 * w_l2,
        "rgb": l1 * rgb_l1 + l2 * rgb_l2,
    }
    for key, value in expect.items():  # float32 losses against the formula in float64
        assert_parity(parts[key], torch.tensor(value, dtype=torch.float64), key)
        assert not parts[key].requires_grad
    assert_parity(total, torch.tensor(expect["wavelet"] + expect["rgb"], dtype=torch.float64), "total")


def test_pixel_loss_gradients_and_errors():
    pred = [torch.randn(1, 12, 4, 4, requires_grad=True)]
    img = torch.randn(1, 3, 8, 8, requires_grad=True)
    total, _ = pixel_loss(pred, [torch.zeros(1, 12, 4, 4)], img, torch.zeros(1, 3, 8, 8))
    total.backward()
    assert pred[0].grad.abs().sum() > 0 and img.grad.abs().sum() > 0
    total, parts = pixel_loss([], [], img, img.detach() + 1)  # no auxiliary heads
    assert parts["wavelet"].item() == 0
    assert_parity(total, torch.tensor(2.0, dtype=torch.float64), "l1 + l2 of a difference of 1")
    with pytest.raises(ValueError, match="heads"):
        pixel_loss(pred, [], img, img)
    with pytest.raises(ValueError, match="head 0"):
        pixel_loss(pred, [torch.zeros(1, 12, 8, 8)], img, img)


# ------------------------------------------------------------------------------------------ perceptual


def test_perceptual_zero_for_identical_and_positive_otherwise(vgg):
    loss = PerceptualLoss(vgg, size=16)
    a = torch.rand(2, 3, 16, 16) * 2 - 1
    assert loss(a, a.clone()).item() == 0
    assert loss(a, torch.rand(2, 3, 16, 16) * 2 - 1).item() > 0
    loss.train()
    assert not loss.vgg.training


def test_perceptual_is_mean_of_per_layer_l1_after_area_resize(vgg):
    loss = PerceptualLoss(vgg, size=16)
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    fa, fb = vgg(F.avg_pool2d(a, 2)), vgg(F.avg_pool2d(b, 2))  # area 32 -> 16 = 2x2 box mean
    expect = sum((x - y).abs().mean() for x, y in zip(fa, fb)) / 4
    assert_parity(loss(a, b), expect, "perceptual loss vs per-layer L1 after a 2x2 box mean")
    small = torch.rand(1, 3, 8, 8) * 2 - 1  # enlarged (bilinear) to 16
    up = F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)
    fs, fu = vgg(up), vgg(F.interpolate(-small, size=(16, 16), mode="bilinear", align_corners=False))
    expect = sum((x - y).abs().mean() for x, y in zip(fs, fu)) / 4
    assert_parity(loss(small, -small), expect, "perceptual loss vs per-layer L1 after bilinear enlarging")


def test_perceptual_decreases_under_optimisation(vgg):
    loss_fn = PerceptualLoss(vgg, size=16)
    target = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_()  # a target's grad must stay untouched
    img = torch.zeros(1, 3, 16, 16, requires_grad=True)
    history = []
    for _ in range(8):  # sign gradient descent (Adam's first steps; torch.optim's first import is slow)
        loss = loss_fn(img, target)
        (grad,) = torch.autograd.grad(loss, img)
        with torch.no_grad():
            img -= 0.05 * grad.sign()
        history.append(loss.item())
    assert history[-1] < 0.7 * history[0]
    assert target.grad is None
    assert all(p.grad is None for p in vgg.parameters())


# ------------------------------------------------------------------------------------------------- GAN


def test_gan_losses_match_formulas():
    real = torch.tensor([[1.5], [-0.3], [0.2]], dtype=torch.float64)
    fake = torch.tensor([[-2.0], [0.7], [0.0]], dtype=torch.float64)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert g_nonsaturating_loss(fake).item() == pytest.approx(sum(sp(-f) for f in fake.flatten().tolist()) / 3)
    want = sum(sp(f) for f in fake.flatten().tolist()) / 3 + sum(sp(-r) for r in real.flatten().tolist()) / 3
    assert d_logistic_loss(real, fake).item() == pytest.approx(want)
    assert lazy_r1_loss(torch.tensor(2.0)).item() == pytest.approx(2.0 * 10.0 / 2 * 16)
    assert lazy_r1_loss(torch.tensor(2.0), gamma=1.0, interval=4).item() == pytest.approx(4.0)


def test_r1_matches_autograd_and_finite_differences():
    D = tiny_d(torch.float64)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    penalty = r1_penalty(x, D(x))
    (grad,) = torch.autograd.grad(D(x).sum(), x)  # separate first-order computation
    assert penalty.item() == pytest.approx((grad.square().sum() / 4).item(), rel=1e-10)
    eps = 1e-6  # directional finite differences of sum(D(x)) agree with the gradient
    for _ in range(2):
        v = torch.randn_like(x)
        with torch.no_grad():
            fd = (D(x + eps * v).sum() - D(x - eps * v).sum()) / (2 * eps)
        assert fd.item() == pytest.approx((grad * v).sum().item(), rel=1e-5)
    with pytest.raises(ValueError, match="requires_grad|require grad"):
        r1_penalty(x.detach(), D(x.detach()))


def test_r1_gradient_reaches_discriminator_weights():
    D = tiny_d(torch.float64)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    lazy_r1_loss(r1_penalty(x, D(x))).backward()
    grads = {n: p.grad for n, p in D.named_parameters()}
    assert grads.pop("b4.out.bias") is None  # the output bias does not change dD/dx
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["b16.conv0.weight"].abs().sum() > 0 and grads["b16.fromrgb.weight"].abs().sum() > 0
    # Second-order check: d penalty / d theta along a random direction, against finite differences.
    w = D.b16.conv0.weight
    direction = torch.randn_like(w)
    analytic = (grads["b16.conv0.weight"] * direction).sum().item() / (10.0 / 2 * 16)
    eps = 1e-6

    def penalty_at(shift: float) -> float:
        with torch.no_grad():
            w.add_(shift * direction)
        xx = x.detach().requires_grad_()
        value = r1_penalty(xx, D(xx)).item()
        with torch.no_grad():
            w.sub_(shift * direction)
        return value

    assert (penalty_at(eps) - penalty_at(-eps)) / (2 * eps) == pytest.approx(analytic, rel=1e-4)


# ---------------------------------------------------------------------------------------- augmentation


def gens(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 1000 + i) for i in range(n)]


def test_diffaugment_identity_at_p0():
    x = torch.randn(4, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    state, global_state = g.get_state(), torch.get_rng_state()
    assert torch.equal(DiffAugment(p=0.0)(x, g), x)
    assert torch.equal(g.get_state(), state) and torch.equal(torch.get_rng_state(), global_state)  # nothing drawn


def test_diffaugment_shape_gradient_and_independence():
    aug = DiffAugment(p=1.0)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    global_state = torch.get_rng_state()
    y = aug(x, gens(0, 4))
    assert torch.equal(torch.get_rng_state(), global_state)  # never the global RNG
    assert y.shape == x.shape
    assert all((y[i] - x[i]).abs().max() > 1e-3 for i in range(4))  # p = 1: every sample changed
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not torch.allclose(aug(x, gens(1, 4)), aug(x, gens(2, 4)))  # real and fake draw their own
    with pytest.raises(ValueError):
        DiffAugment(p=1.5)
    with pytest.raises(ValueError, match="2 generators for 4 samples"):
        aug(x, gens(0, 2))


def test_diffaugment_per_sample_and_independent_of_the_batch():
    """A sample's augmentation depends only on its own generator: splitting a batch (as DDP processes do)
    changes nothing, and the same generators reproduce it."""
    aug = DiffAugment(p=0.5)
    x = torch.randn(8, 3, 16, 16)
    a = aug(x, gens(123, 8))
    torch.testing.assert_close(a, aug(x, gens(123, 8)), rtol=0, atol=0)
    halves = torch.cat([aug(x[:3], gens(123, 8)[:3]), aug(x[3:], gens(123, 8)[3:])])
    torch.testing.assert_close(a, halves, rtol=0, atol=0)
    assert not torch.equal(a, aug(x, gens(124, 8)))
    theta, changed = aug.matrices(gens(123, 8), 8, 16, 16)
    assert theta.shape == (8, 2, 3) and 0 < int(changed.sum()) <= 8
    for i in range(8):  # untouched samples come back bit for bit
        if not changed[i]:
            assert torch.equal(a[i], x[i])


def test_diffaugment_transforms_are_the_documented_maps():
    """Each transform alone against its closed form: the flip mirrors exactly; the rotation's sampling map
    is the inverse rotation by the drawn angle; a crop of area 1/4 and ratio 1 is a half-size window at the
    drawn position, stretched back."""
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    flip = DiffAugment(p=1.0, degrees=0, translate=0, scale=(1, 1), crop_scale=None)
    torch.testing.assert_close(flip(x.float(), gens(0, 1)).double(), x.flip(-1), rtol=0, atol=1e-6)
    g = torch.Generator()
    rot = DiffAugment(p=1.0, flip=False, degrees=30, translate=0, scale=(1, 1), crop_scale=None)
    g.manual_seed(5)
    u = torch.rand(DiffAugment.DRAWS, generator=g, dtype=torch.float64)
    g.manual_seed(5)
    theta, _ = rot.matrices(g, 1, 8, 8)
    angle = math.radians((2 * float(u[2]) - 1) * 30)
    want = torch.tensor([[math.cos(angle), math.sin(angle), 0], [-math.sin(angle), math.cos(angle), 0]])
    torch.testing.assert_close(theta[0], want, rtol=0, atol=1e-6)
    crop = DiffAugment(
        p=1.0, flip=False, degrees=0, translate=0, scale=(1, 1), crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0)
    )
    g.manual_seed(7)
    u = torch.rand(DiffAugment.DRAWS, generator=g, dtype=torch.float64)
    g.manual_seed(7)
    theta, changed = crop.matrices(g, 1, 8, 8)
    cx, cy = -0.5 + float(u[9]), -0.5 + float(u[10])  # window centre: -1 + w + 2 u (1 - w) with w = 1/2
    assert bool(changed[0])
    torch.testing.assert_close(theta[0], torch.tensor([[0.5, 0, cx], [0, 0.5, cy]]), rtol=0, atol=1e-6)


def test_r1_through_diffaugment():
    D, aug = tiny_d(), DiffAugment(p=1.0)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    penalty = r1_penalty(x, D(aug(x, gens(0, 4))))  # gradient w.r.t. the non-augmented reals (StyleGAN2-ADA)
    assert torch.isfinite(penalty) and penalty > 0
    penalty.backward()
    assert D.b16.conv0.weight.grad.abs().sum() > 0
