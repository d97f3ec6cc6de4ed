"""calib.transform: frame-checked composition, inverses, quaternions, rigidity, interpolation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from calib import Transform, interpolate
from calib.errors import CalibrationError
from calib.transform import (
    compose_matrices,
    invert_matrices,
    quaternion_to_rotation,
    rotation_to_quaternion,
    slerp,
)
from fusion.decode.types import OdometryRecord, TransformRecord


def _random_quaternions(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    out: np.ndarray = q / np.linalg.norm(q, axis=1, keepdims=True)
    return out


def _random_transform(rng: np.random.Generator, parent: str, child: str) -> Transform:
    return Transform.from_quaternion(
        rng.uniform(-10, 10, 3), _random_quaternions(rng, 1)[0], parent=parent, child=child
    )


def _yaw(
    angle: float, parent: str = "a", child: str = "b", translation: tuple[float, ...] = (0, 0, 0)
) -> Transform:
    q = (0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2))
    return Transform.from_quaternion(translation, q, parent=parent, child=child)


def _yaw_of(t: Transform) -> float:
    return math.atan2(t.rotation[1, 0], t.rotation[0, 0])


def test_composition_chains_frames_right_to_left() -> None:
    rng = np.random.default_rng(0)
    world_from_ego = _random_transform(rng, "world", "ego")
    ego_from_lidar = _random_transform(rng, "ego", "lidar")
    world_from_lidar = world_from_ego @ ego_from_lidar
    assert (world_from_lidar.parent, world_from_lidar.child) == ("world", "lidar")
    np.testing.assert_allclose(
        world_from_lidar.matrix, world_from_ego.matrix @ ego_from_lidar.matrix, atol=1e-12
    )
    points = rng.uniform(-50, 50, (100, 3))
    np.testing.assert_allclose(
        world_from_lidar.apply(points), world_from_ego.apply(ego_from_lidar.apply(points)), atol=1e-9
    )


def test_composition_rejects_mismatched_frames() -> None:
    rng = np.random.default_rng(1)
    world_from_ego = _random_transform(rng, "world", "ego")
    ego_from_lidar = _random_transform(rng, "ego", "lidar")
    with pytest.raises(CalibrationError, match=r"'ego' <- 'lidar' with 'world' <- 'ego'.*child 'lidar'"):
        ego_from_lidar @ world_from_ego


def test_inverse_composed_with_transform_is_identity() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        a_from_b = _random_transform(rng, "a", "b")
        b_from_a = a_from_b.inverse()
        assert (b_from_a.parent, b_from_a.child) == ("b", "a")
        assert (b_from_a @ a_from_b).isclose(Transform.identity("b"), atol=1e-12)
        assert (a_from_b @ b_from_a).isclose(Transform.identity("a"), atol=1e-12)


def test_apply_matches_homogeneous_matrix() -> None:
    rng = np.random.default_rng(3)
    t = _random_transform(rng, "a", "b")
    points = rng.uniform(-100, 100, (500, 3)).astype(np.float32)
    homogeneous = np.column_stack([points.astype(np.float64), np.ones(500)]) @ t.matrix.T
    out = t.apply(points)
    assert out.dtype == np.float64
    assert out.shape == (500, 3)
    np.testing.assert_allclose(out, homogeneous[:, :3], atol=1e-9)


def test_apply_rejects_points_of_wrong_shape() -> None:
    with pytest.raises(CalibrationError, match=r"\(N, 3\)"):
        Transform.identity("a").apply(np.zeros((4, 2)))


def test_leading_slash_names_the_same_frame() -> None:
    rng = np.random.default_rng(4)
    a = _random_transform(rng, "/odom", "/base_link")
    b = _random_transform(rng, "base_link", "lidar")
    assert a.parent == "odom"
    assert (a @ b).child == "lidar"


def test_quaternion_round_trip_keeps_rotation() -> None:
    rng = np.random.default_rng(5)
    q = _random_quaternions(rng, 200)
    back = rotation_to_quaternion(quaternion_to_rotation(q))
    q_canonical = np.where(q[:, 3:] < 0, -q, q)
    np.testing.assert_allclose(back, q_canonical, atol=1e-12)
    # Rotations near 180 degrees (w ~ 0) take the other Shepperd branches.
    half_turns = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0.6, 0.8, 0, 1e-9]])
    back = rotation_to_quaternion(quaternion_to_rotation(half_turns))
    np.testing.assert_allclose(np.abs(np.sum(back * half_turns, axis=1)), 1.0, atol=1e-12)


def test_from_quaternion_normalises_and_round_trips() -> None:
    t = Transform.from_quaternion((1.0, 2.0, 3.0), (0.0, 0.0, 2.0, 2.0), parent="a", child="b")
    np.testing.assert_allclose(t.quaternion_xyzw, (0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)), atol=1e-15)
    np.testing.assert_allclose(t.translation, (1.0, 2.0, 3.0))
    assert math.isclose(_yaw_of(t), math.pi / 2)


@pytest.mark.parametrize("q", [(0.0, 0.0, 0.0, 0.0), (0.0, math.nan, 0.0, 1.0), (0.0, 0.0, 1.0)])
def test_from_quaternion_rejects_zero_nan_or_short_quaternions(q: tuple[float, ...]) -> None:
    with pytest.raises(CalibrationError, match="quaternion"):
        Transform.from_quaternion((0, 0, 0), q, parent="a", child="b")


def test_from_matrix_round_trips_a_rigid_matrix() -> None:
    rng = np.random.default_rng(6)
    t = _random_transform(rng, "a", "b")
    back = Transform.from_matrix(t.matrix, parent="a", child="b")
    assert back.isclose(t, atol=1e-15)


@pytest.mark.parametrize(
    ("matrix", "reason"),
    [
        (np.diag([2.0, 1.0, 1.0, 1.0]), "not rigid"),  # scale
        (np.diag([1.0, 1.0, -1.0, 1.0]), r"det R = -1"),  # reflection
        (np.array([[1, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), "not rigid"),  # shear
        (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.5, 0, 0, 1.0]]), "last row"),
        (np.eye(3), r"\(4, 4\)"),
        (np.full((4, 4), np.nan), "NaN"),
    ],
)
def test_from_matrix_rejects_non_rigid(matrix: np.ndarray, reason: str) -> None:
    with pytest.raises(CalibrationError, match=reason):
        Transform.from_matrix(matrix, parent="a", child="b")


def test_constructor_rejects_non_rotation_and_empty_frames() -> None:
    with pytest.raises(CalibrationError, match="proper rotation"):
        Transform("a", "b", np.diag([1.0, 1.0, 1.01]), np.zeros(3))
    with pytest.raises(CalibrationError, match="empty frame name"):
        Transform("/", "b", np.eye(3), np.zeros(3))


def test_transform_arrays_are_read_only_copies() -> None:
    rotation = np.eye(3)
    t = Transform("a", "b", rotation, np.zeros(3))
    rotation[0, 0] = 5.0
    assert t.rotation[0, 0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        t.translation[0] = 1.0


def test_from_records_read_pose_of_child_in_parent() -> None:
    q = (0.0, 0.0, math.sin(0.25), math.cos(0.25))
    tf = Transform.from_record(TransformRecord("/odom", "base_link", 5, (1.0, 2.0, 0.0), q, static=False))
    odo = Transform.from_odometry(
        OdometryRecord("odom", "base_link", 5, (1.0, 2.0, 0.0), q, (3.0, 0, 0), (0, 0, 0.1))
    )
    for t in (tf, odo):
        assert (t.parent, t.child) == ("odom", "base_link")
        assert math.isclose(_yaw_of(t), 0.5)
        np.testing.assert_allclose(t.apply(np.zeros((1, 3))), [[1.0, 2.0, 0.0]])


@pytest.mark.parametrize("store", [Stores.ROS2_HUMBLE, Stores.ROS1_NOETIC])
def test_to_ros_builds_a_transform_message_that_serialises(store: Stores) -> None:
    typestore = get_typestore(store)
    t = _yaw(0.3, translation=(1.0, -2.0, 0.5))
    msg = t.to_ros(typestore)
    assert msg.__msgtype__ == "geometry_msgs/msg/Transform"
    assert (msg.translation.x, msg.translation.y, msg.translation.z) == (1.0, -2.0, 0.5)
    rot = msg.rotation
    np.testing.assert_allclose(
        (rot.x, rot.y, rot.z, rot.w), (0, 0, math.sin(0.15), math.cos(0.15)), atol=1e-15
    )
    back: Any
    if store == Stores.ROS1_NOETIC:
        raw = typestore.serialize_ros1(msg, msg.__msgtype__)
        back = typestore.deserialize_ros1(raw, msg.__msgtype__)
    else:
        raw = typestore.serialize_cdr(msg, msg.__msgtype__)
        back = typestore.deserialize_cdr(raw, msg.__msgtype__)
    assert back.rotation.w == rot.w


def test_interpolation_midpoint_of_a_90_degree_yaw_is_45_degrees() -> None:
    a = _yaw(0.0, translation=(0.0, 0.0, 0.0))
    b = _yaw(math.pi / 2, translation=(2.0, 4.0, 0.0))
    mid = interpolate(1_000, a, 3_000, b, 2_000)
    assert math.isclose(_yaw_of(mid), math.pi / 4, abs_tol=1e-12)
    np.testing.assert_allclose(mid.translation, (1.0, 2.0, 0.0), atol=1e-12)
    assert interpolate(1_000, a, 3_000, b, 1_000).isclose(a, atol=1e-12)
    assert interpolate(1_000, a, 3_000, b, 3_000).isclose(b, atol=1e-12)
    assert math.isclose(_yaw_of(interpolate(1_000, a, 3_000, b, 3_500)), math.pi * 5 / 8, abs_tol=1e-12)


def test_slerp_takes_the_shortest_arc_for_q_and_minus_q() -> None:
    q0 = np.array([0.0, 0.0, math.sin(math.radians(-10)), math.cos(math.radians(-10))])  # yaw -20 deg
    q1 = np.array([0.0, 0.0, math.sin(math.radians(10)), math.cos(math.radians(10))])  # yaw +20 deg
    for end in (q1, -q1):
        mid = slerp(q0, end, 0.5)
        np.testing.assert_allclose(np.abs(mid), [0, 0, 0, 1], atol=1e-12)  # yaw 0, not 180
    a, b = _yaw(math.radians(170)), _yaw(math.radians(-170))  # 20 degrees apart across +-180
    assert math.isclose(abs(_yaw_of(interpolate(0, a, 10, b, 5))), math.pi, abs_tol=1e-12)


def test_slerp_is_exact_for_tiny_and_batched_angles() -> None:
    rng = np.random.default_rng(7)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angles = np.array([0.0, 1e-12, 1e-7, 0.3, 3.0])
    q1 = np.column_stack([axis[None] * np.sin(angles / 2)[:, None], np.cos(angles / 2)])
    q0 = np.tile([0.0, 0.0, 0.0, 1.0], (len(angles), 1))
    u = np.full(len(angles), 0.25)
    expected = np.column_stack([axis[None] * np.sin(angles / 8)[:, None], np.cos(angles / 8)])
    np.testing.assert_allclose(slerp(q0, q1, u), expected, atol=1e-15)


def test_interpolate_rejects_different_frames() -> None:
    with pytest.raises(CalibrationError, match="same two frames"):
        interpolate(0, _yaw(0.0, "a", "b"), 10, _yaw(0.0, "a", "c"), 5)


def test_batched_matrix_helpers_match_transform_methods() -> None:
    rng = np.random.default_rng(8)
    ts = [_random_transform(rng, "a", "b") for _ in range(5)]
    stack = np.stack([t.matrix for t in ts])
    np.testing.assert_allclose(invert_matrices(stack), np.stack([t.inverse().matrix for t in ts]), atol=1e-12)
    u = _random_transform(rng, "b", "c")
    np.testing.assert_allclose(
        compose_matrices(stack, u.matrix), np.stack([(t @ u).matrix for t in ts]), atol=1e-12
    )
