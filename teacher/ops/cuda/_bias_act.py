"""bias_act on the GPU: launch wrappers and autograd to second order.

Three autograd Functions:

- ``_BiasAct``: ``y = clamp(act(x + b) * gain)``.
- ``_BiasActGrad``: ``gx = gy * D`` with ``D = dy/dz``; its backward gives the second order.
- ``_BiasActGrad2``: ``gx2 = g * D'`` (``D' = dD/dz``), the second-order term of smooth activations.

For linear / relu / lrelu (gain > 0, alpha >= 0) ``D`` follows from the saved output ``y`` (its
sign picks the branch, ``|y| < clamp`` the clamp) and ``D' = 0``: nothing but ``y`` is kept, which
the next layer keeps anyway. The other activations save ``x`` (and ``b``) and recompute ``x + b``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, NoReturn

import torch

from teacher.ops.cuda import _runtime

ACT_IDS = {"linear": 0, "relu": 1, "lrelu": 2, "tanh": 3, "sigmoid": 4, "elu": 5, "selu": 6, "softplus": 7, "swish": 8}
_MODE_FROM_Y, _MODE_FROM_Z, _MODE_SECOND_FROM_Z = 0, 1, 2
_THREADS = 256
_MAX_BLOCKS = 65536  # grid-stride loop beyond that
_I32_LIMIT = 2**31  # 32-bit index kernels while every index (and index + stride) stays below this


class BiasActParams(ctypes.Structure):
    """Mirrors ``struct BiasActParams`` in kernels/bias_act.cu (same field order and types)."""

    _fields_ = [
        ("n", ctypes.c_longlong),
        ("channels", ctypes.c_longlong),
        ("inner", ctypes.c_longlong),
        ("alpha", ctypes.c_double),
        ("gain", ctypes.c_double),
        ("clamp", ctypes.c_double),
        ("act", ctypes.c_int),
        ("mode", ctypes.c_int),
    ]


@dataclass(frozen=True)
class _Spec:
    dim: int
    act: str
    alpha: float
    gain: float
    clamp: float | None

    @property
    def from_y(self) -> bool:
        """Whether dy/dz can be read off the output (piecewise-linear act, sign-preserving gain)."""
        if self.act == "linear":
            return True
        return self.act in ("relu", "lrelu") and self.gain > 0 and (self.act == "relu" or self.alpha >= 0)

    @property
    def smooth(self) -> bool:
        """Whether act'' can be non-zero."""
        return self.act not in ("linear", "relu", "lrelu")


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` with the CUDA kernel (arguments already resolved).

    Args:
        x: CUDA tensor of any shape (float16 / bfloat16 are computed in float32).
        b: ``[x.shape[dim]]`` bias or None.
        dim: Axis of ``x`` that ``b`` runs along.
        act: One of ``ACT_IDS``.
        alpha: lrelu's negative slope (ignored by the others, as in the reference).
        gain: Output scale.
        clamp: Clamp bound (>= 0) or None.
    Returns:
        Tensor shaped like ``x``, dtype of ``x``.
    """
    if act not in ACT_IDS:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACT_IDS)}")
    dim = dim % max(x.ndim, 1)
    if b is not None and (b.ndim != 1 or x.ndim == 0 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias of shape {tuple(b.shape)} does not fit dim {dim} of input {tuple(x.shape)}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    spec = _Spec(dim, act, float(alpha), float(gain), None if clamp is None else float(clamp))
    return _BiasAct.apply(x, b, spec)


def _sum_to_bias(g: torch.Tensor, dtype: torch.dtype, dim: int) -> torch.Tensor:
    """Reduce a gradient shaped like ``x`` to the bias shape ``[x.shape[dim]]``."""
    dims = [d for d in range(g.ndim) if d != dim]
    return (g.sum(dims) if dims else g).to(dtype)


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, b: torch.Tensor | None, spec: _Spec) -> torch.Tensor:
        y = _launch("fwd", x, None, b, spec)
        ctx.spec, ctx.b_dtype = spec, None if b is None else b.dtype
        ctx.save_for_backward(*((y, None) if spec.from_y else (x, b)))
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        spec = ctx.spec
        s, b = ctx.saved_tensors  # (y, None) or (x, b)
        gx = _BiasActGrad.apply(gy, s, b, spec)
        gb = _sum_to_bias(gx, ctx.b_dtype, spec.dim) if ctx.needs_input_grad[1] else None
        return (gx if ctx.needs_input_grad[0] else None), gb, None


class _BiasActGrad(torch.autograd.Function):
    """``gy * D`` where ``s`` is ``y`` (``spec.from_y``) or ``x`` (with ``b``)."""

    @staticmethod
    def forward(ctx: Any, gy: torch.Tensor, s: torch.Tensor, b: torch.Tensor | None, spec: _Spec) -> torch.Tensor:
        ctx.spec = spec
        ctx.save_for_backward(gy if spec.smooth and not spec.from_y else None, s, b)
        return _launch(
            "grad", gy, s, b if not spec.from_y else None, spec, mode=_MODE_FROM_Y if spec.from_y else _MODE_FROM_Z
        )

    @staticmethod
    def backward(
        ctx: Any, ggx: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
        spec = ctx.spec
        gy, s, b = ctx.saved_tensors
        g_gy = _BiasActGrad.apply(ggx, s, b, spec) if ctx.needs_input_grad[0] else None
        g_s = g_b = None
        # D depends on x only through x + b, and only for smooth activations (elsewhere D' = 0 a.e.).
        if spec.smooth and not spec.from_y and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            g_z = _BiasActGrad2.apply(ggx * gy, s, b, spec)
            g_s = g_z if ctx.needs_input_grad[1] else None
            g_b = _sum_to_bias(g_z, b.dtype, spec.dim) if ctx.needs_input_grad[2] else None
        return g_gy, g_s, g_b, None


class _BiasActGrad2(torch.autograd.Function):
    """``g * D'`` (the second-order term); not differentiable further."""

    @staticmethod
    def forward(ctx: Any, g: torch.Tensor, x: torch.Tensor, b: torch.Tensor | None, spec: _Spec) -> torch.Tensor:
        return _launch("grad", g, x, b, spec, mode=_MODE_SECOND_FROM_Z)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> NoReturn:
        raise RuntimeError("bias_act (CUDA): gradients of third order are not implemented; use impl='ref'")


def _launch(
    kind: str, g: torch.Tensor, s: torch.Tensor | None, b: torch.Tensor | None, spec: _Spec, mode: int = _MODE_FROM_Y
) -> torch.Tensor:
    """Run ``bias_act_fwd`` (``g`` = x) or ``bias_act_grad`` (``g`` = incoming gradient, ``s`` = y or x).

    ``mode`` (gradient kernel only) picks D from y, D from x + b, or D' from x + b.
    """
    dtype = torch.float64 if g.dtype == torch.float64 else torch.float32
    gc = g.to(dtype).contiguous()
    sc = s.to(dtype).contiguous() if s is not None else None
    bc = b.to(device=g.device, dtype=dtype).contiguous() if b is not None else None
    out = torch.empty(gc.shape, dtype=dtype, device=g.device)
    n = gc.numel()
    if n > 0:
        channels = g.shape[spec.dim] if b is not None else 1
        inner = 1
        for size in g.shape[spec.dim + 1 :]:
            inner *= size
        blocks = min(-(-n // _THREADS), _MAX_BLOCKS)
        index = "i32" if n + blocks * _THREADS < _I32_LIMIT else "i64"
        name = f"bias_act_{kind}_{'f64' if dtype == torch.float64 else 'f32'}_{index}"
        params = BiasActParams(
            n,
            channels,
            inner,
            spec.alpha,
            spec.gain,
            -1.0 if spec.clamp is None else spec.clamp,
            ACT_IDS[spec.act],
            mode,
        )
        pointers = [gc, bc, out] if kind == "fwd" else [gc, sc, bc, out]
        args = [*map(_ptr, pointers), params]
        _runtime.get_kernel("bias_act", name, g.device).launch(
            grid=(blocks, 1, 1), block=(_THREADS, 1, 1), args=args, stream=_runtime.current_stream(g.device)
        )
    return out if out.dtype == g.dtype else out.to(g.dtype)
