"""LiDAR points and 3D boxes into camera images.

Points: `project_points` maps points of a source frame (the lidar, usually) through a static
``camera_from_lidar`` and the camera's lens model. `project_points_timed` also applies the
vehicle's motion between each point's own capture time and the image's stamp::

    p_camera = camera_from_lidar(t_image) @ lidar(t_image)_from_lidar(t_i) @ p_i

where ``lidar(t_image)_from_lidar(t_i)`` comes from the TF buffer's ``fixed_frame <- lidar_frame``
poses, evaluated on `calib.deskew`'s time grid (one batched lookup, a numba kernel; same error
bound as `calib.deskew.deskew`).

Boxes: the layout is the project's ``x, y, z, length, width, height, yaw`` in a z-up source
frame (lidar or ego: yaw about +z, length along the box's own x). `box_corners` gives the eight
corners in this order (local axes, signs of the half sizes)::

          7 -------- 6          index  x   y   z
         /|         /|            0    -   -   -
        4 -------- 5 |            1    +   -   -
        | 3 -------|-2            2    +   +   -
        |/         |/             3    -   +   -
        0 -------- 1              4..7 as 0..3 with z +

`box_to_image` / `boxes_to_image` give the 2D extent ``(x_min, y_min, x_max, y_max)`` in pixels
of what the image shows of a box (amodal: occlusion is ignored). Each of the six faces is clipped
against the camera's viewing frustum in 3D, the near plane z >= NEAR_PLANE first, so a box partly
behind the camera keeps only its visible part and nothing wraps around; the clipped outlines are
sampled densely (EDGE_SAMPLES per edge) and projected through the lens distortion, so curved
edges count; the projected outlines are clipped to the image rectangle [-0.5, W - 0.5] x
[-0.5, H - 0.5] (pixel centres at integers, as `calib.camera`). A box no part of which is in the
image is not visible (None / NaN).
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from calib.camera import Camera, project_points_kernel
from calib.deskew import DEFAULT_GRID_STEP_NS, check_points_and_times, deskew
from calib.errors import CalibrationError
from calib.frames import normalize_frame
from calib.tf_buffer import TransformBuffer
from calib.transform import Transform

F64 = npt.NDArray[np.float64]
Projection = tuple[F64, F64, npt.NDArray[np.bool_]]

NEAR_PLANE: Final = 0.01
"""Metres: box faces are clipped to z >= NEAR_PLANE in the camera frame before projecting."""

EDGE_SAMPLES: Final = 32
"""Points per clipped face edge that are projected (so that distortion's curved edges count)."""

BOX_FIELDS: Final = ("x", "y", "z", "length", "width", "height", "yaw")
"""The box layout of `box_corners`, `box_to_image` and `boxes_to_image`."""

# Box corners (local, unit half sizes) and the six faces as corner loops (see the module docstring).
_CORNERS: Final = np.array(
    [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]],
    dtype=np.float64,
)
_FACES: Final = np.array(
    [[0, 1, 2, 3], [4, 5, 6, 7], [1, 2, 6, 5], [0, 3, 7, 4], [3, 2, 6, 7], [0, 1, 5, 4]], dtype=np.int64
)


# ---- points -------------------------------------------------------------------------------------


def _check_camera_transform(camera: Camera, camera_from_source: Transform, what: str) -> None:
    if camera_from_source.parent != normalize_frame(camera.frame_id):
        raise CalibrationError(
            f"{what}: the transform maps into '{camera_from_source.parent}' but camera {camera.name!r} "
            f"is in '{camera.frame_id}'; pass camera_from_<source> whose parent is the camera's frame_id"
        )


def project_points(points_lidar: npt.ArrayLike, camera: Camera, camera_from_lidar: Transform) -> Projection:
    """Project points of the lidar (any source) frame into a camera's (distorted) image.

    points_lidar: (N, 3) metres in `camera_from_lidar.child`, any float dtype.
    camera_from_lidar: static transform whose parent is `camera.frame_id`.
    Returns uv: (N, 2) float64 pixels, depth: (N,) float64 metres along the optical axis,
    valid: (N,) bool, exactly as `Camera.project` (NaN pixels behind the camera, never wrapped).
    Raises CalibrationError for a wrong shape or a transform into another frame than the camera's.
    """
    _check_camera_transform(camera, camera_from_lidar, "project_points")
    return camera.project_from(points_lidar, camera_from_lidar.rotation, camera_from_lidar.translation)


def project_points_timed(
    points: npt.NDArray[np.floating],
    point_times_ns: npt.NDArray[np.integer],
    image_stamp_ns: int,
    camera: Camera,
    buffer: TransformBuffer,
    lidar_frame: str,
    fixed_frame: str,
    *,
    camera_from_lidar: Transform | None = None,
    grid_step_ns: int = DEFAULT_GRID_STEP_NS,
) -> Projection:
    """Project points captured at their own times into an image taken at `image_stamp_ns`.

    points: (N, 3) point i in `lidar_frame` at its capture time point_times_ns[i] (computed in
        float32, as `calib.deskew`).
    point_times_ns: (N,) int absolute capture times (stamp_ns + time_offset_ns of a PointCloud).
    buffer: gives `fixed_frame` <- `lidar_frame` over the points' times and the image stamp;
        `fixed_frame` must not move with the vehicle (odom or map).
    camera_from_lidar: the extrinsic, e.g. from a calibration file; None: looked up in `buffer`
        (`camera.frame_id` <- `lidar_frame` at the image stamp).
    Returns uv (N, 2), depth (N,), valid (N,) as `project_points`.
    Raises CalibrationError when shapes disagree or the buffer cannot give a pose that is needed.
    """
    pts = np.asarray(points)
    times = np.asarray(point_times_ns)
    check_points_and_times(
        pts, times, who="project_points_timed", times_name="point_times_ns", int_type="int64"
    )
    lidar_frame = normalize_frame(lidar_frame)
    stamp = int(image_stamp_ns)
    what = f"projecting '{lidar_frame}' points into camera {camera.name!r} at {stamp} ns"
    try:
        if camera_from_lidar is None:
            camera_from_lidar = buffer.lookup(camera.frame_id, lidar_frame, stamp)
        if camera_from_lidar.child != lidar_frame:
            raise CalibrationError(
                f"camera_from_lidar maps from '{camera_from_lidar.child}', not from '{lidar_frame}'"
            )
        offsets = times.astype(np.int64) - np.int64(stamp)
        at_stamp = deskew(
            np.asarray(pts, dtype=np.float32),
            offsets,
            stamp,
            buffer,
            lidar_frame,
            fixed_frame,
            grid_step_ns=grid_step_ns,
        )
    except CalibrationError as err:
        raise CalibrationError(f"{what}: {err}") from err
    return project_points(at_stamp, camera, camera_from_lidar)


# ---- boxes --------------------------------------------------------------------------------------


def _boxes(boxes: npt.ArrayLike) -> F64:
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 7:
        raise CalibrationError(f"boxes must have shape (M, 7) ({', '.join(BOX_FIELDS)}), got {b.shape}")
    return b


def box_corners(boxes: npt.ArrayLike) -> F64:
    """Corners (M, 8, 3) float64 of boxes (M, 7) x y z length width height yaw (module docstring order)."""
    b = _boxes(boxes)
    half = b[:, 3:6] * 0.5
    local = _CORNERS[None, :, :] * half[:, None, :]
    c = np.cos(b[:, 6])[:, None]
    s = np.sin(b[:, 6])[:, None]
    x = b[:, 0:1] + c * local[..., 0] - s * local[..., 1]
    y = b[:, 1:2] + s * local[..., 0] + c * local[..., 1]
    z = b[:, 2:3] + local[..., 2]
    return np.stack([x, y, z], axis=-1)


def boxes_to_image(
    boxes: npt.ArrayLike, camera: Camera, camera_from_source: Transform
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """2D extents of many boxes in a camera's image (see the module docstring).

    boxes: (M, 7) x y z length width height yaw in `camera_from_source.child` (z up).
    Returns extents (M, 4) float64 x_min y_min x_max y_max pixels (NaN rows where not visible)
    and visible (M,) bool.
    """
    _check_camera_transform(camera, camera_from_source, "boxes_to_image")
    corners = box_corners(boxes)
    corners_camera = camera_from_source.apply(corners.reshape(-1, 3)).reshape(corners.shape)
    return project_box_corners(camera, corners_camera)


def box_to_image(
    box: npt.ArrayLike, camera: Camera, camera_from_source: Transform
) -> tuple[float, float, float, float] | None:
    """2D extent (x_min, y_min, x_max, y_max) pixels of one box (7,) in the image; None if not visible.

    box: x y z length width height yaw in `camera_from_source.child` (z up).
    """
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (7,):
        raise CalibrationError(f"a box has 7 values ({', '.join(BOX_FIELDS)}), got shape {b.shape}")
    extents, visible = boxes_to_image(b[None, :], camera, camera_from_source)
    if not visible[0]:
        return None
    x_min, y_min, x_max, y_max = (float(v) for v in extents[0])
    return (x_min, y_min, x_max, y_max)


def project_box_corners(camera: Camera, corners_camera: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """2D extents of boxes given by their corners in the camera's optical frame, clipped to the image.

    corners_camera: (M, 8, 3) in the order of `box_corners`.
    Returns extents (M, 4) x_min, y_min, x_max, y_max pixels (NaN where not visible) and
    visible (M,) bool.
    """
    corners = np.asarray(corners_camera, dtype=np.float64)
    if corners.ndim != 3 or corners.shape[1:] != (8, 3):
        raise CalibrationError(f"box corners must have shape (M, 8, 3), got {corners.shape}")
    m = corners.shape[0]
    if m == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=bool)
    params, model = camera.kernel_params()
    rect = np.array([-0.5, -0.5, camera.width - 0.5, camera.height - 0.5])
    ext = _box_extents(
        np.ascontiguousarray(corners), _frustum(camera), EDGE_SAMPLES, _FACES, params, model, rect
    )
    visible = np.isfinite(ext).all(axis=1) & (ext[:, 2] > ext[:, 0]) & (ext[:, 3] > ext[:, 1])
    ext[~visible] = np.nan
    return ext, visible


@functools.lru_cache(maxsize=256)
def _frustum(camera: Camera) -> F64:
    """Planes (5, 4) a, b, c, d (inside: a x + b y + c z + d >= 0) around everything the image sees.

    Cached per camera (a `Camera` is immutable and hashed by identity; a sequence keeps one per
    camera): unprojecting the image border costs about as much as projecting a frame's boxes, and
    it was done again for every frame and camera. Read-only, as it is shared."""
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
    planes = np.array(
        [
            [0.0, 0.0, 1.0, -NEAR_PLANE],
            [1.0, 0.0, -x_lo, 0.0],
            [-1.0, 0.0, x_hi, 0.0],
            [0.0, 1.0, -y_lo, 0.0],
            [0.0, -1.0, y_hi, 0.0],
        ]
    )
    planes.flags.writeable = False
    return planes


@njit(cache=True)
def _side(x: float, y: float, z: float, a: float, b: float, c: float, d: float) -> float:
    """Which side of the plane a x + b y + c z + d = 0 a point is (>= 0: inside); the one test of
    `_clip` and `_box_extents`, so their skips and the clipping agree bit for bit."""
    return a * x + b * y + c * z + d


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
        si = _side(poly[i, 0], poly[i, 1], zi, a, b, c, d)
        sj = _side(poly[j, 0], poly[j, 1], zj, a, b, c, d)
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


@njit(cache=True, nogil=True)
def _box_extents(
    corners: F64,
    planes: F64,
    per_edge: int,
    faces: npt.NDArray[np.int64],
    params: F64,
    model: int,
    rect: F64,
) -> F64:
    """Per box: clip each face to the frustum in 3D, sample its outline (`per_edge` points per
    edge), project the samples through the lens, clip the projected outline to the image rectangle
    rect (x_min, y_min, x_max, y_max) and take the extent of what is left (NaN: nothing).

    corners: (M, 8, 3) camera frame. params, model: `Camera.kernel_params`. Returns (M, 4).
    One face at a time, in buffers of one face's size: the samples of a whole batch of boxes are
    never held (they were ~100 MB per 2,048 boxes). Faces whose corners are all inside every plane
    skip the 3D clipping, boxes whose corners are all outside one plane are skipped, and outlines
    that land inside the image skip the 2D clipping: each of these leaves what the clipping would
    give unchanged (it copies such polygons vertex for vertex).
    """
    m = corners.shape[0]
    n_planes = planes.shape[0]
    max_vertices = 4 + n_planes
    ext = np.full((m, 4), np.nan)
    a = np.empty((max_vertices, 3))
    b = np.empty((max_vertices, 3))
    samples = np.empty((max_vertices * per_edge, 3))
    uv = np.empty((max_vertices * per_edge, 2))
    depth = np.empty(max_vertices * per_edge)
    valid = np.empty(max_vertices * per_edge, dtype=np.bool_)
    # each 2D clip at most doubles a polygon's vertex count
    buf_a = np.empty((16 * max_vertices * per_edge + 8, 2))
    buf_b = np.empty((16 * max_vertices * per_edge + 8, 2))
    for box in range(m):
        all_inside = True
        culled = False
        for p in range(n_planes):
            outside = 0
            for k in range(8):
                s = _side(
                    corners[box, k, 0], corners[box, k, 1], corners[box, k, 2],
                    planes[p, 0], planes[p, 1], planes[p, 2], planes[p, 3],
                )  # fmt: skip
                if not s >= 0.0:
                    outside += 1
                    all_inside = False
            if outside == 8:
                culled = True
                break
        if culled:
            continue
        for f in range(6):
            for k in range(4):
                for dim in range(3):
                    a[k, dim] = corners[box, faces[f, k], dim]
            n = 4
            if not all_inside:
                for p in range(n_planes):
                    n = _clip(a, n, planes[p, 0], planes[p, 1], planes[p, 2], planes[p, 3], b)
                    for i in range(n):
                        for dim in range(3):
                            a[i, dim] = b[i, dim]
                    if n == 0:
                        break
            if n < 3:
                continue
            count = 0
            for i in range(n):
                j = (i + 1) % n
                for s_ in range(per_edge):
                    u = s_ / per_edge
                    for dim in range(3):
                        samples[count, dim] = a[i, dim] + u * (a[j, dim] - a[i, dim])
                    count += 1
            project_points_kernel(
                samples[:count], params, model, False, uv[:count], depth[:count], valid[:count]
            )
            k2 = 0
            in_rect = True
            for i in range(count):
                x = uv[i, 0]
                y = uv[i, 1]
                if np.isfinite(x) and np.isfinite(y):
                    buf_a[k2, 0] = x
                    buf_a[k2, 1] = y
                    k2 += 1
                    if not (
                        _side(x, y, 0.0, 1.0, 0.0, 0.0, -rect[0]) >= 0.0
                        and _side(x, y, 0.0, -1.0, 0.0, 0.0, rect[2]) >= 0.0
                        and _side(x, y, 0.0, 0.0, 1.0, 0.0, -rect[1]) >= 0.0
                        and _side(x, y, 0.0, 0.0, -1.0, 0.0, rect[3]) >= 0.0
                    ):
                        in_rect = False
            n2 = k2
            if not in_rect:
                # x >= x_min, x <= x_max, y >= y_min, y <= y_max
                n2 = _clip(buf_a, n2, 1.0, 0.0, 0.0, -rect[0], buf_b)
                n2 = _clip(buf_b, n2, -1.0, 0.0, 0.0, rect[2], buf_a)
                n2 = _clip(buf_a, n2, 0.0, 1.0, 0.0, -rect[1], buf_b)
                n2 = _clip(buf_b, n2, 0.0, -1.0, 0.0, rect[3], buf_a)
            for i in range(n2):
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
    return ext
