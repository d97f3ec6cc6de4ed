"""Per-car size errors of offline refinement on simulated logs, with what the detector saw of each car.

    .venv/bin/python bench/refine_sizes.py [--seeds 1 2 3 4] [--seconds 3] [--all]

Same logs, detector and matching as `bench/refine_eval.py` (its `load`, cached): per seed, the ground-truth
cars matched (BEV IoU >= 0.1) to one refined track for more than 20 frames (the issue's "cars seen for
more than 20 frames"). Per car: the size error (track - truth, cm) in length, width and height; the
track's detections (`track_both_ways`) and how many frames the car was in; the views (angle between the
car's heading and the line of sight, folded to 0-90 deg: end-on < 20, side-on > 70, oblique between);
range; points per box; how many lengths the detector measured rather than completed to its 4.2 m floor;
and the largest measured length. Prints one markdown row per car (`--all`: every car, else only those
off by 10 cm or more) and the per-seed count within 10 cm.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from refine_eval import load, matched_cars

from fusion.boxes import Boxes
from trackers import TrackTable, refine, track_both_ways

F64 = npt.NDArray[np.float64]


def cached(seed: int, seconds: float) -> tuple[list[tuple[Boxes, int, F64 | None]], pa.Table]:
    """`refine_eval.load`, kept in a pickle next to its cached log (the detector dominates the time)."""
    cache = Path(os.environ.get("FUSION_BENCH_CACHE", Path(tempfile.gettempdir()) / "fusion-bench-refine"))
    path = cache / f"refine-s{seed}-{seconds:g}s.capture.frames.pkl"  # Boxes with capture offsets
    if path.exists():
        frames, gt = pickle.loads(path.read_bytes())
        return frames, gt
    frames, gt = load(seed, seconds)
    path.write_bytes(pickle.dumps((frames, gt)))
    return frames, gt


def describe(
    tracks: TrackTable, refined: TrackTable, gid: int, tid: int, truth: F64, frames: int
) -> dict[str, object]:
    mine = tracks.track_id == tid
    b, s = tracks.boxes_world[mine], tracks.sensor_origin[mine]
    size = refined.boxes_world[refined.track_id == tid][0, 3:6]
    heading = refined.boxes_world[refined.track_id == tid][:, 6]
    # the refined heading at each detected frame
    rf = refined.frame_index[refined.track_id == tid]
    yaw = heading[np.searchsorted(rf, tracks.frame_index[mine])]
    los = np.arctan2(b[:, 1] - s[:, 1], b[:, 0] - s[:, 0])
    off = np.degrees(np.arcsin(np.minimum(np.abs(np.sin(los - yaw)), 1.0)))  # 0: end-on, 90: side-on
    rng = np.hypot(b[:, 0] - s[:, 0], b[:, 1] - s[:, 1])
    measured = tracks.measured[mine, 0] >= b[:, 3] - 1e-6
    return {
        "gt": gid, "track": tid, "err_cm": np.round((size - truth) * 100).astype(int).tolist(),
        "true": np.round(truth, 2).tolist(), "dets": f"{int(mine.sum())}/{frames}",
        "views": f"{int((off < 20).sum())}/{int(((off >= 20) & (off <= 70)).sum())}/{int((off > 70).sum())}",
        "off_deg": f"{off.min():.0f}-{off.max():.0f}", "range_m": f"{rng.min():.0f}-{rng.max():.0f}",
        "points": f"{int(np.median(tracks.num_points[mine]))} ({int(tracks.num_points[mine].min())}-"
        f"{int(tracks.num_points[mine].max())})",
        "measured_l": f"{int(measured.sum())}",
        "max_meas_l": f"{b[measured, 3].max():.2f}" if measured.any() else "-",
        "ok": bool(np.abs(size - truth).max() < 0.10),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--all", action="store_true", help="every car, not only those off by 10 cm or more")
    args = parser.parse_args()
    cols = ("gt", "track", "err_cm", "true", "dets", "views", "off_deg", "range_m", "points", "measured_l",
            "max_meas_l")  # fmt: skip
    print("err_cm: track - truth (l, w, h); dets: detections / frames the car is in; views: end-on"
          " (< 20 deg) / oblique / side-on (> 70 deg); measured_l: lengths not completed to the 4.2 m"
          " floor\n")  # fmt: skip
    print("| seed | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 1))
    totals = []
    for seed in args.seeds:
        frames, gt = cached(seed, args.seconds)
        tracks = track_both_ways(frames)
        refined = refine(tracks)
        rows = [describe(tracks, refined, *c) for c in matched_cars(refined, gt)]
        totals.append((seed, sum(bool(r["ok"]) for r in rows), len(rows)))
        for r in rows:
            if args.all or not r["ok"]:
                print(f"| {seed} | " + " | ".join(str(r[c]) for c in cols) + " |")
    print()
    for seed, ok, n in totals:
        print(f"seed {seed}: {ok} of {n} cars within 10 cm")
    ok, n = sum(t[1] for t in totals), sum(t[2] for t in totals)
    print(f"all: {ok} of {n} ({ok / max(n, 1):.0%})")


if __name__ == "__main__":
    main()
