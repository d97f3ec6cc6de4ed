"""Offline 4D refinement: yaw, gaps, static objects, size, filtering, smoothing, forward/backward merge,
and the whole chain on simulated logs against their ground truth."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from scipy.optimize import linear_sum_assignment

from calib.transform import wrap_angle
from exporters.labels import read_labels
from fusion.bags import open_bag
from fusion.boxes import Boxes
from fusion.capture import with_capture_offsets
from fusion.detect import GeometricDetector
from fusion.evaluation.iou import bev_iou, iou_3d
from fusion.simulate import simulate_log
from fusion.sync import SyncConfig, prepare, synchronize
from tests.trackers.scenarios import FRAME_NS, car, frame
from trackers import (
    RefineConfig,
    Tracker,
    TrackerConfig,
    TrackingError,
    TrackTable,
    one_category_per_object,
    refine,
    refine_blocks,
    track_both_ways,
)

F64 = npt.NDArray[np.float64]


def one_track(
    boxes: Sequence[Sequence[float]] | F64,
    frames: Sequence[int] | None = None,
    *,
    track_id: int = 7,
    score: float | Sequence[float] = 0.9,
    num_points: int = 100,
    sensor_origin: Sequence[float] | F64 | None = None,
) -> TrackTable:
    rows = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    index = np.arange(len(rows)) if frames is None else np.asarray(frames)
    return TrackTable.build(
        frame_index=index,
        t_ns=index * FRAME_NS,
        track_id=np.full(len(rows), track_id),
        category=["car"] * len(rows),
        score=np.broadcast_to(np.asarray(score, dtype=np.float32), len(rows)),
        boxes_world=rows,
        num_points=np.full(len(rows), num_points),
        sensor_origin=None if sensor_origin is None else np.broadcast_to(sensor_origin, (len(rows), 3)),
    )


def concat(*tables: TrackTable) -> TrackTable:
    return TrackTable.build(
        frame_index=np.concatenate([t.frame_index for t in tables]),
        t_ns=np.concatenate([t.t_ns for t in tables]),
        track_id=np.concatenate([t.track_id for t in tables]),
        category=np.concatenate([t.category for t in tables]),
        score=np.concatenate([t.score for t in tables]),
        boxes_world=np.concatenate([t.boxes_world for t in tables]),
        num_points=np.concatenate([t.num_points for t in tables]),
    )


def moving_car(n: int, speed: float = 10.0, x0: float = 5.0, y: float = 2.0) -> F64:
    """(n, 7) exact boxes of a car driving along +x (yaw 0) at `speed`, one per 100 ms frame."""
    return np.array([car(x0 + speed * 0.1 * k, y, 0.0) for k in range(n)])


# --- yaw, gaps, static, size ------------------------------------------------------------------------


def test_one_flipped_detection_comes_out_heading_along_the_motion() -> None:
    rng = np.random.default_rng(1)
    boxes = moving_car(15)
    boxes[:, :2] += rng.normal(0.0, 0.1, (15, 2))
    boxes[:, 6] = rng.normal(0.0, 0.03, 15)
    boxes[6, 6] += math.pi  # front and back confused once
    out = refine(one_track(boxes))
    assert len(out) == 15 and set(out.origin.tolist()) == {"detected"}
    assert np.abs(wrap_angle(out.boxes_world[:, 6])).max() < 0.05


def test_in_a_moving_sensor_frame_headings_do_not_follow_the_velocity() -> None:
    """A parked car seen from a car driving past at 10 m/s: in the sensor frame it moves backwards
    while facing forwards. From the velocity its heading would flip; without, its majority heading stays."""
    rng = np.random.default_rng(3)
    boxes = moving_car(20, speed=-10.0, x0=25.0, y=4.0)
    boxes[:, 6] = rng.normal(0.0, 0.02, 20)
    boxes[[3, 11], 6] += math.pi
    world = refine(one_track(boxes))
    assert np.abs(wrap_angle(world.boxes_world[:, 6] - math.pi)).max() < 0.05
    sensor = refine(one_track(boxes), RefineConfig(heading_from_velocity=False))
    assert np.abs(wrap_angle(sensor.boxes_world[:, 6])).max() < 0.05


def test_parked_car_faces_its_majority_heading_when_front_and_back_alternate() -> None:
    rng = np.random.default_rng(2)
    boxes = np.array([car(10.0, 4.0, 0.3) for _ in range(12)])
    boxes[:, 6] += rng.normal(0.0, 0.02, 12)
    boxes[[1, 4, 8], 6] += math.pi  # 3 of 12 flipped
    out = refine(one_track(boxes))
    assert np.abs(wrap_angle(out.boxes_world[:, 6] - 0.3)).max() < 0.02


def test_three_frame_gap_is_filled_with_three_interpolated_boxes_on_the_line() -> None:
    frames = [0, 1, 2, 3, 7, 8, 9, 10]
    truth = moving_car(11)
    out = refine(one_track(truth[frames], frames))
    assert out.frame_index.tolist() == list(range(11))
    assert out.origin.tolist() == ["detected"] * 4 + ["interpolated"] * 3 + ["detected"] * 4
    gap = out.origin == "interpolated"
    assert np.abs(out.boxes_world[gap, :3] - truth[4:7, :3]).max() < 1e-3
    assert out.t_ns[gap].tolist() == [4 * FRAME_NS, 5 * FRAME_NS, 6 * FRAME_NS]
    assert (out.num_points[gap] == 0).all() and (out.num_points[~gap] == 100).all()


def test_gap_longer_than_max_gap_frames_stays_empty_but_keeps_the_id() -> None:
    frames = [0, 1, 2, 3, 10, 11, 12, 13]
    out = refine(one_track(moving_car(14)[frames], frames), RefineConfig(max_gap_frames=5))
    assert out.frame_index.tolist() == frames and set(out.track_id.tolist()) == {7}


def test_parked_car_with_noisy_detections_is_held_at_one_pose() -> None:
    rng = np.random.default_rng(3)
    truth = np.array(car(12.0, -3.0, 1.0))
    boxes = np.tile(truth, (25, 1))
    boxes[:, :3] += rng.normal(0.0, 0.15, (25, 3))
    boxes[:, 6] += rng.normal(0.0, 0.05, 25)
    boxes[::4, 6] += math.pi
    out = refine(one_track(boxes))
    assert len(out) == 25
    spread = out.boxes_world.max(axis=0) - out.boxes_world.min(axis=0)
    assert spread.max() < 0.01  # one pose (and one size): spread exactly 0 here
    assert np.hypot(*(out.boxes_world[0, :2] - truth[:2])) < 0.1
    assert abs(wrap_angle(out.boxes_world[0, 6] - 1.0)) < 0.05
    assert (out.velocity == 0.0).all()


def wandering_parked_car(rng: np.random.Generator, n: int = 30) -> tuple[F64, F64]:
    """(truth (7,), boxes (n, 7)): a parked car whose detections, as the geometric detector's of a car
    passed close by, scatter 0.15 m for the first 3/4 of the track, then for the rest are turned 15-120
    degrees and shifted about 1 m towards the passing sensor (the near face's points pull the box)."""
    truth = np.array(car(12.0, -3.0, 0.3))
    boxes = np.tile(truth, (n, 1))
    boxes[:, :2] += rng.normal(0.0, 0.15, (n, 2))
    late = np.arange(n) >= n - n // 4
    boxes[late, 6] += rng.choice([-1.0, 1.0], late.sum()) * np.radians(rng.uniform(15.0, 120.0, late.sum()))
    boxes[late, :2] += np.array([0.3, 1.0]) + rng.normal(0.0, 0.3, (late.sum(), 2))
    return truth, boxes


def test_parked_car_whose_boxes_wander_is_held_still() -> None:
    """The turned, shifted boxes at the end give the smoother a false velocity and a path of more than
    1 m (not held by the smoothed test alone: `static_robust=False`); the median centres of the track's
    two halves hardly move, so it is held at one pose, near the truth, heading from the unturned boxes."""
    truth, boxes = wandering_parked_car(np.random.default_rng(11))
    smoothed_only = refine(one_track(boxes), RefineConfig(static_robust=False))
    assert np.abs(smoothed_only.velocity[:, :2]).max() > 0.5  # the false velocity the issue describes
    out = refine(one_track(boxes))
    assert (out.velocity == 0.0).all()
    assert np.unique(out.boxes_world, axis=0).shape[0] == 1  # one pose for the whole track
    assert np.hypot(*(out.boxes_world[0, :2] - truth[:2])) < 0.3
    assert abs(wrap_angle(out.boxes_world[0, 6] - truth[6])) < 0.1


@pytest.mark.parametrize("frames", [10, 30])
def test_car_creeping_at_1_5_mps_with_wandering_boxes_keeps_moving(frames: int) -> None:
    """A car creeping in traffic at 1.5 m/s for 1 or 3 s, its boxes as jittered (0.3 m) and, in one frame
    in five, turned as a parked car's: it progresses steadily, so it is not held still."""
    rng = np.random.default_rng(12)
    boxes = moving_car(frames, speed=1.5)
    boxes[:, :2] += rng.normal(0.0, 0.3, (frames, 2))
    boxes[::5, 6] += np.radians(rng.uniform(15.0, 120.0, boxes[::5].shape[0]))
    out = refine(one_track(boxes))
    speed = np.hypot(out.velocity[:, 0], out.velocity[:, 1])
    assert np.median(speed) > 1.0
    assert out.boxes_world[-1, 0] - out.boxes_world[0, 0] > 0.5 * 1.5 * (frames - 1) * 0.1


def test_size_of_a_car_seen_for_30_frames_is_within_10_cm_of_the_truth() -> None:
    """Detector-like sizes: a LiDAR box is the object's visible part (too short when one side is seen,
    truncation ~ exponential, mean 40 cm in length, 5 cm across), plus 3 cm noise and two merges."""
    rng = np.random.default_rng(4)
    truth = np.array([4.62, 1.86, 1.52])
    boxes = moving_car(30)
    boxes[:, 3:6] = truth - rng.exponential([0.4, 0.05, 0.05], (30, 3)) + rng.normal(0.0, 0.03, (30, 3))
    boxes[[5, 17], 3:5] += [1.5, 0.8]  # merged with something beside it
    out = refine(one_track(boxes))
    assert np.unique(out.boxes_world[:, 3:6], axis=0).shape == (1, 3)  # one size for the whole track
    assert np.abs(out.boxes_world[0, 3:6] - truth).max() < 0.10
    median = np.median(boxes[:, 3:6], axis=0)
    assert abs(median[0] - truth[0]) > 0.2  # the median alone would be a car too short


def test_length_never_seen_end_on_is_at_least_the_category_prior() -> None:
    """The car ahead, seen only from behind (3 m boxes: the rear and a bit of roof), gets the prior's
    length; a short car seen from the side keeps its measured 3.8 m; without sensor positions nothing
    is assumed."""
    rng = np.random.default_rng(11)
    ahead = moving_car(30, x0=12.0, y=0.0)
    ahead[:, 3] = 3.0 + rng.normal(0.0, 0.02, 30)
    out = refine(one_track(ahead, sensor_origin=[0.0, 0.0, 1.8]))
    assert out.boxes_world[0, 3] == pytest.approx(RefineConfig().size_prior["car"][0])
    beside = moving_car(30, x0=-15.0, y=6.0)  # passes the sensor broadside
    beside[:, 3] = 3.8 + rng.normal(0.0, 0.02, 30)
    out = refine(one_track(beside, sensor_origin=[0.0, 0.0, 1.8]))
    assert out.boxes_world[0, 3] == pytest.approx(3.8, abs=0.06)
    assert refine(one_track(ahead)).boxes_world[0, 3] < 3.1  # no sensor positions: measured length
    with pytest.raises(TrackingError, match="size_prior"):
        RefineConfig(size_prior={"car": (4.5, 1.8)})  # type: ignore[dict-item]


def test_lengths_the_detector_completed_to_its_floor_do_not_count_for_the_track_length() -> None:
    """A 4.8 m car passing broadside, measured in 14 frames (partly: up to 0.5 m short) and seen in 26
    as a partial view that the detector completed to its 4.2 m floor: the completed lengths are not
    measurements, and the high quantile of the measured ones is the car's length. A car with only 2
    measured lengths among 30 completed ones (a box merged with a neighbour) keeps them down."""
    rng = np.random.default_rng(21)
    boxes = moving_car(40, x0=-20.0, y=6.0)
    boxes[:, 3] = 4.8 - np.minimum(rng.exponential(0.15, 40), 0.5) + rng.normal(0.0, 0.01, 40)
    floor = rng.permutation(40)[:26]
    boxes[floor, 3] = 4.2
    measured = boxes[:, 3:5].copy()
    measured[floor, 0] = rng.uniform(2.5, 4.1, floor.size)
    table = replace(one_track(boxes, sensor_origin=[0.0, 0.0, 1.8]), measured=measured)
    assert refine(table).boxes_world[0, 3] == pytest.approx(4.8, abs=0.05)
    as_measured = refine(replace(table, measured=boxes[:, 3:5])).boxes_world[0, 3]
    assert as_measured < 4.75  # every length taken as measured (4.735): the floor pulls the quantile down
    merged = moving_car(32, x0=-20.0, y=6.0)
    merged[:, 3] = 4.2
    merged[[3, 20], 3] = 6.5
    seen = merged[:, 3:5].copy()
    seen[:, 0] = 3.5
    seen[[3, 20], 0] = 6.5
    table = replace(one_track(merged, sensor_origin=[0.0, 0.0, 1.8]), measured=seen)
    assert refine(table).boxes_world[0, 3] < 4.3
    assert refine(table, RefineConfig(size_measured_share=0.0)).boxes_world[0, 3] > 6.0


def test_one_full_view_among_completed_lengths_gives_the_length_and_a_merged_one_does_not() -> None:
    """A parked 4.78 m car passed at 5-28 m behind the cars parked around it: 29 partial views (1-4.18 m
    seen) that the detector completed to its 4.2 m floor, and one full view (4.79 m, the frame where it
    was seen whole). The measured lengths carry less than `size_measured_share` of the weight, but the
    one there is is a car's length, so the completed ones do not count (seed 3 of the simulated logs:
    4.21 m before). The same track whose only measured length is 6.5 m (merged with a neighbour, far
    above a car's length) keeps the floor."""
    rng = np.random.default_rng(30)
    boxes = np.array([car(8.0, 6.0, 0.0) for _ in range(30)])
    boxes[:, 3] = 4.2
    seen = boxes[:, 3:5].copy()
    seen[:, 0] = rng.uniform(1.0, 4.18, 30)
    boxes[11, 3] = seen[11, 0] = 4.79
    table = replace(one_track(boxes, sensor_origin=[0.0, 0.0, 1.8]), measured=seen)
    assert refine(table).boxes_world[0, 3] == pytest.approx(4.79, abs=0.01)
    boxes[11, 3] = seen[11, 0] = 6.5
    table = replace(one_track(boxes, sensor_origin=[0.0, 0.0, 1.8]), measured=seen)
    assert refine(table).boxes_world[0, 3] == pytest.approx(4.2, abs=0.01)


def test_a_length_never_measured_is_at_least_the_category_prior_from_any_view() -> None:
    """A 4.42 m car passed at 20-45 deg off end-on whose every length the detector completed to its 4.2 m
    floor (it saw 1-4 m of it each time): the length was never seen, so it is at least the prior's
    4.5 m (seed 7 of the simulated logs: 4.20 -> 4.50 m, true 4.42 m); one measured length (4.3 m)
    keeps the measured size, and without sensor positions nothing is assumed. Trucks (6-12 m) have no
    typical length (`size_typical_length`): theirs stays as the detector completed it."""
    rng = np.random.default_rng(7)
    boxes = moving_car(30, x0=-40.0, y=12.0)
    boxes[:, 3] = 4.2
    seen = boxes[:, 3:5].copy()
    seen[:, 0] = rng.uniform(1.0, 4.0, 30)
    table = replace(one_track(boxes, sensor_origin=[0.0, 0.0, 1.8]), measured=seen)
    assert refine(table).boxes_world[0, 3] == pytest.approx(RefineConfig().size_prior["car"][0])
    assert refine(replace(table, sensor_origin=np.full((30, 3), np.nan))).boxes_world[0, 3] < 4.21
    as_truck = replace(table, category=np.full(30, "truck"))  # no typical length: the detector's floor
    assert refine(as_truck).boxes_world[0, 3] < 4.21
    boxes[[4, 9, 20], 3] = seen[[4, 9, 20], 0] = 4.3
    table = replace(one_track(boxes, sensor_origin=[0.0, 0.0, 1.8]), measured=seen)
    assert refine(table).boxes_world[0, 3] == pytest.approx(4.3, abs=0.01)
    with pytest.raises(TrackingError, match="size_typical_length"):
        RefineConfig(size_typical_length=("van",))


def test_boxes_fitted_across_a_parked_car_do_not_count_for_its_size() -> None:
    """A parked car passed close by: for 5 frames the detector fits its box across the car (turned 90
    degrees, the car's length as the box's width, merged with a cyclist beside it: 2.4 m wide, 1.7 m
    high) with many more points than the other views. Those boxes do not count for the size."""
    rng = np.random.default_rng(5)
    truth = np.array([4.5, 1.85, 1.5])
    boxes = np.array([car(10.0, 4.0, 0.0) for _ in range(30)])
    boxes[:, 3:6] = truth - rng.exponential([0.2, 0.03, 0.03], (30, 3))
    across = np.arange(12, 17)
    boxes[across, 3:7] = [4.2, 2.4, 1.7, 0.5 * math.pi]
    points = np.where(np.isin(np.arange(30), across), 800, 100)
    table = replace(one_track(boxes, sensor_origin=[0.0, 0.0, 1.8]), num_points=points.astype(np.int32))
    out = refine(table).boxes_world[0]
    assert np.abs(out[3:6] - truth).max() < 0.10
    assert abs(wrap_angle(out[6])) < 0.05


def test_a_few_lengths_merged_with_a_neighbour_do_not_count_among_measured_ones() -> None:
    """A parked 4.6 m car measured in 20 frames (up to 0.3 m short, as partial views are) and in 5
    merged with the car parked behind it (5.3-5.6 m): at the 0.9 quantile the merged ones would make
    it 5.3 m long; more than `size_outlier_ratio` above the median length, they do not count."""
    rng = np.random.default_rng(9)
    boxes = np.array([car(5.0, 6.0, 0.0) for _ in range(25)])
    boxes[:, 3] = 4.6 - np.minimum(rng.exponential(0.1, 25), 0.3)
    merged = np.array([2, 7, 12, 18, 23])
    boxes[merged, 3] = rng.uniform(5.3, 5.6, merged.size)
    table = one_track(boxes, sensor_origin=[0.0, 0.0, 1.8])
    assert refine(table).boxes_world[0, 3] == pytest.approx(4.6, abs=0.05)
    assert refine(table, RefineConfig(size_outlier_ratio=0.0)).boxes_world[0, 3] > 5.2


def test_track_both_ways_carries_the_measured_sizes_of_the_detections() -> None:
    rows = [[[8.0 + k, 1.0, 0.5, 4.2, 1.8, 1.5, 0.0]] for k in range(6)]
    frames = []
    for i, (r, (_, t, p)) in enumerate(zip(rows, _frames(rows), strict=True)):
        measured = [[3.0 + 0.1 * i, 1.8]]
        bound = [np.inf if i % 2 else 4.6 + 0.1 * i]
        boxes = Boxes.build(
            r, ["car"], [0.9], [50], frame_id="l", stamp_ns=t, measured=measured, length_bound=bound
        )
        frames.append((boxes, t, p))
    table = track_both_ways(frames).sorted()
    np.testing.assert_allclose(table.measured[:, 0], 3.0 + 0.1 * np.arange(6))
    np.testing.assert_array_equal(table.length_bound, [4.6, np.inf, 4.8, np.inf, 5.0, np.inf])


def _partly_measured_car(rng: np.random.Generator, length: float) -> tuple[TrackTable, F64]:
    """A parked car passed at 30-60 degrees off end-on, 30 detections: 20 partial views the detector
    completed to its 4.2 m floor (2.5-4.15 m seen), 10 measured lengths, 9 of them 0.15-0.5 m short (the
    far end between two columns) and one 1 cm short; and the upper bounds of the free space beyond its
    far end in 12 frames (0.05-1.2 m above its length), unknown (+inf) in the others (seed 4 of the
    simulated logs, a car 4.49 m long: measured at most 4.48 m, bounds 4.65-5.91 m)."""
    boxes = np.array([car(8.0, 6.0, 0.0) for _ in range(30)])
    boxes[:, 3] = 4.2
    seen = boxes[:, 3:5].copy()
    seen[:, 0] = rng.uniform(2.5, 4.15, 30)
    measured = rng.permutation(30)[:10]
    seen[measured, 0] = boxes[measured, 3] = length - rng.uniform(0.15, 0.5, 10)
    seen[measured[0], 0] = boxes[measured[0], 3] = length - 0.01
    bound = np.full(30, np.inf)
    bound[rng.permutation(30)[:12]] = length + rng.uniform(0.05, 1.2, 12)
    table = replace(one_track(boxes, sensor_origin=[0.0, 0.0, 1.8]), measured=seen)
    return table, bound


def test_free_space_beyond_a_partly_measured_car_gives_its_length() -> None:
    """Every observed extent is a lower bound of the car's length and every free-space bound an upper
    one; the length is moved to where none is violated: the one extent 1 cm short, which the 0.9
    quantile of the measured lengths passes over (0.15 m or more short without the bounds)."""
    table, bound = _partly_measured_car(np.random.default_rng(4), 4.49)
    without = refine(replace(table, length_bound=bound), RefineConfig(size_free_space=False))
    assert without.boxes_world[0, 3] < 4.49 - 0.10
    out = refine(replace(table, length_bound=bound))
    assert out.boxes_world[0, 3] == pytest.approx(4.48, abs=1e-6)
    # a wrong upper bound (a ray over the car, a misfitted box) below most lower bounds is outvoted
    bound[np.flatnonzero(np.isinf(bound))[0]] = 3.9
    assert refine(replace(table, length_bound=bound)).boxes_world[0, 3] == pytest.approx(4.48, abs=1e-6)


def test_without_free_space_bounds_refinement_is_unchanged() -> None:
    """Tracks whose detections carry no upper bound (every detector but the geometric one; the geometric
    one where the far end was occluded) keep their length: the longest extent alone is too often a
    merged or stretched box. Every output array is the same as with the bounds switched off."""
    table, _ = _partly_measured_car(np.random.default_rng(4), 4.49)
    on, off = refine(table), refine(table, RefineConfig(size_free_space=False))
    for f in fields(TrackTable):
        np.testing.assert_array_equal(getattr(on, f.name), getattr(off, f.name))


def test_boxes_of_the_visible_rear_grow_forward_to_the_track_size() -> None:
    """A car driving away from the sensor: seen whole for 10 frames, then only its rear (2 m long boxes,
    centred on the visible part). At the track's length the rear face stays where it was seen."""
    rng = np.random.default_rng(8)
    truth = moving_car(20, x0=10.0, y=0.0)
    boxes = truth.copy()
    boxes[:, :2] += rng.normal(0.0, 0.03, (20, 2))
    rear = truth[10:, 0] - truth[10:, 3] / 2.0
    boxes[10:, 3] = 2.0
    boxes[10:, 0] = rear + 1.0
    table = one_track(boxes, sensor_origin=[0.0, 0.0, 1.8])
    out = refine(table)
    assert np.abs(out.boxes_world[:, 3] - 4.5).max() < 1e-3  # 2e-5: the sweep stretch of a car end-on
    assert np.abs(out.boxes_world[:, 0] - truth[:, 0]).max() < 0.1
    plain = refine(table, RefineConfig(anchor_seen_faces=False))
    assert np.abs(plain.boxes_world[15:, 0] - truth[15:, 0]).min() > 0.5  # centred on the rear part


# --- filtering and score ----------------------------------------------------------------------------


def test_one_frame_track_is_removed_and_short_weak_tracks_too() -> None:
    long = one_track(moving_car(10), track_id=1)
    single = one_track([car(30.0, 5.0, 0.0)], [4], track_id=2)
    weak = one_track(moving_car(10, y=-6.0), track_id=3, score=0.2)
    out = refine(concat(long, single, weak))
    assert sorted(set(out.track_id.tolist())) == [1]


def test_track_score_is_the_top_k_mean_scaled_by_length_on_every_box() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.95, 0.5]
    out = refine(one_track(moving_car(6), score=scores), RefineConfig(score_top_k=3, full_score_frames=10))
    expected = np.float32((0.95 + 0.9 + 0.8) / 3 * 0.6)
    assert out.score.dtype == np.float32 and (out.score == expected).all()


def test_track_score_of_all_detections_scaled_by_the_category_length() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.95, 0.5]
    cars = one_track(moving_car(6), score=scores, track_id=1)
    walkers = replace(
        one_track(moving_car(6, y=-6.0), score=scores, track_id=2), category=np.full(6, "pedestrian")
    )
    config = RefineConfig(score_top_k=0, full_score_frames=10, score_frames={"pedestrian": 4})
    out = refine(concat(cars, walkers), config)
    mean = np.mean(np.asarray(scores, dtype=np.float32))
    assert out.score[out.track_id == 1] == pytest.approx(mean * 0.6, rel=1e-6)  # 6 of full_score_frames 10
    assert out.score[out.track_id == 2] == pytest.approx(mean, rel=1e-6)  # 6 of the pedestrians' 4: full
    with pytest.raises(TrackingError, match="score_frames"):
        RefineConfig(score_frames={"car": 0})
    with pytest.raises(TrackingError, match="score_frames has unknown categories"):
        RefineConfig(score_frames={"tram": 5})


def test_track_score_deficit_shrinks_with_range_so_a_far_track_outranks_a_near_one() -> None:
    # the same scores near (5..9.5 m) and far (45..49.5 m from the sensor at the origin): with no range
    # term they tie; with score_range_m 50 the far track's deficit is cut by exp(-~47 / 50)
    scores = [0.8] * 10
    near = one_track(moving_car(10, speed=5.0), score=scores, track_id=1, sensor_origin=[0.0, 0.0, 0.0])
    far = one_track(
        moving_car(10, speed=5.0, x0=45.0), score=scores, track_id=2, sensor_origin=[0.0, 0.0, 0.0]
    )
    plain = refine(concat(near, far), RefineConfig(score_top_k=0))
    assert plain.score[plain.track_id == 1][0] == plain.score[plain.track_id == 2][0]
    config = RefineConfig(score_top_k=0, score_range_m={"car": 50.0})
    out = refine(concat(near, far), config)
    for track, x0 in ((1, 5.0), (2, 45.0)):
        r = np.mean(np.hypot(x0 + 0.5 * np.arange(10), 2.0))
        expected = 1.0 - 0.2 * math.exp(-r / 50.0)
        assert out.score[out.track_id == track] == pytest.approx(expected, rel=1e-6)
    assert out.score[out.track_id == 2][0] > out.score[out.track_id == 1][0]
    walkers = refine(_as(concat(near, far), "pedestrian"), config)  # only the categories named
    assert walkers.score == pytest.approx(0.8, rel=1e-6)
    assert RefineConfig.from_mapping(config.to_mapping()) == config
    with pytest.raises(TrackingError, match="score_range_m values"):
        RefineConfig(score_range_m={"car": 0.0})
    with pytest.raises(TrackingError, match="score_range_m has unknown categories"):
        RefineConfig(score_range_m={"tram": 50.0})


def _as(table: TrackTable, category: str) -> TrackTable:
    return replace(table, category=np.full(len(table), category))


def test_an_object_tracked_in_two_categories_stays_in_the_higher_scored_one() -> None:
    rng = np.random.default_rng(3)
    path = moving_car(20, speed=4.0)
    left = np.array([0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # 3 m to the side
    noisy = path + np.c_[rng.normal(0.0, 0.2, (20, 2)), np.zeros((20, 5))]
    cyclist = _as(one_track(path, track_id=0, score=0.9), "cyclist")
    same_object = _as(one_track(noisy[5:15], list(range(5, 15)), track_id=0, score=0.6), "pedestrian")
    beside = _as(one_track(path + left, track_id=1, score=0.6), "pedestrian")
    second_cyclist = _as(one_track(noisy, track_id=2, score=0.5), "cyclist")  # same category: kept
    table = concat(cyclist, same_object, beside, second_cyclist)
    out = one_category_per_object(table, distance_m=1.0, min_shared=0.5)
    kept = set(zip(out.category.tolist(), out.track_id.tolist(), strict=True))
    assert kept == {("cyclist", 0), ("pedestrian", 1), ("cyclist", 2)}
    assert len(out) == len(table) - len(same_object)
    # the lower-scored one goes, whichever category it is
    flipped = concat(_as(cyclist, "pedestrian"), _as(same_object, "cyclist"))
    assert set(one_category_per_object(flipped).category.tolist()) == {"pedestrian"}
    # one object only in a few frames of the shorter track: two objects
    passing = _as(one_track(noisy[5:15] + left, list(range(5, 15)), score=0.6), "pedestrian")
    passing.boxes_world[:3, 1] -= 3.0
    assert len(one_category_per_object(concat(cyclist, passing))) == 30
    with pytest.raises(TrackingError, match="min_shared"):
        one_category_per_object(table, min_shared=0.0)


def walker(
    rng: np.random.Generator, frames: Sequence[int], track_id: int, y: float, speed: float = 1.4
) -> tuple[TrackTable, F64]:
    """A pedestrian walking along +x at `speed` m/s from x = 5 at lateral offset y: its detections (noise
    5 cm) in `frames` as one track, and its true boxes (60, 7) in frames 0..59."""
    truth = np.array([[5.0 + speed * 0.1 * k, y, 0.9, 0.8, 0.6, 1.7, 0.0] for k in range(60)])
    boxes = truth[list(frames)].copy()
    boxes[:, :2] += rng.normal(0.0, 0.05, (len(frames), 2))
    table = one_track(boxes, frames, track_id=track_id)
    return replace(table, category=np.full(len(table), "pedestrian")), truth


JOIN = RefineConfig()  # the default joins pedestrians (and cyclists) up to 30 frames apart
BEFORE, AFTER = list(range(15)), list(range(40, 60))  # a 25-frame miss, longer than the trackers' 10


def test_pedestrian_split_by_a_25_frame_miss_is_joined_into_one_track_and_the_gap_filled() -> None:
    rng = np.random.default_rng(8)
    first, truth = walker(rng, BEFORE, 1, 3.0)
    second, _ = walker(rng, AFTER, 2, 3.0)
    out = refine(concat(first, second), JOIN)
    assert set(out.track_id.tolist()) == {1} and out.frame_index.tolist() == list(range(60))
    gap = out.origin == "interpolated"
    assert out.frame_index[gap].tolist() == list(range(15, 40)) and (out.num_points[gap] == 0).all()
    assert np.abs(out.boxes_world[:, :2] - truth[:, :2]).max() < 0.15  # the filled boxes on the walk
    assert len(set(out.score.tolist())) == 1  # one track, one score
    unjoined = refine(concat(first, second), RefineConfig(join_frames={}))  # the gap stays empty
    assert set(unjoined.track_id.tolist()) == {1, 2} and (unjoined.origin == "detected").all()


def test_two_pedestrians_walking_side_by_side_through_a_long_miss_keep_their_own_continuations() -> None:
    # 0.8 m apart, 1.4 and 1.1 m/s, both missed for 25 frames; the continuation of the near one has the
    # higher id, so pairing by id order would swap them
    rng = np.random.default_rng(9)
    near, near_truth = walker(rng, BEFORE, 1, 3.0)
    far, far_truth = walker(rng, BEFORE, 2, 3.8, speed=1.1)
    far_after, _ = walker(rng, AFTER, 3, 3.8, speed=1.1)
    near_after, _ = walker(rng, AFTER, 4, 3.0)
    out = refine(concat(near, far, far_after, near_after), JOIN)
    assert sorted(set(out.track_id.tolist())) == [1, 2]
    for track, truth in ((1, near_truth), (2, far_truth)):
        rows = out.track_id == track
        assert out.frame_index[rows].tolist() == list(range(60))
        assert np.abs(out.boxes_world[rows, :2] - truth[:, :2]).max() < 0.2


def test_a_track_starting_away_from_where_the_one_before_was_heading_is_not_joined() -> None:
    # after the 25-frame miss, 2.5 m to the side of the first track's line: beyond the pedestrian gate
    # of 2 m * (0.25 + 0.125 * 2.6 s) = 1.15 m (lines fitted to 5 noisy detections each extrapolate
    # 2.6 s with a lateral error of a few tenths of a metre)
    rng = np.random.default_rng(10)
    first, _ = walker(rng, BEFORE, 1, 3.0)
    aside, _ = walker(rng, AFTER, 2, 5.5)
    out = refine(concat(first, aside), JOIN)
    assert set(out.track_id.tolist()) == {1, 2} and (out.origin == "detected").all()
    with pytest.raises(TrackingError, match="join_frames has unknown categories"):
        RefineConfig(join_frames={"tram": 5})
    with pytest.raises(TrackingError, match="join_frames values"):
        RefineConfig(join_frames={"cyclist": -1})
    with pytest.raises(TrackingError, match="join_fit_frames"):
        RefineConfig(join_fit_frames=1)


def test_rts_smoothing_reduces_the_position_error_of_a_noisy_constant_velocity_track() -> None:
    rng = np.random.default_rng(5)
    truth = moving_car(40, speed=8.0)
    boxes = truth.copy()
    boxes[:, :3] += rng.normal(0.0, 0.3, (40, 3))
    out = refine(one_track(boxes))
    raw = np.sqrt(np.mean(np.sum((boxes[:, :2] - truth[:, :2]) ** 2, axis=1)))
    smoothed = np.sqrt(np.mean(np.sum((out.boxes_world[:, :2] - truth[:, :2]) ** 2, axis=1)))
    assert smoothed < 0.5 * raw  # 0.41 -> 0.13 m measured
    speed = np.hypot(out.velocity[:, 0], out.velocity[:, 1])
    assert np.abs(speed - 8.0).max() < 1.0


def test_config_and_table_reject_bad_values() -> None:
    with pytest.raises(TrackingError, match="size_quantile"):
        RefineConfig(size_quantile=1.5)
    with pytest.raises(TrackingError, match="boxes_world must have shape"):
        TrackTable(
            frame_index=np.zeros(2, np.int64), t_ns=np.zeros(2, np.int64), track_id=np.zeros(2, np.int64),
            category=np.array(["car", "car"]), score=np.zeros(2, np.float32), boxes_world=np.zeros((2, 6)),
            origin=np.array(["detected"] * 2), num_points=np.zeros(2, np.int32), velocity=np.zeros((2, 3)),
            sensor_origin=np.zeros((2, 3)), measured=np.zeros((2, 2)),
        )  # fmt: skip
    with pytest.raises(TrackingError, match="unknown origins"):
        one_track(moving_car(2)).build(
            frame_index=[0], t_ns=[0], track_id=[0], category=["car"], score=[1.0],
            boxes_world=[car(0, 0, 0)], origin="guessed",
        )  # fmt: skip
    assert len(refine(TrackTable.empty())) == 0


def test_refine_config_round_trips_through_a_mapping_and_reads_toml(tmp_path: Path) -> None:
    config = RefineConfig.from_mapping(
        {
            "max_gap_frames": 3, "score_frames": {"cyclist": 30}, "join_frames": {"pedestrian": 30},
            "params": {"car": {"r_pos": 0.4}},
        }
    )  # fmt: skip
    assert config.max_gap_frames == 3 and config.params["car"].r_pos == 0.4
    assert config.score_frames["cyclist"] == 30 and config.join_frames["pedestrian"] == 30
    assert config.params["truck"] == RefineConfig().params["truck"]
    assert RefineConfig.from_mapping(config.to_mapping()) == config
    toml = tmp_path / "fusion.toml"
    toml.write_text("[refine]\nmin_track_frames = 5\n[refine.params.default]\nq_accel = 1.0\n")
    loaded = RefineConfig.from_toml(toml)
    assert loaded.min_track_frames == 5 and all(p.q_accel == 1.0 for p in loaded.params.values())
    with pytest.raises(TrackingError, match="unknown refine config keys"):
        RefineConfig.from_mapping({"max_gap": 3})


# --- forward and backward tracking ------------------------------------------------------------------


def _frames(boxes_per_frame: Sequence[Sequence[list[float]]]) -> list[tuple[Boxes, int, None]]:
    out = []
    for k, rows in enumerate(boxes_per_frame):
        t_ns = k * FRAME_NS
        out.append((frame(rows, ["car"] * len(rows), [0.9] * len(rows), t_ns), t_ns, None))
    return out


def test_backward_pass_joins_a_track_the_forward_pass_split_at_an_early_miss() -> None:
    rng = np.random.default_rng(6)
    truth = moving_car(20)
    rows = [[] if k == 1 else [list(truth[k] + np.r_[rng.normal(0, 0.05, 3), 0, 0, 0, 0])] for k in range(20)]
    frames = _frames(rows)
    # forward alone: the track born at frame 0 is still tentative when frame 1 misses it, so it dies
    forward = Tracker(TrackerConfig(output_tentative=True))
    ids = {int(i) for b, t, p in frames for i in forward.step(b, t, p).track_id}
    assert len(ids) == 2

    table = track_both_ways(frames)
    assert len(table) == 19 and set(table.track_id.tolist()) == {0}
    out = refine(table)
    assert set(out.track_id.tolist()) == {0} and out.frame_index.tolist() == list(range(20))
    assert out.origin[1] == "interpolated"


def test_two_cars_side_by_side_stay_two_tracks_in_both_passes() -> None:
    rng = np.random.default_rng(7)
    a, b = moving_car(15, y=0.0), moving_car(15, y=4.0, x0=3.0)
    rows = [[list(a[k] + np.r_[rng.normal(0, 0.05, 3), 0, 0, 0, 0]), list(b[k])] for k in range(15)]
    rows[5] = rows[5][1:]  # car a missed once mid-way
    table = track_both_ways(_frames(rows))
    assert len(table) == 29 and len(set(table.track_id.tolist())) == 2
    ids_a = {int(table.track_id[k]) for k in np.flatnonzero(np.abs(table.boxes_world[:, 1]) < 1.0)}
    assert len(ids_a) == 1


class _ElsewhereSubmitter:
    """Runs what it is given as another process would: function and arguments pickled and back."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, fn: Any, /, *args: Any) -> Future[Any]:
        self.calls += 1
        fn, args = pickle.loads(pickle.dumps((fn, args)))
        done: Future[Any] = Future()
        done.set_result(fn(*args))
        return done


def test_the_backward_pass_run_elsewhere_gives_the_same_table() -> None:
    rng = np.random.default_rng(8)
    a, b = moving_car(25, y=0.0), moving_car(25, y=4.0, x0=3.0, speed=-6.0)
    rows = [[list(a[k] + np.r_[rng.normal(0, 0.05, 3), 0, 0, 0, 0]), list(b[k])] for k in range(25)]
    rows[1], rows[12] = rows[1][1:], []  # an early miss (split forward) and an empty frame
    frames = _frames(rows)
    submitter = _ElsewhereSubmitter()
    there = track_both_ways(frames, executor=submitter)
    here = track_both_ways(frames)
    assert submitter.calls == 1 and len(here) == 47
    for name in ("frame_index", "t_ns", "track_id", "category", "score", "boxes_world", "measured"):
        assert np.array_equal(getattr(there, name), getattr(here, name)), name


def test_track_table_from_tracked_keeps_matched_boxes_only() -> None:
    tracker = Tracker(TrackerConfig(output_lost=True))
    outs = []
    for k in range(8):
        rows = [] if k == 5 else [car(5.0 + k, 0.0, 0.0)]
        outs.append(
            tracker.step(frame(rows, ["car"] * len(rows), [0.9] * len(rows), k * FRAME_NS), k * FRAME_NS)
        )
    table = TrackTable.from_tracked(outs)
    # confirmed after 3 hits (frames 2..7), lost (unmatched) at frame 5: left out
    assert table.frame_index.tolist() == [2, 3, 4, 6, 7]
    assert table.t_ns.tolist() == [k * FRAME_NS for k in (2, 3, 4, 6, 7)]


# --- simulated logs with ground truth ---------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    mean_iou_3d: float  # over predictions matched to ground truth (BEV IoU >= 0.1, per frame, one-to-one)
    matched: int  # ground-truth boxes matched
    id_switches: int  # a ground-truth object's matched track id changing


def _score(table: TrackTable, gt_frames: list[tuple[F64, npt.NDArray[np.int64]]]) -> Scores:
    ious: list[float] = []
    last: dict[int, int] = {}
    switches = 0
    for f, (gt_boxes, gt_ids) in enumerate(gt_frames):
        pred = table.boxes_world[table.frame_index == f]
        pred_ids = table.track_id[table.frame_index == f]
        if not len(pred) or not len(gt_boxes):
            continue
        bev = bev_iou(pred, gt_boxes)
        r, c = linear_sum_assignment(-bev)
        ok = bev[r, c] >= 0.1
        r, c = r[ok], c[ok]
        ious.extend(np.diag(iou_3d(pred[r], gt_boxes[c])).tolist())
        for i, j in zip(r.tolist(), c.tolist(), strict=True):
            g, p = int(gt_ids[j]), int(pred_ids[i])
            switches += g in last and last[g] != p
            last[g] = p
    return Scores(float(np.mean(ious)), len(ious), switches)


@dataclass(frozen=True)
class SimLog:
    frames: list[tuple[Boxes, int, F64 | None]]
    gt_world: pa.Table  # the ground-truth labels with their world boxes as x, y, z, ..., yaw
    gt_frames: list[tuple[F64, npt.NDArray[np.int64]]]  # per frame: world boxes, track ids
    gt_sizes: dict[int, F64]  # car track id -> (3,) l w h
    gt_rows: dict[int, int]  # car track id -> frames it is in
    gt_velocity: list[F64]  # per frame: (N, 2) world velocities, m/s, as gt_frames' boxes


def _simulated(out: Path, seed: int) -> SimLog:
    result = simulate_log(out / f"drive{seed}.mcap", seconds=3.0, seed=seed, image_width=64, image_height=40)
    detector = GeometricDetector()
    frames: list[tuple[Boxes, int, F64 | None]] = []
    with open_bag(result.log_path) as bag:
        ctx = prepare(bag, SyncConfig())
        for fused in synchronize(bag, ctx, SyncConfig()):
            pose = None if fused.world_from_lidar is None else fused.world_from_lidar.matrix
            frames.append((with_capture_offsets(detector.detect(fused.cloud), fused), fused.stamp_ns, pose))
    gt = read_labels(result.ground_truth_path)
    cols = {n: gt.column(n).to_numpy(zero_copy_only=False) for n in gt.column_names if n != "camera_boxes"}
    world = np.stack(
        [cols[n] for n in ("world_x", "world_y", "world_z", "length", "width", "height", "world_yaw")], 1
    )
    gt_frames = [
        (world[cols["frame_index"] == f], cols["track_id"][cols["frame_index"] == f])
        for f in range(len(frames))
    ]
    cars = cols["category"] == "car"
    ids, first, counts = np.unique(cols["track_id"][cars], return_index=True, return_counts=True)
    sizes = {int(i): world[cars][k, 3:6] for i, k in zip(ids.tolist(), first.tolist(), strict=True)}
    gt_world = _labels(
        cols["frame_index"], cols["track_id"], cols["category"], np.ones(len(world), np.float32), world
    )
    velocity = np.stack([cols["velocity_x"], cols["velocity_y"]], 1)
    gt_velocity = [velocity[cols["frame_index"] == f] for f in range(len(frames))]
    rows = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    return SimLog(frames, gt_world, gt_frames, sizes, rows, gt_velocity)


def _labels(
    frame_index: npt.ArrayLike,
    track_id: npt.ArrayLike,
    category: npt.ArrayLike,
    score: npt.ArrayLike,
    boxes: F64,
) -> pa.Table:
    """The columns of a labels table that the tracking metrics read (one sequence)."""
    names = ("x", "y", "z", "length", "width", "height", "yaw")
    n = len(boxes)
    return pa.table(
        {
            "sequence_id": pa.array(["sim"] * n),
            "frame_index": pa.array(np.asarray(frame_index, np.int32)),
            "track_id": pa.array(np.asarray(track_id, np.int64)),
            "category": pa.array(np.asarray(category, str).tolist()),
            "score": pa.array(np.asarray(score, np.float32)),
            **{name: pa.array(boxes[:, k]) for k, name in enumerate(names)},
        }
    )


@pytest.fixture(scope="module")
def sim_logs(tmp_path_factory: pytest.TempPathFactory) -> list[SimLog]:
    out = tmp_path_factory.mktemp("refine_sim")
    return [_simulated(out, seed) for seed in (1, 2)]


def test_refinement_beats_the_online_tracker_on_simulated_logs(sim_logs: list[SimLog]) -> None:
    for log in sim_logs:
        tracker = Tracker(TrackerConfig())
        online = TrackTable.from_tracked([tracker.step(b, t, p) for b, t, p in log.frames])
        refined = refine(track_both_ways(log.frames))
        before, after = _score(online, log.gt_frames), _score(refined, log.gt_frames)
        assert after.mean_iou_3d > before.mean_iou_3d + 0.015  # 0.697 -> 0.745, 0.693 -> 0.716 measured
        assert after.matched > 1.2 * before.matched  # 494 -> 643, 464 -> 638
        assert after.id_switches <= before.id_switches  # 4 -> 2, 9 -> 7
        assert set(refined.origin.tolist()) == {"detected", "interpolated"}


def test_refinement_improves_mota_idf1_and_box_iou_on_simulated_logs(sim_logs: list[SimLog]) -> None:
    from fusion.evaluation import tracking

    config = tracking.TrackingConfig(recall_sweep=False)  # iou_3d >= 0.25 pairs, car/pedestrian/cyclist
    for log in sim_logs:
        tracker = Tracker(TrackerConfig())
        online = TrackTable.from_tracked([tracker.step(b, t, p) for b, t, p in log.frames])
        refined = refine(track_both_ways(log.frames))
        before, after = (
            tracking.evaluate_tracking(
                _labels(t.frame_index, t.track_id, t.category, t.score, t.boxes_world), log.gt_world, config
            ).overall
            for t in (online, refined)
        )
        # seed 1: MOTA 0.33 -> 0.44, IDF1 0.50 -> 0.60, MOTP 0.70 -> 0.74;
        # seed 2: MOTA 0.30 -> 0.42, IDF1 0.46 -> 0.59, MOTP 0.69 -> 0.71 (measured)
        assert after.clear.mota > before.clear.mota + 0.05
        assert after.idf1 > before.idf1 + 0.05
        assert after.clear.motp > before.clear.motp + 0.01
        assert after.clear.id_switches <= before.clear.id_switches


def test_car_sizes_on_simulated_logs_are_within_10_cm_for_well_seen_cars(sim_logs: list[SimLog]) -> None:
    errors = []
    for log in sim_logs:
        refined = refine(track_both_ways(log.frames))
        votes: dict[int, list[int]] = {}
        for f, (gt_boxes, gt_ids) in enumerate(log.gt_frames):
            pred_ids = refined.track_id[(refined.frame_index == f) & (refined.origin == "detected")]
            pred = refined.boxes_world[(refined.frame_index == f) & (refined.origin == "detected")]
            if not len(pred) or not len(gt_boxes):
                continue
            bev = bev_iou(pred, gt_boxes)
            for i, j in zip(*linear_sum_assignment(-bev), strict=True):
                if bev[i, j] >= 0.1 and int(gt_ids[j]) in log.gt_sizes:
                    votes.setdefault(int(gt_ids[j]), []).append(int(pred_ids[i]))
        for gid, tracked in votes.items():
            track, frames = np.unique(tracked, return_counts=True)
            if frames.max() <= 20:  # cars seen (tracked by one track) for more than 20 frames
                continue
            size = refined.boxes_world[refined.track_id == track[np.argmax(frames)]][0, 3:6]
            errors.append(np.abs(size - log.gt_sizes[gid]))
    err = np.array(errors)
    assert len(err) >= 20  # 25 with the split stage of the detector (22 before it)
    assert (np.median(err, axis=0) < 0.05).all()  # 2.7, 1.7, 3.4 cm (2.1 cm in length before lengths
    # the detector completed to its 4.2 m floor stopped counting: some come out 2-5 cm longer, closer)
    # 21 of 25 cars (0.84) within 10 cm (20 before a track whose few measured lengths are a car's
    # length took them over the completed ones: seed 2, a car 4.65 m long seen at 14-16 deg off end-on,
    # measured in 3 of 22 frames (one 5.28 m, merged), 4.50 m prior -> 4.64 m; 18 before the sweep
    # stretch was taken out). Left (what limits them; bench/refine_sizes.py): two cars only ever seen
    # within 16 deg of end-on (4.84 and 4.34 m long) get the 4.5 m prior; a parked car passed close by
    # whose length the detector measured at most 4.22 m (4.33 m long: 12 cm short); one seen with ~8
    # points at 29-59 m (0.14 m too low: the top beam misses the roof). Seeds 3 and 4: 23 of 25 (22
    # before; seed 3: a parked car seen whole in 1 of 27 frames, 4.21 -> 4.79 m, true 4.78 m).
    assert (err.max(axis=1) < 0.10).mean() >= 0.84
    # every width within 10 cm (max 7.4 cm): boxes fitted across a parked car passed close by (its
    # length as their width, merged with a cyclist beside it) no longer count for its size; before,
    # that car came out 0.20 m too wide and 0.08 m too high (24 of 25 widths within 10 cm)
    assert (err[:, 1] < 0.10).all()


def test_refining_in_blocks_of_tracks_changes_nothing(
    sim_logs: list[SimLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`refine` works a block of tracks at a time to bound its memory; every row and value is the
    same as refining all tracks at once, bit for bit (a gap frame's stamp still comes from the
    whole log's frames)."""
    import sys

    module = sys.modules["trackers.refine"]
    for log in sim_logs:
        tracks = track_both_ways(log.frames)
        monkeypatch.setattr(module, "REFINE_BLOCK_ROWS", 10**9)
        whole = refine(tracks)
        monkeypatch.setattr(module, "REFINE_BLOCK_ROWS", 40)
        assert len(module._blocks(np.bincount(tracks.track_id), 40)) > 5
        blocks = refine(tracks)
        for f in fields(TrackTable):
            a, b = getattr(whole, f.name), getattr(blocks, f.name)
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f.name
        # as the blocks come from `refine_blocks`: whole tracks each, in order, the rows of `refine`
        parts = list(refine_blocks(tracks))
        assert len(parts) > 5
        ids = [set(p.track_id.tolist()) for p in parts]
        assert all(not (a & b) for k, a in enumerate(ids) for b in ids[k + 1 :])
        offset = 0
        for part in parts:
            for f in fields(TrackTable):
                a, b = getattr(whole, f.name)[offset : offset + len(part)], getattr(part, f.name)
                assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f.name
            offset += len(part)
        assert offset == len(whole)


def _swept_car(x: float, speed: float, length: float = 4.5, y: float = 4.0) -> list[float]:
    """The box a clockwise-spinning LiDAR at the origin (beam at azimuth pi at the stamp, 100 ms a turn)
    fits to a car whose centre is at (x, y) at the stamp, driving at `speed` along +x: each end is
    caught when the beam passes it, by when the car has moved on."""

    def caught(end: float) -> float:  # where the end is when the beam reaches it (fixed point)
        t = 0.0
        for _ in range(10):
            t = ((math.pi - math.atan2(y, end + speed * t)) % math.tau) / math.tau * 0.1
        return end + speed * t

    rear, front = caught(x - length / 2), caught(x + length / 2)
    return [(rear + front) / 2, y, 0.8, front - rear, 1.9, 1.6, 0.0]


def test_a_fast_car_passing_close_gets_its_length_with_the_sweep_stretch_taken_out() -> None:
    rng = np.random.default_rng(11)
    speed = 15.0  # m/s along +x, 4 m to the side of a parked sensor
    jitter = np.c_[rng.normal(0, 0.02, (30, 2)), np.zeros((30, 5))]
    rows = [[list(np.r_[_swept_car(-20.0 + speed * 0.1 * k, speed)] + jitter[k])] for k in range(30)]
    assert max(r[0][3] for r in rows) > 4.5 + 0.25  # stretched by up to ~0.3 m as it passes
    pose = np.eye(4)
    frames = [(b, t, pose) for b, t, _ in _frames(rows)]
    tracks = track_both_ways(frames)
    stretched = refine(tracks, RefineConfig(sweep_spin="", size_smear_m=0.0)).boxes_world[0, 3]
    corrected = refine(tracks).boxes_world[0, 3]  # fusion.sync's default spin, clockwise
    assert stretched > 4.5 + 0.15
    assert abs(corrected - 4.5) < 0.05


# --- capture time: boxes of moving objects at the stamp, not where the beam caught them ------------


def _capture_scene(seed: int, offsets: bool) -> list[tuple[Boxes, int, F64]]:
    """The sensor driving along +x at 16 m/s (world poses), a car 20 m ahead at the same speed and a car
    parked 6 m to the left; each detection is where its car was when a clockwise beam (pi at the stamp,
    100 ms a turn: ahead 50 ms in, the parked car a quarter to half a turn in as it is passed) caught
    it, with 3 cm noise and, with `offsets`, that capture offset (else unknown)."""
    rng = np.random.default_rng(seed)
    speed, out = 16.0, []
    for k in range(30):
        t_ns = k * FRAME_NS
        ego = speed * k * 0.1
        pose = np.eye(4)
        pose[0, 3] = ego
        ahead = np.array(car(ego + 20.0, 0.0, 0.0))
        parked = np.array(car(40.0, 6.0, 0.0))
        rows, caught = [], []
        for box, v in ((ahead, speed), (parked, 0.0)):
            rel = box[:2] - [ego, 0.0]
            t = ((math.pi - math.atan2(rel[1], rel[0])) % math.tau) / math.tau * 0.1
            seen = box.copy()
            seen[0] += v * t  # where it was when caught (deskewed: the ego's motion taken out)
            seen[:2] += rng.normal(0.0, 0.03, 2)
            sensor_frame = seen.copy()
            sensor_frame[0] -= ego
            rows.append(sensor_frame)
            caught.append(t * 1e9)
        boxes = Boxes.build(rows, ["car", "car"], [0.9, 0.9], [200, 200], frame_id="lidar", stamp_ns=t_ns,
                            capture_offset_ns=caught if offsets else None)  # fmt: skip
        out.append((boxes, t_ns, pose))
    return out


def _ahead_error(table: TrackTable) -> F64:
    """(frames,) the refined car ahead's centre minus the truth at each stamp (x), m."""
    ahead = table.boxes_world[:, 1] < 3.0
    truth = 16.0 * table.frame_index[ahead] * 0.1 + 20.0
    return np.asarray(table.boxes_world[ahead, 0] - truth)


def test_a_car_driving_ahead_is_refined_where_it_was_at_the_stamp() -> None:
    """Caught 50 ms after the stamp at 16 m/s, the car ahead is detected 0.8 m ahead of where it was;
    with its capture offsets the refined boxes are back at the stamp."""
    tracks = track_both_ways(_capture_scene(0, offsets=True))
    assert np.isfinite(tracks.capture_offset_ns).all()
    corrected = _ahead_error(refine(tracks))
    uncorrected = _ahead_error(refine(tracks, RefineConfig(capture_correction=False)))
    assert np.abs(uncorrected - 0.8).max() < 0.1  # every box 0.8 m ahead
    assert np.abs(corrected).max() < 0.1  # measured: 0.03 m at most
    assert abs(np.mean(corrected)) < 0.02


def test_a_parked_car_is_not_moved_by_its_capture_offsets() -> None:
    """The parked car is caught from a quarter to half a turn in as the sensor passes it: held still,
    its pose is its detections' median, the same with or without the offsets."""
    with_offsets = refine(track_both_ways(_capture_scene(1, offsets=True)))
    without = refine(track_both_ways(_capture_scene(1, offsets=False)))
    parked = with_offsets.boxes_world[:, 1] > 3.0
    assert (with_offsets.velocity[parked] == 0.0).all()
    unknown = without.boxes_world[without.boxes_world[:, 1] > 3.0]
    assert np.array_equal(with_offsets.boxes_world[parked], unknown)


def test_unknown_or_switched_off_capture_offsets_leave_refinement_as_it_was() -> None:
    """NaN offsets (KITTI tracks, the online tracker's), zero offsets and `capture_correction=False`
    give the same refined table, bit for bit (the smoother's update with H = [1, 0] is the old one)."""
    known = track_both_ways(_capture_scene(2, offsets=True))
    unknown = replace(known, capture_offset_ns=np.full(len(known), np.nan))
    zero = replace(known, capture_offset_ns=np.zeros(len(known)))
    outputs = [refine(unknown), refine(zero), refine(known, RefineConfig(capture_correction=False))]
    assert not np.array_equal(refine(known).boxes_world, outputs[0].boxes_world)
    for out in outputs[1:]:
        for f in fields(TrackTable):
            a, b = getattr(outputs[0], f.name), getattr(out, f.name)
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f.name
    assert np.isnan(outputs[0].capture_offset_ns).all()  # refined boxes are at their stamps


def test_moving_cars_on_simulated_logs_are_refined_at_the_stamp(sim_logs: list[SimLog]) -> None:
    """Cars driving faster than 3 m/s: the along-track error of their refined centres at the stamp
    (matched BEV IoU >= 0.1), with the capture offsets the pipeline gives the detections and without."""
    for log in sim_logs:
        tracks = track_both_ways(log.frames)
        errors = []
        for config in (RefineConfig(), RefineConfig(capture_correction=False)):
            refined = refine(tracks, config)
            err = []
            for f, (gt_boxes, _) in enumerate(log.gt_frames):
                moving = np.hypot(*log.gt_velocity[f].T) > 3.0
                rows = (refined.frame_index == f) & (refined.origin == "detected")
                if not moving.any() or not rows.any():
                    continue
                truth, pred = gt_boxes[moving], refined.boxes_world[rows]
                bev = bev_iou(pred, truth)
                for i, j in zip(*linear_sum_assignment(-bev), strict=True):
                    if bev[i, j] >= 0.1:
                        d = pred[i, :2] - truth[j, :2]
                        err.append(d[0] * math.cos(truth[j, 6]) + d[1] * math.sin(truth[j, 6]))
            errors.append(np.abs(err))
        corrected, uncorrected = errors
        assert len(corrected) > 80
        # seed 1: 0.357 -> 0.093 m, seed 2: 0.422 -> 0.040 m (measured)
        assert np.mean(uncorrected) > 0.3
        assert np.mean(corrected) < 0.12
