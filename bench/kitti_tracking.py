"""The online tracker on KITTI tracking with PointRCNN detections, scored by AB3DMOT's 3D MOT protocol.

    .venv/bin/python bench/kitti_tracking.py --out /tmp/kitti_trk [--data DIR] [--split train|val]
        [--output-policy ranked|confirmed]

Data (`--data`, default ../shared/datasets/ab3dmot beside the repo, see its MANIFEST.md section 1):
`data/KITTI/detection/pointrcnn_<Class>_val/<seq>.txt` (PointRCNN, comma-separated
`frame,type,x1,y1,x2,y2,score,h,w,l,x,y,z,ry,alpha`, camera-rect boxes), `scripts/KITTI/label/<seq>.txt`
(KITTI tracking ground truth) and `data/KITTI/mini/training/calib/<seq>.txt`.

Split: `--split val` reads the sequences of `scripts/KITTI/evaluate_tracking.seqmap.val` (held back
from this project's copy: pass the data folder that has them); `--split train` those of
`scripts/KITTI/evaluate_tracking.seqmap.train` when present, else the 10 training sequences 0000,
0002-0005, 0007, 0009, 0011, 0017, 0020. A sequence has frames 0 .. (last frame of its seqmap line,
else of its labels and detections).

Tracking: one `trackers.Tracker` per sequence and class, every frame stepped
(empty ones too), t_ns = frame * 100 ms, no ego motion (no oxts here): tracks live in the LiDAR
frame. Detections: boxes converted rect -> velodyne by `kitti_rect_to_velodyne` with the sequence's
calibration; PointRCNN's scores are raw logits (-0.85 .. 16), mapped to 0..1 by 1 / (1 + exp(-s)),
which keeps their order; nothing is filtered here (as AB3DMOT); the tracker's own score_low applies.
Config: `--output-policy` picks the per-category params of `trackers.config.OUTPUT_POLICIES`:
"ranked" (default; `RANKED_PARAMS`: every track from its first detection, young and coasting tracks
scored low, as suits sAMOTA's score sweep) or "confirmed" (`DEFAULT_PARAMS`: confirmed tracks only).

Evaluation (`fusion.evaluation.evaluate_tracking`, 3D IoU >= 0.25, per class), with the KITTI
devkit's ignore rules as AB3DMOT's `scripts/KITTI/evaluate.py` applies them, through the `ignore`
columns (an ignored GT box and the prediction it takes are neither TP nor FP nor FN; a flagged
prediction is not an FP when it pairs with no GT box):
- GT of the class and its neighbour (Car + Van, Pedestrian + Person_sitting, Cyclist); ignored: the
  neighbour class, truncation > 0, occlusion > 2 (devkit defaults max_truncation 0, max_occlusion 2);
- predictions flagged: 2D box height <= 25 px, or more than half of the 2D box inside a DontCare
  region of the frame (the devkit's 2D rule: DontCare boxes have no 3D extent).
The printed table puts, per class, our numbers (training split, online, no ego motion) beside
AB3DMOT's published KITTI *val* numbers (PointRCNN, with oxts ego compensation), for scale only:
different sequences, not comparable one to one. MOTA, MOTP, IDS, FRAG, FP, FN are taken, as in
AB3DMOT's table, at the recall threshold with the best MOTA.

Writes OUT/<Class>/<seq>.txt (KITTI tracking format as AB3DMOT writes it, 18 columns
`frame id type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry score`, camera-rect boxes; 2D box =
the 3D box projected with P2 and clipped to the image, 1242 x 375; alpha = ry - atan2(x, z)
wrapped; truncated, occluded 0; score the logistic score), OUT/tracking_eval.json (the result and
config) and OUT/tracker_config.json. Refuses to overwrite an existing OUT/<Class> without --overwrite.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from calib.loaders import RECT, VELODYNE, load_calibration  # noqa: E402
from calib.transform import wrap_angle  # noqa: E402
from fusion.boxes import BOX_FIELDS, Boxes  # noqa: E402
from fusion.evaluation import (  # noqa: E402
    TrackingConfig,
    TrackingResult,
    evaluate_tracking,
    format_tracking_table,
)
from fusion.evaluation.converters import kitti_rect_to_velodyne  # noqa: E402
from trackers import Tracker, TrackerConfig  # noqa: E402
from trackers.config import OUTPUT_POLICIES  # noqa: E402

F64 = npt.NDArray[np.float64]
FRAME_NS = 100_000_000
TRAIN_SEQUENCES = ("0000", "0002", "0003", "0004", "0005", "0007", "0009", "0011", "0017", "0020")
CLASSES = {"Car": "car", "Pedestrian": "pedestrian", "Cyclist": "cyclist"}
NEIGHBOUR = {"Car": "Van", "Pedestrian": "Person_sitting", "Cyclist": None}
IMAGE_W, IMAGE_H = 1242, 375
MIN_HEIGHT_PX = 25.0
MAX_TRUNCATION, MAX_OCCLUSION = 0, 2
# AB3DMOT docs/KITTI.md, PointRCNN on KITTI val, 3D IoU 0.25 (percent; counts)
PUBLISHED = {
    "Car": (93.34, 86.47, 79.40, 0, 15, 368, 766),
    "Pedestrian": (82.73, 73.86, 67.58, 4, 62, 589, 1965),
    "Cyclist": (93.78, 84.79, 77.23, 1, 3, 114, 90),
}


@dataclass(frozen=True)
class Seq:
    name: str
    n_frames: int
    velodyne_from_rect: F64  # (4, 4)
    p2: F64  # (3, 4)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "ab3dmot")
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--out", type=Path, required=True, help="folder for tracks and results")
    parser.add_argument("--overwrite", action="store_true", help="replace existing OUT/<Class> folders")
    parser.add_argument(
        "--output-policy",
        choices=tuple(OUTPUT_POLICIES),
        default="ranked",
        help="tracker params: 'ranked' (every track, young ones scored low) or 'confirmed' (confirmed only)",
    )
    args = parser.parse_args(argv)
    data: Path = args.data
    out: Path = args.out
    if not (data / "scripts" / "KITTI" / "label").is_dir():
        parser.error(
            f"{data}: no scripts/KITTI/label/; pass --data the ab3dmot folder (MANIFEST.md section 1)"
        )
    for name in CLASSES:
        if (out / name).exists() and not args.overwrite:
            parser.error(f"{out / name} exists; pass --overwrite to replace it or choose another --out")

    sequences = load_split(data, args.split)
    tracker_config = TrackerConfig(params=OUTPUT_POLICIES[args.output_policy])
    preds, gts = [], []
    started = time.perf_counter()
    n_frames_run = 0
    for kitti_class, category in CLASSES.items():
        (out / kitti_class).mkdir(parents=True, exist_ok=True)
        for seq in sequences:
            labels = read_labels(data / "scripts" / "KITTI" / "label" / f"{seq.name}.txt")
            dets = read_detections(
                data / "data" / "KITTI" / "detection" / f"pointrcnn_{kitti_class}_val" / f"{seq.name}.txt"
            )
            tracks = run_tracker(dets, seq, category, tracker_config)
            n_frames_run += seq.n_frames
            write_kitti(out / kitti_class / f"{seq.name}.txt", tracks, kitti_class)
            preds.append(prediction_table(tracks, labels, seq, category))
            gts.append(truth_table(labels, seq, kitti_class, category))
    elapsed = time.perf_counter() - started
    pred, gt = pd.concat(preds, ignore_index=True), pd.concat(gts, ignore_index=True)
    config = TrackingConfig(categories=tuple(CLASSES.values()), match="iou_3d", iou_threshold=0.25)
    result = evaluate_tracking(pred, gt, config)

    (out / "tracking_eval.json").write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    (out / "tracker_config.json").write_text(json.dumps(tracker_config.to_mapping(), indent=2) + "\n")
    names = ", ".join(s.name for s in sequences)
    rate = n_frames_run / max(elapsed, 1e-9)
    print(
        f"KITTI tracking, {args.split} split ({names}), PointRCNN detections, {n_frames_run} class-frames "
        f"tracked in {elapsed:.1f} s ({rate:.0f} frames/s, one class at a time)\n"
    )
    print(markdown(result, args.split))
    print()
    print(format_tracking_table(result))
    return 0


# ---- data ---------------------------------------------------------------------------------------


def load_split(data: Path, split: str) -> list[Seq]:
    kitti = data / "scripts" / "KITTI"
    seqmap = kitti / ("evaluate_tracking.seqmap.val" if split == "val" else "evaluate_tracking.seqmap.train")
    last: dict[str, int | None] = {}
    if seqmap.is_file():
        for line in seqmap.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 4:
                last[f"{int(fields[0]):04d}"] = int(fields[3])
    elif split == "val":
        sys.exit(f"{seqmap}: missing; the val split is held back, pass --data the folder that has it")
    else:
        last = dict.fromkeys(TRAIN_SEQUENCES)
    out = []
    for name, seqmap_last in last.items():
        label = kitti / "label" / f"{name}.txt"
        calib_path = data / "data" / "KITTI" / "mini" / "training" / "calib" / f"{name}.txt"
        if not label.is_file() or not calib_path.is_file():
            sys.exit(f"sequence {name}: {label} or {calib_path} missing; pass --data the full ab3dmot folder")
        last_frame = seqmap_last
        if last_frame is None:
            frames = [int(line.split()[0]) for line in label.read_text().splitlines() if line.strip()]
            last_frame = max(frames, default=-1)
            for kitti_class in CLASSES:
                det = read_detections(
                    data / "data" / "KITTI" / "detection" / f"pointrcnn_{kitti_class}_val" / f"{name}.txt"
                )
                last_frame = max(last_frame, int(det[:, 0].max(initial=-1)))
        matrix = np.asarray(load_calibration(calib_path).lookup(VELODYNE, RECT).matrix, dtype=np.float64)
        out.append(Seq(name, last_frame + 1, matrix, read_p2(calib_path)))
    return out


def read_p2(path: Path) -> F64:
    for line in path.read_text().splitlines():
        if line.startswith("P2:"):
            return np.array(line.split()[1:13], dtype=np.float64).reshape(3, 4)
    sys.exit(f"{path}: no P2 line")


def read_detections(path: Path) -> F64:
    """(N, 15) frame, type, x1, y1, x2, y2, score, h, w, l, x, y, z, ry, alpha; (0, 15) when empty."""
    if not path.is_file() or path.stat().st_size == 0:
        return np.zeros((0, 15))
    return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64).reshape(-1, 15)


@dataclass(frozen=True)
class Labels:
    frame: npt.NDArray[np.int64]
    track: npt.NDArray[np.int64]
    kind: npt.NDArray[np.str_]
    truncated: npt.NDArray[np.int64]
    occluded: npt.NDArray[np.int64]
    box2d: F64  # (N, 4)
    box3d: F64  # (N, 7) h w l x y z ry


def read_labels(path: Path) -> Labels:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    arr = np.array(rows, dtype=object).reshape(-1, 17)
    return Labels(
        frame=arr[:, 0].astype(np.int64),
        track=arr[:, 1].astype(np.int64),
        kind=arr[:, 2].astype(str),
        truncated=arr[:, 3].astype(np.float64).astype(np.int64),
        occluded=arr[:, 4].astype(np.float64).astype(np.int64),
        box2d=arr[:, 6:10].astype(np.float64),
        box3d=arr[:, 10:17].astype(np.float64),
    )


# ---- tracking -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tracks:
    frame: npt.NDArray[np.int64]
    track: npt.NDArray[np.int64]
    boxes: F64  # (N, 7) velodyne
    score: F64
    camera: F64  # (N, 7) h w l x y z ry, rect
    box2d: F64  # (N, 4) clipped
    alpha: F64


def run_tracker(dets: F64, seq: Seq, category: str, config: TrackerConfig) -> Tracks:
    tracker = Tracker(config)
    velodyne = kitti_rect_to_velodyne(dets[:, 7:14], seq.velodyne_from_rect)
    score = 1.0 / (1.0 + np.exp(-dets[:, 6]))
    frame_of = dets[:, 0].astype(np.int64)
    frames, ids, boxes, scores = [], [], [], []
    for f in range(seq.n_frames):
        mine = frame_of == f
        stamp = f * FRAME_NS
        n = int(mine.sum())
        det = Boxes.build(
            velodyne[mine], [category] * n, score[mine], np.zeros(n), frame_id="velodyne", stamp_ns=stamp
        )
        out = tracker.step(det, stamp)
        frames.append(np.full(len(out), f, dtype=np.int64))
        ids.append(out.track_id)
        boxes.append(out.boxes)
        scores.append(out.score.astype(np.float64))
    box = np.concatenate(boxes).reshape(-1, 7)
    camera = velodyne_to_rect(box, np.asarray(np.linalg.inv(seq.velodyne_from_rect), dtype=np.float64))
    box2d = project_boxes(camera, seq.p2)
    alpha = wrap_angle(camera[:, 6] - np.arctan2(camera[:, 3], camera[:, 5]))
    return Tracks(
        np.concatenate(frames), np.concatenate(ids), box, np.concatenate(scores), camera, box2d, alpha
    )


def velodyne_to_rect(boxes: F64, rect_from_velodyne: F64) -> F64:
    """Velodyne boxes (N, 7) x y z l w h yaw -> KITTI camera boxes (N, 7) h w l x y z ry (bottom centre)."""
    bottom = boxes[:, :3] - np.c_[np.zeros((len(boxes), 2)), 0.5 * boxes[:, 5]]
    rect = bottom @ rect_from_velodyne[:3, :3].T + rect_from_velodyne[:3, 3]
    ry = wrap_angle(-boxes[:, 6] - 0.5 * math.pi)
    return np.asarray(np.c_[boxes[:, 5], boxes[:, 4], boxes[:, 3], rect, ry], dtype=np.float64)


def project_boxes(camera: F64, p2: F64) -> F64:
    """2D boxes (N, 4) x1 y1 x2 y2 of KITTI camera boxes projected with P2, clipped to the image;
    (-1, -1, -1, -1) when no corner is in front of the camera."""
    out = np.full((len(camera), 4), -1.0)
    for k, (h, w, length, x, y, z, ry) in enumerate(camera):
        cx = 0.5 * length * np.array([1, 1, -1, -1, 1, 1, -1, -1])
        cz = 0.5 * w * np.array([1, -1, -1, 1, 1, -1, -1, 1])
        cy = np.array([0, 0, 0, 0, -h, -h, -h, -h], dtype=np.float64)
        c, s = math.cos(ry), math.sin(ry)
        pts = np.stack([c * cx + s * cz + x, cy + y, -s * cx + c * cz + z, np.ones(8)])
        uvw = p2 @ pts
        front = uvw[2] > 0.1
        if not front.any():
            continue
        u, v = uvw[0, front] / uvw[2, front], uvw[1, front] / uvw[2, front]
        out[k] = [
            np.clip(u.min(), 0, IMAGE_W - 1),
            np.clip(v.min(), 0, IMAGE_H - 1),
            np.clip(u.max(), 0, IMAGE_W - 1),
            np.clip(v.max(), 0, IMAGE_H - 1),
        ]
    return out


def write_kitti(path: Path, tracks: Tracks, kitti_class: str) -> None:
    lines = []
    for k in range(len(tracks.frame)):
        h, w, length, x, y, z, ry = tracks.camera[k]
        x1, y1, x2, y2 = tracks.box2d[k]
        lines.append(
            f"{tracks.frame[k]} {tracks.track[k]} {kitti_class} 0 0 {tracks.alpha[k]:.6f} "
            f"{x1:.4f} {y1:.4f} {x2:.4f} {y2:.4f} {h:.4f} {w:.4f} {length:.4f} {x:.4f} {y:.4f} {z:.4f} "
            f"{ry:.6f} {tracks.score[k]:.6f}"
        )
    path.write_text("".join(line + "\n" for line in lines))


# ---- tables for evaluate_tracking ---------------------------------------------------------------


def _frame(seq: str, frame: npt.NDArray[np.int64], track: npt.NDArray[np.int64], category: str,
           boxes: F64, score: F64, ignore: npt.NDArray[np.bool_]) -> pd.DataFrame:  # fmt: skip
    table = pd.DataFrame(boxes.reshape(-1, 7), columns=list(BOX_FIELDS))
    table.insert(0, "sequence_id", seq)
    table.insert(1, "frame_index", frame.astype(np.int64))
    table.insert(2, "track_id", track.astype(np.int64))
    table.insert(3, "category", category)
    table["score"] = score.astype(np.float64)
    table["ignore"] = ignore.astype(bool)
    return table


def prediction_table(tracks: Tracks, labels: Labels, seq: Seq, category: str) -> pd.DataFrame:
    height = tracks.box2d[:, 3] - tracks.box2d[:, 1]
    ignore = height <= MIN_HEIGHT_PX
    dontcare = labels.kind == "DontCare"
    for f in np.unique(tracks.frame):
        regions = labels.box2d[dontcare & (labels.frame == f)]
        if len(regions) == 0:
            continue
        mine = np.flatnonzero(tracks.frame == f)
        b = tracks.box2d[mine]
        iw = np.minimum(b[:, None, 2], regions[None, :, 2]) - np.maximum(b[:, None, 0], regions[None, :, 0])
        ih = np.minimum(b[:, None, 3], regions[None, :, 3]) - np.maximum(b[:, None, 1], regions[None, :, 1])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
        area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
        ignore[mine] |= (inter / area[:, None] > 0.5).any(axis=1)
    return _frame(seq.name, tracks.frame, tracks.track, category, tracks.boxes, tracks.score, ignore)


def truth_table(labels: Labels, seq: Seq, kitti_class: str, category: str) -> pd.DataFrame:
    neighbour = NEIGHBOUR[kitti_class]
    mine = ((labels.kind == kitti_class) | (labels.kind == neighbour)) & (labels.track >= 0)
    boxes = kitti_rect_to_velodyne(labels.box3d[mine], seq.velodyne_from_rect)
    ignore = (
        (labels.kind[mine] == neighbour)
        | (labels.truncated[mine] > MAX_TRUNCATION)
        | (labels.occluded[mine] > MAX_OCCLUSION)
    )
    n = int(mine.sum())
    return _frame(seq.name, labels.frame[mine], labels.track[mine], category, boxes, np.ones(n), ignore)


# ---- report -------------------------------------------------------------------------------------


def markdown(result: TrackingResult, split: str) -> str:
    lines = [
        "| 3D IoU 0.25 | split | sAMOTA | MOTA | MOTP | IDS | FRAG | FP | FN | HOTA | IDF1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kitti_class, category in CLASSES.items():
        m = result.category(category)
        b = m.best if m.best is not None else m.clear
        counts = f"{b.id_switches} | {b.fragmentations} | {b.fp} | {b.fn}"
        lines.append(
            f"| {kitti_class}, ours (online, no ego motion) | {split} | {_pct(m.samota)} | {_pct(b.mota)} | "
            f"{_pct(b.motp)} | {counts} | {_pct(m.hota)} | {_pct(m.idf1)} |"
        )
        s, mota, motp, ids, frag, fp, fn = PUBLISHED[kitti_class]
        lines.append(
            f"| {kitti_class}, AB3DMOT published (reference only) | val | {s:.2f} | {mota:.2f} | "
            f"{motp:.2f} | {ids} | {frag} | {fp} | {fn} | - | - |"
        )
    scope = (
        "KITTI tracking *training* sequences; AB3DMOT: its published *val* numbers (different sequences, "
        "with oxts ego compensation): for scale, not comparable one to one"
        if split == "train"
        else "the sequences of the val seqmap given; AB3DMOT: its published val numbers (with oxts ego "
        "compensation, which we do not use)"
    )
    lines.append(
        f"\nOurs: {scope}. MOTA..FN at the recall threshold with the best MOTA (as AB3DMOT reports), "
        "sAMOTA over 40 recall points, HOTA and IDF1 over all outputs."
    )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
