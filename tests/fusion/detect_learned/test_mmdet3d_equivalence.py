"""Our pure-torch PointPillars / CenterPoint reproduce mmdetection3d's own boxes, scores and labels.

The fixture (tests/fixtures/mmdet3d/, made by mmdet3d 1.4.0 in `make mmdet3d-env`: reduced-width models
with seeded random weights, run by mmdet3d on real KITTI and nuScenes sweeps) holds mmdet3d's
checkpoint, config and outputs; the sweeps are read from the real datasets. Tolerance: the fixture's
`Tolerance` (centres and sizes 2e-3 m, yaw 2e-3 rad, velocity 2e-3 m/s, scores 1e-4; same count and
labels, order free). No mmdet3d is needed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fusion.detect.learned import LearnedConfig, PillarDetector
from fusion.detect.learned.config import merge_config
from fusion.detect.learned.ops import hard_voxelize

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "fixtures" / "mmdet3d"


def _cases() -> Any:
    if not (FIXTURE / "manifest.json").is_file():
        pytest.skip(f"no mmdet3d fixture at {FIXTURE} (made by tests/fixtures/mmdet3d/make_fixtures.py)")
    from tests.fixtures.mmdet3d import cases

    return cases


def _model_cases() -> list[tuple[int, int]]:
    if not (FIXTURE / "manifest.json").is_file():
        return [(-1, -1)]
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    return [(m, c) for m, model in enumerate(manifest["models"]) for c in range(len(model["cases"]))]


@pytest.mark.parametrize(("model_index", "case_index"), _model_cases())
def test_pure_torch_model_reproduces_mmdet3d_on_real_sweeps(
    model_index: int, case_index: int, datasets: Path, tmp_path: Path
) -> None:
    cases = _cases()
    manifest = cases.load_manifest()
    model = manifest["models"][model_index]
    case = model["cases"][case_index]
    variables = json.loads((FIXTURE / model["files"]["config_json"]).read_text())
    if case.get("test_cfg"):  # an NMS variant of the same weights
        test_cfg = variables["model"]["test_cfg"]
        key = "pts" if "pts" in test_cfg else None
        delta = {"pts": case["test_cfg"]} if key else case["test_cfg"]
        variables["model"]["test_cfg"] = merge_config(test_cfg, delta)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(variables))
    detector = PillarDetector(
        LearnedConfig(
            checkpoint=FIXTURE / model["files"]["checkpoint"], model_config=config_path, device="cpu"
        )
    )
    specs = {c["name"]: c for c in manifest["clouds"]}
    clouds = [cases.load_cloud(specs[name], datasets) for name in case["clouds"]]
    expected = cases.load_expected(FIXTURE / case["expected"], case["clouds"])
    v = detector.model_config.voxel
    for cloud, exp in zip(clouds, expected, strict=True):
        _, _, counts = hard_voxelize(cloud, v.point_cloud_range, v.voxel_size, v.max_num_points, v.max_voxels)
        assert (len(counts), int(counts.sum())) == (exp.num_voxels, exp.num_points_in_voxels)
    got = detector.predict_raw(clouds)  # one batch, as mmdet3d ran the case
    for name, raw, exp in zip(case["clouds"], got, expected, strict=True):
        problems = cases.detection_mismatches(exp, raw.boxes, raw.scores, raw.labels, cases.Tolerance())
        assert not problems, f"{model['model']}/{case['name']}/{name}: " + "; ".join(problems[:5])
