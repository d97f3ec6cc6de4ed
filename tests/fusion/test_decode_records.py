"""CameraInfo, TF and Odometry records from both rosbags stores; header stamps."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from fusion.bags import typestore_for
from fusion.decode import (
    CameraInfoRecord,
    TransformRecord,
    decode_camera_info,
    decode_odometry,
    decode_tf,
    frame_id,
    stamp_ns,
)
from fusion.errors import DecodeError

ROS2 = typestore_for("ros2")
ROS1 = typestore_for("ros1")  # Noetic + tf2_msgs/TFMessage
STORES = {"ros1": ROS1, "ros2": ROS2}

K = (500.0, 0.0, 320.5, 0.0, 501.0, 240.25, 0.0, 0.0, 1.0)
R = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
P = (500.0, 0.0, 320.5, 0.0, 0.0, 501.0, 240.25, 0.0, 0.0, 0.0, 1.0, 0.0)
D = (-0.25, 0.1, 0.001, -0.002, 0.0)


def has_field(ts: Typestore, msgtype: str, name: str) -> bool:
    return any(field == name for field, _ in ts.fielddefs[msgtype][1])


def header(ts: Typestore, frame: str, sec: int = 1_700_000_000, nanosec: int = 999_999_999) -> Any:
    stamp = ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    if has_field(ts, "std_msgs/msg/Header", "seq"):
        return ts.types["std_msgs/msg/Header"](seq=3, stamp=stamp, frame_id=frame)
    return ts.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame)


def camera_info(ts: Typestore, frame: str = "cam_front") -> Any:
    """CameraInfo in the store's own spelling (ROS1 D/K/R/P, ROS2 d/k/r/p)."""
    upper = has_field(ts, "sensor_msgs/msg/CameraInfo", "K")
    arrays = {"d": np.array(D), "k": np.array(K), "r": np.array(R), "p": np.array(P)}
    if upper:
        arrays = {name.upper(): value for name, value in arrays.items()}
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=header(ts, frame),
        height=480,
        width=640,
        distortion_model="plumb_bob",
        binning_x=0,
        binning_y=0,
        roi=roi,
        **arrays,
    )


def transform(
    ts: Typestore, parent: str, child: str, xyz: tuple[float, float, float], xyzw: tuple[float, ...]
) -> Any:
    vec = ts.types["geometry_msgs/msg/Vector3"](x=xyz[0], y=xyz[1], z=xyz[2])
    quat = ts.types["geometry_msgs/msg/Quaternion"](x=xyzw[0], y=xyzw[1], z=xyzw[2], w=xyzw[3])
    return ts.types["geometry_msgs/msg/TransformStamped"](
        header=header(ts, parent, sec=10, nanosec=5),
        child_frame_id=child,
        transform=ts.types["geometry_msgs/msg/Transform"](translation=vec, rotation=quat),
    )


def tf_message(ts: Typestore, transforms: list[Any]) -> Any:
    return ts.types["tf2_msgs/msg/TFMessage"](transforms=transforms)


def odometry(ts: Typestore) -> Any:
    t = ts.types
    pose = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=1.0, y=2.0, z=3.0),
        orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.6, w=0.8),
    )
    twist = t["geometry_msgs/msg/Twist"](
        linear=t["geometry_msgs/msg/Vector3"](x=10.0, y=0.5, z=0.0),
        angular=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.25),
    )
    return t["nav_msgs/msg/Odometry"](
        header=header(ts, "/odom"),
        child_frame_id="/base_link",
        pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)),
    )


def test_stamp_ns_combines_seconds_and_nanoseconds_exactly() -> None:
    assert stamp_ns(header(ROS2, "x", sec=1_700_000_000, nanosec=999_999_999)) == 1_700_000_000_999_999_999
    assert stamp_ns(header(ROS1, "x", sec=0, nanosec=1)) == 1


def test_frame_id_strips_leading_slashes_and_whitespace() -> None:
    assert frame_id("/base_link") == "base_link"
    assert frame_id(" //velodyne ") == "velodyne"
    assert frame_id("map") == "map"


@pytest.mark.parametrize("store", ["ros1", "ros2"])
def test_camera_info_decodes_from_either_spelling(store: str) -> None:
    rec = decode_camera_info(camera_info(STORES[store]))

    assert rec == CameraInfoRecord(
        frame_id="cam_front",
        stamp_ns=1_700_000_000_999_999_999,
        width=640,
        height=480,
        distortion_model="plumb_bob",
        d=D,
        k=K,
        r=R,
        p=P,
    )
    assert all(type(v) is float for v in rec.k + rec.d)


def test_camera_info_of_the_plain_ros1_noetic_store_decodes() -> None:
    plain = get_typestore(Stores.ROS1_NOETIC)
    assert decode_camera_info(camera_info(plain)).k == K


def test_camera_info_with_a_short_k_raises() -> None:
    msg = camera_info(ROS2)
    object.__setattr__(msg, "k", np.array(K[:8]))
    with pytest.raises(
        DecodeError, match=r"CameraInfo of frame 'cam_front': field k has 8 values, expected 9"
    ):
        decode_camera_info(msg)


@pytest.mark.parametrize("store", ["ros1", "ros2"])
@pytest.mark.parametrize("static", [False, True])
def test_tf_message_gives_one_record_per_transform_without_leading_slash(store: str, static: bool) -> None:
    ts = STORES[store]
    msg = tf_message(
        ts,
        [
            transform(ts, "/base_link", "/velodyne", (1.0, 0.0, 1.8), (0.0, 0.0, 0.0, 1.0)),
            transform(ts, "base_link", "cam_front", (1.5, 0.1, 1.4), (-0.5, 0.5, -0.5, 0.5)),
        ],
    )

    recs = decode_tf(msg, static=static)

    assert recs == [
        TransformRecord(
            "base_link", "velodyne", 10_000_000_005, (1.0, 0.0, 1.8), (0.0, 0.0, 0.0, 1.0), static
        ),
        TransformRecord(
            "base_link", "cam_front", 10_000_000_005, (1.5, 0.1, 1.4), (-0.5, 0.5, -0.5, 0.5), static
        ),
    ]


BadTransform = tuple[str, str, tuple[float, float, float], tuple[float, ...]]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (("", "a", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)), "an empty frame id"),
        (("/a", "a", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)), "the same parent and child frame"),
        (("a", "b", (float("nan"), 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)), "a NaN or infinite value"),
        (("a", "b", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)), "an unnormalised quaternion"),
    ],
)
def test_transforms_tf2_would_reject_are_skipped_with_a_warning(
    bad: BadTransform, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = transform(ROS2, "map", "odom", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))
    msg = tf_message(ROS2, [transform(ROS2, *bad), good])

    with caplog.at_level(logging.WARNING, logger="fusion.decode.records"):
        recs = decode_tf(msg, static=False)

    assert [(r.parent, r.child) for r in recs] == [("map", "odom")]
    assert reason in caplog.text


@pytest.mark.parametrize("store", ["ros1", "ros2"])
def test_odometry_decodes_pose_and_twist(store: str) -> None:
    rec = decode_odometry(odometry(STORES[store]))

    assert (rec.parent, rec.child) == ("odom", "base_link")
    assert rec.stamp_ns == 1_700_000_000_999_999_999
    assert rec.translation == (1.0, 2.0, 3.0)
    assert rec.rotation_xyzw == (0.0, 0.0, 0.6, 0.8)
    assert rec.linear_velocity == (10.0, 0.5, 0.0)
    assert rec.angular_velocity == (0.0, 0.0, 0.25)


def test_decoders_reject_messages_of_another_type() -> None:
    info = camera_info(ROS2)
    with pytest.raises(
        DecodeError, match=r"decode_tf reads tf2_msgs/msg/TFMessage or tf/msg/tfMessage, got a "
    ):
        decode_tf(info, static=True)
    with pytest.raises(DecodeError, match=r"decode_odometry reads nav_msgs/msg/Odometry, got a sensor_msgs"):
        decode_odometry(info)
    with pytest.raises(
        DecodeError, match=r"decode_camera_info reads sensor_msgs/msg/CameraInfo, got a nav_msgs"
    ):
        decode_camera_info(odometry(ROS2))
