"""Filesystem helpers for every layer of the toolkit: atomic writes, file digests and the cache folder.

Standard library only (no torch), so any module can use them without a heavy import.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "MOBILESTYLEGAN_CACHE"


class OutputPathError(OSError):
    """An output path that cannot be written (a directory, a missing or read-only folder); the message says which."""


def cache_root() -> Path:
    """``$MOBILESTYLEGAN_CACHE``, else ``~/.cache/mobilestylegan``: the root of every cache of the toolkit (compiled
    kernels, imported pretrained students, weight files, evaluation statistics), each in its own sub-folder."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mobilestylegan").expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def current_umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it onto ``path``.

    Readers never see a partial file and nothing is left behind when ``write`` fails. The file gets the mode a
    plain ``open`` would give it (``0o666`` less the umask). Raises :class:`OutputPathError` for a path that
    cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path} is a directory; give a file name inside it, such as {path / 'out.pt'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"output directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"output directory {parent} is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["CACHE_ENV", "OutputPathError", "atomic_write", "cache_root", "current_umask", "sha256_file"]


def replace_dir(stage: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Put the finished directory ``stage`` at ``final`` (on the same filesystem), replacing what is there.

    ``final`` is never a half-written directory: an existing non-empty one is first renamed aside, ``stage`` is
    renamed in, and only then is the old one deleted. The new directory gets the mode a plain ``mkdir`` would give
    it (``0o777`` less the umask).
    """
    import shutil

    stage, final = Path(stage), Path(final)
    old = None
    if final.is_dir():
        if any(final.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / "contents")
        else:
            final.rmdir()
    os.replace(stage, final)
    os.chmod(final, 0o777 & ~current_umask())
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final
