"""What several commands check or parse the same way."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mobilestylegan.errors import UsageError


def output_file_problem(path: Path, suffixes: tuple[str, ...], force: bool) -> str | None:
    """Why ``path`` cannot be written as the command's output file (None: it can): a suffix not in ``suffixes``, a
    missing folder, or an existing file without ``--force``."""
    if path.suffix not in suffixes:
        return f"output {path} must end in {' or '.join(suffixes)}"
    if not path.resolve().parent.is_dir():
        return f"output directory {path.parent} does not exist; create it first"
    if path.exists() and not force:
        return f"{path} exists; pass --force to overwrite"
    return None


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7,10-11"`` -> [0, 1, 2, 3, 7, 10, 11] (the torch-free parser of ``export.runtime``); a malformed list
    is a :class:`UsageError`."""
    from export.runtime import parse_seeds as runtime_parse_seeds

    try:
        return runtime_parse_seeds(text)
    except ValueError as err:
        raise UsageError(str(err)) from None


def raise_mmap_threshold(argv: Sequence[str] | None) -> None:
    """Run this command again with glibc's mmap threshold raised (:mod:`mobilestylegan.allocator`), when it was
    started as a command (``argv`` None) on glibc without the setting. ``MOBILESTYLEGAN_ALLOCATOR=default`` opts
    out."""
    import os
    import platform
    import sys

    from mobilestylegan.allocator import TUNABLES_VAR, with_mmap_tunable

    if argv is not None or sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return
    if "mmap_threshold" in os.environ.get(TUNABLES_VAR, "") or os.environ.get("MOBILESTYLEGAN_ALLOCATOR") == "default":
        return
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], with_mmap_tunable())
