"""Choosing between the reference and the CUDA implementation of a fused op.

Order of precedence: the ``impl`` argument of the op, then the environment variable
``MOBILESTYLEGAN_OPS`` (``auto`` | ``cuda`` | ``ref``), then ``auto``.

- ``ref``: always the pure-PyTorch reference.
- ``cuda``: the CUDA kernels; a CPU tensor, a failed build or a failed self-test raises.
- ``auto``: CUDA kernels for CUDA tensors when they build and pass their self-test, else the reference.
  A failed build or self-test warns once (naming the op and the error) and falls back.

The kernels are compiled on the first CUDA call, never at import; then, once per (op, kernel precision,
device), ``teacher.ops.selftest`` compares them with the reference on that GPU (forward, first- and
second-order gradients) before they are used.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

ENV_VAR = "MOBILESTYLEGAN_OPS"
IMPLS = ("auto", "cuda", "ref")

# op name -> (implementation last used, why). Informational only; see status().
_last_choice: dict[str, tuple[str, str]] = {}
_warned: set[str | tuple[str, str]] = set()


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
    return choose_cuda(op, want, x.dtype, x.device)


def choose_cuda(op: str, want: str, dtype: torch.dtype, device: torch.device) -> str:
    """``"cuda"`` if ``op``'s kernels build for ``device`` and pass their self-test for ``dtype``; otherwise
    ``"ref"`` with one warning (``want="auto"``) or an error (``want="cuda"``)."""
    from teacher.ops import cuda, selftest  # deferred: nothing CUDA-related happens at import

    try:
        cuda.build(op)
    except Exception as err:  # the build error is reported, never swallowed silently
        if want == "cuda":
            raise RuntimeError(f"{op}: building the CUDA kernel failed: {err}") from err
        if op not in _warned:
            _warned.add(op)
            warnings.warn(
                f"{op}: CUDA kernel unavailable, using the reference implementation ({err})",
                RuntimeWarning,
                stacklevel=2,
            )
        return _record(op, "ref", f"CUDA build failed: {err}")
    kdtype = selftest.kernel_dtype(dtype)
    verdict = selftest.known(op, kdtype, device)  # every call after the first ends here
    if verdict is None:
        verdict = selftest.verdict(op, kdtype, device, cache_file=cuda.selftest_file(op, device, kdtype))
    if not verdict.passed:
        msg = f"{op}: the CUDA kernel failed its self-test against the reference: {verdict.summary()}"
        if want == "cuda":
            raise RuntimeError(f"{msg}; use impl='ref' (or 'auto', which falls back)")
        if (op, kdtype) not in _warned:
            _warned.add((op, kdtype))
            warnings.warn(f"{msg}; using the reference implementation", RuntimeWarning, stacklevel=2)
        return _record(op, "ref", f"CUDA self-test failed ({kdtype})")
    return _record(op, "cuda", f"CUDA kernel built, self-test passed ({kdtype})")


def _record(op: str, impl: str, why: str) -> str:
    _last_choice[op] = (impl, why)
    return impl


def status() -> dict[str, dict[str, Any]]:
    """Which implementation each op would use / last used, and why, and the CUDA self-test verdicts.

    Returns ``{op: {"requested": ..., "active": ..., "reason": ..., "selftest": {"<dtype> <device>":
    summary}}}`` for ``upfirdn2d`` and ``bias_act`` (``selftest`` is empty until a kernel has been tested).
    """
    from teacher.ops import selftest

    want = requested_impl(None)
    out = {}
    tested = selftest.verdicts()
    for op in ("upfirdn2d", "bias_act"):
        if op in _last_choice:
            active, why = _last_choice[op]
        elif want == "ref":
            active, why = "ref", "reference requested"
        elif not torch.cuda.is_available():
            active, why = "ref", "no CUDA device (not called yet)"
        else:
            active, why = "undecided", "kernels build on the first CUDA call"
        out[op] = {
            "requested": want,
            "active": active,
            "reason": why,
            "selftest": {f"{d} {dev}": v.summary() for (o, d, dev), v in tested.items() if o == op},
        }
    return out
