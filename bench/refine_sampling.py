"""Are the car-size misses sampling shortfalls? Per car, each detection's measured length and height
against how far the LiDAR's sampling could leave it short, and the bounds that would give.

    .venv/bin/python bench/refine_sampling.py [--seeds 1 2 3 4] [--seconds 3] [--all] [--frames]

Same logs, detector, tracking and matching as `bench/refine_sizes.py` (its cache). A spinning LiDAR
samples a car's side once per column (azimuth step `dphi`: the simulator's 512 columns a revolution,
0.70 degrees), so where the side's far end meets the line of sight at a grazing angle theta, consecutive
samples along the side are range * dphi / sin(theta) apart and the measured extent is short by up to
that ("s_l"). Likewise the highest beam that hits a car's face is up to one beam spacing (range *
(tan e_next - tan e_hit), VLP-32C elevations) below its top ("s_h"). Each detection's observed length m
(`Boxes.measured`, sweep stretch taken out with the refined velocity) is a lower bound L >= m and, had
the next column passed the car (free space, taken as given here: an optimistic bound), an upper bound L
<= m + s_l; the same for the height h (box height: top point above the ground). Per car: the truth,
today's estimate, max m and min(m + s_l) over its detections (the bounds' intersection, empty when
max m > min(m + s)), and the same for the height; how many detections fit the sampling model (true
length - m within [0, s_l], 3 cm tolerance), fall short by more (occluded, cut off), or are longer;
`--frames` prints every detection's row.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from refine_eval import BOX, matched_cars
from refine_sizes import cached

from fusion.simulate.rig import VLP32C_ELEVATIONS_DEG
from trackers import TrackTable, refine, track_both_ways
from trackers.refine import _unsmeared

F64 = npt.NDArray[np.float64]
DPHI = 2.0 * math.pi / 512  # the simulated logs' azimuth step (simulate_log's lidar_columns=512)
TAN_EL = np.tan(np.radians(np.asarray(VLP32C_ELEVATIONS_DEG)))


def length_spacing(truth: F64, sensor: F64) -> tuple[F64, F64]:
    """Per row: the column spacing along the car's length at the far end(s) of its visible side, summed
    over the ends whose end face the sensor does not see (m), and the view angle there (deg, 0 end-on).
    truth: (N, 7) true boxes; sensor: (N, 3)."""
    n = truth.shape[0]
    out, view = np.zeros(n), np.zeros(n)
    for i in range(n):
        x, y, _, length, width, _, yaw = truth[i]
        u = np.array([math.cos(yaw), math.sin(yaw)])
        v = np.array([-u[1], u[0]])
        rel = sensor[i, :2] - np.array([x, y])
        side = math.copysign(1.0, float(rel @ v)) * width / 2.0  # the side facing the sensor
        along = float(rel @ u)
        total, worst = 0.0, 90.0
        for end in (1.0, -1.0):
            if along * end > length / 2.0:  # the sensor is beyond this end: its end face is seen
                continue
            corner = np.array([x, y]) + end * length / 2.0 * u + side * v
            ray = corner - sensor[i, :2]
            r = float(np.hypot(*ray))
            sin_t = abs(float(ray[0] * u[1] - ray[1] * u[0])) / r
            total += r * DPHI / max(sin_t, 1e-3)
            worst = min(worst, math.degrees(math.asin(min(sin_t, 1.0))))
        out[i], view[i] = total, worst
    return out, view


def height_spacing(box: F64, truth: F64, sensor: F64) -> F64:
    """Per row: the vertical gap between the beam through the detected top and the next beam up, at the
    range of the car's nearest point (m; inf where no beam is above). box, truth: (N, 7); sensor (N, 3)."""
    out = np.full(box.shape[0], np.inf)
    for i in range(box.shape[0]):
        x, y, _, length, width, _, yaw = truth[i]
        c, s = math.cos(yaw), math.sin(yaw)
        rel = sensor[i, :2] - np.array([x, y])
        local = np.array([rel @ [c, s], rel @ [-s, c]])
        nearest = np.clip(local, [-length / 2, -width / 2], [length / 2, width / 2])
        r = float(np.hypot(*(local - nearest)))
        top = box[i, 2] + box[i, 5] / 2.0  # the detected top (world z)
        t_hit = (top - sensor[i, 2]) / r
        above = TAN_EL[t_hit + 1e-4 < TAN_EL]
        if above.size:
            out[i] = r * (float(above.min()) - t_hit)
    return out


@dataclass(frozen=True)
class Car:
    """One car's detections (K): its true and refined l w h (3,), each detection's observed length `m`,
    column spacing `s_l`, view angle (deg), height `h`, beam spacing `s_h`, range, completed flag,
    frame and points (K,)."""

    true: F64
    est: F64
    m: F64
    s_l: F64
    view: F64
    h: F64
    s_h: F64
    range: F64
    completed: npt.NDArray[np.bool_]
    frames: npt.NDArray[np.int64]
    points: npt.NDArray[np.int32]


def car_rows(tracks: TrackTable, refined: TrackTable, gt: pa.Table, gid: int, tid: int) -> Car:
    mine = np.flatnonzero(tracks.track_id == tid)
    det = tracks.select(mine)
    ref = refined.select(refined.track_id == tid)
    at = np.searchsorted(ref.frame_index, det.frame_index)
    vel = ref.velocity[at]
    unsmeared = _unsmeared(det.boxes_world, vel, det.sensor_origin, -math.tau / 0.1)
    m = det.measured[:, 0] - (det.boxes_world[:, 3] - unsmeared[:, 0])  # observed extent, stretch out
    completed = det.measured[:, 0] < det.boxes_world[:, 3] - 1e-6
    frame = gt.column("frame_index").to_numpy()
    ids = gt.column("track_id").to_numpy()
    boxes = np.stack([gt.column(name).to_numpy() for name in BOX], axis=1)
    truth = np.full((len(det), 7), np.nan)
    for k, f in enumerate(det.frame_index.tolist()):
        hit = np.flatnonzero((frame == f) & (ids == gid))
        if hit.size:
            truth[k] = boxes[hit[0]]
    ok = np.isfinite(truth).all(axis=1)
    s_l, view = length_spacing(truth[ok], det.sensor_origin[ok])
    s_h = height_spacing(det.boxes_world[ok], truth[ok], det.sensor_origin[ok])
    m, h = m[ok], det.boxes_world[ok, 5]
    true = truth[ok][0, 3:6]
    rng = np.hypot(*(truth[ok][:, :2] - det.sensor_origin[ok, :2]).T)
    return Car(true, ref.boxes_world[0, 3:6], m, s_l, view, h, s_h, rng, completed[ok], det.frame_index[ok],
               det.num_points[ok])  # fmt: skip


def interval(lo: F64, spacing: F64) -> tuple[float, float]:
    return float(lo.max()), float((lo + spacing).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--all", action="store_true", help="every car, not only those off by 10 cm or more")
    parser.add_argument("--frames", action="store_true", help="each detection's row too")
    args = parser.parse_args()
    print("| seed | gt | true l / h | est l / h | max m | min(m + s_l) | median s_l | views deg | max h |"
          " min(h + s_h) | median s_h | range m | L - m in [0, s_l] / > s_l / < 0 |")  # fmt: skip
    print("|" + "---|" * 13)
    for seed in args.seeds:
        frames, gt = cached(seed, args.seconds)
        tracks = track_both_ways(frames)
        refined = refine(tracks)
        for gid, tid, true, _ in matched_cars(refined, gt):
            size = refined.boxes_world[refined.track_id == tid][0, 3:6]
            if not args.all and np.abs(size - true).max() < 0.10:
                continue
            r = car_rows(tracks, refined, gt, gid, tid)
            lo_l, hi_l = interval(r.m, r.s_l)
            lo_h, hi_h = interval(r.h, r.s_h)
            t, e = r.true, r.est
            short = t[0] - r.m
            fits = int(((short >= -0.03) & (short <= r.s_l + 0.03)).sum())
            beyond, over = int((short > r.s_l + 0.03).sum()), int((short < -0.03).sum())
            print(f"| {seed} | {gid} | {t[0]:.2f} / {t[2]:.2f} | {e[0]:.2f} / {e[2]:.2f} | {lo_l:.2f} | "
                  f"{hi_l:.2f} | {np.median(r.s_l):.2f} | {r.view.min():.0f}-{r.view.max():.0f} | "
                  f"{lo_h:.2f} | {hi_h:.2f} | {np.median(r.s_h):.2f} | "
                  f"{r.range.min():.0f}-{r.range.max():.0f} | {fits} / {beyond} / {over} |")  # fmt: skip
            if args.frames:
                for k in range(r.m.size):
                    print(f"    f{r.frames[k]:3d} r {r.range[k]:5.1f} view {r.view[k]:4.1f} "
                          f"m {r.m[k]:.2f}{'c' if r.completed[k] else ' '} s_l {r.s_l[k]:5.2f} "
                          f"h {r.h[k]:.2f} s_h {r.s_h[k]:.2f} pts {r.points[k]}")  # fmt: skip


if __name__ == "__main__":
    main()
