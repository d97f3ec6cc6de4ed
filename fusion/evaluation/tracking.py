"""Multi-object tracking metrics of predicted tracks against ground-truth tracks (labels tables).

`evaluate_tracking(pred, gt, config)` takes two labels tables (pyarrow Tables or pandas DataFrames
with `sequence_id, frame_index, track_id, category, x, y, z, length, width, height, yaw`, and
`score` for the predictions; optionally a boolean `ignore` column on either side) and returns a
`TrackingResult`: per category and overall, CLEAR MOT (MOTA, MOTP, ID switches, fragmentations,
FP, FN), the identity metrics (IDF1, IDP, IDR), HOTA (DetA, AssA, LocA) and AB3DMOT's
recall-integrated sAMOTA / AMOTA / AMOTP.

Everything is class-aware: category `c` is its predictions against its GT, nothing else. With
`config.max_range_m`, rows of either side whose box centre is farther from the sensor (`hypot(x, y)`)
are dropped first, as in detection evaluation (a track leaving the range ends there on both sides). A frame is
a `(sequence_id, frame_index)` pair; track ids are per sequence (the same id in two sequences is two
tracks). A track id may appear at most once a frame on each side.

Pairing rule (one rule everywhere)
----------------------------------
`config.match = "iou_3d"` (default; AB3DMOT's KITTI protocol) or `"bev_iou"`: a prediction and a GT
box of the same frame may pair when their exact rotated IoU (`fusion.evaluation.iou`) is
>= `config.iou_threshold` (default 0.25) and > 0; their distance is `d = 1 - IoU`.
`config.match = "distance"` (nuScenes): when the BEV centre distance `d = hypot(dx, dy)` is
<= `config.distance_m` (default 2 m).

Ignored boxes (`ignore` column; KITTI's DontCare / neighbouring-class rule)
----------------------------------------------------------------------------
Resolved first, frame by frame, before every metric below, when a frame has an ignore flag:
one assignment of *all* the frame's predictions to *all* its GT (ignored ones included) over the
allowed pairs (most pairs, then least total distance: `scipy.optimize.linear_sum_assignment` with
disallowed pairs priced out, as py-motmetrics does). Then
- a GT box with `ignore` is dropped, and so is the prediction assigned to it (neither TP nor FP);
- a prediction with `ignore` that is assigned to no GT box is dropped (not an FP); assigned to a
  GT box that is not ignored, it stays (a TP as any other).
The metrics then run on the boxes left. `num_ignored_gt` / `num_ignored_pred` count the drops.

CLEAR MOT and identity metrics (py-motmetrics 1.4 semantics, reimplemented and cross-checked)
---------------------------------------------------------------------------------------------
Per sequence, frame by frame in `frame_index` order (`MOTAccumulator.update`): (1) a GT track
matched in an earlier frame to prediction track `h` stays matched to `h` when `h` is in this frame
and the pair is allowed; (2) the remaining boxes are assigned as above (most pairs, then least
distance); a GT track assigned to a prediction track other than its last one is an **ID switch**;
(3) unassigned GT boxes are FN (misses), unassigned predictions FP. Then
- TP = assigned pairs; num_gt = GT boxes (after ignore); num_pred = predictions (after ignore);
- MOTA = 1 - (FN + FP + IDS) / num_gt (may be negative; None when num_gt = 0);
- MOTP = mean over TP of IoU for IoU matching (KITTI / AB3DMOT's convention: higher is better;
  py-motmetrics reports 1 - this), of the centre distance in metres for distance matching;
  None without TP;
- FRAG = for each GT track, over the frames it is in between its first and last assigned frame,
  the number of assigned -> unassigned transitions (py-motmetrics' `num_fragmentations`);
- recall = TP / num_gt, precision = TP / num_pred (None when the denominator is 0);
- IDF1: one global assignment of GT track ids to prediction track ids (per sequence) maximising
  IDTP = the number of frames where the two tracks' boxes are an allowed pair (assigned or not);
  IDF1 = 2 IDTP / (num_gt + num_pred), IDP = IDTP / num_pred, IDR = IDTP / num_gt.
Differences from the KITTI devkit that AB3DMOT's `evaluate.py` uses: the devkit does not carry
matches over (step 1), counts an ID switch only when the GT track was also matched in the frame
before, and counts a fragmentation also at every ID switch; an ignored GT box there leaves a gap
in its track, here the track simply is not in that frame. A test holds this module to
`motmetrics` itself on random scenes.

HOTA (TrackEval's definition, Luiten et al. IJCV 2021)
------------------------------------------------------
Similarity S = IoU of the configured kind (for distance matching S = max(0, 1 - d / distance_m),
TrackEval's Euclidean similarity). Per sequence: the global alignment score of each (GT id,
prediction id) pair from the per-frame IoU-normalised similarities; per frame the Hungarian
assignment maximising alignment * S; for each alpha in `config.hota_alphas` (0.05 ... 0.95) the
assigned pairs with S >= alpha are TP_a, and
DetA_a = TP_a / (TP_a + FN_a + FP_a), AssA_a = sum over TP_a of A(c) / TP_a with
A(c) = TPA / (TPA + FNA + FPA) of the pair's tracks, HOTA_a = sqrt(DetA_a * AssA_a),
LocA_a = mean S over TP_a. Sequences and (for `overall`) categories combine as TrackEval does:
TP/FN/FP summed, AssA_a and LocA_a weighted by TP_a. HOTA, DetA, AssA, LocA = means over alpha.
None when a category has neither GT nor predictions.

sAMOTA, AMOTA, AMOTP (AB3DMOT, Weng et al. IROS 2020)
-----------------------------------------------------
Each prediction track's score is the mean score of its boxes (AB3DMOT averages per track). With
n = num_gt (after ignore), L = `config.num_recall_points` (40) and s_0 >= s_1 >= ... the track
scores of the TP boxes of the evaluation of all predictions: for each recall point r = k / L,
k = 1..L, the threshold t_r = s_i for the smallest i with (i + 1) / n >= r (AB3DMOT takes the TP
score whose recall is nearest r; the same for n >= L up to rounding). At t_r only the prediction
tracks with mean score >= t_r are kept and everything above is re-evaluated, giving FP_r, FN_r,
IDS_r, MOTP_r, and

    sMOTA_r = max(0, min(1, 1 - (FP_r + FN_r + IDS_r - (1 - r) n) / (r n)))
    MOTA_r  = 1 - (FP_r + FN_r + IDS_r) / n
    sAMOTA = (1/L) sum_r sMOTA_r,  AMOTA = (1/L) sum_r MOTA_r,  AMOTP = (1/L) sum_r MOTP_r

A recall point no threshold reaches (r > TP / n of all predictions) adds 0, as in AB3DMOT (whose
AMOTA likewise averages the unclipped MOTA_r). None when n = 0; 0.0 when there is GT but no TP.
`best` holds the CLEAR metrics at the threshold among the t_r with the highest MOTA (AB3DMOT's
"best results with single threshold", the numbers of its published tables), `best_threshold` that
threshold. `overall` sAMOTA / AMOTA / AMOTP are the means over the categories that have GT (as
AB3DMOT's "Overall" row); its `best` is None.

Nothing returns NaN: undefined values are None. Results are deterministic (stable sorts).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from scipy.optimize import linear_sum_assignment

from exporters.schema import BOX_COLUMNS, CATEGORIES
from fusion.evaluation.errors import EvaluationError
from fusion.evaluation.iou import frame_pair_ious
from fusion.evaluation.metrics import LabelsLike, as_labels_table, check_config_keys, find_category

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
MatchKind = Literal["iou_3d", "bev_iou", "distance"]

MATCH_KINDS: Final = ("iou_3d", "bev_iou", "distance")
DEFAULT_HOTA_ALPHAS: Final = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""TrackEval's localisation thresholds: 0.05, 0.10, ..., 0.95."""

_EPS: Final = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class TrackingConfig:
    """What `evaluate_tracking` measures. Raises EvaluationError for an inconsistent setting."""

    # categories evaluated, in report order; rows of other categories are dropped on both sides
    categories: tuple[str, ...] = ("car", "pedestrian", "cyclist")
    # pairing rule: "iou_3d" (AB3DMOT's KITTI protocol), "bev_iou", or "distance" (nuScenes, BEV centres)
    match: MatchKind = "iou_3d"
    # IoU a pair needs (iou_3d, bev_iou): AB3DMOT's KITTI 3D MOT uses 0.25
    iou_threshold: float = 0.25
    # BEV centre distance a pair may have, metres (distance); nuScenes uses 2 m
    distance_m: float = 2.0
    # recall points of sAMOTA / AMOTA (AB3DMOT: 40)
    num_recall_points: int = 40
    # compute sAMOTA / AMOTA / AMOTP and `best` (one extra evaluation per distinct recall threshold)
    recall_sweep: bool = True
    # HOTA's localisation thresholds (TrackEval: 0.05 ... 0.95)
    hota_alphas: tuple[float, ...] = DEFAULT_HOTA_ALPHAS
    # rows (both sides) farther than this from the sensor are dropped before anything else (range =
    # `hypot(x, y)` of the box centre, as in detection evaluation); None: every range
    max_range_m: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "hota_alphas", tuple(float(a) for a in self.hota_alphas))
        if not self.categories:
            raise EvaluationError(
                "TrackingConfig.categories is empty; name at least one of " + ", ".join(CATEGORIES)
            )
        if set(self.categories) - set(CATEGORIES) or len(set(self.categories)) != len(self.categories):
            raise EvaluationError(
                f"TrackingConfig.categories {list(self.categories)} has unknown or repeated names; "
                f"use each of {', '.join(CATEGORIES)} at most once"
            )
        if self.match not in MATCH_KINDS:
            raise EvaluationError(
                f"TrackingConfig.match = {self.match!r}; use one of {', '.join(MATCH_KINDS)}"
            )
        if not 0.0 < self.iou_threshold <= 1.0:
            raise EvaluationError(
                f"TrackingConfig.iou_threshold = {self.iou_threshold}; use a value in (0, 1]"
            )
        if not (self.distance_m > 0.0 and math.isfinite(self.distance_m)):
            raise EvaluationError(f"TrackingConfig.distance_m = {self.distance_m}; use a positive distance")
        if self.num_recall_points < 1:
            raise EvaluationError(
                f"TrackingConfig.num_recall_points = {self.num_recall_points}; use 40 (AB3DMOT)"
            )
        if self.max_range_m is not None and not (self.max_range_m > 0.0 and math.isfinite(self.max_range_m)):
            raise EvaluationError(
                f"TrackingConfig.max_range_m = {self.max_range_m}; use a positive distance or None"
            )
        if not self.hota_alphas or not all(0.0 < a <= 1.0 for a in self.hota_alphas):
            raise EvaluationError(f"TrackingConfig.hota_alphas = {self.hota_alphas}; use values in (0, 1]")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrackingConfig:
        """The configuration of a mapping shaped like `to_json()`'s (e.g. a TOML table); keys left out
        keep their defaults. Raises EvaluationError for an unknown key or a value of the wrong type."""
        check_config_keys(cls, data, "tracking evaluation config")
        values = dict(data)
        try:
            for name in ("categories", "hota_alphas"):
                if name in values:
                    values[name] = tuple(values[name])
            return cls(**values)
        except TypeError as err:
            raise EvaluationError(
                f"tracking evaluation config: a value has the wrong type ({err}); write it as to_json() does"
            ) from err

    def to_json(self) -> dict[str, Any]:
        """The configuration as a JSON-able dict (stable keys)."""
        return {
            "categories": list(self.categories),
            "match": self.match,
            "iou_threshold": self.iou_threshold,
            "distance_m": self.distance_m,
            "num_recall_points": self.num_recall_points,
            "recall_sweep": self.recall_sweep,
            "hota_alphas": list(self.hota_alphas),
            "max_range_m": self.max_range_m,
        }


@dataclass(frozen=True)
class ClearMetrics:
    """CLEAR MOT counts and ratios at one operating point (see the module docstring)."""

    num_gt: int
    num_pred: int
    tp: int
    fp: int
    fn: int
    id_switches: int
    fragmentations: int
    mota: float | None
    motp: float | None  # mean IoU of TP (IoU matching) or mean centre distance, m (distance matching)
    recall: float | None
    precision: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "num_gt": self.num_gt,
            "num_pred": self.num_pred,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "id_switches": self.id_switches,
            "fragmentations": self.fragmentations,
            "mota": self.mota,
            "motp": self.motp,
            "recall": self.recall,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class TrackingMetrics:
    """Metrics of one category (or `overall`), all predictions, plus the recall sweep."""

    category: str  # a category, or "overall"
    num_gt_tracks: int
    num_pred_tracks: int
    num_ignored_gt: int  # GT boxes dropped by the ignore rule
    num_ignored_pred: int  # predictions dropped by the ignore rule
    clear: ClearMetrics  # all predictions
    idf1: float | None
    idp: float | None
    idr: float | None
    hota: float | None
    deta: float | None
    assa: float | None
    loca: float | None
    samota: float | None
    amota: float | None
    amotp: float | None
    best_threshold: float | None  # the recall threshold with the best MOTA (track mean score)
    best: ClearMetrics | None  # CLEAR metrics at best_threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "num_gt_tracks": self.num_gt_tracks,
            "num_pred_tracks": self.num_pred_tracks,
            "num_ignored_gt": self.num_ignored_gt,
            "num_ignored_pred": self.num_ignored_pred,
            **self.clear.to_json(),
            "idf1": self.idf1,
            "idp": self.idp,
            "idr": self.idr,
            "hota": self.hota,
            "deta": self.deta,
            "assa": self.assa,
            "loca": self.loca,
            "samota": self.samota,
            "amota": self.amota,
            "amotp": self.amotp,
            "best_threshold": self.best_threshold,
            "best": None if self.best is None else self.best.to_json(),
        }


@dataclass(frozen=True)
class TrackingResult:
    """What `evaluate_tracking` found: per category (config order) and overall."""

    config: TrackingConfig
    categories: tuple[TrackingMetrics, ...]
    overall: TrackingMetrics
    num_sequences: int
    num_frames: int

    def category(self, name: str) -> TrackingMetrics:
        """The metrics of category `name`; raises EvaluationError when it was not evaluated."""
        return find_category(self.categories, name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with stable keys; undefined values are None (null), never NaN."""
        return {
            "format": "fusion.evaluation.tracking/1",
            "config": self.config.to_json(),
            "num_sequences": self.num_sequences,
            "num_frames": self.num_frames,
            "overall": self.overall.to_json(),
            "categories": {m.category: m.to_json() for m in self.categories},
        }


# ---- evaluate_tracking --------------------------------------------------------------------------


def evaluate_tracking(
    pred: LabelsLike, gt: LabelsLike, config: TrackingConfig | None = None
) -> TrackingResult:
    """Tracking metrics of predicted tracks `pred` against ground truth `gt` (module docstring).

    pred, gt: labels tables (pyarrow Table or pandas DataFrame); `pred` needs a `score` column;
    either may have a boolean `ignore` column. Raises EvaluationError naming the table and column
    when a column is missing or holds nulls, a category is unknown, a box or score is not finite,
    or a track id appears twice in one frame.
    """
    config = config or TrackingConfig()
    pred_table = as_labels_table(pred, "predictions")
    gt_table = as_labels_table(gt, "ground truth")
    frames, pred_frame, gt_frame = _frame_keys(pred_table, gt_table)
    preds = _side(pred_table, pred_frame, "predictions", with_score=True)
    gts = _side(gt_table, gt_frame, "ground truth", with_score=False)
    if config.max_range_m is not None:
        preds, gts = (
            side.take(np.flatnonzero(np.hypot(side.boxes[:, 0], side.boxes[:, 1]) <= config.max_range_m))
            for side in (preds, gts)
        )
    num_sequences = len(np.unique(frames[:, 0])) if len(frames) else 0

    per_category: list[_CategoryEval] = []
    for name in config.categories:
        code = CATEGORIES.index(name)
        per_category.append(
            _evaluate_category(
                name,
                preds.take(np.flatnonzero(preds.category == code)),
                gts.take(np.flatnonzero(gts.category == code)),
                frames,
                config,
            )
        )
    overall = _overall(per_category, config)
    return TrackingResult(
        config=config,
        categories=tuple(c.metrics for c in per_category),
        overall=overall,
        num_sequences=num_sequences,
        num_frames=len(frames),
    )


# ---- input --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    """One side's rows: frame (index into the frame keys), track id, category code, boxes, score,
    ignore flag; N rows."""

    frame: I64
    track: I64
    category: I64
    boxes: F64
    score: F64
    ignore: BoolArray

    def take(self, index: npt.NDArray[np.intp]) -> _Side:
        return _Side(
            self.frame[index],
            self.track[index],
            self.category[index],
            self.boxes[index],
            self.score[index],
            self.ignore[index],
        )

    def __len__(self) -> int:
        return int(self.frame.shape[0])


def _frame_keys(pred: pa.Table, gt: pa.Table) -> tuple[I64, I64, I64]:
    """Sorted distinct (sequence code, frame_index) keys (F, 2), and each row's index into them."""
    for table, what in ((pred, "predictions"), (gt, "ground truth")):
        missing = [c for c in ("sequence_id", "frame_index") if c not in table.column_names]
        if missing:
            raise EvaluationError(
                f"{what}: missing column(s) {', '.join(missing)}; "
                "a labels table (shared/CONTRACT.md) has them"
            )
        for name in ("sequence_id", "frame_index"):
            if table.column(name).null_count:
                raise EvaluationError(f"{what}: column '{name}' holds nulls; every row needs a value")
    try:
        sequences = pa.chunked_array(
            [
                *pred.column("sequence_id").cast(pa.string()).chunks,
                *gt.column("sequence_id").cast(pa.string()).chunks,
            ],
            type=pa.string(),
        )
        frame_index = np.concatenate(
            [
                np.asarray(pred.column("frame_index").to_numpy(), dtype=np.int64),
                np.asarray(gt.column("frame_index").to_numpy(), dtype=np.int64),
            ]
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError, ValueError) as err:
        raise EvaluationError(
            f"'sequence_id' must hold strings and 'frame_index' integers: {err}; fix the column types"
        ) from err
    if len(frame_index) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    names = np.asarray(sequences.to_numpy(zero_copy_only=False), dtype=str)
    _, codes = np.unique(names, return_inverse=True)  # sequence codes in name order: deterministic
    keys = np.stack([codes.reshape(-1).astype(np.int64), frame_index], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    return unique.astype(np.int64), inverse[: pred.num_rows], inverse[pred.num_rows :]


def _side(table: pa.Table, frame: I64, what: str, *, with_score: bool) -> _Side:
    needed = ("track_id", "category", *BOX_COLUMNS, *(("score",) if with_score else ()))
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        raise EvaluationError(
            f"{what}: missing column(s) {', '.join(missing)}; a labels table (shared/CONTRACT.md) has them"
        )
    for name in (*needed, *(("ignore",) if "ignore" in table.column_names else ())):
        if table.column(name).null_count:
            raise EvaluationError(f"{what}: column '{name}' holds nulls; every row needs a value")
    category_column = table.column("category").cast(pa.string())
    codes = pc.index_in(category_column, value_set=pa.array(CATEGORIES, pa.string()))
    if codes.null_count:
        bad = pc.filter(category_column, pc.is_null(codes))[0].as_py()
        raise EvaluationError(f"{what}: unknown category {bad!r}; use one of {', '.join(CATEGORIES)}")
    category = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)
    try:
        track = np.asarray(table.column("track_id").to_numpy(), dtype=np.int64)
    except (TypeError, ValueError, pa.ArrowInvalid) as err:
        raise EvaluationError(f"{what}: 'track_id' must hold integers ({err}); fix the column type") from err
    boxes = np.stack(
        [np.asarray(table.column(name).to_numpy(), dtype=np.float64) for name in BOX_COLUMNS], axis=1
    ).reshape(-1, len(BOX_COLUMNS))
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise EvaluationError(
            f"{what}: row {row} has a box that is not finite ({boxes[row].tolist()}); fix it"
        )
    if with_score:
        score = np.asarray(table.column("score").to_numpy(), dtype=np.float64)
        if not np.isfinite(score).all():
            row = int(np.flatnonzero(~np.isfinite(score))[0])
            raise EvaluationError(f"{what}: row {row} has score {score[row]}; scores must be finite")
    else:
        score = np.ones(len(frame), dtype=np.float64)
    if "ignore" in table.column_names:
        try:
            ignore = np.asarray(
                table.column("ignore").cast(pa.bool_()).to_numpy(zero_copy_only=False), dtype=bool
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise EvaluationError(
                f"{what}: 'ignore' must hold booleans ({err}); fix the column type"
            ) from err
    else:
        ignore = np.zeros(len(frame), dtype=bool)
    if len(frame):
        pairs = np.stack([frame, track, category], axis=1)
        unique, counts = np.unique(pairs, axis=0, return_counts=True)
        if (counts > 1).any():
            f, t, _ = unique[int(np.flatnonzero(counts > 1)[0])]
            raise EvaluationError(
                f"{what}: track_id {t} has two boxes in one frame (frame key {f}); each track has at most "
                "one box a frame"
            )
    return _Side(frame, track, category, boxes, score, ignore.reshape(-1))


# ---- one category -------------------------------------------------------------------------------


@dataclass
class _Frames:
    """One category's rows grouped by frame: both sides sorted by frame, pair distances and
    similarities of every same-frame pair, flat (see `iou.frame_pair_ious`)."""

    frames: I64  # (F, 2) keys (sequence code, frame_index), sorted
    pred: _Side
    gt: _Side
    pred_start: I64  # (F + 1,)
    gt_start: I64
    pair_start: I64
    allowed: BoolArray  # flat, per pair
    distance: F64  # flat: 1 - IoU or metres
    similarity: F64  # flat: HOTA's S

    def pairs(self, f: int) -> tuple[slice, slice, BoolArray, F64, F64]:
        """Frame f's prediction rows, GT rows, and (P_f, G_f) allowed / distance / similarity."""
        ps = slice(int(self.pred_start[f]), int(self.pred_start[f + 1]))
        gs = slice(int(self.gt_start[f]), int(self.gt_start[f + 1]))
        n_p, n_g = ps.stop - ps.start, gs.stop - gs.start
        qs = slice(int(self.pair_start[f]), int(self.pair_start[f + 1]))
        return (
            ps,
            gs,
            self.allowed[qs].reshape(n_p, n_g),
            self.distance[qs].reshape(n_p, n_g),
            self.similarity[qs].reshape(n_p, n_g),
        )


def _build_frames(preds: _Side, gts: _Side, frames: I64, config: TrackingConfig) -> _Frames:
    # by frame, then track id: the outcome does not depend on the input's row order
    preds = preds.take(np.lexsort((preds.track, preds.frame)))
    gts = gts.take(np.lexsort((gts.track, gts.frame)))
    bounds = np.arange(len(frames) + 1)
    pred_start = np.searchsorted(preds.frame, bounds).astype(np.int64)
    gt_start = np.searchsorted(gts.frame, bounds).astype(np.int64)
    if config.match == "distance":
        dist, pair_start = frame_pair_distances(preds.boxes, gts.boxes, pred_start, gt_start)
        allowed = dist <= config.distance_m
        similarity = np.maximum(0.0, 1.0 - dist / config.distance_m)
        distance = dist
    else:
        iou, pair_start = frame_pair_ious(
            np.ascontiguousarray(preds.boxes), np.ascontiguousarray(gts.boxes), pred_start, gt_start,
            config.match == "iou_3d",
        )  # fmt: skip
        allowed = (iou >= config.iou_threshold) & (iou > 0.0)
        similarity = iou
        distance = 1.0 - iou
    return _Frames(frames, preds, gts, pred_start, gt_start, pair_start, allowed, distance, similarity)


def frame_pair_distances(pred: F64, gt: F64, pred_start: I64, gt_start: I64) -> tuple[F64, I64]:
    """BEV centre distances of every same-frame pair, laid out as `iou.frame_pair_ious` lays out IoUs."""
    n_frames = len(pred_start) - 1
    sizes = np.diff(pred_start) * np.diff(gt_start)
    pair_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out = np.zeros(int(pair_start[-1]), dtype=np.float64)
    for f in range(n_frames):
        if sizes[f] == 0:
            continue
        p = pred[pred_start[f] : pred_start[f + 1], :2]
        g = gt[gt_start[f] : gt_start[f + 1], :2]
        out[pair_start[f] : pair_start[f + 1]] = np.hypot(
            p[:, None, 0] - g[None, :, 0], p[:, None, 1] - g[None, :, 1]
        ).reshape(-1)
    return out, pair_start


def _assign(allowed: BoolArray, distance: F64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Most allowed pairs, then least total distance (py-motmetrics' `lap.linear_sum_assignment`):
    disallowed pairs cost more than any full set of allowed ones. Returns the allowed (rows, cols)."""
    if not allowed.any():
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    costs = np.where(allowed, distance, 0.0)
    bound = float(np.abs(costs[allowed]).max()) + 1.0
    large = 2.0 * min(costs.shape) * bound + 1.0
    rows, cols = linear_sum_assignment(np.where(allowed, costs, large))
    keep = allowed[rows, cols]
    return rows[keep].astype(np.intp), cols[keep].astype(np.intp)


def _resolve_ignore(frames: _Frames, pred_active: BoolArray) -> tuple[BoolArray, BoolArray]:
    """(pred kept, GT kept) after the ignore rule (module docstring), among `pred_active` predictions."""
    pred_keep = pred_active & True
    gt_keep = ~frames.gt.ignore
    has_flag = np.zeros(len(frames.frames), dtype=bool)
    flagged_pred = pred_active & frames.pred.ignore
    has_flag[frames.pred.frame[flagged_pred]] = True
    has_flag[frames.gt.frame[frames.gt.ignore]] = True
    for f in np.flatnonzero(has_flag):
        ps, gs, allowed, distance, _ = frames.pairs(int(f))
        active = np.flatnonzero(pred_active[ps])
        rows, cols = _assign(allowed[active], distance[active])
        assigned_pred = active[rows] + ps.start
        assigned_gt = cols + gs.start
        on_ignored = frames.gt.ignore[assigned_gt]
        pred_keep[assigned_pred[on_ignored]] = False
        unassigned = np.ones(ps.stop - ps.start, dtype=bool)
        unassigned[active[rows]] = False
        local = np.arange(ps.start, ps.stop)
        pred_keep[local[unassigned & frames.pred.ignore[ps] & pred_active[ps]]] = False
    return pred_keep, gt_keep


@dataclass(frozen=True)
class _Clear:
    """Raw CLEAR outcome of one evaluation: counts, distance sum, and the TP prediction rows."""

    num_gt: int
    num_pred: int
    tp: int
    fp: int
    fn: int
    ids: int
    frag: int
    distance_sum: float
    similarity_sum: float
    tp_pred_rows: I64


def _clear(frames: _Frames, pred_keep: BoolArray, gt_keep: BoolArray) -> _Clear:
    """CLEAR MOT as py-motmetrics' MOTAccumulator computes it (module docstring)."""
    tp = ids = 0
    distance_sum = similarity_sum = 0.0
    tp_rows: list[npt.NDArray[np.intp]] = []
    gt_tracked = np.zeros(len(frames.gt), dtype=bool)
    sequence = -1
    last: dict[int, int] = {}
    for f in range(len(frames.frames)):
        if frames.frames[f, 0] != sequence:
            sequence = int(frames.frames[f, 0])
            last = {}
        ps, gs, allowed_all, distance_all, similarity_all = frames.pairs(f)
        p_rows = np.flatnonzero(pred_keep[ps])
        g_rows = np.flatnonzero(gt_keep[gs])
        if len(p_rows) == 0 or len(g_rows) == 0:
            continue
        allowed = allowed_all[np.ix_(p_rows, g_rows)].T.copy()  # (G, P) as motmetrics: objects x hypotheses
        distance = distance_all[np.ix_(p_rows, g_rows)].T
        oids = frames.gt.track[gs][g_rows]
        hids = frames.pred.track[ps][p_rows]
        matched_o: list[int] = []
        matched_h: list[int] = []
        # 1. carry forward last frame's correspondences still allowed
        for i, o in enumerate(oids.tolist()):
            h = last.get(o)
            if h is None:
                continue
            (hit,) = np.nonzero(hids == h)
            if len(hit) and allowed[i, hit[0]] and int(hit[0]) not in matched_h:
                matched_o.append(i)
                matched_h.append(int(hit[0]))
        # 2. assign the rest
        allowed[matched_o, :] = False
        allowed[:, matched_h] = False
        rows, cols = _assign(allowed, distance)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            o, h = int(oids[i]), int(hids[j])
            if o in last and last[o] != h:
                ids += 1
            matched_o.append(i)
            matched_h.append(j)
        for i, j in zip(matched_o, matched_h, strict=True):
            last[int(oids[i])] = int(hids[j])
        if matched_o:
            mo = np.asarray(matched_o, dtype=np.intp)
            mh = np.asarray(matched_h, dtype=np.intp)
            tp += len(mo)
            distance_sum += float(distance[mo, mh].sum())
            similarity_sum += float(similarity_all[p_rows[mh], g_rows[mo]].sum())
            gt_tracked[gs.start + g_rows[mo]] = True
            tp_rows.append(ps.start + p_rows[mh])
    num_gt = int(np.count_nonzero(gt_keep))
    num_pred = int(np.count_nonzero(pred_keep))
    frag = _fragmentations(frames, gt_keep, gt_tracked)
    return _Clear(
        num_gt=num_gt,
        num_pred=num_pred,
        tp=tp,
        fp=num_pred - tp,
        fn=num_gt - tp,
        ids=ids,
        frag=frag,
        distance_sum=distance_sum,
        similarity_sum=similarity_sum,
        tp_pred_rows=np.concatenate(tp_rows).astype(np.int64) if tp_rows else np.zeros(0, np.int64),
    )


def _fragmentations(frames: _Frames, gt_keep: BoolArray, gt_tracked: BoolArray) -> int:
    """Per GT track, tracked -> missed transitions between its first and last tracked frame."""
    rows = np.flatnonzero(gt_keep)
    if len(rows) == 0:
        return 0
    sequence = frames.frames[frames.gt.frame[rows], 0]
    order = np.lexsort((frames.gt.frame[rows], frames.gt.track[rows], sequence))
    rows = rows[order]
    key_seq, key_track = sequence[order], frames.gt.track[rows]
    tracked = gt_tracked[rows]
    frag = 0
    boundaries = np.flatnonzero((np.diff(key_seq) != 0) | (np.diff(key_track) != 0)) + 1
    for run in np.split(tracked, boundaries):
        hit = np.flatnonzero(run)
        if len(hit) < 2:
            continue
        span = run[hit[0] : hit[-1] + 1]
        frag += int(np.count_nonzero(span[:-1] & ~span[1:]))
    return frag


def _track_ids(frames: _Frames, side: _Side, keep: BoolArray) -> I64:
    """Dense ids (N,) of (sequence, track) for the kept rows of `side` (-1 elsewhere)."""
    out = np.full(len(side), -1, dtype=np.int64)
    rows = np.flatnonzero(keep)
    if len(rows):
        pairs = np.stack([frames.frames[side.frame[rows], 0], side.track[rows]], axis=1)
        _, inverse = np.unique(pairs, axis=0, return_inverse=True)
        out[rows] = inverse.reshape(-1)
    return out


def _identity(frames: _Frames, pred_keep: BoolArray, gt_keep: BoolArray) -> int:
    """IDTP of the best one-to-one assignment of GT tracks to prediction tracks, sequence by sequence
    (tracks of two sequences never share a frame, so this is the global assignment)."""
    gid = _track_ids(frames, frames.gt, gt_keep)
    pid = _track_ids(frames, frames.pred, pred_keep)
    idtp = 0
    for seq_frames in _sequences(frames.frames):
        pairs_g: list[I64] = []
        pairs_p: list[I64] = []
        for f in seq_frames:
            ps, gs, allowed, _, _ = frames.pairs(f)
            if allowed.size == 0:
                continue
            ok = allowed & pred_keep[ps][:, None] & gt_keep[gs][None, :]
            pi, gi = np.nonzero(ok)
            pairs_g.append(gid[gs.start + gi])
            pairs_p.append(pid[ps.start + pi])
        if not pairs_g:
            continue
        g_ids, g_local = np.unique(np.concatenate(pairs_g), return_inverse=True)
        p_ids, p_local = np.unique(np.concatenate(pairs_p), return_inverse=True)
        if len(g_ids) == 0:
            continue
        counts = np.zeros((len(g_ids), len(p_ids)), dtype=np.int64)
        np.add.at(counts, (g_local.reshape(-1), p_local.reshape(-1)), 1)
        rows, cols = linear_sum_assignment(counts, maximize=True)
        idtp += int(counts[rows, cols].sum())
    return idtp


@dataclass(frozen=True)
class _Hota:
    """Per-alpha TrackEval sums of one category: TP, FN, FP, AssA * TP, LocA * TP (A,) each."""

    tp: F64
    fn: F64
    fp: F64
    assa_tp: F64
    loca_tp: F64

    def values(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(HOTA, DetA, AssA, LocA), means over alpha; None when there is nothing to measure."""
        if not (self.tp + self.fn + self.fp).any():
            return None, None, None, None
        deta = self.tp / np.maximum(1.0, self.tp + self.fn + self.fp)
        assa = self.assa_tp / np.maximum(1.0, self.tp)
        loca = np.where(self.tp > 0, self.loca_tp / np.maximum(1e-10, self.tp), 1.0)
        hota = np.sqrt(deta * assa)
        return float(hota.mean()), float(deta.mean()), float(assa.mean()), float(loca.mean())


def _hota(frames: _Frames, pred_keep: BoolArray, gt_keep: BoolArray, alphas: Sequence[float]) -> _Hota:
    a = np.asarray(alphas, dtype=np.float64)
    total = _Hota(*(np.zeros(len(a)) for _ in range(5)))
    gid = _track_ids(frames, frames.gt, gt_keep)
    pid = _track_ids(frames, frames.pred, pred_keep)
    for seq_frames in _sequences(frames.frames):
        seq = _hota_sequence(frames, seq_frames, pred_keep, gt_keep, gid, pid, a)
        total = _Hota(
            total.tp + seq.tp, total.fn + seq.fn, total.fp + seq.fp,
            total.assa_tp + seq.assa_tp, total.loca_tp + seq.loca_tp,
        )  # fmt: skip
    return total


def _sequences(keys: I64) -> Iterator[range]:
    if len(keys) == 0:
        return
    starts = [0, *(np.flatnonzero(np.diff(keys[:, 0]) != 0) + 1).tolist(), len(keys)]
    for s, e in itertools.pairwise(starts):
        yield range(s, e)


def _hota_sequence(
    frames: _Frames,
    seq_frames: range,
    pred_keep: BoolArray,
    gt_keep: BoolArray,
    gid: I64,
    pid: I64,
    alphas: F64,
) -> _Hota:
    """TrackEval's HOTA.eval_sequence, with its per-alpha sums (AssA and LocA weighted by TP)."""
    per_frame: list[tuple[I64, I64, F64]] = []
    for f in seq_frames:
        ps, gs, _, _, sim_all = frames.pairs(f)
        p_rows = np.flatnonzero(pred_keep[ps])
        g_rows = np.flatnonzero(gt_keep[gs])
        per_frame.append((gid[gs.start + g_rows], pid[ps.start + p_rows], sim_all[np.ix_(p_rows, g_rows)].T))
    g_ids = np.unique(np.concatenate([g for g, _, _ in per_frame])) if per_frame else np.zeros(0, np.int64)
    p_ids = np.unique(np.concatenate([p for _, p, _ in per_frame])) if per_frame else np.zeros(0, np.int64)
    n_a = len(alphas)
    num_gt = sum(len(g) for g, _, _ in per_frame)
    num_pred = sum(len(p) for _, p, _ in per_frame)
    if len(g_ids) == 0 or len(p_ids) == 0:
        zeros = np.zeros(n_a)
        return _Hota(zeros, np.full(n_a, float(num_gt)), np.full(n_a, float(num_pred)), zeros, zeros)
    g_index = {int(v): i for i, v in enumerate(g_ids)}
    p_index = {int(v): i for i, v in enumerate(p_ids)}
    local = [
        (np.array([g_index[int(v)] for v in g], np.intp), np.array([p_index[int(v)] for v in p], np.intp), s)
        for g, p, s in per_frame
    ]
    potential = np.zeros((len(g_ids), len(p_ids)))
    gt_count = np.zeros(len(g_ids))
    pred_count = np.zeros(len(p_ids))
    for g, p, sim in local:
        if len(g) and len(p):
            denom = sim.sum(axis=1, keepdims=True) + sim.sum(axis=0, keepdims=True) - sim
            sim_iou = np.zeros_like(sim)
            ok = denom > _EPS
            sim_iou[ok] = sim[ok] / denom[ok]
            potential[np.ix_(g, p)] += sim_iou
        gt_count[g] += 1
        pred_count[p] += 1
    alignment = potential / (gt_count[:, None] + pred_count[None, :] - potential)
    tp = np.zeros(n_a)
    fn = np.zeros(n_a)
    fp = np.zeros(n_a)
    loca = np.zeros(n_a)
    matches = np.zeros((n_a, len(g_ids), len(p_ids)))
    for g, p, sim in local:
        if len(g) == 0 or len(p) == 0:
            fn += len(g)
            fp += len(p)
            continue
        score = alignment[np.ix_(g, p)] * sim
        rows, cols = linear_sum_assignment(-score)
        for k, alpha in enumerate(alphas):
            ok = sim[rows, cols] >= alpha - _EPS
            n_ok = int(np.count_nonzero(ok))
            tp[k] += n_ok
            fn[k] += len(g) - n_ok
            fp[k] += len(p) - n_ok
            if n_ok:
                loca[k] += float(sim[rows[ok], cols[ok]].sum())
                matches[k, g[rows[ok]], p[cols[ok]]] += 1
    assa_tp = np.zeros(n_a)
    for k in range(n_a):
        score_k = matches[k] / np.maximum(1.0, gt_count[:, None] + pred_count[None, :] - matches[k])
        assa_tp[k] = float((matches[k] * score_k).sum())
    return _Hota(tp, fn, fp, assa_tp, loca)


@dataclass(frozen=True)
class _CategoryEval:
    metrics: TrackingMetrics
    clear: _Clear
    idtp: int
    hota: _Hota
    has_gt: bool


def _clear_metrics(c: _Clear, match: MatchKind) -> ClearMetrics:
    motp = None
    if c.tp:
        motp = c.similarity_sum / c.tp if match != "distance" else c.distance_sum / c.tp
    return ClearMetrics(
        num_gt=c.num_gt,
        num_pred=c.num_pred,
        tp=c.tp,
        fp=c.fp,
        fn=c.fn,
        id_switches=c.ids,
        fragmentations=c.frag,
        mota=1.0 - (c.fn + c.fp + c.ids) / c.num_gt if c.num_gt else None,
        motp=motp,
        recall=c.tp / c.num_gt if c.num_gt else None,
        precision=c.tp / c.num_pred if c.num_pred else None,
    )


def _evaluate_category(
    name: str, preds: _Side, gts: _Side, frames_keys: I64, config: TrackingConfig
) -> _CategoryEval:
    frames = _build_frames(preds, gts, frames_keys, config)
    everything = np.ones(len(frames.pred), dtype=bool)
    pred_keep, gt_keep = _resolve_ignore(frames, everything)
    clear = _clear(frames, pred_keep, gt_keep)
    idtp = _identity(frames, pred_keep, gt_keep)
    hota = _hota(frames, pred_keep, gt_keep, config.hota_alphas)
    hota_v = hota.values()
    n_g, n_p = clear.num_gt, clear.num_pred
    samota = amota = amotp = best_threshold = None
    best = None
    if config.recall_sweep and n_g:
        samota, amota, amotp, best_threshold, best = _recall_sweep(frames, clear, config)
    metrics = TrackingMetrics(
        category=name,
        num_gt_tracks=int(_track_ids(frames, frames.gt, gt_keep).max(initial=-1)) + 1,
        num_pred_tracks=int(_track_ids(frames, frames.pred, pred_keep).max(initial=-1)) + 1,
        num_ignored_gt=len(frames.gt) - n_g,
        num_ignored_pred=len(frames.pred) - n_p,
        clear=_clear_metrics(clear, config.match),
        idf1=2.0 * idtp / (n_g + n_p) if n_g + n_p else None,
        idp=idtp / n_p if n_p else None,
        idr=idtp / n_g if n_g else None,
        hota=hota_v[0],
        deta=hota_v[1],
        assa=hota_v[2],
        loca=hota_v[3],
        samota=samota,
        amota=amota,
        amotp=amotp,
        best_threshold=best_threshold,
        best=best,
    )
    return _CategoryEval(metrics, clear, idtp, hota, n_g > 0)


def _track_mean_scores(frames: _Frames) -> F64:
    """Each prediction row's track mean score (per sequence and track id)."""
    ids = _track_ids(frames, frames.pred, np.ones(len(frames.pred), dtype=bool))
    if len(ids) == 0:
        return np.zeros(0)
    sums = np.bincount(ids, weights=frames.pred.score)
    counts = np.bincount(ids)
    return np.asarray((sums / counts)[ids], dtype=np.float64)


def recall_thresholds(
    tp_scores: npt.ArrayLike, num_gt: int, num_points: int = 40
) -> list[tuple[float, float]]:
    """AB3DMOT's recall points: (r, threshold) for r = k / num_points (k = 1..num_points) that the
    TP scores reach: threshold = the (i + 1)-th highest TP score for the smallest i with
    (i + 1) / num_gt >= r. Points beyond the recall of all TPs are left out."""
    scores = np.sort(np.asarray(tp_scores, dtype=np.float64).reshape(-1))[::-1]
    out: list[tuple[float, float]] = []
    if num_gt <= 0:
        return out
    for k in range(1, num_points + 1):
        # smallest i with (i + 1) * num_points >= k * num_gt, in integers: no rounding
        i = -(-k * num_gt // num_points) - 1
        if i >= len(scores):
            break
        out.append((k / num_points, float(scores[i])))
    return out


def _recall_sweep(
    frames: _Frames, full: _Clear, config: TrackingConfig
) -> tuple[float, float, float, float | None, ClearMetrics | None]:
    n = full.num_gt
    L = config.num_recall_points  # noqa: N806
    track_score = _track_mean_scores(frames)
    points = recall_thresholds(track_score[full.tp_pred_rows], n, L)
    cache: dict[float, _Clear] = {}
    samota = amota = amotp = 0.0
    best: tuple[float, float, _Clear] | None = None
    for r, threshold in points:
        if threshold not in cache:
            pred_keep, gt_keep = _resolve_ignore(frames, track_score >= threshold)
            cache[threshold] = _clear(frames, pred_keep, gt_keep)
        c = cache[threshold]
        errors = c.fp + c.fn + c.ids
        samota += max(0.0, min(1.0, 1.0 - (errors - (1.0 - r) * n) / (r * n)))
        mota = 1.0 - errors / n
        amota += mota
        amotp += _clear_metrics(c, config.match).motp or 0.0
        if best is None or mota > best[0]:
            best = (mota, threshold, c)
    if best is None:
        return samota / L, amota / L, amotp / L, None, None
    return samota / L, amota / L, amotp / L, best[1], _clear_metrics(best[2], config.match)


def _overall(per_category: Sequence[_CategoryEval], config: TrackingConfig) -> TrackingMetrics:
    c = _Clear(
        num_gt=sum(e.clear.num_gt for e in per_category),
        num_pred=sum(e.clear.num_pred for e in per_category),
        tp=sum(e.clear.tp for e in per_category),
        fp=sum(e.clear.fp for e in per_category),
        fn=sum(e.clear.fn for e in per_category),
        ids=sum(e.clear.ids for e in per_category),
        frag=sum(e.clear.frag for e in per_category),
        distance_sum=sum(e.clear.distance_sum for e in per_category),
        similarity_sum=sum(e.clear.similarity_sum for e in per_category),
        tp_pred_rows=np.zeros(0, np.int64),
    )
    idtp = sum(e.idtp for e in per_category)
    hota = _Hota(*(np.sum([getattr(e.hota, k) for e in per_category], axis=0) for k in _HOTA_FIELDS))
    hota_v = hota.values()
    with_gt = [e.metrics for e in per_category if e.has_gt and e.metrics.samota is not None]

    def mean(name: str) -> float | None:
        values = [getattr(m, name) for m in with_gt]
        return float(np.mean(values)) if values else None

    n_g, n_p = c.num_gt, c.num_pred
    return TrackingMetrics(
        category="overall",
        num_gt_tracks=sum(e.metrics.num_gt_tracks for e in per_category),
        num_pred_tracks=sum(e.metrics.num_pred_tracks for e in per_category),
        num_ignored_gt=sum(e.metrics.num_ignored_gt for e in per_category),
        num_ignored_pred=sum(e.metrics.num_ignored_pred for e in per_category),
        clear=_clear_metrics(c, config.match),
        idf1=2.0 * idtp / (n_g + n_p) if n_g + n_p else None,
        idp=idtp / n_p if n_p else None,
        idr=idtp / n_g if n_g else None,
        hota=hota_v[0],
        deta=hota_v[1],
        assa=hota_v[2],
        loca=hota_v[3],
        samota=mean("samota"),
        amota=mean("amota"),
        amotp=mean("amotp"),
        best_threshold=None,
        best=None,
    )


_HOTA_FIELDS: Final = ("tp", "fn", "fp", "assa_tp", "loca_tp")


# ---- report -------------------------------------------------------------------------------------


def format_tracking_table(result: TrackingResult) -> str:
    """A plain-text table of `result`: one row per category and overall. Ratios in percent with two
    decimals (MOTP too for IoU matching; in metres for distance matching); None shows as "-"."""
    config = result.config
    rule = (
        f"{'3D' if config.match == 'iou_3d' else 'BEV'} IoU >= {config.iou_threshold:g}"
        if config.match != "distance"
        else f"BEV centre distance <= {config.distance_m:g} m"
    )
    scope = "all ranges" if config.max_range_m is None else f"within {config.max_range_m:g} m"
    lines = [
        f"fusion tracking evaluation: {result.num_sequences} sequences, {result.num_frames} frames; "
        f"pairs: {rule}; {scope}",
        "",
    ]
    header = ["category", "GT", "pred", "sAMOTA", "AMOTA", "MOTA", "MOTP", "IDF1", "HOTA", "DetA", "AssA",
              "IDS", "FRAG", "FP", "FN"]  # fmt: skip
    motp = _percent if config.match != "distance" else _metres
    rows = []
    for m in (*result.categories, result.overall):
        rows.append(
            [
                m.category,
                str(m.clear.num_gt),
                str(m.clear.num_pred),
                *(_percent(v) for v in (m.samota, m.amota, m.clear.mota)),
                motp(m.clear.motp),
                *(_percent(v) for v in (m.idf1, m.hota, m.deta, m.assa)),
                *(str(v) for v in (m.clear.id_switches, m.clear.fragmentations, m.clear.fp, m.clear.fn)),
            ]
        )
    lines += _grid(header, rows)
    best = [m for m in result.categories if m.best is not None]
    if best:
        lines += ["", "at the recall threshold with the best MOTA (AB3DMOT's single-threshold numbers):", ""]
        best_rows = []
        for m in best:
            b = m.best
            if b is None:  # for mypy; filtered above
                continue
            best_rows.append(
                [
                    m.category,
                    f"{m.best_threshold:.4g}",
                    _percent(b.mota),
                    motp(b.motp),
                    *(str(v) for v in (b.id_switches, b.fragmentations, b.fp, b.fn)),
                ]
            )
        lines += _grid(["category", "threshold", "MOTA", "MOTP", "IDS", "FRAG", "FP", "FN"], best_rows)
    ignored = result.overall.num_ignored_gt + result.overall.num_ignored_pred
    if ignored:
        lines += [
            "",
            f"ignored: {result.overall.num_ignored_gt} GT boxes, "
            f"{result.overall.num_ignored_pred} predictions",
        ]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}"


def _metres(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(header)]
    out = [
        "  ".join(
            h.ljust(w) if k == 0 else h.rjust(w) for k, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        out.append(
            "  ".join(
                c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return out


__all__ = [
    "DEFAULT_HOTA_ALPHAS",
    "MATCH_KINDS",
    "ClearMetrics",
    "TrackingConfig",
    "TrackingMetrics",
    "TrackingResult",
    "evaluate_tracking",
    "format_tracking_table",
    "recall_thresholds",
]
