"""calib.deskew: a sweep from a moving, turning ego lands where the sensor was at the reference time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calib import TransformBuffer, deskew
from calib.deskew import deskew_grid
from calib.errors import CalibrationError
from calib.transform import invert_matrices
from fusion.decode.types import TransformRecord

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
SPEED = 20.0  # m/s
YAW_RATE = math.radians(30.0)  # rad/s
STAMP = T0 + 500 * MS  # the sweep's reference time, mid-trajectory
LIDAR = TransformRecord(
    "base_link", "lidar", 0, (1.2, 0.1, 1.8), (0.01, -0.02, math.sin(0.05), 1.0), static=True
)


def _buffer(yaw_rate: float = YAW_RATE) -> TransformBuffer:
    """odom -> base_link at 100 Hz for 1 s (constant speed and yaw rate), base_link -> lidar static."""
    records = [LIDAR]
    for k in range(101):
        t = T0 + k * 10 * MS
        dt_s = (t - T0) * 1e-9
        yaw = yaw_rate * dt_s
        if yaw_rate == 0.0:
            xy = (SPEED * dt_s, 0.0)
        else:
            radius = SPEED / yaw_rate
            xy = (radius * math.sin(yaw), radius * (1.0 - math.cos(yaw)))
        q = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
        records.append(TransformRecord("odom", "base_link", t, (*xy, 0.0), q, static=False))
    return TransformBuffer.from_records(records)


def _apply_each(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """matrices (N, 4, 4) applied to points (N, 3) one to one."""
    out: np.ndarray = np.einsum("nij,nj->ni", matrices[:, :3, :3], points) + matrices[:, :3, 3]
    return out


def _exact_deskew(buffer: TransformBuffer, xyz: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The reference: one full lookup per point (vectorised)."""
    odom_from_lidar_i = buffer.lookup_many("odom", "lidar", STAMP + offsets.astype(np.int64))
    lidar_ref_from_odom = buffer.lookup("lidar", "odom", STAMP).matrix
    return _apply_each(lidar_ref_from_odom @ odom_from_lidar_i, xyz.astype(np.float64))


def _wall_sweep(
    buffer: TransformBuffer, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Points (n, 3) float32 of a static wall x = x_wall (in odom), each seen in the lidar frame at
    its own capture time STAMP + offset, offsets (n,) int32 over a 100 ms sweep; and x_wall."""
    odom_from_lidar_ref = buffer.lookup("odom", "lidar", STAMP)
    x_wall = float(odom_from_lidar_ref.translation[0]) + 30.0
    wall = np.column_stack(
        [
            np.full(n, x_wall),
            odom_from_lidar_ref.translation[1] + rng.uniform(-15.0, 15.0, n),
            rng.uniform(-1.5, 2.0, n),
        ]
    )
    offsets = rng.integers(0, 100 * MS, n).astype(np.int32)
    lidar_i_from_odom = invert_matrices(buffer.lookup_many("odom", "lidar", STAMP + offsets.astype(np.int64)))
    return _apply_each(lidar_i_from_odom, wall).astype(np.float32), offsets, x_wall


def test_deskewed_wall_points_lie_on_the_wall_at_the_reference_time() -> None:
    buffer = _buffer()
    xyz, offsets, x_wall = _wall_sweep(buffer, np.random.default_rng(0), 20_000)
    odom_from_lidar_ref = buffer.lookup("odom", "lidar", STAMP)

    fixed = deskew(xyz, offsets, STAMP, buffer, "lidar", "odom")

    assert fixed.dtype == np.float32
    assert fixed.shape == xyz.shape
    off_wall = odom_from_lidar_ref.apply(fixed)[:, 0] - x_wall
    assert np.abs(off_wall).max() < 1e-3
    raw_off_wall = odom_from_lidar_ref.apply(xyz)[:, 0] - x_wall
    late = offsets > 90 * MS
    assert np.abs(raw_off_wall[late]).min() > 1.0  # smeared by metres without deskew


def test_without_turning_the_raw_sweep_is_off_by_speed_times_dt() -> None:
    buffer = _buffer(yaw_rate=0.0)
    xyz, offsets, x_wall = _wall_sweep(buffer, np.random.default_rng(1), 5_000)
    odom_from_lidar_ref = buffer.lookup("odom", "lidar", STAMP)
    raw_off_wall = odom_from_lidar_ref.apply(xyz)[:, 0] - x_wall
    np.testing.assert_allclose(raw_off_wall, -SPEED * offsets * 1e-9, atol=1e-4)
    fixed = deskew(xyz, offsets, STAMP, buffer, "lidar", "odom")
    assert np.abs(odom_from_lidar_ref.apply(fixed)[:, 0] - x_wall).max() < 1e-3


def test_grid_deskew_stays_within_1_mm_of_the_exact_per_point_lookup() -> None:
    buffer = _buffer()
    rng = np.random.default_rng(2)
    n = 50_000
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    xyz = (direction * rng.uniform(1.0, 100.0, (n, 1))).astype(np.float32)
    offsets = rng.integers(-50 * MS, 50 * MS, n).astype(np.int32)  # reference time mid-sweep
    assert len(deskew_grid(offsets)) < n  # the grid path, not the exact one

    fixed = deskew(xyz, offsets, STAMP, buffer, "/lidar", "/odom")

    error = np.linalg.norm(fixed - _exact_deskew(buffer, xyz, offsets), axis=1)
    assert error.max() < 1e-3
    moved = np.linalg.norm(xyz - _exact_deskew(buffer, xyz, offsets), axis=1)
    assert moved.max() > 1.0


def test_a_sweep_with_few_points_is_deskewed_at_its_own_times() -> None:
    buffer = _buffer()
    rng = np.random.default_rng(3)
    xyz = rng.uniform(-40, 40, (50, 3)).astype(np.float32)
    offsets = rng.integers(0, 100 * MS, 50).astype(np.int32)
    np.testing.assert_array_equal(deskew_grid(offsets), np.unique(offsets))
    fixed = deskew(xyz, offsets, STAMP, buffer, "lidar", "odom")
    np.testing.assert_allclose(fixed, _exact_deskew(buffer, xyz, offsets), atol=1e-5)


def test_deskew_reads_a_read_only_strided_view_of_the_message_buffer() -> None:
    buffer = _buffer()
    rng = np.random.default_rng(4)
    n = 3_000
    layout = np.dtype(
        {"names": ["x", "y", "z", "intensity", "t", "ring"], "formats": ["<f4"] * 4 + ["<i4", "<u2"],
         "offsets": [0, 4, 8, 12, 16, 20], "itemsize": 32}
    )  # fmt: skip
    cloud = np.zeros(n, dtype=layout)
    for axis in "xyz":
        cloud[axis] = rng.uniform(-50, 50, n)
    cloud["t"] = rng.integers(0, 100 * MS, n)
    data = cloud.tobytes()  # immutable, as a deserialised message's data field
    xyz = np.ndarray((n, 3), dtype=np.float32, buffer=data, strides=(32, 4))
    offsets = np.ndarray((n,), dtype=np.int32, buffer=data, offset=16, strides=(32,))
    assert not xyz.flags.writeable
    assert not xyz.flags.c_contiguous
    assert not offsets.flags.c_contiguous

    fixed = deskew(xyz, offsets, STAMP, buffer, "lidar", "odom")

    dense = deskew(np.ascontiguousarray(xyz), np.ascontiguousarray(offsets), STAMP, buffer, "lidar", "odom")
    np.testing.assert_array_equal(fixed, dense)
    np.testing.assert_allclose(fixed, _exact_deskew(buffer, xyz, offsets), atol=1e-3)


def test_a_sweep_captured_at_one_instant_is_unchanged() -> None:
    buffer = _buffer()
    xyz = np.random.default_rng(5).uniform(-50, 50, (1000, 3)).astype(np.float32)
    fixed = deskew(xyz, np.zeros(1000, dtype=np.int32), STAMP, buffer, "lidar", "odom")
    np.testing.assert_allclose(fixed, xyz, atol=1e-5)
    empty = deskew(np.zeros((0, 3), np.float32), np.zeros(0, np.int32), STAMP, buffer, "lidar", "odom")
    assert empty.shape == (0, 3)


def test_deskew_without_tf_over_the_sweep_is_refused() -> None:
    buffer = _buffer()
    xyz = np.zeros((10, 3), dtype=np.float32)
    late = T0 + 1_000 * MS  # TF ends here; the sweep runs 100 ms beyond
    offsets = np.linspace(0, 100 * MS, 10).astype(np.int32)
    with pytest.raises(CalibrationError, match=r"cannot deskew the 'lidar' sweep.*after its last sample"):
        deskew(xyz, offsets, late, buffer, "lidar", "odom")
    with pytest.raises(CalibrationError, match="unknown frame 'map'"):
        deskew(xyz, offsets, STAMP, buffer, "lidar", "map")


def test_deskew_rejects_mismatched_inputs() -> None:
    buffer = _buffer()
    with pytest.raises(CalibrationError, match="one time offset per point"):
        deskew(np.zeros((10, 3), np.float32), np.zeros(9, np.int32), STAMP, buffer, "lidar", "odom")
    with pytest.raises(CalibrationError, match="integer nanoseconds"):
        deskew(np.zeros((10, 3), np.float32), np.zeros(10, np.float32), STAMP, buffer, "lidar", "odom")
    with pytest.raises(CalibrationError, match=r"shape \(N, 3\)"):
        deskew(np.zeros((10, 4), np.float32), np.zeros(10, np.int32), STAMP, buffer, "lidar", "odom")
