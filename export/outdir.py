"""The export directory: checked before the work, built in full beside it, renamed onto it at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from export.errors import ExportError
from teacher.fs import replace_dir


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
        _remove(missing)
        raise ExportError(f"output directory {out} is not writable")
    return missing


@contextlib.contextmanager
def staged(out: Path, force: bool) -> Iterator[Path]:
    """A temporary directory beside ``out`` to build the export in; renamed onto ``out`` when the block ends without
    an error (an existing ``out`` is replaced only with ``force``). On any error, or Ctrl-C, the temporary directory
    and the parents this call created are removed: nothing is left behind."""
    created = prepare_out(out, force)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove(created)
        raise


def _remove(created: list[Path]) -> None:
    for d in reversed(created):  # parents this call created, deepest first
        with contextlib.suppress(OSError):
            d.rmdir()
