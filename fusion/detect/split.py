"""Splitting a row of parked cars that clustering joined into one long, low cluster.

Seen at a grazing angle, the side of a parked car is hit by successive LiDAR columns far apart in
range, so clustering (cluster.py) must join cells far apart along the line of sight; with a coarse
horizontal resolution that also bridges the one to four metres between the parked cars of a row.
The joined row is long (9 to 16 m), no wider than a car and no higher: no single category fits it.

Such a cluster (observed longer than `min_length`, no wider than `max_width`, its top no higher
than `max_top`) is cut across its length axis (the fitted rectangle's longer side) into the
fewest pieces no longer than `max_piece`, cutting only between consecutive points (sorted along
the axis) at least `min_gap` apart, and among the cuttings with the fewest pieces, at the widest
gaps (largest sum of the cut gaps). A piece is then a cluster of its own and is fitted again.
Dynamic programming over the candidate cuts (the `max_cuts` widest gaps): O(cuts^2) per cluster.

    along the axis:  |..  .. .  .|     |.  .   .  .|      |. . .  ..|    points, sorted
                     <- car 1 --->  ^  <-- car 2 -->  ^   <- car 3 ->
                                    cut               cut  (widest gaps giving 3 pieces <= max_piece)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from fusion.detect.cluster import Clusters
from fusion.detect.fit import S_EXT1, S_EXT2, S_THETA, S_TOP, FitConfig, Shapes, fit_clusters

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SplitConfig:
    """Which clusters are rows of parked cars and how they are cut. Lengths in metres."""

    min_length: float = 6.3  # clusters observed longer than this (longer than a car: 0: off) ...
    max_width: float = 2.8  # ... no wider than this ...
    max_top: float = 2.3  # ... and no higher above the ground (a car's roof, not a van's) are cut
    max_piece: float = 5.3  # into the fewest pieces no longer than this along their length
    min_gap: float = 0.3  # cut only between consecutive points at least this far apart
    max_cuts: int = 48  # the widest gaps of a cluster considered as cuts


def split_rows(
    xyz: F32,
    height: F32,
    clusters: Clusters,
    shapes: Shapes,
    config: SplitConfig = SplitConfig(),
    fit: FitConfig = FitConfig(),
) -> tuple[Clusters, Shapes]:
    """The clusters and shapes with every row of parked cars cut into pieces (see the module
    docstring). The pieces are appended after the clusters that are not cut; the cut ones are
    removed. xyz: (N, 3) float32; height: (N,) float32 above the ground."""
    v = shapes.values
    if config.min_length <= 0.0 or len(shapes) == 0:
        return clusters, shapes
    length = np.maximum(v[:, S_EXT1], v[:, S_EXT2])
    width = np.minimum(v[:, S_EXT1], v[:, S_EXT2])
    rows = np.flatnonzero(
        shapes.fitted & (length > config.min_length) & (width <= config.max_width) & (v[:, S_TOP] <= config.max_top)
    )
    if rows.size == 0:
        return clusters, shapes
    axis = v[rows, S_THETA] + np.where(v[rows, S_EXT1] >= v[rows, S_EXT2], 0.0, 0.5 * math.pi)
    piece_order, piece_offsets, cut = _cut_rows(
        xyz,
        clusters.order,
        clusters.offsets,
        rows.astype(np.int64),
        axis.astype(np.float64),
        float(config.max_piece),
        float(config.min_gap),
        int(config.max_cuts),
    )
    if not cut.any():
        return clusters, shapes
    pieces = fit_clusters(xyz, height, Clusters(clusters.labels, piece_order, piece_offsets), fit)
    keep = np.ones(len(shapes), dtype=np.bool_)
    keep[rows[cut]] = False
    kept = np.flatnonzero(keep)
    order, offsets, labels = _regroup(clusters.order, clusters.offsets, kept, piece_order, piece_offsets, xyz.shape[0])
    values = np.concatenate([v[kept], pieces.values])
    fitted = np.concatenate([shapes.fitted[kept], pieces.fitted])
    return Clusters(labels=labels, order=order, offsets=offsets), Shapes(values=values, fitted=fitted)


@numba.njit(cache=True, nogil=True)
def _cut_rows(  # pragma: no cover - compiled
    xyz: F32,
    order: I64,
    offsets: I64,
    rows: I64,
    axis: F64,
    max_piece: float,
    min_gap: float,
    max_cuts: int,
) -> tuple[I64, I64, npt.NDArray[np.bool_]]:
    """Per row cluster, its pieces: (order, offsets) of the pieces of all rows that are cut, and
    (R,) bool which rows are (a row whose best cutting is one piece is not)."""
    total = 0
    for r in range(rows.shape[0]):
        total += offsets[rows[r] + 1] - offsets[rows[r]]
    out_order = np.empty(total, dtype=np.int64)
    out_offsets = [0]
    cut = np.zeros(rows.shape[0], dtype=np.bool_)
    filled = 0
    big = 1.0e6
    for r in range(rows.shape[0]):
        lo = offsets[rows[r]]
        n = offsets[rows[r] + 1] - lo
        c = math.cos(axis[r])
        s = math.sin(axis[r])
        along = np.empty(n)
        for j in range(n):
            i = order[lo + j]
            along[j] = float(xyz[i, 0]) * c + float(xyz[i, 1]) * s
        srt = np.argsort(along)
        a = along[srt]
        gaps = a[1:] - a[:-1]
        cand = np.flatnonzero(gaps >= min_gap)
        if cand.shape[0] > max_cuts:
            cand = np.sort(cand[np.argsort(-gaps[cand])[:max_cuts]])
        m = cand.shape[0]
        # Boundaries: 0 (start), the candidate cuts 1..m (a cut after point cand[k - 1]), m + 1 (end).
        # best[k]: (pieces, -sum of cut gaps) of the best cutting of the points before boundary k.
        start = np.empty(m + 2, dtype=np.int64)  # first point after each boundary
        start[0] = 0
        for k in range(m):
            start[k + 1] = cand[k] + 1
        start[m + 1] = n
        cost = np.full(m + 2, np.inf)
        prev = np.full(m + 2, -1, dtype=np.int64)
        cost[0] = 0.0
        for k in range(1, m + 2):
            gap = gaps[cand[k - 1]] if k <= m else 0.0
            for q in range(k):
                if cost[q] == np.inf:
                    continue
                span = a[start[k] - 1] - a[start[q]]
                value = cost[q] + big + big * big * max(span - max_piece, 0.0) - gap
                if value < cost[k]:
                    cost[k] = value
                    prev[k] = q
        bounds = [m + 1]
        k = m + 1
        while k > 0:
            k = prev[k]
            bounds.append(k)
        if len(bounds) <= 2:  # one piece: left as it is
            continue
        cut[r] = True
        for b in range(len(bounds) - 1, 0, -1):
            first = start[bounds[b]]
            last = start[bounds[b - 1]]
            for j in range(first, last):
                out_order[filled] = order[lo + srt[j]]
                filled += 1
            out_offsets.append(filled)
    return out_order[:filled], np.array(out_offsets, dtype=np.int64), cut


@numba.njit(cache=True, nogil=True)
def _regroup(  # pragma: no cover - compiled
    order: I64, offsets: I64, kept: I64, piece_order: I64, piece_offsets: I64, num_points: int
) -> tuple[I64, I64, I64]:
    """(order, offsets, labels) of the kept clusters (renumbered 0..K-1) then the pieces."""
    num = kept.shape[0] + piece_offsets.shape[0] - 1
    new_offsets = np.zeros(num + 1, dtype=np.int64)
    new_order = np.empty(order.shape[0], dtype=np.int64)
    labels = np.full(num_points, -1, dtype=np.int64)
    filled = 0
    for k in range(kept.shape[0]):
        for j in range(offsets[kept[k]], offsets[kept[k] + 1]):
            new_order[filled] = order[j]
            labels[order[j]] = k
            filled += 1
        new_offsets[k + 1] = filled
    base = kept.shape[0]
    for p in range(piece_offsets.shape[0] - 1):
        for j in range(piece_offsets[p], piece_offsets[p + 1]):
            new_order[filled] = piece_order[j]
            labels[piece_order[j]] = base + p
            filled += 1
        new_offsets[base + p + 1] = filled
    return new_order[:filled], new_offsets, labels
