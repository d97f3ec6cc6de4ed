"""Where the misses of `bench/kitti_tracking.py`'s results are: each false negative of a class, at the
best-MOTA threshold and at the highest recall (every track kept), put in one cause.

    .venv/bin/python bench/kitti_misses.py --results OUT [--data DIR] [--classes Pedestrian Cyclist]

OUT is a `bench/kitti_tracking.py --out` folder (its `OUT/<Class>/<seq>.txt` and `tracking_eval.json`).
A miss is a ground-truth box the evaluator counts (not ignored: truncated 0, occluded <= 2, not the
neighbouring class) that no kept result box was assigned to (`fusion.evaluation.kitti_mot`'s per-frame
Hungarian assignment, 3D IoU >= 0.25, all GT against all kept results). Causes, first that applies:

- score: a result box was assigned to it with every track kept (lost to the score threshold);
- low_iou: a kept result box overlaps it (3D IoU > 0) but below 0.25 (position or size error);
- dropped: PointRCNN has a detection of it (3D IoU >= 0.25) in that frame, but no kept result box
  overlaps it (tracker or refinement dropped the detection: a short or weak track, another class);
- before / after / gap: PointRCNN has no detection of it (IoU >= 0.25) in that frame, and the kept tracks
  that were assigned to the object in other frames start after it (before: the detector picked the
  object up late), end before it (after: dropped early), or cover it (gap: longer than the fill);
- never: the object is never assigned to a kept track.

For before / after it also gives how many frames from the track's end the miss is (1, 2, 3, 4-5,
6-10, > 10) and how far the object moved from the track's end (ground truth centres, m); for gaps the
gap's length. Per fold (A = 0000, 0002, 0004, 0007, 0009, 0011; B = 0003, 0005, 0017, 0020) and in all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusion.evaluation.iou import iou_3d  # noqa: E402
from fusion.evaluation.kitti_mot import (  # noqa: E402
    NEIGHBOUR_CLASS,
    NO_THRESHOLD,
    KittiMotConfig,
    KittiObjects,
    _lidar_boxes,
    _prepare,
    _Sequence,
    read_kitti_tracking,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
FOLDS = {
    "A": ("0000", "0002", "0004", "0007", "0009", "0011"),
    "B": ("0003", "0005", "0017", "0020"),
}
CAUSES = ("score", "low_iou", "dropped", "before", "after", "gap", "never")
BINS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 10**6))


def assigned_rows(
    seq: _Sequence, threshold: float, cfg: KittiMotConfig
) -> tuple[list[I64], npt.NDArray[np.bool_]]:
    """Per frame, the result row assigned to each GT object (-1: none), and which rows are kept at
    `threshold` (track means: the written scores are one exact value per track)."""
    n_tracks = len(seq.track_rows)
    means = np.zeros(n_tracks)
    for k, rows in enumerate(seq.track_rows):
        means[k] = float(np.mean(seq.pred.score[rows]))
    kept = np.asarray(means[seq.track_index] >= threshold, dtype=np.bool_)
    out = []
    gate = 1.0 - cfg.iou_threshold
    for frame in seq.frames:
        p_rows = frame.pred_rows[kept[frame.pred_rows]]
        assigned = np.full(len(frame.gt), -1, np.int64)
        if len(frame.gt) and len(p_rows):
            iou = frame.iou[:, kept[frame.pred_rows]]
            cost = np.where(1.0 - iou <= gate, 1.0 - iou, 1e9)
            r, c = linear_sum_assignment(cost)
            ok = cost[r, c] < 1e9
            assigned[r[ok]] = p_rows[c[ok]]
        out.append(assigned)
    return out, kept


def misses(
    seq: _Sequence, dets: KittiObjects, threshold: float, cls: str, cfg: KittiMotConfig
) -> list[dict[str, object]]:
    """One record per miss of `seq` at `threshold`: cause, GT id, frame, and distance to the track's end."""
    at, kept = assigned_rows(seq, threshold, cfg)
    at_all, _ = assigned_rows(seq, NO_THRESHOLD, cfg)
    neighbour = NEIGHBOUR_CLASS.get(cls, "")
    # per GT object: frames, centres, assigned track ids
    spans: dict[int, list[tuple[int, int]]] = {}  # gid -> [(frame, track)]
    centres: dict[tuple[int, int], F64] = {}
    for f, frame in enumerate(seq.frames):
        for k in range(len(frame.gt)):
            gid = int(frame.gt.track_id[k])
            centres[gid, f] = frame.gt.box3d[k, [3, 5]]
            if at[f][k] >= 0:
                spans.setdefault(gid, []).append((f, int(seq.pred.track_id[at[f][k]])))
    det_boxes = _lidar_boxes(dets.box3d)
    out: list[dict[str, object]] = []
    for f, frame in enumerate(seq.frames):
        g = frame.gt
        ignored = (g.occlusion > cfg.max_occlusion) | (g.truncation > cfg.max_truncation)
        if neighbour:
            ignored |= g.kind == neighbour
        p_rows = frame.pred_rows[kept[frame.pred_rows]]
        d_rows = np.flatnonzero(dets.frame == f)
        gt_boxes = _lidar_boxes(g.box3d)
        for k in np.flatnonzero((at[f] < 0) & ~ignored).tolist():
            gid = int(g.track_id[k])
            rec: dict[str, object] = {"gid": gid, "frame": f}
            if at_all[f][k] >= 0 and threshold > NO_THRESHOLD:
                rec["cause"] = "score"
            elif len(p_rows) and frame.iou[k, np.isin(frame.pred_rows, p_rows)].max() > 0.0:
                rec["cause"] = "low_iou"
            elif len(d_rows) and iou_3d(gt_boxes[k : k + 1], det_boxes[d_rows]).max() >= cfg.iou_threshold:
                rec["cause"] = "dropped"
            else:
                tracked = spans.get(gid, [])
                if not tracked:
                    rec["cause"] = "never"
                else:
                    frames = np.array([t[0] for t in tracked])
                    if f < frames.min():
                        rec["cause"], end = "before", int(frames.min())
                    elif f > frames.max():
                        rec["cause"], end = "after", int(frames.max())
                    else:
                        rec["cause"] = "gap"
                        lo, hi = frames[frames < f].max(), frames[frames > f].min()
                        rec["gap"] = int(hi - lo - 1)
                        end = -1
                    if end >= 0:
                        rec["frames"] = abs(f - end)
                        rec["moved"] = float(np.hypot(*(centres[gid, f] - centres[gid, end])))
            out.append(rec)
    return out


def table(records: dict[str, list[dict[str, object]]]) -> str:
    """A markdown table: per fold, counts by cause."""
    lines = ["| fold | FN | " + " | ".join(CAUSES) + " |", "|---" * (len(CAUSES) + 2) + "|"]
    for fold, recs in records.items():
        c = Counter(str(r["cause"]) for r in recs)
        lines.append(f"| {fold} | {len(recs)} | " + " | ".join(str(c[k]) for k in CAUSES) + " |")
    return "\n".join(lines)


def ends_table(records: dict[str, list[dict[str, object]]]) -> str:
    """Before / after misses by frames from the track's end, with the median distance moved (m);
    the gap lengths."""
    head = " | ".join(
        f"{lo}" if lo == hi else (f"{lo}-{hi}" if hi < 10**6 else f">{lo - 1}") for lo, hi in BINS
    )
    lines = [f"| fold, cause | {head} |", "|---" * (len(BINS) + 1) + "|"]
    for fold, recs in records.items():
        for cause in ("before", "after"):
            cells = []
            for lo, hi in BINS:
                sel = [r for r in recs if r["cause"] == cause and lo <= int(str(r["frames"])) <= hi]
                moved = np.median([float(str(r["moved"])) for r in sel]) if sel else float("nan")
                cells.append(f"{len(sel)} ({moved:.1f} m)" if sel else "0")
            lines.append(f"| {fold}, {cause} | " + " | ".join(cells) + " |")
        gaps = Counter(int(str(r["gap"])) for r in recs if r["cause"] == "gap")
        lines.append(f"| {fold}, gap lengths (frames: misses) | {dict(sorted(gaps.items()))} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="a bench/kitti_tracking.py --out folder")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "ab3dmot")
    parser.add_argument("--classes", nargs="+", default=["Pedestrian", "Cyclist"])
    args = parser.parse_args(argv)
    cfg = KittiMotConfig()
    report = json.loads((args.results / "tracking_eval.json").read_text())
    for kitti_class in args.classes:
        cls = kitti_class.lower()
        best = float(report["results"]["refined"][kitti_class]["best_threshold"])
        for name, threshold in (("best-MOTA threshold", best), ("every track kept", NO_THRESHOLD)):
            per_fold: dict[str, list[dict[str, object]]] = {}
            for fold, seqs in FOLDS.items():
                recs: list[dict[str, object]] = []
                for s in seqs:
                    labels = read_kitti_tracking(args.data / "scripts" / "KITTI" / "label" / f"{s}.txt")
                    results = read_kitti_tracking(args.results / kitti_class / f"{s}.txt", with_score=True)
                    n_frames = int(max(labels.frame.max(initial=-1), results.frame.max(initial=-1))) + 1
                    seq = _prepare(results, labels, n_frames, cls, cfg)
                    dets = raw_detections(args.data, kitti_class, s)
                    recs += [{**r, "seq": s} for r in misses(seq, dets, threshold, cls, cfg)]
                per_fold[fold] = recs
            per_fold["all"] = per_fold["A"] + per_fold["B"]
            print(f"\n### {kitti_class}, {name} ({threshold:.4f})\n")
            print(table(per_fold))
            print()
            print(ends_table(per_fold))
    return 0


def raw_detections(data: Path, kitti_class: str, seq: str) -> KittiObjects:
    """PointRCNN's detections of a sequence as KITTI objects (camera-rect boxes)."""
    path = data / "data" / "KITTI" / "detection" / f"pointrcnn_{kitti_class}_val" / f"{seq}.txt"
    raw = (
        np.loadtxt(path, delimiter=",", ndmin=2).reshape(-1, 15) if path.stat().st_size else np.zeros((0, 15))
    )
    n = raw.shape[0]
    return KittiObjects(
        frame=raw[:, 0].astype(np.int64), track_id=np.arange(n, dtype=np.int64),
        kind=np.full(n, kitti_class.lower(), dtype="<U16"), truncation=np.zeros(n, np.int64),
        occlusion=np.zeros(n, np.int64), box2d=raw[:, 2:6], box3d=raw[:, 7:14], score=raw[:, 6],
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
