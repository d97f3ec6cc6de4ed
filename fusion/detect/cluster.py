"""Clustering the points above the ground: connected components of a bird's-eye-view grid.

The points in the region of interest (range within [min_range, max_range], height above the ground
within [min_height, max_height]) are binned into square cells of `cell_size`. Two occupied cells
belong to one object when their centres are at most `link` apart across the line of sight and
`radial_factor * link` along it, where link = max(min_link, range * max(link_angle, link_steps *
azimuth step)) grows with range as the LiDAR's points thin out (the azimuth step, the sensor's
horizontal resolution, is estimated from the sweep by `azimuth_step`). Along the line of sight the
allowance is larger because a surface seen at a grazing angle (the side of a car ahead in the next
lane) is hit by successive columns far apart in range: with a coarse horizontal resolution it is at
least range * `graze_steps` azimuth steps. Cells whose height spans (lowest to highest point above
the ground) are further apart vertically than `max_vertical_gap` are not joined. Union-find over the
occupied cells, one numba pass; O(N + cells * k^2), k the window in cells.

Overhangs: a tree's canopy over a parked car joins the car's cells to the tree's. When a cluster's
heights have a sparse band (at most `overhang_sparse` of its points in each 5 cm) at least
`overhang_gap` thick, starting at least `overhang_base` above the ground, the points above it are
dropped and the sweep is clustered again without them.

Result: per point a cluster id (-1: not in a cluster), clusters numbered 0..C-1 in order of their
first point, and the points of each cluster contiguous in `order` from `offsets[c]` to
`offsets[c + 1]`. Clusters with fewer than `min_points` points are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClusterConfig:
    """Region of interest and connectivity. Lengths in metres, heights above the local ground."""

    min_range: float = 1.0  # closer points (the ego vehicle, the mount) are ignored
    max_range: float = 60.0  # farther points are ignored (horizontal range from the sensor)
    min_height: float = 0.2  # points lower than this above the ground are ground
    max_height: float = 4.0  # higher points (canopies, overhangs, signs) are not clustered
    cell_size: float = 0.2  # side of a bird's-eye-view cell
    min_link: float = 0.3  # cells this far apart are joined at any range (>= the cell diagonal)
    link_angle: float = 0.012  # radians: the join distance grows as range * link_angle beyond that ...
    link_steps: float = 1.8  # ... or as range * this many of the sweep's azimuth steps, if larger
    radial_factor: float = 2.0  # along the line of sight cells join up to this times the join distance
    graze_steps: float = 5.0  # ... or up to range * this many azimuth steps (a surface seen at ~12 deg)
    max_link_cells: int = 16  # the join window is capped at this many cells
    max_vertical_gap: float = 1.0  # cells whose height spans are further apart are not joined
    overhang_gap: float = 0.3  # a cluster's points above a sparse height band this thick ... (0: off)
    overhang_sparse: float = 0.005  # (sparse: each 5 cm of it holds at most this share of the points)
    overhang_base: float = 0.8  # ... starting at least this high are an overhang, not the object
    min_points: int = 4  # smaller clusters are dropped (a walker 45 m off, 0.7 deg step: 4-5 hits)


@dataclass(frozen=True, eq=False)
class Clusters:
    """Clusters of one sweep: labels (N,) int64; order (M,) int64 point indices grouped by cluster;
    offsets (C + 1,) int64 into `order`."""

    labels: I64
    order: I64
    offsets: I64

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)


def cluster_points(
    xyz: F32, height: F32, config: ClusterConfig = ClusterConfig(), *, azimuth_step: float = 0.0
) -> Clusters:
    """Cluster a sweep. xyz: (N, 3) float32 C-contiguous; height: (N,) float32 above the ground;
    azimuth_step: the LiDAR's horizontal resolution (radians; 0: unknown), see `azimuth_step`."""
    side = max(1, math.ceil(2.0 * config.max_range / config.cell_size))
    link_angle = max(float(config.link_angle), float(config.link_steps) * azimuth_step)

    def components(h: F32) -> tuple[I64, int]:
        return _components(
            xyz,
            h,
            float(config.min_range),
            float(config.max_range),
            float(config.min_height),
            float(config.max_height),
            float(config.cell_size),
            side,
            float(config.min_link),
            link_angle,
            float(config.radial_factor),
            float(config.graze_steps) * azimuth_step,
            int(config.max_link_cells),
            float(config.max_vertical_gap),
            int(config.min_points),
        )

    labels, count = components(height)
    if config.overhang_gap > 0.0:
        drop = _overhangs(
            height,
            labels,
            count,
            float(config.min_height),
            float(config.max_height),
            float(config.overhang_gap),
            float(config.overhang_base),
            float(config.overhang_sparse),
        )
        if drop.any():  # cluster again without the overhangs: what they joined may be apart
            labels, count = components(np.where(drop, np.float32(np.nan), height))
    order, offsets = _group(labels, count)
    return Clusters(labels=labels, order=order, offsets=offsets)


def azimuth_step(xyz: F32, ring: npt.NDArray[np.uint16] | None, *, sample: int = 32768) -> float:
    """The LiDAR's horizontal resolution (radians) from a sweep: the median azimuth step between
    consecutive points of one ring (consecutive points at all without `ring`) among the first
    `sample` points, which drivers store in firing or scan-line order. 0.0 when that gives no
    plausible value (0.03 to 2 degrees): points in another order, or too few."""
    n = min(xyz.shape[0], sample)
    if n < 16:
        return 0.0
    az = np.arctan2(xyz[:n, 1].astype(np.float64), xyz[:n, 0].astype(np.float64))
    if ring is not None:
        order = np.argsort(ring[:n], kind="stable")
        az = az[order]
        same = ring[:n][order][1:] == ring[:n][order][:-1]
    else:
        same = np.ones(n - 1, dtype=np.bool_)
    step = np.abs(np.diff(az))
    step = np.minimum(step, 2.0 * np.pi - step)[same]
    step = step[step < np.radians(5.0)]
    if step.size < 8:
        return 0.0
    value = float(np.median(step))
    return value if np.radians(0.03) <= value <= np.radians(2.0) else 0.0


@numba.njit(cache=True, nogil=True)
def _find(parent: I64, a: int) -> int:  # pragma: no cover - compiled
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:  # path compression
        nxt = parent[a]
        parent[a] = root
        a = nxt
    return root


@numba.njit(cache=True, nogil=True)
def _components(  # pragma: no cover - compiled
    xyz: F32,
    height: F32,
    min_range: float,
    max_range: float,
    min_height: float,
    max_height: float,
    cell: float,
    side: int,
    min_link: float,
    link_angle: float,
    radial_factor: float,
    graze_angle: float,
    max_link_cells: int,
    max_gap: float,
    min_points: int,
) -> tuple[I64, int]:
    n = xyz.shape[0]
    grid = np.full(side * side, -1, dtype=np.int64)  # occupied-cell index per grid cell
    point_cell = np.full(n, -1, dtype=np.int64)
    cell_ix = np.empty(n, dtype=np.int64)
    cell_iy = np.empty(n, dtype=np.int64)
    lo = np.empty(n, dtype=np.float32)
    hi = np.empty(n, dtype=np.float32)
    num = 0
    inv = 1.0 / cell
    r2_min = min_range * min_range
    r2_max = max_range * max_range
    for i in range(n):
        h = height[i]
        if not (h >= min_height and h <= max_height):  # NaN (off the ground grid) fails too
            continue
        x = xyz[i, 0]
        y = xyz[i, 1]
        r2 = x * x + y * y
        if r2 < r2_min or r2 > r2_max:
            continue
        ix = math.floor((x + max_range) * inv)
        iy = math.floor((y + max_range) * inv)
        if ix < 0 or iy < 0 or ix >= side or iy >= side:
            continue
        g = ix * side + iy
        k = grid[g]
        if k < 0:
            k = num
            grid[g] = k
            cell_ix[k] = ix
            cell_iy[k] = iy
            lo[k] = h
            hi[k] = h
            num += 1
        else:
            lo[k] = min(lo[k], h)
            hi[k] = max(hi[k], h)
        point_cell[i] = k

    parent = np.arange(num)
    for k in range(num):
        ix = cell_ix[k]
        iy = cell_iy[k]
        cx = (ix + 0.5) * cell - max_range
        cy = (iy + 0.5) * cell - max_range
        r = math.hypot(cx, cy)
        link = max(min_link, r * link_angle) + 1e-9
        link_r = max(radial_factor * link, r * graze_angle)
        ux = cx / r if r > 0.0 else 1.0  # the line of sight
        uy = cy / r if r > 0.0 else 0.0
        w = min(max(1, math.floor(link_r * inv)), max_link_cells)
        # Half of the window suffices: each pair is seen from one of its two cells.
        for dx in range(0, w + 1):
            jx = ix + dx
            if jx >= side:
                break
            for dy in range(-w, w + 1):
                if dx == 0 and dy <= 0:
                    continue
                jy = iy + dy
                if jy < 0 or jy >= side:
                    continue
                q = grid[jx * side + jy]
                if q < 0:
                    continue
                ox = dx * cell
                oy = dy * cell
                if abs(ox * ux + oy * uy) > link_r or abs(-ox * uy + oy * ux) > link:
                    continue
                if lo[q] - hi[k] > max_gap or lo[k] - hi[q] > max_gap:
                    continue
                a = _find(parent, k)
                b = _find(parent, q)
                if a != b:
                    if a < b:
                        parent[b] = a
                    else:
                        parent[a] = b

    size = np.zeros(num, dtype=np.int64)
    root_of = np.empty(num, dtype=np.int64)
    for k in range(num):
        root_of[k] = _find(parent, k)
    for i in range(n):
        k = point_cell[i]
        if k >= 0:
            size[root_of[k]] += 1
    label_of_root = np.full(num, -1, dtype=np.int64)
    labels = np.full(n, -1, dtype=np.int64)
    count = 0
    for i in range(n):
        k = point_cell[i]
        if k < 0:
            continue
        r = root_of[k]
        if size[r] < min_points:
            continue
        if label_of_root[r] < 0:
            label_of_root[r] = count
            count += 1
        labels[i] = label_of_root[r]
    return labels, count


@numba.njit(cache=True, nogil=True)
def _overhangs(  # pragma: no cover - compiled
    height: F32,
    labels: I64,
    count: int,
    min_height: float,
    max_height: float,
    gap: float,
    base: float,
    sparse: float,
) -> npt.NDArray[np.bool_]:
    """Points above the lowest sparse height band (>= gap, starting >= base) of their cluster."""
    bin_size = 0.05
    bins = math.ceil((max_height - min_height) / bin_size) + 1
    hist = np.zeros((count, bins), dtype=np.int64)
    for i in range(labels.shape[0]):
        if labels[i] >= 0:
            b = int((height[i] - min_height) / bin_size)
            hist[labels[i], min(max(b, 0), bins - 1)] += 1
    need = math.ceil(gap / bin_size)
    first = math.ceil((base - min_height) / bin_size)
    cut = np.full(count, np.inf)
    for c in range(count):
        run = 0
        seen_top = -1
        few = int(sparse * hist[c].sum())
        for b in range(bins):
            if hist[c, b] > few:
                if run >= need and b - run >= first:
                    cut[c] = min_height + (b - run) * bin_size
                    break
                run = 0
                seen_top = b
            elif seen_top >= 0:
                run += 1
    drop = np.zeros(labels.shape[0], dtype=np.bool_)
    for i in range(labels.shape[0]):
        if labels[i] >= 0 and height[i] >= cut[labels[i]]:
            drop[i] = True
    return drop


@numba.njit(cache=True, nogil=True)
def _group(labels: I64, count: int) -> tuple[I64, I64]:  # pragma: no cover - compiled
    """Counting sort of the clustered points by label: (order, offsets)."""
    offsets = np.zeros(count + 1, dtype=np.int64)
    for i in range(labels.shape[0]):
        if labels[i] >= 0:
            offsets[labels[i] + 1] += 1
    for c in range(count):
        offsets[c + 1] += offsets[c]
    fill = offsets[:-1].copy()
    order = np.empty(offsets[count], dtype=np.int64)
    for i in range(labels.shape[0]):
        c = labels[i]
        if c >= 0:
            order[fill[c]] = i
            fill[c] += 1
    return order, offsets
