"""Pinhole cameras with the ROS distortion models, projecting and unprojecting exactly as OpenCV does.

The camera (optical) frame and the image::

        z  (forward: the optical axis)           (-0.5, -0.5)
       /                                           +------------> u (columns)
      o-----> x  (right)                           |  pixel (0, 0) is centred at u = v = 0
      |                                            |
      v  y  (down)                                 v  v (rows)           (W - 0.5, H - 0.5)

Pixel coordinates follow OpenCV: pixel centres sit at integer (u, v), so the image covers
[-0.5, W - 0.5) x [-0.5, H - 0.5). `K` is the raw (distorted) image's camera matrix
[[fx, s, cx], [0, fy, cy], [0, 0, 1]]; the skew `s` is usually 0.

Distortion models (the `distortion_model` strings of sensor_msgs/CameraInfo), on the normalised
coordinates x = X/Z, y = Y/Z, r^2 = x^2 + y^2:

- ``plumb_bob`` (D = k1 k2 p1 p2 k3), OpenCV's default model, and ``rational_polynomial``
  (D = k1 k2 p1 p2 k3 k4 k5 k6)::

      radial = (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)
      x'' = x radial + 2 p1 x y + p2 (r^2 + 2 x^2)
      y'' = y radial + p1 (r^2 + 2 y^2) + 2 p2 x y

- ``equidistant`` (D = k1 k2 k3 k4), OpenCV's `cv2.fisheye`::

      theta = atan(r),  theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
      x'' = x theta_d / r,  y'' = y theta_d / r

then u = fx x'' + s y'' + cx, v = fy y'' + cy.

A polynomial distortion folds back beyond some angle from the axis: points further out would
land back inside the image (OpenCV projects them there anyway). `Camera.project` never wraps
around: such points, and points on or behind the image plane, are invalid and get NaN pixels.

`Camera.project` and `Camera.project_from` (which applies a rigid transform in the same pass, as
LiDAR -> image projection needs, without materialising the transformed points) run one numba pass
over the points; `Camera._project_numpy` is the plain-numpy reference they are tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt
from numba import njit

from calib.errors import CalibrationError

if TYPE_CHECKING:  # a plain record; importing it at run time would load fusion.decode (OpenCV)
    from fusion.decode.types import CameraInfoRecord

DistortionModel = Literal["plumb_bob", "rational_polynomial", "equidistant"]

DISTORTION_MODELS: Final[tuple[str, ...]] = get_args(DistortionModel)

_FloatPoints = npt.NDArray[np.floating[Any]]  # float32 or float64

MIN_DEPTH: Final = 1e-6
"""Points with z <= MIN_DEPTH (metres) are on or behind the image plane: never valid."""

_NUM_COEFFS: Final[dict[str, int]] = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
_MODEL_CODE: Final[dict[str, int]] = {"plumb_bob": 0, "rational_polynomial": 1, "equidistant": 2}
_RATIONAL: Final = 1  # _MODEL_CODE values as the kernel sees them
_EQUIDISTANT: Final = 2
_NEWTON_ITERATIONS: Final = 40
_NEWTON_TOLERANCE: Final = 1e-12  # normalised-coordinate step at which the iteration stops
_RESIDUAL_TOLERANCE: Final = 1e-9  # normalised-coordinate mismatch above which undistortion failed


@dataclass(frozen=True, eq=False)
class Camera:
    """One camera: image size, intrinsics and lens distortion of the raw image.

    K: (3, 3) float64, read-only.  D: the distortion coefficients of `model` (see the module
    docstring), padded with zeros to the model's full length. `frame_id` is the optical frame
    (x right, y down, z forward).

    Raises CalibrationError when the size, K or D is unusable.
    """

    name: str
    frame_id: str
    width: int
    height: int
    model: DistortionModel
    K: npt.NDArray[np.float64]
    D: tuple[float, ...]
    max_tan_angle: float = field(init=False, repr=False)
    """tan of the largest angle from the optical axis that projects without folding back (inf: none)."""

    def __post_init__(self) -> None:
        if self.model not in _NUM_COEFFS:
            raise CalibrationError(
                f"camera {self.name!r}: distortion model {self.model!r} is not supported; "
                f"use one of {', '.join(DISTORTION_MODELS)}"
            )
        if self.width <= 0 or self.height <= 0:
            raise CalibrationError(f"camera {self.name!r}: image size {self.width}x{self.height} is empty")
        k = np.array(self.K, dtype=np.float64)
        if k.shape != (3, 3) or not np.isfinite(k).all():
            raise CalibrationError(f"camera {self.name!r}: K must be a finite 3x3 matrix, got {k.tolist()}")
        if k[0, 0] <= 0 or k[1, 1] <= 0 or k[1, 0] != 0 or not np.array_equal(k[2], [0.0, 0.0, 1.0]):
            raise CalibrationError(
                f"camera {self.name!r}: K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, "
                f"got {k.tolist()}"
            )
        k.setflags(write=False)
        object.__setattr__(self, "K", k)
        object.__setattr__(self, "D", _full_coefficients(self.name, self.model, self.D))
        object.__setattr__(self, "max_tan_angle", _max_tan_angle(self.model, self.D))

    @classmethod
    def from_camera_info(cls, rec: CameraInfoRecord, name: str | None = None) -> Camera:
        """A camera from a decoded sensor_msgs/CameraInfo; `name` defaults to its frame id.

        An empty D means no distortion. Raises CalibrationError for an unsupported model or a
        malformed K/D.
        """
        cam_name = name if name is not None else rec.frame_id
        if len(rec.k) != 9:
            raise CalibrationError(f"camera {cam_name!r}: CameraInfo K has {len(rec.k)} values, expected 9")
        model = rec.distortion_model
        if model not in _NUM_COEFFS:
            raise CalibrationError(
                f"camera {cam_name!r}: CameraInfo distortion_model {model!r} is not supported; "
                f"use one of {', '.join(DISTORTION_MODELS)}"
            )
        return cls(
            name=cam_name,
            frame_id=rec.frame_id,
            width=rec.width,
            height=rec.height,
            model=model,  # type: ignore[arg-type]  # checked against the supported models above
            K=np.asarray(rec.k, dtype=np.float64).reshape(3, 3),
            D=tuple(float(c) for c in rec.d),
        )

    def project(
        self, points_camera: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Project points of the camera frame into the (distorted) image.

        points_camera: (N, 3) metres, optical frame; float32 or float64 are read in place
        (any strides, read-only is fine), other dtypes are converted to float64 first.
        Returns uv: (N, 2) float64 pixels, depth: (N,) float64 (= z), valid: (N,) bool.
        `valid` is True where the point is in front of the camera (z > MIN_DEPTH), within the
        angle where the distortion does not fold back, and inside the image. uv is NaN where
        the point is behind the camera or beyond that angle; finite (possibly outside the
        image) elsewhere.
        """
        return self._project_kernel(_kernel_points(points_camera), None, None)

    def project_from(
        self, points: npt.ArrayLike, rotation: npt.ArrayLike, translation: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Project points of another frame: `project(points @ rotation.T + translation)` in one pass.

        points: (N, 3) metres in some frame F (float32/float64 read in place, as in `project`).
        rotation: (3, 3), translation: (3,): the rigid transform `camera_from_F`, e.g.
        ``camera_from_lidar.rotation, camera_from_lidar.translation`` of a `calib.transform.Transform`.
        Returns what `project` returns for the transformed points; depth is their z in the
        camera frame. The transformed points are never materialised.
        Raises CalibrationError for wrong shapes or non-finite transform values.
        """
        r = np.asarray(rotation, dtype=np.float64)
        t = np.asarray(translation, dtype=np.float64)
        if r.shape != (3, 3) or t.shape != (3,):
            raise CalibrationError(
                f"camera {self.name!r}: project_from takes rotation (3, 3) and translation (3,), "
                f"got {r.shape} and {t.shape}"
            )
        if not (np.isfinite(r).all() and np.isfinite(t).all()):
            raise CalibrationError(
                f"camera {self.name!r}: project_from's transform has NaN or infinite values"
            )
        return self._project_kernel(_kernel_points(points), r, t)

    def _project_kernel(
        self,
        points: _FloatPoints,
        rotation: npt.NDArray[np.float64] | None,
        translation: npt.NDArray[np.float64] | None,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Run `project_points_kernel` over points (N, 3), with the transform when one is given."""
        params, model = self.kernel_params()
        transformed = False
        if rotation is not None and translation is not None:
            params[_P_R : _P_R + 9] = rotation.ravel()
            params[_P_T : _P_T + 3] = translation
            transformed = True
        n = points.shape[0]
        uv = np.empty((n, 2), dtype=np.float64)
        depth = np.empty(n, dtype=np.float64)
        valid = np.empty(n, dtype=np.bool_)
        project_points_kernel(points, params, model, transformed, uv, depth, valid)
        return uv, depth, valid

    def kernel_params(self) -> tuple[npt.NDArray[np.float64], int]:
        """The lens as `project_points_kernel` takes it: params (_P_SIZE,) float64 (no transform)
        and the model's code, for numba kernels that project as they go."""
        params = np.zeros(_P_SIZE, dtype=np.float64)
        k = self.K
        params[_P_K : _P_K + 5] = (k[0, 0], k[0, 1], k[0, 2], k[1, 1], k[1, 2])
        params[_P_D : _P_D + len(self.D)] = self.D
        params[_P_LIMIT2] = self.max_tan_angle**2
        params[_P_END : _P_END + 2] = (self.width - 0.5, self.height - 0.5)
        return params, _MODEL_CODE[self.model]

    def _project_numpy(
        self, points_camera: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """`project` in plain numpy: the reference the numba kernel is tested (and benchmarked) against."""
        p = _points(points_camera)
        depth = p[:, 2].copy()
        in_front = depth > MIN_DEPTH
        safe_z = np.where(in_front, depth, 1.0)
        x = p[:, 0] / safe_z
        y = p[:, 1] / safe_z
        r2 = x * x + y * y
        in_range = in_front & (r2 <= self.max_tan_angle**2)
        xd, yd = self._distort(x, y)
        uv = self._to_pixels(xd, yd)
        uv[~in_range] = np.nan
        valid = in_range & self.in_image(uv)
        return uv, depth, valid

    def unproject(self, uv: npt.ArrayLike, depth: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Points of the camera frame that project to pixels `uv` at depth z = `depth`.

        uv: (N, 2) pixels; depth: (N,) or scalar, metres along the optical axis.
        Returns (N, 3) float64. Rows are NaN where the pixel lies beyond the image of the
        distortion's valid angle (no ray projects there) or undistortion does not converge.
        """
        pix = np.asarray(uv, dtype=np.float64)
        if pix.ndim != 2 or pix.shape[1] != 2:
            raise CalibrationError(f"camera {self.name!r}: uv must have shape (N, 2), got {pix.shape}")
        z = np.broadcast_to(np.asarray(depth, dtype=np.float64), (pix.shape[0],))
        x, y = self._undistort(*self._from_pixels(pix))
        return np.stack([x * z, y * z, z.copy()], axis=1)

    def in_image(self, uv: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Whether pixels uv (N, 2) lie in the image [-0.5, W - 0.5) x [-0.5, H - 0.5); NaN: False."""
        u = uv[:, 0]
        v = uv[:, 1]
        return (u >= -0.5) & (u < self.width - 0.5) & (v >= -0.5) & (v < self.height - 0.5)

    # -- the models --------------------------------------------------------------------------

    def _distort(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Normalised undistorted (x, y) -> normalised distorted (x'', y''), each (N,)."""
        d = self.D
        if self.model == "equidistant":
            r = np.hypot(x, y)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1.0 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
            scale = np.divide(theta_d, r, out=np.ones_like(r), where=r > 0.0)
            return x * scale, y * scale
        r2 = x * x + y * y
        radial = _radial(d, r2)
        p1, p2 = d[2], d[3]
        xy = x * y
        xd = x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy
        return xd, yd

    def _undistort(
        self, xd: npt.NDArray[np.float64], yd: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Normalised distorted -> undistorted by Newton's method; NaN where it has no solution."""
        if self.model == "equidistant":
            return self._undistort_equidistant(xd, yd)
        d = self.D
        p1, p2 = d[2], d[3]
        x = xd.copy()
        y = yd.copy()
        limit2 = self.max_tan_angle**2
        for _ in range(_NEWTON_ITERATIONS):
            r2 = x * x + y * y
            radial = _radial(d, r2)
            dradial = _radial_derivative(d, r2)
            xy = x * y
            fx = x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x) - xd
            fy = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy - yd
            j11 = radial + 2.0 * x * x * dradial + 2.0 * p1 * y + 6.0 * p2 * x
            j12 = 2.0 * xy * dradial + 2.0 * p1 * x + 2.0 * p2 * y
            j22 = radial + 2.0 * y * y * dradial + 6.0 * p1 * y + 2.0 * p2 * x
            det = j11 * j22 - j12 * j12
            det = np.where(np.abs(det) > 1e-300, det, 1e-300)
            step_x = (j22 * fx - j12 * fy) / det
            step_y = (j11 * fy - j12 * fx) / det
            x = x - step_x
            y = y - step_y
            # never leave the monotonic zone: beyond it the model folds back
            r2 = x * x + y * y
            over = r2 > limit2
            if over.any():
                shrink = np.sqrt(limit2 / r2[over])
                x[over] *= shrink
                y[over] *= shrink
            if np.nanmax(np.abs(step_x) + np.abs(step_y), initial=0.0) < _NEWTON_TOLERANCE:
                break
        rx, ry = self._distort(x, y)
        bad = ~(np.hypot(rx - xd, ry - yd) <= _RESIDUAL_TOLERANCE * np.maximum(1.0, np.hypot(xd, yd)))
        x[bad] = np.nan
        y[bad] = np.nan
        return x, y

    def _undistort_equidistant(
        self, xd: npt.NDArray[np.float64], yd: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        k1, k2, k3, k4 = self.D[:4]
        theta_d = np.hypot(xd, yd)
        theta_max = math.atan(self.max_tan_angle)
        theta = np.minimum(theta_d, theta_max)
        for _ in range(_NEWTON_ITERATIONS):
            t2 = theta * theta
            f = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
            df = 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))
            step = f / np.where(np.abs(df) > 1e-300, df, 1e-300)
            theta = np.clip(theta - step, 0.0, theta_max)
            if np.nanmax(np.abs(step), initial=0.0) < _NEWTON_TOLERANCE:
                break
        t2 = theta * theta
        residual = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
        r = np.tan(theta)
        scale = np.divide(r, theta_d, out=np.ones_like(r), where=theta_d > 0.0)
        scale[~(np.abs(residual) <= _RESIDUAL_TOLERANCE * np.maximum(1.0, theta_d))] = np.nan
        return xd * scale, yd * scale

    def _to_pixels(self, xd: npt.NDArray[np.float64], yd: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        k = self.K
        return np.stack([k[0, 0] * xd + k[0, 1] * yd + k[0, 2], k[1, 1] * yd + k[1, 2]], axis=1)

    def _from_pixels(
        self, uv: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        k = self.K
        yd = (uv[:, 1] - k[1, 2]) / k[1, 1]
        xd = (uv[:, 0] - k[0, 2] - k[0, 1] * yd) / k[0, 0]
        return xd, yd


def _points(points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise CalibrationError(f"points must have shape (N, 3), got {p.shape}")
    return p


def _kernel_points(points: npt.ArrayLike) -> _FloatPoints:
    """Points (N, 3) as the kernel takes them: float32/float64 in native byte order, as they are
    (no copy), else converted to float64; always a read-only view, so that read-only and writable
    input share one compiled kernel."""
    p = np.asarray(points)
    if p.ndim != 2 or p.shape[1] != 3:
        raise CalibrationError(f"points must have shape (N, 3), got {p.shape}")
    if p.dtype not in (np.float32, np.float64):  # also non-native byte order
        p = p.astype(np.float64)
    view = p.view()
    view.flags.writeable = False
    return view


# layout of the kernel's parameter vector
_P_K: Final = 0  # fx, s, cx, fy, cy
_P_D: Final = 5  # 8 distortion coefficients, zero-padded
_P_LIMIT2: Final = 13  # max_tan_angle^2
_P_END: Final = 14  # W - 0.5, H - 0.5: where the image ends
_P_R: Final = 16  # rotation, row-major
_P_T: Final = 25  # translation
_P_SIZE: Final = 28


@njit(cache=True, nogil=True)
def project_points_kernel(
    points: _FloatPoints,
    params: npt.NDArray[np.float64],
    model: int,
    transformed: bool,
    uv: npt.NDArray[np.float64],
    depth: npt.NDArray[np.float64],
    valid: npt.NDArray[np.bool_],
) -> None:
    """One pass of `Camera.project` / `project_from` over points (N, 3), writing uv, depth, valid.

    params: (_P_SIZE,) float64 laid out as the _P_* offsets say. model: a _MODEL_CODE value.
    transformed: apply params' rotation and translation to each point first.

    The arithmetic follows `Camera._project_numpy` operation for operation, in float64 whatever
    the input dtype (bit for bit for plumb_bob and rational_polynomial; equidistant takes
    sqrt(r^2) and libm's atan where numpy takes hypot and its own arctan: ~1e-13 px apart).
    """
    fx, s, cx = params[_P_K], params[_P_K + 1], params[_P_K + 2]
    fy, cy = params[_P_K + 3], params[_P_K + 4]
    # plumb_bob / rational_polynomial: k1 k2 p1 p2 k3 k4 k5 k6; equidistant: e1..e4 (its k1..k4)
    k1, k2, p1, p2, k3 = params[_P_D], params[_P_D + 1], params[_P_D + 2], params[_P_D + 3], params[_P_D + 4]
    k4, k5, k6 = params[_P_D + 5], params[_P_D + 6], params[_P_D + 7]
    e1, e2, e3, e4 = params[_P_D], params[_P_D + 1], params[_P_D + 2], params[_P_D + 3]
    limit2 = params[_P_LIMIT2]
    u_end, v_end = params[_P_END], params[_P_END + 1]
    r00, r01, r02 = params[_P_R], params[_P_R + 1], params[_P_R + 2]
    r10, r11, r12 = params[_P_R + 3], params[_P_R + 4], params[_P_R + 5]
    r20, r21, r22 = params[_P_R + 6], params[_P_R + 7], params[_P_R + 8]
    t0, t1, t2 = params[_P_T], params[_P_T + 1], params[_P_T + 2]
    for i in range(points.shape[0]):
        px = np.float64(points[i, 0])
        py = np.float64(points[i, 1])
        pz = np.float64(points[i, 2])
        if transformed:
            xc = r00 * px + r01 * py + r02 * pz + t0
            yc = r10 * px + r11 * py + r12 * pz + t1
            zc = r20 * px + r21 * py + r22 * pz + t2
        else:
            xc, yc, zc = px, py, pz
        depth[i] = zc
        if not zc > MIN_DEPTH:  # also NaN
            uv[i, 0] = np.nan
            uv[i, 1] = np.nan
            valid[i] = False
            continue
        x = xc / zc
        y = yc / zc
        r2 = x * x + y * y
        if not r2 <= limit2:  # beyond the fold-back angle, or NaN
            uv[i, 0] = np.nan
            uv[i, 1] = np.nan
            valid[i] = False
            continue
        if model == _EQUIDISTANT:
            r = math.sqrt(r2)
            scale = 1.0
            if r > 0.0:
                theta = math.atan(r)
                th2 = theta * theta
                theta_d = theta * (1.0 + th2 * (e1 + th2 * (e2 + th2 * (e3 + th2 * e4))))
                scale = theta_d / r
            xd = x * scale
            yd = y * scale
        else:
            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            if model == _RATIONAL:
                radial = radial / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
            xy = x * y
            xd = x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x)
            yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy
        u = fx * xd + s * yd + cx
        v = fy * yd + cy
        uv[i, 0] = u
        uv[i, 1] = v
        valid[i] = u >= -0.5 and u < u_end and v >= -0.5 and v < v_end


def _full_coefficients(name: str, model: str, d: tuple[float, ...]) -> tuple[float, ...]:
    """D padded with zeros to the model's length; extra coefficients are allowed only when zero."""
    n = _NUM_COEFFS[model]
    coeffs = tuple(float(c) for c in d)
    if not all(math.isfinite(c) for c in coeffs):
        raise CalibrationError(f"camera {name!r}: D holds a non-finite value: {coeffs}")
    if model == "plumb_bob" and len(coeffs) not in (0, 4, 5) and any(coeffs[5:]):
        raise CalibrationError(
            f"camera {name!r}: plumb_bob takes 5 coefficients (k1 k2 p1 p2 k3), got {len(coeffs)}; "
            "a camera with k4..k6 is rational_polynomial"
        )
    if model == "rational_polynomial" and len(coeffs) not in (0, 8) and (len(coeffs) < 8 or any(coeffs[8:])):
        raise CalibrationError(
            f"camera {name!r}: rational_polynomial takes 8 coefficients (k1 k2 p1 p2 k3 k4 k5 k6), "
            f"got {len(coeffs)}"
        )
    if model == "equidistant" and len(coeffs) not in (0, 4):
        raise CalibrationError(
            f"camera {name!r}: equidistant takes 4 coefficients (k1 k2 k3 k4), got {len(coeffs)}"
        )
    return (coeffs + (0.0,) * n)[:n]


def _radial(d: tuple[float, ...], r2: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The radial factor of plumb_bob / rational_polynomial (D padded: k4..k6 = d[5:8] or none)."""
    num = 1.0 + r2 * (d[0] + r2 * (d[1] + r2 * d[4]))
    if len(d) < 8:
        return num
    den = 1.0 + r2 * (d[5] + r2 * (d[6] + r2 * d[7]))
    return num / den


def _radial_derivative(d: tuple[float, ...], r2: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """d(radial)/d(r^2)."""
    num = 1.0 + r2 * (d[0] + r2 * (d[1] + r2 * d[4]))
    dnum = d[0] + r2 * (2.0 * d[1] + 3.0 * r2 * d[4])
    if len(d) < 8:
        return dnum
    den = 1.0 + r2 * (d[5] + r2 * (d[6] + r2 * d[7]))
    dden = d[5] + r2 * (2.0 * d[6] + 3.0 * r2 * d[7])
    return (dnum * den - num * dden) / (den * den)


def _max_tan_angle(model: str, d: tuple[float, ...]) -> float:
    """tan of the angle from the axis where the distorted radius stops growing (inf: it never does).

    Found on a fine grid of angles up to 90 degrees; the returned bound is the last grid angle
    before the radius stalls (or a denominator of the rational model reaches zero).
    """
    theta = np.linspace(0.0, math.pi / 2.0, 20001)[1:-1]
    if model == "equidistant":
        t2 = theta * theta
        radius = theta * (1.0 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
        ok = np.ones_like(theta, dtype=bool)
    else:
        r = np.tan(theta)
        r2 = r * r
        radius = r * _radial(d, r2)
        ok = (
            (1.0 + r2 * (d[5] + r2 * (d[6] + r2 * d[7]))) > 0.0
            if len(d) >= 8
            else np.ones_like(r, dtype=bool)
        )
    growing = np.diff(radius) > 0.0
    good = ok[1:] & ok[:-1] & growing & (radius[1:] > 0.0)
    if good.all():
        return math.inf
    first_bad = int(np.argmin(good))  # index of the first False
    if first_bad == 0:
        return 0.0
    return float(np.tan(theta[first_bad]))
