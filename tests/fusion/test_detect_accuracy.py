"""fusion.detect: the geometric detector's accuracy targets on simulated sweeps of held-out seeds.

Seeds 13-15 were never looked at while the detector was tuned (seeds 7-12) or its scores fitted
(seeds 1-6); seed 0 is the committed sample. Every 12th sweep of the first 10 s of each drive is
simulated (no bag: `simulate_sweep`, then moved into the lidar frame at the sweep's stamp with
the scene's exact poses, as fusion.sync's deskew would) and evaluated as `bench/detect_eval.py`
does: BEV IoU, boxes within 50 m, every ground-truth box with at least one LiDAR point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from fusion.boxes import BOX_FIELDS
from fusion.decode.types import PointCloud
from fusion.detect import GeometricDetector
from fusion.evaluation import EvalConfig, evaluate
from fusion.simulate.groundtruth import frame_truth
from fusion.simulate.lidar import simulate_sweep
from fusion.simulate.rig import default_rig
from fusion.simulate.scene import build_scene

SEEDS = (13, 14, 15)
SWEEPS = range(0, 100, 12)  # every 12th sweep of a 10 s drive: 9 per seed
CATEGORIES = ("car", "truck", "bus", "pedestrian", "cyclist", "motorcycle")


def _frames(
    lidar: str, columns: int, seeds: Sequence[int] = SEEDS, sweeps: Sequence[int] = SWEEPS
) -> list[tuple[PointCloud, pd.DataFrame]]:
    """(deskewed cloud, ground truth) of the sweeps of every seed."""
    out = []
    for seed in seeds:
        scene = build_scene(seed)
        rig = default_rig(columns=columns, lidar=lidar)
        base_from_lidar = rig.lidar.base_from_lidar()
        for k in sweeps:
            stamp = scene.start_ns + 50_000_000 + k * rig.lidar.period_ns
            sweep = simulate_sweep(scene, rig.lidar, stamp, index=k, noise_seed=seed)
            times, column = np.unique(sweep.time_offset_ns, return_inverse=True)
            world_from_lidar = (
                scene.world_from_base(np.concatenate([[stamp], stamp + times])) @ base_from_lidar
            )
            ref_from_t = np.linalg.inv(world_from_lidar[0]) @ world_from_lidar[1:]  # (T, 4, 4)
            rot = ref_from_t[column, :3, :3]
            xyz = np.einsum("nij,nj->ni", rot, sweep.xyz.astype(np.float64)) + ref_from_t[column, :3, 3]
            cloud = PointCloud(xyz.astype(np.float32), None, None, sweep.ring, rig.lidar.frame_id, stamp)
            truth = frame_truth(scene, rig, sweep)
            gt = pd.DataFrame(truth.boxes, columns=list(BOX_FIELDS))
            gt.insert(0, "category", list(truth.category))
            out.append((cloud, gt.assign(sequence_id=f"s{seed}", frame_index=k)))
    return out


def _ap(frames: Sequence[tuple[PointCloud, pd.DataFrame]]) -> dict[str, float | None]:
    """Loose BEV AP per category within 50 m of a fresh detector over the frames."""
    detector = GeometricDetector()
    preds = []
    for cloud, gt in frames:
        boxes = detector.detect(cloud)
        p = pd.DataFrame(boxes.boxes, columns=list(BOX_FIELDS))
        p["category"] = boxes.category.astype(str)
        p["score"] = boxes.score.astype(np.float64)
        preds.append(p.assign(sequence_id=gt["sequence_id"].iloc[0], frame_index=gt["frame_index"].iloc[0]))
    config = EvalConfig(
        categories=CATEGORIES, max_range_m=50.0, operating_score=0.0, operating_iou_kind="bev"
    )
    result = evaluate(pd.concat(preds, ignore_index=True), pd.concat([g for _, g in frames]), config)
    return {name: result.category(name).ap_bev[1] for name in CATEGORIES}


@pytest.fixture(scope="module")
def hdl64e_frames() -> list[tuple[PointCloud, pd.DataFrame]]:
    return _frames("hdl64e", 2048)


def test_64_beam_car_and_pedestrian_ap_meet_the_targets_on_held_out_seeds(
    hdl64e_frames: list[tuple[PointCloud, pd.DataFrame]],
) -> None:
    ap = _ap(hdl64e_frames)
    print(ap)
    car, pedestrian = ap["car"], ap["pedestrian"]
    assert car is not None and car >= 0.85
    assert pedestrian is not None and pedestrian >= 0.6


def test_the_eval_numbers_are_identical_run_to_run(
    hdl64e_frames: list[tuple[PointCloud, pd.DataFrame]],
) -> None:
    again = _frames("hdl64e", 2048, SEEDS[:1], SWEEPS[:3])  # simulated again: the same sweeps
    for (cloud, gt), (cloud2, gt2) in zip(hdl64e_frames[:3], again, strict=True):
        np.testing.assert_array_equal(cloud.xyz, cloud2.xyz)
        pd.testing.assert_frame_equal(gt, gt2)
    assert _ap(hdl64e_frames) == _ap(hdl64e_frames)


def test_32_beam_ap_stays_above_its_measured_level_on_held_out_seeds() -> None:
    """The simulator's default 32-beam LiDAR at 512 columns (0.7 degree steps) is below the
    targets (see the README); this holds the level reached, a little under what was measured."""
    ap = _ap(_frames("vlp32c", 512))
    print(ap)
    car, pedestrian = ap["car"], ap["pedestrian"]
    assert car is not None and car >= 0.7
    assert pedestrian is not None and pedestrian >= 0.45
