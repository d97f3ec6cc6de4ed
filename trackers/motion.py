"""Motion models: Kalman filters over all tracks at once, behind one `MotionModel` protocol.

Each model keeps the states of T tracks in arrays: `x` (T, n) and covariances `P` (T, n, n), and
predicts or updates them all in one vectorised call. Measurements are boxes (T, 7)
`x y z length width height yaw`. Noise standard deviations come per track as `noise` (T, len(NOISE_FIELDS)),
rows built by `noise_row(params)`, so tracks of different categories share one array.

- `ConstantVelocity` ("cv"): state `x y z yaw l w h vx vy vz`, linear KF, white-noise acceleration.
- `CTRV` ("ctrv"): state `x y z yaw v yaw_rate l w h`, constant turn rate and velocity along the heading,
  an extended KF (the prediction is linearised; the measurement is linear).

Both update yaw with the innovation wrapped to [-pi, pi), and a detection whose heading is more than
pi/2 off the track's is taken as flipped (yaw + pi), as box detectors often confuse front and back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from numba import njit

from trackers.config import Params

F64 = npt.NDArray[np.float64]

NOISE_FIELDS: Final = (
    "q_accel",
    "q_yaw_rate",
    "q_z",
    "q_size",
    "r_pos",
    "r_yaw",
    "r_size",
    "init_speed_std",
    "init_yaw_rate_std",
)
_QA, _QW, _QZ, _QS, _RP, _RY, _RS, _IV, _IW = range(len(NOISE_FIELDS))


def noise_row(params: Params) -> F64:
    """(len(NOISE_FIELDS),) float64 noise standard deviations of one category."""
    return np.array([getattr(params, name) for name in NOISE_FIELDS], dtype=np.float64)


class MotionModel(Protocol):
    """A Kalman filter over T tracks at once (see module docstring for shapes)."""

    name: str
    dim: int  # n, the state size

    def initiate(self, boxes: F64, noise: F64) -> tuple[F64, F64]:
        """States (T, n) and covariances (T, n, n) of new tracks at their first boxes (T, 7)."""
        ...

    def predict(self, x: F64, p: F64, dt_s: float, noise: F64) -> tuple[F64, F64]:
        """States and covariances `dt_s` seconds later (new arrays)."""
        ...

    def update(self, x: F64, p: F64, boxes: F64, noise: F64) -> tuple[F64, F64]:
        """States and covariances corrected by one measured box (T, 7) each (new arrays)."""
        ...

    def boxes(self, x: F64) -> F64:
        """Boxes (T, 7) of states (T, n)."""
        ...

    def velocity(self, x: F64) -> F64:
        """Velocities (T, 3) m/s of states (T, n)."""
        ...


@njit(cache=True)
def _wrap(angle: float) -> float:
    """`angle` wrapped to [-pi, pi) (scalar, for the kernels; calib.transform.wrap_angle for arrays)."""
    out = (angle + math.pi) % (2.0 * math.pi) - math.pi
    return out - 2.0 * math.pi if out >= math.pi else out


@njit(cache=True)
def _update_kernel(x: F64, p: F64, boxes: F64, r_std: F64, h_idx: npt.NDArray[np.intp]) -> None:
    """KF update in place of every row for a measurement selecting state entries `h_idx` (7,).

    x (T, n), p (T, n, n), boxes (T, 7), r_std (T, 7) measurement standard deviations (box order).
    K = P H^T S^-1 with S = H P H^T + R solved by Cholesky; P -= K H P.
    """
    n = x.shape[1]
    m = 7
    innov = np.empty(m)
    s = np.empty((m, m))
    y = np.empty((m, n))  # S^-1 H P
    for t in range(x.shape[0]):
        for a in range(m):
            innov[a] = boxes[t, a] - x[t, h_idx[a]]
        err = _wrap(innov[6])
        if abs(err) > 0.5 * math.pi:  # front and back confused: the flipped box's heading
            err = _wrap(err + math.pi)
        innov[6] = err
        for a in range(m):
            for b in range(m):
                s[a, b] = p[t, h_idx[a], h_idx[b]]
            s[a, a] += r_std[t, a] * r_std[t, a]
            for c in range(n):
                y[a, c] = p[t, h_idx[a], c]
        # Cholesky S = L L^T in the lower triangle of s
        for a in range(m):
            for b in range(a + 1):
                acc = s[a, b]
                for c in range(b):
                    acc -= s[a, c] * s[b, c]
                s[a, b] = math.sqrt(acc) if a == b else acc / s[b, b]
        # y <- S^-1 y: forward then backward substitution, all n columns
        for a in range(m):
            for c in range(n):
                acc = y[a, c]
                for b in range(a):
                    acc -= s[a, b] * y[b, c]
                y[a, c] = acc / s[a, a]
        for a in range(m - 1, -1, -1):
            for c in range(n):
                acc = y[a, c]
                for b in range(a + 1, m):
                    acc -= s[b, a] * y[b, c]
                y[a, c] = acc / s[a, a]
        # x += (H P)^T S^-1 innov = y^T innov; P -= (H P)^T y, with H P read before P changes
        for c in range(n):
            acc = 0.0
            for a in range(m):
                acc += y[a, c] * innov[a]
            x[t, c] += acc
        hp = np.empty((m, n))
        for a in range(m):
            for c in range(n):
                hp[a, c] = p[t, h_idx[a], c]
        for c in range(n):
            for d in range(c, n):
                acc = 0.0
                for a in range(m):
                    acc += hp[a, c] * y[a, d]
                value = p[t, c, d] - acc
                p[t, c, d] = value
                p[t, d, c] = value
        x[t, h_idx[6]] = _wrap(x[t, h_idx[6]])


def _linear_update(x: F64, p: F64, boxes: F64, noise: F64, h_idx: npt.NDArray[np.intp]) -> tuple[F64, F64]:
    """KF update (new arrays) for a measurement that selects state entries `h_idx` (7,), box order."""
    x_new, p_new = np.array(x, dtype=np.float64), np.array(p, dtype=np.float64)
    r_std = np.ascontiguousarray(noise[:, [_RP, _RP, _RP, _RS, _RS, _RS, _RY]])
    _update_kernel(x_new, p_new, np.ascontiguousarray(boxes, dtype=np.float64), r_std, h_idx)
    return x_new, p_new


@njit(cache=True)
def _cv_predict_kernel(x: F64, p: F64, dt: float, noise: F64) -> None:
    """Constant-velocity prediction in place: pos += dt * vel for (0, 7), (1, 8), (2, 9); P = F P F^T + Q."""
    n = x.shape[1]
    dt2, dt3, dt4 = dt * dt, dt**3 / 2.0, dt**4 / 4.0
    for t in range(x.shape[0]):
        for i in range(3):
            x[t, i] += dt * x[t, 7 + i]
        x[t, 3] = _wrap(x[t, 3])
        for i in range(3):  # rows: F P
            for c in range(n):
                p[t, i, c] += dt * p[t, 7 + i, c]
        for i in range(3):  # columns: (F P) F^T
            for r in range(n):
                p[t, r, i] += dt * p[t, r, 7 + i]
        for i in range(3):
            q = noise[t, _QA] ** 2 if i < 2 else noise[t, _QZ] ** 2
            p[t, i, i] += q * dt4
            p[t, i, 7 + i] += q * dt3
            p[t, 7 + i, i] += q * dt3
            p[t, 7 + i, 7 + i] += q * dt2
        p[t, 3, 3] += noise[t, _QW] ** 2 * dt2
        for i in range(4, 7):
            p[t, i, i] += noise[t, _QS] ** 2 * dt


@njit(cache=True)
def _ctrv_predict_kernel(x: F64, p: F64, dt: float, noise: F64, min_yaw_rate: float) -> None:
    """CTRV prediction in place (state x y z yaw v yaw_rate l w h); P = F P F^T + Q, F the Jacobian."""
    n = x.shape[1]
    f = np.eye(n)
    fp = np.empty((n, n))
    g_a = np.zeros(n)
    g_w = np.zeros(n)
    for t in range(x.shape[0]):
        yaw, v, w = x[t, 3], x[t, 4], x[t, 5]
        yaw2 = yaw + w * dt
        s0, c0, s1, c1 = math.sin(yaw), math.cos(yaw), math.sin(yaw2), math.cos(yaw2)
        if abs(w) > min_yaw_rate:
            x[t, 0] += v / w * (s1 - s0)
            x[t, 1] += v / w * (c0 - c1)
            f[0, 3], f[0, 4] = v / w * (c1 - c0), (s1 - s0) / w
            f[0, 5] = v * dt * c1 / w - v * (s1 - s0) / (w * w)
            f[1, 3], f[1, 4] = v / w * (s1 - s0), (c0 - c1) / w
            f[1, 5] = v * dt * s1 / w - v * (c0 - c1) / (w * w)
        else:
            x[t, 0] += v * c0 * dt
            x[t, 1] += v * s0 * dt
            f[0, 3], f[0, 4], f[0, 5] = -v * s0 * dt, c0 * dt, -0.5 * v * dt * dt * s0
            f[1, 3], f[1, 4], f[1, 5] = v * c0 * dt, s0 * dt, 0.5 * v * dt * dt * c0
        f[3, 5] = dt
        x[t, 3] = _wrap(yaw2)
        for r in range(n):  # F P, F sparse beyond rows 0, 1, 3
            for c in range(n):
                fp[r, c] = p[t, r, c]
        for r in (0, 1, 3):
            for c in range(n):
                acc = p[t, r, c]
                for k in (3, 4, 5):
                    if f[r, k] != 0.0 and k != r:
                        acc += f[r, k] * p[t, k, c]
                fp[r, c] = acc
        for r in range(n):  # (F P) F^T
            for c in range(n):
                p[t, r, c] = fp[r, c]
            for c in (0, 1, 3):
                acc = fp[r, c]
                for k in (3, 4, 5):
                    if f[c, k] != 0.0 and k != c:
                        acc += fp[r, k] * f[c, k]
                p[t, r, c] = acc
        half = 0.5 * dt * dt
        g_a[0], g_a[1], g_a[4] = half * c0, half * s0, dt
        g_w[3], g_w[5] = half, dt
        qa, qw = noise[t, _QA] ** 2, noise[t, _QW] ** 2
        for r in range(n):
            for c in range(n):
                p[t, r, c] += qa * g_a[r] * g_a[c] + qw * g_w[r] * g_w[c]
        p[t, 2, 2] += noise[t, _QZ] ** 2 * dt
        for i in range(6, 9):
            p[t, i, i] += noise[t, _QS] ** 2 * dt


class ConstantVelocity:
    """Constant-velocity KF, state `x y z yaw l w h vx vy vz` (n = 10)."""

    name = "cv"
    dim = 10
    _H = np.array([0, 1, 2, 4, 5, 6, 3], dtype=np.intp)

    def initiate(self, boxes: F64, noise: F64) -> tuple[F64, F64]:
        t = boxes.shape[0]
        x = np.zeros((t, self.dim))
        x[:, self._H] = boxes
        var = np.zeros((t, self.dim))
        var[:, self._H] = noise[:, [_RP, _RP, _RP, _RS, _RS, _RS, _RY]] ** 2
        var[:, 7:9] = noise[:, [_IV]] ** 2
        var[:, 9] = (0.1 * noise[:, _IV]) ** 2
        p = np.zeros((t, self.dim, self.dim))
        idx = np.arange(self.dim)
        p[:, idx, idx] = var
        return x, p

    def predict(self, x: F64, p: F64, dt_s: float, noise: F64) -> tuple[F64, F64]:
        x_new, p_new = np.array(x, dtype=np.float64), np.array(p, dtype=np.float64)
        _cv_predict_kernel(x_new, p_new, float(dt_s), np.ascontiguousarray(noise, dtype=np.float64))
        return x_new, p_new

    def update(self, x: F64, p: F64, boxes: F64, noise: F64) -> tuple[F64, F64]:
        return _linear_update(x, p, boxes, noise, self._H)

    def boxes(self, x: F64) -> F64:
        return x[:, self._H]

    def velocity(self, x: F64) -> F64:
        return x[:, 7:10].copy()


class CTRV:
    """Constant turn rate and velocity EKF, state `x y z yaw v yaw_rate l w h` (n = 9)."""

    name = "ctrv"
    dim = 9
    _H = np.array([0, 1, 2, 6, 7, 8, 3], dtype=np.intp)
    _MIN_YAW_RATE = 1e-4  # rad/s; below, the straight-line limit of the motion equations

    def initiate(self, boxes: F64, noise: F64) -> tuple[F64, F64]:
        t = boxes.shape[0]
        x = np.zeros((t, self.dim))
        x[:, self._H] = boxes
        var = np.zeros((t, self.dim))
        var[:, self._H] = noise[:, [_RP, _RP, _RP, _RS, _RS, _RS, _RY]] ** 2
        var[:, 4] = noise[:, _IV] ** 2
        var[:, 5] = noise[:, _IW] ** 2
        p = np.zeros((t, self.dim, self.dim))
        idx = np.arange(self.dim)
        p[:, idx, idx] = var
        return x, p

    def predict(self, x: F64, p: F64, dt_s: float, noise: F64) -> tuple[F64, F64]:
        x_new, p_new = np.array(x, dtype=np.float64), np.array(p, dtype=np.float64)
        noise = np.ascontiguousarray(noise, dtype=np.float64)
        _ctrv_predict_kernel(x_new, p_new, float(dt_s), noise, self._MIN_YAW_RATE)
        return x_new, p_new

    def update(self, x: F64, p: F64, boxes: F64, noise: F64) -> tuple[F64, F64]:
        return _linear_update(x, p, boxes, noise, self._H)

    def boxes(self, x: F64) -> F64:
        return x[:, self._H]

    def velocity(self, x: F64) -> F64:
        out = np.zeros((x.shape[0], 3))
        out[:, 0] = x[:, 4] * np.cos(x[:, 3])
        out[:, 1] = x[:, 4] * np.sin(x[:, 3])
        return out


MOTION_MODELS: Final[Mapping[str, Callable[[], MotionModel]]] = MappingProxyType(
    {"cv": ConstantVelocity, "ctrv": CTRV}
)
