"""`fusion convert`: real KITTI and Argoverse 2 folders into bags, then the whole pipeline on them.

The real data is read in place from the shared datasets folder (never copied into the repo); a few
tests build a small variant of a real folder in tmp_path (symlinks, a truncated copy).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyarrow import feather

from exporters.reader import open_dataset
from fusion.cli import main
from fusion.convert import ConvertError, convert, oxts_poses

AV2_LOG = "av2_api_test_data/tests/unit/test_data/sensor/val/7fab2350-7eaf-3b7e-a39d-6937a4c1bede"
AV2_SWEEPS = (315966265259836000, 315966265360032000)
SFND = "sfnd_3d_object_tracking_kitti/images/KITTI/2011_09_26"
KITTI_CALIB = "kitti_raw_2011_09_26_calib_timestamps/test_data/kitti/2011_09_26_calib/2011_09_26"
KITTI_DRIVE = (
    "kitti_raw_2011_09_26_calib_timestamps/test_data/kitti/2011_09_26_drive_0001_sync/2011_09_26/"
    "2011_09_26_drive_0001_sync"
)
KITTI_OBJECT = "kitti_object_vis/data/object/training"
CATEGORIES = ["car", "truck", "bus", "pedestrian", "cyclist", "motorcycle"]


def _inspect(log: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["inspect", str(log), "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def _topic(report: dict[str, Any], name: str) -> dict[str, Any]:
    topic: dict[str, Any] = next(t for t in report["topics"] if t["name"] == name)
    return topic


# ---- Argoverse 2 ---------------------------------------------------------------------------------


def _per_sweep_car_recall(av2: Path) -> tuple[int, int]:
    """(car GT, car TP) within 30 m at BEV IoU 0.5, score >= 0, of the geometric detector run on each
    sweep's feather points directly: what tests/fusion/test_detect.py counts for these two sweeps."""
    from fusion.decode.types import PointCloud
    from fusion.detect.geometric import GeometricDetector
    from fusion.evaluation import EvalConfig, av2_annotations_labels, evaluate

    truth = av2_annotations_labels(av2 / "annotations.feather").to_pandas()
    detector = GeometricDetector()
    preds, gts = [], []
    for k, stamp in enumerate(AV2_SWEEPS):
        pts = feather.read_table(av2 / f"sensors/lidar/{stamp}.feather").to_pandas()
        ring = pts["laser_number"].to_numpy(dtype=np.uint16)
        cloud = PointCloud(pts[["x", "y", "z"]].to_numpy(dtype=np.float32), None, None, ring, "ego", stamp)
        boxes = detector.detect(cloud)
        pred = pd.DataFrame(boxes.boxes, columns=["x", "y", "z", "length", "width", "height", "yaw"])
        pred["category"] = boxes.category.astype(str)
        pred["score"] = boxes.score.astype(np.float64)
        preds.append(pred.assign(sequence_id="s", frame_index=k))
        gt = truth[truth["timestamp_ns"] == stamp]
        gts.append(
            gt[["category", "x", "y", "z", "length", "width", "height", "yaw"]].assign(
                sequence_id="s", frame_index=k
            )
        )
    config = EvalConfig(
        categories=tuple(CATEGORIES), max_range_m=30.0, operating_score=0.0, operating_iou_kind="bev"
    )
    car = evaluate(pd.concat(preds), pd.concat(gts), config).category("car")
    return car.num_gt, car.tp


def test_av2_log_converts_and_the_pipeline_scores_it_like_the_per_sweep_detector(
    datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    av2 = datasets / AV2_LOG
    log = tmp_path / f"{av2.name}.mcap"  # the log id as the stem: the dataset's sequence id
    assert main(["convert", str(av2), "--from", "av2", "--out", str(log)]) == 0
    out = capsys.readouterr().out
    assert "2 sweeps on /lidar/points" in out and f"next: fusion run {log} --out OUT" in out

    report = _inspect(log, capsys)
    cloud = _topic(report, "/lidar/points")
    assert cloud["count"] == 2 and cloud["rate_hz"] == pytest.approx(
        1e9 / (AV2_SWEEPS[1] - AV2_SWEEPS[0]), abs=0.01
    )
    assert cloud["first_stamp_ns"] == AV2_SWEEPS[0]
    # no per-point time: AV2 sweeps come ego-motion compensated, and fusion would deskew them again
    assert not cloud["pointcloud"]["per_point_time"] and cloud["pointcloud"]["frame_id"] == "egovehicle"
    edges = {(e["parent"], e["child"]): e for e in report["tf"]}
    assert not edges[("map", "egovehicle")]["static"] and edges[("map", "egovehicle")]["count"] > 100
    assert edges[("egovehicle", "ring_front_center")]["static"] and len(edges) == 12  # 11 sensors + the pose

    # the default run: nothing deskewed again, the dataset's points are the feather's, and the
    # detections are the per-sweep test's
    plain = tmp_path / "plain"
    assert main(["run", str(log), "--out", str(plain), "--workers", "1", "--quiet", "--no-track"]) == 0
    assert main(["validate", str(plain)]) == 0
    assert pd.read_parquet(plain / "frames")["deskewed"].tolist() == [False, False]
    seq = open_dataset(plain).sequence(av2.name)
    for k, stamp in enumerate(AV2_SWEEPS):
        pts = feather.read_table(av2 / f"sensors/lidar/{stamp}.feather").to_pandas()
        xyz, intensity, offsets = seq.points(k)
        np.testing.assert_array_equal(xyz, pts[["x", "y", "z"]].to_numpy(dtype=np.float32))
        np.testing.assert_array_equal(intensity, pts["intensity"].to_numpy(dtype=np.float32))
        assert not offsets.any()  # no per-point time: every point at the stamp (the contract's int32 column)
    bev = tmp_path / "bev.toml"
    bev.write_text(f'operating_iou_kind = "bev"\ncategories = {json.dumps(CATEGORIES)}\n')
    capsys.readouterr()
    gt = str(av2 / "annotations.feather")
    assert (
        main(
            [
                "eval",
                "--pred",
                str(plain),
                "--gt",
                gt,
                "--max-range",
                "30",
                "--score",
                "0",
                "--config",
                str(bev),
                "--json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "2 of the 156 annotated sweeps" in captured.err
    car = json.loads(captured.out)["overall"]["categories"]["car"]
    assert (car["num_gt"], car["tp"]) == _per_sweep_car_recall(av2) == (30, 20)

    # fusion qa reads the same annotations as reviewed labels: on the same two sweeps (it compared the
    # bag's 2 sweeps with the log's 156 annotated ones, under other frame numbers: nothing matched)
    assert main(["qa", "--prelabels", str(plain), "--reviewed", gt, "--json"]) == 0
    captured = capsys.readouterr()
    assert "fusion qa: 2 of the 156 annotated sweeps" in captured.err
    qa = json.loads(captured.out)["overall"]
    assert qa["frames"] == 2 and qa["boxes_right"] > 0


def test_av2_log_without_calibration_and_one_sweep_converts(datasets: Path, tmp_path: Path) -> None:
    """Like the held-back second log of the datasets folder: one sweep, poses, no calibration/."""
    av2 = datasets / AV2_LOG
    src = tmp_path / "one"
    (src / "sensors" / "lidar").mkdir(parents=True)
    (src / "sensors" / "lidar" / f"{AV2_SWEEPS[1]}.feather").symlink_to(
        av2 / f"sensors/lidar/{AV2_SWEEPS[1]}.feather"
    )
    (src / "city_SE3_egovehicle.feather").symlink_to(av2 / "city_SE3_egovehicle.feather")
    result = convert(src, "av2", tmp_path / "one.mcap")
    assert result.num_sweeps == 1 and result.start_ns == result.end_ns == AV2_SWEEPS[1]
    assert result.images == {} and result.num_poses > 0
    assert any("no calibration/egovehicle_SE3_sensor.feather" in n for n in result.notes)
    out = tmp_path / "ds"
    assert main(["detect", str(result.log_path), "--out", str(out), "--quiet", "--no-track"]) == 0
    assert main(["validate", str(out)]) == 0


def test_a_log_too_short_to_track_says_its_detections_were_all_dropped(
    datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tracked, a 2-sweep log has no track of min_track_frames (3) detections: its labels are empty,
    which the summary used to report as a plain "0 boxes"."""
    log = convert(datasets / AV2_LOG, "av2", tmp_path / "log.mcap").log_path
    capsys.readouterr()
    assert main(["detect", str(log), "--out", str(tmp_path / "ds"), "--no-images", "--no-points"]) == 0
    out = capsys.readouterr().out
    assert "1 warning(s)" in out and "0 boxes" in out
    assert f"{log}: tracking kept none of the" in out and "of its 2 sweep(s)" in out
    assert "fewer than 3 detections (min_track_frames); pass --no-track" in out


def test_av2_feather_without_the_columns_is_one_line_naming_it(tmp_path: Path) -> None:
    import pyarrow as pa

    src = tmp_path / "log"
    (src / "sensors" / "lidar").mkdir(parents=True)
    bad = src / "sensors" / "lidar" / "315966265259836000.feather"
    feather.write_feather(pa.table({"x": [1.0], "y": [2.0]}), bad)
    with pytest.raises(
        ConvertError, match=rf"{bad}: missing column\(s\) z, intensity; this is not an Argoverse 2"
    ):
        convert(src, "av2", tmp_path / "out.mcap")
    assert not (tmp_path / "out.mcap").exists() and not list(tmp_path.glob(".out.mcap.partial-*"))


# ---- KITTI raw -----------------------------------------------------------------------------------


def test_kitti_raw_fragment_runs_end_to_end_with_cameras_paired_and_boxes_in_the_image(
    datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = datasets / SFND
    log = tmp_path / "sfnd.bag"
    calib = str(datasets / KITTI_CALIB)
    args = [
        "convert",
        str(src),
        "--from",
        "kitti-raw",
        "--out",
        str(log),
        "--format",
        "ros1",
        "--calibration",
        calib,
    ]
    assert main(args) == 2  # no timestamps: --hz is required, nothing written
    assert "pass --hz 10" in capsys.readouterr().err and not log.exists()
    assert main([*args, "--hz", "10"]) == 0
    assert (
        "19 sweeps on /velodyne/points, images: image_02 19, 0 poses, span 1.80 s" in capsys.readouterr().out
    )

    report = _inspect(log, capsys)
    cloud = _topic(report, "/velodyne/points")
    assert cloud["count"] == 19 and cloud["rate_hz"] == pytest.approx(10.0)
    assert (
        _topic(report, "/image_02/image/compressed")["image"]["camera_info_topic"] == "/image_02/camera_info"
    )
    edges = {(e["parent"], e["child"]) for e in report["tf"]}
    assert {("velodyne", "cam0"), ("cam0", "rect"), ("rect", "cam2_rect"), ("velodyne", "imu")} <= edges
    (sync,) = report["sync"]
    assert (sync["camera"], sync["paired"], sync["unpaired_sweeps"]) == ("image_02", 19, 0)
    assert report["problems"] == []

    out = tmp_path / "ds"
    assert main(["run", str(log), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert main(["validate", str(out)]) == 0
    seq = open_dataset(out).sequence("sfnd")
    frames = pd.read_parquet(out / "frames")
    assert len(frames) == 19 and not frames["deskewed"].any()  # no oxts: no poses, nothing to deskew
    assert all([c["name"] for c in cams] == ["image_02"] for cams in frames["cameras"])
    for k in (0, 9, 18):  # round trip: the .bin's points, bit for bit
        raw = np.fromfile(src / f"velodyne_points/data/{k:010d}.bin", dtype=np.float32).reshape(-1, 4)
        xyz, intensity, _ = seq.points(k)
        np.testing.assert_array_equal(xyz, raw[:, :3])
        np.testing.assert_array_equal(intensity, raw[:, 3])
    labels = pd.read_parquet(out / "labels")
    front = labels[
        (labels["category"] == "car") & (labels["x"] > 5.0) & (labels["y"].abs() < labels["x"] * 0.5)
    ]
    assert len(front) >= 19  # cars ahead in every sweep of this drive
    for boxes in front["camera_boxes"]:
        (box,) = boxes
        assert box["camera"] == "image_02"
        # clipped to the image, whose pixel centres run 0..1241 x 0..374
        assert -0.5 <= box["x_min"] < box["x_max"] <= 1241.5 and -0.5 <= box["y_min"] < box["y_max"] <= 374.5


def _kitti_drive(datasets: Path, tmp_path: Path, n: int = 3) -> Path:
    """A KITTI raw drive folder of `n` frames: the sfnd fragment's .bin and PNGs (symlinked), the
    real timestamps of drive 0001, its one real oxts packet and `n - 1` packets moved from it."""
    sfnd, real = datasets / SFND, datasets / KITTI_DRIVE
    drive = tmp_path / "2011_09_26_drive_0001_sync"
    for sub, suffix in (("velodyne_points", ".bin"), ("image_02", ".png")):
        (drive / sub / "data").mkdir(parents=True)
        for k in range(n):
            (drive / sub / "data" / f"{k:010d}{suffix}").symlink_to(sfnd / sub / "data" / f"{k:010d}{suffix}")
    for name in (
        "velodyne_points/timestamps_start.txt",
        "velodyne_points/timestamps_end.txt",
        "image_02/timestamps.txt",
        "oxts/timestamps.txt",
    ):
        lines = (real / name).read_text().splitlines()[:n]
        (drive / name).parent.mkdir(parents=True, exist_ok=True)
        (drive / name).write_text("\n".join(lines) + "\n")
    packet = (real / "oxts/data/0000000000.txt").read_text().split()
    (drive / "oxts" / "data").mkdir(parents=True)
    for k in range(n):
        moved = list(packet)
        moved[1] = repr(float(packet[1]) + 1e-5 * k)  # east by ~0.73 m a frame
        (drive / "oxts" / "data" / f"{k:010d}.txt").write_text(" ".join(moved) + "\n")
    return drive


def test_kitti_raw_with_timestamps_and_oxts_gets_real_stamps_and_poses(
    datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drive = _kitti_drive(datasets, tmp_path)
    calib = datasets / KITTI_CALIB
    with pytest.raises(ConvertError, match=r"timestamps_start\.txt stamps the sweeps; --hz would replace"):
        convert(drive, "kitti-raw", tmp_path / "x.mcap", hz=10, calibration=calib)
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        (tmp_path / name).symlink_to(calib / name)  # the date folder's files, above the drive folder
    result = convert(drive, "kitti-raw", tmp_path / "drive.mcap")
    assert f"calibration: {tmp_path / 'calib_cam_to_cam.txt'}" in result.notes
    assert (result.num_sweeps, result.num_poses, dict(result.images)) == (3, 3, {"image_02": 3})
    # 2011-09-26 13:02:25.899635528 UTC, the first line of timestamps_start.txt
    assert result.start_ns == 1317042145_899635528
    report = _inspect(result.log_path, capsys)
    edges = {(e["parent"], e["child"]): e for e in report["tf"]}
    assert not edges[("map", "imu")]["static"] and edges[("imu", "velodyne")]["static"]
    (sync,) = report["sync"]
    assert sync["paired"] == 3 and sync["offset_max_ms"] < 15  # images ~62 ms after the start, crossing at 50
    out = tmp_path / "ds"
    assert main(["detect", str(result.log_path), "--out", str(out), "--quiet", "--no-track"]) == 0
    frames = pd.read_parquet(out / "frames")
    assert frames["timestamp_ns"].iloc[0] == result.start_ns
    # the first sweep starts 65 ms before the first oxts packet, past TF's 50 ms of extrapolation:
    # no pose; the others have one, a 1e-5 degree step east apart
    assert frames["world_from_lidar"].iloc[0] is None
    world = np.stack([np.reshape(m, (4, 4)) for m in frames["world_from_lidar"].iloc[1:]])
    step = float(np.linalg.norm(world[1, :3, 3] - world[0, :3, 3]))
    scale = math.cos(math.radians(49.015003823272))
    assert step == pytest.approx(scale * math.radians(1e-5) * 6378137.0, rel=0.05)


def test_oxts_poses_follow_the_kitti_devkit() -> None:
    lat, lon = 49.0, 8.4
    packets = np.zeros((2, 30))
    packets[:, 0], packets[:, 1], packets[:, 2] = lat, lon, 100.0
    packets[1, 0] += 1e-5  # north
    packets[1, 2] += 1.0
    packets[:, 5] = math.pi / 2  # heading north: the imu's x points north
    poses = oxts_poses(packets)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    # Mercator y of the northward step, seen from the first pose (x forward = north)
    scale = math.cos(math.radians(lat))
    dy = (
        scale
        * 6378137.0
        * (
            math.log(math.tan(math.radians(90 + lat + 1e-5) / 2))
            - math.log(math.tan(math.radians(90 + lat) / 2))
        )
    )
    np.testing.assert_allclose(poses[1][:3, 3], [dy, 0.0, 1.0], atol=1e-6)


def test_bad_kitti_inputs_are_one_line_and_leave_nothing(datasets: Path, tmp_path: Path) -> None:
    drive = _kitti_drive(datasets, tmp_path, n=2)
    calib = datasets / KITTI_CALIB
    bin1 = drive / "velodyne_points" / "data" / "0000000001.bin"
    data = bin1.read_bytes()
    bin1.unlink()
    bin1.write_bytes(data[:-5])
    out = tmp_path / "drive.mcap"
    with pytest.raises(ConvertError, match=rf"{bin1}: \d+ bytes is not a multiple of 16"):
        convert(drive, "kitti-raw", out, calibration=calib)
    assert not out.exists() and not list(tmp_path.glob(".drive.mcap.partial-*"))
    bin1.write_bytes(data)
    png = drive / "image_02" / "data" / "0000000001.png"
    png.unlink()
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ConvertError, match=rf"{png}: does not decode as a PNG image"):
        convert(drive, "kitti-raw", out, calibration=calib)
    assert not out.exists()
    png.unlink()
    png.symlink_to(datasets / SFND / "image_02/data/0000000001.png")
    assert convert(drive, "kitti-raw", out, calibration=calib).num_sweeps == 2
    with pytest.raises(ConvertError, match="exists; pass --overwrite"):
        convert(drive, "kitti-raw", out, calibration=calib)
    before = out.stat().st_ino
    convert(drive, "kitti-raw", out, calibration=calib, overwrite=True)
    assert out.stat().st_ino != before
    shutil.rmtree(drive / "image_02")
    (drive / "velodyne_points" / "timestamps_start.txt").unlink()
    with pytest.raises(ConvertError, match=r"no velodyne_points/timestamps_start\.txt, .*pass --hz 10"):
        convert(drive, "kitti-raw", tmp_path / "y.mcap", calibration=calib)


# ---- KITTI object --------------------------------------------------------------------------------


def test_kitti_object_frame_converts_with_its_camera_paired(
    datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = datasets / KITTI_OBJECT
    log = tmp_path / "object"
    assert (
        main(
            [
                "convert",
                str(src),
                "--from",
                "kitti-object",
                "--frames",
                "000000",
                "--out",
                str(log),
                "--format",
                "sqlite3",
            ]
        )
        == 0
    )
    assert "unrelated scenes" in capsys.readouterr().out
    report = _inspect(log, capsys)
    assert _topic(report, "/velodyne/points")["count"] == 1
    (sync,) = report["sync"]
    assert (sync["camera"], sync["paired"]) == ("image_02", 1)
    with pytest.raises(ConvertError, match=r"000009\.bin: no such frame"):
        convert(src, "kitti-object", tmp_path / "x.mcap", frames=["000009"])


def test_an_interrupted_conversion_leaves_no_bag(
    datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle (here: while the second image is read) removes the partial bag."""
    import fusion.convert as module

    drive = _kitti_drive(datasets, tmp_path)
    real = module._checked_image
    calls = []

    def interrupted(path: Path, fmt: str) -> object:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, fmt)

    monkeypatch.setattr(module, "_checked_image", interrupted)
    out = tmp_path / "drive.bag"
    with pytest.raises(KeyboardInterrupt):
        convert(drive, "kitti-raw", out, fmt="ros1", calibration=datasets / KITTI_CALIB)
    assert len(calls) == 2 and not out.exists() and not list(tmp_path.glob(".drive.bag.partial-*"))
