"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder: $INTERLEAF_SHARED, else <repo>/../shared/data.

    Absent: the test is skipped, unless INTERLEAF_REQUIRE_SHARED=1, which makes it fail.
    """
    root = Path(os.environ.get("INTERLEAF_SHARED") or REPO.parent / "shared" / "data")
    if not root.is_dir():
        msg = f"../shared/data not found: {root} (set INTERLEAF_SHARED)"
        if os.environ.get("INTERLEAF_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return root
