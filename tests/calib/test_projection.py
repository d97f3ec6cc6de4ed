"""calib.projection: points into images (with motion between capture and exposure), boxes to 2D boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calib import TransformBuffer
from calib.camera import Camera
from calib.errors import CalibrationError
from calib.projection import (
    box_corners,
    box_to_image,
    boxes_to_image,
    project_box_corners,
    project_points,
    project_points_timed,
)
from calib.transform import Transform
from fusion.decode.types import TransformRecord

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
SPEED = 20.0  # m/s
YAW_RATE = math.radians(30.0)  # rad/s
IMAGE_STAMP = T0 + 120 * MS
LINK_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

PINHOLE = Camera(
    "front",
    "front_optical",
    640,
    480,
    "plumb_bob",
    np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]),
    (),
)
BARREL = Camera(
    "wide",
    "wide_optical",
    1280,
    720,
    "plumb_bob",
    np.array([[700.0, 0, 640], [0, 700.0, 360], [0, 0, 1]]),
    (-0.30, 0.08, 0.0, 0.0, 0.0),
)
IDENTITY_FRONT = Transform.identity("front_optical")


def _optical_from(frame: str, camera: Camera) -> Transform:
    """camera_from_<frame> for a camera looking along +x of a z-up frame, 0.1 m ahead of its origin."""
    frame_from_optical = Transform(frame, camera.frame_id, LINK_FROM_OPTICAL, np.array([0.1, 0.0, 0.0]))
    return frame_from_optical.inverse()


# ---- points -------------------------------------------------------------------------------------


def test_project_points_is_transform_then_camera() -> None:
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(2, 40, 500), rng.uniform(-10, 10, 500), rng.uniform(-2, 2, 500)])
    camera_from_lidar = _optical_from("lidar", PINHOLE)
    uv, depth, valid = project_points(points.astype(np.float32), PINHOLE, camera_from_lidar)
    in_camera = camera_from_lidar.apply(points.astype(np.float32))
    k = PINHOLE.K
    expected = (in_camera @ k.T)[:, :2] / in_camera[:, 2:3]
    np.testing.assert_allclose(uv, expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(depth, in_camera[:, 2])
    assert valid.sum() > 100 and not valid.all()


def test_project_points_refuses_a_transform_into_another_frame() -> None:
    with pytest.raises(
        CalibrationError, match="maps into 'other_optical' but camera 'front' is in 'front_optical'"
    ):
        project_points(np.zeros((1, 3)), PINHOLE, Transform.identity("other_optical"))


def _moving_buffer(*, with_camera: bool) -> TransformBuffer:
    """odom -> base_link at 100 Hz over 300 ms (20 m/s, 30 deg/s), base_link -> lidar -> camera static."""
    records = [TransformRecord("base_link", "lidar", 0, (1.2, 0.1, 1.8), (0.0, 0.0, 0.0, 1.0), static=True)]
    if with_camera:
        lidar_from_camera = _optical_from("lidar", PINHOLE).inverse()
        t = lidar_from_camera.translation
        records.append(
            TransformRecord(
                "lidar",
                "front_optical",
                0,
                (t[0], t[1], t[2]),
                lidar_from_camera.quaternion_xyzw,
                static=True,
            )
        )
    for k in range(31):
        t_ns = T0 + k * 10 * MS
        dt_s = (t_ns - T0) * 1e-9
        yaw = YAW_RATE * dt_s
        radius = SPEED / YAW_RATE
        xy = (radius * math.sin(yaw), radius * (1.0 - math.cos(yaw)))
        q = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
        records.append(TransformRecord("odom", "base_link", t_ns, (*xy, 0.0), q, static=False))
    return TransformBuffer.from_records(records)


def _timed_points(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.uniform(5, 30, n), rng.uniform(-6, 6, n), rng.uniform(-1, 1, n)])
    times = T0 + rng.integers(50 * MS, 150 * MS, n)
    return points.astype(np.float32), times.astype(np.int64)


def test_timed_projection_applies_the_motion_between_each_point_and_the_image() -> None:
    buffer = _moving_buffer(with_camera=True)
    points, times = _timed_points(4000)
    uv, depth, valid = project_points_timed(points, times, IMAGE_STAMP, PINHOLE, buffer, "lidar", "odom")
    # Reference: each point's own full lookup, odom <- lidar at its time, then camera <- odom at the image.
    odom_from_lidar = buffer.lookup_many("odom", "lidar", times)
    in_odom = np.einsum("nij,nj->ni", odom_from_lidar[:, :3, :3], points.astype(np.float64))
    in_odom += odom_from_lidar[:, :3, 3]
    camera_from_odom = buffer.lookup("front_optical", "odom", IMAGE_STAMP)
    ref_uv, ref_depth, ref_valid = PINHOLE.project(camera_from_odom.apply(in_odom))
    both = valid & ref_valid
    assert both.sum() > 1000
    assert np.abs(uv[both] - ref_uv[both]).max() < 1e-3
    np.testing.assert_allclose(depth, ref_depth, atol=1e-4)
    # Without the motion the points land metres (many pixels) off: the test is not vacuous.
    static_uv = project_points(points, PINHOLE, buffer.lookup("front_optical", "lidar", IMAGE_STAMP))[0]
    assert np.nanmax(np.abs(static_uv[both] - ref_uv[both])) > 20.0


def test_timed_projection_takes_the_extrinsic_from_a_calibration_file() -> None:
    points, times = _timed_points(500)
    from_tf = project_points_timed(
        points, times, IMAGE_STAMP, PINHOLE, _moving_buffer(with_camera=True), "lidar", "odom"
    )
    from_file = project_points_timed(
        points,
        times,
        IMAGE_STAMP,
        PINHOLE,
        _moving_buffer(with_camera=False),
        "lidar",
        "odom",
        camera_from_lidar=_optical_from("lidar", PINHOLE),
    )
    np.testing.assert_allclose(from_file[0], from_tf[0], atol=1e-6)
    np.testing.assert_array_equal(from_file[2], from_tf[2])


def test_timed_projection_names_the_camera_and_time_when_poses_are_missing() -> None:
    points, times = _timed_points(10)
    with pytest.raises(CalibrationError, match=r"into camera 'front' at \d+ ns: .*'front_optical'"):
        project_points_timed(
            points, times, IMAGE_STAMP, PINHOLE, _moving_buffer(with_camera=False), "lidar", "odom"
        )
    late = times + 10_000 * MS
    with pytest.raises(CalibrationError, match=r"into camera 'front'.*after its last sample"):
        project_points_timed(
            points, late, IMAGE_STAMP, PINHOLE, _moving_buffer(with_camera=True), "lidar", "odom"
        )
    with pytest.raises(CalibrationError, match="integer nanoseconds"):
        project_points_timed(
            points,
            times.astype(np.float64),
            IMAGE_STAMP,
            PINHOLE,
            _moving_buffer(with_camera=True),
            "lidar",
            "odom",
        )


# ---- boxes --------------------------------------------------------------------------------------


def test_box_corners_follow_the_documented_order() -> None:
    corners = box_corners(np.array([[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, math.pi / 2]]))[0]
    # yaw 90 degrees: the box's length runs along +y
    np.testing.assert_allclose(corners[0], [2.0, 0.0, 2.5], atol=1e-12)
    np.testing.assert_allclose(corners[1], [2.0, 4.0, 2.5], atol=1e-12)
    np.testing.assert_allclose(corners[6], [0.0, 4.0, 3.5], atol=1e-12)
    np.testing.assert_allclose(corners.mean(axis=0), [1.0, 2.0, 3.0], atol=1e-12)


def _optical_box(x: tuple[float, float], y: tuple[float, float], z: tuple[float, float]) -> np.ndarray:
    """A box given by its extent in the optical frame, as a z-up box in the frame 'src' of PINHOLE_FROM_SRC.

    src x = optical z, src y = -optical x, src z = -optical y (LINK_FROM_OPTICAL).
    """
    centre = np.array([np.mean(z), -np.mean(x), -np.mean(y)])
    return np.array([*centre, z[1] - z[0], x[1] - x[0], y[1] - y[0], 0.0])


PINHOLE_FROM_SRC = Transform("src", "front_optical", LINK_FROM_OPTICAL, np.zeros(3)).inverse()


def test_a_box_in_front_projects_to_its_corners() -> None:
    box = _optical_box((-1.0, 1.0), (-0.5, 0.5), (5.0, 10.0))
    extent = box_to_image(box, PINHOLE, PINHOLE_FROM_SRC)
    assert extent is not None
    np.testing.assert_allclose(extent, (320 - 100, 240 - 50, 320 + 100, 240 + 50), atol=1e-9)


def test_a_box_partly_behind_the_camera_is_clipped_at_the_near_plane() -> None:
    # x in [1, 3], z in [-2, 4]: the visible part reaches from u = 500 * 1 / 4 + 320 = 445 out past
    # the right edge u = 639.5, where (z = 500 / 319.5) it spans v = 240 -+ 0.5 * 319.5 = 80.25..399.75.
    box = _optical_box((1.0, 3.0), (-0.5, 0.5), (-2.0, 4.0))
    extent = box_to_image(box, PINHOLE, PINHOLE_FROM_SRC)
    assert extent is not None
    np.testing.assert_allclose(extent, (445.0, 80.25, 639.5, 399.75), atol=1e-9)
    corners_uv = PINHOLE.project(PINHOLE_FROM_SRC.apply(box_corners(box[None])[0]))[0]
    assert np.nanmin(corners_uv[:, 1]) == 240 - 62.5  # the corners in front alone miss most of it


def test_a_box_around_the_camera_covers_the_image_and_one_behind_it_is_not_visible() -> None:
    around = _optical_box((-0.5, 0.5), (-0.5, 0.5), (-1.0, 5.0))
    assert box_to_image(around, PINHOLE, PINHOLE_FROM_SRC) == (-0.5, -0.5, 639.5, 479.5)
    behind = _optical_box((-1.0, 1.0), (-1.0, 1.0), (-6.0, -2.0))
    assert box_to_image(behind, PINHOLE, PINHOLE_FROM_SRC) is None
    beside = _optical_box((30.0, 32.0), (-1.0, 1.0), (2.0, 4.0))  # in front, far outside the view
    assert box_to_image(beside, PINHOLE, PINHOLE_FROM_SRC) is None


def test_a_box_cut_by_the_image_border_is_clipped_to_it() -> None:
    box = _optical_box((0.5, 3.0), (-0.5, 0.5), (4.0, 5.0))  # u from 370 to 695
    extent = box_to_image(box, PINHOLE, PINHOLE_FROM_SRC)
    assert extent is not None
    np.testing.assert_allclose(extent, (370.0, 240 - 62.5, 639.5, 240 + 62.5), atol=1e-9)


def _dense_extent(camera: Camera, corners: np.ndarray, n: int = 300) -> np.ndarray:
    """x_min y_min x_max y_max of n x n samples on each face of one box (8, 3) in the camera frame."""
    faces = [(0, 1, 3), (4, 5, 7), (0, 1, 4), (3, 2, 7), (0, 3, 4), (1, 2, 5)]  # origin, +a, +b corners
    s = np.linspace(0.0, 1.0, n)
    a, b = np.meshgrid(s, s)
    samples = np.concatenate(
        [
            (
                corners[o]
                + a.reshape(-1, 1) * (corners[p] - corners[o])
                + b.reshape(-1, 1) * (corners[q] - corners[o])
            )
            for o, p, q in faces
        ]
    )
    uv, _, valid = camera.project(samples)
    assert valid.all()
    return np.array([*uv.min(axis=0), *uv.max(axis=0)])


def test_box_extent_follows_the_lens_distortion_not_just_the_corners() -> None:
    wide_from_src = Transform("src", "wide_optical", LINK_FROM_OPTICAL, np.zeros(3)).inverse()
    box = np.array([6.0, 0.0, 0.0, 2.0, 7.0, 4.0, 0.2])  # wide and tall near the image's edges
    corners = wide_from_src.apply(box_corners(box[None])[0])
    dense = _dense_extent(BARREL, corners)
    extent = box_to_image(box, BARREL, wide_from_src)
    assert extent is not None
    assert np.abs(np.array(extent) - dense).max() < 0.05
    corners_uv = BARREL.project(corners)[0]
    corners_only = np.array([*corners_uv.min(axis=0), *corners_uv.max(axis=0)])
    assert np.abs(corners_only - dense).max() > 2.0  # barrel distortion bows the edges outwards


def test_many_boxes_give_what_each_box_gives_alone() -> None:
    rng = np.random.default_rng(3)
    boxes = np.column_stack(
        [
            rng.uniform(-5, 30, 40),
            rng.uniform(-15, 15, 40),
            rng.uniform(-1, 1, 40),
            rng.uniform(1, 5, 40),
            rng.uniform(0.5, 2.5, 40),
            rng.uniform(1, 2, 40),
            rng.uniform(-math.pi, math.pi, 40),
        ]
    )
    extents, visible = boxes_to_image(boxes, BARREL, _optical_from("src", BARREL))
    assert 5 < visible.sum() < 40
    for box, extent, seen in zip(boxes, extents, visible, strict=True):
        alone = box_to_image(box, BARREL, _optical_from("src", BARREL))
        if seen:
            assert alone is not None
            np.testing.assert_array_equal(extent, alone)
        else:
            assert alone is None and np.isnan(extent).all()
    empty_extents, empty_visible = project_box_corners(BARREL, np.zeros((0, 8, 3)))
    assert empty_extents.shape == (0, 4) and empty_visible.shape == (0,)


def test_boxes_need_the_documented_layout() -> None:
    with pytest.raises(CalibrationError, match=r"boxes must have shape \(M, 7\)"):
        boxes_to_image(np.zeros((2, 6)), PINHOLE, PINHOLE_FROM_SRC)
    with pytest.raises(CalibrationError, match="a box has 7 values"):
        box_to_image(np.zeros(8), PINHOLE, PINHOLE_FROM_SRC)
    with pytest.raises(CalibrationError, match=r"\(M, 8, 3\)"):
        project_box_corners(PINHOLE, np.zeros((2, 4, 3)))


def test_the_frustum_is_built_once_per_camera_and_shared_read_only() -> None:
    from calib.projection import _frustum

    boxes = np.array([[10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.3], [20.0, 3.0, 0.0, 4.0, 2.0, 1.5, -0.2]])
    _frustum.cache_clear()
    first = boxes_to_image(boxes, BARREL, _optical_from("src", BARREL))
    for _ in range(3):  # every later frame of the same camera reuses its frustum, same result
        again = boxes_to_image(boxes, BARREL, _optical_from("src", BARREL))
        np.testing.assert_array_equal(again[0], first[0])
    boxes_to_image(boxes, PINHOLE, PINHOLE_FROM_SRC)
    assert (_frustum.cache_info().misses, _frustum.cache_info().hits) == (2, 3)
    assert not _frustum(BARREL).flags.writeable
