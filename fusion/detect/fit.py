"""An oriented rectangle per cluster, from its bird's-eye-view points.

A LiDAR sees one or two sides of a car: an L. The search-based L-shape fitting of Zhang et al.
("Efficient L-Shape Fitting for Vehicle Detection Using Laser Scanners", IV 2017) tries headings
theta in [0, pi/2) and keeps the one whose rectangle (the points' extent along e1 = (cos, sin) and
e2 = (-sin, cos)) has its points closest to its edges, by the closeness criterion:

    c1 = P e1, c2 = P e2
    d1 = the nearer edge's distances along e1: (max c1 - c1) or (c1 - min c1), whichever has the
         smaller norm; d2 likewise along e2
    closeness = sum_i 1 / max(min(d1_i, d2_i), d0)

A coarse pass over `coarse_step` then a fine pass of `fine_step` around its best. The norms come
from the per-angle sums of c and c^2, so each angle costs two passes over the points. Clusters
smaller than `lshape_min_size` (pedestrians, poles), where an L is noise, take the rectangle of
minimum area instead. Large clusters are fitted on an evenly strided subset of `max_fit_points`.

Each cluster's shape: the rectangle (centre, theta, extents along e1 and e2) and its heights:
lowest and highest point above the ground, the highest z, and the lowest ground z under it and where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from fusion.detect.cluster import Clusters

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Columns of the per-cluster shape array.
(S_CX, S_CY, S_THETA, S_EXT1, S_EXT2, S_BOTTOM, S_TOP, S_FLOOR, S_COUNT, S_SPREAD, S_BASE) = range(11)
S_FLOOR_X, S_FLOOR_Y, S_ZTOP = range(11, 14)
NUM_SHAPE = 14


@dataclass(frozen=True)
class FitConfig:
    """How rectangles are fitted. Angles in degrees, lengths in metres."""

    coarse_step: float = 1.0  # heading step of the first pass over [0, 90)
    fine_step: float = 0.1  # heading step of the second pass, within one coarse step of the best
    min_distance: float = 0.01  # d0 of the closeness criterion
    lshape_min_size: float = 1.2  # clusters whose bird's-eye-view diagonal is smaller: minimum area
    max_fit_points: int = 384  # larger clusters are fitted on an evenly strided subset this size
    max_size: float = 20.0  # clusters with a longer diagonal are not fitted (walls, hedges)
    base_band: float = 0.8  # the base: points up to this above the cluster's lowest point


@dataclass(frozen=True, eq=False)
class Shapes:
    """Per cluster (C of them): `values` (C, NUM_SHAPE) float64 with columns S_*:

    cx, cy: the rectangle's centre; theta: heading of e1 in [0, pi/2) radians; ext1, ext2: the
    points' extent along e1 and e2; bottom, top: lowest and highest point above the ground;
    floor, floor_x, floor_y: the lowest ground z under a point and that point's x, y; ztop: the
    highest point's z; count: number of points; spread: the points'
    extent along the line of sight over their extent across it (rough depth of the view);
    base: the longer extent (along e1 or e2) of the base, the points within `base_band` of the
    lowest (a tree's trunk under a wide canopy has a narrow base, a car not).
    `fitted` (C,) bool: False for clusters larger than `FitConfig.max_size` (values undefined).
    """

    values: F64
    fitted: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.values.shape[0])


def fit_clusters(xyz: F32, height: F32, clusters: Clusters, config: FitConfig = FitConfig()) -> Shapes:
    """Fit a rectangle to every cluster. xyz: (N, 3) float32; height: (N,) float32 above the ground."""
    values, fitted = _fit_all(
        xyz,
        height,
        clusters.order,
        clusters.offsets,
        math.radians(config.coarse_step),
        math.radians(config.fine_step),
        float(config.min_distance),
        float(config.lshape_min_size),
        int(config.max_fit_points),
        float(config.max_size),
        float(config.base_band),
    )
    return Shapes(values=values, fitted=fitted)


def lshape_heading(xy: npt.ArrayLike, config: FitConfig = FitConfig()) -> float:
    """Heading in [0, pi/2) of the L-shape fit (closeness criterion) to bird's-eye-view points (M, 2)."""
    pts = np.ascontiguousarray(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
    if pts.shape[0] < 2:
        return 0.0
    return float(
        _search(
            pts,
            math.radians(config.coarse_step),
            math.radians(config.fine_step),
            float(config.min_distance),
            True,
        )
    )


@numba.njit(cache=True, nogil=True)
def _criterion(pts: F64, theta: float, d0: float, closeness: bool) -> float:  # pragma: no cover
    """The score of heading theta, larger is better: closeness, or minus the area."""
    c = math.cos(theta)
    s = math.sin(theta)
    n = pts.shape[0]
    min1 = min2 = np.inf
    max1 = max2 = -np.inf
    s1 = s2 = q1 = q2 = 0.0
    for i in range(n):
        a = pts[i, 0] * c + pts[i, 1] * s
        b = -pts[i, 0] * s + pts[i, 1] * c
        min1 = min(min1, a)
        max1 = max(max1, a)
        min2 = min(min2, b)
        max2 = max(max2, b)
        s1 += a
        s2 += b
        q1 += a * a
        q2 += b * b
    if not closeness:
        return -(max1 - min1) * (max2 - min2)
    # |max - c|^2 summed = n max^2 - 2 max sum(c) + sum(c^2); likewise for min.
    use_max1 = n * max1 * max1 - 2.0 * max1 * s1 < n * min1 * min1 - 2.0 * min1 * s1
    use_max2 = n * max2 * max2 - 2.0 * max2 * s2 < n * min2 * min2 - 2.0 * min2 * s2
    beta = 0.0
    for i in range(n):
        a = pts[i, 0] * c + pts[i, 1] * s
        b = -pts[i, 0] * s + pts[i, 1] * c
        d1 = max1 - a if use_max1 else a - min1
        d2 = max2 - b if use_max2 else b - min2
        beta += 1.0 / max(min(d1, d2), d0)
    return beta


@numba.njit(cache=True, nogil=True)
def _search(pts: F64, coarse: float, fine: float, d0: float, closeness: bool) -> float:  # pragma: no cover
    half_pi = 0.5 * math.pi
    best = -np.inf
    best_theta = 0.0
    steps = max(1, round(half_pi / coarse))
    for k in range(steps):
        theta = k * half_pi / steps
        v = _criterion(pts, theta, d0, closeness)
        if v > best:
            best = v
            best_theta = theta
    centre = best_theta
    span = half_pi / steps
    k_fine = max(1, math.ceil(span / fine))
    for k in range(-k_fine, k_fine + 1):
        if k == 0:
            continue
        theta = centre + k * span / k_fine
        v = _criterion(pts, theta, d0, closeness)
        if v > best:
            best = v
            best_theta = theta
    return best_theta % half_pi


@numba.njit(cache=True, nogil=True)
def _fit_all(  # pragma: no cover - compiled
    xyz: F32,
    height: F32,
    order: I64,
    offsets: I64,
    coarse: float,
    fine: float,
    d0: float,
    lshape_min_size: float,
    max_points: int,
    max_size: float,
    base_band: float,
) -> tuple[F64, npt.NDArray[np.bool_]]:
    num = offsets.shape[0] - 1
    out = np.zeros((num, NUM_SHAPE))
    fitted = np.zeros(num, dtype=np.bool_)
    buf = np.empty((max_points, 2))
    for k in range(num):
        lo = offsets[k]
        hi = offsets[k + 1]
        n = hi - lo
        xmin = ymin = np.inf
        xmax = ymax = -np.inf
        bottom = np.inf
        top = -np.inf
        floor = np.inf
        fx = fy = 0.0
        ztop = -np.inf
        mx = my = 0.0
        for j in range(lo, hi):
            i = order[j]
            x = float(xyz[i, 0])
            y = float(xyz[i, 1])
            h = float(height[i])
            xmin = min(xmin, x)
            xmax = max(xmax, x)
            ymin = min(ymin, y)
            ymax = max(ymax, y)
            bottom = min(bottom, h)
            top = max(top, h)
            if float(xyz[i, 2]) - h < floor:
                floor, fx, fy = float(xyz[i, 2]) - h, x, y
            ztop = max(ztop, float(xyz[i, 2]))
            mx += x
            my += y
        out[k, S_BOTTOM] = bottom
        out[k, S_TOP] = top
        out[k, S_FLOOR] = floor
        out[k, S_FLOOR_X] = fx
        out[k, S_FLOOR_Y] = fy
        out[k, S_ZTOP] = ztop
        out[k, S_COUNT] = n
        diag = math.hypot(xmax - xmin, ymax - ymin)
        if diag > max_size:
            continue
        fitted[k] = True
        mx /= n
        my /= n
        stride = max(1, (n + max_points - 1) // max_points)
        m = 0
        for j in range(lo, hi, stride):
            i = order[j]
            buf[m, 0] = float(xyz[i, 0]) - mx  # centred: better conditioned sums
            buf[m, 1] = float(xyz[i, 1]) - my
            m += 1
        pts = buf[:m]
        theta = _search(pts, coarse, fine, d0, diag >= lshape_min_size) if m >= 2 else 0.0
        c = math.cos(theta)
        s = math.sin(theta)
        min1 = min2 = bmin1 = bmin2 = np.inf
        max1 = max2 = bmax1 = bmax2 = -np.inf
        for j in range(lo, hi):  # the extent from every point, not just the subset
            i = order[j]
            x = float(xyz[i, 0]) - mx
            y = float(xyz[i, 1]) - my
            a = x * c + y * s
            b = -x * s + y * c
            min1 = min(min1, a)
            max1 = max(max1, a)
            min2 = min(min2, b)
            max2 = max(max2, b)
            if height[i] <= bottom + base_band:
                bmin1 = min(bmin1, a)
                bmax1 = max(bmax1, a)
                bmin2 = min(bmin2, b)
                bmax2 = max(bmax2, b)
        out[k, S_BASE] = max(bmax1 - bmin1, bmax2 - bmin2)
        a0 = 0.5 * (min1 + max1)
        b0 = 0.5 * (min2 + max2)
        cx = mx + a0 * c - b0 * s
        cy = my + a0 * s + b0 * c
        out[k, S_CX] = cx
        out[k, S_CY] = cy
        out[k, S_THETA] = theta
        out[k, S_EXT1] = max1 - min1
        out[k, S_EXT2] = max2 - min2
        # Depth of the view: extent along the line of sight over extent across it.
        r = math.hypot(cx, cy)
        if r > 1e-6:
            ux = cx / r
            uy = cy / r
            dmin = wmin = np.inf
            dmax = wmax = -np.inf
            for j in range(lo, hi):
                i = order[j]
                x = float(xyz[i, 0])
                y = float(xyz[i, 1])
                d = x * ux + y * uy
                w = -x * uy + y * ux
                dmin = min(dmin, d)
                dmax = max(dmax, d)
                wmin = min(wmin, w)
                wmax = max(wmax, w)
            out[k, S_SPREAD] = (dmax - dmin) / max(wmax - wmin, 0.05)
    return out, fitted
