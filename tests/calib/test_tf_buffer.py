"""calib.tf_buffer: lookups through the TF tree over time, odometry fallback, and refusals."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from calib import Transform, TransformBuffer, interpolate
from calib.errors import CalibrationError
from fusion.decode.types import OdometryRecord, TransformRecord

MS = 1_000_000
T0 = 1_700_000_000_000_000_000  # a realistic epoch stamp, so int64/float64 precision is exercised
SPEED = 20.0  # m/s along the heading
YAW_RATE = math.radians(30.0)  # rad/s


def _q_yaw(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def _ego_pose(t_ns: int) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """odom_from_base_link on a circle: constant speed and yaw rate."""
    dt_s = (t_ns - T0) * 1e-9
    yaw = YAW_RATE * dt_s
    radius = SPEED / YAW_RATE
    return (radius * math.sin(yaw), radius * (1 - math.cos(yaw)), 0.0), _q_yaw(yaw)


def _odom_tf(stamps_ns: list[int], parent: str = "odom") -> list[TransformRecord]:
    return [TransformRecord(parent, "base_link", t, *_ego_pose(t), static=False) for t in stamps_ns]


LIDAR = TransformRecord(
    "base_link", "lidar", 0, (1.2, 0.0, 1.8), (0.01, -0.02, math.sin(0.05), 1.0), static=True
)
CAMERA = TransformRecord("base_link", "camera", 0, (1.5, 0.3, 1.4), (-0.5, 0.5, -0.5, 0.5), static=True)
STAMPS = [T0 + k * 10 * MS for k in range(101)]  # 1 s of 100 Hz TF


def _buffer(max_extrapolation_ns: int = 50 * MS) -> TransformBuffer:
    return TransformBuffer.from_records(
        [LIDAR, CAMERA, *_odom_tf(STAMPS)], max_extrapolation_ns=max_extrapolation_ns
    )


def _odom_from_base(t_ns: int) -> Transform:
    """odom_from_base_link as the buffer must give it: interpolated between the 100 Hz samples."""
    k = min((t_ns - T0) // (10 * MS), len(STAMPS) - 2)
    t0, t1 = STAMPS[k], STAMPS[k + 1]
    a = Transform.from_quaternion(*_ego_pose(t0), parent="odom", child="base_link")
    b = Transform.from_quaternion(*_ego_pose(t1), parent="odom", child="base_link")
    return interpolate(t0, a, t1, b, t_ns)


def test_lookup_through_three_levels_equals_manual_composition() -> None:
    buffer = _buffer()
    base_from_lidar = Transform.from_record(LIDAR)
    base_from_camera = Transform.from_record(CAMERA)
    for t in (STAMPS[0], STAMPS[37], STAMPS[37] + 4 * MS + 123, STAMPS[-1]):
        odom_from_lidar = buffer.lookup("odom", "lidar", t)
        assert (odom_from_lidar.parent, odom_from_lidar.child) == ("odom", "lidar")
        assert odom_from_lidar.isclose(_odom_from_base(t) @ base_from_lidar, atol=1e-9)
        camera_from_lidar = buffer.lookup("camera", "lidar", t)
        assert camera_from_lidar.isclose(base_from_camera.inverse() @ base_from_lidar, atol=1e-12)


def test_lookup_in_the_inverse_direction_is_the_inverse() -> None:
    buffer = _buffer()
    t = STAMPS[50] + 3 * MS
    assert buffer.lookup("lidar", "odom", t).isclose(buffer.lookup("odom", "lidar", t).inverse(), atol=1e-9)
    assert buffer.lookup("base_link", "base_link", t).isclose(Transform.identity("base_link"))


def test_interpolation_between_samples_is_linear_and_slerp() -> None:
    a = TransformRecord("odom", "base_link", 0, (0.0, 0.0, 0.0), _q_yaw(0.0), static=False)
    b = TransformRecord("odom", "base_link", 100 * MS, (2.0, 0.0, 0.0), _q_yaw(math.pi / 2), static=False)
    mid = TransformBuffer.from_records([a, b]).lookup("odom", "base_link", 50 * MS)
    np.testing.assert_allclose(mid.translation, (1.0, 0.0, 0.0), atol=1e-12)
    assert math.isclose(math.atan2(mid.rotation[1, 0], mid.rotation[0, 0]), math.pi / 4, abs_tol=1e-12)


def test_leading_slash_frames_are_the_same_frames() -> None:
    records = [
        TransformRecord("/base_link", "/lidar", 0, LIDAR.translation, LIDAR.rotation_xyzw, static=True),
        *_odom_tf(STAMPS, parent="/odom"),
    ]
    buffer = TransformBuffer.from_records(records)
    t = STAMPS[10]
    assert buffer.lookup("odom", "/lidar", t).isclose(_buffer().lookup("/odom", "lidar", t), atol=1e-12)
    assert buffer.frames == ("base_link", "lidar", "odom")


def test_odometry_gives_the_fixed_frame_when_tf_has_no_dynamic_edge() -> None:
    odometry = [
        OdometryRecord("odom", "base_link", t, *_ego_pose(t), (SPEED, 0.0, 0.0), (0.0, 0.0, YAW_RATE))
        for t in STAMPS
    ]
    buffer = TransformBuffer.from_records([LIDAR], odometry)
    reference = _buffer()
    for t in (STAMPS[3], STAMPS[60] + 7 * MS):
        assert buffer.lookup("odom", "lidar", t).isclose(reference.lookup("odom", "lidar", t), atol=1e-12)


def test_tf_wins_over_odometry_for_the_same_frame() -> None:
    stale = [
        OdometryRecord("odom", "base_link", t, (99.0, 0, 0), _q_yaw(0), (0, 0, 0), (0, 0, 0)) for t in STAMPS
    ]
    buffer = TransformBuffer.from_records([LIDAR, *_odom_tf(STAMPS)], stale)
    t = STAMPS[20]
    assert buffer.lookup("odom", "lidar", t).isclose(_buffer().lookup("odom", "lidar", t), atol=1e-12)


def test_lookup_many_equals_lookup_per_time() -> None:
    buffer = _buffer()
    rng = np.random.default_rng(11)
    times = np.sort(rng.integers(STAMPS[0] - 40 * MS, STAMPS[-1] + 40 * MS, 300)).astype(np.int64)
    times[:3] = STAMPS[:3]
    many = buffer.lookup_many("camera", "odom", times)
    assert many.shape == (300, 4, 4)
    assert many.dtype == np.float64
    single = np.stack([buffer.lookup("camera", "odom", int(t)).matrix for t in times])
    np.testing.assert_allclose(many, single, atol=1e-9)
    assert buffer.lookup_many("camera", "odom", np.zeros(0, dtype=np.int64)).shape == (0, 4, 4)


def test_out_of_order_samples_are_sorted_and_duplicate_stamps_keep_the_last() -> None:
    rng = np.random.default_rng(12)
    records = _odom_tf(STAMPS)
    shuffled = [records[i] for i in rng.permutation(len(records))]
    buffer = TransformBuffer.from_records([LIDAR, CAMERA, *shuffled])
    t = STAMPS[42] + 5 * MS
    assert buffer.lookup("odom", "lidar", t).isclose(_buffer().lookup("odom", "lidar", t), atol=1e-12)
    # A later sample with an existing stamp replaces it, also after lookups have sorted the edge.
    buffer.add(TransformRecord("odom", "base_link", STAMPS[42], (5.0, 6.0, 7.0), _q_yaw(0.0), static=False))
    np.testing.assert_allclose(buffer.lookup("odom", "base_link", STAMPS[42]).translation, (5.0, 6.0, 7.0))
    buffer.add(TransformRecord("odom", "base_link", STAMPS[42], (1.0, 1.0, 1.0), _q_yaw(0.0), static=False))
    np.testing.assert_allclose(buffer.lookup("odom", "base_link", STAMPS[42]).translation, (1.0, 1.0, 1.0))


def test_static_transform_holds_for_all_time_and_the_latest_stamp_wins() -> None:
    old = TransformRecord("base_link", "lidar", 5, (9.0, 9.0, 9.0), (0, 0, 0, 1.0), static=True)
    new = TransformRecord("base_link", "lidar", 10, (1.0, 0.0, 0.0), (0, 0, 0, 1.0), static=True)
    buffer = TransformBuffer.from_records([new, old])
    for t in (-(10**18), 0, 10**18):
        np.testing.assert_allclose(buffer.lookup("base_link", "lidar", t).translation, (1.0, 0.0, 0.0))


def test_within_the_margin_the_edge_extrapolates_at_constant_velocity() -> None:
    records = [
        TransformRecord(
            "odom", "base_link", t, (SPEED * (t - T0) * 1e-9, 0.0, 0.0), _q_yaw(0.0), static=False
        )
        for t in STAMPS
    ]
    buffer = TransformBuffer.from_records(records)
    after = buffer.lookup("odom", "base_link", STAMPS[-1] + 40 * MS)
    np.testing.assert_allclose(after.translation, (SPEED * 1.04, 0, 0), atol=1e-9)
    before = buffer.lookup("odom", "base_link", STAMPS[0] - 40 * MS)
    np.testing.assert_allclose(before.translation, (-SPEED * 0.04, 0, 0), atol=1e-9)


def test_a_single_sample_holds_within_the_margin() -> None:
    buffer = TransformBuffer.from_records([_odom_tf([T0])[0]])
    held = buffer.lookup("odom", "base_link", T0 + 30 * MS)
    assert held.isclose(
        Transform.from_quaternion(*_ego_pose(T0), parent="odom", child="base_link"), atol=1e-12
    )


def test_lookup_beyond_the_extrapolation_margin_is_refused() -> None:
    buffer = _buffer(max_extrapolation_ns=50 * MS)
    with pytest.raises(CalibrationError, match=r"'odom' -> 'base_link'.*60\.0 ms after its last sample"):
        buffer.lookup("odom", "lidar", STAMPS[-1] + 60 * MS)
    with pytest.raises(CalibrationError, match=r"'odom' -> 'base_link'.*51\.0 ms before its first sample"):
        buffer.lookup_many("odom", "lidar", np.array([STAMPS[0], STAMPS[0] - 51 * MS]))
    assert buffer.can_transform("odom", "lidar", STAMPS[-1] + 50 * MS)
    assert not buffer.can_transform("odom", "lidar", STAMPS[-1] + 60 * MS)


def test_lookup_inside_a_tf_gap_names_the_frames_and_time() -> None:
    stamps = [*STAMPS[:30], *STAMPS[90:]]  # 610 ms without TF
    buffer = TransformBuffer.from_records([LIDAR, *_odom_tf(stamps)], max_gap_ns=500 * MS)
    t = STAMPS[60]
    with pytest.raises(
        CalibrationError, match=rf"'odom' <- 'lidar' at {t} ns.*'odom' -> 'base_link'.*gap of 610\.0 ms"
    ):
        buffer.lookup("odom", "lidar", t)
    assert buffer.can_transform("odom", "lidar", STAMPS[29])  # the gap's ends are samples
    assert buffer.can_transform("odom", "lidar", STAMPS[90])
    relaxed = TransformBuffer.from_records([LIDAR, *_odom_tf(stamps)], max_gap_ns=700 * MS)
    assert relaxed.can_transform("odom", "lidar", t)


def test_disconnected_frames_are_refused_with_the_tree() -> None:
    buffer = TransformBuffer.from_records([LIDAR, *_odom_tf(STAMPS)])
    buffer.add(TransformRecord("map", "gps", 0, (0, 0, 0), (0, 0, 0, 1.0), static=True))
    with pytest.raises(
        CalibrationError, match=r"no TF path from 'lidar' to 'map'; the tree has: base_link->lidar, map->gps"
    ):
        buffer.lookup("map", "lidar", STAMPS[0])
    assert not buffer.can_transform("map", "lidar", STAMPS[0])


def test_unknown_frame_is_refused_with_the_known_frames() -> None:
    with pytest.raises(
        CalibrationError, match=r"unknown frame 'velodyne'.*known frames: base_link, camera, lidar"
    ):
        _buffer().lookup("odom", "velodyne", STAMPS[0])


def test_a_frame_with_two_parents_is_refused() -> None:
    buffer = _buffer()
    with pytest.raises(
        CalibrationError, match=r"frame 'lidar' has two parents in TF: 'base_link' and 'roof'"
    ):
        buffer.add(TransformRecord("roof", "lidar", 0, (0, 0, 0), (0, 0, 0, 1.0), static=True))
    with pytest.raises(CalibrationError, match=r"frame 'base_link' has two parents in TF: 'odom' and 'map'"):
        buffer.add(_odom_tf([T0], parent="map")[0])


def test_a_cycle_is_refused() -> None:
    records = [
        TransformRecord("a", "b", 0, (0, 0, 0), (0, 0, 0, 1.0), static=True),
        TransformRecord("b", "c", 0, (0, 0, 0), (0, 0, 0, 1.0), static=True),
        TransformRecord("c", "a", 0, (0, 0, 0), (0, 0, 0, 1.0), static=True),
    ]
    with pytest.raises(CalibrationError, match="cycle"):
        TransformBuffer.from_records(records).lookup("a", "c", 0)


def test_broken_samples_are_refused_at_add() -> None:
    buffer = TransformBuffer()
    with pytest.raises(CalibrationError, match=r"'odom' -> 'base_link' at 5 ns has a zero quaternion"):
        buffer.add(TransformRecord("odom", "base_link", 5, (0, 0, 0), (0, 0, 0, 0.0), static=False))
    with pytest.raises(CalibrationError, match="NaN"):
        buffer.add(TransformRecord("odom", "base_link", 5, (math.nan, 0, 0), (0, 0, 0, 1.0), static=False))
    with pytest.raises(CalibrationError, match="relates a frame to itself"):
        buffer.add(TransformRecord("odom", "/odom", 5, (0, 0, 0), (0, 0, 0, 1.0), static=False))
    assert buffer.frames == ()  # nothing half-added


def test_lookup_many_rejects_float_times() -> None:
    with pytest.raises(CalibrationError, match="integer array of nanoseconds"):
        _buffer().lookup_many("odom", "lidar", np.array([1.5e18]))


def test_an_edge_both_static_and_dynamic_uses_the_static_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="calib.tf_buffer"):
        buffer = TransformBuffer.from_records([*_odom_tf(STAMPS[:3]), *_odom_tf(STAMPS[:1])])
        buffer.add(TransformRecord("odom", "base_link", 0, (7.0, 0, 0), (0, 0, 0, 1.0), static=True))
    assert "both static and dynamic" in caplog.text
    np.testing.assert_allclose(buffer.lookup("odom", "base_link", STAMPS[1]).translation, (7.0, 0.0, 0.0))
