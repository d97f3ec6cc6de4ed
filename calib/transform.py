"""Rigid transforms between named frames, and the batched quaternion maths behind them.

A `Transform` is ``parent_from_child``: it maps points expressed in ``child`` to ``parent``
(see `calib.frames` for the frames and the naming rule). Composition checks the frames::

    world_from_lidar = world_from_ego @ ego_from_lidar      # ok: ego == ego
    ego_from_lidar @ world_from_ego                         # CalibrationError

Quaternions are (x, y, z, w), as in ROS messages, and are returned with w >= 0.
The module-level functions work on stacks of rotations and 4x4 matrices (leading axes
broadcast); `calib.tf_buffer` and `calib.deskew` use them to avoid Python loops over time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, overload

import numpy as np
import numpy.typing as npt

from calib.errors import CalibrationError
from calib.frames import normalize_frame

if TYPE_CHECKING:  # records are read by attribute; importing fusion.decode would load cv2
    from fusion.decode.types import OdometryRecord, TransformRecord

F64 = npt.NDArray[np.float64]

RIGID_TOLERANCE: Final = 1e-6
"""Largest |R^T R - I| entry (and |det R - 1|) accepted for a rotation matrix."""

_SMALL_ANGLE: Final = 1e-9  # radians between quaternions below which slerp falls back to lerp


class RosTypestore(Protocol):
    """What `Transform.to_ros` needs of a rosbags typestore: its message classes by name."""

    @property
    def types(self) -> Mapping[str, Any]: ...


_TWO_PI = 2.0 * math.pi


@overload
def wrap_angle(angle: float) -> float: ...
@overload
def wrap_angle(angle: npt.NDArray[Any]) -> npt.NDArray[np.float64]: ...
def wrap_angle(angle: float | npt.NDArray[Any]) -> float | npt.NDArray[np.float64]:
    """`angle` (radians) wrapped to [-pi, pi): pi becomes -pi. Arrays keep their shape; inf, NaN give NaN."""
    values = np.asarray(angle, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        wrapped = np.mod(values + math.pi, _TWO_PI) - math.pi
    # np.mod may round a tiny negative remainder up to exactly 2*pi, which would give +pi.
    wrapped = np.where(wrapped >= math.pi, wrapped - _TWO_PI, wrapped)
    if isinstance(angle, np.ndarray):
        return wrapped
    return float(wrapped)


def quaternion_to_rotation(q_xyzw: npt.ArrayLike) -> F64:
    """Rotation matrices (..., 3, 3) float64 of quaternions (..., 4) (x, y, z, w), normalised first.

    Raises CalibrationError when a quaternion is zero or not finite.
    """
    q = _unit_quaternions(q_xyzw)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty((*q.shape[:-1], 3, 3), dtype=np.float64)
    out[..., 0, 0] = 1.0 - 2.0 * (y * y + z * z)
    out[..., 0, 1] = 2.0 * (x * y - z * w)
    out[..., 0, 2] = 2.0 * (x * z + y * w)
    out[..., 1, 0] = 2.0 * (x * y + z * w)
    out[..., 1, 1] = 1.0 - 2.0 * (x * x + z * z)
    out[..., 1, 2] = 2.0 * (y * z - x * w)
    out[..., 2, 0] = 2.0 * (x * z - y * w)
    out[..., 2, 1] = 2.0 * (y * z + x * w)
    out[..., 2, 2] = 1.0 - 2.0 * (x * x + y * y)
    return out


def rotation_to_quaternion(rotation: npt.ArrayLike) -> F64:
    """Unit quaternions (..., 4) (x, y, z, w) with w >= 0 of rotation matrices (..., 3, 3).

    Uses the numerically best of the four Shepperd cases for each matrix.
    """
    m = np.asarray(rotation, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 w^2, 4 x^2, 4 y^2, 4 z^2 (up to the scale of a not-quite-unit matrix)
    diag = np.stack(
        [1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22],
        axis=-1,
    )
    s = np.sqrt(np.maximum(diag, 1e-300))  # 2 |component| of each case's pivot
    sw, sx, sy, sz = s[..., 0], s[..., 1], s[..., 2], s[..., 3]
    candidates = np.stack(
        [
            np.stack([(m21 - m12) / sw, (m02 - m20) / sw, (m10 - m01) / sw, sw], axis=-1),
            np.stack([sx, (m01 + m10) / sx, (m02 + m20) / sx, (m21 - m12) / sx], axis=-1),
            np.stack([(m01 + m10) / sy, sy, (m12 + m21) / sy, (m02 - m20) / sy], axis=-1),
            np.stack([(m02 + m20) / sz, (m12 + m21) / sz, sz, (m10 - m01) / sz], axis=-1),
        ],
        axis=-2,
    )  # (..., case, xyzw), each 2x the quaternion
    pick = np.argmax(diag, axis=-1)[..., None, None]
    q = np.take_along_axis(candidates, pick, axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    out: F64 = np.where(q[..., 3:4] < 0.0, -q, q)
    return out


def slerp(q0_xyzw: npt.ArrayLike, q1_xyzw: npt.ArrayLike, fraction: npt.ArrayLike) -> F64:
    """Spherical interpolation (..., 4) from unit quaternions q0 to q1 (..., 4) at `fraction` (...).

    Follows the shortest arc (q1 and -q1 give the same result); fractions outside [0, 1]
    extrapolate along the same great circle. Inputs broadcast.
    """
    q0 = np.asarray(q0_xyzw, dtype=np.float64)
    q1 = np.asarray(q1_xyzw, dtype=np.float64)
    u = np.asarray(fraction, dtype=np.float64)[..., None]
    q1 = np.where(np.sum(q0 * q1, axis=-1, keepdims=True) < 0.0, -q1, q1)
    # Angle between the unit 4-vectors, exact also for tiny angles (unlike arccos of the dot).
    half = np.arctan2(np.linalg.norm(q1 - q0, axis=-1), np.linalg.norm(q1 + q0, axis=-1))[..., None]
    theta = 2.0 * half
    small = theta < _SMALL_ANGLE
    sin_theta = np.where(small, 1.0, np.sin(theta))
    w0 = np.where(small, 1.0 - u, np.sin((1.0 - u) * theta) / sin_theta)
    w1 = np.where(small, u, np.sin(u * theta) / sin_theta)
    q = w0 * q0 + w1 * q1
    out: F64 = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return out


def compose_matrices(*matrices: npt.ArrayLike) -> F64:
    """Product (..., 4, 4) of transform matrices, right to left as written; leading axes broadcast."""
    if not matrices:
        return np.eye(4)
    out = np.asarray(matrices[-1], dtype=np.float64)
    for m in reversed(matrices[:-1]):
        out = np.matmul(np.asarray(m, dtype=np.float64), out)
    return out


def invert_matrices(matrices: npt.ArrayLike) -> F64:
    """Inverses (..., 4, 4) of rigid transform matrices (..., 4, 4): `a_from_b` -> `b_from_a`.

    The batched counterpart of `Transform.inverse`, and the only place the inverse is spelled out.
    """
    m = np.asarray(matrices, dtype=np.float64)
    out = np.zeros_like(m)
    rotation_t = np.swapaxes(m[..., :3, :3], -1, -2)
    out[..., :3, :3] = rotation_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rotation_t, m[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def _unit_quaternions(q_xyzw: npt.ArrayLike) -> F64:
    q = np.asarray(q_xyzw, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise CalibrationError(f"a quaternion has 4 values (x, y, z, w), got an array of shape {q.shape}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    bad = ~np.isfinite(norm) | (norm < 1e-12)
    if bad.any():
        first = q.reshape(-1, 4)[np.argmax(bad.reshape(-1))]
        raise CalibrationError(
            f"quaternion {first.tolist()} (x, y, z, w) is zero or not finite; it cannot be a rotation"
        )
    unit: F64 = q / norm
    return unit


def _readonly(array: F64) -> F64:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False, repr=False)
class Transform:
    """A rigid transform `parent_from_child`: p_parent = rotation @ p_child + translation.

    parent, child: frame names, normalised by `calib.frames.normalize_frame` ("/a" == "a").
    rotation: (3, 3) float64, orthonormal with det +1 (within RIGID_TOLERANCE), read-only.
    translation: (3,) float64, metres, read-only.

    The arrays are copied on construction. Equality is identity; compare with `isclose`.
    Raises CalibrationError for empty frame names, wrong shapes, NaN/inf or a non-rigid rotation.
    """

    parent: str
    child: str
    rotation: F64
    translation: F64

    def __post_init__(self) -> None:
        object.__setattr__(self, "parent", normalize_frame(self.parent))
        object.__setattr__(self, "child", normalize_frame(self.child))
        rotation = np.array(self.rotation, dtype=np.float64)
        translation = np.array(self.translation, dtype=np.float64)
        where = f"transform '{self.parent}' <- '{self.child}'"
        if rotation.shape != (3, 3) or translation.shape != (3,):
            raise CalibrationError(
                f"{where}: rotation must be (3, 3) and translation (3,), "
                f"got {rotation.shape} and {translation.shape}"
            )
        if not (np.isfinite(rotation).all() and np.isfinite(translation).all()):
            raise CalibrationError(f"{where} has NaN or infinite values")
        orthonormal_error = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
        det = float(np.linalg.det(rotation))
        if orthonormal_error > RIGID_TOLERANCE or abs(det - 1.0) > RIGID_TOLERANCE:
            raise CalibrationError(
                f"{where}: rotation is not a proper rotation matrix (|R^T R - I| = {orthonormal_error:.3g}, "
                f"det = {det:.6g}); a rigid transform needs an orthonormal rotation with det +1"
            )
        object.__setattr__(self, "rotation", _readonly(rotation))
        object.__setattr__(self, "translation", _readonly(translation))

    # ---- construction

    @classmethod
    def identity(cls, frame: str) -> Transform:
        """The identity `frame_from_frame`."""
        return cls(frame, frame, np.eye(3), np.zeros(3))

    @classmethod
    def from_matrix(
        cls, matrix: npt.ArrayLike, *, parent: str, child: str, atol: float = RIGID_TOLERANCE
    ) -> Transform:
        """`parent_from_child` of a homogeneous matrix (4, 4).

        Raises CalibrationError unless the matrix is rigid within `atol`: last row (0, 0, 0, 1),
        an orthonormal rotation block with det +1, finite values.
        """
        m = np.asarray(matrix, dtype=np.float64)
        where = f"matrix for '{normalize_frame(parent)}' <- '{normalize_frame(child)}'"
        if m.shape != (4, 4):
            raise CalibrationError(f"{where} must be (4, 4), got shape {m.shape}")
        if not np.isfinite(m).all():
            raise CalibrationError(f"{where} has NaN or infinite values")
        if np.abs(m[3] - (0.0, 0.0, 0.0, 1.0)).max() > atol:
            raise CalibrationError(f"{where} is not rigid: its last row is {m[3].tolist()}, not [0, 0, 0, 1]")
        rotation = m[:3, :3]
        orthonormal_error = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
        det = float(np.linalg.det(rotation))
        if orthonormal_error > atol or abs(det - 1.0) > atol:
            raise CalibrationError(
                f"{where} is not rigid: |R^T R - I| = {orthonormal_error:.3g}, det R = {det:.6g} "
                f"(tolerance {atol:g}); scale, shear or a reflection cannot be a sensor pose"
            )
        if orthonormal_error > RIGID_TOLERANCE:  # accepted under a looser atol: snap to the nearest rotation
            rotation = quaternion_to_rotation(rotation_to_quaternion(rotation))
        return cls(parent, child, rotation, m[:3, 3])

    @classmethod
    def from_quaternion(
        cls, translation: npt.ArrayLike, q_xyzw: npt.ArrayLike, *, parent: str, child: str
    ) -> Transform:
        """`parent_from_child` of a translation (3,) and a quaternion (4,) (x, y, z, w), normalised.

        Raises CalibrationError when the quaternion is zero or not finite.
        """
        q = np.asarray(q_xyzw, dtype=np.float64)
        if q.shape != (4,):
            raise CalibrationError(
                f"transform '{normalize_frame(parent)}' <- '{normalize_frame(child)}': "
                f"a quaternion has 4 values (x, y, z, w), got shape {q.shape}"
            )
        return cls(parent, child, quaternion_to_rotation(q), np.asarray(translation, dtype=np.float64))

    @classmethod
    def from_record(cls, record: TransformRecord) -> Transform:
        """`parent_from_child` of a decoded geometry_msgs/TransformStamped."""
        return cls.from_quaternion(
            record.translation, record.rotation_xyzw, parent=record.parent, child=record.child
        )

    @classmethod
    def from_odometry(cls, record: OdometryRecord) -> Transform:
        """`parent_from_child` (the pose of child in parent) of a decoded nav_msgs/Odometry."""
        return cls.from_quaternion(
            record.translation, record.rotation_xyzw, parent=record.parent, child=record.child
        )

    # ---- views

    @property
    def matrix(self) -> F64:
        """Homogeneous matrix (4, 4) float64 (a fresh, writable array)."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return m

    @property
    def quaternion_xyzw(self) -> tuple[float, float, float, float]:
        """The rotation as a unit quaternion (x, y, z, w) with w >= 0."""
        x, y, z, w = rotation_to_quaternion(self.rotation).tolist()
        return (x, y, z, w)

    def to_ros(self, typestore: RosTypestore) -> Any:
        """A geometry_msgs/msg/Transform message built from `typestore`'s classes (ROS1 or ROS2 store)."""
        types = typestore.types
        x, y, z = self.translation.tolist()
        qx, qy, qz, qw = self.quaternion_xyzw
        return types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
            rotation=types["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        )

    # ---- algebra

    def __matmul__(self, other: Transform) -> Transform:
        """`a_from_c = a_from_b @ b_from_c`; raises CalibrationError unless the inner frames match."""
        if not isinstance(other, Transform):
            return NotImplemented
        if self.child != other.parent:
            raise CalibrationError(
                f"cannot compose '{self.parent}' <- '{self.child}' with '{other.parent}' <- '{other.child}': "
                f"the left transform's child '{self.child}' must be the right one's parent '{other.parent}'"
            )
        return Transform(
            self.parent,
            other.child,
            self.rotation @ other.rotation,
            self.rotation @ other.translation + self.translation,
        )

    def inverse(self) -> Transform:
        """`child_from_parent`."""
        rotation_t = self.rotation.T
        return Transform(self.child, self.parent, rotation_t, -(rotation_t @ self.translation))

    def apply(self, points: npt.ArrayLike) -> F64:
        """Points (N, 3) in `child` -> (N, 3) float64 in `parent`. Any float dtype and layout in."""
        p = np.asarray(points)
        if p.ndim != 2 or p.shape[1] != 3:
            raise CalibrationError(f"Transform.apply takes points of shape (N, 3), got {p.shape}")
        return np.asarray(p, dtype=np.float64) @ self.rotation.T + self.translation

    def isclose(self, other: Transform, *, atol: float = 1e-9) -> bool:
        """Same frames, and rotation and translation equal within `atol`."""
        return (
            self.parent == other.parent
            and self.child == other.child
            and bool(np.allclose(self.rotation, other.rotation, rtol=0.0, atol=atol))
            and bool(np.allclose(self.translation, other.translation, rtol=0.0, atol=atol))
        )

    def __repr__(self) -> str:
        t = ", ".join(f"{v:.6g}" for v in self.translation.tolist())
        q = ", ".join(f"{v:.6g}" for v in self.quaternion_xyzw)
        return f"Transform({self.parent!r} <- {self.child!r}, translation=[{t}], q_xyzw=[{q}])"


def interpolate(t0_ns: int, a: Transform, t1_ns: int, b: Transform, t_ns: int) -> Transform:
    """The transform at `t_ns` between `a` (at `t0_ns`) and `b` (at `t1_ns`).

    Translation is linear, rotation follows the shortest arc (slerp). Times outside
    [t0_ns, t1_ns] extrapolate at the same rates. `a` and `b` must have the same frames.
    Raises CalibrationError for different frames, or t0_ns == t1_ns with t_ns elsewhere.
    """
    if (a.parent, a.child) != (b.parent, b.child):
        raise CalibrationError(
            f"cannot interpolate between '{a.parent}' <- '{a.child}' and '{b.parent}' <- '{b.child}': "
            "both ends must relate the same two frames"
        )
    if t1_ns == t0_ns:
        if t_ns != t0_ns:
            raise CalibrationError(
                f"cannot interpolate '{a.parent}' <- '{a.child}' at {t_ns} ns "
                f"from two samples both at {t0_ns} ns"
            )
        return b
    u = (t_ns - t0_ns) / (t1_ns - t0_ns)
    q = slerp(rotation_to_quaternion(a.rotation), rotation_to_quaternion(b.rotation), u)
    translation = a.translation + u * (b.translation - a.translation)
    return Transform(a.parent, a.child, quaternion_to_rotation(q), translation)
