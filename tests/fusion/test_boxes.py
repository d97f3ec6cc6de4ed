"""fusion.boxes: the Boxes record every stage after detection passes on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusion.boxes import Boxes


def test_build_wraps_yaw_and_fixes_dtypes() -> None:
    b = Boxes.build([[1, 2, 0.5, 4, 2, 1.5, math.pi]], ["car"], [0.9], [120], frame_id="lidar", stamp_ns=7)
    assert b.boxes.dtype == np.float64 and b.boxes[0, 6] == -math.pi
    assert b.score.dtype == np.float32 and b.num_points.dtype == np.int32
    assert len(b) == 1 and b.category.tolist() == ["car"]


def test_unknown_category_and_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown categories \\['tree'\\]"):
        Boxes.build([[0, 0, 0, 1, 1, 1, 0]], ["tree"], [0.5], [3], frame_id="lidar", stamp_ns=0)
    with pytest.raises(ValueError, match="score must have shape"):
        Boxes(
            np.zeros((2, 7)), np.array(["car", "car"]), np.zeros(1, np.float32), np.zeros(2, np.int32), "l", 0
        )


def test_select_and_empty() -> None:
    b = Boxes.build(
        np.zeros((3, 7)), ["car", "pedestrian", "car"], [0.1, 0.2, 0.3], [1, 2, 3], frame_id="l", stamp_ns=0
    )
    cars = b.select(b.category == "car")
    assert cars.score.tolist() == pytest.approx([0.1, 0.3])
    assert len(Boxes.empty("lidar", 0)) == 0


def test_measured_sizes_default_to_the_boxes_own_and_follow_a_selection() -> None:
    rows = [[1.0, 2.0, 0.5, 4.2, 1.8, 1.5, 0.0], [5.0, 0.0, 0.5, 0.6, 0.6, 1.7, 0.0]]
    plain = Boxes.build(rows, ["car", "pedestrian"], [0.9, 0.8], [100, 20], frame_id="l", stamp_ns=0)
    np.testing.assert_array_equal(plain.measured, np.array(rows)[:, 3:5])
    seen = Boxes.build(
        rows, ["car", "pedestrian"], [0.9, 0.8], [100, 20], frame_id="l", stamp_ns=0,
        measured=[[2.9, 1.8], [0.6, 0.6]],
    )  # fmt: skip
    assert seen.select(np.array([True, False])).measured.tolist() == [[2.9, 1.8]]
    assert Boxes.empty("l", 0).measured.shape == (0, 2)
    with pytest.raises(ValueError, match="measured"):
        Boxes.build(rows, ["car", "car"], [0.9, 0.8], [1, 2], frame_id="l", stamp_ns=0, measured=[[1.0, 1.0]])
