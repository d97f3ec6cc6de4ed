"""The simulator's ray caster (numba): ground height field, oriented boxes, cylinders and spheres.

One kernel serves the LiDAR (one ray per beam and column, each column at its own instant) and the
cameras (one ray per pixel, one instant): a ray carries a `slot` that picks the set of actor poses
it sees, so moving actors are where they are at that ray's capture time.

The ground is a height field over the world (x, y) around a circular road (centre (cx, cy),
centreline radius R). With `d` the lateral offset from the centreline (positive to the left,
towards the circle's centre) and `s` the arc length along it::

    h(x, y) = -crown d^2                      |d| <  curb_d   (the carriageway, crowned)
            = -crown curb_d^2 + curb_h        |d| >= curb_d   (kerb, pavement, verge)
            + grade_x x + grade_y y + amp sin(kx x) cos(ky y) + z0

Rays march along the height field with steps no surface can be skipped over (its slope is at most
`lipschitz`; the one upward jump, the kerb, is found by the sign change it leaves behind) and
bisect the crossing.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit, prange


class Material(IntEnum):
    """What a ray hit (`NONE`: nothing within range, i.e. the sky)."""

    NONE = 0
    ASPHALT = 1
    MARKING = 2
    CURB = 3
    SIDEWALK = 4
    GRASS = 5
    BUILDING = 6
    POLE = 7
    TRUNK = 8
    FOLIAGE = 9
    ACTOR = 10


# Plain ints for the kernels (numba freezes module globals as compile-time constants).
_M_ASPHALT: Final = int(Material.ASPHALT)
_M_MARKING: Final = int(Material.MARKING)
_M_CURB: Final = int(Material.CURB)
_M_SIDEWALK: Final = int(Material.SIDEWALK)
_M_GRASS: Final = int(Material.GRASS)
_M_ACTOR: Final = int(Material.ACTOR)


# Layout of the ground parameter vector (float64) the kernels take.
G_CX: Final = 0
G_CY: Final = 1
G_RADIUS: Final = 2
G_GRADE_X: Final = 3
G_GRADE_Y: Final = 4
G_CROWN: Final = 5
G_CURB_D: Final = 6
G_CURB_H: Final = 7
G_AMP: Final = 8
G_KX: Final = 9
G_KY: Final = 10
G_Z0: Final = 11
G_VERGE_D: Final = 12  # |d| beyond which the pavement gives way to grass
G_LANE_W: Final = 13  # dashed lane lines at |d| = lane width
G_EDGE_D: Final = 14  # solid edge lines at |d| = edge_d
G_CROSS_S: Final = 15  # arc length of the zebra crossing's centre
G_CROSS_HALF: Final = 16  # half its length along the road
G_LIPSCHITZ: Final = 17  # bound on |grad (h - plane)| away from the kerb
G_RES_LO: Final = 18  # bounds of h - (grade_x x + grade_y y + z0): the crown, kerb and undulation
G_RES_HI: Final = 19
NUM_GROUND_PARAMS: Final = 20

_LINE_HALF: Final = 0.075  # half width of painted lines, metres
_DASH: Final = 3.0  # dash length; period is 3 * _DASH
_MARCH_MIN_STEP: Final = 0.01
_MARCH_REL_STEP: Final = 0.0015
_BISECTIONS: Final = 80


@njit(cache=True)
def _lateral(x: float, y: float, g: npt.NDArray[np.float64]) -> float:
    return float(g[G_RADIUS] - math.hypot(x - g[G_CX], y - g[G_CY]))


@njit(cache=True)
def _arc_length(x: float, y: float, g: npt.NDArray[np.float64]) -> float:
    phi = math.atan2(y - g[G_CY], x - g[G_CX]) + 0.5 * math.pi
    if phi >= math.pi:
        phi -= 2.0 * math.pi
    return float(g[G_RADIUS] * phi)


@njit(cache=True)
def _height(x: float, y: float, g: npt.NDArray[np.float64]) -> float:
    d: float = _lateral(x, y, g)
    edge = g[G_CURB_D]
    h = -g[G_CROWN] * d * d if abs(d) < edge else -g[G_CROWN] * edge * edge + g[G_CURB_H]
    return float(
        h
        + g[G_GRADE_X] * x
        + g[G_GRADE_Y] * y
        + g[G_AMP] * math.sin(g[G_KX] * x) * math.cos(g[G_KY] * y)
        + g[G_Z0]
    )


@njit(cache=True)
def _ground_material(x: float, y: float, g: npt.NDArray[np.float64]) -> int:
    d: float = _lateral(x, y, g)
    ad = abs(d)
    if ad >= g[G_CURB_D]:
        return _M_SIDEWALK if ad < g[G_VERGE_D] else _M_GRASS
    s: float = _arc_length(x, y, g)
    if 0.06 < ad < 0.18:  # double centre line
        return _M_MARKING
    if abs(ad - g[G_EDGE_D]) < _LINE_HALF:
        return _M_MARKING
    if abs(ad - g[G_LANE_W]) < _LINE_HALF and (s % (3.0 * _DASH)) < _DASH:
        return _M_MARKING
    if abs(s - g[G_CROSS_S]) < g[G_CROSS_HALF] and ad < g[G_EDGE_D] and (math.floor(d / 0.6) % 2) == 0:
        return _M_MARKING
    return _M_ASPHALT


@njit(cache=True)
def ground_height(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], g: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Ground height h(x, y) at world points. x, y: (N,) float64 -> (N,) float64."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = _height(x[i], y[i], g)
    return out


@njit(cache=True)
def ground_material(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], g: npt.NDArray[np.float64]
) -> npt.NDArray[np.uint8]:
    """Ground material (`Material`) at world points. x, y: (N,) float64 -> (N,) uint8."""
    out = np.empty(x.shape[0], dtype=np.uint8)
    for i in range(x.shape[0]):
        out[i] = _ground_material(x[i], y[i], g)
    return out


@njit(cache=True)
def _slab(
    o: float, d: float, h: float, tn: float, tf: float, axis: int, k: int
) -> tuple[float, float, int, bool]:
    """One slab of the box test: narrows (tn, tf); False when the ray misses the slab."""
    if abs(d) < 1e-15:
        return tn, tf, axis, abs(o) <= h
    t1 = (-h - o) / d
    t2 = (h - o) / d
    if t1 > t2:
        t1, t2 = t2, t1
    if t1 > tn:
        tn = t1
        axis = k
    tf = min(tf, t2)
    return tn, tf, axis, tn <= tf


@njit(cache=True)
def _hit_box(  # noqa: PLR0911  (early exits keep the kernel readable)
    ox: float,
    oy: float,
    oz: float,
    dx: float,
    dy: float,
    dz: float,
    q: npt.NDArray[np.float64],
    t_min: float,
    t_best: float,
) -> tuple[float, float, float, float]:
    """Entry distance into an oriented box and the world normal there; inf: no hit.

    q: x, y, z centre, half length, half width, half height, cos(yaw), sin(yaw), bounding radius.
    """
    px = q[0] - ox
    py = q[1] - oy
    pz = q[2] - oz
    b = px * dx + py * dy + pz * dz
    r = q[8]
    if b + r < t_min or b - r >= t_best or px * px + py * py + pz * pz - b * b > r * r:
        return np.inf, 0.0, 0.0, 0.0
    c = q[6]
    s = q[7]
    lox = -(c * px + s * py)
    loy = -(-s * px + c * py)
    loz = -pz
    ldx = c * dx + s * dy
    ldy = -s * dx + c * dy
    tn = -np.inf
    tf = np.inf
    axis = -1
    tn, tf, axis, ok = _slab(lox, ldx, q[3], tn, tf, axis, 0)
    if not ok:
        return np.inf, 0.0, 0.0, 0.0
    tn, tf, axis, ok = _slab(loy, ldy, q[4], tn, tf, axis, 1)
    if not ok:
        return np.inf, 0.0, 0.0, 0.0
    tn, tf, axis, ok = _slab(loz, dz, q[5], tn, tf, axis, 2)
    if not ok or tn < t_min or tn >= t_best:
        return np.inf, 0.0, 0.0, 0.0
    if axis == 0:
        sign = -1.0 if ldx > 0.0 else 1.0
        return tn, sign * c, sign * s, 0.0
    if axis == 1:
        sign = -1.0 if ldy > 0.0 else 1.0
        return tn, -sign * s, sign * c, 0.0
    return tn, 0.0, 0.0, (-1.0 if dz > 0.0 else 1.0)


@njit(cache=True)
def _hit_cylinder(
    ox: float,
    oy: float,
    oz: float,
    dx: float,
    dy: float,
    dz: float,
    cx: float,
    cy: float,
    z0: float,
    z1: float,
    r: float,
    t_min: float,
    t_best: float,
) -> tuple[float, float, float, float]:
    """Entry distance into a vertical cylinder (side or top cap) and the normal there; inf: no hit."""
    fx = ox - cx
    fy = oy - cy
    a = dx * dx + dy * dy
    if a > 1e-18:
        b = fx * dx + fy * dy
        c = fx * fx + fy * fy - r * r
        disc = b * b - a * c
        if disc >= 0.0:
            t = (-b - math.sqrt(disc)) / a
            if t_min <= t < t_best:
                z = oz + t * dz
                if z0 <= z <= z1:
                    nx = (fx + t * dx) / r
                    ny = (fy + t * dy) / r
                    return t, nx, ny, 0.0
    if dz < 0.0:
        t = (z1 - oz) / dz
        if t_min <= t < t_best:
            hx = fx + t * dx
            hy = fy + t * dy
            if hx * hx + hy * hy <= r * r:
                return t, 0.0, 0.0, 1.0
    return np.inf, 0.0, 0.0, 0.0


@njit(cache=True)
def _hit_sphere(
    ox: float,
    oy: float,
    oz: float,
    dx: float,
    dy: float,
    dz: float,
    cx: float,
    cy: float,
    cz: float,
    r: float,
    t_min: float,
    t_best: float,
) -> tuple[float, float, float, float]:
    fx = ox - cx
    fy = oy - cy
    fz = oz - cz
    b = fx * dx + fy * dy + fz * dz
    c = fx * fx + fy * fy + fz * fz - r * r
    disc = b * b - c  # |d| = 1
    if disc < 0.0:
        return np.inf, 0.0, 0.0, 0.0
    t = -b - math.sqrt(disc)
    if t < t_min or t >= t_best:
        return np.inf, 0.0, 0.0, 0.0
    return t, (fx + t * dx) / r, (fy + t * dy) / r, (fz + t * dz) / r


@njit(cache=True)
def _above(
    ox: float, oy: float, oz: float, dx: float, dy: float, dz: float, t: float, g: npt.NDArray[np.float64]
) -> float:
    """Height of the ray's point at distance t above the ground (negative: below)."""
    return oz + t * dz - _height(ox + t * dx, oy + t * dy, g)


@njit(cache=True)
def _march_ground(
    ox: float,
    oy: float,
    oz: float,
    dx: float,
    dy: float,
    dz: float,
    g: npt.NDArray[np.float64],
    t_min: float,
    t_end: float,
) -> tuple[float, bool]:
    """First crossing of the height field along the ray in [t_min, t_end): (t, on the kerb face).

    Steps of f / (descent rate + lipschitz) never jump over ground that rises smoothly; a
    secant step is taken instead when it is longer (it overshoots the predicted crossing a
    little, so the crossing is bracketed). The bracket is then closed by regula falsi
    (Illinois), which also converges onto the kerb's vertical face.
    """
    # Above the ground's plane the height field stays within [res_lo, res_hi]: the ray can only
    # meet it while its height over the plane (a + b t) is inside that band.
    a = oz - g[G_GRADE_X] * ox - g[G_GRADE_Y] * oy - g[G_Z0]
    b = dz - g[G_GRADE_X] * dx - g[G_GRADE_Y] * dy
    t = t_min
    if b < 0.0:
        t = max(t, (a - g[G_RES_HI]) / -b - 1e-6)
        t_end = min(t_end, (a - g[G_RES_LO]) / -b + 1e-6)
    elif a + b * t > g[G_RES_HI]:
        return np.inf, False
    if t >= t_end:
        return np.inf, False
    f = _above(ox, oy, oz, dx, dy, dz, t, g)
    if f <= 0.0:
        if t > t_min:  # numerically at the band's edge: close the bracket from t_min
            f_min = _above(ox, oy, oz, dx, dy, dz, t_min, g)
            if f_min > 0.0:
                return _refine(ox, oy, oz, dx, dy, dz, g, t_min, f_min, t, f)
        return np.inf, False
    rate = max(-b, 0.0) + g[G_LIPSCHITZ] * math.sqrt(dx * dx + dy * dy)
    t_prev = t
    f_prev = f
    while t < t_end:
        min_step = _MARCH_MIN_STEP + _MARCH_REL_STEP * t
        step = f / rate if rate > 0.0 else 1e9
        if f < f_prev:  # descending: aim just past where the secant meets the ground
            secant = f * (t - t_prev) / (f_prev - f)
            step = max(step, 1.02 * secant + min_step)
        step = max(step, min_step)
        t_next = min(t + step, t_end)
        f_next = _above(ox, oy, oz, dx, dy, dz, t_next, g)
        if f_next <= 0.0:
            return _refine(ox, oy, oz, dx, dy, dz, g, t, f, t_next, f_next)
        t_prev, f_prev = t, f
        t, f = t_next, f_next
    return np.inf, False


@njit(cache=True)
def _refine(
    ox: float,
    oy: float,
    oz: float,
    dx: float,
    dy: float,
    dz: float,
    g: npt.NDArray[np.float64],
    lo: float,
    f_lo: float,
    hi: float,
    f_hi: float,
) -> tuple[float, bool]:
    """Close a bracket (f_lo > 0 >= f_hi) on the crossing by the Illinois method."""
    side = 0
    for _ in range(_BISECTIONS):
        if hi - lo <= 1e-9 * (1.0 + hi):
            break
        mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        if not lo < mid < hi:
            mid = 0.5 * (lo + hi)
        f_mid = _above(ox, oy, oz, dx, dy, dz, mid, g)
        if f_mid > 0.0:
            lo, f_lo = mid, f_mid
            if side == 1:
                f_hi *= 0.5
            side = 1
        else:
            hi, f_hi = mid, f_mid
            if f_mid == 0.0:
                break
            if side == -1:
                f_lo *= 0.5
            side = -1
    h_lo = _height(ox + lo * dx, oy + lo * dy, g)
    h_hi = _height(ox + hi * dx, oy + hi * dy, g)
    return hi, abs(h_hi - h_lo) > 0.5 * g[G_CURB_H]


def cast_rays(
    origins: npt.NDArray[np.float64],
    dirs: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int64],
    group_offsets: npt.NDArray[np.int64],
    actor_pose: npt.NDArray[np.float64],
    actor_half: npt.NDArray[np.float64],
    boxes: npt.NDArray[np.float64],
    box_material: npt.NDArray[np.uint8],
    cylinders: npt.NDArray[np.float64],
    cylinder_material: npt.NDArray[np.uint8],
    spheres: npt.NDArray[np.float64],
    sphere_material: npt.NDArray[np.uint8],
    ground: npt.NDArray[np.float64],
    t_min: float,
    t_max: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Cast rays against the scene; the nearest hit of each ray.

    origins: (R, 3) world; dirs: (R, 3) unit vectors; slot: (R,) int64 index into actor_pose's first axis.
    group_offsets: (K + 1,) int64, 0 .. R: rays [offsets[k], offsets[k + 1]) share their origin and
        slot (a LiDAR column, a tile of pixels); objects outside a group's cone of rays are skipped.
    actor_pose: (G, A, 4) x, y, z (box centre), yaw of each actor at each slot's instant.
    actor_half: (A, 3) half length, half width, half height.
    boxes: (S, 7) x, y, z centre, half length, half width, half height, yaw; box_material: (S,) uint8.
    cylinders: (C, 5) x, y, z bottom, z top, radius; spheres: (P, 4) x, y, z, radius; materials (C,), (P,).
    ground: (NUM_GROUND_PARAMS,) the height field (module docstring).
    Returns t: (R,) float64 distance (inf: no hit in [t_min, t_max)), material: (R,) uint8 `Material`,
    actor: (R,) int32 actor index or -1, normal: (R, 3) float32 unit surface normal (world).
    """
    half = np.asarray(actor_half, dtype=np.float64).reshape(-1, 3)
    pose = np.asarray(actor_pose, dtype=np.float64)
    packed = np.empty((*pose.shape[:2], 9))
    packed[..., :3] = pose[..., :3]
    packed[..., 3:6] = half[None, :, :]
    packed[..., 6] = np.cos(pose[..., 3])
    packed[..., 7] = np.sin(pose[..., 3])
    packed[..., 8] = np.linalg.norm(half, axis=1)[None, :]
    box = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    packed_boxes = np.empty((box.shape[0], 9))
    packed_boxes[:, :6] = box[:, :6]
    packed_boxes[:, 6] = np.cos(box[:, 6])
    packed_boxes[:, 7] = np.sin(box[:, 6])
    packed_boxes[:, 8] = np.linalg.norm(box[:, 3:6], axis=1)
    cyl = np.ascontiguousarray(cylinders, dtype=np.float64).reshape(-1, 5)
    cyl_bound = np.stack(
        [
            cyl[:, 0],
            cyl[:, 1],
            0.5 * (cyl[:, 2] + cyl[:, 3]),
            np.hypot(cyl[:, 4], 0.5 * (cyl[:, 3] - cyl[:, 2])),
        ],
        axis=1,
    )
    offsets = np.ascontiguousarray(group_offsets, dtype=np.int64)
    n = len(origins)
    if (
        offsets.ndim != 1
        or offsets.size < 1
        or offsets[0] != 0
        or offsets[-1] != n
        or (np.diff(offsets) < 0).any()
    ):
        raise ValueError(f"group_offsets must rise from 0 to the number of rays ({n})")
    result: tuple[
        npt.NDArray[np.float64], npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.float32]
    ] = _cast_kernel(
        np.ascontiguousarray(origins, dtype=np.float64),
        np.ascontiguousarray(dirs, dtype=np.float64),
        np.ascontiguousarray(slot, dtype=np.int64),
        offsets,
        packed,
        packed_boxes,
        np.ascontiguousarray(box_material, dtype=np.uint8),
        cyl,
        cyl_bound,
        np.ascontiguousarray(cylinder_material, dtype=np.uint8),
        np.ascontiguousarray(spheres, dtype=np.float64).reshape(-1, 4),
        np.ascontiguousarray(sphere_material, dtype=np.uint8),
        np.ascontiguousarray(ground, dtype=np.float64),
        float(t_min),
        float(t_max),
    )
    return result


@njit(cache=True)
def _in_cone(
    ox: float,
    oy: float,
    oz: float,
    ax: float,
    ay: float,
    az: float,
    cos_half: float,
    sin_half: float,
    cx: float,
    cy: float,
    cz: float,
    r: float,
    t_max: float,
) -> bool:
    """Whether a sphere (c, r) may meet a cone of rays from o around unit axis a (half angle given)."""
    vx = cx - ox
    vy = cy - oy
    vz = cz - oz
    dist = math.sqrt(vx * vx + vy * vy + vz * vz)
    if dist <= r:
        return True
    if dist - r > t_max:
        return False
    cos_v = (vx * ax + vy * ay + vz * az) / dist
    sin_v = math.sqrt(max(0.0, 1.0 - cos_v * cos_v))
    # angle(v, a) - half <= asin(r / dist)  <=>  sin(angle - half) <= r / dist (or angle <= half)
    sin_d = sin_v * cos_half - cos_v * sin_half
    # (angle <= half gives sin_d <= 0; a very wide miss may pass too: conservative, never wrong)
    return sin_d <= r / dist


@njit(cache=True, parallel=True)
def _cast_kernel(
    origins: npt.NDArray[np.float64],
    dirs: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int64],
    group_offsets: npt.NDArray[np.int64],
    actor_pose: npt.NDArray[np.float64],
    boxes: npt.NDArray[np.float64],
    box_material: npt.NDArray[np.uint8],
    cylinders: npt.NDArray[np.float64],
    cylinder_bound: npt.NDArray[np.float64],
    cylinder_material: npt.NDArray[np.uint8],
    spheres: npt.NDArray[np.float64],
    sphere_material: npt.NDArray[np.uint8],
    ground: npt.NDArray[np.float64],
    t_min: float,
    t_max: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """`cast_rays` with boxes packed as (..., 9): centre, half sizes, cos, sin, bounding radius."""
    n = origins.shape[0]
    t_out = np.full(n, np.inf)
    material = np.zeros(n, dtype=np.uint8)
    actor = np.full(n, -1, dtype=np.int32)
    normal = np.zeros((n, 3), dtype=np.float32)
    num_actors = actor_pose.shape[1]
    num_groups = group_offsets.shape[0] - 1
    for k in prange(num_groups):
        first = group_offsets[k]
        last = group_offsets[k + 1]
        if first == last:
            continue
        ox, oy, oz = origins[first, 0], origins[first, 1], origins[first, 2]
        g_slot = slot[first]
        # the group's cone: mean direction and the widest ray around it
        ax = 0.0
        ay = 0.0
        az = 0.0
        for i in range(first, last):
            ax += dirs[i, 0]
            ay += dirs[i, 1]
            az += dirs[i, 2]
        norm = math.sqrt(ax * ax + ay * ay + az * az)
        if norm < 1e-9:
            ax, ay, az, cos_half = 1.0, 0.0, 0.0, -1.0
        else:
            ax /= norm
            ay /= norm
            az /= norm
            cos_half = 1.0
            for i in range(first, last):
                cos_half = min(cos_half, dirs[i, 0] * ax + dirs[i, 1] * ay + dirs[i, 2] * az)
        cos_half = max(-1.0, cos_half - 1e-9)
        sin_half = math.sqrt(max(0.0, 1.0 - cos_half * cos_half))
        if cos_half <= 0.0:  # a cone wider than a half space: test everything
            cos_half, sin_half = -1.0, 0.0
        pick_a = np.empty(num_actors, dtype=np.int64)
        n_a = 0
        for a in range(num_actors):
            q = actor_pose[g_slot, a]
            if cos_half < 0.0 or _in_cone(
                ox, oy, oz, ax, ay, az, cos_half, sin_half, q[0], q[1], q[2], q[8], t_max
            ):
                pick_a[n_a] = a
                n_a += 1
        pick_b = np.empty(boxes.shape[0], dtype=np.int64)
        n_b = 0
        for b in range(boxes.shape[0]):
            q = boxes[b]
            if cos_half < 0.0 or _in_cone(
                ox, oy, oz, ax, ay, az, cos_half, sin_half, q[0], q[1], q[2], q[8], t_max
            ):
                pick_b[n_b] = b
                n_b += 1
        pick_c = np.empty(cylinders.shape[0], dtype=np.int64)
        n_c = 0
        for c in range(cylinders.shape[0]):
            q = cylinder_bound[c]
            if cos_half < 0.0 or _in_cone(
                ox, oy, oz, ax, ay, az, cos_half, sin_half, q[0], q[1], q[2], q[3], t_max
            ):
                pick_c[n_c] = c
                n_c += 1
        pick_s = np.empty(spheres.shape[0], dtype=np.int64)
        n_s = 0
        for c in range(spheres.shape[0]):
            q = spheres[c]
            if cos_half < 0.0 or _in_cone(
                ox, oy, oz, ax, ay, az, cos_half, sin_half, q[0], q[1], q[2], q[3], t_max
            ):
                pick_s[n_s] = c
                n_s += 1
        for i in range(first, last):
            dx, dy, dz = dirs[i, 0], dirs[i, 1], dirs[i, 2]
            best = t_max
            mat = 0
            who = -1
            nx = 0.0
            ny = 0.0
            nz = 0.0
            for j in range(n_a):
                a = pick_a[j]
                t, hx, hy, hz = _hit_box(ox, oy, oz, dx, dy, dz, actor_pose[g_slot, a], t_min, best)
                if t < best:
                    best, mat, who, nx, ny, nz = t, _M_ACTOR, a, hx, hy, hz
            for j in range(n_b):
                b = pick_b[j]
                t, hx, hy, hz = _hit_box(ox, oy, oz, dx, dy, dz, boxes[b], t_min, best)
                if t < best:
                    best, mat, who, nx, ny, nz = t, box_material[b], -1, hx, hy, hz
            for j in range(n_c):
                q = cylinders[pick_c[j]]
                t, hx, hy, hz = _hit_cylinder(
                    ox, oy, oz, dx, dy, dz, q[0], q[1], q[2], q[3], q[4], t_min, best
                )
                if t < best:
                    best, mat, who, nx, ny, nz = t, cylinder_material[pick_c[j]], -1, hx, hy, hz
            for j in range(n_s):
                q = spheres[pick_s[j]]
                t, hx, hy, hz = _hit_sphere(ox, oy, oz, dx, dy, dz, q[0], q[1], q[2], q[3], t_min, best)
                if t < best:
                    best, mat, who, nx, ny, nz = t, sphere_material[pick_s[j]], -1, hx, hy, hz
            t, kerb = _march_ground(ox, oy, oz, dx, dy, dz, ground, t_min, best)
            if t < best:
                best = t
                who = -1
                px = ox + t * dx
                py = oy + t * dy
                if kerb:
                    mat = _M_CURB
                    rx = px - ground[G_CX]
                    ry = py - ground[G_CY]
                    rn = math.hypot(rx, ry)
                    sign = 1.0 if _lateral(px, py, ground) > 0.0 else -1.0
                    nx, ny, nz = sign * rx / rn, sign * ry / rn, 0.0
                else:
                    mat = _ground_material(px, py, ground)
                    e = 0.05
                    gx = (_height(px + e, py, ground) - _height(px - e, py, ground)) / (2.0 * e)
                    gy = (_height(px, py + e, ground) - _height(px, py - e, ground)) / (2.0 * e)
                    norm = math.sqrt(gx * gx + gy * gy + 1.0)
                    nx, ny, nz = -gx / norm, -gy / norm, 1.0 / norm
            if best < t_max:
                t_out[i] = best
                material[i] = mat
                actor[i] = who
                normal[i, 0] = nx
                normal[i, 1] = ny
                normal[i, 2] = nz
    return t_out, material, actor, normal
