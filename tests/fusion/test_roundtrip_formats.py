"""Write -> read -> decode round trip through every bag format.

For ROS1 .bag, ROS2 sqlite3 and ROS2 MCAP, a bag is written in tmp_path with rosbags'
writers holding PointCloud2 messages in the drivers' layouts (Velodyne, Ouster
organised with row padding, Hesai float64 timestamps, big-endian), an Image, a
CompressedImage, CameraInfo, TF and Odometry. It is read back through
`fusion.bags.open_bag` and decoded; every field must equal what was written, value
and dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Writer2
from rosbags.typesys.store import Typestore

from fusion.bags import open_bag, typestore_for
from fusion.decode import (
    decode_camera_info,
    decode_image,
    decode_odometry,
    decode_pointcloud2,
    decode_tf,
)
from tests.fusion.test_decode_image import compressed_image, encode, random_rgb, raw_image
from tests.fusion.test_decode_pointcloud import (
    HESAI,
    OUSTER,
    STAMP_NS,
    VELODYNE,
    Layout,
    driver_columns,
    expected_time_offsets,
    pack_cloud,
    xyz_of,
)
from tests.fusion.test_decode_records import K, camera_info, odometry, tf_message, transform

Distro = Literal["ros1", "ros2"]


@dataclass(frozen=True)
class CloudCase:
    """One PointCloud2 topic: what was packed, and how."""

    topic: str
    layout: Layout
    height: int
    width: int
    row_pad: int
    bigendian: bool
    nan_rows: tuple[int, ...]  # indices of points whose x is set to NaN

    def columns(self, seed: int) -> dict[str, npt.NDArray[Any]]:
        cols = driver_columns(self.layout, self.height * self.width, seed)
        cols["x"][list(self.nan_rows)] = np.nan
        return cols


CLOUDS = (
    CloudCase("/velodyne_points", VELODYNE, 1, 300, 0, False, (3, 100)),
    CloudCase("/ouster/points", OUSTER, 8, 64, 16, False, (0, 511)),
    CloudCase("/hesai/pandar", HESAI, 1, 200, 0, False, ()),
    CloudCase("/big_endian/points", VELODYNE, 4, 25, 6, True, (7,)),
)
MESSAGES_PER_CLOUD_TOPIC = 2
LOG_T0_NS = STAMP_NS + 40_000_000  # record times differ from header stamps on purpose


def cloud_messages(ts: Typestore) -> Iterator[tuple[str, str, Any]]:
    for case in CLOUDS:
        for seed in range(MESSAGES_PER_CLOUD_TOPIC):
            msg = pack_cloud(
                case.layout,
                case.columns(seed),
                height=case.height,
                width=case.width,
                row_pad=case.row_pad,
                bigendian=case.bigendian,
                ts=ts,
            )
            yield case.topic, "sensor_msgs/msg/PointCloud2", msg


def other_messages(ts: Typestore) -> Iterator[tuple[str, str, Any]]:
    rgb = random_rgb(21)
    yield "/cam/image_raw", "sensor_msgs/msg/Image", raw_image(rgb[..., ::-1], "bgr8", row_pad=4, ts=ts)
    yield (
        "/cam/image_raw/compressed",
        "sensor_msgs/msg/CompressedImage",
        compressed_image(encode(".png", rgb[..., ::-1]), "rgb8; png compressed bgr8", ts=ts),
    )
    yield "/cam/camera_info", "sensor_msgs/msg/CameraInfo", camera_info(ts)
    yield (
        "/tf_static",
        "tf2_msgs/msg/TFMessage",
        tf_message(ts, [transform(ts, "/base_link", "/velodyne", (1.0, 0.0, 1.8), (0.0, 0.0, 0.0, 1.0))]),
    )
    yield "/odom", "nav_msgs/msg/Odometry", odometry(ts)


def write_bag(path: Path, distro: Distro, open_writer: Callable[[Path], Any]) -> None:
    ts = typestore_for(distro)
    serialize = ts.serialize_ros1 if distro == "ros1" else ts.serialize_cdr
    conns: dict[str, Any] = {}
    with open_writer(path) as writer:
        messages = [*cloud_messages(ts), *other_messages(ts)]
        for i, (topic, msgtype, msg) in enumerate(messages):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], LOG_T0_NS + i * 1_000_000, serialize(msg, msgtype))


FORMATS: dict[str, tuple[Distro, str, Callable[[Path], Any]]] = {
    "ros1_bag": ("ros1", "drive.bag", Writer1),
    "ros2_sqlite3": (
        "ros2",
        "drive_sqlite3",
        lambda p: Writer2(p, version=9, storage_plugin=StoragePlugin.SQLITE3),
    ),
    "ros2_mcap": ("ros2", "drive_mcap", lambda p: Writer2(p, version=9, storage_plugin=StoragePlugin.MCAP)),
}


@pytest.fixture(params=sorted(FORMATS))
def bag_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    distro, name, open_writer = FORMATS[request.param]
    path = tmp_path / name
    write_bag(path, distro, open_writer)
    return path


def read_all(path: Path) -> dict[str, list[tuple[int, Any]]]:
    """Every message of the bag, deserialised, by topic: [(log_time_ns, msg), ...]."""
    out: dict[str, list[tuple[int, Any]]] = {}
    with open_bag(path) as bag:
        for raw in bag.messages():
            out.setdefault(raw.topic, []).append((raw.log_time_ns, bag.deserialize(raw)))
    return out


def test_pointclouds_survive_every_format_exactly(bag_path: Path) -> None:
    got = read_all(bag_path)

    for case in CLOUDS:
        assert len(got[case.topic]) == MESSAGES_PER_CLOUD_TOPIC, case.topic
        for seed, (_, msg) in enumerate(got[case.topic]):
            cloud = decode_pointcloud2(msg)
            cols = case.columns(seed)
            keep = np.ones(case.height * case.width, bool)
            keep[list(case.nan_rows)] = False
            kept = {name: col[keep] for name, col in cols.items()}

            assert cloud.num_dropped == len(case.nan_rows), case.topic
            assert cloud.xyz.dtype == np.float32
            np.testing.assert_array_equal(cloud.xyz, xyz_of(kept), err_msg=case.topic)
            assert cloud.intensity is not None and cloud.intensity.dtype == np.float32
            np.testing.assert_array_equal(cloud.intensity, kept["intensity"], err_msg=case.topic)
            assert cloud.ring is not None and cloud.ring.dtype == np.uint16
            np.testing.assert_array_equal(cloud.ring, kept["ring"], err_msg=case.topic)
            assert cloud.time_offset_ns is not None and cloud.time_offset_ns.dtype == np.int32
            np.testing.assert_array_equal(
                cloud.time_offset_ns, expected_time_offsets(case.layout, kept), err_msg=case.topic
            )
            assert cloud.stamp_ns == STAMP_NS
            assert cloud.frame_id == "lidar"


def test_images_calibration_tf_and_odometry_survive_every_format(bag_path: Path) -> None:
    got = read_all(bag_path)
    rgb = random_rgb(21)

    ((_, image_msg),) = got["/cam/image_raw"]
    raw = decode_image(image_msg)
    assert raw.pixels.dtype == np.uint8
    np.testing.assert_array_equal(raw.pixels, rgb)

    ((_, compressed_msg),) = got["/cam/image_raw/compressed"]
    png = decode_image(compressed_msg)
    np.testing.assert_array_equal(png.pixels, rgb)
    assert png.encoding == "rgb8; png compressed bgr8"

    ((_, info_msg),) = got["/cam/camera_info"]
    info = decode_camera_info(info_msg)
    assert info.k == K
    assert (info.width, info.height, info.frame_id) == (640, 480, "cam_front")

    ((_, tf_msg),) = got["/tf_static"]
    (tf,) = decode_tf(tf_msg, static=True)
    assert (tf.parent, tf.child, tf.stamp_ns, tf.static) == ("base_link", "velodyne", 10_000_000_005, True)
    assert tf.translation == (1.0, 0.0, 1.8)

    ((_, odom_msg),) = got["/odom"]
    odom = decode_odometry(odom_msg)
    assert (odom.parent, odom.child, odom.translation) == ("odom", "base_link", (1.0, 2.0, 3.0))


def test_record_times_stay_apart_from_header_stamps(bag_path: Path) -> None:
    got = read_all(bag_path)
    log_times = [t for msgs in got.values() for t, _ in msgs]
    total = len(CLOUDS) * MESSAGES_PER_CLOUD_TOPIC + 5
    assert sorted(log_times) == [LOG_T0_NS + i * 1_000_000 for i in range(total)]
    _, first_cloud = got[CLOUDS[0].topic][0]
    assert decode_pointcloud2(first_cloud).stamp_ns == STAMP_NS
