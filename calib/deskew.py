"""Motion compensation of a LiDAR sweep: every point into the sensor frame at one reference time.

A spinning LiDAR captures point i at ``stamp_ns + time_offset_ns[i]``, expressed in the lidar
frame *at that instant*; while the vehicle moves, the sweep is smeared (at 20 m/s, by 2 m over
a 100 ms sweep). `deskew` moves each point to the lidar frame at ``stamp_ns``::

    p_ref = lidar(stamp)_from_lidar(t_i) @ p_i
          = fixed_from_lidar(stamp).inverse() @ fixed_from_lidar(t_i) @ p_i

Method and error bound. ``lidar(stamp)_from_lidar(t)`` is looked up (one batched
`TransformBuffer.lookup_many`) on a grid of times every ``grid_step_ns`` (1 ms) spanning the
sweep's offsets, or at the sweep's own distinct times when it has no more points than grid
nodes (then the result is exact). Each point is mapped by the two grid transforms around its
time and the two results are blended linearly: that is the linear interpolation of the two
3x4 matrices, never re-orthonormalised. Against the exact per-point lookup it errs by at most
``r * (w h)^2 / 8 + a h^2 / 8`` (r: point range, w: angular rate, a: acceleration of the lidar
origin, h: the grid step), plus ``dv h / 4`` at a TF sample where the velocity jumps by dv.
At h = 1 ms, w = 30 deg/s, r = 100 m, a = 10 m/s^2 that is under 5 micrometres; the tests
hold it to < 1 mm at 20 m/s and 30 deg/s.
"""

from __future__ import annotations

from typing import Any, Final

import numba
import numpy as np
import numpy.typing as npt

from calib.errors import CalibrationError
from calib.frames import normalize_frame
from calib.tf_buffer import TransformBuffer
from calib.transform import compose_matrices, invert_matrices

DEFAULT_GRID_STEP_NS: Final = 1_000_000


def check_points_and_times(
    points: npt.NDArray[Any],
    times: npt.NDArray[Any],
    *,
    who: str,
    times_name: str,
    int_type: str | None,
) -> None:
    """CalibrationError unless points is (N, 3) and times (N,) (of integer ns when `int_type` names
    the integer type to suggest converting float seconds to)."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise CalibrationError(f"{who} takes points of shape (N, 3), got {points.shape}")
    if times.shape != (points.shape[0],):
        raise CalibrationError(
            f"{who} needs one time offset per point: {points.shape[0]} points, "
            f"{times_name} of shape {times.shape}"
        )
    if int_type is not None and not np.issubdtype(times.dtype, np.integer):
        raise CalibrationError(
            f"{times_name} must be integer nanoseconds, got {times.dtype}; "
            f"convert float seconds with np.round(t_s * 1e9).astype(np.{int_type})"
        )


@numba.njit(cache=True, nogil=True)
def _deskew_kernel(
    xyz: npt.NDArray[np.float32],
    offsets_ns: npt.NDArray[np.integer],
    grid_ns: npt.NDArray[np.int64],
    ref_from_grid: npt.NDArray[np.float64],
    out: npt.NDArray[np.float32],
) -> None:
    """out[i] = blend of ref_from_grid[j] @ xyz[i] and ref_from_grid[j + 1] @ xyz[i] at xyz[i]'s time.

    xyz: (N, 3) float32, any strides (read-only views welcome); offsets_ns: (N,) int;
    grid_ns: (G,) int64 increasing, covering every offset; ref_from_grid: (G, 3, 4) float64;
    out: (N, 3) float32.
    """
    n = xyz.shape[0]
    g = grid_ns.shape[0]
    for i in range(n):
        t = offsets_ns[i]
        x = np.float64(xyz[i, 0])
        y = np.float64(xyz[i, 1])
        z = np.float64(xyz[i, 2])
        if g == 1:
            for r in range(3):
                m = ref_from_grid[0]
                out[i, r] = m[r, 0] * x + m[r, 1] * y + m[r, 2] * z + m[r, 3]
            continue
        lo = 0
        hi = g - 1
        while hi - lo > 1:  # grid_ns[lo] <= t <= grid_ns[hi]
            mid = (lo + hi) // 2
            if grid_ns[mid] <= t:
                lo = mid
            else:
                hi = mid
        u = np.float64(t - grid_ns[lo]) / np.float64(grid_ns[hi] - grid_ns[lo])
        a = ref_from_grid[lo]
        b = ref_from_grid[hi]
        for r in range(3):
            pa = a[r, 0] * x + a[r, 1] * y + a[r, 2] * z + a[r, 3]
            pb = b[r, 0] * x + b[r, 1] * y + b[r, 2] * z + b[r, 3]
            out[i, r] = pa + u * (pb - pa)


def deskew_grid(
    time_offset_ns: npt.NDArray[np.integer], *, grid_step_ns: int = DEFAULT_GRID_STEP_NS
) -> npt.NDArray[np.int64]:
    """Offsets (G,) int64 at which `deskew` looks the pose up for these point offsets (N,).

    The sorted distinct offsets when there are no more points than grid nodes, else every
    `grid_step_ns` from the smallest offset, with the largest offset as the last node.
    """
    if time_offset_ns.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    first, last = int(time_offset_ns.min()), int(time_offset_ns.max())
    nodes = (last - first) // grid_step_ns + 2
    if time_offset_ns.shape[0] <= nodes:
        return np.unique(time_offset_ns).astype(np.int64)
    grid = np.arange(first, last, grid_step_ns, dtype=np.int64)
    return np.append(grid, np.int64(last))


def deskew(
    xyz: npt.NDArray[np.float32],
    time_offset_ns: npt.NDArray[np.integer],
    stamp_ns: int,
    buffer: TransformBuffer,
    lidar_frame: str,
    fixed_frame: str,
    *,
    grid_step_ns: int = DEFAULT_GRID_STEP_NS,
) -> npt.NDArray[np.float32]:
    """Points (N, 3) float32 of one sweep, moved into the lidar frame at `stamp_ns`.

    xyz: (N, 3) float32, point i in `lidar_frame` at its capture time stamp_ns + time_offset_ns[i];
        may be a read-only, non-contiguous view (e.g. strides (point_step, 4)).
    time_offset_ns: (N,) int32 (any integer dtype, any strides).
    stamp_ns: the reference time (the PointCloud2 header stamp).
    buffer: gives `fixed_frame` <- `lidar_frame` over the sweep; `fixed_frame` must not move
        with the vehicle (odom or map).
    grid_step_ns: spacing of the pose grid (see the module docstring for the error bound).

    Returns a new (N, 3) float32 array. Raises CalibrationError when the shapes disagree or the
    buffer cannot give the pose over the whole sweep (missing TF, gap, beyond extrapolation).
    """
    check_points_and_times(xyz, time_offset_ns, who="deskew", times_name="time_offset_ns", int_type="int32")
    if grid_step_ns <= 0:
        raise CalibrationError(f"grid_step_ns must be positive, got {grid_step_ns}")
    lidar_frame, fixed_frame = normalize_frame(lidar_frame), normalize_frame(fixed_frame)
    out = np.empty((xyz.shape[0], 3), dtype=np.float32)
    if xyz.shape[0] == 0:
        return out
    grid = deskew_grid(time_offset_ns, grid_step_ns=grid_step_ns)
    times = np.concatenate([np.array([stamp_ns], dtype=np.int64), stamp_ns + grid])
    try:
        fixed_from_lidar = buffer.lookup_many(fixed_frame, lidar_frame, times)
    except CalibrationError as err:
        raise CalibrationError(
            f"cannot deskew the '{lidar_frame}' sweep at {stamp_ns} ns "
            f"(offsets {int(grid[0])}..{int(grid[-1])} ns): {err}"
        ) from err
    ref_from_grid = compose_matrices(invert_matrices(fixed_from_lidar[0]), fixed_from_lidar[1:])
    xyz_in = xyz if xyz.dtype == np.float32 else xyz.astype(np.float32)
    _deskew_kernel(xyz_in, time_offset_ns, grid, np.ascontiguousarray(ref_from_grid[:, :3, :]), out)
    return out


def compensate_object_motion(
    xyz: npt.NDArray[np.floating],
    time_offset_ns: npt.NDArray[np.integer],
    boxes: npt.NDArray[np.float64],
    velocities: npt.NDArray[np.float64],
    *,
    margin_m: float = 0.3,
) -> npt.NDArray[np.float32]:
    """Move the points on moving objects to where those objects were at the reference time.

    Ego-motion deskewing (`deskew`) leaves each object's own motion in the sweep: a car driving
    at v is smeared by v * 100 ms. Given the objects' boxes at the reference time and their
    velocities (both in the deskewed sensor frame: e.g. refined tracks), a point captured dt
    after the reference time inside an object's swept volume moves by -v * dt.

    xyz: (N, 3) points already deskewed to the reference time; time_offset_ns: (N,) int.
    boxes: (K, 7) x y z length width height yaw; velocities: (K, 2) or (K, 3) m/s.
    margin_m: slack around each box when deciding which points belong to it.
    Returns a new (N, 3) float32 array; points in no box are unchanged.
    """
    pts = np.array(xyz, dtype=np.float64)
    check_points_and_times(
        pts, time_offset_ns, who="compensate_object_motion", times_name="time_offset_ns", int_type=None
    )
    vel = np.zeros((boxes.shape[0], 3))
    vel[:, : velocities.shape[1]] = velocities
    dt = np.asarray(time_offset_ns, dtype=np.float64) * 1e-9
    out = pts.copy()
    taken = np.zeros(pts.shape[0], dtype=bool)
    for k in range(boxes.shape[0]):  # per object (few), vectorised over the points
        if not np.any(vel[k]):
            continue
        back = pts - vel[k] * dt[:, None]  # where each point would be at the reference time
        c, s = np.cos(boxes[k, 6]), np.sin(boxes[k, 6])
        d = back - boxes[k, :3]
        local_x = c * d[:, 0] + s * d[:, 1]
        local_y = -s * d[:, 0] + c * d[:, 1]
        inside = (
            (np.abs(local_x) <= 0.5 * boxes[k, 3] + margin_m)
            & (np.abs(local_y) <= 0.5 * boxes[k, 4] + margin_m)
            & (np.abs(d[:, 2]) <= 0.5 * boxes[k, 5] + margin_m)
            & ~taken
        )
        out[inside] = back[inside]
        taken |= inside
    return out.astype(np.float32)
