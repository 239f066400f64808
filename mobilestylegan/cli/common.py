"""What several commands check the same way."""

from __future__ import annotations

from pathlib import Path


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


def raise_mmap_threshold(argv) -> None:
    """Run this command again with glibc's mmap threshold raised, when it was started as a command (``argv`` None)
    on glibc without the setting. PyTorch's large CPU feature maps otherwise come from fresh mmap pages on every
    forward and backward pass, which costs more than the arithmetic at 1024 px. ``MOBILESTYLEGAN_ALLOCATOR=default``
    opts out."""
    import os
    import platform
    import sys

    from export.bench.common import MMAP_TUNABLE

    if argv is not None or sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "mmap_threshold" in tunables or os.environ.get("MOBILESTYLEGAN_ALLOCATOR") == "default":
        return
    env = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{MMAP_TUNABLE}" if tunables else MMAP_TUNABLE)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
