"""An `EvalResult` for people: `format_table(result)` gives a plain-text table (the JSON form is
`EvalResult.to_json()`).

AP, mAP, precision, recall and accuracies are shown in percent with two decimals, mean IoU as a
fraction with three; an undefined value (None) is shown as "-".
"""

from __future__ import annotations

from collections.abc import Sequence

from fusion.evaluation.metrics import EvalResult, SliceMetrics


def format_table(result: EvalResult) -> str:
    """A multi-line text report of `result`: per category, overall, accuracies and the range breakdown."""
    config = result.config
    overall = result.overall
    kind = "3D" if config.operating_iou_kind == "3d" else "BEV"
    iou_at = ", ".join(f"{c} {config.operating_iou[c]:.2f}" for c in config.categories)
    scope = "all ranges" if config.max_range_m is None else f"within {config.max_range_m:g} m"
    lines = [
        f"fusion evaluation: {overall.num_frames} frames, {overall.num_gt} GT boxes, "
        f"{overall.num_pred} predictions ({scope})",
        f"operating point: score >= {config.operating_score:.2f}, {kind} IoU >= {iou_at}",
        "",
    ]
    header = [
        "category",
        "IoU s/l",
        "GT",
        "pred",
        "AP3D s",
        "AP3D l",
        "APBEV s",
        "APBEV l",
        "prec",
        "recall",
        "mIoU",
    ]
    rows = [
        [
            m.category,
            f"{m.iou_thresholds[0]:.2f}/{m.iou_thresholds[1]:.2f}",
            str(m.num_gt),
            str(m.num_pred),
            *(_percent(v) for v in (*m.ap_3d, *m.ap_bev, m.precision, m.recall)),
            _fraction(m.mean_iou),
        ]
        for m in overall.categories
    ]
    rows.append(
        [
            "all (mAP)",
            "",
            str(overall.num_gt),
            str(overall.num_pred),
            *(_percent(v) for v in (*overall.map_3d, *overall.map_bev, overall.precision, overall.recall)),
            _fraction(overall.mean_iou),
        ]
    )
    lines += _grid(header, rows)
    lines += [
        "",
        f"box accuracy: {_percent(overall.box_accuracy)}% ({overall.boxes_right} of {overall.boxes_total} "
        f"boxes right; {overall.class_errors} wrong category, {_false_pos(overall)} FP, "
        f"{_false_neg(overall)} FN)",
        f"frame accuracy: {_percent(overall.frame_accuracy)}% ({overall.frames_right} of "
        f"{overall.num_frames} frames with every box right)",
        "",
    ]
    range_header = [
        "range",
        "GT",
        "pred",
        "mAP3D s",
        "mAP3D l",
        "mAPBEV s",
        "mAPBEV l",
        "prec",
        "recall",
        "mIoU",
        "box acc",
        "frame acc",
    ]
    range_rows = [
        [
            s.name,
            str(s.num_gt),
            str(s.num_pred),
            *(_percent(v) for v in (*s.map_3d, *s.map_bev, s.precision, s.recall)),
            _fraction(s.mean_iou),
            _percent(s.box_accuracy),
            _percent(s.frame_accuracy),
        ]
        for s in result.by_range
    ]
    lines += _grid(range_header, range_rows)
    return "\n".join(lines) + "\n"


def _false_pos(s: SliceMetrics) -> int:
    """Class-agnostic FP: boxes that are neither right, a class error, nor a missed GT."""
    return s.boxes_total - s.boxes_right - s.class_errors - _false_neg(s)


def _false_neg(s: SliceMetrics) -> int:
    """Class-agnostic FN: GT boxes not paired with any prediction."""
    return s.num_gt - s.boxes_right - s.class_errors


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}"


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    widths = [max(len(r[k]) for r in (header, *rows)) for k in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest)).rstrip()

    return [line(header), *(line(r) for r in rows)]
