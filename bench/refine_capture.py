"""Where refined boxes of moving cars lie at the stamp, with and without the capture-time correction.

    .venv/bin/python bench/refine_capture.py [--seeds 1 2 3 4] [--seconds 3]

Same logs, detector and cache as `bench/refine_sizes.py` (`refine_eval.load`: each box's capture offset
from `fusion.capture`). Per seed, ground-truth cars moving faster than 3 m/s matched (BEV IoU >= 0.1,
one-to-one per frame) to detected rows; the along-track error is (box centre - true centre) . the true
heading, m, at the stamp:

- detections: the detector's boxes (world frame) as `track_both_ways` gives them;
- detections - v_true x offset: each moved by the true velocity x its capture offset (what the offsets
  are worth with a perfect velocity);
- refined, off / on: `refine` with `RefineConfig(capture_correction=False)` / the default.

Then the refined output's tracking metrics off -> on (`fusion.evaluation.tracking`, 3D IoU >= 0.25; MOTP is
the mean 3D IoU of matches) and the cars within 10 cm in l, w, h (`refine_eval.size_errors`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from refine_eval import labels, size_errors
from refine_sizes import cached

from fusion.evaluation.iou import bev_iou
from fusion.evaluation.tracking import TrackingConfig, evaluate_tracking
from trackers import RefineConfig, TrackTable, refine, track_both_ways

F64 = npt.NDArray[np.float64]
MOVING_MPS = 3.0


def truth(seed: int, seconds: float) -> tuple[npt.NDArray[np.int64], F64, F64]:
    """Ground-truth moving cars: frame (K,), world boxes (K, 7), world velocity (K, 2)."""
    cache = Path(os.environ.get("FUSION_BENCH_CACHE", Path(tempfile.gettempdir()) / "fusion-bench-refine"))
    gt = pq.read_table(cache / f"refine-s{seed}-{seconds:g}s.labels.parquet")
    col = {n: gt.column(n).to_numpy(zero_copy_only=False) for n in gt.column_names if n != "camera_boxes"}
    vel = np.stack([col["velocity_x"], col["velocity_y"]], axis=1)
    keep = (col["category"] == "car") & (np.hypot(*vel.T) > MOVING_MPS)
    world = np.stack([col[n] for n in ("world_x", "world_y", "world_z", "length", "width", "height",
                                       "world_yaw")], axis=1)  # fmt: skip
    return col["frame_index"][keep].astype(np.int64), world[keep], vel[keep]


def along_track(table: TrackTable, gt: tuple[npt.NDArray[np.int64], F64, F64]) -> tuple[F64, F64, F64]:
    """Per matched pair (detected rows to moving true cars): along-track error (m), the true velocity
    (2,) and the row's capture offset (s)."""
    frame, boxes, vel = gt
    err, v, off = [], [], []
    detected = table.origin == "detected"
    for f in np.unique(frame).tolist():
        g = np.flatnonzero(frame == f)
        p = np.flatnonzero((table.frame_index == f) & detected)
        if not p.size:
            continue
        iou = bev_iou(table.boxes_world[p], boxes[g])
        for i, j in zip(*linear_sum_assignment(-iou), strict=True):
            if iou[i, j] >= 0.1:
                d = table.boxes_world[p[i], :2] - boxes[g[j], :2]
                err.append(d[0] * np.cos(boxes[g[j], 6]) + d[1] * np.sin(boxes[g[j], 6]))
                v.append(vel[g[j]])
                off.append(table.capture_offset_ns[p[i]] * 1e-9)
    return np.array(err), np.array(v).reshape(-1, 2), np.array(off)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    config = TrackingConfig(recall_sweep=False)
    print("| seed | pairs | detections | dets - v_true x offset | refined, off | refined, on |")
    print("|---:|---:|---:|---:|---:|---:|")
    metrics: list[tuple[int, list[tuple[float | None, ...]], list[str]]] = []
    for seed in args.seeds:
        frames, gt_table = cached(seed, args.seconds)
        gt = truth(seed, args.seconds)
        tracks = track_both_ways(frames)
        err, vel, off = along_track(tracks, gt)
        oracle = err - np.nan_to_num(off) * np.hypot(vel[:, 0], vel[:, 1])  # true speed x offset
        cells = [f"{np.mean(err):+.3f} ({np.mean(np.abs(err)):.3f})",
                 f"{np.mean(oracle):+.3f} ({np.mean(np.abs(oracle)):.3f})"]  # fmt: skip
        quality: list[tuple[float | None, ...]] = []
        counts: list[str] = []
        for on in (False, True):
            refined = refine(tracks, RefineConfig(capture_correction=on))
            e, _, _ = along_track(refined, gt)
            cells.append(f"{np.mean(e):+.3f} ({np.mean(np.abs(e)):.3f})")
            m = evaluate_tracking(labels(refined), gt_table, config).overall
            quality.append((m.clear.mota, m.idf1, m.clear.motp, m.hota))
            err_size = size_errors(refined, gt_table)
            counts.append(f"{int((err_size.max(axis=1) < 0.10).sum())}/{len(err_size)}")
        metrics.append((seed, quality, counts))
        print(f"| {seed} | {len(err)} | " + " | ".join(cells) + " |")
    print("\nalong-track error at the stamp: mean signed (mean absolute), m; moving cars (> 3 m/s)\n")
    print("| seed | MOTA | IDF1 | MOTP | HOTA | cars within 10 cm |")
    print("|---:|---|---|---|---|---|")
    for seed, (without, with_), (without_n, with_n) in metrics:
        cells = [
            f"{a:.4f} -> {b:.4f}" if a is not None and b is not None else "-"
            for a, b in zip(without, with_, strict=True)
        ]
        print(f"| {seed} | " + " | ".join(cells) + f" | {without_n} -> {with_n} |")


if __name__ == "__main__":
    main()
