"""Rigid transforms for the simulator: 4x4 homogeneous matrices, vectorised over leading axes.

A transform is named `<to>_from_<from>` and maps points of `<from>` into `<to>`; they compose
right to left (`world_from_lidar = world_from_base @ base_from_lidar`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def yaw_transform(x: npt.ArrayLike, y: npt.ArrayLike, z: npt.ArrayLike, yaw: npt.ArrayLike) -> F64:
    """Transforms (..., 4, 4): rotation `yaw` about +z, then translation (x, y, z). Inputs broadcast."""
    x, y, z, yaw = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, y, z, yaw)))
    out = np.zeros((*x.shape, 4, 4))
    c = np.cos(yaw)
    s = np.sin(yaw)
    out[..., 0, 0] = c
    out[..., 0, 1] = -s
    out[..., 1, 0] = s
    out[..., 1, 1] = c
    out[..., 2, 2] = 1.0
    out[..., 0, 3] = x
    out[..., 1, 3] = y
    out[..., 2, 3] = z
    out[..., 3, 3] = 1.0
    return out


def transform_from_rotation(rotation: npt.ArrayLike, translation: npt.ArrayLike) -> F64:
    """A (4, 4) transform from a (3, 3) rotation and a (3,) translation."""
    out = np.eye(4)
    out[:3, :3] = np.asarray(rotation, dtype=np.float64)
    out[:3, 3] = np.asarray(translation, dtype=np.float64)
    return out


def rotation_zyx(yaw: float, pitch: float, roll: float) -> F64:
    """(3, 3) rotation Rz(yaw) @ Ry(pitch) @ Rx(roll), radians."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    out: F64 = rz @ ry @ rx
    return out


def inverse(transform: npt.ArrayLike) -> F64:
    """The inverse of rigid transforms (..., 4, 4): `a_from_b` -> `b_from_a`."""
    t = np.asarray(transform, dtype=np.float64)
    out = np.zeros_like(t)
    rot_t = np.swapaxes(t[..., :3, :3], -1, -2)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, t[..., :3, 3])  # -R^T t
    out[..., 3, 3] = 1.0
    return out


def apply(transform: npt.ArrayLike, points: npt.ArrayLike) -> F64:
    """Points (..., 3) mapped by transforms (..., 4, 4) (broadcast over the leading axes)."""
    t = np.asarray(transform, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    out: F64 = np.einsum("...ij,...j->...i", t[..., :3, :3], p) + t[..., :3, 3]
    return out


def yaw_of(transform: npt.ArrayLike) -> F64:
    """Heading (radians) of transforms (..., 4, 4): the angle of their x axis about +z."""
    t = np.asarray(transform, dtype=np.float64)
    return np.arctan2(t[..., 1, 0], t[..., 0, 0])


def quaternion_xyzw(rotation: npt.ArrayLike) -> tuple[float, float, float, float]:
    """The unit quaternion (x, y, z, w), w >= 0, of a (3, 3) rotation matrix."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0.0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = (
            (m[2, 1] - m[1, 2]) / s,
            (m[0, 2] - m[2, 0]) / s,
            (m[1, 0] - m[0, 1]) / s,
            0.25 * s,
        )
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    norm = math.sqrt(sum(c * c for c in q))
    sign = -1.0 if q[3] < 0.0 else 1.0
    x, y, z, w = (sign * c / norm for c in q)
    return (x, y, z, w)
