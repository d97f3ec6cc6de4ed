"""The committed mmdet3d equivalence fixture (tests/fixtures/mmdet3d/) is whole and says what it claims.

No mmdet3d here: these check the files that fusion.detect's pure-torch detectors are compared against (the
comparison against live mmdet3d is test_detect_mmdet3d_live.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures.mmdet3d.cases import FIXTURE_DIR, load_cloud, load_expected, load_manifest

MAX_FIXTURE_BYTES = 5 * 1024 * 1024


def test_fixture_fits_in_five_megabytes_and_lists_only_existing_files() -> None:
    manifest = load_manifest()
    files = [p for p in FIXTURE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    total = sum(p.stat().st_size for p in files)
    assert total <= MAX_FIXTURE_BYTES
    for model in manifest["models"]:
        for rel in model["files"].values():
            assert (FIXTURE_DIR / rel).is_file(), rel
        for case in model["cases"]:
            assert (FIXTURE_DIR / case["expected"]).is_file(), case["expected"]
    assert manifest["versions"]["mmdet3d"] == "1.4.0"


def test_fixture_clouds_are_the_recorded_real_files(datasets: Path) -> None:
    manifest = load_manifest()
    for entry in manifest["clouds"]:
        points = load_cloud(entry, datasets)  # checks the SHA-256
        assert points.shape == (entry["num_points"], len(entry["use_dim"]))
        assert points.dtype == np.float32
        for dim in entry["zero_dims"]:
            assert not points[:, dim].any()


def test_fixture_load_cloud_rejects_a_changed_file(tmp_path: Path) -> None:
    entry = dict(load_manifest()["clouds"][0])
    (tmp_path / entry["path"]).parent.mkdir(parents=True)
    np.zeros((10, entry["load_dim"]), np.float32).tofile(tmp_path / entry["path"])
    with pytest.raises(ValueError, match="SHA-256 differs"):
        load_cloud(entry, tmp_path)


@pytest.mark.parametrize("model_index", [0, 1])
def test_fixture_outputs_are_meaningful_mmdet3d_boxes(model_index: int) -> None:
    model = load_manifest()["models"][model_index]
    config = json.loads((FIXTURE_DIR / model["files"]["config_json"]).read_text())
    n_classes = len(config["class_names"])
    for case in model["cases"]:
        expected = load_expected(FIXTURE_DIR / case["expected"], case["clouds"])
        for name, got in zip(case["clouds"], expected, strict=True):
            assert 20 <= len(got.scores) == case["counts"][name]["boxes"]
            assert got.boxes.shape[1] in (7, 9)
            assert (got.boxes[:, 3:6] > 0).all()
            assert got.labels.min() >= 0
            assert got.labels.max() < n_classes
            assert ((got.scores > 0) & (got.scores <= 1)).all()
            assert 0 < got.num_voxels <= got.num_points_in_voxels


@pytest.mark.parametrize("model_index", [0, 1])
def test_fixture_checkpoint_is_a_reduced_width_mmdet3d_state_dict(model_index: int) -> None:
    model = load_manifest()["models"][model_index]
    ckpt = torch.load(FIXTURE_DIR / model["files"]["checkpoint"], map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    prefix = "pts_" if any(k.startswith("pts_") for k in state) else ""
    # narrowed widths of the fixture (see make_fixtures.REDUCED): encoder 16, backbone 16/32/48, neck 24/32/40
    assert state[f"{prefix}voxel_encoder.pfn_layers.0.linear.weight"].shape[0] == 16
    assert state[f"{prefix}backbone.blocks.2.0.weight"].shape[:2] == (48, 32)
    assert ckpt["meta"]["dataset_meta"]["classes"]
    bn_vars = [v for k, v in state.items() if k.endswith("running_var")]
    assert bn_vars
    assert all(not torch.allclose(v, torch.ones_like(v)) for v in bn_vars)  # calibrated, not the identity
