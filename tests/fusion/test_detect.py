"""fusion.detect: the geometric detector on simulated sweeps, synthetic geometry and real frames."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq
import pytest

from fusion.bags import open_bag
from fusion.boxes import CATEGORIES, Boxes
from fusion.decode.types import PointCloud
from fusion.detect import (
    DETECTORS,
    ClassifyConfig,
    ClusterConfig,
    DetectError,
    Detector,
    GeometricConfig,
    GeometricDetector,
    build_detector,
)
from fusion.detect.cluster import azimuth_step, cluster_points
from fusion.detect.fit import lshape_heading
from fusion.detect.ground import estimate_ground
from fusion.errors import FusionError
from fusion.simulate import simulate_log
from fusion.simulate.lidar import simulate_sweep
from fusion.simulate.rig import default_rig
from fusion.simulate.scene import build_scene
from fusion.sync import FusedFrame, prepare, synchronize

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"
GROUND_TRUTH = REPO / "data_samples" / "sim_drive.labels.parquet"
F32 = npt.NDArray[np.float32]


def cloud_of(xyz: npt.ArrayLike, *, frame_id: str = "lidar", stamp_ns: int = 7) -> PointCloud:
    return PointCloud(np.asarray(xyz, dtype=np.float32).reshape(-1, 3), None, None, None, frame_id, stamp_ns)


def sloped_ground(rng: np.random.Generator, n: int = 60_000, radius: float = 45.0) -> F32:
    """Points on a road that is level behind the sensor and climbs at 8 % ahead of it (no single
    plane fits both), with a 0.15 m kerb for y > 6 m; the sensor is 1.8 m above the road. Their
    density falls off as 1 / range, as a LiDAR's does, from the 2.5 m its lowest beam reaches."""
    r = rng.uniform(2.5, radius, n)
    a = rng.uniform(-np.pi, np.pi, n)
    x, y = r * np.cos(a), r * np.sin(a)
    return np.stack([x, y, road_z(x, y) + rng.normal(0.0, 0.01, n)], axis=1).astype(np.float32)


def road_z(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(-1.8 + 0.08 * np.maximum(x, 0.0) + np.where(y > 6.0, 0.15, 0.0), dtype=np.float64)


def car_outline(yaw: float, centre: tuple[float, float], rng: np.random.Generator) -> F32:
    """The two sides of a 4.5 x 1.8 m car a sensor at the origin sees: an L of noisy points."""
    length, width = 4.5, 1.8
    c, s = math.cos(yaw), math.sin(yaw)
    corners = np.array([[length, width], [length, -width], [-length, -width], [-length, width]]) / 2.0
    world = corners @ np.array([[c, s], [-s, c]]) + np.asarray(centre)
    nearest = int(np.argmin(np.hypot(world[:, 0], world[:, 1])))
    pts = []
    for other in ((nearest + 1) % 4, (nearest + 3) % 4):  # the two sides meeting at the nearest corner
        t = np.linspace(0.0, 1.0, 60)[:, None]
        pts.append(world[nearest] + t * (world[other] - world[nearest]))
    xy = np.concatenate(pts) + rng.normal(0.0, 0.02, (120, 2))
    return xy.astype(np.float32)


def car_points(yaw: float, centre: tuple[float, float], rng: np.random.Generator) -> F32:
    """A car's visible outline stacked from 0.3 m to 1.5 m above the sloped road."""
    xy = car_outline(yaw, centre, rng)
    layers = [
        np.column_stack([xy, road_z(xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)) + h])
        for h in np.arange(0.3, 1.51, 0.1)
    ]
    return np.concatenate(layers).astype(np.float32)


@pytest.fixture(scope="module")
def sample_frames() -> list[FusedFrame]:
    with open_bag(SAMPLE) as bag:
        ctx = prepare(bag)
        return [f for f in synchronize(bag, ctx) if f.index in (0, 10, 20)]


def test_detects_the_cars_of_the_sample_within_a_metre(sample_frames: list[FusedFrame]) -> None:
    """Cars within 30 m of the committed sample's sweeps 0, 10 and 20, matched by BEV centre distance."""
    truth = pq.read_table(GROUND_TRUTH).to_pandas()
    detector = GeometricDetector()
    found = {}
    for frame in sample_frames:
        boxes = detector.detect(frame.cloud)
        gt = truth[(truth["frame_index"] == frame.index) & (truth["category"] == "car")]
        gt_xy = gt[["x", "y"]].to_numpy()[np.hypot(gt["x"], gt["y"]) < 30.0]
        cars = boxes.boxes[boxes.category == "car", :2]
        dist = np.hypot(gt_xy[:, None, 0] - cars[None, :, 0], gt_xy[:, None, 1] - cars[None, :, 1])
        found[frame.index] = (len(gt_xy), int((dist.min(axis=1) < 1.0).sum()))
    assert found == {0: (13, 13), 10: (13, 13), 20: (9, 7)}


def test_car_boxes_stand_on_the_road_and_reach_the_roof(sample_frames: list[FusedFrame]) -> None:
    """Cars within 30 m of the sample's sweeps 0, 10 and 20 (matched within 1 m): the box's bottom is
    near the road under it and its top at the roof. The mean ground under a car's points put both
    too high (`on_the_ground`)."""
    truth = pq.read_table(GROUND_TRUTH).to_pandas()
    bottom, top = [], []
    for frame in sample_frames:
        boxes = GeometricDetector().detect(frame.cloud)
        gt = truth[(truth.frame_index == frame.index) & (truth.category == "car")]
        gt = gt[np.hypot(gt.x, gt.y) < 30.0]
        cars = boxes.boxes[boxes.category == "car"]
        for _, t in gt.iterrows():
            d = np.hypot(cars[:, 0] - t.x, cars[:, 1] - t.y)
            if d.size and d.min() < 1.0:
                box = cars[int(d.argmin())]
                bottom.append(box[2] - box[5] / 2 - (t.z - t.height / 2))
                top.append(box[2] + box[5] / 2 - (t.z + t.height / 2))
    assert len(bottom) >= 25
    # the bottom: +0.06 m (median; the road under far cars' sides is seen less), was +0.14
    assert abs(float(np.median(bottom))) < 0.09 and float(np.mean(np.abs(bottom))) < 0.10
    # the top: 0.00 m, was +0.06 (the mean ground under the car's points, added to their highest)
    assert abs(float(np.median(top))) < 0.03 and float(np.mean(np.abs(top))) < 0.04


def test_boxes_follow_the_contract(sample_frames: list[FusedFrame]) -> None:
    boxes = GeometricDetector().detect(sample_frames[0].cloud)
    assert len(boxes) > 0
    assert boxes.frame_id == sample_frames[0].cloud.frame_id
    assert boxes.stamp_ns == sample_frames[0].stamp_ns
    assert set(boxes.category.tolist()) <= set(CATEGORIES)
    yaw = boxes.boxes[:, 6]
    assert ((yaw >= -np.pi) & (yaw < np.pi)).all()
    assert (boxes.boxes[:, 3] >= boxes.boxes[:, 4]).all()  # length >= width
    assert (boxes.boxes[:, 3:6] > 0).all()
    assert ((boxes.score >= 0.0) & (boxes.score <= 1.0)).all()
    assert (boxes.num_points >= ClusterConfig().min_points).all()


def test_ground_removal_keeps_a_slope_and_a_kerb_out_of_clusters() -> None:
    rng = np.random.default_rng(11)
    ground = sloped_ground(rng)
    car = car_points(0.3, (25.0, -3.0), rng)  # on the slope, its bottom 2 m above the sensor's road
    xyz = np.concatenate([ground, car])
    estimate = estimate_ground(xyz)
    height = estimate.height
    on_ground = np.arange(len(xyz)) < len(ground)
    assert np.nanmax(np.abs(height[on_ground])) < 0.15  # below ClusterConfig.min_height (0.2) at the kerb
    assert np.nanpercentile(np.abs(height[on_ground]), 99) < 0.04
    assert np.allclose(height[~on_ground], np.repeat(np.arange(0.3, 1.51, 0.1), 120), atol=0.08)
    clusters = cluster_points(xyz, height)
    assert (clusters.labels[on_ground] == -1).all()
    assert len(clusters) == 1 and (clusters.labels[~on_ground] == 0).all()
    boxes = GeometricDetector().detect(cloud_of(xyz))
    assert boxes.category.tolist() == ["car"]
    assert boxes.boxes[0, 2] - boxes.boxes[0, 5] / 2 == pytest.approx(
        road_z(np.array(25.0), np.array(-3.0)), abs=0.1
    )


def test_ground_is_found_without_assuming_the_sensor_height() -> None:
    """The same scene with the road 1.8 m or 0 m below the sensor (KITTI vs AV2's ego frame)."""
    rng = np.random.default_rng(5)
    xyz = np.concatenate([sloped_ground(rng), car_points(-0.4, (12.0, 4.0), rng)])
    lifted = xyz + np.array([0.0, 0.0, 1.8], dtype=np.float32)
    a = GeometricDetector().detect(cloud_of(xyz))
    b = GeometricDetector().detect(cloud_of(lifted))
    assert a.category.tolist() == b.category.tolist() == ["car"]
    assert np.allclose(a.boxes[:, [0, 1, 3, 4, 5, 6]], b.boxes[:, [0, 1, 3, 4, 5, 6]], atol=1e-4)
    assert b.boxes[0, 2] - a.boxes[0, 2] == pytest.approx(1.8, abs=1e-4)


@pytest.mark.parametrize("yaw_deg", [0.0, 17.0, 45.0, 63.0, 101.0, -148.0])
def test_lshape_fit_recovers_the_yaw_of_a_two_sided_car_outline(yaw_deg: float) -> None:
    rng = np.random.default_rng(int(abs(yaw_deg)) + 1)
    yaw = math.radians(yaw_deg)
    heading = lshape_heading(car_outline(yaw, (9.0, 6.0), rng))
    error = (math.degrees(heading - yaw) + 45.0) % 90.0 - 45.0  # the rectangle's axes: mod 90 degrees
    assert abs(error) < 2.0
    ground = sloped_ground(rng, n=20_000)
    boxes = GeometricDetector().detect(cloud_of(np.concatenate([ground, car_points(yaw, (9.0, 6.0), rng)])))
    assert boxes.category.tolist() == ["car"]
    box_error = (math.degrees(boxes.boxes[0, 6] - yaw) + 90.0) % 180.0 - 90.0  # heading ambiguity: mod 180
    assert abs(box_error) < 2.0
    assert boxes.boxes[0, 3] == pytest.approx(4.5, abs=0.15)
    assert boxes.boxes[0, 4] == pytest.approx(1.8, abs=0.15)
    assert np.hypot(boxes.boxes[0, 0] - 9.0, boxes.boxes[0, 1] - 6.0) < 0.15


def test_a_one_sided_view_is_completed_away_from_the_sensor() -> None:
    """A car seen from straight behind shows 1.8 m of its rear: its box grows away from the sensor."""
    rng = np.random.default_rng(3)
    y = np.linspace(-0.9, 0.9, 40)
    bottom = road_z(np.full(40, 15.0), y)
    layers = [np.column_stack([np.full(40, 15.0), y, bottom + h]) for h in np.arange(0.3, 1.41, 0.1)]
    rear = np.concatenate(layers) + rng.normal(0.0, 0.01, (40 * len(layers), 3))
    boxes = GeometricDetector().detect(cloud_of(np.concatenate([sloped_ground(rng, n=20_000), rear])))
    assert boxes.category.tolist() == ["car"]
    prior_length = GeometricConfig().classify.rules["car"].prior[0]
    assert boxes.boxes[0, 3] == pytest.approx(prior_length)
    assert boxes.boxes[0, 0] == pytest.approx(15.0 + prior_length / 2, abs=0.05)
    assert abs(math.sin(boxes.boxes[0, 6])) < 0.02  # heading along the line of sight
    # the box records what was measured: its length was completed (the rear's depth seen), its width not
    assert boxes.measured[0, 0] < 0.5
    assert boxes.measured[0, 1] == pytest.approx(boxes.boxes[0, 4])


def test_a_car_seen_whole_records_its_length_and_width_as_measured() -> None:
    rng = np.random.default_rng(5)
    ground = sloped_ground(rng, n=20_000)
    boxes = GeometricDetector().detect(cloud_of(np.concatenate([ground, car_points(0.4, (9.0, 6.0), rng)])))
    assert boxes.category.tolist() == ["car"]
    np.testing.assert_allclose(boxes.measured[0], boxes.boxes[0, 3:5])


def test_empty_cloud_gives_empty_boxes() -> None:
    boxes = GeometricDetector().detect(cloud_of(np.zeros((0, 3)), frame_id="velodyne", stamp_ns=42))
    assert len(boxes) == 0
    assert (boxes.frame_id, boxes.stamp_ns) == ("velodyne", 42)
    assert boxes.boxes.shape == (0, 7)


def test_all_ground_cloud_gives_empty_boxes() -> None:
    assert len(GeometricDetector().detect(cloud_of(sloped_ground(np.random.default_rng(2))))) == 0


def test_a_cloud_with_a_bad_shape_is_refused() -> None:
    bad = PointCloud(np.zeros((4, 2), dtype=np.float32), None, None, None, "lidar", 0)
    with pytest.raises(DetectError, match=r"\(N, 3\)") as info:
        GeometricDetector().detect(bad)
    assert isinstance(info.value, FusionError)


def test_a_read_only_strided_view_is_accepted(sample_frames: list[FusedFrame]) -> None:
    dense = np.ascontiguousarray(sample_frames[0].cloud.xyz)
    padded = np.zeros((len(dense), 5), dtype=np.float32)
    padded[:, 1:4] = dense
    view = padded[:, 1:4]
    view.flags.writeable = False
    a = GeometricDetector().detect(cloud_of(dense))
    b = GeometricDetector().detect(PointCloud(view, None, None, None, "lidar", 7))
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.category, b.category)


def test_config_thresholds_are_honoured(sample_frames: list[FusedFrame]) -> None:
    cloud = sample_frames[0].cloud
    default = GeometricDetector().detect(cloud)
    assert (np.hypot(default.boxes[:, 0], default.boxes[:, 1]) > 25.0).any()
    assert "unknown" in default.category.tolist()

    near = GeometricDetector(GeometricConfig(cluster=ClusterConfig(max_range=25.0))).detect(cloud)
    assert 0 < len(near) < len(default)
    assert (np.hypot(near.boxes[:, 0], near.boxes[:, 1]) < 25.0 + 2.5).all()  # completion may reach out

    big = GeometricDetector(GeometricConfig(cluster=ClusterConfig(min_points=200))).detect(cloud)
    assert 0 < len(big) < len(default) and (big.num_points >= 200).all()

    known = GeometricDetector(GeometricConfig(classify=ClassifyConfig(keep_unknown=False))).detect(cloud)
    assert "unknown" not in known.category.tolist()
    assert len(known) == int((default.category != "unknown").sum())

    sure = GeometricDetector(GeometricConfig(classify=ClassifyConfig(min_score=0.5))).detect(cloud)
    assert len(sure) == int((default.score >= 0.5).sum()) and (sure.score >= 0.5).all()

    no_cars = GeometricDetector(GeometricConfig(classify=ClassifyConfig(priority=("pedestrian",)))).detect(
        cloud
    )
    assert set(no_cars.category.tolist()) <= {"pedestrian", "unknown"}


def test_detect_batch_is_detect_of_each(sample_frames: list[FusedFrame]) -> None:
    detector = GeometricDetector()
    clouds = [f.cloud for f in sample_frames]
    batch = detector.detect_batch(clouds)
    single = [detector.detect(c) for c in clouds]
    assert len(batch) == len(single) == 3
    for a, b in zip(batch, single, strict=True):
        assert isinstance(a, Boxes)
        assert np.array_equal(a.boxes, b.boxes)
        assert np.array_equal(a.category, b.category)
        assert np.array_equal(a.score, b.score)
        assert np.array_equal(a.num_points, b.num_points)
        assert (a.frame_id, a.stamp_ns) == (b.frame_id, b.stamp_ns)
    assert detector.detect_batch([]) == []


def test_detectors_table_builds_the_geometric_detector_by_name() -> None:
    detector = DETECTORS["geometric"]()
    assert isinstance(detector, GeometricDetector) and isinstance(detector, Detector)
    assert detector.name == "geometric"
    config = GeometricConfig(cluster=ClusterConfig(max_range=30.0))
    assert build_detector("geometric", config).config is config  # type: ignore[attr-defined]
    names = "centerpoint, geometric, mmdet3d, pointpillars"
    with pytest.raises(DetectError, match=f"unknown detector 'nope'; use one of {names}"):
        build_detector("nope")


def test_azimuth_step_is_the_lidars_horizontal_resolution() -> None:
    scene = build_scene(1)
    rig = default_rig(columns=512)
    sweep = simulate_sweep(scene, rig.lidar, scene.start_ns, index=0, noise_seed=1)
    assert math.degrees(azimuth_step(sweep.xyz, sweep.ring)) == pytest.approx(360.0 / 512, rel=0.02)
    shuffled = np.random.default_rng(0).permutation(len(sweep.xyz))
    assert azimuth_step(sweep.xyz[shuffled], None) == 0.0  # no order to read it from


def test_simulated_hdl64e_sweeps_have_about_120k_points(tmp_path: Path) -> None:
    rig = default_rig(columns=2048, lidar="hdl64e")
    assert len(rig.lidar.elevations_deg) == 64
    assert min(rig.lidar.elevations_deg) == pytest.approx(-24.833) and max(rig.lidar.elevations_deg) == 2.0
    scene = build_scene(1)
    sweep = simulate_sweep(scene, rig.lidar, scene.start_ns, index=0, noise_seed=1)
    assert 110_000 < len(sweep) < 131_072
    assert int(sweep.ring.max()) == 63
    with pytest.raises(FusionError, match="unknown LiDAR model 'hdl32'"):
        simulate_log(tmp_path / "x", lidar="hdl32")


def test_real_kitti_and_av2_cars_are_found(datasets: Path) -> None:
    """Cars within 30 m found at BEV IoU >= 0.5 on KITTI object 000000 and 000008 (its cloud cropped to
    the camera's view) and the two Argoverse 2 sweeps (whose annotations hold one car twice, so 14 of
    each sweep's 15 rows can be found at most). Prints the full evaluation table (pytest -rP)."""
    import pandas as pd
    from pyarrow import feather

    from fusion.evaluation import (
        EvalConfig,
        av2_annotations_labels,
        evaluate,
        format_table,
        kitti_object_labels,
    )

    detector = GeometricDetector()
    frames: list[tuple[PointCloud, pd.DataFrame]] = []
    kitti0 = datasets / "kitti_object_vis/data/object/training"
    xyz = np.fromfile(kitti0 / "velodyne/000000.bin", dtype=np.float32).reshape(-1, 4)[:, :3]
    labels = kitti_object_labels(kitti0 / "label_2/000000.txt", kitti0 / "calib/000000.txt", points=xyz)
    frames.append((cloud_of(xyz, frame_id="velodyne"), labels.to_pandas()))
    kitti8 = datasets / "mmdetection3d/demo/data/kitti"
    xyz = np.fromfile(kitti8 / "000008.bin", dtype=np.float32).reshape(-1, 4)[:, :3]
    frames.append((cloud_of(xyz, frame_id="velodyne"), _kitti_000008(kitti8)))
    av2 = datasets / "av2_api_test_data/tests/unit/test_data/sensor/val/7fab2350-7eaf-3b7e-a39d-6937a4c1bede"
    truth = av2_annotations_labels(av2 / "annotations.feather").to_pandas()
    for stamp in (315966265259836000, 315966265360032000):
        pts = feather.read_table(av2 / f"sensors/lidar/{stamp}.feather").to_pandas()
        ring = pts["laser_number"].to_numpy(dtype=np.uint16)
        cloud = PointCloud(pts[["x", "y", "z"]].to_numpy(dtype=np.float32), None, None, ring, "ego", stamp)
        frames.append((cloud, truth[truth["timestamp_ns"] == stamp]))
    preds, gts = [], []
    for k, (cloud, gt) in enumerate(frames):
        boxes = detector.detect(cloud)
        pred = pd.DataFrame(boxes.boxes, columns=["x", "y", "z", "length", "width", "height", "yaw"])
        pred["category"] = boxes.category.astype(str)
        pred["score"] = boxes.score.astype(np.float64)
        preds.append(pred.assign(sequence_id=f"real{k}", frame_index=0))
        gts.append(
            gt[["category", "x", "y", "z", "length", "width", "height", "yaw"]].assign(
                sequence_id=f"real{k}", frame_index=0
            )
        )
    config = EvalConfig(
        categories=("car", "truck", "bus", "pedestrian", "cyclist", "motorcycle"),
        max_range_m=30.0,
        operating_score=0.0,
        operating_iou_kind="bev",
    )
    result = evaluate(pd.concat(preds, ignore_index=True), pd.concat(gts, ignore_index=True), config)
    print(format_table(result))  # the full table, shown by pytest -rP
    car = result.category("car")
    assert (car.num_gt, car.tp) == (35, 23)  # recall 0.66 (see the README)


AV2_TREE_CAR = (315966265259836000, -22.5, -5.3)
"""An Argoverse 2 sweep and the (x, y) of its parked car under a tree, beside low plants and a trunk."""


def test_a_car_under_a_tree_beside_plants_stays_one_car(datasets: Path) -> None:
    """The AV2 car parked under a tree (its roof 0.25-0.3 m below the canopy, plants and a trunk 1 m
    beside it) comes out as one car box, not merged with the plants and the canopy into one 4.5 x 3.8 m
    cluster. The ground rule tried in sessions 8 and 9 (a cell under a vehicle is no ground) loses it:
    with the ground under the car's side right, the sparse band between its roof and the canopy is
    0.25 m, under the overhang stage's 0.3 m (README, "Tried and not kept": the ground under vehicles)."""
    from pyarrow import feather

    from fusion.evaluation import av2_annotations_labels, bev_iou

    stamp, x, y = AV2_TREE_CAR
    av2 = datasets / "av2_api_test_data/tests/unit/test_data/sensor/val/7fab2350-7eaf-3b7e-a39d-6937a4c1bede"
    truth = av2_annotations_labels(av2 / "annotations.feather").to_pandas()
    cars = truth[(truth["timestamp_ns"] == stamp) & (truth["category"] == "car")]
    gt = cars.iloc[int(np.argmin(np.hypot(cars["x"] - x, cars["y"] - y)))]
    pts = feather.read_table(av2 / f"sensors/lidar/{stamp}.feather").to_pandas()
    ring = pts["laser_number"].to_numpy(dtype=np.uint16)
    cloud = PointCloud(pts[["x", "y", "z"]].to_numpy(dtype=np.float32), None, None, ring, "ego", stamp)
    boxes = GeometricDetector().detect(cloud)
    near = np.hypot(boxes.boxes[:, 0] - gt["x"], boxes.boxes[:, 1] - gt["y"]) < 2.0
    assert near.any()
    gt_box = gt[["x", "y", "z", "length", "width", "height", "yaw"]].to_numpy(dtype=np.float64)[None, :]
    iou = bev_iou(boxes.boxes[near], gt_box)[:, 0]
    best = int(np.argmax(iou))
    assert boxes.category[near][best] == "car" and iou[best] >= 0.5
    assert float(boxes.boxes[near][:, 4].max()) < 2.5  # nothing as wide as the car and the plants together


def _kitti_000008(root: Path) -> object:
    """mmdetection3d's info for KITTI object 000008 (camera boxes x y z l h w ry) as velodyne labels."""
    import pickle

    import pandas as pd

    from fusion.evaluation import kitti_rect_to_velodyne

    with (root / "000008.pkl").open("rb") as f:
        info = pickle.load(f)["data_list"][0]
    rows = [i for i in info["instances"] if i["bbox_label_3d"] == 2]  # cars
    cam = np.array([i["bbox_3d"] for i in rows], dtype=np.float64)
    ordered = np.stack([cam[:, 4], cam[:, 5], cam[:, 3], cam[:, 0], cam[:, 1], cam[:, 2], cam[:, 6]], axis=1)
    rect_from_velo = np.asarray(info["images"]["R0_rect"], dtype=np.float64) @ np.asarray(
        info["lidar_points"]["Tr_velo_to_cam"], dtype=np.float64
    )
    boxes = kitti_rect_to_velodyne(ordered, np.linalg.inv(rect_from_velo))
    df = pd.DataFrame(boxes, columns=["x", "y", "z", "length", "width", "height", "yaw"])
    return df.assign(category="car", sequence_id="kitti", frame_index=0)


def test_config_round_trips_through_a_toml_like_mapping() -> None:
    import tomllib

    config = GeometricConfig()
    assert GeometricConfig.from_mapping(config.to_mapping()) == config
    text = """
    [cluster]
    max_range = 30.0
    [classify]
    priority = ["car"]
    [classify.rules.car]
    prior = [4.5, 1.9]
    """
    custom = GeometricConfig.from_mapping(tomllib.loads(text))
    assert custom.cluster.max_range == 30.0
    assert custom.classify.priority == ("car",)
    assert custom.classify.rules["car"].prior == (4.5, 1.9)
    assert custom.classify.rules["car"].max_length == GeometricConfig().classify.rules["car"].max_length
    assert custom.ground == GeometricConfig().ground


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"clusters": {}}, r"unknown section\(s\) \['clusters'\]"),
        ({"cluster": {"max_rang": 3.0}}, r"\[cluster\]: unknown key\(s\) \['max_rang'\]"),
        ({"cluster": {"cell_size": 0.0}}, r"cluster.cell_size = 0.0; use a positive number"),
        ({"cluster": {"min_range": 70.0}}, r"cluster.min_range = 70.0 must be in \[0, max_range = 60.0\)"),
        ({"classify": {"priority": ["tram"]}}, r"classify.priority names \['tram'\], which have no rule"),
        ({"classify": {"rules": {"tram": {"max_length": 30.0}}}}, r"\[classify.rules.tram\]"),
    ],
)
def test_a_bad_config_is_refused_with_what_to_fix(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(DetectError, match=message):
        GeometricConfig.from_mapping(mapping)
