"""Typed records produced by decoding: small frozen dataclasses, numpy arrays inside.

Layouts: arrays are (N, C); time is int nanoseconds (`*_ns`); lengths in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, eq=False)
class PointCloud:
    """One LiDAR sweep in the frame `frame_id`, finite points only.

    xyz: (N, 3) float32, metres.
    intensity: (N,) float32 or None when the cloud has no intensity field.
    time_offset_ns: (N,) int32 or None: each point's capture time minus `stamp_ns`.
    ring: (N,) uint16 or None: laser (beam) index.
    stamp_ns: the PointCloud2 header stamp.
    num_dropped: points dropped because a coordinate was NaN or infinite.

    The arrays may be read-only strided views into the message buffer (fusion.decode avoids
    copying the common layouts); use np.ascontiguousarray where a dense copy is needed.
    """

    xyz: npt.NDArray[np.float32]
    intensity: npt.NDArray[np.float32] | None
    time_offset_ns: npt.NDArray[np.int32] | None
    ring: npt.NDArray[np.uint16] | None
    frame_id: str
    stamp_ns: int
    num_dropped: int = 0

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """One camera image. pixels: (H, W, 3) uint8 RGB, or (H, W) uint8/uint16 for mono."""

    pixels: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]
    frame_id: str
    stamp_ns: int
    encoding: str  # the encoding in the message: "rgb8", "bayer_rggb8", "jpeg", ...


@dataclass(frozen=True)
class CameraInfoRecord:
    """sensor_msgs/CameraInfo as plain values (calib.Camera is built from it)."""

    frame_id: str
    stamp_ns: int
    width: int
    height: int
    distortion_model: str  # "plumb_bob", "rational_polynomial", "equidistant", ...
    d: tuple[float, ...]
    k: tuple[float, ...]  # 9, row-major
    r: tuple[float, ...]  # 9, row-major
    p: tuple[float, ...]  # 12, row-major


@dataclass(frozen=True)
class TransformRecord:
    """One geometry_msgs/TransformStamped: `parent_from_child` at `stamp_ns`.

    translation: (x, y, z) metres; rotation: quaternion (x, y, z, w).
    Frame ids are stored without a leading '/'.
    """

    parent: str
    child: str
    stamp_ns: int
    translation: tuple[float, float, float]
    rotation_xyzw: tuple[float, float, float, float]
    static: bool


@dataclass(frozen=True)
class OdometryRecord:
    """nav_msgs/Odometry: pose of `child` in `parent` plus twist (in `child`)."""

    parent: str
    child: str
    stamp_ns: int
    translation: tuple[float, float, float]
    rotation_xyzw: tuple[float, float, float, float]
    linear_velocity: tuple[float, float, float]
    angular_velocity: tuple[float, float, float]
