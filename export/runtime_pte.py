"""The runtime's ExecuTorch backend: one ``.pte`` program's ``forward`` run from numpy.

ExecuTorch's Python runtime works on torch tensors, so this module (unlike the rest of :mod:`export.runtime`) needs
torch; the runtime imports it only for ``.pte`` files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def quiet_torchao() -> None:
    """torchao (imported by ExecuTorch) warns at import about its CUDA-only kernels, which a CPU program never uses."""
    logging.getLogger("torchao").setLevel(logging.ERROR)


class PteProgram:
    """One ``.pte`` program's ``forward``: ``run(list of float32 arrays) -> first output`` (numpy)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        quiet_torchao()
        from executorch.runtime import Runtime

        if threads:
            torch.set_num_threads(int(threads))
            # XNNPACK's thread pool is ExecuTorch's own (it starts with one thread per core); set before any run.
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        self._method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        return self._method.execute(tensors)[0].numpy().copy()
