"""Small ROS messages as plain records: header stamps, CameraInfo, TF, Odometry.

Every decoder here (and in `pointcloud` and `image`) takes a message object as
deserialised by rosbags, from the ROS1 (Noetic) or the ROS2 store; the two stores
spell some fields differently (CameraInfo `K` in ROS1, `k` in ROS2) and both are
accepted. Frame ids are returned without a leading '/' (ROS1 tf allowed "/base_link",
tf2 does not), so `"/base_link"` and `"base_link"` name the same frame downstream.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from fusion.decode.types import CameraInfoRecord, OdometryRecord, TransformRecord
from fusion.errors import DecodeError

logger = logging.getLogger(__name__)

_NS_PER_S = 1_000_000_000

# Message types each decoder accepts (rosbags names ROS1 and ROS2 types the same way).
CAMERA_INFO_TYPES = ("sensor_msgs/msg/CameraInfo",)
TF_TYPES = ("tf2_msgs/msg/TFMessage", "tf/msg/tfMessage")
ODOMETRY_TYPES = ("nav_msgs/msg/Odometry",)

# tf2 rejects a rotation whose quaternion norm is further than this from 1.
_QUATERNION_NORM_TOLERANCE = 0.01


def time_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (or ROS1 time, which rosbags gives the same fields) as int ns."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def stamp_ns(header: Any) -> int:
    """A std_msgs/Header's stamp as int nanoseconds since the epoch (or sim-time zero)."""
    return time_ns(header.stamp)


def frame_id(name: str) -> str:
    """A frame id as the project stores it: surrounding whitespace and leading '/' removed."""
    return str(name).strip().lstrip("/")


def check_msgtype(msg: Any, accepted: Sequence[str], decoder: str) -> None:
    """Raise DecodeError when `msg` is a rosbags message of a type `decoder` cannot read.

    Objects without `__msgtype__` (hand-built stand-ins) are let through: the decoder
    then reads fields by name.
    """
    msgtype = getattr(msg, "__msgtype__", None)
    if msgtype is not None and msgtype not in accepted:
        raise DecodeError(
            f"{decoder} reads {' or '.join(accepted)}, got a {msgtype} message; "
            "pick the decoder that matches the topic's message type (see `fusion inspect`)"
        )


def _floats(values: Iterable[Any], *, field: str, expected: int | None, where: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if expected is not None and len(out) != expected:
        raise DecodeError(f"{where}: field {field} has {len(out)} values, expected {expected}")
    return out


def _either(msg: Any, ros2_name: str, ros1_name: str) -> Any:
    if hasattr(msg, ros2_name):
        return getattr(msg, ros2_name)
    if hasattr(msg, ros1_name):
        return getattr(msg, ros1_name)
    raise DecodeError(
        f"CameraInfo message has neither field '{ros2_name}' (ROS2) nor '{ros1_name}' (ROS1); "
        "is the topic really sensor_msgs/CameraInfo?"
    )


def decode_camera_info(msg: Any) -> CameraInfoRecord:
    """sensor_msgs/CameraInfo (ROS1 `D/K/R/P` or ROS2 `d/k/r/p` spelling) -> CameraInfoRecord."""
    check_msgtype(msg, CAMERA_INFO_TYPES, "decode_camera_info")
    frame = frame_id(msg.header.frame_id)
    where = f"CameraInfo of frame '{frame}'"
    return CameraInfoRecord(
        frame_id=frame,
        stamp_ns=stamp_ns(msg.header),
        width=int(msg.width),
        height=int(msg.height),
        distortion_model=str(msg.distortion_model),
        d=_floats(_either(msg, "d", "D"), field="d", expected=None, where=where),
        k=_floats(_either(msg, "k", "K"), field="k", expected=9, where=where),
        r=_floats(_either(msg, "r", "R"), field="r", expected=9, where=where),
        p=_floats(_either(msg, "p", "P"), field="p", expected=12, where=where),
    )


def _transform_problem(rec: TransformRecord) -> str | None:
    """Why tf2 would refuse this transform, or None when it is valid."""
    if not rec.parent or not rec.child:
        return "an empty frame id"
    if rec.parent == rec.child:
        return "the same parent and child frame"
    values = rec.translation + rec.rotation_xyzw
    if not all(math.isfinite(v) for v in values):
        return "a NaN or infinite value"
    norm = math.sqrt(sum(q * q for q in rec.rotation_xyzw))
    if abs(norm - 1.0) > _QUATERNION_NORM_TOLERANCE:
        return f"an unnormalised quaternion (norm {norm:.4g})"
    return None


def decode_tf(msg: Any, static: bool) -> list[TransformRecord]:
    """tf2_msgs/TFMessage (from /tf, or /tf_static with `static=True`) -> one record per transform.

    Transforms that tf2 itself would reject (empty frame id, parent == child, NaN or
    infinite values, quaternion norm off 1 by more than 0.01) are skipped with a
    warning, as tf2 does, so one bad broadcaster does not hide the others.
    """
    check_msgtype(msg, TF_TYPES, "decode_tf")
    records: list[TransformRecord] = []
    for tf in msg.transforms:
        tr = tf.transform.translation
        rot = tf.transform.rotation
        rec = TransformRecord(
            parent=frame_id(tf.header.frame_id),
            child=frame_id(tf.child_frame_id),
            stamp_ns=stamp_ns(tf.header),
            translation=(float(tr.x), float(tr.y), float(tr.z)),
            rotation_xyzw=(float(rot.x), float(rot.y), float(rot.z), float(rot.w)),
            static=static,
        )
        problem = _transform_problem(rec)
        if problem is not None:
            logger.warning(
                "skipping transform %r <- %r at %d ns: it has %s (tf2 would reject it too)",
                rec.parent,
                rec.child,
                rec.stamp_ns,
                problem,
            )
            continue
        records.append(rec)
    return records


def decode_odometry(msg: Any) -> OdometryRecord:
    """nav_msgs/Odometry -> OdometryRecord (pose of child_frame_id in header.frame_id, twist in child)."""
    check_msgtype(msg, ODOMETRY_TYPES, "decode_odometry")
    pos = msg.pose.pose.position
    rot = msg.pose.pose.orientation
    lin = msg.twist.twist.linear
    ang = msg.twist.twist.angular
    return OdometryRecord(
        parent=frame_id(msg.header.frame_id),
        child=frame_id(msg.child_frame_id),
        stamp_ns=stamp_ns(msg.header),
        translation=(float(pos.x), float(pos.y), float(pos.z)),
        rotation_xyzw=(float(rot.x), float(rot.y), float(rot.z), float(rot.w)),
        linear_velocity=(float(lin.x), float(lin.y), float(lin.z)),
        angular_velocity=(float(ang.x), float(ang.y), float(ang.z)),
    )
