"""The reference fused ops against an independent float64 oracle, autograd to second order, dispatch."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from teacher import ops
from teacher.ops import _impl
from teacher.ops.upfirdn2d import upfirdn2d_naive


def oracle_upfirdn2d(x: np.ndarray, f: np.ndarray, up, down, pad, flip, gain) -> np.ndarray:
    """Literal definition with explicit loops (float64): zero-insert, pad/crop, true convolution, subsample."""
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, pad
    if f.ndim == 1:
        f = np.outer(f, f)
    n, c, h, w = x.shape
    z = np.zeros((n, c, h * uy, w * ux))
    z[:, :, ::uy, ::ux] = x
    hz, wz = z.shape[2:]
    hp, wp = hz + py0 + py1, wz + px0 + px1
    zp = np.zeros((n, c, hp, wp))
    for i in range(hp):
        for j in range(wp):
            si, sj = i - py0, j - px0
            if 0 <= si < hz and 0 <= sj < wz:
                zp[:, :, i, j] = z[:, :, si, sj]
    fh, fw = f.shape
    k = f if flip else f[::-1, ::-1]  # true convolution = correlation with the flipped filter
    oh, ow = hp - fh + 1, wp - fw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = (zp[:, :, i : i + fh, j : j + fw] * k).sum(axis=(2, 3))
    return out[:, :, ::dy, ::dx] * gain


CASES = list(itertools.product([1, 2, 4], [1, 2, 4], [(0, 0, 0, 0), (2, 1, 0, 3), (-1, 2, 3, -2)], ["1d", "2d"]))


@pytest.mark.parametrize("up,down,pad,kind", CASES)
def test_upfirdn2d_matches_oracle(up, down, pad, kind):
    g = torch.Generator().manual_seed(up * 100 + down * 10 + len(kind))
    channels = 3 if kind == "1d" else 6  # both the folded (<= 4 channels) and the depthwise path
    x = torch.randn(2, channels, 7, 5, generator=g, dtype=torch.float64)
    f = (
        torch.randn(4, generator=g, dtype=torch.float64)
        if kind == "1d"
        else torch.randn(3, 5, generator=g, dtype=torch.float64)
    )
    for flip, gain in [(False, 1.0), (True, 2.5)]:
        ref = oracle_upfirdn2d(x.numpy(), f.numpy(), (up, up), (down, down), pad, flip, gain)
        out = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="ref")
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


def test_upfirdn2d_anisotropic_factors_and_naive():
    x = torch.randn(1, 2, 6, 9, dtype=torch.float64)
    f = torch.randn(4, 3, dtype=torch.float64)
    for up, down, pad in [((2, 1), (1, 2), (1, 0, 2, 1)), ((1, 4), (2, 1), (0, 3, -1, 2))]:
        ref = oracle_upfirdn2d(x.numpy(), f.numpy(), up, down, pad, False, 1.0)
        out = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, impl="ref")
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
        naive = upfirdn2d_naive(x, f, up=up, down=down, padding=pad)
        np.testing.assert_allclose(naive.numpy(), ref, atol=1e-12)


def test_separable_filter_equals_its_outer_product():
    x = torch.randn(2, 4, 9, 11, dtype=torch.float64)
    f1 = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    a = ops.upfirdn2d(x, f1, up=2, padding=[2, 1, 2, 1], gain=4)
    b = ops.upfirdn2d(x, torch.outer(f1, f1), up=2, padding=[2, 1, 2, 1], gain=4)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_setup_filter_and_resampling_helpers():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and abs(f.sum().item() - 1) < 1e-7
    assert ops.setup_filter([1] * 8).shape == (8,)  # long 1-D filters stay separable
    assert abs(ops.setup_filter([1, 3, 3, 1], gain=4).sum().item() - 4) < 1e-6
    x = torch.randn(2, 3, 16, 12)
    assert ops.upsample2d(x, f).shape == (2, 3, 32, 24)
    assert ops.downsample2d(x, f).shape == (2, 3, 8, 6)
    assert ops.filter2d(x, f).shape == x.shape
    # A constant image stays constant away from the borders (filters are normalised, gains compensate).
    ones = torch.ones(1, 1, 16, 16)
    torch.testing.assert_close(ops.upsample2d(ones, f)[..., 4:-4, 4:-4], torch.ones(1, 1, 24, 24))
    torch.testing.assert_close(ops.downsample2d(ones, f)[..., 2:-2, 2:-2], torch.ones(1, 1, 4, 4))


def test_upfirdn2d_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        ops.upfirdn2d(torch.randn(3, 8, 8), ops.setup_filter([1, 1]))
    with pytest.raises(ValueError, match="empty"):
        ops.upfirdn2d(torch.randn(1, 1, 2, 2), torch.ones(5, 5))
    with pytest.raises(ValueError, match="padding"):
        ops.upfirdn2d(torch.randn(1, 1, 8, 8), torch.ones(2, 2), padding=[1, 2, 3])


@pytest.mark.parametrize("up,down,kind", [(1, 1, "2d"), (2, 1, "1d"), (1, 2, "2d"), (2, 2, "1d"), (4, 1, "2d")])
def test_upfirdn2d_gradcheck_and_gradgradcheck(up, down, kind):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, dtype=torch.float64) if kind == "1d" else torch.randn(3, 2, dtype=torch.float64)
    fn = lambda t: ops.upfirdn2d(t, f, up=up, down=down, padding=[1, 2, 0, 1], gain=1.5, impl="ref")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def oracle_act(name: str, x: np.ndarray, alpha: float) -> np.ndarray:
    return {
        "linear": lambda: x,
        "relu": lambda: np.maximum(x, 0),
        "lrelu": lambda: np.where(x >= 0, x, x * alpha),
        "tanh": lambda: np.tanh(x),
        "sigmoid": lambda: 1 / (1 + np.exp(-x)),
        "elu": lambda: np.where(x >= 0, x, np.expm1(x)),
        "selu": lambda: 1.0507009873554805 * np.where(x >= 0, x, 1.6732632423543772 * np.expm1(x)),
        "softplus": lambda: np.log1p(np.exp(x)),
        "swish": lambda: x / (1 + np.exp(-x)),
    }[name]()


DEFAULT_GAINS = {"relu": math.sqrt(2), "lrelu": math.sqrt(2), "swish": math.sqrt(2)}


@pytest.mark.parametrize("act", sorted(ops.ACTIVATIONS))
def test_bias_act_matches_formula(act):
    x = torch.randn(3, 5, 4, 2, dtype=torch.float64) * 2
    b = torch.randn(5, dtype=torch.float64)
    xb = x.numpy() + b.numpy()[None, :, None, None]
    gain = DEFAULT_GAINS.get(act, 1.0)
    np.testing.assert_allclose(
        ops.bias_act(x, b, act=act, impl="ref").numpy(), oracle_act(act, xb, 0.2) * gain, rtol=1e-12, atol=1e-12
    )
    out = ops.bias_act(x, b, act=act, alpha=0.3, gain=0.7, clamp=0.5, impl="ref").numpy()
    np.testing.assert_allclose(out, np.clip(oracle_act(act, xb, 0.3) * 0.7, -0.5, 0.5), rtol=1e-12, atol=1e-12)


def test_bias_act_dim_and_errors():
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(ops.bias_act(x, b, dim=2), x + b)
    torch.testing.assert_close(ops.bias_act(x, b, dim=-1), x + b)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.bias_act(x, act="gelu2")
    with pytest.raises(ValueError, match="does not fit"):
        ops.bias_act(x, b, dim=1)
    with pytest.raises(ValueError, match="clamp"):
        ops.bias_act(x, clamp=-1.0)


@pytest.mark.parametrize(
    "act,clamp", [("lrelu", None), ("lrelu", 0.8), ("linear", 0.5), ("tanh", None), ("swish", None)]
)
def test_bias_act_gradcheck_and_gradgradcheck(act, clamp):
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = (x + 0.05 * x.sign()).requires_grad_(True)  # keep away from the kinks of lrelu / clamp
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda t, bb: ops.bias_act(t, bb, act=act, clamp=clamp, impl="ref")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_dispatch_rules(monkeypatch):
    x = torch.randn(1, 1, 4, 4)
    f = ops.setup_filter([1, 1])
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        ops.upfirdn2d(x, f, impl="cuda")
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        ops.bias_act(x, impl="cuda")
    with pytest.raises(ValueError, match="must be one of"):
        ops.bias_act(x, impl="fast")
    monkeypatch.setenv(_impl.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match=r"\$MOBILESTYLEGAN_OPS"):
        ops.upfirdn2d(x, f)
    monkeypatch.setenv(_impl.ENV_VAR, "auto")
    ops.upfirdn2d(x, f)  # CPU tensor under auto -> reference, no error
    st = ops.status()
    assert st["upfirdn2d"]["active"] == "ref" and "not on a CUDA device" in st["upfirdn2d"]["reason"]
    monkeypatch.setenv(_impl.ENV_VAR, "ref")
    ops.bias_act(x)
    assert ops.status()["bias_act"] == {
        "requested": "ref",
        "active": "ref",
        "reason": "reference requested",
        "selftest": {},
    }  # no CUDA kernel was ever tested in this process


def test_importing_ops_does_not_load_cuda_module():
    import subprocess
    import sys

    code = "import sys, teacher, teacher.ops; print(any(m.startswith('teacher.ops.cuda') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
