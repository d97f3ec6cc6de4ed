"""Ground truth of a simulated log, in the labels layout of shared/CONTRACT.md.

One row per actor per sweep, for the actors the sweep actually hit (`num_points` >= `min_points`,
1 by default, as KITTI and nuScenes keep boxes with at least one point): an actor hidden behind
another, or out of range, has no row in that sweep.

- Box: the actor's exact box at the sweep's header stamp, in the lidar frame at that stamp
  (centre at the geometric centre, yaw wrapped to [-pi, pi)); `world_*` the same box in `odom`;
  `velocity_*` its exact world velocity.
- `num_points`: the sweep's points the ray caster attributes to that actor. Points are captured
  over the whole sweep and are not motion compensated, so a moving actor's points do not all
  fall inside its box at the stamp; they do lie on its box at their own capture time.
- `camera_boxes`: per camera, the 2D extent of the actor's box as that camera's image shows it:
  the box at the instant the camera fired (when the sweep crossed its optical axis), seen from
  the camera's pose at that instant, clipped against the near plane, projected through the lens
  distortion (edges sampled densely, so curved edges count) and clipped to the image. Occlusion
  is ignored (an amodal box); cameras where no part of the box is in the image are absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from calib.camera import Camera
from fusion.simulate.camera_render import camera_from_world
from fusion.simulate.geometry import apply, inverse, wrap_angle, yaw_of
from fusion.simulate.lidar import Sweep
from fusion.simulate.rig import Rig
from fusion.simulate.scene import Scene

F64 = npt.NDArray[np.float64]

NEAR_PLANE: Final = 0.01  # metres: boxes are clipped to z >= NEAR_PLANE in the camera frame
EDGE_SAMPLES: Final = 32  # points per clipped polygon edge before projecting

# Box corners (local, unit half sizes) and the six faces as corner loops.
_CORNERS: Final = np.array(
    [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]],
    dtype=np.float64,
)
_FACES: Final = np.array(
    [[0, 1, 2, 3], [4, 5, 6, 7], [1, 2, 6, 5], [0, 3, 7, 4], [3, 2, 6, 7], [0, 1, 5, 4]], dtype=np.int64
)


@dataclass(frozen=True, eq=False)
class FrameTruth:
    """Ground truth of one sweep; M rows, K camera boxes.

    actor: (M,) int64 index into Scene.actors.  boxes: (M, 7) lidar frame x y z l w h yaw.
    world_boxes: (M, 4) world x y z yaw.  velocity: (M, 2) world vx vy.  num_points: (M,) int64.
    box_row: (K,) int64 row of each camera box; box_camera: (K,) camera names;
    box_extent: (K, 4) float64 x_min y_min x_max y_max pixels.
    """

    frame_index: int
    stamp_ns: int
    actor: npt.NDArray[np.int64]
    track_id: npt.NDArray[np.int64]
    category: tuple[str, ...]
    boxes: F64
    world_boxes: F64
    velocity: F64
    num_points: npt.NDArray[np.int64]
    box_row: npt.NDArray[np.int64]
    box_camera: tuple[str, ...]
    box_extent: F64


def box_corners(states: F64, half: F64) -> F64:
    """World corners (M, 8, 3) of boxes with states (M, >=4) x y z yaw and half sizes (M, 3)."""
    local = _CORNERS[None, :, :] * half[:, None, :]
    c = np.cos(states[:, 3])[:, None]
    s = np.sin(states[:, 3])[:, None]
    x = states[:, 0:1] + c * local[..., 0] - s * local[..., 1]
    y = states[:, 1:2] + s * local[..., 0] + c * local[..., 1]
    z = states[:, 2:3] + local[..., 2]
    return np.stack([x, y, z], axis=-1)


def frame_truth(scene: Scene, rig: Rig, sweep: Sweep, *, min_points: int = 1) -> FrameTruth:
    """The ground-truth rows of one sweep (see the module docstring)."""
    hit = sweep.actor[sweep.actor >= 0]
    counts = np.bincount(hit, minlength=len(scene.actors))
    actors = np.flatnonzero(counts >= max(min_points, 1)).astype(np.int64)
    stamp = np.array([sweep.stamp_ns], dtype=np.int64)
    states = scene.actor_states(stamp, actors.tolist())[0]  # (M, 6)
    half = scene.actor_half_sizes()[actors]
    world_from_lidar = scene.world_from_base(stamp)[0] @ rig.lidar.base_from_lidar()
    centre = apply(inverse(world_from_lidar), states[:, :3])
    yaw = wrap_angle(states[:, 3] - yaw_of(world_from_lidar))
    boxes = np.concatenate([centre, 2.0 * half, yaw[:, None]], axis=1)
    world = np.concatenate([states[:, :3], wrap_angle(states[:, 3])[:, None]], axis=1)

    rows: list[npt.NDArray[np.int64]] = []
    names: list[str] = []
    extents: list[F64] = []
    for mount in rig.cameras:  # a loop over cameras; each call is vectorised over boxes
        t_cam = sweep.stamp_ns + rig.trigger_offset_ns(mount)
        at_trigger = scene.actor_states(np.array([t_cam]), actors.tolist())[0]
        corners = apply(camera_from_world(scene, mount, t_cam)[None, None], box_corners(at_trigger, half))
        ext, visible = project_boxes(mount.camera, corners)
        rows.append(np.flatnonzero(visible).astype(np.int64))
        names.extend([mount.name] * int(visible.sum()))
        extents.append(ext[visible])
    return FrameTruth(
        frame_index=sweep.index,
        stamp_ns=sweep.stamp_ns,
        actor=actors,
        track_id=np.array([scene.actors[a].track_id for a in actors], dtype=np.int64),
        category=tuple(scene.actors[a].category for a in actors),
        boxes=boxes,
        world_boxes=world,
        velocity=states[:, 4:6].copy(),
        num_points=counts[actors].astype(np.int64),
        box_row=np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
        box_camera=tuple(names),
        box_extent=np.concatenate(extents) if extents else np.zeros((0, 4)),
    )


def project_boxes(camera: Camera, corners_camera: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """2D extents of boxes in a camera's image, clipped to it.

    corners_camera: (M, 8, 3) box corners in the camera's optical frame (order of `box_corners`).
    Returns extents (M, 4) x_min, y_min, x_max, y_max pixels (NaN where not visible) and
    visible (M,) bool.
    """
    m = corners_camera.shape[0]
    if m == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=bool)
    samples, polygon, owner = _face_samples(
        np.ascontiguousarray(corners_camera, dtype=np.float64), _frustum(camera), EDGE_SAMPLES, _FACES
    )
    uv = camera.project(samples)[0] if len(samples) else np.zeros((0, 2))
    rect = np.array([-0.5, -0.5, camera.width - 0.5, camera.height - 0.5])
    ext = _polygon_extents(np.ascontiguousarray(uv), polygon, owner, m, rect)
    visible = np.isfinite(ext).all(axis=1) & (ext[:, 2] > ext[:, 0]) & (ext[:, 3] > ext[:, 1])
    ext[~visible] = np.nan
    return ext, visible


def _frustum(camera: Camera) -> F64:
    """Planes (5, 4) a, b, c, d (inside: a x + b y + c z + d >= 0) around everything the image sees."""
    w, h = camera.width, camera.height
    u = np.arange(-0.5, w, 1.0)
    v = np.arange(-0.5, h, 1.0)
    border = np.concatenate(
        [
            np.stack([u, np.full_like(u, -0.5)], 1),
            np.stack([u, np.full_like(u, h - 0.5)], 1),
            np.stack([np.full_like(v, -0.5), v], 1),
            np.stack([np.full_like(v, w - 0.5), v], 1),
        ]
    )
    rays = camera.unproject(border, 1.0)
    cap = min(camera.max_tan_angle, 50.0)
    x = np.where(np.isfinite(rays[:, 0]), rays[:, 0], np.nan)
    y = np.where(np.isfinite(rays[:, 1]), rays[:, 1], np.nan)
    if np.isnan(x).any():  # part of the border has no ray: bound by the lens' valid angle
        x_lo, x_hi, y_lo, y_hi = -cap, cap, -cap, cap
    else:
        x_lo, x_hi, y_lo, y_hi = float(x.min()), float(x.max()), float(y.min()), float(y.max())
        mx = 0.05 * (x_hi - x_lo)
        my = 0.05 * (y_hi - y_lo)
        x_lo, x_hi, y_lo, y_hi = (
            max(x_lo - mx, -cap),
            min(x_hi + mx, cap),
            max(y_lo - my, -cap),
            min(y_hi + my, cap),
        )
    return np.array(
        [
            [0.0, 0.0, 1.0, -NEAR_PLANE],
            [1.0, 0.0, -x_lo, 0.0],
            [-1.0, 0.0, x_hi, 0.0],
            [0.0, 1.0, -y_lo, 0.0],
            [0.0, -1.0, y_hi, 0.0],
        ]
    )


@njit(cache=True)
def _clip(poly: F64, n: int, a: float, b: float, c: float, d: float, out: F64) -> int:
    """Sutherland-Hodgman: clip polygon poly[:n] to a x + b y + c z + d >= 0 into out; returns its size.

    Rows are x, y, z, or x, y (then c must be 0).
    """
    m = 0
    dims = poly.shape[1]
    for i in range(n):
        j = (i + 1) % n
        zi = poly[i, 2] if dims == 3 else 0.0
        zj = poly[j, 2] if dims == 3 else 0.0
        si = a * poly[i, 0] + b * poly[i, 1] + c * zi + d
        sj = a * poly[j, 0] + b * poly[j, 1] + c * zj + d
        if si >= 0.0:
            for k in range(dims):
                out[m, k] = poly[i, k]
            m += 1
        if (si >= 0.0) != (sj >= 0.0):
            f = si / (si - sj)
            for k in range(dims):
                out[m, k] = poly[i, k] + f * (poly[j, k] - poly[i, k])
            m += 1
    return m


@njit(cache=True)
def _face_samples(
    corners: F64, planes: F64, per_edge: int, faces: npt.NDArray[np.int64]
) -> tuple[F64, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Clip each box face to the frustum and sample the clipped outline densely.

    Returns samples (S, 3), the polygon (face) each sample belongs to (S,), its box (S,);
    samples of one polygon are contiguous and in outline order.
    """
    m = corners.shape[0]
    max_vertices = 4 + planes.shape[0]
    samples = np.empty((m * 6 * max_vertices * per_edge, 3))
    polygon = np.empty(samples.shape[0], dtype=np.int64)
    owner = np.empty(samples.shape[0], dtype=np.int64)
    a = np.empty((max_vertices, 3))
    b = np.empty((max_vertices, 3))
    count = 0
    for box in range(m):
        for f in range(6):
            for k in range(4):
                for dim in range(3):
                    a[k, dim] = corners[box, faces[f, k], dim]
            n = 4
            for p in range(planes.shape[0]):
                n = _clip(a, n, planes[p, 0], planes[p, 1], planes[p, 2], planes[p, 3], b)
                for i in range(n):
                    for dim in range(3):
                        a[i, dim] = b[i, dim]
                if n == 0:
                    break
            if n < 3:
                continue
            pid = box * 6 + f
            for i in range(n):
                j = (i + 1) % n
                for s in range(per_edge):
                    u = s / per_edge
                    for dim in range(3):
                        samples[count, dim] = a[i, dim] + u * (a[j, dim] - a[i, dim])
                    polygon[count] = pid
                    owner[count] = box
                    count += 1
    return samples[:count], polygon[:count], owner[:count]


@njit(cache=True)
def _polygon_extents(
    uv: F64, polygon: npt.NDArray[np.int64], owner: npt.NDArray[np.int64], m: int, rect: F64
) -> F64:
    """Clip each projected outline to the image rectangle; per box, the extent of what is left.

    Boxes with nothing left get NaN.
    """
    ext = np.full((m, 4), np.nan)
    n_total = uv.shape[0]
    longest = 0
    run = 0
    for i in range(n_total):
        run = run + 1 if i > 0 and polygon[i] == polygon[i - 1] else 1
        longest = max(longest, run)
    # each clip at most doubles a polygon's vertex count
    buf_a = np.empty((16 * longest + 8, 2))
    buf_b = np.empty((16 * longest + 8, 2))
    start = 0
    while start < n_total:
        end = start
        while end < n_total and polygon[end] == polygon[start]:
            end += 1
        n = 0
        for i in range(start, end):
            if np.isfinite(uv[i, 0]) and np.isfinite(uv[i, 1]):
                buf_a[n, 0] = uv[i, 0]
                buf_a[n, 1] = uv[i, 1]
                n += 1
        # x >= x_min, x <= x_max, y >= y_min, y <= y_max
        n = _clip(buf_a, n, 1.0, 0.0, 0.0, -rect[0], buf_b)
        n = _clip(buf_b, n, -1.0, 0.0, 0.0, rect[2], buf_a)
        n = _clip(buf_a, n, 0.0, 1.0, 0.0, -rect[1], buf_b)
        n = _clip(buf_b, n, 0.0, -1.0, 0.0, rect[3], buf_a)
        box = owner[start]
        for i in range(n):
            x = buf_a[i, 0]
            y = buf_a[i, 1]
            if np.isnan(ext[box, 0]):
                ext[box, 0] = x
                ext[box, 1] = y
                ext[box, 2] = x
                ext[box, 3] = y
            else:
                ext[box, 0] = min(ext[box, 0], x)
                ext[box, 1] = min(ext[box, 1], y)
                ext[box, 2] = max(ext[box, 2], x)
                ext[box, 3] = max(ext[box, 3], y)
        start = end
    return ext
