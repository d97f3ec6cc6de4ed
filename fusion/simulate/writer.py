"""ROS messages of the simulated log, and writing them to a ROS1 or ROS2 (sqlite3 / MCAP) bag.

Messages are built with the type stores of `fusion.bags.typestore_for` (ROS1 Noetic, ROS2 Humble)
and written with rosbags' writers. The differences between the distros (ROS1 headers carry a
sequence number; CameraInfo's matrices are `D K R P` in ROS1, `d k r p` in ROS2) stay in here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import numpy as np
import numpy.typing as npt
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.rosbag2 import Writer as Writer2

from calib.camera import Camera
from fusion.bags import typestore_for
from fusion.simulate.geometry import quaternion_xyzw
from fusion.simulate.lidar import Sweep

Format = Literal["ros1", "mcap", "sqlite3"]

# sensor_msgs/PointField datatypes
_FLOAT32: Final = 7
_UINT16: Final = 4

POINT_FIELDS: Final = (
    ("x", 0, _FLOAT32),
    ("y", 4, _FLOAT32),
    ("z", 8, _FLOAT32),
    ("intensity", 12, _FLOAT32),
    ("ring", 16, _UINT16),
    ("time", 18, _FLOAT32),
)
"""(name, offset, PointField datatype) of the Velodyne driver's packed layout (point_step 22)."""

POINT_DTYPE: Final = np.dtype(
    {
        "names": [name for name, _, _ in POINT_FIELDS],
        "formats": ["<u2" if kind == _UINT16 else "<f4" for _, _, kind in POINT_FIELDS],
        "offsets": [offset for _, offset, _ in POINT_FIELDS],
        "itemsize": 22,
    }
)

_LATCHED_QOS: Final = Qos(
    QosHistory.KEEP_LAST,
    1,
    QosReliability.RELIABLE,
    QosDurability.TRANSIENT_LOCAL,
    QosTime(2147483647, 4294967295),
    QosTime(2147483647, 4294967295),
    QosLiveliness.AUTOMATIC,
    QosTime(2147483647, 4294967295),
    False,
)


class Messages:
    """Builds message objects for one distro."""

    def __init__(self, distro: Literal["ros1", "ros2"]) -> None:
        self.distro = distro
        self.store = typestore_for(distro)
        self._types = self.store.types
        self._seq: dict[str, int] = {}

    def serialize(self, msg: Any, msgtype: str) -> bytes:
        if self.distro == "ros1":
            return bytes(self.store.serialize_ros1(msg, msgtype))
        return bytes(self.store.serialize_cdr(msg, msgtype))

    def _time(self, stamp_ns: int) -> Any:
        return self._types["builtin_interfaces/msg/Time"](
            sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
        )

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        header_type = self._types["std_msgs/msg/Header"]
        if self.distro == "ros1":
            seq = self._seq.get(frame_id, 0)
            self._seq[frame_id] = seq + 1
            return header_type(seq=seq, stamp=self._time(stamp_ns), frame_id=frame_id)
        return header_type(stamp=self._time(stamp_ns), frame_id=frame_id)

    def _transform(self, transform: npt.NDArray[np.float64]) -> Any:
        t = self._types
        qx, qy, qz, qw = quaternion_xyzw(transform[:3, :3])
        return t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](
                x=float(transform[0, 3]), y=float(transform[1, 3]), z=float(transform[2, 3])
            ),
            rotation=t["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        )

    def tf_message(self, transforms: Sequence[tuple[int, str, str, npt.NDArray[np.float64]]]) -> Any:
        """tf2_msgs/TFMessage of (stamp_ns, parent, child, parent_from_child (4, 4)) entries."""
        t = self._types
        return t["tf2_msgs/msg/TFMessage"](
            transforms=[
                t["geometry_msgs/msg/TransformStamped"](
                    header=self.header(stamp, parent), child_frame_id=child, transform=self._transform(tr)
                )
                for stamp, parent, child, tr in transforms
            ]
        )

    def odometry(
        self,
        stamp_ns: int,
        parent: str,
        child: str,
        parent_from_child: npt.NDArray[np.float64],
        linear: tuple[float, float, float],
        angular: tuple[float, float, float],
    ) -> Any:
        """nav_msgs/Odometry: pose in `parent`, twist in `child` (ROS convention)."""
        t = self._types
        tr = self._transform(parent_from_child)
        pose_cov = np.diag([0.01, 0.01, 0.04, 0.001, 0.001, 0.002]).ravel()
        twist_cov = np.diag([0.005, 0.005, 0.01, 0.0005, 0.0005, 0.001]).ravel()
        return t["nav_msgs/msg/Odometry"](
            header=self.header(stamp_ns, parent),
            child_frame_id=child,
            pose=t["geometry_msgs/msg/PoseWithCovariance"](
                pose=t["geometry_msgs/msg/Pose"](
                    position=t["geometry_msgs/msg/Point"](
                        x=tr.translation.x, y=tr.translation.y, z=tr.translation.z
                    ),
                    orientation=tr.rotation,
                ),
                covariance=pose_cov,
            ),
            twist=t["geometry_msgs/msg/TwistWithCovariance"](
                twist=t["geometry_msgs/msg/Twist"](
                    linear=t["geometry_msgs/msg/Vector3"](x=linear[0], y=linear[1], z=linear[2]),
                    angular=t["geometry_msgs/msg/Vector3"](x=angular[0], y=angular[1], z=angular[2]),
                ),
                covariance=twist_cov,
            ),
        )

    def point_cloud(self, sweep: Sweep, frame_id: str) -> Any:
        """sensor_msgs/PointCloud2, unorganised (height 1), Velodyne layout, stamped at the sweep start."""
        t = self._types
        points = np.zeros(len(sweep), dtype=POINT_DTYPE)
        points["x"] = sweep.xyz[:, 0]
        points["y"] = sweep.xyz[:, 1]
        points["z"] = sweep.xyz[:, 2]
        points["intensity"] = sweep.intensity
        points["ring"] = sweep.ring
        points["time"] = sweep.time_offset_s
        field = t["sensor_msgs/msg/PointField"]
        fields = [
            field(name=name, offset=offset, datatype=kind, count=1) for name, offset, kind in POINT_FIELDS
        ]
        return t["sensor_msgs/msg/PointCloud2"](
            header=self.header(sweep.stamp_ns, frame_id),
            height=1,
            width=len(sweep),
            fields=fields,
            is_bigendian=False,
            point_step=POINT_DTYPE.itemsize,
            row_step=POINT_DTYPE.itemsize * len(sweep),
            data=np.frombuffer(points.tobytes(), dtype=np.uint8),
            is_dense=True,
        )

    def compressed_image(self, stamp_ns: int, frame_id: str, jpeg: bytes) -> Any:
        return self._types["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp_ns, frame_id), format="jpeg", data=np.frombuffer(jpeg, dtype=np.uint8)
        )

    def camera_info(self, stamp_ns: int, camera: Camera) -> Any:
        """sensor_msgs/CameraInfo of the raw image: K, D, R = I, P = [K | 0]."""
        t = self._types
        k = camera.K.ravel().astype(np.float64)
        d = np.asarray(camera.D, dtype=np.float64)
        r = np.eye(3).ravel()
        p = np.concatenate([camera.K, np.zeros((3, 1))], axis=1).ravel()
        roi = t["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        matrices = (
            {"D": d, "K": k, "R": r, "P": p} if self.distro == "ros1" else {"d": d, "k": k, "r": r, "p": p}
        )
        return t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, camera.frame_id),
            height=camera.height,
            width=camera.width,
            distortion_model=camera.model,
            binning_x=0,
            binning_y=0,
            roi=roi,
            **matrices,
        )


class BagSink:
    """One bag being written (a context manager): connections by topic, serialized writes.

    `path` must not exist: ros1 -> a .bag file, mcap / sqlite3 -> a ROS2 bag directory (its
    storage file is named after the directory). Storage compression: MCAP chunks are
    zstd-compressed; ROS1 and sqlite3 are written uncompressed.
    """

    def __init__(self, path: Path, fmt: Format) -> None:
        self.fmt = fmt
        self.messages = Messages("ros1" if fmt == "ros1" else "ros2")
        self._conns: dict[str, tuple[Any, str]] = {}
        self._writer: Writer1 | Writer2
        if fmt == "ros1":
            self._writer = Writer1(path)
        else:
            plugin = StoragePlugin.MCAP if fmt == "mcap" else StoragePlugin.SQLITE3
            self._writer = Writer2(path, version=9, storage_plugin=plugin)
            if fmt == "mcap":
                self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)

    def __enter__(self) -> Self:
        self._writer.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._writer.close()
        else:
            self._writer.abort()

    def add_topic(self, topic: str, msgtype: str, *, latched: bool = False) -> None:
        store = self.messages.store
        if isinstance(self._writer, Writer1):
            conn = self._writer.add_connection(
                topic, msgtype, typestore=store, latching=1 if latched else None
            )
        else:
            qos = [_LATCHED_QOS] if latched else []
            conn = self._writer.add_connection(topic, msgtype, typestore=store, offered_qos_profiles=qos)
        self._conns[topic] = (conn, msgtype)

    def write(self, topic: str, log_time_ns: int, msg: Any) -> None:
        conn, msgtype = self._conns[topic]
        self._writer.write(conn, log_time_ns, self.messages.serialize(msg, msgtype))

    def write_raw(self, topic: str, log_time_ns: int, data: bytes) -> None:
        conn, _ = self._conns[topic]
        self._writer.write(conn, log_time_ns, data)
