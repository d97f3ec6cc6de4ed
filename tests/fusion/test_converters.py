"""KITTI object / tracking and Argoverse 2 labels as labels tables; conventions checked on real data."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyarrow import feather

from exporters import LABELS
from fusion.evaluation import (
    KITTI_CATEGORIES,
    EvalConfig,
    EvaluationError,
    av2_annotations_labels,
    count_points_in_boxes,
    evaluate,
    kitti_object_labels,
    kitti_tracking_labels,
)

KITTI_OBJECT = Path("kitti_object_vis/data/object/training")
MMDET_KITTI = Path("mmdetection3d/demo/data/kitti")
MMDET_TESTS = Path("mmdetection3d/tests/data/kitti")
TRACKING_LABELS = Path("ab3dmot/scripts/KITTI/label")
TRACKING_CALIB = Path("ab3dmot/data/KITTI/mini/training/calib")
AV2_LOG = Path("av2_api_test_data/tests/unit/test_data/sensor/val/7fab2350-7eaf-3b7e-a39d-6937a4c1bede")

BOX = ["x", "y", "z", "length", "width", "height", "yaw"]

# An ideal KITTI rig: rect == cam0, velodyne x forward = rect z, y left = -rect x, z up = -rect y.
IDEAL_CALIB = (
    "P0: 700 0 600 0 0 700 180 0 0 0 1 0\n"
    "P2: 700 0 600 0 0 700 180 0 0 0 1 0\n"
    "R0_rect: 1 0 0 0 1 0 0 0 1\n"
    "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"
)


def boxes_of(table: pa.Table) -> np.ndarray:
    return np.stack([table.column(name).to_numpy() for name in BOX], axis=1)


def category_counts(table: pa.Table) -> dict[str, int]:
    names, counts = np.unique(table.column("category").to_numpy(zero_copy_only=False), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True)}


def velodyne(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32).reshape(-1, 4)


def _ideal(tmp_path: Path, label_text: str) -> pa.Table:
    (tmp_path / "calib.txt").write_text(IDEAL_CALIB)
    (tmp_path / "000042.txt").write_text(label_text)
    return kitti_object_labels(tmp_path / "000042.txt", tmp_path / "calib.txt")


# ---- conventions on synthetic data --------------------------------------------------------------


def test_kitti_box_on_an_ideal_rig_has_centre_up_and_yaw_minus_ry_minus_half_pi(tmp_path: Path) -> None:
    # bottom centre 1 m right, 1.5 m below, 10 m ahead of the camera; h 1.5, w 1.6, l 4; ry 0 and pi/2
    table = _ideal(
        tmp_path,
        "Car 0 0 0 0 0 10 10 1.5 1.6 4.0 1.0 1.5 10.0 0.0\n"
        "Van 0 0 0 0 0 10 10 1.5 1.6 4.0 1.0 1.5 10.0 1.5707963267948966\n",
    )
    assert table.schema.equals(LABELS)
    np.testing.assert_allclose(
        boxes_of(table),
        [[10.0, -1.0, -0.75, 4.0, 1.6, 1.5, -math.pi / 2], [10.0, -1.0, -0.75, 4.0, 1.6, 1.5, -math.pi]],
        atol=1e-12,
    )
    assert table.column("category").to_pylist() == ["car", "car"]
    assert table.column("sequence_id").to_pylist() == ["000042", "000042"]
    # ry = 0: the length runs along rect x, i.e. velodyne -y: a point 1.9 m to the side is inside,
    # a point 1.9 m ahead is not.
    inside = [[10.0, -2.9, -0.75], [10.0, 0.9, -0.75], [10.0, -1.0, -1.49]]
    outside = [[11.9, -1.0, -0.75], [10.0, -1.0, 0.01]]
    assert count_points_in_boxes(inside + outside, boxes_of(table)[:1]).tolist() == [3]


def test_kitti_dontcare_is_dropped_misc_kept_as_unknown_and_scores_read(tmp_path: Path) -> None:
    table = _ideal(
        tmp_path,
        "DontCare -1 -1 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10 0.2\n"
        "Misc 0 0 0 0 0 10 10 1 1 1 0 1 5 0 0.7\n"
        "Person_sitting 0 0 0 0 0 10 10 1 1 1 2 1 5 0 0.4\n",
    )
    assert table.column("category").to_pylist() == ["unknown", "pedestrian"]
    assert table.column("track_id").to_pylist() == [0, 1]
    assert table.column("score").to_numpy().tolist() == pytest.approx([0.7, 0.4])


def test_kitti_result_scores_outside_0_1_need_the_logistic_map(tmp_path: Path) -> None:
    (tmp_path / "calib.txt").write_text(IDEAL_CALIB)
    (tmp_path / "0003.txt").write_text(
        "0 7 Car 0 0 0 0 0 10 10 1.5 1.6 4 1 1.5 10 0 2.0\n1 7 Car 0 0 0 0 0 10 10 1.5 1.6 4 1 1.5 10 0\n"
    )
    with pytest.raises(
        EvaluationError, match=r"0003.txt:1: score 2 is outside 0..1; .*fusion import .*--logistic-scores"
    ):
        kitti_tracking_labels(tmp_path / "0003.txt", tmp_path / "calib.txt")
    table = kitti_tracking_labels(tmp_path / "0003.txt", tmp_path / "calib.txt", logistic_scores=True)
    expected = [1.0 / (1.0 + math.exp(-2.0)), 1.0]  # a line without a score keeps 1
    assert table.column("score").to_pylist() == pytest.approx(expected, rel=1e-6)
    assert (table.column("track_id")[0].as_py(), table.column("sequence_id")[0].as_py()) == (7, "0003")


def test_kitti_malformed_lines_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "calib.txt").write_text(IDEAL_CALIB)
    bad = tmp_path / "bad.txt"
    bad.write_text("Car 0 0 0 0 0 10 10 1.5 1.6 4.0 1.0 1.5 10.0 0.0\n\nCar 0 0 0\n")
    with pytest.raises(EvaluationError, match=r"bad.txt:3: 4 columns, expected 15"):
        kitti_object_labels(bad, tmp_path / "calib.txt")
    bad.write_text("Car 0 0 0 0 0 10 10 1.5 x 4.0 1.0 1.5 10.0 0.0\n")
    with pytest.raises(EvaluationError, match=r"bad.txt:1: could not convert"):
        kitti_object_labels(bad, tmp_path / "calib.txt")
    bad.write_text("Horse 0 0 0 0 0 10 10 1.5 1.6 4.0 1.0 1.5 10.0 0.0\n")
    with pytest.raises(EvaluationError, match=r"bad.txt:1: type 'Horse' has no category; pass categories="):
        kitti_object_labels(bad, tmp_path / "calib.txt")
    with pytest.raises(EvaluationError, match="no such file"):
        kitti_object_labels(tmp_path / "missing.txt", tmp_path / "calib.txt")


def test_kitti_empty_label_file_gives_an_empty_table(tmp_path: Path) -> None:
    table = _ideal(tmp_path, "")
    assert table.num_rows == 0 and table.schema.equals(LABELS)


def test_count_points_in_a_turned_box() -> None:
    box = [[0.0, 0.0, 0.0, 4.0, 1.0, 2.0, math.pi / 4]]
    along = [[1.3, 1.3, 0.0], [-1.3, -1.3, 0.9]]  # 1.84 m along the heading: inside
    across = [[1.3, -1.3, 0.0], [0.0, 0.0, 1.1]]  # across the heading, and above the top
    assert count_points_in_boxes(along + across, box).tolist() == [2]


# ---- real data ----------------------------------------------------------------------------------


def test_kitti_object_000000_matches_mmdetection3d_box_and_point_count(datasets: Path) -> None:
    root = datasets / KITTI_OBJECT
    points = velodyne(root / "velodyne" / "000000.bin")
    table = kitti_object_labels(root / "label_2" / "000000.txt", root / "calib" / "000000.txt", points=points)
    assert table.num_rows == 1
    assert table.column("category").to_pylist() == ["pedestrian"]
    with (datasets / MMDET_TESTS / "kitti_dbinfos_train.pkl").open("rb") as f:
        reference = pickle.load(f)["Pedestrian"][0]
    assert reference["image_idx"] == 0
    # mmdetection3d's LiDAR box: x y z(bottom) l w h yaw, float32 (its x is stored rounded to 8.73)
    expected = np.asarray(reference["box3d_lidar"], dtype=np.float64)
    got = boxes_of(table)[0]
    got_bottom = np.r_[got[:2], got[2] - got[5] / 2, got[3:]]
    np.testing.assert_allclose(got_bottom[1:], expected[1:], atol=1e-6)
    assert got_bottom[0] == pytest.approx(expected[0], abs=2e-3)
    assert table.column("num_points").to_pylist() == [reference["num_points_in_gt"]] == [377]


def _mmdet_000008_as_kitti_files(datasets: Path, tmp_path: Path) -> tuple[Path, Path, list[int]]:
    """000008's label_2 and calib.txt, written back from mmdetection3d's info pkl (no other copy)."""
    with (datasets / MMDET_KITTI / "000008.pkl").open("rb") as f:
        info: dict[str, Any] = pickle.load(f)["data_list"][0]
    lines, counts = [], []
    for obj in info["instances"]:
        x, y, z, length, height, width, ry = obj["bbox_3d"]  # camera box: x y z l h w ry
        kind = {2: "Car", -1: "DontCare"}[obj["bbox_label_3d"]]
        x1, y1, x2, y2 = obj["bbox"]
        lines.append(
            f"{kind} {obj['truncated']} {obj['occluded']} {obj['alpha']} {x1} {y1} {x2} {y2} "
            f"{height} {width} {length} {x} {y} {z} {ry}"
        )
        if kind != "DontCare":
            counts.append(obj["num_lidar_pts"])
    images = info["images"]
    calib = [f"P{i}: " + " ".join(map(str, np.ravel(images[f"CAM{i}"]["cam2img"][:3]))) for i in range(4)]
    calib.append("R0_rect: " + " ".join(map(str, np.asarray(images["R0_rect"])[:3, :3].ravel())))
    calib.append(
        "Tr_velo_to_cam: "
        + " ".join(map(str, np.asarray(info["lidar_points"]["Tr_velo_to_cam"])[:3].ravel()))
    )
    (tmp_path / "000008.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "calib.txt").write_text("\n".join(calib) + "\n")
    return tmp_path / "000008.txt", tmp_path / "calib.txt", counts


def test_kitti_object_000008_boxes_hold_exactly_the_points_mmdetection3d_counted(
    datasets: Path, tmp_path: Path
) -> None:
    label, calib, counts = _mmdet_000008_as_kitti_files(datasets, tmp_path)
    points = velodyne(datasets / MMDET_KITTI / "000008.bin")
    table = kitti_object_labels(label, calib, points=points)
    assert table.num_rows == 6  # 4 DontCare dropped
    assert table.column("category").to_pylist() == ["car"] * 6
    assert table.column("num_points").to_pylist() == counts == [1325, 1900, 881, 659, 55, 162]


def test_kitti_tracking_0000_rows_categories_frames_and_tracks(datasets: Path) -> None:
    table = kitti_tracking_labels(
        datasets / TRACKING_LABELS / "0000.txt", datasets / TRACKING_CALIB / "0000.txt"
    )
    assert table.num_rows == 711  # 1089 lines, 378 DontCare
    counts = category_counts(table)
    assert counts == {"car": 243 + 292, "cyclist": 154, "pedestrian": 22}  # Van -> car
    frames = table.column("frame_index").to_numpy()
    assert (frames.min(), frames.max()) == (0, 153)
    assert np.array_equal(table.column("timestamp_ns").to_numpy(), frames.astype(np.int64) * 100_000_000)
    assert len(np.unique(table.column("track_id").to_numpy())) == 15
    first = table.slice(0, 1).to_pylist()[0]  # frame 0, track 0: the Van 13.4 m ahead, 4.55 m left
    assert (first["track_id"], first["category"]) == (0, "car")
    assert first["x"] == pytest.approx(13.41 + 0.27, abs=0.05)
    assert first["y"] == pytest.approx(4.55, abs=0.05)
    assert first["yaw"] == pytest.approx(2.115488 - math.pi / 2, abs=0.01)


def test_kitti_tracking_tram_and_misc_map_to_bus_and_unknown(datasets: Path) -> None:
    table = kitti_tracking_labels(
        datasets / TRACKING_LABELS / "0004.txt", datasets / TRACKING_CALIB / "0004.txt"
    )
    assert table.num_rows == 1113
    assert pc.sum(pc.equal(table.column("category"), "bus")).as_py() == 51
    assert set(KITTI_CATEGORIES.values()) - {None} >= {"bus", "unknown"}


def test_kitti_tracker_output_matches_its_ground_truth(datasets: Path) -> None:
    # A Car-only tracker on training sequence 0000: with Van left out of the GT (as KITTI's own car
    # benchmark does), nearly every GT car is found at 3D IoU 0.5.
    calib = datasets / TRACKING_CALIB / "0000.txt"
    no_van = {**KITTI_CATEGORIES, "Van": None}
    gt = kitti_tracking_labels(datasets / TRACKING_LABELS / "0000.txt", calib, categories=no_van)
    pred = kitti_tracking_labels(
        datasets / "hailanyi_3d_mot/evaluation/results/sha_key/data/0000.txt", calib, logistic_scores=True
    )
    car = evaluate(pred, gt, EvalConfig(categories=("car",))).category("car")
    assert (car.num_gt, car.num_pred) == (243, 601)
    assert car.recall is not None and car.recall > 0.95
    assert car.mean_iou is not None and car.mean_iou > 0.8


def test_av2_annotations_rows_frames_tracks_and_categories(datasets: Path) -> None:
    table = av2_annotations_labels(datasets / AV2_LOG / "annotations.feather")
    assert table.num_rows == 11364
    assert table.schema.equals(LABELS)
    assert table.column("sequence_id")[0].as_py() == "7fab2350-7eaf-3b7e-a39d-6937a4c1bede"
    assert table.column("frame_index").to_numpy().max() == 155  # 156 timestamps
    assert len(np.unique(table.column("track_id").to_numpy())) == 114
    counts = category_counts(table)
    assert counts == {
        "car": 6766,
        "pedestrian": 2073,
        "cyclist": 749,
        "motorcycle": 394,
        "truck": 156 + 155,  # BOX_TRUCK, TRUCK_CAB
        "unknown": 676 + 155 + 122 + 118,  # BOLLARD, VEHICULAR_TRAILER, STROLLER, CONSTRUCTION_CONE
    }
    raw = feather.read_table(datasets / AV2_LOG / "annotations.feather")
    first_uuid = raw.sort_by([("timestamp_ns", "ascending")]).column("track_uuid")[0].as_py()
    first_rows = pc.equal(raw.column("track_uuid"), first_uuid)
    assert pc.sum(pc.equal(table.column("track_id"), 0)).as_py() == pc.sum(first_rows).as_py()


def test_av2_boxes_hold_exactly_the_points_av2_counted(datasets: Path) -> None:
    stamp = 315966265259836000
    table = av2_annotations_labels(datasets / AV2_LOG / "annotations.feather")
    frame = table.filter(pc.equal(table.column("timestamp_ns"), stamp))
    sweep = feather.read_table(datasets / AV2_LOG / "sensors" / "lidar" / f"{stamp}.feather")
    points = np.stack([sweep.column(k).to_numpy().astype(np.float64) for k in "xyz"], axis=1)
    assert frame.num_rows == 81
    counted = count_points_in_boxes(points, boxes_of(frame))
    assert counted.tolist() == frame.column("num_points").to_pylist()
    assert counted.sum() == 9399


def test_av2_rejects_a_feather_that_is_not_annotations(datasets: Path) -> None:
    with pytest.raises(EvaluationError, match=r"missing column.*not an AV2 annotations\.feather"):
        av2_annotations_labels(datasets / AV2_LOG / "city_SE3_egovehicle.feather")


def test_kitti_velodyne_to_rect_inverts_kitti_rect_to_velodyne() -> None:
    from calib.transform import Transform
    from fusion.evaluation import kitti_rect_to_velodyne, kitti_velodyne_to_rect

    rng = np.random.default_rng(3)
    q = rng.normal(size=4)  # a camera turned about every axis
    rect_from_velodyne = Transform.from_quaternion(rng.normal(size=3), q, parent="rect", child="velodyne")
    boxes = np.column_stack(
        [rng.uniform(-30, 30, (50, 3)), rng.uniform(0.5, 6, (50, 3)), rng.uniform(-math.pi, math.pi, 50)]
    )
    kitti = kitti_velodyne_to_rect(boxes, rect_from_velodyne.matrix)
    assert np.allclose(kitti[:, :3], boxes[:, [5, 4, 3]])  # h w l
    back = kitti_rect_to_velodyne(kitti, rect_from_velodyne.inverse().matrix)
    assert np.allclose(back[:, :6], boxes[:, :6], atol=1e-9)
    assert np.allclose(np.angle(np.exp(1j * (back[:, 6] - boxes[:, 6]))), 0.0, atol=1e-12)
