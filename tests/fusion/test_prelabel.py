"""`fusion.prelabel`: the labels' projection into the cameras."""

from __future__ import annotations

import numpy as np
import pytest

from calib.camera import Camera
from calib.projection import boxes_to_image
from calib.transform import Transform
from fusion import prelabel

OPTICAL_FROM_LIDAR = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def _camera(name: str, distortion: tuple[float, ...]) -> Camera:
    k = np.array([[700.0, 0.0, 640.0], [0.0, 700.0, 360.0], [0.0, 0.0, 1.0]])
    return Camera(name, f"{name}_optical", 1280, 720, "plumb_bob", k, distortion)


def test_labels_are_projected_in_threaded_batches_as_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    m = 2 * prelabel.PROJECTION_BATCH + 300  # three batches per camera
    boxes = np.column_stack(
        [
            rng.uniform(-10.0, 60.0, m),  # some behind the camera, some far ahead
            rng.uniform(-30.0, 30.0, m),
            rng.uniform(-2.0, 1.0, m),
            rng.uniform(0.5, 5.0, (m, 3)),
            rng.uniform(-np.pi, np.pi, m),
        ]
    )
    front = (
        _camera("front", (-0.3, 0.1, 0.001, -0.002, 0.0)),
        Transform("front_optical", "lidar", OPTICAL_FROM_LIDAR, np.zeros(3)),
    )
    yaw = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # looking left
    left = (
        _camera("left", ()),
        Transform("left_optical", "lidar", OPTICAL_FROM_LIDAR @ yaw, np.array([0.0, 0.1, 0.0])),
    )
    rows = [np.arange(m), rng.permutation(m)[: m // 2]]
    jobs = [(rows[0], *front), (rows[1], *left)]
    expected = [boxes_to_image(boxes[r], camera, t) for r, (_, camera, t) in zip(rows, jobs, strict=True)]

    for threads in (4, 1):
        monkeypatch.setattr(prelabel, "PROJECTION_THREADS", threads)
        got = prelabel._project_all(boxes, jobs)
        for (ext, vis), (want_ext, want_vis) in zip(got, expected, strict=True):
            np.testing.assert_array_equal(vis, want_vis)
            np.testing.assert_array_equal(ext, want_ext)  # NaN rows where not visible, equal too
    assert 0 < expected[0][1].sum() < m and 0 < expected[1][1].sum() < len(rows[1])
    ext, vis = prelabel.project_boxes(boxes, *front)
    np.testing.assert_array_equal(ext, expected[0][0])
