"""KITTI 3D MOT evaluation exactly as AB3DMOT scores it (`scripts/KITTI/evaluate.py`, Weng et al. 2020).

    labels = {seq: read_kitti_tracking(label_dir / f"{seq}.txt") for seq in seqs}
    results = {seq: read_kitti_tracking(result_dir / f"{seq}.txt", with_score=True) for seq in seqs}
    result = evaluate_kitti_mot(results, labels, n_frames, "Car")   # KittiMotResult
    result.samota, result.best.mota, result.best.id_switches

This is the protocol behind AB3DMOT's published tables and the one third-party evaluators run on KITTI
tracking result files; it is *not* `fusion.evaluation.tracking`'s (py-motmetrics semantics). The rules,
reimplemented from the published definition:

Inputs. KITTI tracking rows `frame id type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]`
(camera-rect boxes, bottom centre). For class "Car" the rows whose type contains "car" or "van" are
loaded, for "Pedestrian" "pedestrian" or "person_sitting", else the class name, plus "dontcare"
rows (case-insensitive substring test, as the devkit). Rows with track id -1 other than DontCare are
dropped. On the GT side DontCare rows are 2D "don't care" regions, the rest are the GT objects.

Score threshold. Each result track's score is the mean of its rows' scores (per sequence); at a
threshold `t` the tracks whose mean is below `t` are removed whole.

Per frame. One Hungarian assignment of all GT objects (ignored ones and the neighbouring class
included) to all result boxes with cost 1 - 3D IoU, pairs with IoU < `iou_threshold` priced out
(1e9). Assigned pairs under the gate are TP (their IoU adds to MOTP); the result box is *valid*.
A result box that is not valid is *ignored* (neither TP nor FP) when it is of the neighbouring class
(van / person_sitting), its 2D box is at most `min_height_px` tall, or more than half of its 2D box
lies in one DontCare region. A GT object is ignored (and its pair, when it has one, is not a TP)
when it is of the neighbouring class, truncated more than `max_truncation` or occluded more than
`max_occlusion`. Then

    n_gt += objects - ignored;  FN += unassigned objects - ignored unassigned ones
    FP += result boxes - (TP - ignored TP) - ignored result boxes - ignored TP (+ doubly ignored pairs)

Note: the devkit's TP *count* keeps the ignored TPs (recall, precision and MOTP use it; MOTA uses
n_gt, FN, FP, IDS, which exclude them). A result box once valid stays valid in the later evaluations
of the same sweep (the devkit marks its objects and never clears the mark); kept so that the numbers
are the devkit's.

ID switches and fragmentations, per GT track over the frames it is in (ignored frames reset the
"last id"): an ID switch when the assigned result id differs from the last assigned one and the GT
was assigned in the frame before; a fragmentation when the assigned id differs from the frame
before's, there was a last id, and the GT is assigned now and in the next frame (or now, at its last
frame). MT / PT / ML: the fraction of a GT track's non-ignored frames that are assigned (> 0.8,
< 0.2, else).

    MOTA = 1 - (FN + FP + IDS) / n_gt        MOTP = sum IoU of TP / TP
    sMOTA_r = min(1, max(0, 1 - (FN + FP + IDS - (1 - r) n_gt) / (r n_gt)))

Recall sweep (`num_sample_points` 41: recall points 1/40 ... 40/40). The scores of the TPs of the
evaluation of all results (ignored TPs included; track mean scores) sorted high to low, with
num_gt = TP + FN of that evaluation: walking down the list, the i-th score becomes the threshold of
the current recall point r (starting at 0, then 1/40, 2/40 ...) unless r lies beyond the midpoint of
(i + 1) / num_gt and (i + 2) / num_gt (the last score always does); the point r = 0 is dropped. Each
(threshold, r) is evaluated; sAMOTA, AMOTA and AMOTP are the sums of sMOTA_r, MOTA_r and MOTP_r over
these points divided by 40 (points never reached count 0). `best`: the evaluation, at r = 1, of the
threshold with the highest MOTA among them (first one on ties; none above 0: threshold -10000).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from fusion.evaluation.errors import EvaluationError
from fusion.evaluation.iou import iou_3d

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Str = npt.NDArray[np.str_]

KITTI_MOT_CLASSES: Final = ("Car", "Pedestrian", "Cyclist")
NEIGHBOUR_CLASS: Final = {"car": "van", "pedestrian": "person_sitting"}
NO_THRESHOLD: Final = -10000.0
_MAX_COST: Final = 1e9
# KITTI camera-rect axes (x right, y down, z forward) -> x forward, y left, z up: a proper rotation,
# so `iou_3d` (vertical extent along z) measures the devkit's overlap along -y exactly
_LIDAR_FROM_CAMERA: Final = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class KittiMotConfig:
    """AB3DMOT's evaluation parameters (its defaults, KITTI 3D MOT)."""

    iou_threshold: float = 0.25  # 3D IoU a TP needs
    max_truncation: int = 0  # GT truncated more than this is ignored
    max_occlusion: int = 2  # GT occluded more than this is ignored
    min_height_px: float = 25.0  # unmatched results with a 2D box at most this tall are ignored
    num_sample_points: int = 41  # recall points 0, 1/40, ..., 1 (the first is dropped)

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise EvaluationError(
                f"KittiMotConfig.iou_threshold = {self.iou_threshold}; use a value in (0, 1]"
            )
        if self.num_sample_points < 2:
            raise EvaluationError(f"KittiMotConfig.num_sample_points = {self.num_sample_points}; use 41")


@dataclass(frozen=True, eq=False)
class KittiObjects:
    """The rows of one KITTI tracking file (N of them), in file order.

    kind: (N,) lower-case type; box2d: (N, 4) x1 y1 x2 y2 px; box3d: (N, 7) h w l x y z ry (camera rect,
    bottom centre); score: (N,) (results; -1 when the file has 17 columns, 0 for labels).
    """

    frame: I64
    track_id: I64
    kind: Str
    truncation: I64
    occlusion: I64
    box2d: F64
    box3d: F64
    score: F64

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def take(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> KittiObjects:
        return KittiObjects(
            self.frame[rows], self.track_id[rows], self.kind[rows], self.truncation[rows],
            self.occlusion[rows], self.box2d[rows], self.box3d[rows], self.score[rows],
        )  # fmt: skip


def read_kitti_tracking(path: str | Path, with_score: bool = False) -> KittiObjects:
    """One KITTI tracking file (17 columns, or 18 with a score when `with_score`). A missing or empty
    file is an empty sequence only when `with_score` (a tracker may output nothing); raises
    EvaluationError for a malformed line, naming the file and line."""
    path = Path(path)
    if not path.is_file():
        if with_score:
            return _objects([], path)
        raise EvaluationError(f"{path}: no such label file; pass the folder of the KITTI tracking labels")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in ((17, 18) if with_score else (17,)):
            raise EvaluationError(
                f"{path}:{n}: {len(fields)} columns; KITTI tracking rows have 17 "
                "(frame id type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry)"
                + (" + score" if with_score else "")
            )
        rows.append(fields)
    return _objects(rows, path)


def _objects(rows: Sequence[Sequence[str]], path: Path) -> KittiObjects:
    n = len(rows)
    try:
        num = np.array([[float(v) for i, v in enumerate(r) if i != 2] for r in rows], np.float64)
        num = num.reshape(n, -1) if n else np.zeros((0, 17))
    except ValueError as err:
        raise EvaluationError(f"{path}: a non-numeric value ({err}); fix or regenerate the file") from err
    score = num[:, 16] if num.shape[1] == 17 else np.full(n, -1.0)
    return KittiObjects(
        frame=num[:, 0].astype(np.int64),
        track_id=num[:, 1].astype(np.int64),
        kind=np.array([r[2].lower() for r in rows], dtype="<U16").reshape(n),
        truncation=num[:, 2].astype(np.int64),
        occlusion=num[:, 3].astype(np.int64),
        box2d=num[:, 5:9].reshape(n, 4),
        box3d=num[:, 9:16].reshape(n, 7),
        score=score if n else np.zeros(0),
    )


@dataclass(frozen=True)
class KittiMotCounts:
    """The devkit's statistics of one evaluation (one score threshold)."""

    threshold: float
    recall_point: float  # r of sMOTA (1.0 outside the sweep)
    n_gt: int  # GT objects minus ignored ones
    n_pred: int  # result boxes kept by the threshold
    tp: int  # the devkit's TP count: ignored TPs included
    ignored_tp: int
    fp: int
    fn: int
    id_switches: int
    fragmentations: int
    mota: float | None
    smota: float | None
    motp: float | None
    recall: float | None
    precision: float | None
    mostly_tracked: float
    partly_tracked: float
    mostly_lost: float

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class KittiMotResult:
    """One class: sAMOTA, AMOTA, AMOTP over the recall sweep, the single-threshold `best`, every point."""

    kitti_class: str
    samota: float
    amota: float
    amotp: float
    best_threshold: float
    best: KittiMotCounts
    points: tuple[KittiMotCounts, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.kitti_class,
            "samota": self.samota,
            "amota": self.amota,
            "amotp": self.amotp,
            "best_threshold": self.best_threshold,
            "best": self.best.to_json(),
            "points": [p.to_json() for p in self.points],
        }


@dataclass
class _Frame:
    gt: KittiObjects
    pred_rows: npt.NDArray[np.intp]  # rows of the sequence's results in this frame
    dontcare: F64  # (D, 4)
    iou: F64  # (G, P) 3D IoU of GT x results


@dataclass
class _Sequence:
    frames: list[_Frame]
    pred: KittiObjects
    track_index: I64  # (R,) index of each result row's track in this sequence
    pred_neighbour: npt.NDArray[np.bool_]
    pred_small: npt.NDArray[np.bool_]
    neighbour: str  # the neighbouring class's type, "" when none
    track_rows: list[list[int]]  # per track, its rows in frame order (file order within a frame)
    means: list[float] | None = None  # per track, the mean score of the last evaluation

    def next_means(self) -> F64:
        """The track means of the next evaluation, computed as the devkit does: it replaces every row's
        score by its track's mean and averages again at each evaluation, with Python's `sum` (repeated
        rounding, so a mean can drift by an ulp from one evaluation to the next; thresholds compare
        against these exact values)."""
        if self.means is None:
            score = self.pred.score.tolist()
            self.means = [sum(score[r] for r in rows) / float(len(rows)) for rows in self.track_rows]
        else:
            self.means = [
                sum([m] * len(rows)) / float(len(rows))
                for m, rows in zip(self.means, self.track_rows, strict=True)
            ]
        return np.array(self.means, dtype=np.float64)


def evaluate_kitti_mot(
    results: Mapping[str, KittiObjects],
    labels: Mapping[str, KittiObjects],
    n_frames: Mapping[str, int],
    kitti_class: str,
    config: KittiMotConfig | None = None,
) -> KittiMotResult:
    """Score the result rows of `kitti_class` against the labels, sequence by sequence (`n_frames` names
    the sequences and their frame counts; frames beyond a count are still read). See the module docstring."""
    cfg = config or KittiMotConfig()
    cls = kitti_class.lower()
    if missing := sorted(set(n_frames) - set(labels)):
        raise EvaluationError(f"no labels for sequences {missing}")
    sequences = [
        _prepare(results.get(name, _objects([], Path(name))), labels[name], count, cls, cfg)
        for name, count in sorted(n_frames.items())
    ]
    valid = [np.zeros(len(s.pred), bool) for s in sequences]
    full, tp_scores = _evaluate(sequences, valid, NO_THRESHOLD, 1.0, cfg)
    num_gt = full.tp + full.fn
    points = []
    smota = mota = motp = 0.0
    best_mota, best_threshold = 0.0, NO_THRESHOLD
    for threshold, r in sample_thresholds(tp_scores, num_gt, cfg.num_sample_points):
        c, _ = _evaluate(sequences, valid, threshold, r, cfg)
        points.append(c)
        smota += c.smota or 0.0
        mota += c.mota if c.mota is not None else 0.0
        motp += c.motp or 0.0
        if c.mota is not None and c.mota > best_mota:
            best_mota, best_threshold = c.mota, threshold
    best, _ = _evaluate(sequences, valid, best_threshold, 1.0, cfg)
    n = cfg.num_sample_points - 1
    return KittiMotResult(kitti_class, smota / n, mota / n, motp / n, best_threshold, best, tuple(points))


def sample_thresholds(
    tp_scores: npt.ArrayLike, num_gt: int, num_sample_points: int = 41
) -> list[tuple[float, float]]:
    """AB3DMOT's (threshold, recall point) pairs from the TP scores (see the module docstring)."""
    scores = np.sort(np.asarray(tp_scores, dtype=np.float64).reshape(-1))[::-1]
    out: list[tuple[float, float]] = []
    if num_gt <= 0:
        return out
    current = 0.0
    step = 1.0 / (num_sample_points - 1.0)
    last = len(scores) - 1
    for i, score in enumerate(scores):
        left = (i + 1) / float(num_gt)
        right = (i + 2) / float(num_gt) if i < last else left
        if (right - current) < (current - left) and i < last:
            continue
        out.append((float(score), current))
        current += step
    return out[1:]


def _prepare(pred: KittiObjects, gt: KittiObjects, count: int, cls: str, cfg: KittiMotConfig) -> _Sequence:
    loaded = [cls, NEIGHBOUR_CLASS.get(cls, cls), "dontcare"]
    pred = pred.take(_loaded(pred, loaded))
    pairs = pred.frame * (int(pred.track_id.max(initial=0)) + 2) + pred.track_id + 1
    if len(np.unique(pairs)) != len(pairs):
        raise EvaluationError("a result track id occurs twice in one frame; ids must be unique per frame")
    gt = gt.take(_loaded(gt, loaded))
    n_frames = max(count, int(gt.frame.max(initial=-1)) + 1, int(pred.frame.max(initial=-1)) + 1)
    _, track_index = np.unique(pred.track_id, return_inverse=True)
    track_index = track_index.astype(np.int64).reshape(-1)
    track_rows: list[list[int]] = [[] for _ in range(int(track_index.max(initial=-1)) + 1)]
    for row in np.argsort(pred.frame, kind="stable").tolist():
        track_rows[track_index[row]].append(row)
    pred_box = _lidar_boxes(pred.box3d)
    frames = []
    gt_order = np.argsort(gt.frame, kind="stable")
    pred_order = np.argsort(pred.frame, kind="stable")
    g_starts = np.searchsorted(gt.frame[gt_order], np.arange(n_frames + 1))
    p_starts = np.searchsorted(pred.frame[pred_order], np.arange(n_frames + 1))
    for f in range(n_frames):
        g_rows = gt_order[g_starts[f] : g_starts[f + 1]]
        p_rows = pred_order[p_starts[f] : p_starts[f + 1]].astype(np.intp)
        g = gt.take(g_rows)
        care = g.kind != "dontcare"
        objects = g.take(care)
        iou = (
            iou_3d(_lidar_boxes(objects.box3d), pred_box[p_rows])
            if len(objects) and len(p_rows)
            else np.zeros((len(objects), len(p_rows)))
        )
        frames.append(_Frame(objects, p_rows, g.box2d[~care], iou))
    neighbour = NEIGHBOUR_CLASS.get(cls)
    return _Sequence(
        frames=frames,
        pred=pred,
        track_index=track_index,
        pred_neighbour=pred.kind == neighbour if neighbour else np.zeros(len(pred), bool),
        pred_small=np.abs(pred.box2d[:, 1] - pred.box2d[:, 3]) <= cfg.min_height_px,
        neighbour=neighbour or "",
        track_rows=track_rows,
    )


def _loaded(objects: KittiObjects, names: Sequence[str]) -> npt.NDArray[np.bool_]:
    keep = np.array([any(n in k for n in names) for k in objects.kind.tolist()], bool).reshape(-1)
    keep &= (objects.track_id != -1) | (objects.kind == "dontcare")
    return keep


def _lidar_boxes(box3d: F64) -> F64:
    """KITTI camera boxes (N, 7) h w l x y z ry as (N, 7) x y z l w h yaw (axes x fwd, y left, z up)."""
    h, w, length = box3d[:, 0], box3d[:, 1], box3d[:, 2]
    bottom = box3d[:, 3:6] @ _LIDAR_FROM_CAMERA.T
    return np.stack(
        [bottom[:, 0], bottom[:, 1], bottom[:, 2] + 0.5 * h, length, w, h, -box3d[:, 6] - 0.5 * np.pi], axis=1
    )


def _in_dontcare(box: F64, regions: F64) -> bool:
    """The devkit's 'a' overlap: more than half of `box` (4,) inside one region of `regions` (D, 4)."""
    if len(regions) == 0:
        return False
    iw = np.minimum(box[2], regions[:, 2]) - np.maximum(box[0], regions[:, 0])
    ih = np.minimum(box[3], regions[:, 3]) - np.maximum(box[1], regions[:, 1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    ok = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = np.where(ok, iw * ih / area, 0.0)
    return bool((overlap > 0.5).any())


def _evaluate(
    sequences: Sequence[_Sequence], valid: list[npt.NDArray[np.bool_]], threshold: float, r: float,
    cfg: KittiMotConfig,
) -> tuple[KittiMotCounts, list[float]]:  # fmt: skip
    tp = itp = fp = fn = n_gt = n_pred = ids = frag = 0
    total_iou = 0.0
    mt = pt = ml = 0
    n_gt_tracks = n_ignored_tracks = 0
    scores: list[float] = []
    gate = 1.0 - cfg.iou_threshold
    for s, seq in enumerate(sequences):
        row_score = seq.next_means()[seq.track_index] if len(seq.track_index) else np.zeros(0)
        kept = row_score >= threshold
        trajectories: dict[int, list[int]] = {}
        ignored_frames: dict[int, list[bool]] = {}
        for frame in seq.frames:
            g = frame.gt
            p_rows = frame.pred_rows[kept[frame.pred_rows]]
            n_g, n_p = len(g), len(p_rows)
            n_gt += n_g
            n_pred += n_p
            assigned = np.full(n_g, -1, np.int64)  # result row per GT object
            if n_g and n_p:
                iou = frame.iou[:, kept[frame.pred_rows]]
                cost = np.where(1.0 - iou <= gate, 1.0 - iou, _MAX_COST)
                rows, cols = linear_sum_assignment(cost)
                ok = cost[rows, cols] < _MAX_COST
                assigned[rows[ok]] = p_rows[cols[ok]]
                valid[s][p_rows[cols[ok]]] = True
                total_iou += float(iou[rows[ok], cols[ok]].sum())
                tp += int(ok.sum())
                scores += row_score[p_rows[cols[ok]]].tolist()
            n_assigned = int((assigned >= 0).sum())
            # unmatched results of the neighbouring class, too small or in a DontCare region are ignored
            ignored_pred = 0
            for row in p_rows.tolist():
                if valid[s][row]:
                    continue
                if (
                    seq.pred_neighbour[row]
                    or seq.pred_small[row]
                    or _in_dontcare(seq.pred.box2d[row], frame.dontcare)
                ):
                    ignored_pred += 1
            gt_ignored = (
                (g.occlusion > cfg.max_occlusion)
                | (g.truncation > cfg.max_truncation)
                | ((g.kind == seq.neighbour) & (seq.neighbour != ""))
            )
            ignored_fn = int((gt_ignored & (assigned < 0)).sum())
            ignored_tp = int((gt_ignored & (assigned >= 0)).sum())
            itp += ignored_tp
            n_gt -= ignored_fn + ignored_tp
            fn += n_g - n_assigned - ignored_fn
            fp += n_p - (n_assigned - ignored_tp) - ignored_pred - ignored_tp
            for k in range(n_g):
                gid = int(g.track_id[k])
                trajectories.setdefault(gid, []).append(
                    int(seq.pred.track_id[assigned[k]]) if assigned[k] >= 0 else -1
                )
                ignored_frames.setdefault(gid, []).append(bool(gt_ignored[k]))
        for gid, traj in trajectories.items():
            n_gt_tracks += 1
            a, b, c, d, e = _trajectory(traj, ignored_frames[gid])
            ids += a
            frag += b
            mt += c
            pt += d
            ml += e
            n_ignored_tracks += int(all(ignored_frames[gid]))
    counted = n_gt_tracks - n_ignored_tracks
    mota = smota = None
    if n_gt:
        errors = fn + fp + ids
        mota = 1.0 - errors / n_gt
        smota = min(1.0, max(0.0, 1.0 - (errors - (1.0 - r) * n_gt) / (r * n_gt)))
    counts = KittiMotCounts(
        threshold=threshold,
        recall_point=r,
        n_gt=n_gt,
        n_pred=n_pred,
        tp=tp,
        ignored_tp=itp,
        fp=fp,
        fn=fn,
        id_switches=ids,
        fragmentations=frag,
        mota=mota,
        smota=smota,
        motp=total_iou / tp if tp else None,
        recall=tp / (tp + fn) if tp + fn and tp + fp else None,
        precision=tp / (tp + fp) if tp + fn and tp + fp else None,
        mostly_tracked=mt / counted if counted else 0.0,
        partly_tracked=pt / counted if counted else 0.0,
        mostly_lost=ml / counted if counted else 0.0,
    )
    return counts, scores


def _trajectory(assigned: list[int], ignored: list[bool]) -> tuple[int, int, int, int, int]:
    """(id switches, fragmentations, mostly tracked, partly tracked, mostly lost) of one GT track:
    `assigned` is its result id per frame it is in (-1: none), `ignored` whether it was ignored there."""
    if all(ignored):
        return 0, 0, 0, 0, 0
    if all(a == -1 for a in assigned):
        return 0, 0, 0, 0, 1
    n = len(assigned)
    ids = frag = 0
    last = assigned[0]
    tracked = 1 if assigned[0] >= 0 else 0
    for f in range(1, n):
        now, before = assigned[f], assigned[f - 1]
        if ignored[f]:
            last = -1
            continue
        if last not in (now, -1) and now != -1 and before != -1:
            ids += 1
        if f < n - 1 and before != now and last != -1 and now != -1 and assigned[f + 1] != -1:
            frag += 1
        if now != -1:
            tracked += 1
            last = now
    f = n - 1
    if n > 1 and assigned[f - 1] != assigned[f] and last != -1 and assigned[f] != -1 and not ignored[f]:
        frag += 1
    ratio = tracked / float(n - sum(ignored))
    return ids, frag, int(ratio > 0.8), int(0.2 <= ratio <= 0.8), int(ratio < 0.2)
