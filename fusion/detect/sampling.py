"""How long an object can be at most, from where the LiDAR's rays went past it (free space).

A spinning LiDAR samples a surface only where its rays are: each ring (beam) fires once per column,
`azimuth_step` apart. A car's side seen at a grazing angle theta is hit every ~ range * step /
sin(theta) along its length, so the points' extent along the length (`Boxes.measured`) is a lower
bound that falls short of the car by up to one such spacing at each end whose end face the sensor
does not see. What closes the interval from above is the next sample of the same ring beyond the
car's last point at that end:

    sensor ── ring r, column c   ──▶ the car's last point at this end
           ── ring r, column c+1 ──▶ a return clearly farther than the car's side line, or none at all:
                                      the ray passed the car, so the car ends before that ray crosses
                                      the side line
           ── ring r, column c+1 ──▶ a return nearer than the side line: occluded, nothing known
           ── ring r, column c+1 ──▶ a return at the side line: the car goes on (or a neighbour touches
                                      it), nothing known

At an end whose end face the sensor sees (the sensor beyond that end along the length), the face's
points fix that end: the bound there is the points' extreme, when the face was seen (points on it away
from the side's corner), else nothing is known. Every ring that hit the car near an end must show free
space beyond it (the largest crossing is that end's bound: a car is longer at some heights than at
others); one occluded ring and the end is unbounded. The length's upper bound is the distance between
the two ends' bounds, +inf where either is unknown (`length_upper_bounds`).

Where a ring's last two points at a far end do not lie on the box's side along its length (a corner,
an end face, a box fitted across the object), that end is unknown: the ray's crossing is taken with
the line through those two points, the side as that ring saw it, not with the fitted box's side (at a
grazing angle a degree of the box's yaw moves the crossing by decimetres).

Everything in the sensor frame of one (deskewed) sweep; the sensor at the origin. The sweep's points are
filed once by (ring, azimuth cell of one step), O(N), no sort (a spinning LiDAR has about one point a
cell); then one numba pass over the boxes reads each box's cells in its azimuth window, ring by ring,
and the cells just beyond its far ends. Clouds whose rings times cells exceed `_MAX_CELLS` (not a
spinning LiDAR's structure) get no bounds.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_MARGIN = 0.5  # m: a return this much farther than the side line passed it (nearer: it occluded it)
_INSIDE = 0.1  # m: points this far outside a box still count as the object's ...
_ABOVE_GROUND = 0.2  # ... from this high above its bottom (the ground; `ClusterConfig.min_height`)
_END_ZONE = 0.5  # m: the rings with points this near an end are the ones that must show free space there
_FACE_OFF_SIDE = 0.4  # m: an end face is seen when points lie on it at least this far from the side line
_MAX_CELLS = 1 << 23  # rings x azimuth cells beyond this: not a spinning LiDAR's structure, no bounds
_ON_TOP = 0.15  # m: points this near the box's top are on its roof, not its side
_ON_SIDE = 0.2  # m: a ring's last two points at a far end lie this near the box's side ...
_ALONG_TAN = math.tan(math.radians(10.0))  # ... and the line through them within 10 degrees of its length


def length_upper_bounds(
    xyz: F32,
    ring: npt.NDArray[np.uint16] | None,
    boxes: F64,
    azimuth_step: float,
    wanted: npt.NDArray[np.bool_] | None = None,
) -> F64:
    """(K,) the longest each of `boxes` (K, 7, sensor frame) can be, by the free space beyond its
    points (module docstring); +inf where unknown: no ring or azimuth step (`azimuth_step` 0), fewer
    than 3 points in the box, an end occluded or not seen, or not `wanted` (K,) (default: all).
    xyz: (N, 3) the sweep's points; ring: (N,) their beam indices."""
    out = np.full(boxes.shape[0], np.inf)
    todo = np.arange(boxes.shape[0]) if wanted is None else np.flatnonzero(wanted)
    if ring is None or azimuth_step <= 0.0 or not todo.size or not xyz.shape[0]:
        return out
    pts = np.ascontiguousarray(xyz, dtype=np.float64)
    az = np.arctan2(pts[:, 1], pts[:, 0])
    head, after = _cells(az, np.ascontiguousarray(ring), float(azimuth_step))
    if not head.shape[0]:  # not a spinning LiDAR's rings and columns
        return out
    _bounds_kernel(
        pts, az, head, after, np.ascontiguousarray(boxes, dtype=np.float64), todo.astype(np.int64),
        float(azimuth_step), out,
    )  # fmt: skip
    return out


@numba.njit(cache=True, nogil=True)
def _cells(
    az: F64, ring: npt.NDArray[np.uint16], step: float
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:  # pragma: no cover - compiled
    """The points by (ring, azimuth cell of one `step`): head (R, C) the first point of each cell
    (-1: none), R the rings present (in ring order), C = 2 pi / step cells; after (N,) the next point
    of the same cell (-1: none). (0, 0) head when R x C exceeds `_MAX_CELLS`."""
    columns = math.floor(2.0 * math.pi / step) + 1
    index = np.full(int(ring.max()) + 1, -1, np.int64)
    for p in range(ring.shape[0]):
        index[ring[p]] = 0
    n_rings = 0
    for r in range(index.shape[0]):
        if index[r] == 0:
            index[r] = n_rings
            n_rings += 1
    after = np.full(az.shape[0], -1, np.int32)
    if n_rings * columns > _MAX_CELLS:
        return np.full((0, 0), -1, np.int32), after
    head = np.full((n_rings, columns), -1, np.int32)
    for p in range(az.shape[0]):
        r, col = index[ring[p]], min(int((az[p] + math.pi) / step), columns - 1)
        after[p] = head[r, col]
        head[r, col] = p
    return head, after


@numba.njit(cache=True, nogil=True)
def _wrap(a: float) -> float:  # pragma: no cover - compiled
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@numba.njit(cache=True, nogil=True)
def _column(a: float, step: float, columns: int) -> int:  # pragma: no cover - compiled
    """The azimuth cell (`_cells`) of azimuth a in [-pi, pi]."""
    return min(int((a + math.pi) / step), columns - 1)


@numba.njit(cache=True, nogil=True)
def _window(a: float, b: float) -> tuple[float, float, float, float, int]:  # pragma: no cover - compiled
    """The azimuth interval from a to b (a <= b, b - a < 2 pi) as one or two intervals within [-pi, pi]."""
    lo, hi = _wrap(a), _wrap(b)
    if lo <= hi:
        return lo, hi, 0.0, 0.0, 1
    return lo, math.pi, -math.pi, hi, 2


@numba.njit(cache=True, nogil=True)
def _bounds_kernel(
    pts: F64,
    az: F64,
    head: npt.NDArray[np.int32],
    after: npt.NDArray[np.int32],
    boxes: F64,
    todo: I64,
    step: float,
    out: F64,
) -> None:  # pragma: no cover - compiled
    n_rings = head.shape[0]
    cap = 4096
    idx = np.empty(cap, np.int64)
    u = np.empty(cap)
    v = np.empty(cap)
    rings = np.empty(cap, np.int64)
    for k in todo:
        x, y, z = boxes[k, 0], boxes[k, 1], boxes[k, 2]
        length, width, height, yaw = boxes[k, 3], boxes[k, 4], boxes[k, 5], boxes[k, 6]
        c, s = math.cos(yaw), math.sin(yaw)
        # the box's azimuth window (its corners, grown by the points' allowance)
        centre = math.atan2(y, x)
        reach = 0.5 * math.hypot(length, width) + _INSIDE
        dist = math.hypot(x, y)
        if dist <= reach + 0.5:
            continue  # the sensor is at or in the box
        lo_rel, hi_rel = 0.0, 0.0
        for a_sign in (-1.0, 1.0):
            for b_sign in (-1.0, 1.0):
                hl, hw = a_sign * (0.5 * length + _INSIDE), b_sign * (0.5 * width + _INSIDE)
                rel = _wrap(math.atan2(y + hl * s + hw * c, x + hl * c - hw * s) - centre)
                lo_rel, hi_rel = min(lo_rel, rel), max(hi_rel, rel)
        w1lo, w1hi, w2lo, w2hi, nw = _window(centre + lo_rel - step, centre + hi_rel + step)
        # the box's points, ring by ring (so grouped by ring, in ring order)
        n = 0
        columns = head.shape[1]
        for r in range(n_rings):
            for w in range(nw):
                a_lo, a_hi = (w1lo, w1hi) if w == 0 else (w2lo, w2hi)
                for col in range(_column(a_lo, step, columns), _column(a_hi, step, columns) + 1):
                    p = head[r, col]
                    while p >= 0 and n < cap:
                        q, p = p, after[p]
                        if not a_lo <= az[q] <= a_hi:
                            continue
                        du, dv = pts[q, 0] - x, pts[q, 1] - y
                        pu, pv = du * c + dv * s, -du * s + dv * c
                        if (
                            abs(pu) <= 0.5 * length + _INSIDE
                            and abs(pv) <= 0.5 * width + _INSIDE
                            and pts[q, 2] >= z - 0.5 * height + _ABOVE_GROUND
                            and pts[q, 2] <= z + 0.5 * height + _INSIDE
                        ):
                            idx[n], u[n], v[n], rings[n] = q, pu, pv, r
                            n += 1
        if n < 3:
            continue
        # the sensor (the origin) in the box's frame, and the side line facing it
        su, sv = -x * c - y * s, x * s - y * c
        side = math.copysign(0.5 * width, sv)
        total = 0.0
        for e in (1.0, -1.0):
            extreme = -math.inf
            for i in range(n):
                extreme = max(extreme, e * u[i])
            if su * e > 0.5 * length:  # the sensor is beyond this end: its end face shows it, if seen
                seen = 0
                for i in range(n):
                    if e * u[i] >= extreme - _INSIDE and abs(v[i] - side) >= _FACE_OFF_SIDE:
                        seen += 1
                end = extreme if seen >= 2 else math.inf
            elif abs(sv) <= 0.5 * width:  # the sensor faces an end, no side: this far end is not seen
                end = math.inf
            else:
                end = _far_end(pts, az, head, after, idx, u, v, rings, n, e, extreme,
                               side, z + 0.5 * height, x, y, c, s, step)  # fmt: skip
            total += end
            if not math.isfinite(total):
                break
        out[k] = total


@numba.njit(cache=True, nogil=True)
def _far_end(
    pts: F64,
    az: F64,
    head: npt.NDArray[np.int32],
    after: npt.NDArray[np.int32],
    idx: I64,
    u: F64,
    v: F64,
    rings: I64,
    n: int,
    e: float,
    extreme: float,
    side: float,
    top: float,
    x: float,
    y: float,
    c: float,
    s: float,
    step: float,
) -> float:  # pragma: no cover - compiled
    """The furthest (e * u, box frame) that the end `e` of the object (its n points idx, u, v, rings,
    grouped by ring) can reach by the free space beyond its side; +inf when a ring that hit it near
    that end shows none there: every such ring's next ray must have passed the object. Points on the
    object's top (within `_ON_TOP` of the `top` z: a beam from above on its roof) say nothing about
    its side and are passed over."""
    crossing = -math.inf
    i = 0
    while i < n:
        r = rings[i]
        j = i
        best, second = -1, -1  # the ring's last two points at this end, below the top
        while j < n and rings[j] == r:
            if pts[idx[j], 2] >= top - _ON_TOP:
                pass  # on the roof (or its edge): says nothing about the side
            elif best < 0 or e * u[j] > e * u[best]:
                second, best = best, j
            elif second < 0 or e * u[j] > e * u[second]:
                second = j
            j += 1
        i = j
        if best < 0 or e * u[best] < extreme - _END_ZONE:
            continue  # this ring does not reach this end below the top
        if second < 0 or abs(v[best] - side) > _ON_SIDE or abs(v[second] - side) > _ON_SIDE:
            return math.inf  # the ring's last points are not on the side: the end is not seen
        along, across = abs(u[best] - u[second]), abs(v[best] - v[second])
        if along <= 0.0 or across > along * _ALONG_TAN:  # not a line along the side (a corner, a face)
            return math.inf
        ok, px, py = _free_crossing(pts, az, head, after, r, idx[second], idx[best], step)
        if not ok:
            return math.inf
        crossing = max(crossing, e * ((px - x) * c + (py - y) * s))
    return max(crossing, extreme) if math.isfinite(crossing) else math.inf


@numba.njit(cache=True, nogil=True)
def _free_crossing(
    pts: F64,
    az: F64,
    head: npt.NDArray[np.int32],
    after: npt.NDArray[np.int32],
    r: int,
    before: int,
    last: int,
    step: float,
) -> tuple[bool, float, float]:  # pragma: no cover - compiled
    """Where (x, y) the next ray of ring `r` beyond the point `last` crosses the line through `before`
    and `last` (the ring's last two points on the object's side), when that ray passed the object (a
    return clearly farther than that line, or none within 2.5 azimuth steps); (False, ...) when it hit
    something at or before the line, or the line is not along the ray's way."""
    a0 = az[last]
    sigma = math.copysign(1.0, _wrap(a0 - az[before]))
    a, b = a0 + sigma * 0.5 * step, a0 + sigma * 2.5 * step
    w1lo, w1hi, w2lo, w2hi, nw = _window(min(a, b), max(a, b))
    nearest, hit = math.inf, -1
    columns = head.shape[1]
    for w in range(nw):
        a_lo, a_hi = (w1lo, w1hi) if w == 0 else (w2lo, w2hi)
        for col in range(_column(a_lo, step, columns), _column(a_hi, step, columns) + 1):
            p = head[r, col]
            while p >= 0:
                if a_lo <= az[p] <= a_hi:
                    d = sigma * _wrap(az[p] - a0)
                    if d < nearest:
                        nearest, hit = d, p
                p = after[p]
    a_next = a0 + sigma * step if hit < 0 else az[hit]
    # the ray (t cos a, t sin a) against the line p + k (q - p)
    px, py = pts[before, 0], pts[before, 1]
    qx, qy = pts[last, 0] - px, pts[last, 1] - py
    ca, sa = math.cos(a_next), math.sin(a_next)
    det = ca * qy - sa * qx
    if abs(det) < 1e-9:
        return False, 0.0, 0.0
    t = (px * qy - py * qx) / det
    k = (px * sa - py * ca) / det
    if t <= 0.0 or k <= 1.0:  # behind the sensor, or not beyond the last point
        return False, 0.0, 0.0
    if hit >= 0 and math.hypot(pts[hit, 0], pts[hit, 1]) < t + _MARGIN:  # a return at or before the line
        return False, 0.0, 0.0
    return True, t * ca, t * sa
