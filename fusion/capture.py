"""When the LiDAR caught each detected object: a box's capture offset from its sweep's stamp.

A spinning LiDAR sweeps the scene over one period (100 ms at 10 Hz), and the sweep's header stamp is
one instant of it. Deskewing (`calib.deskew`) takes out the ego motion only, so a moving object's points
(and the box a detector fits to them) lie where the object was when the beam passed it, up to a period
away from the stamp: a car ahead at 16 m/s, caught 50 ms after the stamp, is boxed 0.8 m ahead of where
it was at the stamp. `trackers.refine` moves each box back by velocity x its capture offset; this module
gives the offsets, after any detector, from the boxes in the LiDAR frame:

- with the sweep's per-point times (`PointCloud.time_offset_ns`) and at least `MIN_POINTS` points in the
  box: the midpoint of the earliest and the latest of its points' times. A box's centre is the middle
  of its faces, each caught when the beam passed it, so it moved by velocity x the mean of the two
  faces' capture times (their difference stretches the box's length instead: `refine`'s `sweep_spin`
  correction). The points' times need no model of the spin, and across the sweep's seam (the azimuth
  where it starts and ends, behind the car for most sensors) an object's points are caught a whole
  period apart on either side of it: their midpoint is the middle of the sweep, as the box's centre is
  between its two halves, while the crossing time of the centre's azimuth is either end of the sweep;
- else from the sweep's phase (`fusion.sync.SweepPhase`: fitted to the per-point times, or the
  config's period, spin and stamp azimuth): the midpoint of the earliest and the latest crossing of the
  box's four corners (a box across the seam: the middle of the sweep, as above);
- else unknown (NaN): no correction.

        beam at the stamp (pi, behind)        cw spin: azimuth pi -> pi/2 -> 0 -> -pi/2 -> -pi
                 seam  |                      an object ahead (azimuth 0) is caught 50 ms in,
          t = 100 ms   |   t = 0              one on the left (pi/2) 25 ms in, one behind
                 ------+------                straddles the seam: its halves 0 and 100 ms in
                     sensor
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from calib.projection import box_corners
from fusion.boxes import Boxes
from fusion.decode.types import PointCloud
from fusion.sync import FusedFrame, SweepPhase

F64 = npt.NDArray[np.float64]

_CELL_M: Final = 2.0  # the grid that finds each point's boxes: cells of at least this size (m) ...
_MAX_CELLS: Final = 1 << 16  # ... and at most this many of them

MIN_POINTS: Final = 3
"""Fewer of a box's points than this (or a cloud without per-point times): the offset comes from the
sweep's phase and the box's corners instead."""


def capture_offsets_ns(boxes: F64, cloud: PointCloud, phase: SweepPhase | None) -> F64:
    """(N,) each box's capture offset from `cloud.stamp_ns` (module docstring), NaN where unknown.

    boxes: (N, 7) x y z length width height yaw in the cloud's (LiDAR) frame.
    cloud: the sweep the boxes were detected in; its per-point times are used where it has them.
    phase: the sweep's azimuth-versus-time line (`fusion.sync.sweep_phase`), or None.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    out = np.full(boxes.shape[0], np.nan)
    if not boxes.shape[0]:
        return out
    if cloud.time_offset_ns is not None and len(cloud):
        lo, hi, count = _box_time_range(
            np.ascontiguousarray(cloud.xyz, dtype=np.float32),
            np.ascontiguousarray(cloud.time_offset_ns, dtype=np.int64),
            np.ascontiguousarray(boxes),
        )
        enough = count >= MIN_POINTS
        out[enough] = 0.5 * (lo[enough] + hi[enough])
    if phase is not None and np.isnan(out).any():
        rest = np.isnan(out)
        out[rest] = phase_offsets_ns(boxes[rest], phase)
    return out


def phase_offsets_ns(boxes: F64, phase: SweepPhase) -> F64:
    """(N,) the midpoint of the earliest and latest offsets at which the beam of the sweep `phase`
    points at a corner of each of `boxes` (N, 7) (LiDAR frame; `SweepPhase.crossing_offset_ns` of
    each corner's azimuth; `calib.projection.box_corners`)."""
    corners = box_corners(np.asarray(boxes, dtype=np.float64).reshape(-1, 7))  # (N, 8, 3)
    times = phase.crossing_offsets_ns(np.arctan2(corners[..., 1], corners[..., 0]))
    return np.asarray(0.5 * (times.min(axis=1) + times.max(axis=1)), dtype=np.float64)


def with_capture_offsets(boxes: Boxes, frame: FusedFrame) -> Boxes:
    """`boxes` detected in `frame`'s sweep with their unknown (NaN) capture offsets filled in
    (`capture_offsets_ns` of the frame's cloud and phase); offsets a detector set itself (0: its boxes
    are at the stamp already) are kept."""
    unknown = np.isnan(boxes.capture_offset_ns)
    if not unknown.any():
        return boxes
    offsets = boxes.capture_offset_ns.copy()
    offsets[unknown] = capture_offsets_ns(boxes.boxes[unknown], frame.cloud, frame.phase)
    return replace(boxes, capture_offset_ns=offsets)


@njit(cache=True)
def _box_time_range(
    xyz: npt.NDArray[np.float32], t_ns: npt.NDArray[np.int64], boxes: F64
) -> tuple[F64, F64, npt.NDArray[np.int64]]:  # pragma: no cover - numba
    """Per box (N, 7): the earliest and latest time (ns) of the points `xyz` (M, 3) inside it, and how
    many there are (NaN times where none). The boxes are binned into a ground-plane grid of `_CELL_M`
    cells (each box into the cells its bounding circle's square covers), so each point is tested
    against the few boxes of its cell only."""
    n = boxes.shape[0]
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    count = np.zeros(n, np.int64)
    cos = np.cos(boxes[:, 6])
    sin = np.sin(boxes[:, 6])
    radius = np.sqrt(boxes[:, 3] * boxes[:, 3] + boxes[:, 4] * boxes[:, 4]) / 2.0
    x0 = np.min(boxes[:, 0] - radius)
    y0 = np.min(boxes[:, 1] - radius)
    x1 = np.max(boxes[:, 0] + radius)
    y1 = np.max(boxes[:, 1] + radius)
    cell = max(_CELL_M, math.sqrt((x1 - x0) * (y1 - y0) / _MAX_CELLS))  # a bounded grid, whatever the spread
    nx = int((x1 - x0) / cell) + 1
    ny = int((y1 - y0) / cell) + 1
    # CSR: the boxes of each cell, members[first[c]:first[c + 1]]
    first = np.zeros(nx * ny + 1, np.int64)
    for k in range(n):
        for cx in range(
            int((boxes[k, 0] - radius[k] - x0) / cell), int((boxes[k, 0] + radius[k] - x0) / cell) + 1
        ):
            for cy in range(
                int((boxes[k, 1] - radius[k] - y0) / cell), int((boxes[k, 1] + radius[k] - y0) / cell) + 1
            ):
                first[min(cx, nx - 1) * ny + min(cy, ny - 1) + 1] += 1
    first = np.cumsum(first)
    members = np.empty(first[-1], np.int64)
    fill = first[:-1].copy()
    for k in range(n):
        for cx in range(
            int((boxes[k, 0] - radius[k] - x0) / cell), int((boxes[k, 0] + radius[k] - x0) / cell) + 1
        ):
            for cy in range(
                int((boxes[k, 1] - radius[k] - y0) / cell), int((boxes[k, 1] + radius[k] - y0) / cell) + 1
            ):
                c = min(cx, nx - 1) * ny + min(cy, ny - 1)
                members[fill[c]] = k
                fill[c] += 1
    for i in range(xyz.shape[0]):
        px, py, pz = float(xyz[i, 0]), float(xyz[i, 1]), float(xyz[i, 2])
        if not (x0 <= px <= x1 and y0 <= py <= y1):
            continue
        c = min(int((px - x0) / cell), nx - 1) * ny + min(int((py - y0) / cell), ny - 1)
        for j in range(first[c], first[c + 1]):
            k = members[j]
            dx = px - boxes[k, 0]
            dy = py - boxes[k, 1]
            if abs(pz - boxes[k, 2]) > boxes[k, 5] / 2.0:
                continue
            if abs(dx * cos[k] + dy * sin[k]) > boxes[k, 3] / 2.0:
                continue
            if abs(-dx * sin[k] + dy * cos[k]) > boxes[k, 4] / 2.0:
                continue
            t = float(t_ns[i])
            lo[k] = min(lo[k], t)
            hi[k] = max(hi[k], t)
            count[k] += 1
    for k in range(n):
        if count[k] == 0:
            lo[k] = np.nan
            hi[k] = np.nan
    return lo, hi, count
