"""The export directory: checked before the work, created in full beside it, renamed onto it at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from export.options import ExportError
from teacher.fs import current_umask


def prepare_out(out: Path, force: bool) -> list[Path]:
    """Check the target and create its missing parents; returns the directories created (to undo)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"output directory {out} exists and is not empty; pass --force to replace it")
    missing = [p for p in [out.parent, *out.parent.parents] if not p.exists()][::-1]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"cannot create output directory {out.parent}: {err.strerror}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK) or (out.is_dir() and not os.access(out, os.W_OK)):
        for d in reversed(missing):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise ExportError(f"output directory {out} is not writable")
    return missing


def move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` onto ``out`` (an existing non-empty ``out`` is swapped out, then deleted)."""
    old = None
    if out.is_dir():
        if any(out.iterdir()):  # --force: swap, then delete the old contents
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "x")
        else:
            out.rmdir()
    os.replace(tmp, out)
    os.chmod(out, 0o777 & ~current_umask())
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
