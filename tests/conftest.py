"""Shared fixtures: where the real datasets are (FUSION_DATASETS), and whether they must be there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def datasets_root() -> Path:
    return Path(os.environ.get("FUSION_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture
def datasets() -> Path:
    """The shared real-data folder; skips (or fails under FUSION_REQUIRE_DATASETS=1) when absent."""
    root = datasets_root()
    if not (root / "MANIFEST.md").is_file():
        reason = f"real datasets not found at {root}; set FUSION_DATASETS"
        if os.environ.get("FUSION_REQUIRE_DATASETS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return root
