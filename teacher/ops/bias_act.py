"""bias_act: add a bias, apply an activation, scale and clamp, in one elementwise op.

``y = clamp(act(x + b) * gain, -clamp, clamp)``. The reference is plain PyTorch (autograd gives
gradients of any order); the CUDA path fuses it into one pass with hand-written gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from teacher.ops import _impl


@dataclass(frozen=True)
class Activation:
    fn: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: x * torch.sigmoid(x), 0.0, math.sqrt(2)),
}


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Fused bias + activation + gain + clamp.

    Args:
        x: Input of any shape.
        b: Bias ``[x.shape[dim]]`` broadcast along ``dim``, or None.
        dim: The axis ``b`` runs along.
        act: One of ``ACTIVATIONS`` (linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish).
        alpha: Negative slope of lrelu (default 0.2); ignored by the others.
        gain: Output scale (default: sqrt(2) for relu/lrelu/swish, 1 otherwise).
        clamp: Clamp the output to ``[-clamp, clamp]``, or None.
        impl: ``"ref"``, ``"cuda"`` or ``"auto"`` (default: ``$MOBILESTYLEGAN_OPS`` or auto).
    Returns:
        Tensor shaped like ``x``.
    """
    spec = ACTIVATIONS.get(act)
    if spec is None:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
    if b is not None:
        if b.ndim != 1 or not -x.ndim <= dim < x.ndim or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not fit dim {dim} of input {tuple(x.shape)}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    alpha = float(spec.default_alpha if alpha is None else alpha)
    gain = float(spec.default_gain if gain is None else gain)
    if _impl.choose("bias_act", x, impl) == "cuda":
        from teacher.ops import cuda

        return cuda.bias_act(x, b, dim % x.ndim, act, alpha, gain, None if clamp is None else float(clamp))
    return bias_act_ref(x, b, dim, spec, alpha, gain, clamp)


def bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    spec: Activation,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """The reference implementation (plain differentiable PyTorch) of :func:`bias_act` with its arguments
    resolved: ``dim`` the bias axis, ``spec`` the activation, ``alpha`` and ``gain`` numbers."""
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.fn(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
