"""numpy files written atomically (a temporary file beside the target, renamed onto it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from teacher.fs import atomic_write


def save_npy(path: str | Path, arr: np.ndarray) -> Path:
    """``np.save`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.save would append .npy to the temporary name
            np.save(fh, arr)

    return atomic_write(Path(path), write)


def save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` of ``arrays`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to the temporary name
            np.savez(fh, **arrays)

    return atomic_write(Path(path), write)
