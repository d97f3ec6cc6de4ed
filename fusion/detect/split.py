"""Splitting what clustering joined: a row of parked cars, a group of people standing together.

Seen at a grazing angle, the side of a parked car is hit by successive LiDAR columns far apart in
range, so clustering (cluster.py) must join cells far apart along the line of sight; with a coarse
horizontal resolution that also bridges the one to four metres between the parked cars of a row.
The joined row is long (9 to 16 m), no wider than a car and no higher: no single category fits it.

Such a cluster (observed longer than `min_length`, no wider than `max_width`, its top no higher
than `max_top`) is cut across its length axis (the fitted rectangle's longer side) into the
fewest pieces no longer than `max_piece`, cutting only between consecutive points (sorted along
the axis) at least `min_gap` apart, and among the cuttings with the fewest pieces, at the widest
gaps (largest sum of the cut gaps); where no cutting keeps every piece that short, the one whose
pieces exceed it least. A piece is then a cluster of its own and is fitted again.
Dynamic programming over the candidate cuts (the `max_cuts` widest gaps): O(cuts^2) per cluster.

A group of people waiting side by side is one cluster the size of a cyclist. A cluster no longer
than `group_max_length` and longer than `group_min_length`, no wider than `group_max_width`,
whose top is a person's (`group_min_top` to `group_max_top`), is cut the same way into pieces no
longer than `group_max_piece` at gaps of at least `group_min_gap`, but only when every piece can be
that short and at least `group_min_piece` long (a body, not one LiDAR column), and each cut gap is
`group_clear_ratio` times wider than the steps between the points of the pieces beside it: a
cyclist, seen as one continuous body or at a grazing angle as columns far apart, is left whole.

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
    """Which clusters are rows of parked cars or groups of people, and how they are cut. Lengths in
    metres, heights above the ground."""

    min_length: float = 6.3  # clusters observed longer than this (longer than a car: 0: off) ...
    max_width: float = 2.8  # ... no wider than this ...
    max_top: float = 2.3  # ... and no higher above the ground (a car's roof, not a van's) are cut
    max_piece: float = 5.3  # into the fewest pieces no longer than this along their length
    min_gap: float = 0.3  # cut only between consecutive points at least this far apart
    max_cuts: int = 48  # the widest gaps of a cluster considered as cuts
    group_min_length: float = 1.1  # clusters observed longer than this (0: off) ...
    group_max_length: float = 4.0  # ... and at most this long ...
    group_max_width: float = 1.2  # ... no wider ...
    group_min_top: float = 1.55  # ... their top this high ...
    group_max_top: float = 2.1  # ... and no higher are cut into people ...
    group_max_piece: float = 0.9  # ... no longer than this each ...
    group_min_gap: float = 0.15  # ... between points at least this far apart, where they all can be,
    group_min_piece: float = 0.25  # ... and every piece at least this long (a body, not a column) ...
    group_clear_ratio: float = 2.0  # ... each cut this many times wider than the steps beside it


def split_rows(
    xyz: F32,
    height: F32,
    clusters: Clusters,
    shapes: Shapes,
    config: SplitConfig = SplitConfig(),
    fit: FitConfig | None = None,
    *,
    min_points: int = 1,
) -> tuple[Clusters, Shapes]:
    """The clusters and shapes with every row of parked cars and every group of people cut into
    pieces (see the module docstring). The pieces are appended after the clusters that are not
    cut; the cut ones are removed, and so are pieces with fewer than `min_points` points (as
    clustering drops such clusters); `fit` (default FitConfig()) refits them. xyz: (N, 3) float32;
    height: (N,) float32 above the ground."""
    v = shapes.values
    if len(shapes) == 0:
        return clusters, shapes
    length = np.maximum(v[:, S_EXT1], v[:, S_EXT2])
    width = np.minimum(v[:, S_EXT1], v[:, S_EXT2])
    top = v[:, S_TOP]
    rows = shapes.fitted & (config.min_length > 0.0) & (length > config.min_length)
    rows &= (width <= config.max_width) & (top <= config.max_top)
    groups = shapes.fitted & (config.group_min_length > 0.0) & (length > config.group_min_length)
    groups &= (length <= config.group_max_length) & (width <= config.group_max_width)
    groups &= (top >= config.group_min_top) & (top <= config.group_max_top)
    which = np.flatnonzero(rows | groups)
    if which.size == 0:
        return clusters, shapes
    is_row = rows[which]
    axis = v[which, S_THETA] + np.where(v[which, S_EXT1] >= v[which, S_EXT2], 0.0, 0.5 * math.pi)
    piece_order, piece_offsets, cut = _cut(
        xyz,
        clusters.order,
        clusters.offsets,
        which.astype(np.int64),
        axis.astype(np.float64),
        np.where(is_row, config.max_piece, config.group_max_piece).astype(np.float64),
        np.where(is_row, config.min_gap, config.group_min_gap).astype(np.float64),
        ~is_row,
        float(config.group_min_piece),
        float(config.group_clear_ratio),
        int(config.max_cuts),
    )
    if not cut.any():
        return clusters, shapes
    sizes = np.diff(piece_offsets)
    if (small := sizes < min_points).any():
        big = np.flatnonzero(~small)
        piece_order = np.concatenate(
            [piece_order[piece_offsets[p] : piece_offsets[p + 1]] for p in big] or [np.zeros(0, np.int64)]
        )
        piece_offsets = np.concatenate([[0], np.cumsum(sizes[big])]).astype(np.int64)
    pieces = fit_clusters(
        xyz, height, Clusters(clusters.labels, piece_order, piece_offsets), fit or FitConfig()
    )
    keep = np.ones(len(shapes), dtype=np.bool_)
    keep[which[cut]] = False
    kept = np.flatnonzero(keep)
    order, offsets, labels = _regroup(
        clusters.order, clusters.offsets, kept, piece_order, piece_offsets, xyz.shape[0]
    )
    values = np.concatenate([v[kept], pieces.values])
    fitted = np.concatenate([shapes.fitted[kept], pieces.fitted])
    return Clusters(labels=labels, order=order, offsets=offsets), Shapes(values=values, fitted=fitted)


@numba.njit(cache=True, nogil=True)
def _cut(  # pragma: no cover - compiled
    xyz: F32,
    order: I64,
    offsets: I64,
    rows: I64,
    axis: F64,
    max_piece: F64,
    min_gap: F64,
    must_fit: npt.NDArray[np.bool_],
    min_piece: float,
    clear_ratio: float,
    max_cuts: int,
) -> tuple[I64, I64, npt.NDArray[np.bool_]]:
    """Per cluster `rows[r]` cut along `axis[r]`, its pieces: (order, offsets) of the pieces of all
    clusters that are cut, and (R,) bool which are (one whose best cutting is one piece is not, nor
    one flagged `must_fit` whose pieces cannot all be `max_piece` short and `min_piece` long)."""
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
        cand = np.flatnonzero(gaps >= min_gap[r])
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
                excess = max(span - max_piece[r], 0.0)
                if must_fit[r]:
                    excess += max(min_piece - span, 0.0)
                value = cost[q] + big + big * big * excess - gap
                if value < cost[k]:
                    cost[k] = value
                    prev[k] = q
        bounds = [m + 1]
        k = m + 1
        while k > 0:
            k = prev[k]
            bounds.append(k)
        if len(bounds) <= 2 or (must_fit[r] and cost[m + 1] > big * (len(bounds) - 0.5)):
            continue  # one piece, or pieces too long: left as it is
        if must_fit[r] and not _clear_cuts(gaps, start, bounds, clear_ratio):
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
def _clear_cuts(gaps: F64, start: I64, bounds: list[int], ratio: float) -> bool:  # pragma: no cover
    """Whether every cut's gap is `ratio` times wider than every step inside the two pieces
    beside it (bounds: boundary indices into `start`, last to first)."""
    inner = np.zeros(len(bounds) - 1)  # widest step inside each piece, last piece first
    for b in range(len(bounds) - 1):
        first = start[bounds[b + 1]]
        last = start[bounds[b]] - 1
        for j in range(first, last):
            inner[b] = max(inner[b], gaps[j])
    for b in range(1, len(bounds) - 1):  # the cut between piece b - 1 and piece b
        cut_gap = gaps[start[bounds[b]] - 1]
        if cut_gap < ratio * max(inner[b - 1], inner[b]):
            return False
    return True


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
