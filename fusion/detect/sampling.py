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

Everything in the sensor frame of one (deskewed) sweep; the sensor at the origin.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

_MARGIN = 0.5  # m: a return this much farther than the side line passed it (nearer: it occluded it)
_INSIDE = 0.1  # m: points this far outside a box still count as the object's
_END_ZONE = 0.5  # m: the rings with points this near an end are the ones that must show free space there
_FACE_OFF_SIDE = 0.4  # m: an end face is seen when points lie on it at least this far from the side line
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
    sweep = _Sweep(xyz, ring, azimuth_step)
    for k in todo.tolist():
        out[k] = _bound(sweep, boxes[k])
    return out


class _Sweep:
    """A sweep's points indexed for `length_upper_bounds`: per point its azimuth and horizontal range,
    and the points sorted by (ring, azimuth) with each ring's slice."""

    def __init__(self, xyz: F32, ring: npt.NDArray[np.uint16], step: float) -> None:
        self.pts = np.asarray(xyz, np.float64)
        self.ring = ring
        self.step = step
        self.az = np.arctan2(self.pts[:, 1], self.pts[:, 0])
        self.rng = np.hypot(self.pts[:, 0], self.pts[:, 1])
        self.order = np.lexsort((self.az, ring))
        self.az_sorted = self.az[self.order]
        self.bounds = np.searchsorted(ring[self.order], np.arange(int(ring.max()) + 2))


def _bound(sweep: _Sweep, box: F64) -> float:
    """The longest `box` (7,) can be (module docstring); +inf when unknown."""
    pts = sweep.pts
    x, y, z, length, width, height, yaw = (float(v) for v in box)
    c, s = math.cos(yaw), math.sin(yaw)
    reach = 0.5 * math.hypot(length, width) + _INSIDE
    near = np.flatnonzero((np.abs(pts[:, 0] - x) <= reach) & (np.abs(pts[:, 1] - y) <= reach))
    du, dv = pts[near, 0] - x, pts[near, 1] - y
    u, v = du * c + dv * s, -du * s + dv * c
    inside = (
        (np.abs(u) <= 0.5 * length + _INSIDE)
        & (np.abs(v) <= 0.5 * width + _INSIDE)
        & (np.abs(pts[near, 2] - z) <= 0.5 * height + _INSIDE)
    )
    if int(inside.sum()) < 3:
        return math.inf
    idx, u, v = near[inside], u[inside], v[inside]
    # the sensor (the origin) in the box's frame, and the side line facing it
    su, sv = -x * c - y * s, x * s - y * c
    side = math.copysign(0.5 * width, sv)
    total = 0.0
    for e in (1.0, -1.0):
        extreme = float(np.max(e * u))  # e * u of the last point at this end
        if su * e > 0.5 * length:  # the sensor is beyond this end: its end face shows it, if seen
            seen = (e * u >= extreme - _INSIDE) & (np.abs(v - side) >= _FACE_OFF_SIDE)
            end = extreme if int(seen.sum()) >= 2 else math.inf
        elif abs(sv) <= 0.5 * width:  # the sensor faces an end, no side: this far end is not seen
            end = math.inf
        else:
            end = _far_end(sweep, idx, u, v, e, extreme, side, (x, y, c, s))
        if not math.isfinite(end):
            return math.inf
        total += end
    return total


def _far_end(
    sweep: _Sweep, idx: npt.NDArray[np.intp], u: F64, v: F64, e: float, extreme: float, side: float,
    frame: tuple[float, float, float, float],
) -> float:  # fmt: skip
    """The furthest (e * u, box frame (x, y, cos yaw, sin yaw)) that the end `e` of the object whose
    points are `idx` (u, v in the box frame) can reach by the free space beyond its side, +inf when a
    ring that hit it near that end shows none: every such ring's next ray must pass the object."""
    x, y, c, s = frame
    zone = e * u >= extreme - _END_ZONE
    on_side = np.abs(v - side) <= _ON_SIDE
    rings = sweep.ring[idx]
    crossing = -math.inf
    for r in np.unique(rings[zone]).tolist():
        mine = np.flatnonzero(rings == r)
        at = mine[np.argsort(e * u[mine])[-2:]]  # this ring's last two points at this end
        if at.size < 2 or e * u[at[1]] < extreme - _END_ZONE or not on_side[at].all():
            return math.inf  # the ring's last points are not on the side: the end is not seen
        along, across = abs(float(u[at[1]] - u[at[0]])), abs(float(v[at[1]] - v[at[0]]))
        if along <= 0.0 or across > along * _ALONG_TAN:  # not a line along the side (a corner, a face)
            return math.inf
        got = _free_crossing(sweep, r, int(idx[at[0]]), int(idx[at[1]]))
        if got is None:
            return math.inf
        crossing = max(crossing, e * ((got[0] - x) * c + (got[1] - y) * s))
    return max(crossing, extreme) if math.isfinite(crossing) else math.inf


def _free_crossing(sweep: _Sweep, r: int, before: int, last: int) -> tuple[float, float] | None:
    """Where (x, y) the next ray of ring `r` beyond the point `last` crosses the line through `before`
    and `last` (the ring's last two points on the object's side), when that ray passed the object (a
    return clearly farther than that line, or none); None when it hit something at or before the line,
    or the line is not along the ray's way."""
    az, rng, pts, step = sweep.az, sweep.rng, sweep.pts, sweep.step
    a0 = float(az[last])
    sigma = math.copysign(1.0, _wrap(a0 - float(az[before])))
    lo, hi = int(sweep.bounds[r]), int(sweep.bounds[r + 1])
    az_sorted = sweep.az_sorted
    nxt = None
    for a_lo, a_hi in _windows(a0, sigma, step):
        first = lo + int(np.searchsorted(az_sorted[lo:hi], a_lo))
        end = lo + int(np.searchsorted(az_sorted[lo:hi], a_hi, side="right"))
        for j in range(first, end):
            d = sigma * _wrap(float(az_sorted[j]) - a0)
            if nxt is None or d < nxt[0]:
                nxt = (d, int(sweep.order[j]))
    a_next = a0 + sigma * step if nxt is None else float(az[nxt[1]])
    # the ray (t cos a, t sin a) against the line p + k (q - p)
    px, py = pts[before, 0], pts[before, 1]
    qx, qy = pts[last, 0] - px, pts[last, 1] - py
    ca, sa = math.cos(a_next), math.sin(a_next)
    det = ca * qy - sa * qx
    if abs(det) < 1e-9:
        return None
    t = (px * qy - py * qx) / det
    k = (px * sa - py * ca) / det
    if t <= 0.0 or k <= 1.0:  # behind the sensor, or not beyond the last point
        return None
    if nxt is not None and rng[nxt[1]] < t + _MARGIN:  # a return at or before the line
        return None
    return t * ca, t * sa


def _windows(a0: float, sigma: float, step: float) -> list[tuple[float, float]]:
    """Azimuth intervals (within [-pi, pi]) from 0.5 to 2.5 steps beyond `a0` in direction `sigma`."""
    a, b = a0 + sigma * 0.5 * step, a0 + sigma * 2.5 * step
    lo, hi = min(a, b), max(a, b)
    lo, hi = _wrap(lo), _wrap(hi)
    if lo <= hi:
        return [(lo, hi)]
    return [(lo, math.pi), (-math.pi, hi)]


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi
