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


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`fusion detect` of the committed sample log (tracked, with points and images), made once per
    session (~6 s). Read it, never change it."""
    from fusion.cli import main

    out = tmp_path_factory.mktemp("sample_dataset") / "out"
    assert main(["detect", str(REPO / "data_samples" / "sim_drive.mcap"), "--out", str(out), "--quiet"]) == 0
    return out


def schemas_root() -> Path:
    """The shared schemas folder (`../shared/schemas`, beside the datasets)."""
    return datasets_root().parent / "schemas"


@pytest.fixture
def openlabel_schema() -> dict[str, object]:
    """The ASAM OpenLABEL 1.0.0 JSON schema from ../shared/schemas (skips, or fails under
    FUSION_REQUIRE_DATASETS=1, when it is absent)."""
    import json

    path = schemas_root() / "openlabel_json_schema-v1.0.0.json"
    if not path.is_file():
        reason = f"OpenLABEL schema not found at {path}; set FUSION_DATASETS to ../shared/datasets"
        if os.environ.get("FUSION_REQUIRE_DATASETS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    schema: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return schema
