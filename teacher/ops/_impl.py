"""Choosing between the reference and the CUDA implementation of a fused op.

Order of precedence: the ``impl`` argument of the op, then the environment variable
``MOBILESTYLEGAN_OPS`` (``auto`` | ``cuda`` | ``ref``), then ``auto``.

- ``ref``: always the pure-PyTorch reference.
- ``cuda``: the CUDA kernels; a CPU tensor or a failed build raises.
- ``auto``: CUDA kernels for CUDA tensors when they build, else the reference. A failed build warns
  once (naming the error) and falls back.

The kernels are compiled on the first CUDA call, never at import.
"""

from __future__ import annotations

import os
import warnings

import torch

ENV_VAR = "MOBILESTYLEGAN_OPS"
IMPLS = ("auto", "cuda", "ref")

# op name -> (implementation last used, why). Informational only; see status().
_last_choice: dict[str, tuple[str, str]] = {}
_warned: set[str] = set()


def requested_impl(impl: str | None) -> str:
    """The implementation asked for, from the argument or the environment."""
    source = "impl argument"
    if impl is None:
        impl, source = os.environ.get(ENV_VAR, "auto") or "auto", f"${ENV_VAR}"
    impl = impl.lower()
    if impl not in IMPLS:
        raise ValueError(f"{source} must be one of {IMPLS}, got {impl!r}")
    return impl


def choose(op: str, x: torch.Tensor, impl: str | None) -> str:
    """Return ``"cuda"`` or ``"ref"`` for this call of ``op`` on tensor ``x``."""
    want = requested_impl(impl)
    if want == "ref":
        return _record(op, "ref", "reference requested")
    if not x.is_cuda:
        if want == "cuda":
            raise ValueError(f"{op}(impl='cuda') needs a CUDA tensor, got one on {x.device}; use impl='ref' or 'auto'")
        return _record(op, "ref", "input is not on a CUDA device")
    from teacher.ops import cuda  # deferred: nothing CUDA-related happens at import

    try:
        cuda.build(op)
    except Exception as err:  # the build error is reported, never swallowed silently
        if want == "cuda":
            raise RuntimeError(f"{op}: building the CUDA kernel failed: {err}") from err
        if op not in _warned:
            _warned.add(op)
            warnings.warn(f"{op}: CUDA kernel unavailable, using the reference implementation ({err})", RuntimeWarning)
        return _record(op, "ref", f"CUDA build failed: {err}")
    return _record(op, "cuda", "CUDA kernel built")


def _record(op: str, impl: str, why: str) -> str:
    _last_choice[op] = (impl, why)
    return impl


def status() -> dict[str, dict[str, str]]:
    """Which implementation each op would use / last used, and why.

    Returns ``{op: {"requested": ..., "active": ..., "reason": ...}}`` for ``upfirdn2d`` and ``bias_act``.
    """
    want = requested_impl(None)
    out = {}
    for op in ("upfirdn2d", "bias_act"):
        if op in _last_choice:
            active, why = _last_choice[op]
        elif want == "ref":
            active, why = "ref", "reference requested"
        elif not torch.cuda.is_available():
            active, why = "ref", "no CUDA device (not called yet)"
        else:
            active, why = "undecided", "kernels build on the first CUDA call"
        out[op] = {"requested": want, "active": active, "reason": why}
    return out
