"""The package layout: every module imports (lazy imports inside functions otherwise break only when called), and
the import layers written in pyproject.toml ([tool.importlinter]) hold."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("teacher", "mobilestylegan", "export")


def all_modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        names.append(pkg)
        root = REPO / pkg
        for info in pkgutil.walk_packages([str(root)], prefix=f"{pkg}."):
            if not info.name.endswith("__main__"):  # running it is its job (the benchmark worker)
                names.append(info.name)
    return sorted(names)


def test_the_walk_sees_every_source_file():
    files = {
        p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
        for pkg in PACKAGES
        for p in (REPO / pkg).rglob("*.py")
        if p.name != "__main__.py"
    }
    assert files == set(all_modules())


@pytest.mark.parametrize("name", all_modules())
def test_every_module_imports(name):
    importlib.import_module(name)


def test_import_layers_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
