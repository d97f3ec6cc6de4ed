"""Exact intersection over union of rotated boxes, bird's-eye view (BEV) and 3D.

Boxes are the contract's layout `x, y, z, length, width, height, yaw` (centre at the geometric
centre, `length` along the heading, `yaw` about +z from +x). A box's footprint is the rectangle
with corners `(x, y) + R(yaw) (±length/2, ±width/2)`; both footprints are convex, so their
intersection is the exact Sutherland-Hodgman clip of one by the other (at most 8 vertices), and
its area the shoelace sum. Nothing is sampled or approximated.

    BEV IoU = area(A ∩ B) / (area(A) + area(B) - area(A ∩ B))
    3D  IoU = area(A ∩ B) * overlap_z / (vol(A) + vol(B) - area(A ∩ B) * overlap_z)

where `overlap_z` is the length of the intersection of the two vertical extents
`[z - height/2, z + height/2]`. A degenerate box (length, width or, for 3D, height <= 0) has IoU 0
with every box, itself included, never NaN. Boxes that only touch have IoU 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from fusion.boxes import OVERLAP_SCRATCH, bev_corners, quad_intersection_area
from fusion.evaluation.errors import EvaluationError

F64 = npt.NDArray[np.float64]


def bev_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> F64:
    """Pairwise BEV IoU (N, M) float64 of boxes `a` (N, 7) and `b` (M, 7) (x y z l w h yaw).

    Heights and z are ignored. Raises EvaluationError for a wrong shape or a non-finite value.
    """
    boxes_a, boxes_b = _checked(a, "a"), _checked(b, "b")
    return _iou_matrix(boxes_a, boxes_b, False)


def iou_3d(a: npt.ArrayLike, b: npt.ArrayLike) -> F64:
    """Pairwise 3D IoU (N, M) float64 of upright boxes `a` (N, 7) and `b` (M, 7) (x y z l w h yaw).

    Raises EvaluationError for a wrong shape or a non-finite value.
    """
    boxes_a, boxes_b = _checked(a, "a"), _checked(b, "b")
    return _iou_matrix(boxes_a, boxes_b, True)


def _checked(boxes: npt.ArrayLike, name: str) -> F64:
    array = np.ascontiguousarray(boxes, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 7)
    if array.ndim != 2 or array.shape[1] != 7:
        raise EvaluationError(
            f"boxes '{name}' have shape {array.shape}; pass (N, 7) rows x, y, z, length, width, height, yaw"
        )
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise EvaluationError(
            f"boxes '{name}' row {row} is not finite ({array[row].tolist()}); drop or fix it"
        )
    return array


# ---- numba kernels ------------------------------------------------------------------------------


@njit(cache=True)
def _pair_iou(a: F64, b: F64, use_3d: bool, scratch: F64) -> float:
    """IoU of boxes a and b (7,) each, BEV or 3D; `scratch` is (8, OVERLAP_SCRATCH) float64."""
    sized = a[3] > 0.0 and a[4] > 0.0 and b[3] > 0.0 and b[4] > 0.0
    if use_3d:
        sized = sized and a[5] > 0.0 and b[5] > 0.0
    dx = a[0] - b[0]
    dy = a[1] - b[1]
    reach = 0.5 * (np.hypot(a[3], a[4]) + np.hypot(b[3], b[4]))
    if not sized or dx * dx + dy * dy >= reach * reach:
        return 0.0
    overlap_z = 1.0
    if use_3d:
        top = min(a[2] + 0.5 * a[5], b[2] + 0.5 * b[5])
        bottom = max(a[2] - 0.5 * a[5], b[2] - 0.5 * b[5])
        overlap_z = top - bottom
        if overlap_z <= 0.0:
            return 0.0
    # Work relative to a's centre: small coordinates, no cancellation far from the origin.
    bev_corners(a, a[0], a[1], scratch[0], scratch[1])
    bev_corners(b, a[0], a[1], scratch[2], scratch[3])
    area = quad_intersection_area(
        scratch[0], scratch[1], scratch[2], scratch[3], scratch[4], scratch[5], scratch[6], scratch[7]
    )
    inter = area * overlap_z
    size_a = a[3] * a[4]
    size_b = b[3] * b[4]
    if use_3d:
        size_a *= a[5]
        size_b *= b[5]
    union = size_a + size_b - inter
    if inter <= 0.0 or union <= 0.0:
        return 0.0
    return float(min(inter / union, 1.0))


@njit(cache=True)
def _iou_matrix(a: F64, b: F64, use_3d: bool) -> F64:
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    scratch = np.empty((8, OVERLAP_SCRATCH), dtype=np.float64)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = _pair_iou(a[i], b[j], use_3d, scratch)
    return out


@njit(cache=True)
def frame_pair_ious(
    pred: F64, gt: F64, pred_start: npt.NDArray[np.int64], gt_start: npt.NDArray[np.int64], use_3d: bool
) -> tuple[F64, npt.NDArray[np.int64]]:
    """IoUs of every (prediction, GT) pair of the same frame, flat, frame by frame.

    pred: (P, 7), gt: (G, 7), both sorted by frame; pred_start, gt_start: (F + 1,) offsets of each
    frame's rows. Returns ious (sum_f P_f * G_f,) and pair_start (F + 1,): the IoU of prediction
    `pred_start[f] + i` and GT `gt_start[f] + j` is `ious[pair_start[f] + i * G_f + j]`.
    """
    n_frames = pred_start.shape[0] - 1
    pair_start = np.zeros(n_frames + 1, dtype=np.int64)
    for f in range(n_frames):
        pair_start[f + 1] = pair_start[f] + (pred_start[f + 1] - pred_start[f]) * (
            gt_start[f + 1] - gt_start[f]
        )
    ious = np.zeros(pair_start[n_frames], dtype=np.float64)
    scratch = np.empty((8, OVERLAP_SCRATCH), dtype=np.float64)
    for f in range(n_frames):
        n_gt = gt_start[f + 1] - gt_start[f]
        for i in range(pred_start[f], pred_start[f + 1]):
            base = pair_start[f] + (i - pred_start[f]) * n_gt
            for j in range(gt_start[f], gt_start[f + 1]):
                ious[base + j - gt_start[f]] = _pair_iou(pred[i], gt[j], use_3d, scratch)
    return ious, pair_start
