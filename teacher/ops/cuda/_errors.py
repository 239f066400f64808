"""Errors raised by the CUDA kernels' build and launch machinery."""

from __future__ import annotations


class CudaBuildError(RuntimeError):
    """The kernels could not be compiled or loaded; the message names the problem and the fix."""


class CudaDriverError(RuntimeError):
    """A CUDA driver API call failed (after the kernels were built)."""
