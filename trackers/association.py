"""Association of detections with tracks: a cost, then a matcher.

Costs are (D, T) matrices, detections in rows, tracks in columns; `inf` forbids a pair. A cost is
computed per detection by the kind its category asks for (`Params.cost`):

- "giou_3d":  1 - GIoU of the upright 3D boxes, in [0, 2] (SimpleTrack). GIoU = IoU - (C - U) / C with
  C the volume of the convex hull of both footprints times the union of their vertical extents.
- "bev_iou":  1 - IoU of the footprints, in [0, 1].
- "centre_distance": Euclidean distance of the centres (m).

A matcher takes a cost and returns `Association(matches, unmatched_dets, unmatched_tracks)`:
`matches` (K, 2) intp rows `(det, track)`, the others (intp,) sorted indices. It never returns a
pair of infinite cost. Matchers: `hungarian` (optimal, scipy) and `greedy` (lowest cost first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.optimize import linear_sum_assignment

from fusion.boxes import OVERLAP_SCRATCH, bev_corners, quad_intersection_area
from trackers.errors import TrackingError

F64 = npt.NDArray[np.float64]
Idx = npt.NDArray[np.intp]

COST_KINDS: Final[Mapping[str, int]] = MappingProxyType({"giou_3d": 0, "bev_iou": 1, "centre_distance": 2})


class Association(NamedTuple):
    """Result of one matching: `matches` (K, 2) rows (det, track); unmatched indices, sorted."""

    matches: Idx
    unmatched_dets: Idx
    unmatched_tracks: Idx


Matcher = Callable[[F64], Association]


# --- geometry kernels ------------------------------------------------------------------------------


@njit(cache=True)
def _polygon_area(pts: F64, n: int) -> float:
    area = 0.0
    for k in range(n):
        j = (k + 1) % n
        area += pts[k, 0] * pts[j, 1] - pts[j, 0] * pts[k, 1]
    return 0.5 * abs(area)


@njit(cache=True)
def _hull_area(pts: F64, hull: F64) -> float:
    """Area of the convex hull of pts (8, 2) (Andrew's monotone chain; pts is sorted in place)."""
    n = pts.shape[0]
    for i in range(1, n):  # insertion sort by (x, y)
        x, y = pts[i, 0], pts[i, 1]
        j = i - 1
        while j >= 0 and (pts[j, 0] > x or (pts[j, 0] == x and pts[j, 1] > y)):
            pts[j + 1, 0], pts[j + 1, 1] = pts[j, 0], pts[j, 1]
            j -= 1
        pts[j + 1, 0], pts[j + 1, 1] = x, y
    k = 0
    for i in range(n):  # lower hull
        while (
            k >= 2
            and (hull[k - 1, 0] - hull[k - 2, 0]) * (pts[i, 1] - hull[k - 2, 1])
            - (hull[k - 1, 1] - hull[k - 2, 1]) * (pts[i, 0] - hull[k - 2, 0])
            <= 0.0
        ):
            k -= 1
        hull[k, 0], hull[k, 1] = pts[i, 0], pts[i, 1]
        k += 1
    lower = k + 1
    for i in range(n - 2, -1, -1):  # upper hull
        while (
            k >= lower
            and (hull[k - 1, 0] - hull[k - 2, 0]) * (pts[i, 1] - hull[k - 2, 1])
            - (hull[k - 1, 1] - hull[k - 2, 1]) * (pts[i, 0] - hull[k - 2, 0])
            <= 0.0
        ):
            k -= 1
        hull[k, 0], hull[k, 1] = pts[i, 0], pts[i, 1]
        k += 1
    return float(_polygon_area(hull, k - 1))


@njit(cache=True)
def _pair_cost(a: F64, b: F64, kind: int, scratch: F64, buf0: F64, pts: F64) -> float:
    dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    if kind == 2:
        return float(np.sqrt(dx * dx + dy * dy + dz * dz))
    # footprints relative to a's centre (small numbers, no cancellation far from the origin)
    bev_corners(a, a[0], a[1], scratch[0], scratch[1])
    bev_corners(b, a[0], a[1], scratch[2], scratch[3])
    inter = quad_intersection_area(
        scratch[0], scratch[1], scratch[2], scratch[3], scratch[4], scratch[5], scratch[6], scratch[7]
    )
    area_a, area_b = a[3] * a[4], b[3] * b[4]
    if kind == 1:
        union = area_a + area_b - inter
        return 1.0 - (inter / union if union > 0.0 else 0.0)
    za0, za1 = a[2] - 0.5 * a[5], a[2] + 0.5 * a[5]
    zb0, zb1 = b[2] - 0.5 * b[5], b[2] + 0.5 * b[5]
    overlap_z = max(0.0, min(za1, zb1) - max(za0, zb0))
    span_z = max(za1, zb1) - min(za0, zb0)
    inter3 = inter * overlap_z
    union3 = area_a * a[5] + area_b * b[5] - inter3
    for k in range(4):
        pts[k, 0], pts[k, 1] = scratch[0, k], scratch[1, k]
        pts[k + 4, 0], pts[k + 4, 1] = scratch[2, k], scratch[3, k]
    enclosing = _hull_area(pts, buf0) * span_z
    if union3 <= 0.0 or enclosing <= 0.0:
        return 2.0
    return float(1.0 - (inter3 / union3 - (enclosing - union3) / enclosing))


@njit(cache=True)
def _cost_kernel(
    dets: F64,
    tracks: F64,
    det_cat: npt.NDArray[np.int64],
    track_cat: npt.NDArray[np.int64],
    kind: npt.NDArray[np.int64],
    gate: F64,
    threshold: F64,
    across: bool,
) -> F64:
    out = np.full((dets.shape[0], tracks.shape[0]), np.inf)
    scratch = np.empty((8, OVERLAP_SCRATCH))
    buf0, pts = np.empty((16, 2)), np.empty((8, 2))
    for i in range(dets.shape[0]):
        g2 = gate[i] * gate[i]
        for j in range(tracks.shape[0]):
            if not across and det_cat[i] != track_cat[j]:
                continue
            dx, dy = dets[i, 0] - tracks[j, 0], dets[i, 1] - tracks[j, 1]
            if dx * dx + dy * dy > g2:
                continue
            c = _pair_cost(dets[i], tracks[j], kind[i], scratch, buf0, pts)
            if c <= threshold[i]:
                out[i, j] = c
    return out


# --- costs -------------------------------------------------------------------------------------------


def _as_boxes(boxes: npt.ArrayLike, name: str) -> F64:
    arr = np.ascontiguousarray(boxes, dtype=np.float64)
    if arr.size == 0:
        arr = arr.reshape(0, 7)
    if arr.ndim != 2 or arr.shape[1] != 7:
        raise TrackingError(f"{name} must be (N, 7) x y z l w h yaw, got shape {arr.shape}")
    return arr


def pairwise_cost(kind: str, dets: npt.ArrayLike, tracks: npt.ArrayLike) -> F64:
    """Cost (D, T) of every detection (D, 7) against every track box (T, 7) by `kind` (no gating)."""
    if kind not in COST_KINDS:
        raise TrackingError(f"cost {kind!r} is not one of {', '.join(COST_KINDS)}")
    d, t = _as_boxes(dets, "dets"), _as_boxes(tracks, "tracks")
    n = d.shape[0]
    return _cost_kernel(
        d, t, np.zeros(n, np.int64), np.zeros(t.shape[0], np.int64),
        np.full(n, COST_KINDS[kind], np.int64), np.full(n, np.inf), np.full(n, np.inf), True,
    )  # fmt: skip


def giou_3d(a: npt.ArrayLike, b: npt.ArrayLike) -> F64:
    """Generalised 3D IoU (N, M) in [-1, 1] of upright boxes a (N, 7), b (M, 7)."""
    return 1.0 - pairwise_cost("giou_3d", a, b)


def cost_matrix(
    dets: F64,
    tracks: F64,
    det_cat: npt.NDArray[np.int64],
    track_cat: npt.NDArray[np.int64],
    kind: npt.NDArray[np.int64],
    gate: F64,
    threshold: F64,
    *,
    across_categories: bool = False,
) -> F64:
    """Gated cost (D, T); per detection: `kind` (COST_KINDS value), `gate` (m, centre distance in the
    ground plane), `threshold` (max cost). Pairs of different categories are `inf` unless
    `across_categories`."""
    return _cost_kernel(dets, tracks, det_cat, track_cat, kind, gate, threshold, across_categories)


# --- matchers ----------------------------------------------------------------------------------------


@njit(cache=True)
def _association_arrays(
    n_rows: int, n_cols: int, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Matches (K, 2) sorted by row, unmatched rows, unmatched columns."""
    col_of = np.full(n_rows, -1, np.int64)
    col_used = np.zeros(n_cols, np.bool_)
    for k in range(rows.shape[0]):
        col_of[rows[k]] = cols[k]
        col_used[cols[k]] = True
    matches = np.empty((rows.shape[0], 2), np.int64)
    unmatched_rows = np.empty(n_rows - rows.shape[0], np.int64)
    m = u = 0
    for i in range(n_rows):
        if col_of[i] >= 0:
            matches[m, 0], matches[m, 1] = i, col_of[i]
            m += 1
        else:
            unmatched_rows[u] = i
            u += 1
    unmatched_cols = np.empty(n_cols - rows.shape[0], np.int64)
    u = 0
    for j in range(n_cols):
        if not col_used[j]:
            unmatched_cols[u] = j
            u += 1
    return matches, unmatched_rows, unmatched_cols


def _association(cost: F64, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> Association:
    matches, unmatched_rows, unmatched_cols = _association_arrays(
        cost.shape[0], cost.shape[1], rows.astype(np.int64), cols.astype(np.int64)
    )
    return Association(
        matches.astype(np.intp), unmatched_rows.astype(np.intp), unmatched_cols.astype(np.intp)
    )


@njit(cache=True)
def _split_lone_pairs(
    cost: F64,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pairs (row, col) that are each other's only finite option (every optimal matching has them),
    and the rows and columns left with several options, for the assignment solver."""
    n_rows, n_cols = cost.shape
    row_count = np.zeros(n_rows, np.int64)
    col_count = np.zeros(n_cols, np.int64)
    row_last = np.zeros(n_rows, np.int64)
    for i in range(n_rows):
        for j in range(n_cols):
            if np.isfinite(cost[i, j]):
                row_count[i] += 1
                col_count[j] += 1
                row_last[i] = j
    lone = np.zeros(n_rows, np.bool_)
    solo_col = np.zeros(n_cols, np.bool_)
    for i in range(n_rows):
        if row_count[i] == 1 and col_count[row_last[i]] == 1:
            lone[i] = True
            solo_col[row_last[i]] = True
    lone_rows = np.flatnonzero(lone).astype(np.int64)
    lone_cols = row_last[lone_rows]
    rest_rows = np.flatnonzero((row_count > 0) & ~lone).astype(np.int64)
    rest_cols = np.flatnonzero((col_count > 0) & ~solo_col).astype(np.int64)
    return lone_rows, lone_cols, rest_rows, rest_cols


def hungarian(cost: F64) -> Association:
    """Minimum-total-cost matching with the most finite pairs (scipy's linear_sum_assignment).

    Pairs that are each other's only option are taken directly; the rest goes to the solver.
    """
    if cost.size == 0:
        return _association(cost, np.zeros(0, np.int64), np.zeros(0, np.int64))
    lone_rows, lone_cols, live_rows, live_cols = _split_lone_pairs(
        np.ascontiguousarray(cost, dtype=np.float64)
    )
    if live_rows.size == 0:
        return _association(cost, lone_rows, lone_cols)
    sub = cost[np.ix_(live_rows, live_cols)]
    sub_finite = np.isfinite(sub)
    # a forbidden pair costs more than any set of allowed ones, so the most pairs are matched first
    big = (float(np.abs(sub[sub_finite]).max()) + 1.0) * (min(sub.shape) + 1)
    r, c = linear_sum_assignment(np.where(sub_finite, sub, big))
    keep = sub_finite[r, c]
    rows = np.concatenate([lone_rows, live_rows[r[keep]]])
    cols = np.concatenate([lone_cols, live_cols[c[keep]]])
    return _association(cost, rows, cols)


@njit(cache=True)
def _greedy_kernel(cost: F64) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    flat = cost.ravel()
    order = np.argsort(flat, kind="mergesort")
    n_rows, n_cols = cost.shape
    row_used = np.zeros(n_rows, np.bool_)
    col_used = np.zeros(n_cols, np.bool_)
    rows = np.empty(min(n_rows, n_cols), np.int64)
    cols = np.empty(min(n_rows, n_cols), np.int64)
    m = 0
    for k in order:
        if not np.isfinite(flat[k]) or m == rows.shape[0]:
            break
        i, j = k // n_cols, k % n_cols
        if row_used[i] or col_used[j]:
            continue
        row_used[i] = col_used[j] = True
        rows[m], cols[m] = i, j
        m += 1
    return rows[:m], cols[:m]


def greedy(cost: F64) -> Association:
    """Pairs taken by increasing cost, each detection and track at most once (ties: row-major order)."""
    if cost.size == 0:
        return _association(cost, np.zeros(0, np.int64), np.zeros(0, np.int64))
    rows, cols = _greedy_kernel(np.ascontiguousarray(cost, dtype=np.float64))
    return _association(cost, rows, cols)


MATCHERS: Final[Mapping[str, Matcher]] = MappingProxyType({"hungarian": hungarian, "greedy": greedy})


def associate(cost: F64, matcher: Matcher = hungarian) -> Association:
    """Match detections (rows) to tracks (columns) of `cost` (D, T); `inf` forbids a pair."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise TrackingError(f"cost must be (D, T), got shape {cost.shape}")
    return matcher(cost)
