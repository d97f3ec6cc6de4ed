"""The simulated sensor rig: a spinning LiDAR and cameras, mounted on `base_link`.

Frames (all right-handed)::

    odom (world, fixed) --/tf, /odom--> base_link (ego: x forward, y left, z up; on the ground)
    base_link --/tf_static--> lidar          (x forward, y left, z up; a small yaw on its mount)
    base_link --/tf_static--> camera_<name>  (optical: x right, y down, z forward)

The LiDAR spins clockwise seen from above (azimuth decreasing, as Velodyne sensors do), starting
each sweep at `start_azimuth` (backwards). Column c of a sweep fires at offset
`column_offsets_ns()[c]` after the sweep's header stamp; all its beams fire at once. A camera is
triggered when the sweep crosses its optical axis (the nuScenes scheme): at the sweep stamp plus
`trigger_offset_ns(camera)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from calib.camera import Camera
from fusion.simulate.geometry import apply, inverse, rotation_zyx, transform_from_rotation

F64 = npt.NDArray[np.float64]

VLP32C_ELEVATIONS_DEG: Final = (
    -25.0,
    -15.639,
    -11.31,
    -8.843,
    -7.254,
    -6.148,
    -5.333,
    -4.667,
    -4.0,
    -3.667,
    -3.333,
    -3.0,
    -2.667,
    -2.333,
    -2.0,
    -1.667,
    -1.333,
    -1.0,
    -0.667,
    -0.333,
    0.0,
    0.333,
    0.667,
    1.0,
    1.333,
    1.667,
    2.333,
    3.333,
    4.667,
    7.0,
    10.333,
    15.0,
)
"""Beam elevations of a Velodyne VLP-32C (degrees, ring 0 lowest): dense around the horizon."""

HDL64E_ELEVATIONS_DEG: Final = tuple(
    round(float(e), 3)
    for e in np.concatenate([np.linspace(-24.833, -8.833, 32), np.linspace(-8.333, 2.0, 32)])
)
"""Beam elevations of a Velodyne HDL-64E (degrees, ring 0 lowest; KITTI's sensor): a lower block of
32 lasers 1/2 degree apart from -24.8 to -8.8 and an upper block 1/3 degree apart up to +2."""

LIDAR_MODELS: Final[Mapping[str, tuple[float, ...]]] = MappingProxyType(
    {
        "vlp32c": VLP32C_ELEVATIONS_DEG,
        "hdl64e": HDL64E_ELEVATIONS_DEG,
    }
)
"""The simulated LiDAR models by name: their beam elevations (the `lidar` option of `simulate_log`).
At 10 Hz an HDL-64E fires about 2000 columns a revolution (`lidar_columns=2048`: ~120k points a sweep)."""

# Optical frame (x right, y down, z forward) expressed in a body frame (x forward, y left, z up).
_BODY_FROM_OPTICAL: Final = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class LidarSpec:
    """A spinning LiDAR and its mount on base_link."""

    frame_id: str = "lidar"
    topic: str = "/lidar/points"
    elevations_deg: tuple[float, ...] = VLP32C_ELEVATIONS_DEG  # one per ring, ring 0 first
    columns: int = 720  # firings per revolution
    period_ns: int = 100_000_000  # one revolution (10 Hz)
    start_azimuth: float = math.pi  # radians in the lidar frame where each sweep starts
    clockwise: bool = True  # seen from above: azimuth decreases with time
    min_range: float = 1.0  # metres
    max_range: float = 100.0
    range_noise: float = 0.012  # standard deviation of the range, metres
    mount_xyz: tuple[float, float, float] = (1.2, 0.0, 1.85)  # in base_link
    mount_yaw: float = 0.025  # radians

    def base_from_lidar(self) -> F64:
        """(4, 4) `base_link_from_lidar`."""
        return transform_from_rotation(rotation_zyx(self.mount_yaw, 0.0, 0.0), self.mount_xyz)

    def column_offsets_ns(self) -> npt.NDArray[np.int64]:
        """(C,) int64: when each column fires, after the sweep's header stamp."""
        c = np.arange(self.columns, dtype=np.int64)
        return (c * self.period_ns + self.columns // 2) // self.columns

    def column_azimuths(self) -> F64:
        """(C,) azimuth (radians, lidar frame, from +x towards +y) of each column."""
        sign = -1.0 if self.clockwise else 1.0
        return self.start_azimuth + sign * 2.0 * math.pi * np.arange(self.columns) / self.columns

    def beam_directions(self) -> F64:
        """(C, B, 3) unit ray directions in the lidar frame, column-major (the firing order)."""
        az = self.column_azimuths()[:, None]
        el = np.radians(np.asarray(self.elevations_deg, dtype=np.float64))[None, :]
        return np.stack(
            np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), axis=-1
        )

    def crossing_offset_ns(self, azimuth: float) -> int:
        """When the sweep crosses `azimuth` (lidar frame): the angle swept from the start / 2 pi * period."""
        swept = (self.start_azimuth - azimuth) if self.clockwise else (azimuth - self.start_azimuth)
        swept = swept % (2.0 * math.pi)
        return round(swept / (2.0 * math.pi) * self.period_ns)


@dataclass(frozen=True)
class CameraMount:
    """A camera, its topics and its mount on base_link (position, then yaw and downward pitch of the body)."""

    camera: Camera
    mount_xyz: tuple[float, float, float]
    mount_yaw: float  # radians: 0 looks forward, pi/2 left
    mount_pitch: float  # radians, positive looks down
    jpeg_quality: int = 80

    @property
    def name(self) -> str:
        return self.camera.name

    @property
    def image_topic(self) -> str:
        return f"/{self.camera.name}/image/compressed"

    @property
    def info_topic(self) -> str:
        return f"/{self.camera.name}/camera_info"

    def base_from_camera(self) -> F64:
        """(4, 4) `base_link_from_camera` (the camera's optical frame)."""
        body = rotation_zyx(self.mount_yaw, self.mount_pitch, 0.0)
        return transform_from_rotation(body @ _BODY_FROM_OPTICAL, self.mount_xyz)


@dataclass(frozen=True)
class Rig:
    """The sensors, the frames and the pose rate."""

    lidar: LidarSpec
    cameras: tuple[CameraMount, ...]
    world_frame: str = "odom"
    base_frame: str = "base_link"
    pose_period_ns: int = 20_000_000  # /tf and /odom at 50 Hz

    def lidar_from_camera(self, mount: CameraMount) -> F64:
        """(4, 4) `lidar_from_camera`."""
        return inverse(self.lidar.base_from_lidar()) @ mount.base_from_camera()

    def camera_azimuth(self, mount: CameraMount) -> float:
        """Azimuth of the camera's optical axis (its z) in the lidar frame, radians."""
        axis = apply(self.lidar_from_camera(mount), np.array([0.0, 0.0, 1.0])) - apply(
            self.lidar_from_camera(mount), np.zeros(3)
        )
        return math.atan2(float(axis[1]), float(axis[0]))

    def trigger_offset_ns(self, mount: CameraMount) -> int:
        """When the camera fires, after the sweep's header stamp: as the sweep crosses its optical axis."""
        return self.lidar.crossing_offset_ns(self.camera_azimuth(mount))


def _camera(
    name: str,
    model: str,
    width: int,
    height: int,
    f: float,
    cx_off: float,
    cy_off: float,
    d: tuple[float, ...],
) -> Camera:
    k = np.array(
        [[f, 0.0, (width - 1) / 2.0 + cx_off], [0.0, f * 1.002, (height - 1) / 2.0 + cy_off], [0.0, 0.0, 1.0]]
    )
    return Camera(name=name, frame_id=name, width=width, height=height, model=model, K=k, D=d)  # type: ignore[arg-type]


def default_rig(
    width: int = 640, height: int = 400, columns: int = 720, jpeg_quality: int = 80, lidar: str = "vlp32c"
) -> Rig:
    """A spinning LiDAR (`lidar`, a name in LIDAR_MODELS: VLP-32C-like by default) and three cameras,
    one per distortion model.

    camera_front: plumb_bob, ~90 degrees horizontal field of view.
    camera_left: rational_polynomial, a strong wide-angle lens (~145 degrees).
    camera_rear: equidistant (fisheye), ~140 degrees.
    Focal lengths scale with `width` so the fields of view stay put.
    """
    scale = width / 640.0
    front = _camera(
        "camera_front",
        "plumb_bob",
        width,
        height,
        360.0 * scale,
        1.7 * scale,
        -2.3 * scale,
        (-0.28, 0.075, 0.0008, -0.0005, 0.0),
    )
    left = _camera(
        "camera_left",
        "rational_polynomial",
        width,
        height,
        250.0 * scale,
        -2.1 * scale,
        1.4 * scale,
        (2.8, 1.2, 0.0003, -0.0002, 0.05, 3.2, 2.2, 0.25),
    )
    rear = _camera(
        "camera_rear",
        "equidistant",
        width,
        height,
        260.0 * scale,
        0.9 * scale,
        1.1 * scale,
        (0.03, -0.006, 0.001, -0.0002),
    )
    return Rig(
        lidar=LidarSpec(elevations_deg=LIDAR_MODELS[lidar], columns=columns),
        cameras=(
            CameraMount(front, (1.7, 0.0, 1.55), 0.0, math.radians(3.0), jpeg_quality),
            CameraMount(left, (1.0, 0.95, 1.5), 0.5 * math.pi, math.radians(6.0), jpeg_quality),
            CameraMount(rear, (-0.6, 0.0, 1.4), math.pi, math.radians(12.0), jpeg_quality),
        ),
    )
