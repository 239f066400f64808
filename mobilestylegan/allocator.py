"""glibc's malloc setting that keeps PyTorch's large CPU feature maps off fresh mmap pages.

Above glibc's mmap threshold every large allocation is a fresh mapping that the kernel zero-fills page by page, and
PyTorch allocates its large feature maps again on every forward and backward pass. Raising the threshold lets
malloc reuse freed heap memory instead. The setting only takes effect at process start, through the
``GLIBC_TUNABLES`` environment variable, so a process that wants it runs itself (or a worker) again with the
environment :func:`with_mmap_tunable` returns.

Standard library only: any layer of the toolkit may import this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

MMAP_TUNABLE = "glibc.malloc.mmap_threshold=2147483647"
TUNABLES_VAR = "GLIBC_TUNABLES"


def with_mmap_tunable(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default: this process's environment) with :data:`MMAP_TUNABLE` added to
    ``GLIBC_TUNABLES``, after any tunables already set there."""
    env = dict(os.environ if environ is None else environ)
    tunables = env.get(TUNABLES_VAR, "")
    env[TUNABLES_VAR] = f"{tunables}:{MMAP_TUNABLE}" if tunables else MMAP_TUNABLE
    return env


__all__ = ["MMAP_TUNABLE", "TUNABLES_VAR", "with_mmap_tunable"]
