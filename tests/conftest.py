"""Shared test fixtures. The reference StyleGAN2 fixture ships with the repository: the checkpoint in
the package (``teacher/assets``, also the embedded tiny teacher), its expected outputs in
``tests/fixtures``. ``$MOBILESTYLEGAN_FIXTURES`` may name a folder of further fixture files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from tests.helpers.paths import REPO
from tests.helpers.toolchains import require_toolchain

FIXTURES_ENV = "MOBILESTYLEGAN_FIXTURES"
BUNDLED = {
    "rosinality_tiny64.pt": REPO / "teacher" / "assets" / "rosinality_tiny64.pt",
    "rosinality_tiny64_expected.pt": REPO / "tests" / "fixtures" / "rosinality_tiny64_expected.pt",
}


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fixture_file(name: str) -> Path:
    """A fixture file: the repository's copy, else one from ``$MOBILESTYLEGAN_FIXTURES``. A file in that folder
    with a bundled name must be identical to the bundled one (a stale copy on either side fails loudly)."""
    env = os.environ.get(FIXTURES_ENV)
    extra = Path(env) / name if env else None
    bundled = BUNDLED.get(name)
    if bundled is not None:
        if extra is not None and extra.is_file() and _sha256(extra) != _sha256(bundled):
            raise AssertionError(f"{extra} differs from the repository's {bundled}: update one of them")
        return bundled
    if extra is not None and extra.is_file():
        return extra
    raise FileNotFoundError(f"fixture {name} is neither in the repository nor in ${FIXTURES_ENV} ({env})")


@pytest.fixture(scope="session")
def rosinality_fixture() -> tuple[Path, dict]:
    return fixture_file("rosinality_tiny64.pt"), torch.load(
        fixture_file("rosinality_tiny64_expected.pt"), weights_only=True
    )


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Every test starts with torch's global RNG seeded with 0: what a test draws from it without a generator of
    its own does not depend on the tests that ran before."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is as fast, and on a shared 2-core machine two threads spin-waiting
    on each other made some files ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_weight_files(tmp_path, monkeypatch):
    """Caches and default weight locations (Inception, VGG16, LPIPS) in an empty per-test folder: random
    weights in the tests, whatever files the machine has."""
    from mobilestylegan.metrics.measures import LPIPS_ENV
    from mobilestylegan.nets.inception import INCEPTION_ENV
    from mobilestylegan.nets.vgg import VGG16_ENV

    monkeypatch.setenv("MOBILESTYLEGAN_CACHE", str(tmp_path / "cache"))
    for env in (INCEPTION_ENV, VGG16_ENV, LPIPS_ENV):
        monkeypatch.delenv(env, raising=False)


@pytest.fixture(scope="session")
def ir_files():
    """random-face's OpenVINO IR files. Skipped without the package, unless ``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is
    set (CI installs it and sets it): then a missing package fails, so the parity tests can never silently stop
    running (:func:`tests.helpers.toolchains.require_toolchain`)."""
    from teacher.formats import openvino_ir
    from teacher.formats.common import CheckpointError

    try:
        return openvino_ir.random_face_files()
    except CheckpointError as err:
        require_toolchain(False, "random-face (its OpenVINO IR files)", str(err))
