"""Which parked objects refinement holds still, and which movers, on simulated logs with ground truth.

    .venv/bin/python bench/refine_static.py [--seeds 7 8 9 10] [--seconds 10] [--all]

Same logs, detector and tracking as `bench/refine_eval.py` (`refine_sizes.cached`: cached under
$FUSION_BENCH_CACHE or the temp dir). Per seed, refine(both) with `RefineConfig(static_robust=False)`
(the smoothed test alone) and with the default (also the robust test): MOTA, IDF1, MOTP, HOTA. Then the
ground-truth objects matched (centre distance < 2 m, Hungarian per frame) to a refined track in at
least 5 frames, one row per (object, track) pair that is wrong with the default: a parked object (true
speed < 0.05 m/s) whose track is not held still, a moving one whose track is (`--all`: every parked
pair too). Per pair: the smoothed track's median speed and first-to-last displacement, the detected
centres' median distance from their median (spread), their yaws' spread about the axis (median and
largest, degrees), points per box, range from the sensor, and the robust speed (median centre of the
later half of the detections against the earlier half, over their median times) times the duration.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from refine_eval import labels, load
from refine_sizes import cached

from fusion.evaluation.tracking import TrackingConfig, evaluate_tracking
from trackers import RefineConfig, TrackTable, refine, track_both_ways

F64 = npt.NDArray[np.float64]


def truth_path(seed: int, seconds: float) -> Path:
    """The cached log's ground-truth labels (`refine_eval.load` writes them beside the log)."""
    cache = Path(os.environ.get("FUSION_BENCH_CACHE", Path(tempfile.gettempdir()) / "fusion-bench-refine"))
    path = cache / f"refine-s{seed}-{seconds:g}s.labels.parquet"
    if not path.exists():
        load(seed, seconds)
    return path


def pairs(refined: TrackTable, truth: pa.Table) -> list[tuple[int, str, float, int]]:
    """(object id, category, median true speed m/s, track id) of the ground-truth objects (world boxes,
    velocity_x/y) matched to a refined track (centres within 2 m) in at least 5 frames."""
    frame = truth.column("frame_index").to_numpy()
    ids = truth.column("track_id").to_numpy()
    xy = np.stack([truth.column("world_x").to_numpy(), truth.column("world_y").to_numpy()], axis=1)
    speed = np.hypot(truth.column("velocity_x").to_numpy(), truth.column("velocity_y").to_numpy())
    category = np.asarray(truth.column("category").to_pylist())
    votes: dict[tuple[int, int], int] = {}
    for f in np.unique(frame).tolist():
        g, p = np.flatnonzero(frame == f), np.flatnonzero(refined.frame_index == f)
        if not g.size or not p.size:
            continue
        d = np.linalg.norm(xy[g][:, None, :] - refined.boxes_world[p][None, :, :2], axis=2)
        for i, j in zip(*linear_sum_assignment(d), strict=True):
            if d[i, j] < 2.0:
                key = (int(ids[g[i]]), int(refined.track_id[p[j]]))
                votes[key] = votes.get(key, 0) + 1
    out = []
    for (gid, tid), count in sorted(votes.items()):
        if count >= 5:
            rows = ids == gid
            out.append((gid, str(category[rows][0]), float(np.median(speed[rows])), tid))
    return out


def describe(tracks: TrackTable, refined: TrackTable, tid: int) -> str:
    mine, out = tracks.track_id == tid, refined.track_id == tid
    c, t = tracks.boxes_world[mine, :2], (tracks.t_ns[mine] - tracks.t_ns[mine][0]) * 1e-9
    rng = np.hypot(*(c - tracks.sensor_origin[mine, :2]).T)
    axis = 0.5 * np.angle(np.exp(2j * tracks.boxes_world[mine, 6]).mean())
    yaw_off = np.degrees(np.abs(np.angle(np.exp(2j * (tracks.boxes_world[mine, 6] - axis)))) / 2)
    spread = np.median(np.linalg.norm(c - np.median(c, axis=0), axis=1))
    half = c.shape[0] // 2
    robust = np.nan
    if half >= 2:
        dt = np.median(t[-half:]) - np.median(t[:half])
        robust = float(np.linalg.norm(np.median(c[-half:], axis=0) - np.median(c[:half], axis=0)) / dt)
    speed = np.hypot(*refined.velocity[out, :2].T)
    moved = np.linalg.norm(refined.boxes_world[out][-1, :2] - refined.boxes_world[out][0, :2])
    points = np.median(tracks.num_points[mine])
    return (
        f"{mine.sum()} | {t[-1]:.1f} | {np.median(speed):.2f} | {moved:.2f} | {spread:.2f} | "
        f"{np.median(yaw_off):.0f} / {yaw_off.max():.0f} | {points:.0f} | "
        f"{rng.min():.0f}-{rng.max():.0f} | {robust:.2f} x {t[-1]:.1f} = {robust * t[-1]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9, 10])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--all", action="store_true", help="every parked (object, track) pair")
    args = parser.parse_args()
    config = TrackingConfig(recall_sweep=False)
    metrics, rows = [], []
    for seed in args.seeds:
        frames, gt = cached(seed, args.seconds)
        full = pq.read_table(truth_path(seed, args.seconds))  # with the true velocities
        tracks = track_both_ways(frames)
        held = {}
        for name, cfg in (("smoothed test", RefineConfig(static_robust=False)), ("+ robust", RefineConfig())):
            refined = refine(tracks, cfg)
            m = evaluate_tracking(labels(refined), gt, config).overall
            metrics.append((seed, name, m.clear.mota, m.idf1, m.clear.motp, m.hota))
            held[name] = {int(t) for t in np.unique(refined.track_id[(refined.velocity == 0.0).all(axis=1)])}
        for gid, category, speed, tid in pairs(refined, full):
            parked, is_held = speed < 0.05, tid in held["+ robust"]
            if parked != is_held or (parked and args.all):
                what = ("parked, held" if is_held else "parked, NOT held") if parked else "moving, held"
                before = "held" if tid in held["smoothed test"] else "not"
                rows.append(f"| {seed} | {gid} {category} | {speed:.2f} | {what} (before: {before}) | "
                            f"{tid} | {describe(tracks, refined, tid)} |")  # fmt: skip
    print("| seed | static test | MOTA | IDF1 | MOTP | HOTA |\n|---:|---|---:|---:|---:|---:|")
    for seed, name, *values in metrics:
        print(f"| {seed} | {name} | {' | '.join(f'{v:.4f}' for v in values)} |")
    print(
        "\n| seed | object | true m/s | refined | track | detections | s | smoothed m/s | moved m | spread m "
        "| yaw off axis deg med / max | points | range m | robust m/s x s = m |"
    )
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
