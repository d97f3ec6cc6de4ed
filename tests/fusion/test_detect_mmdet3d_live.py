"""fusion's pure-torch PointPillars / CenterPoint against live mmdetection3d, at the full-size configs.

Runs only where mmdet3d imports (its own virtualenv: `make test-mmdet3d` builds it); skipped with the reason
elsewhere. For each architecture it takes mmdet3d 1.4.0's own config file unchanged (official test thresholds;
nuScenes' test pipeline keeps one sweep), fills the weights with tests/fixtures/mmdet3d/make_fixtures.py's
seeded randomisation (no trained weights can be downloaded here), saves config and checkpoint, runs mmdet3d's
`init_model` + `inference_detector` on real KITTI and nuScenes sweeps, loads the same two files into fusion's
detector and asserts the same boxes, scores and labels within `Tolerance()`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.mmdet3d.cases import CLOUDS, Expected, Tolerance, detection_mismatches, load_cloud


def _mmdet3d_missing() -> str | None:
    if importlib.util.find_spec("mmdet3d") is None:
        return "mmdet3d is not installed here; run `make test-mmdet3d` (builds .venv-mmdet3d)"
    try:
        import mmdet3d.apis  # noqa: F401
        from mmcv.ops import Voxelization  # noqa: F401
    except Exception as err:  # an mmcv without compiled ops, or versions that do not fit
        return f"mmdet3d does not import ({type(err).__name__}: {err})"
    return None


_MISSING = _mmdet3d_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def _spec(name: str):  # type: ignore[no-untyped-def]
    from tests.fixtures.mmdet3d.make_fixtures import FULL_SIZE

    return next(s for s in FULL_SIZE if s.name == name)


@pytest.mark.parametrize("model_name", ["pointpillars_kitti_3class_full", "centerpoint_pillar02_nus_full"])
def test_fusion_detector_matches_live_mmdet3d_at_full_size(
    model_name: str, datasets: Path, tmp_path: Path
) -> None:
    import torch
    from mmdet3d.apis import init_model

    from fusion.detect.learned import LearnedConfig, PillarDetector
    from tests.fixtures.mmdet3d.make_fixtures import (
        _run,
        build_random_model,
        outputs_to_arrays,
        save_checkpoint,
        versions,
        voxel_counts,
    )

    torch.set_num_threads(2)
    spec = _spec(model_name)
    names = [n for names in spec.cases.values() for n in names]
    clouds = {n: load_cloud(CLOUDS[n], datasets) for n in names}
    cfg, model = build_random_model(spec, clouds)
    config_path, checkpoint = tmp_path / "config.py", tmp_path / "model.pth"
    cfg.dump(str(config_path))
    save_checkpoint(model, checkpoint, {"dataset_meta": {"classes": list(cfg.class_names)}, **versions()})

    live = init_model(str(config_path), str(checkpoint), device="cpu")
    detector = PillarDetector(LearnedConfig(checkpoint=checkpoint, model_config=config_path, device="cpu"))
    for case, cloud_names in spec.cases.items():
        batch = [clouds[n] for n in cloud_names]
        expected = [outputs_to_arrays(r) for r in _run(live, batch)]
        got = detector.predict_raw([c.copy() for c in batch])
        for name, exp, raw in zip(cloud_names, expected, got, strict=True):
            n_vox, n_pts = voxel_counts(live, clouds[name])
            want = Expected(exp["boxes"], exp["scores"], exp["labels"], n_vox, n_pts)
            assert len(want.scores) >= 10, f"{case}/{name}: too few mmdet3d boxes for a meaningful comparison"
            problems = detection_mismatches(want, raw.boxes, raw.scores, raw.labels, Tolerance())
            assert not problems, f"{model_name} {case}/{name}: " + "\n".join(problems[:10])
            assert np.array_equal(np.sort(raw.labels), np.sort(want.labels))
