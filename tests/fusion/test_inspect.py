"""`fusion inspect`: counts, rates, clouds, cameras, TF tree and problems, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from fusion.bags import typestore_for
from fusion.cli import main
from tests.bagutil import FORMATS, Fmt, add_undecodable_topic, bag_path, header, write_bag

S = 1_000_000_000
T0 = 1_700_000_000 * S


def cloud_msg(ts: Any, stamp_ns: int, xyz: np.ndarray, frame: str = "lidar") -> Any:
    """A Velodyne-style PointCloud2: x y z intensity (float32) ring (uint16) time (float32)."""
    T = ts.types
    n = len(xyz)
    dtype = np.dtype(
        {
            "names": ["x", "y", "z", "intensity", "ring", "time"],
            "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f4"],
            "offsets": [0, 4, 8, 12, 16, 18],
            "itemsize": 22,
        }
    )
    arr = np.zeros(n, dtype=dtype)
    arr["x"], arr["y"], arr["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    arr["intensity"] = 7.0
    arr["ring"] = np.arange(n) % 32
    arr["time"] = np.linspace(0, 0.099, n, dtype=np.float32)
    PF = T["sensor_msgs/msg/PointField"]
    fields = [
        PF(name=nm, offset=off, datatype=dt, count=1)
        for nm, off, dt in [
            ("x", 0, 7),
            ("y", 4, 7),
            ("z", 8, 7),
            ("intensity", 12, 7),
            ("ring", 16, 4),
            ("time", 18, 7),
        ]
    ]
    return T["sensor_msgs/msg/PointCloud2"](
        header=header(ts, stamp_ns, frame),
        height=1,
        width=n,
        fields=fields,
        is_bigendian=False,
        point_step=22,
        row_step=22 * n,
        data=arr.view(np.uint8).reshape(-1),
        is_dense=False,
    )


def camera_info_msg(ts: Any, stamp_ns: int, frame: str, w: int, h: int) -> Any:
    T = ts.types
    k = np.array([500.0, 0, w / 2, 0, 500.0, h / 2, 0, 0, 1])
    p = np.array([500.0, 0, w / 2, 0, 0, 500.0, h / 2, 0, 0, 0, 1, 0])
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    kw: dict[str, Any] = {
        "header": header(ts, stamp_ns, frame),
        "height": h,
        "width": w,
        "distortion_model": "plumb_bob",
        "binning_x": 0,
        "binning_y": 0,
        "roi": roi,
    }
    if "K" in T["sensor_msgs/msg/CameraInfo"].__dataclass_fields__:
        kw.update(D=np.zeros(5), K=k, R=np.eye(3).ravel(), P=p)
    else:
        kw.update(d=np.zeros(5), k=k, r=np.eye(3).ravel(), p=p)
    return T["sensor_msgs/msg/CameraInfo"](**kw)


def jpeg_msg(ts: Any, stamp_ns: int, frame: str, w: int, h: int) -> Any:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 30, 30)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=header(ts, stamp_ns, frame), format="jpeg", data=buf.reshape(-1)
    )


def tf_msg(ts: Any, stamp_ns: int, parent: str, child: str, x: float) -> Any:
    T = ts.types
    tr = T["geometry_msgs/msg/TransformStamped"](
        header=header(ts, stamp_ns, parent),
        child_frame_id=child,
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=x, y=0.0, z=0.0),
            rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
    )
    return T["tf2_msgs/msg/TFMessage"](transforms=[tr])


def small_log(fmt: Fmt) -> list[tuple[str, str, int, Any]]:
    """18 sweeps at 10 Hz with sweeps 12-14 missing (a gap) and NaNs in sweep 3; a camera at 10 Hz with
    CameraInfo; a second camera without; /tf at 10 Hz; /tf_static once; 1 stamp going backwards."""
    ts = typestore_for("ros1" if fmt == "ros1" else "ros2")
    rng = np.random.default_rng(0)
    out: list[tuple[str, str, int, Any]] = []
    out.append(("/tf_static", "tf2_msgs/msg/TFMessage", T0, tf_msg(ts, T0, "base_link", "/lidar", 1.0)))
    for i in range(21):
        t = T0 + i * 100_000_000
        rec = t + 5_000_000
        if i not in (12, 13, 14):
            xyz = rng.normal(size=(1000, 3)).astype(np.float32) * 10
            if i == 3:
                xyz[:7, 1] = np.nan
            out.append(("/points", "sensor_msgs/msg/PointCloud2", rec, cloud_msg(ts, t, xyz)))
        cam_t = t + 30_000_000 if i != 15 else t - 80_000_000  # one stamp out of order
        out.append(
            (
                "/cam_front/image/compressed",
                "sensor_msgs/msg/CompressedImage",
                rec + 1,
                jpeg_msg(ts, cam_t, "cam_front", 64, 48),
            )
        )
        out.append(
            (
                "/cam_front/camera_info",
                "sensor_msgs/msg/CameraInfo",
                rec + 2,
                camera_info_msg(ts, cam_t, "cam_front", 64, 48),
            )
        )
        out.append(
            (
                "/cam_rear/image/compressed",
                "sensor_msgs/msg/CompressedImage",
                rec + 3,
                jpeg_msg(ts, t, "cam_rear", 32, 24),
            )
        )
        out.append(("/tf", "tf2_msgs/msg/TFMessage", rec + 4, tf_msg(ts, t, "odom", "base_link", i * 2.0)))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_json_reports_counts_rates_clouds_cameras_tf_and_problems(
    tmp_path: Path, fmt: Fmt, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bag(bag_path(tmp_path, fmt), fmt, small_log(fmt))
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["json_version"] == 1
    topics = {t["name"]: t for t in doc["topics"]}
    pts = topics["/points"]
    assert pts["count"] == 18
    assert pts["type"] == "sensor_msgs/msg/PointCloud2"
    assert pts["first_stamp_ns"] == T0 and pts["last_stamp_ns"] == T0 + 20 * 100_000_000
    assert pts["rate_hz"] == pytest.approx(17 / 2.0, abs=1e-3)
    assert pts["largest_gap_ns"] == 400_000_000
    assert pts["pointcloud"]["fields"] == ["x", "y", "z", "intensity", "ring", "time"]
    assert pts["pointcloud"]["per_point_time"] is True
    assert pts["pointcloud"]["nan_points"] == 7
    assert pts["pointcloud"]["mean_points"] == pytest.approx((18 * 1000 - 7) / 18, abs=0.05)
    front = topics["/cam_front/image/compressed"]
    assert front["image"] == {
        "width": 64,
        "height": 48,
        "encoding": "jpeg",
        "frame_id": "cam_front",
        "camera_info_topic": "/cam_front/camera_info",
    }
    assert front["non_monotonic"] == 1
    assert {(e["parent"], e["child"], e["static"]) for e in doc["tf"]} == {
        ("base_link", "lidar", True),
        ("odom", "base_link", False),
    }
    assert doc["tf_frames"] == ["base_link", "lidar", "odom"]
    cams = {c["image_topic"]: c for c in doc["cameras"]}
    assert cams["/cam_front/image/compressed"]["width"] == 64
    assert cams["/cam_rear/image/compressed"]["camera_info_topic"] is None
    problems = "\n".join(doc["problems"])
    assert "/points: 1 gap(s) over 3 periods; largest 400.0 ms (nominal period 100.0 ms)" in problems
    assert "/points: 7 non-finite" in problems
    assert "/cam_front/image/compressed: header stamps go backwards 1 time(s)" in problems
    assert "/cam_rear/image/compressed: no CameraInfo" in problems


def test_inspect_human_table_names_topics_and_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bag(bag_path(tmp_path, "mcap"), "mcap", small_log("mcap"))
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "/points" in out and "1000 pts/sweep" in out  # mean 999.6, rounded
    assert "per-point time yes" in out
    assert "odom -> base_link  (dynamic, 21)" in out
    assert "Problems (" in out


def test_inspect_reports_undecodable_driver_packets_with_record_time_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bag(bag_path(tmp_path, "sqlite3"), "sqlite3", small_log("sqlite3"))
    add_undecodable_topic(
        path, "/pandar_packets", "pandar_msgs/msg/PandarScan", [T0 + i * 100_000_000 for i in range(4)]
    )
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    pandar = {t["name"]: t for t in doc["topics"]}["/pandar_packets"]
    assert (pandar["count"], pandar["decodable"], pandar["rate_source"]) == (4, False, "record")
    assert pandar["rate_hz"] == pytest.approx(10.0)
    assert pandar["first_stamp_ns"] is None
    assert any("/pandar_packets" in p and "pandar_msgs/msg/PandarScan" in p for p in doc["problems"])
    points = {t["name"]: t for t in doc["topics"]}["/points"]
    assert points["count"] == 18 and points["rate_source"] == "header"


def test_inspect_says_a_log_without_a_pointcloud2_cannot_be_prelabelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "Problems: none found" for a log that `fusion run` then fails on ("no PointCloud2 topic")."""
    msgs = [m for m in small_log("mcap") if m[0] != "/points"]
    path = write_bag(bag_path(tmp_path, "mcap"), "mcap", msgs)
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p for p in doc["problems"] if "no decodable PointCloud2 topic" in p and "LiDAR" in p]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.bag", None, "no such file"),
        ("notes.mcap", b"hello", "unknown format"),
        ("cut.bag", b"#ROSBAG V2.0\n\x10", "cut.bag"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_no_traceback(
    tmp_path: Path, name: str, content: bytes | None, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("fusion: error: ") and match in err[0] and "Traceback" not in err[0]


def kitti_raw_bag(
    datasets: Path,
    tmp_path: Path,
    fmt: Fmt,
    *,
    lidar_frame: str = "velo_link",
    camera_frame: str = "camera_color_left",
    camera_info: bool = True,
    image_delay_ns: int = 0,
) -> Path:
    """19 real KITTI raw HDL-64 sweeps and camera-2 PNGs as a ROS bag, as kitti2bag-style tools write
    them (x y z intensity float32; sensor_msgs/Image rgb8), stamped at the KITTI 10 Hz rate."""
    root = datasets / "sfnd_3d_object_tracking_kitti/images/KITTI/2011_09_26"
    ts = typestore_for("ros1" if fmt == "ros1" else "ros2")
    T = ts.types
    PF = T["sensor_msgs/msg/PointField"]
    msgs: list[tuple[str, str, int, Any]] = []
    for i, binf in enumerate(sorted((root / "velodyne_points/data").glob("*.bin"))):
        t = T0 + i * 103_000_000  # KITTI raw sweeps are ~10.3 Hz apart
        pts = np.fromfile(binf, dtype=np.float32).reshape(-1, 4)
        fields = [
            PF(name=n, offset=4 * k, datatype=7, count=1) for k, n in enumerate(["x", "y", "z", "intensity"])
        ]
        msgs.append(
            (
                "/kitti/velo/pointcloud",
                "sensor_msgs/msg/PointCloud2",
                t,
                T["sensor_msgs/msg/PointCloud2"](
                    header=header(ts, t, lidar_frame),
                    height=1,
                    width=len(pts),
                    fields=fields,
                    is_bigendian=False,
                    point_step=16,
                    row_step=16 * len(pts),
                    data=pts.view(np.uint8).reshape(-1),
                    is_dense=True,
                ),
            )
        )
        img = cv2.cvtColor(cv2.imread(str(root / "image_02/data" / f"{binf.stem}.png")), cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        msgs.append(
            (
                "/kitti/camera_color_left/image_raw",
                "sensor_msgs/msg/Image",
                t + 1,
                T["sensor_msgs/msg/Image"](
                    header=header(ts, t + image_delay_ns, camera_frame),
                    height=h,
                    width=w,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=3 * w,
                    data=img.reshape(-1),
                ),
            )
        )
        if camera_info:
            info = camera_info_msg(ts, t + image_delay_ns, camera_frame, w, h)
            msgs.append(("/kitti/camera_color_left/camera_info", "sensor_msgs/msg/CameraInfo", t + 2, info))
    return write_bag(bag_path(tmp_path, fmt, "kitti_2011_09_26"), fmt, msgs)


def test_inspect_kitti_raw_log(datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = kitti_raw_bag(datasets, tmp_path, "ros1")
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    topics = {t["name"]: t for t in doc["topics"]}
    velo = topics["/kitti/velo/pointcloud"]
    assert velo["count"] == 19
    assert velo["rate_hz"] == pytest.approx(1e9 / 103_000_000, abs=1e-3)
    assert 110_000 < velo["pointcloud"]["mean_points"] < 116_000
    assert velo["pointcloud"]["per_point_time"] is False
    img = topics["/kitti/camera_color_left/image_raw"]["image"]
    assert (img["width"], img["height"], img["encoding"]) == (1242, 375, "rgb8")
    assert img["camera_info_topic"] == "/kitti/camera_color_left/camera_info"
    # the bag has no TF: the camera's extrinsics are unknown, and the report says how to fix that
    assert len(doc["problems"]) == 1
    assert "camera kitti_camera_color_left left out" in doc["problems"][0]
    assert "--calibration FILE" in doc["problems"][0]
    assert doc["sync"] == []


SAMPLE = Path(__file__).resolve().parents[2] / "data_samples" / "sim_drive.mcap"


def test_inspect_sample_log_finds_lidar_three_cameras_and_the_tf_tree(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["inspect", str(SAMPLE), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    topics = {t["name"]: t for t in doc["topics"]}
    lidar = topics["/lidar/points"]
    assert (lidar["count"], lidar["rate_hz"]) == (30, pytest.approx(10.0, abs=1e-3))
    assert lidar["pointcloud"]["per_point_time"] is True
    assert lidar["pointcloud"]["mean_points"] > 10_000
    assert len(doc["cameras"]) == 3 and all(c["camera_info_topic"] for c in doc["cameras"])
    assert {(e["parent"], e["child"]) for e in doc["tf"]} >= {("odom", "base_link"), ("base_link", "lidar")}
    assert doc["problems"] == []
    assert {c["camera"]: c["pairing_rate"] for c in doc["sync"]} == {
        "camera_front": 1.0,
        "camera_left": 1.0,
        "camera_rear": 1.0,
    }
    assert all(c["calibration"] == "bag" and c["offset_max_ms"] < 0.01 for c in doc["sync"])


def test_inspect_kitti_raw_log_with_kitti_calibration_pairs_the_camera(
    datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No CameraInfo and no TF in the bag: --calibration with KITTI's own calib folder supplies the
    camera model and velodyne->camera extrinsics (frames named as calib.loaders names them)."""
    calib_dir = datasets / "kitti_raw_2011_09_26_calib_timestamps/test_data/kitti/2011_09_26_calib/2011_09_26"
    path = kitti_raw_bag(
        datasets,
        tmp_path,
        "mcap",
        lidar_frame="velodyne",
        camera_frame="cam2_rect",
        camera_info=False,
        image_delay_ns=50_000_000,  # the camera fires as the sweep (starting behind) faces forward
    )
    assert main(["inspect", str(path), "--json", "--calibration", str(calib_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["problems"] == []
    (sync,) = doc["sync"]
    assert sync["camera"] == "kitti_camera_color_left"
    assert sync["calibration"].startswith(str(calib_dir))
    (camera,) = doc["cameras"]
    assert (camera["frame_id"], camera["width"], camera["height"]) == ("cam2_rect", 1242, 375)
    assert sync["pairing_rate"] == 1.0


def test_inspect_with_a_calibration_file_that_does_not_parse_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "calib.yaml"
    bad.write_text("cameras:\n  - name: front\n    width: [oops\n")
    assert main(["inspect", str(SAMPLE), "--calibration", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "calib.yaml:" in err[0]
