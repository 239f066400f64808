"""The one switch between skipping and failing a test whose optional toolchain is missing."""

from __future__ import annotations

import os

import pytest

REQUIRE_ENV = "MOBILESTYLEGAN_REQUIRE_TOOLCHAINS"


def require_toolchain(present: bool, what: str, install: str) -> None:
    """Skip a test whose optional toolchain is missing, or fail it when ``$MOBILESTYLEGAN_REQUIRE_TOOLCHAINS`` is set
    (CI installs every toolchain and sets it, so no such test is silently skipped there)."""
    if present:
        return
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{what} is missing but ${REQUIRE_ENV} is set: {install}")
    pytest.skip(f"{what} is not installed ({install})")
