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
