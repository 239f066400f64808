"""The CUDA kernels' self-test: before ``impl="auto"`` or ``"cuda"`` first uses a kernel on a GPU, it is
compared with the reference on that GPU, so a kernel that miscompiles or misbehaves on a GPU never
silently corrupts a run.

Per (op, kernel precision, device) the test runs a few small cases that cover the kernels' paths
(upfirdn2d: blur with padding, 2x up, 2x down, anisotropic factors with cropping, a separable filter,
flip and gain; bias_act: lrelu with bias and clamp, linear with gain, relu, swish along another axis) and
compares the output, the first-order gradients (random cotangent) and the second-order gradients (of a
random projection of the first) with the reference implementation on the same device, within
``teacher.numerics.parity_tolerance`` (TF32 off for the reference's convolutions). float16 / bfloat16
inputs run the float32 kernels, so "float32" covers them. The verdict is kept for the process and written
next to the compiled kernel (``*.selftest-<dtype>.json`` in the kernel cache; delete it to test again).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from teacher.fs import atomic_write
from teacher.numerics import F32_EPS, F64_EPS, max_abs_diff, parity_tolerance

# (x shape, filter shape, up, down, padding, flip, gain)
UPFIRDN2D_CASES = [
    ((2, 3, 9, 7), (4, 4), (1, 1), (1, 1), (1, 2, 2, 1), False, 1.0),  # blur, uneven padding
    ((1, 2, 6, 9), (4, 4), (2, 2), (1, 1), (2, 1, 2, 1), True, 4.0),  # upsample2d
    ((1, 2, 10, 8), (4, 4), (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0),  # downsample2d
    ((1, 2, 5, 7), (3, 5), (4, 2), (1, 4), (-1, 2, 3, -2), False, 2.5),  # anisotropic, cropping
    ((2, 1, 11, 13), (8,), (2, 1), (4, 2), (3, 0, -2, 4), True, 1.0),  # separable 1-D filter
]
# (x shape, dim, act, alpha, gain, clamp, with bias)
BIAS_ACT_CASES = [
    ((2, 5, 4, 3), 1, "lrelu", 0.2, 2**0.5, 0.7, True),
    ((3, 7), 1, "linear", 0.0, 1.7, None, True),
    ((2, 3, 5, 5), 1, "relu", 0.0, 1.0, None, False),
    ((4, 3, 6), 2, "swish", 0.0, 1.3, 2.0, True),
]
OPS = ("upfirdn2d", "bias_act")


@dataclass
class Verdict:
    """The outcome of one op's self-test on one device and kernel precision."""

    op: str
    dtype: str
    where: str
    passed: bool
    worst: str  # the worst comparison: case and output
    max_err: float
    tolerance: float
    cases: int
    seconds: float
    cached: bool = False

    def summary(self) -> str:
        state = "passed" if self.passed else "FAILED"
        return (
            f"{state} on {self.where} ({self.dtype}): worst {self.worst}, max |diff| {self.max_err:.3g} vs "
            f"tolerance {self.tolerance:.3g}, {self.cases} cases, {self.seconds:.2f} s"
            + (" (cached verdict)" if self.cached else "")
        )


_verdicts: dict[tuple[str, str, str], Verdict] = {}
_lock = threading.Lock()


def kernel_dtype(dtype: torch.dtype) -> str:
    """The precision a kernel computes in for inputs of ``dtype``."""
    return "float64" if dtype == torch.float64 else "float32"


def known(op: str, dtype: str, device: torch.device) -> Verdict | None:
    """This process's verdict for ``op`` on ``device`` at ``dtype``, if it has one (no lock, no disk)."""
    return _verdicts.get((op, dtype, str(device)))


def verdicts() -> dict[tuple[str, str, str], Verdict]:
    """The verdicts known to this process: ``(op, dtype, device) -> Verdict``."""
    return dict(_verdicts)


def verdict(
    op: str, dtype: str, device: torch.device, cache_file: Path | None = None, where: str | None = None
) -> Verdict:
    """The self-test verdict of ``op``'s CUDA kernels on ``device`` for kernel precision ``dtype``: from this
    process, else from ``cache_file``, else measured now (and written to ``cache_file``)."""
    key = (op, dtype, str(device))
    with _lock:
        if key in _verdicts:
            return _verdicts[key]
        found = _read(cache_file, op, dtype)
        if found is None:
            found = run(op, dtype, device, where=where)
            _write(cache_file, found)
        _verdicts[key] = found
        return found


def run(
    op: str,
    dtype: str,
    device: torch.device | str,
    cuda_fn: Callable | None = None,
    ref_fn: Callable | None = None,
    where: str | None = None,
) -> Verdict:
    """Compare ``cuda_fn`` with ``ref_fn`` (default: our CUDA kernel and the reference) on every case of
    ``op``: outputs, first- and second-order gradients. The functions take normalised arguments like
    ``teacher.ops.cuda.upfirdn2d`` / ``teacher.ops.cuda.bias_act``."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    eps = F64_EPS if torch_dtype == torch.float64 else F32_EPS
    cuda_fn = cuda_fn or _default_cuda(op)
    ref_fn = ref_fn or _default_ref(op)
    device = torch.device(device)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    rand = lambda shape: torch.randn(shape, generator=g, dtype=torch.float64).to(device, torch_dtype)  # noqa: E731
    worst = ("", 0.0, 0.0, -1.0)  # (what, err, tol, err / tol)
    passed = True
    cases = UPFIRDN2D_CASES if op == "upfirdn2d" else BIAS_ACT_CASES
    no_tf32 = (
        torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    with no_tf32:
        for i, case in enumerate(cases):
            if op == "upfirdn2d":
                shape, fshape, up, down, pad, flip, gain = case
                x, f = rand(shape).requires_grad_(True), rand(fshape)
                inputs, args = [x], (f, up, down, pad, flip, gain)
                call = lambda fn, t, a=args: fn(t, *a)  # noqa: E731
            else:
                shape, dim, act, alpha, gain, clamp, with_bias = case
                x = (rand(shape) * 2).requires_grad_(True)
                inputs = [x, rand((shape[dim],)).requires_grad_(True)] if with_bias else [x]
                args = (dim, act, alpha, gain, clamp)
                call = lambda fn, t, bb=None, a=args: fn(t, bb, *a)  # noqa: E731
            cot = _cotangents(call, ref_fn, inputs, g)
            ours = _with_grads(lambda *t, call=call: call(cuda_fn, *t), inputs, cot)
            ref = _with_grads(lambda *t, call=call: call(ref_fn, *t), inputs, cot)
            for name, a, b in zip(_names(len(inputs)), ours, ref):
                err, tol = _compare(a, b, eps)
                ratio = err / tol
                if ratio > worst[3]:
                    worst = (f"case {i} {name}", err, tol, ratio)
                passed = passed and ratio <= 1.0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Verdict(
        op=op,
        dtype=dtype,
        where=where or str(device),
        passed=passed,
        worst=worst[0],
        max_err=worst[1],
        tolerance=worst[2],
        cases=len(cases),
        seconds=time.perf_counter() - t0,
    )


def _names(n_inputs: int) -> list[str]:
    inputs = ["x", "b"][:n_inputs]
    return ["output"] + [f"d/d{n}" for n in inputs] + [f"d2/d{n}" for n in inputs]


def _cotangents(
    call: Callable, ref_fn: Callable, inputs: list[torch.Tensor], g: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Random cotangents for the output and the first gradients (shapes from a reference forward)."""
    with torch.no_grad():
        y = call(ref_fn, *inputs)
    draw = lambda t: torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device, t.dtype)  # noqa: E731
    return draw(y), [draw(t) for t in inputs]


def _with_grads(
    fn: Callable, inputs: list[torch.Tensor], cot: tuple[torch.Tensor, list[torch.Tensor]]
) -> list[torch.Tensor]:
    """``[y, dL/dinputs..., d(sum first * u)/dinputs...]`` with ``L = sum(y * v)``."""
    v, us = cot
    y = fn(*inputs)
    first = torch.autograd.grad(y, inputs, v, create_graph=True)
    proj = sum((gi * u).sum() for gi, u in zip(first, us))
    if proj.requires_grad:
        second = torch.autograd.grad(proj, inputs, allow_unused=True)
    else:  # piecewise-linear activations: no second derivative at all
        second = [None] * len(inputs)
    second = [torch.zeros_like(t) if s is None else s for s, t in zip(second, inputs)]
    return [y.detach(), *(t.detach() for t in first), *(t.detach() for t in second)]


def _compare(a: torch.Tensor, b: torch.Tensor, eps: float) -> tuple[float, float]:
    tol = parity_tolerance(b, eps)
    if a.shape != b.shape or not bool(torch.isfinite(a).all()):
        return float("inf"), tol
    return max_abs_diff(a, b), tol


def _default_cuda(op: str) -> Callable:
    from teacher.ops import cuda

    return cuda.upfirdn2d if op == "upfirdn2d" else cuda.bias_act


def _default_ref(op: str) -> Callable:
    if op == "upfirdn2d":
        from teacher.ops.upfirdn2d import upfirdn2d_ref

        return upfirdn2d_ref
    from teacher.ops.bias_act import ACTIVATIONS, bias_act_ref

    return lambda x, b, dim, act, alpha, gain, clamp: bias_act_ref(x, b, dim, ACTIVATIONS[act], alpha, gain, clamp)


def _read(path: Path | None, op: str, dtype: str) -> Verdict | None:
    if path is None or not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        found = Verdict(**{**data, "cached": True})
    except (OSError, ValueError, TypeError):
        return None  # unreadable: test again
    return found if (found.op, found.dtype) == (op, dtype) else None


def _write(path: Path | None, found: Verdict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({k: v for k, v in asdict(found).items() if k != "cached"}, indent=1)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError:
        pass  # the verdict still holds for this process; the next one tests again


__all__ = ["BIAS_ACT_CASES", "UPFIRDN2D_CASES", "Verdict", "kernel_dtype", "known", "run", "verdict", "verdicts"]
