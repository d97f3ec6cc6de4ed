"""fusion.detect.sampling: how long a box can be, by where a spinning LiDAR's rays passed it (free space).

Synthetic sweeps: a 32-ring LiDAR 1.8 m above a flat road, 512 columns a revolution (0.70 degrees, the
simulated logs' resolution), rays cast against boxes and the road."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from fusion.decode.types import PointCloud
from fusion.detect import GeometricDetector
from fusion.detect.sampling import length_upper_bounds

F64 = npt.NDArray[np.float64]
COLUMNS = 512
STEP = 2.0 * math.pi / COLUMNS
ELEVATIONS = np.radians(np.linspace(-15.0, 5.0, 32))
GROUND_Z = -1.8


def _sweep(
    boxes: list[tuple[float, ...]], phase: float = 0.0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint16]]:
    """Points (N, 3) and rings (N,) of one sweep (column-major firing order) against `boxes` (each x y z
    l w h yaw) and the road; no return beyond 100 m. `phase`: the first column's azimuth (radians)."""
    az = phase - STEP * np.arange(COLUMNS)  # clockwise
    d = np.stack(
        np.broadcast_arrays(
            np.cos(ELEVATIONS)[None, :] * np.cos(az)[:, None],
            np.cos(ELEVATIONS)[None, :] * np.sin(az)[:, None],
            np.sin(ELEVATIONS)[None, :],
        ),
        axis=-1,
    ).reshape(-1, 3)
    t = np.where(d[:, 2] < 0.0, GROUND_Z / np.minimum(d[:, 2], -1e-12), np.inf)
    for x, y, z, length, width, height, yaw in boxes:
        c, s = math.cos(yaw), math.sin(yaw)
        o = np.array([-x * c - y * s, x * s - y * c, -z])  # the sensor in the box's frame
        dl = np.stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c, d[:, 2]], axis=1)
        half = np.array([length, width, height]) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - o) / dl, (half - o) / dl
        near = np.nanmax(np.minimum(t1, t2), axis=1)
        far = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (near <= far) & (near > 0.0)
        t = np.where(hit & (near < t), near, t)
    keep = t < 100.0
    ring = np.tile(np.arange(ELEVATIONS.size, dtype=np.uint16), COLUMNS)
    return (d[keep] * t[keep, None]).astype(np.float32), ring[keep]


# a car 4.6 m long parked along x, seen from behind and to the side: its near end at 17.7 m, its side
# facing the sensor at y = 5.1 m, its far end seen 12.9 degrees off end-on (columns 1.26 m apart there)
CAR = (20.0, 6.0, GROUND_Z + 0.75, 4.6, 1.8, 1.5, 0.0)
SPACING = math.hypot(22.3, 5.1) * STEP / math.sin(math.atan2(5.1, 22.3))


@pytest.mark.parametrize("phase", [0.0, 0.3 * STEP, 0.6 * STEP, 0.9 * STEP])
def test_a_grazing_view_is_bounded_within_one_column_spacing(phase: float) -> None:
    xyz, ring = _sweep([CAR], phase)
    bound = length_upper_bounds(xyz, ring, np.array([CAR]), STEP)[0]
    assert CAR[3] - 1e-6 <= bound <= CAR[3] + SPACING  # the far end lies before the next column's ray


def test_the_bound_holds_for_the_detectors_own_box() -> None:
    xyz, ring = _sweep([CAR], 0.4 * STEP)
    boxes = GeometricDetector().detect(PointCloud(xyz, None, None, ring, "lidar", 0))
    car = np.flatnonzero(boxes.category == "car")
    assert car.size == 1
    assert boxes.measured[car[0], 0] < CAR[3] - 0.05  # the points stop short of the far end ...
    assert CAR[3] - 0.02 <= boxes.length_bound[car[0]] <= CAR[3] + SPACING  # ... the free space closes it
    assert np.isinf(boxes.length_bound[boxes.category != "car"]).all()


def test_an_occluded_far_end_gives_no_upper_bound() -> None:
    # a post 10 m off, in line with the car's far end: the rays just beyond the car hit it
    post = (9.78, 2.13, GROUND_Z + 2.0, 0.3, 0.3, 4.0, 0.0)
    xyz, ring = _sweep([CAR, post])
    bounds = length_upper_bounds(xyz, ring, np.array([CAR]), STEP)
    assert np.isinf(bounds).all()
    clear, clear_ring = _sweep([CAR])  # without the post the same car is bounded
    assert np.isfinite(length_upper_bounds(clear, clear_ring, np.array([CAR]), STEP)).all()


def test_a_car_straight_ahead_shows_no_side_and_gets_no_bound() -> None:
    ahead = (20.0, 0.3, GROUND_Z + 0.75, 4.6, 1.8, 1.5, 0.0)
    xyz, ring = _sweep([ahead])
    assert np.isinf(length_upper_bounds(xyz, ring, np.array([ahead]), STEP)).all()


def test_without_rings_or_an_azimuth_step_nothing_is_known() -> None:
    xyz, ring = _sweep([CAR])
    box = np.array([CAR])
    assert np.isinf(length_upper_bounds(xyz, None, box, STEP)).all()
    assert np.isinf(length_upper_bounds(xyz, ring, box, 0.0)).all()
    assert np.isinf(length_upper_bounds(xyz, ring, box, STEP, np.array([False]))).all()
    assert length_upper_bounds(xyz, ring, np.zeros((0, 7)), STEP).shape == (0,)
