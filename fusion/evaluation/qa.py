"""Pre-labels against the labels a reviewer made of them: how good they were, what the reviewer
changed, and how much time they saved (`fusion qa`).

    result = compare_reviewed(load_labels("out/"), load_labels("reviewed/"), QAConfig())
    print(format_qa_table(result))
    json.dumps(result.to_json())

The reviewed labels are the truth. Every number is given per sequence and over all of them.

Accuracy (`fusion eval`'s definitions, computed by its code: `metrics.match_boxes`)
    The pre-labels with score >= `eval.operating_score` are matched class-agnostically to the
    reviewed boxes at `eval.operating_iou` (per reviewed category; `--iou X` sets X for all).
    box accuracy   = right / (right + wrong category + unmatched pre-labels + unmatched reviewed)
    frame accuracy = frames where every box is right / frames
    soft accuracy  = mean IoU of the matched pairs (`eval.operating_iou_kind`, 3D by default)
    Same config, same numbers as `fusion eval`: the matching is the same function.

Edits (what the reviewer did)
    Pre-labels and reviewed boxes are paired by the same greedy rule at IoU >= `edit_iou` (a box
    the reviewer moved rather than drew again). Then
    deleted     = pre-labels (score >= operating score) left unpaired
    added       = reviewed boxes left unpaired (drawn from scratch)
    adjusted    = pairs whose centre moved more than `centre_tolerance_m`, whose length, width or
                  height changed more than `size_tolerance_m`, or whose yaw turned more than
                  `yaw_tolerance_rad` (a 180-degree flip counts)
    unchanged   = the other pairs (the reviewer looked and accepted)
    relabelled  = pairs whose category changed (counted on top of adjusted / unchanged)
    identity changes = along each reviewed track (frame order, paired frames only), the number of
                  times the paired pre-label's track id differs from the one before: each is an
                  id the reviewer had to reassign (a swap costs one on each of the two tracks).

Time (`CostModel`, seconds, per box and frame; set them from your tool's measured times)
    with pre-labels    = verify * unchanged + adjust * adjusted + delete * deleted
                         + draw * added + relabel * relabelled + fix_identity * identity changes
    without pre-labels = draw * reviewed boxes
    saved              = 1 - with / without
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from calib.transform import wrap_angle
from exporters.schema import BOX_COLUMNS
from fusion.evaluation.errors import EvaluationError
from fusion.evaluation.metrics import (
    BoxMatching,
    EvalConfig,
    LabelsLike,
    as_labels_table,
    check_config_keys,
    match_boxes,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

QA_FORMAT: Final = "fusion.qa/1"


@dataclass(frozen=True)
class CostModel:
    """Seconds a reviewer spends per box and frame. Defaults are illustrative: drawing a 3D box from
    scratch takes about two minutes (the figure this project starts from); the rest are a tool's
    single gestures. Measure your own team's times and set them (TOML `[qa.cost]`)."""

    draw_s: float = 120.0  # draw a 3D box from scratch (the reviewer added it)
    adjust_s: float = 20.0  # move, resize or turn a pre-label
    verify_s: float = 3.0  # look at a right pre-label and accept it
    delete_s: float = 3.0  # delete a wrong pre-label
    relabel_s: float = 5.0  # change a box's category
    fix_identity_s: float = 10.0  # reassign a box's track id

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0.0):
                raise EvaluationError(f"qa cost.{f.name} = {value!r}; use a number of seconds >= 0")

    def to_json(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class QAConfig:
    """What `compare_reviewed` measures (the module docstring defines each term)."""

    # accuracy: categories, operating score, IoU per category and kind, range (fusion eval's config)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # a reviewed box overlapping a pre-label by at least this IoU was edited, not drawn again
    edit_iou: float = 0.1
    # a paired box whose centre moved further than this (m) was adjusted
    centre_tolerance_m: float = 0.2
    # ... or whose length, width or height changed more than this (m)
    size_tolerance_m: float = 0.1
    # ... or whose yaw turned more than this (rad; about 3 degrees)
    yaw_tolerance_rad: float = 0.05
    # seconds per reviewer gesture
    cost: CostModel = field(default_factory=CostModel)

    def __post_init__(self) -> None:
        if not 0.0 < self.edit_iou <= 1.0:
            raise EvaluationError(f"qa edit_iou = {self.edit_iou}; use an IoU in (0, 1]")
        for name in ("centre_tolerance_m", "size_tolerance_m", "yaw_tolerance_rad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise EvaluationError(f"qa {name} = {value}; use a finite value >= 0")

    def with_iou(self, iou: float) -> QAConfig:
        """This config with one accuracy IoU threshold `iou` for every category."""
        if not 0.0 < iou <= 1.0:
            raise EvaluationError(f"--iou {iou}: use an IoU in (0, 1]")
        operating = dict.fromkeys(self.eval.operating_iou, iou)
        return replace(self, eval=replace(self.eval, operating_iou=operating))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QAConfig:
        """A config from a mapping shaped like `to_json()` (e.g. TOML `[qa]` with `[qa.eval]` and
        `[qa.cost]`); keys left out keep their defaults. Raises EvaluationError for unknown keys."""
        check_config_keys(cls, data, "qa config")
        values = dict(data)
        if "eval" in values:
            values["eval"] = EvalConfig.from_json(values["eval"])
        if "cost" in values:
            check_config_keys(CostModel, values["cost"], "qa cost")
            values["cost"] = CostModel(**values["cost"])
        try:
            return cls(**values)
        except TypeError as err:
            raise EvaluationError(f"qa config: a value has the wrong shape ({err})") from err

    def to_json(self) -> dict[str, Any]:
        return {
            "eval": self.eval.to_json(),
            "edit_iou": self.edit_iou,
            "centre_tolerance_m": self.centre_tolerance_m,
            "size_tolerance_m": self.size_tolerance_m,
            "yaw_tolerance_rad": self.yaw_tolerance_rad,
            "cost": self.cost.to_json(),
        }


@dataclass(frozen=True)
class QAStats:
    """One sequence's numbers, or all sequences' (name "all")."""

    name: str
    frames: int
    prelabels: int  # pre-labels with score >= the operating score (what the reviewer saw)
    reviewed: int  # reviewed boxes
    boxes_right: int
    class_errors: int
    boxes_total: int
    box_accuracy: float | None
    frames_right: int
    frame_accuracy: float | None
    soft_accuracy: float | None  # mean IoU of the matched pairs
    unchanged: int
    adjusted: int
    deleted: int
    added: int
    relabelled: int
    identity_changes: int
    time_with_s: float
    time_without_s: float

    @property
    def saved(self) -> float | None:
        """Share of the drawing time the pre-labels saved (negative: they cost time)."""
        return 1.0 - self.time_with_s / self.time_without_s if self.time_without_s > 0 else None

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["saved"] = self.saved
        return data


@dataclass(frozen=True, eq=False)
class QAResult:
    config: QAConfig
    overall: QAStats
    sequences: tuple[QAStats, ...]
    edit_ious: F64  # (K,) IoU of every edit pair (the histogram `plot_iou_histogram` draws)

    def sequence(self, name: str) -> QAStats:
        for stats in self.sequences:
            if stats.name == name:
                return stats
        raise EvaluationError(
            f"no sequence {name!r} in the QA result; have {[s.name for s in self.sequences]}"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-able, stable keys; undefined values are None."""
        return {
            "format": QA_FORMAT,
            "config": self.config.to_json(),
            "overall": self.overall.to_json(),
            "sequences": {s.name: s.to_json() for s in self.sequences},
        }


def compare_reviewed(prelabels: LabelsLike, reviewed: LabelsLike, config: QAConfig | None = None) -> QAResult:
    """The pre-labels against their reviewed labels (module docstring). Both are labels tables
    (pyarrow or pandas) with the contract's columns; `track_id` is needed on both sides for the
    identity changes. Raises EvaluationError for a missing column or a bad value."""
    config = config or QAConfig()
    pre = as_labels_table(prelabels, "pre-labels")
    rev = as_labels_table(reviewed, "reviewed labels")
    for table, what in ((pre, "pre-labels"), (rev, "reviewed labels")):
        if "track_id" not in table.column_names or table.column("track_id").null_count:
            raise EvaluationError(f"{what}: needs a 'track_id' column without nulls (shared/CONTRACT.md)")

    accuracy = match_boxes(pre, rev, config.eval)
    edit_config = replace(
        config.eval, operating_iou=dict.fromkeys(config.eval.operating_iou, config.edit_iou)
    )
    edits = match_boxes(pre, rev, edit_config)
    outcome = _Edits.of(edits, pre, rev, config)

    names = sorted(set(accuracy.frame_sequence.tolist()))
    per_sequence = tuple(_stats(name, accuracy, edits, outcome, config) for name in names)
    overall = _stats(None, accuracy, edits, outcome, config)
    paired = edits.matched >= 0
    return QAResult(config, overall, per_sequence, edits.iou[paired].copy())


@dataclass(frozen=True)
class _Edits:
    """Per edit-matched prediction (P,): what the reviewer did to it."""

    adjusted: npt.NDArray[np.bool_]
    relabelled: npt.NDArray[np.bool_]
    identity_change: npt.NDArray[np.bool_]  # this pair's pre-label track differs from the previous pair's

    @classmethod
    def of(cls, edits: BoxMatching, pre: pa.Table, rev: pa.Table, config: QAConfig) -> _Edits:
        paired = edits.matched >= 0
        pre_rows = edits.pred_row
        gt_row = edits.gt_row if len(edits.gt_row) else np.zeros(1, np.int64)
        rev_rows = np.where(paired, gt_row[np.maximum(edits.matched, 0)], 0)
        a = _boxes(pre)[pre_rows]
        b = _boxes(rev)[rev_rows] if rev.num_rows else np.zeros_like(a)
        moved = np.linalg.norm(a[:, :3] - b[:, :3], axis=1) > config.centre_tolerance_m
        resized = (np.abs(a[:, 3:6] - b[:, 3:6]) > config.size_tolerance_m).any(axis=1)
        turned = np.abs(wrap_angle(a[:, 6] - b[:, 6])) > config.yaw_tolerance_rad
        adjusted = paired & (moved | resized | turned)
        pre_cat = np.asarray(pre.column("category").to_pylist(), dtype=str)[pre_rows]
        rev_cat = np.asarray(rev.column("category").to_pylist(), dtype=str)
        rev_cat = rev_cat[rev_rows] if rev.num_rows else pre_cat
        relabelled = paired & (pre_cat != rev_cat)

        # Identity changes along each reviewed track, in frame order.
        pre_track = pre.column("track_id").to_numpy().astype(np.int64)[pre_rows]
        rev_track = rev.column("track_id").to_numpy().astype(np.int64)
        rev_track = rev_track[rev_rows] if rev.num_rows else pre_track
        sequence = edits.frame_sequence[edits.pred_frame]
        frame = edits.frame_index[edits.pred_frame]
        idx = np.flatnonzero(paired)
        change = np.zeros(len(paired), dtype=bool)
        if idx.size:
            _, seq_code = np.unique(sequence[idx], return_inverse=True)
            order = idx[np.lexsort((frame[idx], rev_track[idx], seq_code.reshape(-1)))]
            same_track = (sequence[order][1:] == sequence[order][:-1]) & (
                rev_track[order][1:] == rev_track[order][:-1]
            )
            switched = same_track & (pre_track[order][1:] != pre_track[order][:-1])
            change[order[1:][switched]] = True
        return cls(adjusted, relabelled, change)


def _boxes(table: pa.Table) -> F64:
    """(N, 7) boxes of a labels table."""
    if table.num_rows == 0:
        return np.zeros((0, 7))
    return np.stack([table.column(name).to_numpy().astype(np.float64) for name in BOX_COLUMNS], axis=1)


def _stats(
    name: str | None, accuracy: BoxMatching, edits: BoxMatching, outcome: _Edits, config: QAConfig
) -> QAStats:
    counts = accuracy.counts(name)
    if name is None:
        pre_in = np.ones(len(edits.pred_row), dtype=bool)
        rev_in = np.ones(len(edits.gt_row), dtype=bool)
        acc_in = np.ones(len(accuracy.pred_row), dtype=bool)
    else:
        pre_in = edits.frame_sequence[edits.pred_frame] == name
        rev_in = edits.frame_sequence[edits.gt_frame] == name
        acc_in = accuracy.frame_sequence[accuracy.pred_frame] == name
    paired = (edits.matched >= 0) & pre_in
    adjusted = int(np.count_nonzero(outcome.adjusted & pre_in))
    unchanged = int(np.count_nonzero(paired)) - adjusted
    deleted = int(np.count_nonzero(edits.false_pos & pre_in))
    added = int(np.count_nonzero(edits.false_neg & rev_in))
    relabelled = int(np.count_nonzero(outcome.relabelled & pre_in))
    identity = int(np.count_nonzero(outcome.identity_change & pre_in))
    reviewed = int(np.count_nonzero(rev_in))
    cost = config.cost
    time_with = (
        cost.verify_s * unchanged
        + cost.adjust_s * adjusted
        + cost.delete_s * deleted
        + cost.draw_s * added
        + cost.relabel_s * relabelled
        + cost.fix_identity_s * identity
    )
    matched_iou = accuracy.iou[(accuracy.matched >= 0) & acc_in]
    return QAStats(
        name="all" if name is None else name,
        frames=counts["frames"],
        prelabels=int(np.count_nonzero(accuracy.pred_active & acc_in)),
        reviewed=reviewed,
        boxes_right=counts["right"],
        class_errors=counts["class_errors"],
        boxes_total=counts["boxes_total"],
        box_accuracy=counts["right"] / counts["boxes_total"] if counts["boxes_total"] else None,
        frames_right=counts["frames_right"],
        frame_accuracy=counts["frames_right"] / counts["frames"] if counts["frames"] else None,
        soft_accuracy=float(matched_iou.mean()) if matched_iou.size else None,
        unchanged=unchanged,
        adjusted=adjusted,
        deleted=deleted,
        added=added,
        relabelled=relabelled,
        identity_changes=identity,
        time_with_s=float(time_with),
        time_without_s=float(cost.draw_s * reviewed),
    )


def format_qa_table(result: QAResult) -> str:
    """A plain-text report: one row per sequence and one for all; percentages with one decimal."""
    cfg = result.config.eval
    ious = sorted({cfg.operating_iou[c] for c in cfg.categories})
    iou_text = (
        f"{ious[0]:g}"
        if len(ious) == 1
        else ", ".join(f"{c} {cfg.operating_iou[c]:g}" for c in cfg.categories)
    )
    kind = "3D" if cfg.operating_iou_kind == "3d" else "BEV"
    header = [
        "sequence", "frames", "pre", "reviewed", "box acc", "frame acc", "soft acc",
        "unchanged", "adjusted", "deleted", "added", "relabel", "id fix", "h with", "h without", "saved",
    ]  # fmt: skip
    rows = [_row(s) for s in (*result.sequences, result.overall)]
    widths = [max(len(r[k]) for r in (header, *rows)) for k in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            [cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
        ).rstrip()

    cost = result.config.cost
    lines = [
        f"fusion qa: pre-labels with score >= {cfg.operating_score:g} against the reviewed labels; "
        f"accuracy at {kind} IoU >= {iou_text}, edits at IoU >= {result.config.edit_iou:g}",
        line(header),
        *(line(r) for r in rows),
        "",
        f"time model (s per box): draw {cost.draw_s:g}, adjust {cost.adjust_s:g}, verify {cost.verify_s:g}, "
        f"delete {cost.delete_s:g}, relabel {cost.relabel_s:g}, fix id {cost.fix_identity_s:g}",
    ]
    return "\n".join(lines) + "\n"


def _row(s: QAStats) -> list[str]:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100.0 * v:.1f}%"

    return [
        s.name,
        str(s.frames),
        str(s.prelabels),
        str(s.reviewed),
        pct(s.box_accuracy),
        pct(s.frame_accuracy),
        "-" if s.soft_accuracy is None else f"{s.soft_accuracy:.3f}",
        str(s.unchanged),
        str(s.adjusted),
        str(s.deleted),
        str(s.added),
        str(s.relabelled),
        str(s.identity_changes),
        f"{s.time_with_s / 3600:.2f}",
        f"{s.time_without_s / 3600:.2f}",
        pct(s.saved),
    ]


def check_plot_path(path: Path | str) -> Path:
    """`path` as the PNG `plot_iou_histogram` may write: raises EvaluationError when its folder does not
    exist or its name does not end in .png (a PNG was written under any name given)."""
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise EvaluationError(f"{out}: the plot is a PNG; give --plot a name ending in .png")
    if not out.parent.is_dir():
        raise EvaluationError(
            f"{out}: folder {out.parent} does not exist; create it or choose another --plot"
        )
    return out


def plot_iou_histogram(result: QAResult, path: Path | str) -> Path:
    """Draw the histogram of the edit pairs' IoUs into the PNG `path` (matplotlib, Agg), with the
    accuracy threshold(s) marked; written under a temporary name and renamed into place.
    Raises EvaluationError when the folder does not exist."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out = check_plot_path(path)
    cfg = result.config.eval
    overall = result.overall
    fig = Figure(figsize=(7.0, 4.0), dpi=100)
    ax = fig.add_subplot()
    ax.hist(result.edit_ious, bins=[k / 20 for k in range(21)], color="#4477aa", edgecolor="white")
    for iou in sorted({cfg.operating_iou[c] for c in cfg.categories}):
        named = [c for c in cfg.categories if cfg.operating_iou[c] == iou]
        ax.axvline(
            iou,
            color="#cc3311",
            linestyle="--",
            linewidth=1.2,
            label=f"right at IoU >= {iou:g}: {', '.join(named)}",
        )
    if cfg.categories:
        ax.legend(loc="upper left", fontsize=8, framealpha=1.0, edgecolor="none")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(f"{'3D' if cfg.operating_iou_kind == '3d' else 'BEV'} IoU, pre-label vs reviewed box")
    ax.set_ylabel("boxes")
    ax.set_title(
        f"{len(result.edit_ious)} edited or kept, {overall.deleted} deleted, {overall.added} added; "
        f"box accuracy {'-' if overall.box_accuracy is None else f'{100 * overall.box_accuracy:.1f}%'}",
        fontsize=10,
    )
    fig.tight_layout()
    from fusion.render import save_png  # the umask's permissions (mkstemp's 0600 hid it from the team)

    save_png(fig, out, fig.dpi)
    return out
