"""Ground estimation: a height above the local ground for every point, on slopes and over kerbs.

No sensor height is assumed and no single plane is fitted. The ground is grown over a square grid
around the sensor (cells of `GroundConfig.cell_size`):

1. Per cell, the robust lowest point (the second lowest z, so one stray return below the road
   does not drag it down).
2. Seed: the cells near the sensor whose lowest point lies close to a low quantile of theirs (the
   road around a vehicle is mostly free). The nearest seed also gives the blind radius: closer
   than the lowest beam reaches, a cell's lowest point is on an object (a cyclist alongside),
   so no cell there is taken as observed ground.
3. Candidates: a cell whose lowest point is within `max_step` of the local floor (the lowest of
   its neighbours' within `floor_radius` cells, raised by the slope allowed over the distance).
   The cells along a parked car's side are not, though each is close to the next.
4. Grow outwards, best-supported cell first (a priority queue keyed by how far the ground has had
   to be carried over cells without an accepted lowest point, then by range): a neighbour's lowest
   point is accepted as ground when it is a candidate and within `max_step + max_slope * distance`
   of the ground it is reached from; otherwise (an object hides the ground there, or nothing was
   seen) the ground is carried over it and the tolerance widens with the distance carried (less
   for a rise than for a drop: what rises behind a shadow is more often a wall's foot than a
   hill). Kerbs are steps below `max_step`; slopes are rises below `max_slope`.
5. A plane per cell, fitted by least squares to the points within `fit_band` of the grown ground
   in the cell and its 8 neighbours (their moments summed), which smooths the grid and follows
   slopes inside a cell; the neighbours whose points' centroid is further than `fit_tolerance`
   from the cell's own plane (across a kerb) are left out; where too few points support it, the
   grown height, level.

Each point's height is its z minus its cell's plane at its (x, y). Points outside the grid get NaN.

    ^ y                 grid cell (i, j) spans x in [-R + i c, -R + (i + 1) c),
    |                                      y in [-R + j c, -R + (j + 1) c)
    +--> x   (sensor frame: z up; R = max_range, c = cell_size)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_NUM_MOMENTS = 9  # n, Sx, Sy, Sz, Sxx, Sxy, Syy, Sxz, Syz (x, y relative to the cell centre)


@dataclass(frozen=True)
class GroundConfig:
    """How the ground is estimated. Lengths in metres."""

    cell_size: float = 1.0  # side of a ground-grid cell
    max_range: float = 64.0  # the grid covers |x|, |y| <= max_range around the sensor
    seed_radius: float = 12.0  # cells whose centre is this close to the sensor may seed the ground
    seed_quantile: float = 0.3  # seed height: this quantile of the seed cells' lowest points
    max_step: float = 0.25  # height jump (a kerb) allowed between neighbouring cells, on top of the slope
    max_slope: float = 0.12  # rise per metre the ground may have
    max_carry: float = 8.0  # the carried distance that widens the tolerance downwards is capped here
    max_carry_up: float = 2.0  # ... and upwards (ground rising behind an object is rarer than a wall)
    floor_radius: int = 5  # cells: a lowest point higher than the local floor this far around is no ground
    fit_band: float = 0.2  # points within this of a cell's grown ground take part in its plane fit
    min_fit_points: int = 6  # fewer supporting points in the 3x3 cells: a level plane at the mean
    fit_tolerance: float = 0.05  # a neighbour whose points are further from the first fit is left out


@dataclass(frozen=True, eq=False)
class Ground:
    """The estimated ground of one sweep.

    height: (N,) float32 height of each point above its local ground plane (NaN off the grid).
    planes: (G, G, 3) float64 per cell `a, b, c` of z = a (x - xc) + b (y - yc) + c, (xc, yc)
        the cell centre; G = number of cells along a side.
    observed: (G, G) bool, cells whose ground was seen (not carried over).
    """

    height: F32
    planes: F64
    observed: npt.NDArray[np.bool_]
    cell_size: float
    max_range: float

    def height_at(self, xy: npt.ArrayLike) -> F64:
        """Ground z under each (x, y) of xy (M, 2); (M,) float64, NaN off the grid."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return _ground_at(pts, self.planes, self.cell_size, self.max_range)


def estimate_ground(xyz: F32, config: GroundConfig = GroundConfig()) -> Ground:
    """The ground under a sweep. xyz: (N, 3) float32 in the sensor frame (z up), C-contiguous."""
    cell, rng = float(config.cell_size), float(config.max_range)
    side = max(1, math.ceil(2.0 * rng / cell))
    cell_of, low, count = _cell_lowest(xyz, cell, rng, side)
    ground, observed = _grow(low, count, side, cell, rng, config)
    moments = _ground_moments(xyz, cell_of, ground, side, cell, rng, float(config.fit_band))
    planes = _fit_planes(
        moments,
        ground,
        side,
        cell,
        int(config.min_fit_points),
        float(config.max_slope),
        float(config.fit_tolerance),
    )
    height = _heights(xyz, cell_of, planes, side, cell, rng)
    return Ground(
        height=height,
        planes=planes.reshape(side, side, 3),
        observed=observed.reshape(side, side),
        cell_size=cell,
        max_range=rng,
    )


def _grow(
    low: F64, count: I64, side: int, cell: float, rng: float, config: GroundConfig
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Grown ground height per cell ((side * side,) float64) and which cells were observed."""
    occupied = np.flatnonzero(count > 0)
    if occupied.size == 0:
        return np.zeros(side * side), np.zeros(side * side, dtype=np.bool_)
    centre_x = -rng + (occupied // side + 0.5) * cell
    centre_y = -rng + (occupied % side + 0.5) * cell
    dist = np.hypot(centre_x, centre_y)
    near = dist <= config.seed_radius
    if not near.any():  # nothing close (a cropped cloud): the nearest cells
        near = dist <= dist.min() + config.seed_radius
    h0 = float(np.quantile(low[occupied[near]], config.seed_quantile))
    is_seed = near & (np.abs(low[occupied] - h0) <= config.max_step)
    if not is_seed.any():
        is_seed[np.flatnonzero(near)[int(np.argmin(np.abs(low[occupied[near]] - h0)))]] = True
    seeds = occupied[is_seed]
    # The sensor cannot see the ground closer than its lowest beam reaches: there, a cell's lowest
    # point is on an object, never ground. That blind radius is where the seed cells begin.
    blind = max(float(np.quantile(dist[is_seed], 0.02)) - config.cell_size, 0.0)
    candidate = _below_floor(
        low, count, side, cell, int(config.floor_radius), float(config.max_slope), float(config.max_step)
    )
    return _grow_kernel(
        low,
        candidate,
        seeds.astype(np.int64),
        side,
        cell,
        rng,
        float(config.max_step),
        float(config.max_slope),
        float(config.max_carry),
        float(config.max_carry_up),
        blind,
    )


@numba.njit(cache=True, nogil=True)
def _cell_lowest(xyz: F32, cell: float, rng: float, side: int) -> tuple[I64, F64, I64]:  # pragma: no cover
    """Per point its cell (-1 off the grid); per cell the second lowest z (the lowest when alone)."""
    n = xyz.shape[0]
    cell_of = np.full(n, -1, dtype=np.int64)
    low1 = np.full(side * side, np.inf)
    low2 = np.full(side * side, np.inf)
    count = np.zeros(side * side, dtype=np.int64)
    inv = 1.0 / cell
    for i in range(n):
        ix = math.floor((xyz[i, 0] + rng) * inv)
        iy = math.floor((xyz[i, 1] + rng) * inv)
        if ix < 0 or iy < 0 or ix >= side or iy >= side:
            continue
        c = ix * side + iy
        cell_of[i] = c
        count[c] += 1
        z = float(xyz[i, 2])
        if z < low1[c]:
            low2[c] = low1[c]
            low1[c] = z
        elif z < low2[c]:
            low2[c] = z
    for c in range(side * side):
        if count[c] == 1:
            low2[c] = low1[c]
    return cell_of, low2, count


@numba.njit(cache=True, nogil=True)
def _below_floor(  # pragma: no cover - compiled
    low: F64, count: I64, side: int, cell: float, radius: int, max_slope: float, max_step: float
) -> npt.NDArray[np.bool_]:
    """Cells whose lowest point may be ground: at most `max_step` above the local floor, the lowest
    of the neighbours' lowest points within `radius` cells raised by `max_slope` times their distance.
    The side of a parked car is not, however the cells chain up it."""
    out = np.zeros(side * side, dtype=np.bool_)
    for ix in range(side):
        for iy in range(side):
            c = ix * side + iy
            if count[c] == 0:
                continue
            floor = low[c]
            for dx in range(-radius, radius + 1):
                jx = ix + dx
                if jx < 0 or jx >= side:
                    continue
                for dy in range(-radius, radius + 1):
                    jy = iy + dy
                    if jy < 0 or jy >= side:
                        continue
                    q = jx * side + jy
                    if count[q] == 0:
                        continue
                    floor = min(floor, low[q] + max_slope * cell * math.sqrt(dx * dx + dy * dy))
            out[c] = low[c] <= floor + max_step
    return out


@numba.njit(cache=True, nogil=True)
def _heap_push(keys: F64, items: I64, size: int, key: float, item: int) -> int:  # pragma: no cover
    i = size
    keys[i] = key
    items[i] = item
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        items[parent], items[i] = items[i], items[parent]
        i = parent
    return size + 1


@numba.njit(cache=True, nogil=True)
def _heap_pop(keys: F64, items: I64, size: int) -> int:  # pragma: no cover
    """Moves the smallest entry to index `size - 1`; returns the new size."""
    last = size - 1
    keys[0], keys[last] = keys[last], keys[0]
    items[0], items[last] = items[last], items[0]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= last:
            break
        child = left
        if left + 1 < last and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[i], keys[child] = keys[child], keys[i]
        items[i], items[child] = items[child], items[i]
        i = child
    return last


@numba.njit(cache=True, nogil=True)
def _grow_kernel(  # pragma: no cover - compiled
    low: F64,
    candidate: npt.NDArray[np.bool_],
    seeds: I64,
    side: int,
    cell: float,
    rng: float,
    max_step: float,
    max_slope: float,
    max_carry: float,
    max_carry_up: float,
    blind: float,
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Priority-queue region growing (see the module docstring, step 3). Cells closer than `blind`
    are never accepted as observed ground.

    Queue entries are candidate (cell, height, carried distance) triples, keyed by carried
    distance first and range second; a cell is settled when first popped.
    """
    total = side * side
    ground = np.zeros(total)
    carried = np.zeros(total)
    observed = np.zeros(total, dtype=np.bool_)
    settled = np.zeros(total, dtype=np.bool_)
    best = np.full(total, np.inf)  # smallest key queued per cell: a worse candidate is not queued
    cap = 8 * total + seeds.shape[0] + 1
    keys = np.empty(cap)
    items = np.empty(cap, dtype=np.int64)
    cand_h = np.empty(cap)
    cand_d = np.empty(cap)
    cand_obs = np.empty(cap, dtype=np.bool_)
    cells_of = np.empty(cap, dtype=np.int64)
    size = 0
    num = 0  # candidates made
    big = 1.0e4

    for s in range(seeds.shape[0]):
        c = seeds[s]
        cells_of[num] = c
        cand_h[num] = low[c]
        cand_d[num] = 0.0
        cand_obs[num] = True
        cx = -rng + (c // side + 0.5) * cell
        cy = -rng + (c % side + 0.5) * cell
        best[c] = math.hypot(cx, cy)
        size = _heap_push(keys, items, size, best[c], num)
        num += 1

    while size > 0:
        size = _heap_pop(keys, items, size)
        k = items[size]
        c = cells_of[k]
        if settled[c]:
            continue
        settled[c] = True
        ground[c] = cand_h[k]
        carried[c] = cand_d[k]
        observed[c] = cand_obs[k]
        ix = c // side
        iy = c % side
        for dx in range(-1, 2):
            for dy in range(-1, 2):
                if dx == 0 and dy == 0:
                    continue
                jx = ix + dx
                jy = iy + dy
                if jx < 0 or jy < 0 or jx >= side or jy >= side:
                    continue
                nb = jx * side + jy
                if settled[nb] or num >= cap:
                    continue
                cx = -rng + (jx + 0.5) * cell
                cy = -rng + (jy + 0.5) * cell
                r = math.hypot(cx, cy)
                if r > rng and not candidate[nb]:  # the corners beyond the range: nothing to carry to
                    continue
                step = cell * (1.4142135623730951 if dx != 0 and dy != 0 else 1.0)
                rise = low[nb] - ground[c]
                d = min(carried[c] + step, max_carry if rise < 0.0 else max_carry_up)
                accept = candidate[nb] and r >= blind and abs(rise) <= max_step + max_slope * d
                d_new = 0.0 if accept else carried[c] + step
                key = d_new * big + r
                if key >= best[nb]:
                    continue
                best[nb] = key
                cells_of[num] = nb
                cand_h[num] = low[nb] if accept else ground[c]
                cand_d[num] = d_new
                cand_obs[num] = accept
                size = _heap_push(keys, items, size, key, num)
                num += 1
    return ground, observed


@numba.njit(cache=True, nogil=True)
def _ground_moments(  # pragma: no cover - compiled
    xyz: F32, cell_of: I64, ground: F64, side: int, cell: float, rng: float, band: float
) -> F64:
    """(side * side, 9) moments of each cell's points within `band` of its grown ground."""
    m = np.zeros((side * side, _NUM_MOMENTS))
    for i in range(xyz.shape[0]):
        c = cell_of[i]
        if c < 0:
            continue
        z = float(xyz[i, 2])
        if abs(z - ground[c]) > band:
            continue
        x = float(xyz[i, 0]) - (-rng + (c // side + 0.5) * cell)
        y = float(xyz[i, 1]) - (-rng + (c % side + 0.5) * cell)
        m[c, 0] += 1.0
        m[c, 1] += x
        m[c, 2] += y
        m[c, 3] += z
        m[c, 4] += x * x
        m[c, 5] += x * y
        m[c, 6] += y * y
        m[c, 7] += x * z
        m[c, 8] += y * z
    return m


@numba.njit(cache=True, nogil=True)
def _solve_plane(  # pragma: no cover - compiled
    m: F64, side: int, ix: int, iy: int, cell: float, use: npt.NDArray[np.bool_]
) -> tuple[float, float, float, float, float]:
    """Least-squares z = a x + b y + c over the 3x3 cells around (ix, iy) flagged in `use` (3, 3),
    x, y from the centre cell's centre: (a, b, c, mean z, weight); a = b = NaN when degenerate."""
    n = sx = sy = sz = sxx = sxy = syy = sxz = syz = 0.0
    for dx in range(-1, 2):
        jx = ix + dx
        if jx < 0 or jx >= side:
            continue
        for dy in range(-1, 2):
            jy = iy + dy
            if jy < 0 or jy >= side or not use[dx + 1, dy + 1]:
                continue
            q = jx * side + jy
            w = m[q, 0]
            if w == 0.0:
                continue
            ox = dx * cell  # the neighbour's centre relative to this cell's
            oy = dy * cell
            n += w
            sx += m[q, 1] + w * ox
            sy += m[q, 2] + w * oy
            sz += m[q, 3]
            sxx += m[q, 4] + 2.0 * ox * m[q, 1] + w * ox * ox
            sxy += m[q, 5] + ox * m[q, 2] + oy * m[q, 1] + w * ox * oy
            syy += m[q, 6] + 2.0 * oy * m[q, 2] + w * oy * oy
            sxz += m[q, 7] + ox * m[q, 3]
            syz += m[q, 8] + oy * m[q, 3]
    if n == 0.0:
        return np.nan, np.nan, 0.0, 0.0, 0.0
    mean_z = sz / n
    # Normal equations of z = a x + b y + c, solved by Cramer's rule.
    a11, a12, a13, a22, a23, a33 = sxx, sxy, sx, syy, sy, n
    det = a11 * (a22 * a33 - a23 * a23) - a12 * (a12 * a33 - a23 * a13) + a13 * (a12 * a23 - a22 * a13)
    if abs(det) < 1e-6 * n * n * n:
        return np.nan, np.nan, mean_z, mean_z, n
    a = (sxz * (a22 * a33 - a23 * a23) - a12 * (syz * a33 - a23 * sz) + a13 * (syz * a23 - a22 * sz)) / det
    b = (a11 * (syz * a33 - a23 * sz) - sxz * (a12 * a33 - a23 * a13) + a13 * (a12 * sz - syz * a13)) / det
    c = (a11 * (a22 * sz - syz * a23) - a12 * (a12 * sz - syz * a13) + sxz * (a12 * a23 - a22 * a13)) / det
    return a, b, c, mean_z, n


@numba.njit(cache=True, nogil=True)
def _fit_planes(  # pragma: no cover - compiled
    m: F64, ground: F64, side: int, cell: float, min_points: int, max_slope: float, tolerance: float
) -> F64:
    """(side * side, 3) plane a, b, c per cell from its and its neighbours' moments, leaving out the
    neighbours whose centroid is further than `tolerance` from the cell's own plane (the other side
    of a kerb; the 3x3 plane stands in for the cell's own where the cell has too few points)."""
    planes = np.zeros((side * side, 3))
    use = np.zeros((3, 3), dtype=np.bool_)
    for ix in range(side):
        for iy in range(side):
            c = ix * side + iy
            planes[c, 2] = ground[c]
            # The reference: the cell's own plane, or the 3x3 one where the cell alone is too thin.
            use[:, :] = False
            use[1, 1] = True
            a, b, c0, mean_z, n = _solve_plane(m, side, ix, iy, cell, use)
            use[:, :] = True
            if n < min_points or np.isnan(a):
                a, b, c0, mean_z, n = _solve_plane(m, side, ix, iy, cell, use)
                if n < min_points:
                    continue
            if not np.isnan(a):
                for dx in range(-1, 2):
                    jx = ix + dx
                    for dy in range(-1, 2):
                        jy = iy + dy
                        if (dx == 0 and dy == 0) or jx < 0 or jy < 0 or jx >= side or jy >= side:
                            continue
                        q = jx * side + jy
                        if m[q, 0] == 0.0:
                            continue
                        mx = m[q, 1] / m[q, 0] + dx * cell
                        my = m[q, 2] / m[q, 0] + dy * cell
                        if abs(m[q, 3] / m[q, 0] - (a * mx + b * my + c0)) > tolerance:
                            use[dx + 1, dy + 1] = False
                a, b, c0, mean_z, n = _solve_plane(m, side, ix, iy, cell, use)
                if n < min_points:
                    continue
            if np.isnan(a) or math.hypot(a, b) > max_slope:
                planes[c, 2] = mean_z
                continue
            planes[c, 0] = a
            planes[c, 1] = b
            planes[c, 2] = c0
    return planes


@numba.njit(cache=True, nogil=True)
def _heights(  # pragma: no cover - compiled
    xyz: F32, cell_of: I64, planes: F64, side: int, cell: float, rng: float
) -> F32:
    out = np.full(xyz.shape[0], np.nan, dtype=np.float32)
    for i in range(xyz.shape[0]):
        c = cell_of[i]
        if c < 0:
            continue
        x = float(xyz[i, 0]) - (-rng + (c // side + 0.5) * cell)
        y = float(xyz[i, 1]) - (-rng + (c % side + 0.5) * cell)
        out[i] = xyz[i, 2] - (planes[c, 0] * x + planes[c, 1] * y + planes[c, 2])
    return out


@numba.njit(cache=True, nogil=True)
def _ground_at(xy: F64, planes: F64, cell: float, rng: float) -> F64:  # pragma: no cover - compiled
    side = planes.shape[0]
    out = np.full(xy.shape[0], np.nan)
    for i in range(xy.shape[0]):
        ix = math.floor((xy[i, 0] + rng) / cell)
        iy = math.floor((xy[i, 1] + rng) / cell)
        if ix < 0 or iy < 0 or ix >= side or iy >= side:
            continue
        x = xy[i, 0] - (-rng + (ix + 0.5) * cell)
        y = xy[i, 1] - (-rng + (iy + 0.5) * cell)
        out[i] = planes[ix, iy, 0] * x + planes[ix, iy, 1] * y + planes[ix, iy, 2]
    return out
