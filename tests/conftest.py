"""Shared fixtures: small seeded data made by the package itself, and the optional real samples."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """``../shared/realdata`` beside the checkout; tests using it skip when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent (only present beside the development checkout)")
    return REALDATA
