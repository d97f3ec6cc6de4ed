"""Offline 4D refinement against the online tracker alone, on simulated logs with ground truth.

    .venv/bin/python bench/refine_eval.py [--seeds 7 8 9 10] [--seconds 10]

Per seed: a simulated log (vlp32c, small images; cached under $FUSION_BENCH_CACHE or the temp dir),
the geometric detector on every sweep (fusion.sync, world poses from the log; each box's capture offset,
`fusion.capture`, as the pipeline adds it), then three trackers:

- online: `Tracker(TrackerConfig())`, its confirmed boxes (world frame) as they come out;
- refine(fwd): `refine` over the online tracker's matched boxes (`TrackTable.from_tracked`);
- refine(both): `refine(track_both_ways(frames))`, the offline path.

Tracking metrics by `fusion.evaluation.tracking.evaluate_tracking` (3D IoU >= 0.25 pairs; car,
pedestrian, cyclist; world boxes on both sides); MOTP is the mean 3D IoU of the matched boxes.
Sizes: ground-truth cars matched (BEV IoU >= 0.1) to one refined track for more than 20 frames,
the absolute error of that track's size. Times are one run on this machine, with the ratio to the
online pass of the same seed (so the table reads the same on another machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.bags import open_bag
from fusion.boxes import Boxes
from fusion.capture import with_capture_offsets
from fusion.detect import GeometricDetector
from fusion.evaluation.iou import bev_iou
from fusion.evaluation.tracking import TrackingConfig, evaluate_tracking
from fusion.simulate import simulate_log
from fusion.sync import prepare, synchronize
from trackers import Tracker, TrackerConfig, TrackTable, refine, track_both_ways

F64 = npt.NDArray[np.float64]
Frames = list[tuple[Boxes, int, F64 | None]]
WORLD = ("world_x", "world_y", "world_z", "length", "width", "height", "world_yaw")
BOX = ("x", "y", "z", "length", "width", "height", "yaw")


def load(seed: int, seconds: float) -> tuple[Frames, pa.Table]:
    """Detections per sweep and the ground truth (world boxes as x..yaw) of a cached simulated log."""
    cache = Path(os.environ.get("FUSION_BENCH_CACHE", Path(tempfile.gettempdir()) / "fusion-bench-refine"))
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / f"refine-s{seed}-{seconds:g}s.mcap"
    gt_path = cache / f"refine-s{seed}-{seconds:g}s.labels.parquet"
    if not (log.exists() and gt_path.exists()):
        log.unlink(missing_ok=True)
        gt_path.unlink(missing_ok=True)
        simulate_log(log, seconds=seconds, seed=seed, image_width=64, image_height=40)
    detector = GeometricDetector()
    frames: Frames = []
    with open_bag(log) as bag:
        ctx = prepare(bag)
        for fused in synchronize(bag, ctx):
            pose = None if fused.world_from_lidar is None else fused.world_from_lidar.matrix
            frames.append((with_capture_offsets(detector.detect(fused.cloud), fused), fused.stamp_ns, pose))
    gt = pq.read_table(gt_path)
    cols = {name: gt.column(name) for name in ("frame_index", "track_id", "category")}
    cols["sequence_id"] = pa.array(["sim"] * gt.num_rows)  # the predictions' (one sequence)
    cols.update({box: gt.column(world) for box, world in zip(BOX, WORLD, strict=True)})
    return frames, pa.table(cols)


def labels(table: TrackTable) -> pa.Table:
    return pa.table(
        {
            "sequence_id": pa.array(["sim"] * len(table)),
            "frame_index": pa.array(table.frame_index.astype(np.int32)),
            "track_id": pa.array(table.track_id),
            "category": pa.array(table.category.tolist()),
            "score": pa.array(table.score),
            **{name: pa.array(table.boxes_world[:, k]) for k, name in enumerate(BOX)},
        }
    )


def matched_cars(refined: TrackTable, gt: pa.Table) -> list[tuple[int, int, F64, int]]:
    """(gt id, track id, (3,) true l w h, frames the car is in) of the ground-truth cars one refined
    track matched (BEV IoU >= 0.1, detected rows) in more than 20 frames."""
    frame = gt.column("frame_index").to_numpy()
    ids = gt.column("track_id").to_numpy()
    cars = np.asarray(gt.column("category").to_pylist()) == "car"
    boxes = np.stack([gt.column(name).to_numpy() for name in BOX], axis=1)
    votes: dict[int, list[int]] = {}
    detected = refined.origin == "detected"
    for f in np.unique(frame).tolist():
        g, p = np.flatnonzero((frame == f) & cars), np.flatnonzero((refined.frame_index == f) & detected)
        if not g.size or not p.size:
            continue
        iou = bev_iou(refined.boxes_world[p], boxes[g])
        for i, j in zip(*linear_sum_assignment(-iou), strict=True):
            if iou[i, j] >= 0.1:
                votes.setdefault(int(ids[g[j]]), []).append(int(refined.track_id[p[i]]))
    out = []
    for gid, tracked in votes.items():
        track, count = np.unique(tracked, return_counts=True)
        if count.max() > 20:
            rows = np.flatnonzero(ids == gid)
            out.append((gid, int(track[np.argmax(count)]), boxes[rows[0], 3:6], int(rows.size)))
    return out


def size_errors(refined: TrackTable, gt: pa.Table) -> F64:
    """(K, 3) |size error| of the ground-truth cars tracked by one refined track for > 20 frames."""
    out = [
        np.abs(refined.boxes_world[refined.track_id == track][0, 3:6] - true)
        for _, track, true, _ in matched_cars(refined, gt)
    ]
    return np.array(out).reshape(-1, 3)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9, 10])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    config = TrackingConfig(recall_sweep=False)
    rows, sizes, times = [], [], []
    for seed in args.seeds:
        frames, gt = load(seed, args.seconds)
        t0 = time.perf_counter()
        tracker = Tracker(TrackerConfig())
        online = TrackTable.from_tracked([tracker.step(b, t, p) for b, t, p in frames])
        t1 = time.perf_counter()
        forward = refine(online)
        t2 = time.perf_counter()
        both = track_both_ways(frames)
        t3 = time.perf_counter()
        refined = refine(both)
        t4 = time.perf_counter()
        times.append((seed, len(frames), t1 - t0, t3 - t2, t4 - t3))
        for name, table in (("online", online), ("refine(fwd)", forward), ("refine(both)", refined)):
            m = evaluate_tracking(labels(table), gt, config).overall
            rows.append((seed, name, m.clear.mota, m.idf1, m.clear.motp, m.hota, m.clear.id_switches,
                         m.clear.fp, m.clear.fn))  # fmt: skip
        sizes.append(size_errors(refined, gt))

    print(f"simulated logs of {args.seconds:g} s, seeds {' '.join(map(str, args.seeds))}\n")
    print("| seed | tracker | MOTA | IDF1 | MOTP (3D IoU) | HOTA | ID switches | FP | FN |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for seed, name, *values, ids, fp, fn in rows:
        print(f"| {seed} | {name} | {' | '.join(_fmt(v) for v in values)} | {ids} | {fp} | {fn} |")
    err = np.concatenate(sizes)
    within = (err.max(axis=1) < 0.10).mean() if len(err) else float("nan")
    median = np.median(err, axis=0) if len(err) else np.full(3, np.nan)
    print(f"\ncar sizes (cars tracked > 20 frames: {len(err)}): all of l, w, h within 10 cm: {within:.0%}; "
          f"median |error| l {median[0]:.3f} w {median[1]:.3f} h {median[2]:.3f} m\n")  # fmt: skip
    print("| seed | frames | online pass s | track_both_ways s (ratio) | refine s (ratio) |")
    print("|---:|---:|---:|---:|---:|")
    for seed, n, online_s, both_s, refine_s in times:
        print(f"| {seed} | {n} | {online_s:.3f} | {both_s:.3f} ({both_s / online_s:.1f}x) | "
              f"{refine_s:.3f} ({refine_s / online_s:.2f}x) |")  # fmt: skip


if __name__ == "__main__":
    main()
