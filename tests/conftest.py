"""Shared test fixtures. The reference StyleGAN2 fixture lives in ../shared/fixtures (CI has it);
a bundled copy of the checkpoint ships with the package as the main job's default teacher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def fixture_dir() -> Path:
    env = os.environ.get("MOBILESTYLEGAN_FIXTURES")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "fixtures", REPO / "shared" / "fixtures"]:
        if (cand / "rosinality_tiny64_expected.pt").exists():
            return cand
    raise FileNotFoundError("reference fixtures not found: expected ../shared/fixtures next to the repository "
                            "or $MOBILESTYLEGAN_FIXTURES")


@pytest.fixture(scope="session")
def rosinality_fixture() -> tuple[Path, dict]:
    d = fixture_dir()
    return d / "rosinality_tiny64.pt", torch.load(d / "rosinality_tiny64_expected.pt", weights_only=True)


@pytest.fixture(autouse=True)
def _deterministic_threads():
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
    from mobilestylegan.inception import INCEPTION_ENV
    from mobilestylegan.metrics import LPIPS_ENV
    from mobilestylegan.vgg import VGG16_ENV

    monkeypatch.setenv("MOBILESTYLEGAN_CACHE", str(tmp_path / "cache"))
    for env in (INCEPTION_ENV, VGG16_ENV, LPIPS_ENV):
        monkeypatch.delenv(env, raising=False)


@pytest.fixture(scope="session")
def ir_files():
    """random-face's OpenVINO IR files. Skipped on a developer machine without the package; in CI (which
    installs it) a missing package fails instead, so the parity tests can never silently stop running."""
    from teacher.formats import openvino_ir
    from teacher.formats.common import CheckpointError

    try:
        return openvino_ir.random_face_files()
    except CheckpointError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(err))
