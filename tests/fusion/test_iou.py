"""Rotated BEV and 3D IoU: exact hand cases, and shapely as an oracle on random boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import Polygon

from fusion.evaluation import EvaluationError, bev_iou, iou_3d


def box(x: float, y: float, z: float, length: float, width: float, height: float, yaw: float) -> list[float]:
    return [x, y, z, length, width, height, yaw]


UNIT = box(0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0)


def _footprint(b: np.ndarray) -> Polygon:
    """The BEV rectangle of one box, built independently of the code under test."""
    x, y, _, length, width, _, yaw = b
    local = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * [length / 2, width / 2]
    rot = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    return Polygon(local @ rot.T + [x, y])


def _oracle(a: np.ndarray, b: np.ndarray, *, three_d: bool) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, ba in enumerate(a):
        pa_ = _footprint(ba)
        for j, bb in enumerate(b):
            inter = pa_.intersection(_footprint(bb)).area
            if three_d:
                dz = min(ba[2] + ba[5] / 2, bb[2] + bb[5] / 2) - max(ba[2] - ba[5] / 2, bb[2] - bb[5] / 2)
                inter *= max(dz, 0.0)
                union = ba[3] * ba[4] * ba[5] + bb[3] * bb[4] * bb[5] - inter
            else:
                union = pa_.area + _footprint(bb).area - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack(
        [
            rng.uniform(-4.0, 4.0, n),
            rng.uniform(-4.0, 4.0, n),
            rng.uniform(-1.0, 1.0, n),
            rng.uniform(0.3, 6.0, n),
            rng.uniform(0.3, 3.0, n),
            rng.uniform(0.3, 3.0, n),
            rng.uniform(-math.pi, math.pi, n),
        ]
    )


def test_identical_boxes_have_iou_exactly_one() -> None:
    b = [box(12.5, -3.25, 0.4, 4.2, 1.8, 1.6, 0.7)]
    assert bev_iou(b, b)[0, 0] == 1.0
    assert iou_3d(b, b)[0, 0] == 1.0


def test_square_turned_a_quarter_turn_is_the_same_square() -> None:
    turned = [box(0.0, 0.0, 0.0, 2.0, 2.0, 2.0, math.pi / 2)]
    assert bev_iou([UNIT], turned)[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert iou_3d([UNIT], turned)[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_box_turned_half_a_turn_is_the_same_box() -> None:
    a = [box(3.0, 1.0, 0.0, 4.0, 2.0, 1.5, 0.3)]
    b = [box(3.0, 1.0, 0.0, 4.0, 2.0, 1.5, 0.3 - math.pi)]
    assert bev_iou(a, b)[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_half_overlap_is_one_third_in_bev_and_in_height() -> None:
    shifted_x = [box(1.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0)]
    shifted_z = [box(0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 0.0)]
    assert bev_iou([UNIT], shifted_x)[0, 0] == 1.0 / 3.0
    assert iou_3d([UNIT], shifted_x)[0, 0] == 1.0 / 3.0
    assert bev_iou([UNIT], shifted_z)[0, 0] == 1.0
    assert iou_3d([UNIT], shifted_z)[0, 0] == 1.0 / 3.0


def test_disjoint_and_touching_boxes_have_iou_zero() -> None:
    others = [
        box(10.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0),  # far
        box(2.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0),  # shares an edge
        box(2.0, 2.0, 0.0, 2.0, 2.0, 2.0, 0.0),  # shares a corner
        box(0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.0),  # stacked on top: touches in 3D
        box(1.0 + math.sqrt(2.0), 0.0, 0.0, 2.0, 2.0, 2.0, math.pi / 4),  # a diamond touching a side
    ]
    assert bev_iou([UNIT], others)[0, :3].tolist() == [0.0, 0.0, 0.0]
    assert iou_3d([UNIT], others)[0].tolist()[:4] == [0.0, 0.0, 0.0, 0.0]
    assert bev_iou([UNIT], others)[0, 4] == pytest.approx(0.0, abs=1e-12)


def test_degenerate_boxes_have_iou_zero_not_nan() -> None:
    flat = [
        box(0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0),
        box(0.0, 0.0, 0.0, 2.0, 0.0, 2.0, 0.0),
        box(0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0),
        box(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    ]
    bev = bev_iou(flat, [*flat, UNIT])
    three_d = iou_3d(flat, [*flat, UNIT])
    assert not np.isnan(bev).any() and not np.isnan(three_d).any()
    assert three_d.tolist() == [[0.0] * 5] * 4
    # a box of zero height still has a footprint: only 3D IoU vanishes
    assert bev[:, 4].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_bev_iou_agrees_with_shapely_on_random_boxes() -> None:
    rng = np.random.default_rng(7)
    a, b = _random_boxes(rng, 60), _random_boxes(rng, 50)
    got = bev_iou(a, b)
    assert np.count_nonzero(got) > 300  # the sample overlaps enough to mean something
    np.testing.assert_allclose(got, _oracle(a, b, three_d=False), rtol=0.0, atol=1e-9)


def test_iou_3d_agrees_with_shapely_area_times_height_overlap() -> None:
    rng = np.random.default_rng(11)
    a, b = _random_boxes(rng, 60), _random_boxes(rng, 50)
    np.testing.assert_allclose(iou_3d(a, b), _oracle(a, b, three_d=True), rtol=0.0, atol=1e-9)


def test_iou_is_symmetric_and_translation_invariant() -> None:
    rng = np.random.default_rng(3)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 30)
    far_a, far_b = a.copy(), b.copy()
    far_a[:, :2] += [4000.0, -2500.0]
    far_b[:, :2] += [4000.0, -2500.0]
    np.testing.assert_allclose(bev_iou(a, b), bev_iou(b, a).T, rtol=0.0, atol=1e-12)
    np.testing.assert_allclose(iou_3d(far_a, far_b), iou_3d(a, b), rtol=0.0, atol=1e-9)


def test_empty_inputs_give_empty_matrices() -> None:
    assert bev_iou(np.zeros((0, 7)), [UNIT]).shape == (0, 1)
    assert iou_3d([UNIT], []).shape == (1, 0)


def test_iou_rejects_wrong_shape_and_non_finite_boxes() -> None:
    with pytest.raises(EvaluationError, match=r"shape \(2, 6\); pass \(N, 7\)"):
        bev_iou(np.zeros((2, 6)), [UNIT])
    with pytest.raises(EvaluationError, match="boxes 'b' row 1 is not finite"):
        iou_3d([UNIT], [UNIT, box(0.0, math.nan, 0.0, 1.0, 1.0, 1.0, 0.0)])
