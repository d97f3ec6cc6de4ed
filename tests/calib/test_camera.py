"""calib.camera: projection as OpenCV does it, round trips, and never wrapping around."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from calib.camera import Camera
from calib.errors import CalibrationError
from fusion.decode.types import CameraInfoRecord

K = np.array([[400.0, 0.0, 321.5], [0.0, 402.0, 198.25], [0.0, 0.0, 1.0]])
CAMERAS = {
    "plumb_bob": (-0.28, 0.075, 0.0008, -0.0005, 0.01),
    "rational_polynomial": (2.8, 1.2, 0.0003, -0.0002, 0.05, 3.2, 2.2, 0.25),
    "equidistant": (0.03, -0.006, 0.001, -0.0002),
}


def _camera(model: str, d: tuple[float, ...] | None = None, k: np.ndarray = K) -> Camera:
    return Camera("cam", "cam_optical", 640, 400, model, k, CAMERAS[model] if d is None else d)  # type: ignore[arg-type]


def _points(rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    """Points in front of the camera up to ~60 degrees off axis."""
    z = rng.uniform(0.5, 30.0, n)
    xy = rng.uniform(-1.6, 1.6, (n, 2)) * z[:, None]
    return np.column_stack([xy, z])


def _opencv(
    model: str,
    points: np.ndarray,
    d: tuple[float, ...],
    rvec: np.ndarray | None = None,
    tvec: np.ndarray | None = None,
) -> np.ndarray:
    rvec = np.zeros(3) if rvec is None else rvec
    tvec = np.zeros(3) if tvec is None else tvec
    points = np.ascontiguousarray(points, dtype=np.float64)
    if model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), rvec, tvec, K, np.array(d))
    else:
        uv, _ = cv2.projectPoints(points, rvec, tvec, K, np.array(d))
    return uv.reshape(-1, 2)


def _awkward_points(rng: np.random.Generator) -> np.ndarray:
    """Points of every kind: in view, beside the image, behind the camera, on the image plane,
    far beyond the fold-back angle, on the axis, and NaN."""
    z = rng.uniform(-5.0, 30.0, 4000)
    xy = rng.uniform(-4.0, 4.0, (4000, 2)) * np.abs(z)[:, None]
    special = np.array(
        [
            [0.0, 0.0, 2.0],
            [0.0, 0.0, 0.0],
            [1.0, 1.0, 1e-7],
            [50.0, 0.0, 1.0],
            [np.nan, 0.0, 1.0],
            [0.0, 0.0, np.nan],
        ]
    )
    return np.concatenate([np.column_stack([xy, z]), special])


def _pixel_grid(cam: Camera, step: float = 8.0) -> np.ndarray:
    """Pixels (M, 2) over the whole image, its borders (just inside) included."""
    u = np.append(np.arange(-0.49, cam.width - 0.5, step), cam.width - 0.51)
    v = np.append(np.arange(-0.49, cam.height - 0.5, step), cam.height - 0.51)
    uu, vv = np.meshgrid(u, v)
    return np.column_stack([uu.ravel(), vv.ravel()])


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _assert_same_projection(ours: tuple[np.ndarray, ...], ref: tuple[np.ndarray, ...], atol: float) -> None:
    uv, depth, valid = ours
    ref_uv, ref_depth, ref_valid = ref
    np.testing.assert_array_equal(np.isnan(uv), np.isnan(ref_uv))
    np.testing.assert_allclose(uv, ref_uv, rtol=0.0, atol=atol)
    np.testing.assert_array_equal(depth, ref_depth)
    np.testing.assert_array_equal(valid, ref_valid)


@pytest.mark.parametrize("method", ["project", "_project_numpy"])
@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_project_matches_opencv(model: str, method: str) -> None:
    cam = _camera(model)
    points = _points(np.random.default_rng(1))
    uv, depth, valid = getattr(cam, method)(points)
    finite = np.isfinite(uv).all(axis=1)
    assert valid.sum() > 500
    assert finite.sum() > valid.sum()  # points beside the image still get pixels
    np.testing.assert_allclose(uv[finite], _opencv(model, points[finite], CAMERAS[model]), atol=1e-8)
    np.testing.assert_array_equal(depth, points[:, 2])
    np.testing.assert_array_equal(valid, finite & cam.in_image(uv))


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_unproject_inverts_project(model: str) -> None:
    cam = _camera(model)
    points = _points(np.random.default_rng(2))
    uv, depth, valid = cam.project(points)
    back = cam.unproject(uv[valid], depth[valid])
    np.testing.assert_allclose(back, points[valid], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_unproject_of_every_pixel_reprojects_to_it(model: str) -> None:
    cam = _camera(model)
    v, u = np.mgrid[-0.5:400:20.0, -0.5:640:20.0]
    uv = np.column_stack([u.ravel(), v.ravel()])
    rays = cam.unproject(uv, 2.0)
    assert np.isfinite(rays).all()
    again, _, _ = cam.project(rays)
    np.testing.assert_allclose(again, uv, atol=1e-7)


def test_unproject_matches_opencv_undistort() -> None:
    d = CAMERAS["plumb_bob"]
    cam = _camera("plumb_bob")
    uv = np.random.default_rng(3).uniform([0.0, 0.0], [639.0, 399.0], (500, 2))
    ours = cam.unproject(uv, 1.0)[:, :2]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
        ref = cv2.undistortPointsIter(uv.reshape(-1, 1, 2), K, np.array(d), None, None, criteria)
    else:  # OpenCV 5 takes the criteria directly
        ref = cv2.undistortPoints(uv.reshape(-1, 1, 2), K, np.array(d), criteria=criteria)
    ref = ref.reshape(-1, 2)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


@pytest.mark.parametrize("layout", ["contiguous", "strided_read_only", "fortran", "integer"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_numba_project_equals_the_numpy_reference(model: str, dtype: type, layout: str) -> None:
    cam = _camera(model)
    points = _awkward_points(np.random.default_rng(4)).astype(dtype)
    if layout == "strided_read_only":
        wide = np.zeros((len(points), 5), dtype=dtype)
        wide[:, 1:4] = points
        points = wide[:, 1:4]
        points.flags.writeable = False
    elif layout == "fortran":
        points = np.asfortranarray(points)
    elif layout == "integer":
        points = np.nan_to_num(points * 10.0).astype(np.int32)
    ours = cam.project(points)
    ref = cam._project_numpy(points)
    _assert_same_projection(ours, ref, atol=1e-9)
    valid = ours[2]
    assert valid.sum() > 100 and (~valid & np.isfinite(ours[0]).all(axis=1)).sum() > 100
    assert not (np.isfinite(ours[0]).all(axis=1) & (ours[1] <= 0.0)).any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_project_matches_opencv_over_the_whole_image(model: str, dtype: type) -> None:
    cam = _camera(model)
    grid = _pixel_grid(cam)
    depth = np.random.default_rng(5).uniform(0.5, 80.0, len(grid))
    points = cam.unproject(grid, depth).astype(dtype)
    uv, _, valid = cam.project(points)
    assert np.isfinite(uv).all()
    np.testing.assert_allclose(uv, _opencv(model, points, CAMERAS[model]), rtol=0.0, atol=1e-3)
    if dtype == np.float64:  # float32 points move by up to ~1e-7 of their depth
        np.testing.assert_allclose(uv, grid, rtol=0.0, atol=1e-6)
        assert valid.all()
        np.testing.assert_allclose(cam.unproject(uv, depth), points, rtol=0.0, atol=1e-6)


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_project_from_applies_the_transform_in_the_same_pass(model: str) -> None:
    cam = _camera(model)
    rng = np.random.default_rng(6)
    rotation = _rotation(rng)
    translation = rng.uniform(-2.0, 2.0, 3)
    points = _awkward_points(rng).astype(np.float32)
    ours = cam.project_from(points, rotation, translation)
    p = points.astype(np.float64)
    # the kernel's order of operations, so the result is the same to the last bit
    moved = np.column_stack(
        [
            rotation[i, 0] * p[:, 0] + rotation[i, 1] * p[:, 1] + rotation[i, 2] * p[:, 2] + translation[i]
            for i in range(3)
        ]
    )
    _assert_same_projection(ours, cam.project(moved), atol=0.0)
    _assert_same_projection(ours, cam._project_numpy(moved), atol=1e-9)


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_project_from_matches_opencv_with_rvec_and_tvec(model: str) -> None:
    cam = _camera(model)
    rng = np.random.default_rng(7)
    rotation = _rotation(rng)
    translation = rng.uniform(-2.0, 2.0, 3)
    camera_points = _points(rng)
    points = (camera_points - translation) @ rotation  # so that they land in front of the camera
    uv, depth, valid = cam.project_from(points, rotation, translation)
    assert valid.sum() > 500
    np.testing.assert_allclose(depth, camera_points[:, 2], atol=1e-9)
    rvec, _ = cv2.Rodrigues(rotation)
    finite = np.isfinite(uv).all(axis=1)
    ref = _opencv(model, points[finite], CAMERAS[model], rvec.ravel(), translation)
    np.testing.assert_allclose(uv[finite], ref, rtol=0.0, atol=1e-3)


def test_project_from_rejects_a_malformed_transform() -> None:
    cam = _camera("plumb_bob")
    points = np.ones((4, 3))
    with pytest.raises(CalibrationError, match=r"rotation \(3, 3\) and translation \(3,\)"):
        cam.project_from(points, np.eye(4), np.zeros(3))
    with pytest.raises(CalibrationError, match="NaN or infinite"):
        cam.project_from(points, np.eye(3), [0.0, np.inf, 0.0])
    with pytest.raises(CalibrationError, match=r"shape \(N, 3\)"):
        cam.project_from(np.ones((4, 2)), np.eye(3), np.zeros(3))


def test_project_takes_empty_and_big_endian_points() -> None:
    cam = _camera("equidistant")
    uv, depth, valid = cam.project(np.zeros((0, 3), dtype=np.float32))
    assert uv.shape == (0, 2) and depth.shape == (0,) and valid.shape == (0,)
    points = _points(np.random.default_rng(8), 50)
    _assert_same_projection(cam.project(points.astype(">f8")), cam.project(points), atol=0.0)


def test_points_behind_or_on_the_image_plane_are_invalid_with_nan_pixels() -> None:
    cam = _camera("plumb_bob")
    uv, depth, valid = cam.project(
        np.array([[0.1, 0.1, -5.0], [0.0, 0.0, 0.0], [1.0, -1.0, 1e-9], [0.0, 0.0, 5.0]])
    )
    assert valid.tolist() == [False, False, False, True]
    assert np.isnan(uv[:3]).all()
    assert depth.tolist() == [-5.0, 0.0, 1e-9, 5.0]


def test_points_beyond_the_fold_back_angle_never_wrap_into_the_image() -> None:
    d = (-0.3, 0.0, 0.0, 0.0, 0.0)  # strong barrel: r (1 - 0.3 r^2) turns back at r = 1.054
    cam = _camera("plumb_bob", d)
    assert cam.max_tan_angle == pytest.approx(1.0 / math.sqrt(0.9), rel=1e-3)
    far = np.array([[1.75, 0.0, 1.0], [0.0, -1.7, 1.0]])  # tan(angle) 1.75, 1.7
    opencv = _opencv("plumb_bob", far, d)
    assert cam.in_image(opencv).all()  # OpenCV folds them back into the picture
    uv, _, valid = cam.project(far)
    assert not valid.any()
    assert np.isnan(uv).all()


def test_points_outside_the_image_are_invalid_but_keep_their_pixels() -> None:
    cam = _camera("plumb_bob")
    uv, _, valid = cam.project(np.array([[1.2, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert valid.tolist() == [False, True]
    assert uv[0, 0] > 640 and np.isfinite(uv).all()


def test_the_image_edges_follow_the_pixel_centre_convention() -> None:
    cam = _camera("plumb_bob", (0.0,) * 5)
    inside = cam.in_image(
        np.array([[-0.5, -0.5], [639.49, 399.49], [639.5, 0.0], [0.0, -0.51], [np.nan, 1.0]])
    )
    assert inside.tolist() == [True, True, False, False, False]


def test_from_camera_info() -> None:
    rec = CameraInfoRecord(
        frame_id="camera_front",
        stamp_ns=5,
        width=640,
        height=400,
        distortion_model="rational_polynomial",
        d=CAMERAS["rational_polynomial"],
        k=tuple(K.ravel()),
        r=tuple(np.eye(3).ravel()),
        p=(*K[0], 0.0, *K[1], 0.0, *K[2], 0.0),
    )
    cam = Camera.from_camera_info(rec)
    assert (cam.name, cam.frame_id, cam.width, cam.height, cam.model) == (
        "camera_front",
        "camera_front",
        640,
        400,
        "rational_polynomial",
    )
    np.testing.assert_array_equal(cam.K, K)
    assert tuple(CAMERAS["rational_polynomial"]) == cam.D
    assert not cam.K.flags.writeable


def test_from_camera_info_without_coefficients_means_no_distortion() -> None:
    rec = CameraInfoRecord("c", 0, 640, 400, "plumb_bob", (), tuple(K.ravel()), (), ())
    cam = Camera.from_camera_info(rec, name="front")
    assert cam.name == "front"
    assert cam.D == (0.0,) * 5
    uv, _, _ = cam.project(np.array([[1.0, 0.5, 2.0]]))
    np.testing.assert_allclose(uv, [[K[0, 0] * 0.5 + K[0, 2], K[1, 1] * 0.25 + K[1, 2]]])


def test_from_camera_info_rejects_an_unknown_model() -> None:
    rec = CameraInfoRecord("c", 0, 640, 400, "kannala_brandt_9", (0.0,) * 9, tuple(K.ravel()), (), ())
    with pytest.raises(CalibrationError, match=r"kannala_brandt_9.*not supported"):
        Camera.from_camera_info(rec)


@pytest.mark.parametrize(
    ("model", "d", "match"),
    [
        ("equidistant", (0.1, 0.0, 0.0), "equidistant takes 4"),
        ("rational_polynomial", (0.1, 0.0, 0.0, 0.0, 0.0), "rational_polynomial takes 8"),
        ("plumb_bob", (0.1, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0), "rational_polynomial"),
        ("plumb_bob", (math.nan, 0.0, 0.0, 0.0, 0.0), "non-finite"),
    ],
)
def test_rejects_malformed_distortion(model: str, d: tuple[float, ...], match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        _camera(model, d)


def test_rejects_a_malformed_camera_matrix() -> None:
    bad = K.copy()
    bad[0, 0] = -1.0
    with pytest.raises(CalibrationError, match="fx, fy > 0"):
        _camera("plumb_bob", k=bad)
    with pytest.raises(CalibrationError, match="3x3"):
        _camera("plumb_bob", k=np.eye(4))
