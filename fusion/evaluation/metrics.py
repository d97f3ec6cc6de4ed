"""Detection metrics of predicted labels against ground-truth labels, both in the labels-table layout.

`evaluate(pred, gt, config)` takes two labels tables (pyarrow Tables or pandas DataFrames with at
least `sequence_id, frame_index, category, x, y, z, length, width, height, yaw`, and `score` for
the predictions) and returns an `EvalResult`. Boxes are compared only within one frame, a frame
being a `(sequence_id, frame_index)` pair.

Pipeline, in order
------------------
1. Rows whose category is not in `config.categories` are dropped on both sides (`unknown` is left
   out by default), then rows farther than `config.max_range_m` (range = BEV distance of the box
   centre from the sensor origin, `hypot(x, y)`) when it is set.
2. **Matching** (one rule everywhere): in each frame, predictions are taken by descending score
   (ties: input row order); each takes the not-yet-matched GT box with the highest IoU among those
   with IoU >= the threshold of that GT's category (and IoU > 0); ties: the earlier GT row. Each GT
   box is matched at most once. *Class-aware* matching only pairs boxes of one category;
   *class-agnostic* matching pairs any.
3. **AP** per category, for 3D IoU and BEV IoU, at each of the category's two thresholds
   (`strict`, `loose`; car/truck/bus 0.7/0.5, pedestrian/cyclist/motorcycle/unknown 0.5/0.25):
   class-aware matching of *all* predictions of the category; the precision/recall curve has one
   point per distinct score (all predictions with score >= s), and
   AP = mean over r in {1/40, 2/40, ..., 40/40} of max{precision at points with recall >= r}
   (0 where no point reaches r), KITTI's 40-recall-point interpolation.
   AP is 0.0 when the category has GT but no prediction, and None (JSON null) when it has no GT.
   mAP (per slice, per level) = mean of the categories' APs that are not None; None if all are.
4. **Operating point**: predictions with score >= `config.operating_score`, matched with
   `config.operating_iou_kind` IoU >= `config.operating_iou[GT category]` (default the loose
   threshold).
   - Class-aware: per category TP (matched), FP (unmatched predictions), FN (unmatched GT);
     precision = TP / (TP + FP) (None without predictions), recall = TP / (TP + FN) (None without
     GT); mean IoU = mean IoU of the TP pairs (None without TP). Overall values sum TP/FP/FN over
     the categories (micro average); overall mean IoU is over all TP pairs.
   - Class-agnostic: a matched pair is *right* when both boxes have the same category, a *class
     error* otherwise; unmatched predictions are FP, unmatched GT are FN.
     **box accuracy** = right / (right + class errors + FP + FN): the share of boxes, a matched
     pair counting as one box, that are right. None when there is no box.
     **frame accuracy** = frames with no FP, no FN and no class error / frames evaluated. The
     frames evaluated are every `(sequence_id, frame_index)` with at least one row in either input
     table (before any filter): a frame that has only low-score predictions and no GT is right.
     None when both tables are empty.
5. **Per-range breakdown**: the same metrics on each range bin `[edge_k, edge_k+1)` of
   `config.range_edges_m` (default 0-30, 30-50, 50+ m), GT and predictions each kept by their own
   centre's range; matching happens within the bin. The frames evaluated are the same as for the
   whole set.

Nothing here returns NaN: undefined values are None. Results are deterministic (stable sorts).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from exporters.schema import BOX_COLUMNS, CATEGORIES
from fusion.evaluation.errors import EvaluationError
from fusion.evaluation.iou import frame_pair_ious

LabelsLike: TypeAlias = Any
"""A labels table: a pyarrow Table or a pandas DataFrame (both untyped, hence Any)."""

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
IouKind = Literal["3d", "bev"]

LEVELS: Final = ("strict", "loose")
"""Names of the two IoU thresholds each category has, in `EvalConfig.iou_thresholds` order."""

DEFAULT_IOU_THRESHOLDS: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "car": (0.7, 0.5),
        "truck": (0.7, 0.5),
        "bus": (0.7, 0.5),
        "pedestrian": (0.5, 0.25),
        "cyclist": (0.5, 0.25),
        "motorcycle": (0.5, 0.25),
        "unknown": (0.5, 0.25),
    }
)
"""(strict, loose) IoU thresholds per category: KITTI's car 0.7 / 0.5 and pedestrian, cyclist 0.5 / 0.25."""

DEFAULT_CATEGORIES: Final = tuple(c for c in CATEGORIES if c != "unknown")
"""Categories evaluated by default: all but `unknown`."""

REQUIRED_COLUMNS: Final = ("sequence_id", "frame_index", "category", *BOX_COLUMNS)


def _default_thresholds() -> Mapping[str, tuple[float, float]]:
    return MappingProxyType(dict(DEFAULT_IOU_THRESHOLDS))


def _default_operating_iou() -> Mapping[str, float]:
    return MappingProxyType({name: loose for name, (_, loose) in DEFAULT_IOU_THRESHOLDS.items()})


@dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` measures. Raises EvaluationError for an inconsistent setting."""

    # categories evaluated, in report order; rows of other categories are dropped on both sides
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    # category -> (strict, loose) IoU thresholds for AP (both for 3D and BEV IoU)
    iou_thresholds: Mapping[str, tuple[float, float]] = field(default_factory=_default_thresholds)
    # predictions with score >= this are the ones a user would keep: precision, recall, accuracies
    operating_score: float = 0.5
    # category (of the GT box) -> IoU a match needs at the operating point
    operating_iou: Mapping[str, float] = field(default_factory=_default_operating_iou)
    # which IoU the operating point uses
    operating_iou_kind: IouKind = "3d"
    # when set, GT and predictions farther than this (BEV distance from the sensor) are dropped first
    max_range_m: float | None = None
    # inner edges of the per-range breakdown, metres: (30, 50) gives 0-30, 30-50, 50+
    range_edges_m: tuple[float, ...] = (30.0, 50.0)
    # recall points of the interpolated AP (KITTI: 40)
    num_recall_points: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "range_edges_m", tuple(float(e) for e in self.range_edges_m))
        object.__setattr__(
            self,
            "iou_thresholds",
            MappingProxyType({k: (float(v[0]), float(v[1])) for k, v in self.iou_thresholds.items()}),
        )
        object.__setattr__(
            self, "operating_iou", MappingProxyType({k: float(v) for k, v in self.operating_iou.items()})
        )
        if not self.categories:
            raise EvaluationError(
                "EvalConfig.categories is empty; name at least one of " + ", ".join(CATEGORIES)
            )
        bad = sorted(set(self.categories) - set(CATEGORIES))
        if bad or len(set(self.categories)) != len(self.categories):
            raise EvaluationError(
                f"EvalConfig.categories {list(self.categories)} has unknown or repeated names; "
                f"use each of {', '.join(CATEGORIES)} at most once"
            )
        for name in self.categories:
            for what, values in (
                ("iou_thresholds", self.iou_thresholds.get(name)),
                ("operating_iou", (self.operating_iou[name],) if name in self.operating_iou else None),
            ):
                if values is None:
                    raise EvaluationError(f"EvalConfig.{what} has no entry for category '{name}'; add one")
                if not all(0.0 < v <= 1.0 for v in values):
                    raise EvaluationError(
                        f"EvalConfig.{what}['{name}'] = {values}; IoU thresholds must be in (0, 1]"
                    )
        if not 0.0 <= self.operating_score <= 1.0:
            raise EvaluationError(f"EvalConfig.operating_score = {self.operating_score}; use a score in 0..1")
        if self.operating_iou_kind not in ("3d", "bev"):
            raise EvaluationError(
                f"EvalConfig.operating_iou_kind = {self.operating_iou_kind!r}; use '3d' or 'bev'"
            )
        if self.max_range_m is not None and not (self.max_range_m > 0.0 and math.isfinite(self.max_range_m)):
            raise EvaluationError(
                f"EvalConfig.max_range_m = {self.max_range_m}; use a positive distance or None"
            )
        edges = self.range_edges_m
        if any(not (e > 0.0 and math.isfinite(e)) for e in edges) or list(edges) != sorted(set(edges)):
            raise EvaluationError(
                f"EvalConfig.range_edges_m = {edges}; use increasing positive distances, e.g. (30, 50)"
            )
        if self.num_recall_points < 1:
            raise EvaluationError(f"EvalConfig.num_recall_points = {self.num_recall_points}; use 40 (KITTI)")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalConfig:
        """The configuration of a mapping shaped like `to_json()`'s (e.g. a TOML table); keys left
        out keep their defaults, and `iou_thresholds` / `operating_iou` entries are merged over the
        defaults per category. `iou_thresholds` values may be `{"strict": s, "loose": l}` or `[s, l]`.
        Raises EvaluationError for an unknown key or a value of the wrong shape.
        """
        check_config_keys(cls, data, "evaluation config")
        values = dict(data)
        try:
            if "iou_thresholds" in values:
                values["iou_thresholds"] = {
                    **DEFAULT_IOU_THRESHOLDS,
                    **{
                        name: (v["strict"], v["loose"]) if isinstance(v, Mapping) else (v[0], v[1])
                        for name, v in values["iou_thresholds"].items()
                    },
                }
            if "operating_iou" in values:
                values["operating_iou"] = {**_default_operating_iou(), **values["operating_iou"]}
            for name in ("categories", "range_edges_m"):
                if name in values:
                    values[name] = tuple(values[name])
            return cls(**values)
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise EvaluationError(
                f"evaluation config: a value has the wrong shape ({err!r}); write it as to_json() writes it"
            ) from err

    def to_json(self) -> dict[str, Any]:
        """The configuration as a JSON-able dict (stable keys)."""
        return {
            "categories": list(self.categories),
            "iou_thresholds": {
                c: dict(zip(LEVELS, self.iou_thresholds[c], strict=True)) for c in self.categories
            },
            "operating_score": self.operating_score,
            "operating_iou": {c: self.operating_iou[c] for c in self.categories},
            "operating_iou_kind": self.operating_iou_kind,
            "max_range_m": self.max_range_m,
            "range_edges_m": list(self.range_edges_m),
            "num_recall_points": self.num_recall_points,
        }


@dataclass(frozen=True)
class CategoryMetrics:
    """Metrics of one category in one slice (see the module docstring for each definition)."""

    category: str
    iou_thresholds: tuple[float, float]  # (strict, loose) for AP
    num_gt: int  # GT boxes
    num_pred: int  # predictions, any score
    ap_3d: tuple[float | None, float | None]  # AP with 3D IoU at (strict, loose)
    ap_bev: tuple[float | None, float | None]  # AP with BEV IoU at (strict, loose)
    tp: int  # operating point, class-aware
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    mean_iou: float | None  # of the TP pairs, in the operating point's IoU kind

    def to_json(self) -> dict[str, Any]:
        return {
            "iou_thresholds": dict(zip(LEVELS, self.iou_thresholds, strict=True)),
            "num_gt": self.num_gt,
            "num_pred": self.num_pred,
            "ap_3d": dict(zip(LEVELS, self.ap_3d, strict=True)),
            "ap_bev": dict(zip(LEVELS, self.ap_bev, strict=True)),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "mean_iou": self.mean_iou,
        }


def check_config_keys(cls: type[Any], data: Mapping[str, Any], what: str) -> None:
    """EvaluationError naming the keys of `data` that are no field of the dataclass `cls`."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EvaluationError(f"{what}: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")


class _Named(Protocol):
    @property
    def category(self) -> str: ...


NamedT = TypeVar("NamedT", bound=_Named)


def find_category(categories: Sequence[NamedT], name: str) -> NamedT:
    """The entry of category `name`; raises EvaluationError naming the evaluated ones otherwise."""
    for metrics in categories:
        if metrics.category == name:
            return metrics
    evaluated = ", ".join(m.category for m in categories)
    raise EvaluationError(
        f"category '{name}' was not evaluated (evaluated: {evaluated}); add it to the config"
    )


@dataclass(frozen=True)
class SliceMetrics:
    """Metrics of all boxes, or of one range bin: per category, and over the categories."""

    name: str  # "all" or e.g. "30-50m"
    min_range_m: float
    max_range_m: float | None  # None: unbounded
    categories: tuple[CategoryMetrics, ...]  # in EvalConfig.categories order
    num_gt: int
    num_pred: int
    map_3d: tuple[float | None, float | None]  # mean of the categories' defined APs, (strict, loose)
    map_bev: tuple[float | None, float | None]
    tp: int  # operating point, class-aware, summed over categories
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    mean_iou: float | None
    boxes_right: int  # operating point, class-agnostic
    class_errors: int
    boxes_total: int  # right + class errors + FP + FN
    box_accuracy: float | None
    num_frames: int
    frames_right: int
    frame_accuracy: float | None

    def category(self, name: str) -> CategoryMetrics:
        """The metrics of category `name`; raises EvaluationError when it was not evaluated."""
        return find_category(self.categories, name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "min_range_m": self.min_range_m,
            "max_range_m": self.max_range_m,
            "num_gt": self.num_gt,
            "num_pred": self.num_pred,
            "map_3d": dict(zip(LEVELS, self.map_3d, strict=True)),
            "map_bev": dict(zip(LEVELS, self.map_bev, strict=True)),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "mean_iou": self.mean_iou,
            "boxes_right": self.boxes_right,
            "class_errors": self.class_errors,
            "boxes_total": self.boxes_total,
            "box_accuracy": self.box_accuracy,
            "num_frames": self.num_frames,
            "frames_right": self.frames_right,
            "frame_accuracy": self.frame_accuracy,
            "categories": {m.category: m.to_json() for m in self.categories},
        }


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate` found: the whole set (`overall`) and each range bin (`by_range`)."""

    config: EvalConfig
    overall: SliceMetrics
    by_range: tuple[SliceMetrics, ...]

    def category(self, name: str) -> CategoryMetrics:
        """`overall.category(name)`."""
        return self.overall.category(name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with stable keys; undefined values are None (null), never NaN."""
        return {
            "format": "fusion.evaluation/1",
            "config": self.config.to_json(),
            "overall": self.overall.to_json(),
            "by_range": [s.to_json() for s in self.by_range],
        }


# ---- evaluate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """One side's boxes, normalised: N rows."""

    frame: I64  # (N,) frame id, index into the evaluation's frame list
    category: I64  # (N,) index into CATEGORIES
    boxes: F64  # (N, 7)
    score: F64  # (N,); ones for GT
    row: I64  # (N,) row of the input table

    def take(self, index: npt.NDArray[np.intp]) -> _Rows:
        return _Rows(
            self.frame[index], self.category[index], self.boxes[index], self.score[index], self.row[index]
        )


@dataclass(frozen=True)
class _Prepared:
    """Both sides filtered and sorted as `evaluate` step 1 says, with every same-frame pair's IoU."""

    preds: _Rows
    gts: _Rows
    frames: _Frames
    frame_sequence: npt.NDArray[np.str_]  # (F,) sequence_id of each frame id
    frame_index: I64  # (F,) frame_index of each frame id


def _prepare(pred: LabelsLike, gt: LabelsLike, config: EvalConfig) -> _Prepared:
    pred_table = as_labels_table(pred, "predictions")
    gt_table = as_labels_table(gt, "ground truth")
    _check_columns(pred_table, "predictions", with_score=True)
    _check_columns(gt_table, "ground truth", with_score=False)

    pred_frame, gt_frame, frame_sequence, frame_index = _frame_ids(pred_table, gt_table)
    num_frames = len(frame_index)
    preds = _rows(pred_table, pred_frame, "predictions", with_score=True)
    gts = _rows(gt_table, gt_frame, "ground truth", with_score=False)
    if len(preds.frame) and len(gts.frame) and not np.isin(preds.frame, gts.frame).any():
        logger.warning("no prediction shares a (sequence_id, frame_index) with the ground truth")

    evaluated = np.array([CATEGORIES.index(c) for c in config.categories], dtype=np.int64)
    preds = preds.take(_kept(preds, evaluated, config.max_range_m))
    gts = gts.take(_kept(gts, evaluated, config.max_range_m))

    # Predictions by (frame, descending score, row); GT by (frame, row).
    preds = preds.take(np.lexsort((np.arange(len(preds.frame)), -preds.score, preds.frame)))
    gts = gts.take(np.argsort(gts.frame, kind="stable"))
    frames = _Frames.build(preds, gts, num_frames)
    return _Prepared(preds, gts, frames, frame_sequence, frame_index)


def evaluate(pred: LabelsLike, gt: LabelsLike, config: EvalConfig | None = None) -> EvalResult:
    """Metrics of predictions `pred` against ground truth `gt` (see the module docstring).

    pred, gt: labels tables (pyarrow Table or pandas DataFrame); `pred` needs a `score` column.
    Raises EvaluationError naming the table and column when a column is missing or holds nulls,
    a category is unknown, a box is not finite, or a score is outside 0..1.
    """
    config = config or EvalConfig()
    prepared = _prepare(pred, gt, config)
    preds, gts, frames = prepared.preds, prepared.gts, prepared.frames

    pred_range = np.hypot(preds.boxes[:, 0], preds.boxes[:, 1])
    gt_range = np.hypot(gts.boxes[:, 0], gts.boxes[:, 1])
    overall = _slice_metrics("all", 0.0, None, frames, preds, gts, config, None, None)
    edges = (0.0, *config.range_edges_m, math.inf)
    by_range = []
    for low, high in itertools.pairwise(edges):
        name = f"{low:g}-{high:g}m" if math.isfinite(high) else f"{low:g}m+"
        by_range.append(
            _slice_metrics(
                name,
                low,
                high if math.isfinite(high) else None,
                frames,
                preds,
                gts,
                config,
                (pred_range >= low) & (pred_range < high),
                (gt_range >= low) & (gt_range < high),
            )
        )
    return EvalResult(config=config, overall=overall, by_range=tuple(by_range))


@dataclass(frozen=True, eq=False)
class BoxMatching:
    """The operating point's class-agnostic matching (module docstring, step 4), row by row: the
    pairs behind `SliceMetrics.box_accuracy` and `frame_accuracy` of the whole set.

    P predictions and G GT boxes are those kept by step 1 (evaluated categories, `max_range_m`),
    every score; F frames are every (sequence_id, frame_index) of either input table.
    """

    frame_sequence: npt.NDArray[np.str_]  # (F,) sequence_id of each frame
    frame_index: I64  # (F,) frame_index of each frame
    pred_row: I64  # (P,) row of the input prediction table
    pred_frame: I64  # (P,) frame (index into frame_sequence)
    pred_active: BoolArray  # (P,) score >= config.operating_score: the predictions that count
    gt_row: I64  # (G,) row of the input GT table
    gt_frame: I64  # (G,)
    matched: I64  # (P,) index into the G GT boxes of the prediction's match, -1: none
    iou: F64  # (P,) IoU (config.operating_iou_kind) of the match, 0 without one
    right: BoolArray  # (P,) matched to a GT box of its category
    class_error: BoolArray  # (P,) matched to a GT box of another category
    false_pos: BoolArray  # (P,) active and not matched
    false_neg: BoolArray  # (G,) not matched
    frame_wrong: BoolArray  # (F,) a frame with an FP, an FN or a class error

    def counts(self, sequence_id: str | None = None) -> dict[str, int]:
        """right, class_errors, false_pos, false_neg, boxes_total, frames, frames_right: of the
        whole set, or of one sequence's frames."""
        if sequence_id is None:
            in_frames = np.ones(len(self.frame_index), dtype=bool)
        else:
            in_frames = self.frame_sequence == sequence_id
        in_pred = in_frames[self.pred_frame]
        in_gt = in_frames[self.gt_frame]
        right = int(np.count_nonzero(self.right & in_pred))
        class_errors = int(np.count_nonzero(self.class_error & in_pred))
        false_pos = int(np.count_nonzero(self.false_pos & in_pred))
        false_neg = int(np.count_nonzero(self.false_neg & in_gt))
        frames = int(np.count_nonzero(in_frames))
        return {
            "right": right,
            "class_errors": class_errors,
            "false_pos": false_pos,
            "false_neg": false_neg,
            "boxes_total": right + class_errors + false_pos + false_neg,
            "frames": frames,
            "frames_right": frames - int(np.count_nonzero(self.frame_wrong & in_frames)),
        }


def match_boxes(pred: LabelsLike, gt: LabelsLike, config: EvalConfig | None = None) -> BoxMatching:
    """The class-agnostic operating-point matching `evaluate` scores box and frame accuracy with,
    pair by pair (same filters, same order, same greedy rule, same IoU): `fusion qa` builds on it,
    so its accuracies are `evaluate`'s by construction. Raises EvaluationError as `evaluate` does.
    """
    config = config or EvalConfig()
    prepared = _prepare(pred, gt, config)
    preds, gts, frames = prepared.preds, prepared.gts, prepared.frames
    op_active = preds.score >= config.operating_score
    gt_active = np.ones(len(gts.frame), dtype=bool)
    op_table = np.array([config.operating_iou.get(c, 1.0) for c in CATEGORIES])
    matched, iou = frames.match(
        config.operating_iou_kind, preds, gts, op_active, gt_active, op_table[gts.category], False
    )
    acc = _Accuracy.of(frames.num_frames, preds, gts, op_active, gt_active, matched)
    return BoxMatching(
        frame_sequence=prepared.frame_sequence,
        frame_index=prepared.frame_index,
        pred_row=preds.row,
        pred_frame=preds.frame,
        pred_active=op_active,
        gt_row=gts.row,
        gt_frame=gts.frame,
        matched=matched,
        iou=iou,
        right=acc.right,
        class_error=acc.class_error,
        false_pos=acc.false_pos,
        false_neg=acc.false_neg,
        frame_wrong=acc.frame_wrong,
    )


def as_labels_table(labels: LabelsLike, what: str) -> pa.Table:
    """Labels given as a pyarrow Table or a pandas DataFrame, as a Table (EvaluationError otherwise)."""
    if isinstance(labels, pa.Table):
        return labels
    if hasattr(labels, "columns") and hasattr(labels, "to_numpy"):  # a pandas DataFrame
        try:
            return pa.Table.from_pandas(labels, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise EvaluationError(f"{what}: cannot read the DataFrame's columns: {err}") from err
    raise EvaluationError(
        f"{what}: expected a pyarrow Table or pandas DataFrame of labels, got {type(labels).__name__}; "
        "read a labels file with fusion.evaluation.load_labels"
    )


def _check_columns(table: pa.Table, what: str, *, with_score: bool) -> None:
    needed = (*REQUIRED_COLUMNS, "score") if with_score else REQUIRED_COLUMNS
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        raise EvaluationError(
            f"{what}: missing column(s) {', '.join(missing)}; a labels table (shared/CONTRACT.md) has them"
        )
    for name in needed:
        if table.column(name).null_count:
            raise EvaluationError(f"{what}: column '{name}' holds nulls; every row needs a value")


def _frame_ids(pred: pa.Table, gt: pa.Table) -> tuple[I64, I64, npt.NDArray[np.str_], I64]:
    """Frame ids (P,), (G,): the index of each row's (sequence_id, frame_index) among all pairs,
    sorted; and each frame id's sequence_id (F,) and frame_index (F,)."""
    try:
        sequences = pa.chunked_array(
            [
                *pred.column("sequence_id").cast(pa.string()).chunks,
                *gt.column("sequence_id").cast(pa.string()).chunks,
            ],
            type=pa.string(),
        )
        frame_index = np.concatenate(
            [pred.column("frame_index").to_numpy(), gt.column("frame_index").to_numpy()]
        ).astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError, ValueError) as err:
        raise EvaluationError(
            f"'sequence_id' must hold strings and 'frame_index' integers: {err}; fix the column types"
        ) from err
    encoded = pc.dictionary_encode(sequences).combine_chunks()
    codes = encoded.indices.to_numpy().astype(np.int64)
    if len(codes) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, dtype=str), empty
    keys = np.stack([codes, frame_index], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=str)
    return inverse[: pred.num_rows], inverse[pred.num_rows :], names[unique[:, 0]], unique[:, 1].copy()


def _rows(table: pa.Table, frame: I64, what: str, *, with_score: bool) -> _Rows:
    category_column = table.column("category").cast(pa.string())
    codes = pc.index_in(category_column, value_set=pa.array(CATEGORIES, pa.string()))
    if codes.null_count:
        bad = pc.filter(category_column, pc.is_null(codes))[0].as_py()
        raise EvaluationError(f"{what}: unknown category {bad!r}; use one of {', '.join(CATEGORIES)}")
    category = codes.to_numpy(zero_copy_only=False).astype(np.int64)
    boxes = np.stack([table.column(name).to_numpy().astype(np.float64) for name in BOX_COLUMNS], axis=1)
    boxes = boxes.reshape(-1, len(BOX_COLUMNS))
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise EvaluationError(
            f"{what}: row {row} has a box that is not finite ({boxes[row].tolist()}); fix it"
        )
    if with_score:
        score = table.column("score").to_numpy().astype(np.float64)
        bad_score = ~((score >= 0.0) & (score <= 1.0))
        if bad_score.any():
            row = int(np.flatnonzero(bad_score)[0])
            raise EvaluationError(f"{what}: row {row} has score {score[row]}; scores must be in 0..1")
    else:
        score = np.ones(len(frame), dtype=np.float64)
    return _Rows(frame, category, boxes, score, np.arange(len(frame), dtype=np.int64))


def _kept(rows: _Rows, evaluated: I64, max_range_m: float | None) -> npt.NDArray[np.intp]:
    keep = np.isin(rows.category, evaluated)
    if max_range_m is not None:
        keep &= np.hypot(rows.boxes[:, 0], rows.boxes[:, 1]) <= max_range_m
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class _Frames:
    """Predictions and GT grouped by frame, with every same-frame pair's IoU, both kinds."""

    num_frames: int
    pred_start: I64  # (F + 1,)
    gt_start: I64  # (F + 1,)
    pair_start: I64  # (F + 1,)
    ious: Mapping[str, F64]  # "3d" / "bev" -> flat pair IoUs (see iou.frame_pair_ious)

    @classmethod
    def build(cls, preds: _Rows, gts: _Rows, num_frames: int) -> _Frames:
        bounds = np.arange(num_frames + 1)
        pred_start = np.searchsorted(preds.frame, bounds).astype(np.int64)
        gt_start = np.searchsorted(gts.frame, bounds).astype(np.int64)
        ious_3d, pair_start = frame_pair_ious(preds.boxes, gts.boxes, pred_start, gt_start, True)
        ious_bev, _ = frame_pair_ious(preds.boxes, gts.boxes, pred_start, gt_start, False)
        return cls(num_frames, pred_start, gt_start, pair_start, {"3d": ious_3d, "bev": ious_bev})

    def match(
        self,
        kind: str,
        preds: _Rows,
        gts: _Rows,
        pred_active: BoolArray,
        gt_active: BoolArray,
        gt_threshold: F64,
        class_aware: bool,
    ) -> tuple[I64, F64]:
        """Greedy matching (module docstring): matched GT row (P,) (-1: none), and its IoU (P,)."""
        return _greedy_match(
            self.pred_start,
            self.gt_start,
            self.pair_start,
            self.ious[kind],
            pred_active,
            gt_active,
            preds.category,
            gts.category,
            gt_threshold,
            class_aware,
        )


@njit(cache=True)
def _greedy_match(
    pred_start: I64,
    gt_start: I64,
    pair_start: I64,
    ious: F64,
    pred_active: BoolArray,
    gt_active: BoolArray,
    pred_category: I64,
    gt_category: I64,
    gt_threshold: F64,
    class_aware: bool,
) -> tuple[I64, F64]:
    """Predictions must be sorted by frame, then by descending score, within `pred_start` groups."""
    matched = np.full(pred_active.shape[0], -1, dtype=np.int64)
    matched_iou = np.zeros(pred_active.shape[0], dtype=np.float64)
    taken = np.zeros(gt_active.shape[0], dtype=np.bool_)
    for f in range(pred_start.shape[0] - 1):
        g0 = gt_start[f]
        n_gt = gt_start[f + 1] - g0
        for i in range(pred_start[f], pred_start[f + 1]):
            if not pred_active[i]:
                continue
            base = pair_start[f] + (i - pred_start[f]) * n_gt
            best = -1
            best_iou = 0.0
            for j in range(g0, g0 + n_gt):
                if taken[j] or not gt_active[j]:
                    continue
                if class_aware and gt_category[j] != pred_category[i]:
                    continue
                v = ious[base + j - g0]
                if v > best_iou and v >= gt_threshold[j]:
                    best = j
                    best_iou = v
            if best >= 0:
                taken[best] = True
                matched[i] = best
                matched_iou[i] = best_iou
    return matched, matched_iou


def average_precision(
    scores: npt.ArrayLike, is_tp: npt.ArrayLike, num_gt: int, num_points: int = 40
) -> float | None:
    """Interpolated AP of predictions with `scores` (P,) and TP flags `is_tp` (P,) against `num_gt` GT boxes.

    One precision/recall point per distinct score s (all predictions with score >= s: the result
    does not depend on the order of tied scores); AP = mean over r in {1/n, ..., n/n} (n =
    `num_points`) of the highest precision at a point with recall >= r, 0 where none reaches r.
    None when `num_gt` is 0; 0.0 when there is GT but no prediction.
    """
    if num_gt <= 0:
        return None
    score = np.asarray(scores, dtype=np.float64).reshape(-1)
    tp = np.asarray(is_tp, dtype=bool).reshape(-1)
    if score.size == 0:
        return 0.0
    order = np.argsort(-score, kind="stable")
    score, tp = score[order], tp[order]
    cum_tp = np.cumsum(tp)
    cum_all = np.arange(1, score.size + 1)
    last = np.append(score[1:] != score[:-1], True)  # the end of each group of equal scores
    recall = cum_tp[last] / num_gt
    precision = cum_tp[last] / cum_all[last]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.arange(1, num_points + 1) / num_points
    first = np.searchsorted(recall, points, side="left")  # recall is non-decreasing
    reached = first < recall.size
    values = np.where(reached, envelope[np.minimum(first, recall.size - 1)], 0.0)
    return float(values.sum() / num_points)


@dataclass(frozen=True)
class _Accuracy:
    """Class-agnostic outcome of each box (module docstring, step 4)."""

    right: BoolArray  # (P,)
    class_error: BoolArray  # (P,)
    false_pos: BoolArray  # (P,)
    false_neg: BoolArray  # (G,)
    frame_wrong: BoolArray  # (F,)

    @classmethod
    def of(
        cls,
        num_frames: int,
        preds: _Rows,
        gts: _Rows,
        pred_active: BoolArray,
        gt_active: BoolArray,
        matched: I64,
    ) -> _Accuracy:
        paired = matched >= 0
        partner = np.full(len(preds.frame), -1, dtype=np.int64)
        partner[paired] = gts.category[matched[paired]]
        right = paired & (preds.category == partner)
        class_error = paired & ~right
        false_pos = pred_active & ~paired
        gt_paired = np.zeros(len(gts.frame), dtype=bool)
        gt_paired[matched[paired]] = True
        false_neg = gt_active & ~gt_paired
        wrong = np.zeros(num_frames, dtype=bool)
        wrong[preds.frame[class_error | false_pos]] = True
        wrong[gts.frame[false_neg]] = True
        return cls(right, class_error, false_pos, false_neg, wrong)


def _slice_metrics(
    name: str,
    min_range_m: float,
    max_range_m: float | None,
    frames: _Frames,
    preds: _Rows,
    gts: _Rows,
    config: EvalConfig,
    pred_in: BoolArray | None,
    gt_in: BoolArray | None,
) -> SliceMetrics:
    pred_active = np.ones(len(preds.frame), dtype=bool) if pred_in is None else pred_in
    gt_active = np.ones(len(gts.frame), dtype=bool) if gt_in is None else gt_in
    codes = [CATEGORIES.index(c) for c in config.categories]

    # AP: class-aware matching of every prediction, per (IoU kind, level).
    ap: dict[tuple[str, int], list[float | None]] = {}
    for kind in ("3d", "bev"):
        for level in range(len(LEVELS)):
            table = np.array(
                [config.iou_thresholds[c][level] if c in config.iou_thresholds else 1.0 for c in CATEGORIES]
            )
            matched, _ = frames.match(kind, preds, gts, pred_active, gt_active, table[gts.category], True)
            ap[(kind, level)] = [
                average_precision(
                    preds.score[pred_active & (preds.category == code)],
                    matched[pred_active & (preds.category == code)] >= 0,
                    int(np.count_nonzero(gt_active & (gts.category == code))),
                    config.num_recall_points,
                )
                for code in codes
            ]

    # Operating point.
    op_active = pred_active & (preds.score >= config.operating_score)
    op_table = np.array([config.operating_iou.get(c, 1.0) for c in CATEGORIES])
    kind = config.operating_iou_kind
    aware, aware_iou = frames.match(kind, preds, gts, op_active, gt_active, op_table[gts.category], True)
    categories = []
    for index, (category, code) in enumerate(zip(config.categories, codes, strict=True)):
        mine = op_active & (preds.category == code)
        tp_mask = mine & (aware >= 0)
        tp = int(np.count_nonzero(tp_mask))
        n_op = int(np.count_nonzero(mine))
        n_gt = int(np.count_nonzero(gt_active & (gts.category == code)))
        categories.append(
            CategoryMetrics(
                category=category,
                iou_thresholds=config.iou_thresholds[category],
                num_gt=n_gt,
                num_pred=int(np.count_nonzero(pred_active & (preds.category == code))),
                ap_3d=(ap[("3d", 0)][index], ap[("3d", 1)][index]),
                ap_bev=(ap[("bev", 0)][index], ap[("bev", 1)][index]),
                tp=tp,
                fp=n_op - tp,
                fn=n_gt - tp,
                precision=_ratio(tp, n_op),
                recall=_ratio(tp, n_gt),
                mean_iou=_mean(aware_iou[tp_mask]),
            )
        )

    tp_all = sum(m.tp for m in categories)
    fp_all = sum(m.fp for m in categories)
    fn_all = sum(m.fn for m in categories)

    # Box and frame accuracy: class-agnostic matching.
    agnostic, _ = frames.match(kind, preds, gts, op_active, gt_active, op_table[gts.category], False)
    acc = _Accuracy.of(frames.num_frames, preds, gts, op_active, gt_active, agnostic)
    n_right = int(np.count_nonzero(acc.right))
    n_class = int(np.count_nonzero(acc.class_error))
    n_fp, n_fn = int(np.count_nonzero(acc.false_pos)), int(np.count_nonzero(acc.false_neg))
    boxes_total = n_right + n_class + n_fp + n_fn
    frames_right = frames.num_frames - int(np.count_nonzero(acc.frame_wrong))

    return SliceMetrics(
        name=name,
        min_range_m=min_range_m,
        max_range_m=max_range_m,
        categories=tuple(categories),
        num_gt=int(np.count_nonzero(gt_active)),
        num_pred=int(np.count_nonzero(pred_active)),
        map_3d=(_mean_defined(ap[("3d", 0)]), _mean_defined(ap[("3d", 1)])),
        map_bev=(_mean_defined(ap[("bev", 0)]), _mean_defined(ap[("bev", 1)])),
        tp=tp_all,
        fp=fp_all,
        fn=fn_all,
        precision=_ratio(tp_all, tp_all + fp_all),
        recall=_ratio(tp_all, tp_all + fn_all),
        mean_iou=_mean(aware_iou[op_active & (aware >= 0)]),
        boxes_right=n_right,
        class_errors=n_class,
        boxes_total=boxes_total,
        box_accuracy=_ratio(n_right, boxes_total),
        num_frames=frames.num_frames,
        frames_right=frames_right,
        frame_accuracy=_ratio(frames_right, frames.num_frames),
    )


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _mean(values: F64) -> float | None:
    return float(values.mean()) if values.size else None


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None
