"""Shared fixtures. Real data lives in ../shared/data relative to the repo root."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; fails (with the reason) if the checkout has none beside it.

    A skip here would turn every real-data test green-by-absence wherever the data went missing,
    so a missing data folder is an error, not a skipped test.
    """
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA} (the tests read the real data sets from there; "
                    "see README.md and datasets/README.md)", pytrace=False)
    return SHARED_DATA
