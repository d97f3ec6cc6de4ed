"""Voxelisation, anchors, box coding, NMS and box conversion against hand-computed values and
mmdetection3d's formulas (fusion.detect.learned.ops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from fusion.detect.learned.ops import (
    aligned_anchors,
    circle_nms,
    decode_deltas,
    encode_deltas,
    from_contract_boxes,
    hard_voxelize,
    limit_period,
    nms_bev,
    nms_normal_bev,
    to_contract_boxes,
)

RANGE = (0.0, -4.0, -3.0, 8.0, 4.0, 1.0)
VOXEL = (1.0, 1.0, 4.0)


def test_hard_voxelize_groups_points_first_come_and_drops_out_of_range() -> None:
    points = np.array(
        [
            [0.5, 0.5, 0.0, 1.0],  # voxel x=0, y=4
            [7.9, -3.9, -2.9, 2.0],  # voxel x=7, y=0
            [0.1, 0.9, -1.0, 3.0],  # voxel x=0, y=4 again
            [8.0, 0.0, 0.0, 4.0],  # x at the range's end: out
            [1.0, 0.0, 1.5, 5.0],  # z above the range: out
            [-0.01, 0.0, 0.0, 6.0],  # x below: out
            [0.2, 0.3, 0.5, 7.0],  # voxel x=0, y=4, third point: over max_points=2, dropped
        ],
        np.float32,
    )
    voxels, coors, counts = hard_voxelize(points, RANGE, VOXEL, max_points=2, max_voxels=10)
    assert voxels.shape == (2, 2, 4)
    np.testing.assert_array_equal(coors, [[0, 4, 0], [0, 0, 7]])  # (z, y, x), in order of first point
    np.testing.assert_array_equal(counts, [2, 1])
    np.testing.assert_array_equal(voxels[0, :, 3], [1.0, 3.0])
    np.testing.assert_array_equal(voxels[1, 0], points[1])
    assert not voxels[1, 1].any()  # zero padding


def test_hard_voxelize_keeps_only_max_voxels() -> None:
    points = np.array([[0.5, 0.5, 0.0], [1.5, 0.5, 0.0], [2.5, 0.5, 0.0], [0.6, 0.6, 0.0]], np.float32)
    _, coors, counts = hard_voxelize(points, RANGE, VOXEL, max_points=4, max_voxels=2)
    np.testing.assert_array_equal(coors[:, 2], [0, 1])
    np.testing.assert_array_equal(counts, [2, 1])  # the later point of a kept voxel still counts


def test_aligned_anchors_sit_at_cell_centres_ordered_by_cell_size_rotation() -> None:
    ranges = ((0.0, -4.0, -0.6, 8.0, 4.0, -0.6), (0.0, -4.0, -1.78, 8.0, 4.0, -1.78))
    sizes = ((0.8, 0.6, 1.73), (3.9, 1.6, 1.56))
    anchors = aligned_anchors((2, 4), ranges, sizes, (0.0, 1.57)).numpy()
    assert anchors.shape == (2 * 4 * 2 * 2, 7)
    grid = anchors.reshape(2, 4, 2, 2, 7)  # (y, x, size, rotation, box)
    # x centres: 0 + (i + 0.5) * 8 / 4; y centres: -4 + (j + 0.5) * 8 / 2
    np.testing.assert_allclose(grid[0, :, 0, 0, 0], [1.0, 3.0, 5.0, 7.0], atol=1e-6)
    np.testing.assert_allclose(grid[:, 0, 0, 0, 1], [-2.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(grid[1, 2, 1, 1], [5.0, 2.0, -1.78, 3.9, 1.6, 1.56, 1.57], atol=1e-6)
    np.testing.assert_allclose(grid[0, 0, 0, :, 6], [0.0, 1.57], atol=1e-7)


def test_decode_deltas_follows_the_delta_xyzwlhr_coder() -> None:
    anchor = torch.tensor([[10.0, 2.0, -1.78, 3.9, 1.6, 1.56, 0.0]])
    delta = torch.tensor([[0.1, -0.2, 0.3, math.log(1.1), math.log(0.9), math.log(1.2), 0.25]])
    box = decode_deltas(anchor, delta)[0].numpy()
    diag = math.hypot(3.9, 1.6)
    h = 1.56 * 1.2
    z_centre = -1.78 + 1.56 / 2 + 0.3 * 1.56
    expected = [10.0 + 0.1 * diag, 2.0 - 0.2 * diag, z_centre - h / 2, 3.9 * 1.1, 1.6 * 0.9, h, 0.25]
    np.testing.assert_allclose(box, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(encode_deltas(anchor, decode_deltas(anchor, delta)), delta, atol=1e-6)


def test_limit_period_maps_into_the_period_from_the_offset() -> None:
    val = torch.tensor([0.0, 3.5, -0.1, 2 * math.pi + 0.2, -math.pi])
    np.testing.assert_allclose(
        limit_period(val, 0.0, math.pi).numpy(), [0.0, 3.5 - math.pi, math.pi - 0.1, 0.2, 0.0], atol=1e-6
    )
    np.testing.assert_allclose(limit_period(val, 0.5, 2 * math.pi).numpy()[3], 0.2, atol=1e-6)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    def poly(x: np.ndarray) -> Polygon:
        c, s = math.cos(x[4]), math.sin(x[4])
        pts = [
            (x[0] + c * u - s * v, x[1] + s * u + c * v)
            for u, v in (
                (x[2] / 2, x[3] / 2),
                (-x[2] / 2, x[3] / 2),
                (-x[2] / 2, -x[3] / 2),
                (x[2] / 2, -x[3] / 2),
            )
        ]
        return Polygon(pts)

    pa, pb = poly(a), poly(b)
    return float(pa.intersection(pb).area / pa.union(pb).area)


def test_nms_bev_drops_rotated_overlaps_at_or_above_the_threshold() -> None:
    boxes = np.array(
        [
            [0.0, 0.0, 4.0, 2.0, 0.3],
            [0.3, 0.1, 4.0, 2.0, 0.5],  # overlaps box 0 a lot
            [10.0, 0.0, 4.0, 2.0, 0.0],  # far away
            [0.0, 1.6, 4.0, 2.0, 0.3],  # overlaps box 0 a little
        ]
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    iou_03 = _iou(boxes[0], boxes[3])
    assert 0.05 < iou_03 < 0.5
    np.testing.assert_array_equal(nms_bev(boxes, scores, 0.5), [0, 2, 3])
    np.testing.assert_array_equal(nms_bev(boxes, scores, iou_03 - 1e-6), [0, 2])
    np.testing.assert_array_equal(nms_bev(boxes, scores, iou_03 + 1e-6), [0, 2, 3])
    np.testing.assert_array_equal(nms_bev(boxes, scores, 0.5, pre_max_size=3, post_max_size=1), [0])
    # ordering by score, not by index
    np.testing.assert_array_equal(nms_bev(boxes, scores[::-1].copy(), 0.5), [3, 2, 1])


def test_nms_normal_bev_ignores_yaw() -> None:
    boxes = np.array([[0.0, 0.0, 4.0, 2.0, 0.0], [0.0, 0.0, 4.0, 2.0, 1.5708], [0.0, 1.0, 4.0, 2.0, 0.0]])
    scores = np.array([0.9, 0.8, 0.7])
    # aligned IoU of 0 and 2: (4 * 1) / (8 + 8 - 4) = 1/3; 0 and 1 identical when yaw is ignored
    np.testing.assert_array_equal(nms_normal_bev(boxes, scores, 0.34), [0, 2])
    np.testing.assert_array_equal(nms_normal_bev(boxes, scores, 0.33), [0])


def test_circle_nms_drops_centres_within_the_radius_squared() -> None:
    dets = np.array([[0.0, 0.0, 0.5], [1.0, 0.0, 0.9], [3.0, 0.0, 0.7], [3.0, 1.9, 0.8]])
    np.testing.assert_array_equal(circle_nms(dets, 4.0, 83), [1, 3])  # 0 is 1 m from 1; 2 is 1.9 m from 3
    np.testing.assert_array_equal(circle_nms(dets, 1.0, 83), [1, 3, 2])
    np.testing.assert_array_equal(circle_nms(dets, 0.5, 83), [1, 3, 2, 0])
    np.testing.assert_array_equal(circle_nms(dets, 0.5, 2), [1, 3])


def test_contract_boxes_move_z_to_the_centre_and_wrap_yaw() -> None:
    mm = np.array([[1.0, 2.0, -1.8, 4.0, 1.8, 1.6, 3.5, 0.5, 0.1]])  # with velocity columns
    ours = to_contract_boxes(mm)
    np.testing.assert_allclose(ours, [[1.0, 2.0, -1.0, 4.0, 1.8, 1.6, 3.5 - 2 * math.pi]])
    np.testing.assert_allclose(from_contract_boxes(ours)[:, :6], mm[:, :6])
    assert to_contract_boxes(np.zeros((0, 9))).shape == (0, 7)


@pytest.mark.parametrize("yaw", [0.0, 0.7, -2.0])
def test_nms_bev_iou_matches_shapely(yaw: float) -> None:
    a = np.array([0.0, 0.0, 4.0, 2.0, yaw])
    b = np.array([0.5, 0.4, 3.0, 2.5, yaw + 0.4])
    iou = _iou(a, b)
    boxes = np.stack([a, b])
    np.testing.assert_array_equal(nms_bev(boxes, np.array([0.9, 0.8]), iou - 1e-9), [0])
    np.testing.assert_array_equal(nms_bev(boxes, np.array([0.9, 0.8]), iou + 1e-9), [0, 1])
