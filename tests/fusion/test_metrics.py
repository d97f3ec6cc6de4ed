"""evaluate(): AP with 40-point interpolation, operating-point metrics, accuracies, ranges, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from exporters import labels_table, write_labels
from fusion.evaluation import (
    EvalConfig,
    EvalResult,
    EvaluationError,
    average_precision,
    evaluate,
    format_table,
    load_labels,
)

Row = tuple[int, str, tuple[float, ...], float]  # frame_index, category, box, score

CAR = (10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0)
PED = (5.0, 5.0, 0.0, 0.8, 0.8, 1.8, 0.0)


def at(b: tuple[float, ...], **change: float) -> tuple[float, ...]:
    names = ("x", "y", "z", "length", "width", "height", "yaw")
    return tuple(change.get(n, v) for n, v in zip(names, b, strict=True))


def table(rows: list[Row], sequence_id: str = "seq") -> pa.Table:
    """A minimal labels table (only the columns evaluate needs)."""
    boxes = np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 7)
    columns = {
        "sequence_id": pa.array([sequence_id] * len(rows), pa.string()),
        "frame_index": pa.array([r[0] for r in rows], pa.int32()),
        "category": pa.array([r[1] for r in rows], pa.string()),
        "score": pa.array([r[3] for r in rows], pa.float32()),
    }
    for k, name in enumerate(("x", "y", "z", "length", "width", "height", "yaw")):
        columns[name] = pa.array(boxes[:, k])
    return pa.table(columns)


def no_nan(result: EvalResult) -> str:
    return json.dumps(result.to_json(), allow_nan=False)


# ---- AP -----------------------------------------------------------------------------------------


def test_perfect_predictions_score_one_everywhere() -> None:
    gt = table([(0, "car", CAR, 1.0), (0, "pedestrian", PED, 1.0), (1, "car", at(CAR, x=20.0), 1.0)])
    result = evaluate(gt, gt)
    for name in ("car", "pedestrian"):
        m = result.category(name)
        assert (m.ap_3d, m.ap_bev) == ((1.0, 1.0), (1.0, 1.0))
        assert (m.precision, m.recall, m.mean_iou) == (1.0, 1.0, 1.0)
    overall = result.overall
    assert (overall.map_3d, overall.map_bev) == ((1.0, 1.0), (1.0, 1.0))
    assert (overall.box_accuracy, overall.frame_accuracy) == (1.0, 1.0)
    assert (overall.boxes_right, overall.boxes_total, overall.frames_right, overall.num_frames) == (
        3,
        3,
        2,
        2,
    )
    assert result.category("truck").ap_3d == (None, None)


def test_false_positive_above_every_true_positive_gives_two_thirds() -> None:
    # 2 GT; by score: FP, TP, TP -> PR points (0, 0), (1/2, 1/2), (1, 2/3); envelope 2/3 at every recall.
    gt = table([(0, "car", CAR, 1.0), (0, "car", at(CAR, x=30.0), 1.0)])
    pred = table([(0, "car", at(CAR, y=40.0), 0.9), (0, "car", CAR, 0.8), (0, "car", at(CAR, x=30.0), 0.7)])
    m = evaluate(pred, gt).category("car")
    assert m.ap_3d == pytest.approx((2 / 3, 2 / 3), abs=1e-12)
    assert m.ap_bev == pytest.approx((2 / 3, 2 / 3), abs=1e-12)
    assert (m.tp, m.fp, m.fn) == (2, 1, 0)
    assert m.precision == pytest.approx(2 / 3) and m.recall == 1.0


def test_false_positive_between_true_positives_gives_five_sixths() -> None:
    # TP, FP, TP: precision 1 up to recall 1/2 (20 of 40 points), 2/3 after (20 points) -> 5/6.
    gt = table([(0, "car", CAR, 1.0), (0, "car", at(CAR, x=30.0), 1.0)])
    pred = table([(0, "car", CAR, 0.9), (0, "car", at(CAR, y=40.0), 0.8), (0, "car", at(CAR, x=30.0), 0.7)])
    assert evaluate(pred, gt).category("car").ap_3d == pytest.approx((5 / 6, 5 / 6), abs=1e-12)


def test_recall_points_never_reached_count_zero() -> None:
    # 3 GT, 2 found: recall tops out at 2/3, which covers recall points 1/40 .. 26/40 only.
    assert average_precision([0.9, 0.8, 0.7], [True, True, False], 3) == pytest.approx(26 / 40, abs=1e-12)


def test_tied_scores_form_one_point_whatever_their_order() -> None:
    # Two predictions on one GT with the same score: one TP, one FP at one threshold -> P = 1/2.
    gt = table([(0, "car", CAR, 1.0)])
    twice = table([(0, "car", CAR, 0.9), (0, "car", at(CAR, x=10.5), 0.9)])
    reversed_rows = twice.take(pa.array([1, 0]))
    assert evaluate(twice, gt).category("car").ap_3d == (0.5, 0.5)
    assert evaluate(reversed_rows, gt).category("car").ap_3d == (0.5, 0.5)
    # Which of the tied predictions the greedy matching pairs is decided by row order.
    assert evaluate(twice, gt).category("car").mean_iou == 1.0
    assert evaluate(reversed_rows, gt).category("car").mean_iou == pytest.approx(7 / 9, abs=1e-12)
    # Scores apart: the TP comes first, precision 1 at full recall.
    apart = table([(0, "car", CAR, 0.9), (0, "car", at(CAR, x=10.5), 0.8)])
    assert evaluate(apart, gt).category("car").ap_3d == (1.0, 1.0)


def test_each_gt_is_matched_once_to_its_best_unmatched_overlap() -> None:
    # The first prediction overlaps both GT; it takes the one with the higher IoU (the second GT),
    # leaving the first GT to the lower-scored prediction.
    gt = table([(0, "car", CAR, 1.0), (0, "car", at(CAR, x=13.0), 1.0)])
    pred = table([(0, "car", at(CAR, x=12.6), 0.9), (0, "car", at(CAR, x=10.1), 0.8)])
    m = evaluate(pred, gt, EvalConfig(operating_iou={"car": 0.1, **_loose()})).category("car")
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    # mean of IoU(12.6 vs 13.0) = 3.6/4.4 and IoU(10.1 vs 10.0) = 3.9/4.1
    assert m.mean_iou == pytest.approx((3.6 / 4.4 + 3.9 / 4.1) / 2, abs=1e-12)


def _loose() -> dict[str, float]:
    return {
        "truck": 0.5,
        "bus": 0.5,
        "pedestrian": 0.25,
        "cyclist": 0.25,
        "motorcycle": 0.25,
        "unknown": 0.25,
    }


def test_strict_and_loose_thresholds_and_3d_versus_bev() -> None:
    gt = table([(0, "car", CAR, 1.0), (1, "car", CAR, 1.0)])
    # frame 0: shifted 1 m along the length: IoU 6/10 = 0.6 in BEV and 3D.
    # frame 1: raised by 0.5 m: BEV IoU 1, 3D IoU 1.0 / 2.0 = 0.5.
    pred = table([(0, "car", at(CAR, x=11.0), 0.9), (1, "car", at(CAR, z=0.5), 0.8)])
    m = evaluate(pred, gt).category("car")
    assert m.ap_3d == (0.0, 1.0)
    # BEV at 0.7: the 0.9 prediction is an FP, the 0.8 one a TP: (1/2, 1/2) covers 20 of 40 points
    assert m.ap_bev[0] == 0.25
    assert m.ap_bev[1] == 1.0
    assert m.mean_iou == pytest.approx((0.6 + 0.5) / 2, abs=1e-12)


def test_matching_stays_within_one_sequence_and_frame() -> None:
    gt = pa.concat_tables([table([(0, "car", CAR, 1.0)], "a"), table([(1, "car", CAR, 1.0)], "b")])
    pred = pa.concat_tables([table([(1, "car", CAR, 0.9)], "a"), table([(1, "car", CAR, 0.9)], "b")])
    m = evaluate(pred, gt).category("car")
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert evaluate(pred, gt).overall.num_frames == 3


# ---- empty and one-sided inputs -----------------------------------------------------------------


def test_no_predictions_give_ap_zero_and_no_precision() -> None:
    gt = table([(0, "car", CAR, 1.0)])
    result = evaluate(table([]), gt)
    m = result.category("car")
    assert (m.ap_3d, m.ap_bev, m.precision, m.recall, m.mean_iou) == ((0.0, 0.0), (0.0, 0.0), None, 0.0, None)
    assert result.overall.map_3d == (0.0, 0.0)
    assert (result.overall.box_accuracy, result.overall.frame_accuracy) == (0.0, 0.0)
    no_nan(result)


def test_no_ground_truth_gives_undefined_ap_and_zero_precision() -> None:
    result = evaluate(table([(0, "car", CAR, 0.9)]), table([]))
    m = result.category("car")
    assert (m.ap_3d, m.precision, m.recall) == ((None, None), 0.0, None)
    assert result.overall.map_3d == (None, None)
    assert result.to_json()["overall"]["categories"]["car"]["ap_3d"] == {"strict": None, "loose": None}
    assert '"ap_3d": {"strict": null, "loose": null}' in no_nan(result)


def test_both_empty_gives_nothing_defined_and_no_crash() -> None:
    result = evaluate(table([]), table([]))
    overall = result.overall
    assert (overall.num_frames, overall.box_accuracy, overall.frame_accuracy, overall.precision) == (
        0,
        None,
        None,
        None,
    )
    no_nan(result)


def test_category_on_one_side_only_is_a_class_error() -> None:
    result = evaluate(table([(0, "pedestrian", CAR, 0.9)]), table([(0, "car", CAR, 1.0)]))
    assert result.category("car").ap_3d == (0.0, 0.0)
    assert result.category("pedestrian").ap_3d == (None, None)
    assert result.category("pedestrian").precision == 0.0
    overall = result.overall
    assert (overall.boxes_right, overall.class_errors, overall.boxes_total) == (0, 1, 1)
    assert (overall.box_accuracy, overall.frame_accuracy) == (0.0, 0.0)


def test_zero_size_boxes_never_match_and_never_give_nan() -> None:
    flat = at(CAR, length=0.0)
    result = evaluate(table([(0, "car", flat, 0.9)]), table([(0, "car", flat, 1.0)]))
    m = result.category("car")
    assert (m.ap_3d, m.tp, m.fp, m.fn, m.mean_iou) == ((0.0, 0.0), 0, 1, 1, None)
    no_nan(result)


def test_unknown_is_skipped_unless_asked_for() -> None:
    gt = table([(0, "car", CAR, 1.0), (0, "unknown", PED, 1.0)])
    pred = table([(0, "car", CAR, 0.9)])
    default = evaluate(pred, gt)
    assert [m.category for m in default.overall.categories] == [
        "car",
        "truck",
        "bus",
        "pedestrian",
        "cyclist",
        "motorcycle",
    ]
    assert (default.overall.num_gt, default.overall.frame_accuracy) == (1, 1.0)
    asked = evaluate(pred, gt, EvalConfig(categories=("car", "unknown")))
    assert asked.category("unknown").ap_3d == (0.0, 0.0)
    assert asked.overall.frame_accuracy == 0.0
    with pytest.raises(EvaluationError, match="category 'truck' was not evaluated"):
        asked.category("truck")


# ---- operating point, accuracies ----------------------------------------------------------------


def test_frame_and_box_accuracy_on_three_frames() -> None:
    ped2 = at(PED, x=8.0)
    gt = table(
        [
            (0, "car", CAR, 1.0),
            (0, "pedestrian", PED, 1.0),  # frame 0: both found, right categories
            (1, "car", CAR, 1.0),
            (1, "pedestrian", PED, 1.0),  # frame 1: the pedestrian is missed
            (2, "pedestrian", ped2, 1.0),  # frame 2: found, but called a cyclist
        ]
    )
    pred = table(
        [
            (0, "car", CAR, 0.9),
            (0, "pedestrian", PED, 0.8),
            (1, "car", CAR, 0.9),
            (1, "pedestrian", PED, 0.3),  # below the operating score: does not count
            (2, "cyclist", ped2, 0.7),
        ]
    )
    overall = evaluate(pred, gt).overall
    assert (overall.num_frames, overall.frames_right, overall.frame_accuracy) == (3, 1, 1 / 3)
    # right: 3 (two in frame 0, the car of frame 1); class error 1; FN 1 -> 3 / 5
    assert (overall.boxes_right, overall.class_errors, overall.boxes_total) == (3, 1, 5)
    assert overall.box_accuracy == 3 / 5
    # class-aware operating point: car 2/2; pedestrian TP 1 of 3 GT; cyclist one FP
    assert (overall.tp, overall.fp, overall.fn) == (3, 1, 2)
    assert (overall.precision, overall.recall) == (3 / 4, 3 / 5)
    # the low-scored pedestrian still counts for AP: recall reaches 2/3 with the last prediction
    assert evaluate(pred, gt).category("pedestrian").ap_3d[1] == pytest.approx(26 / 40, abs=1e-12)


def test_frame_with_only_low_scored_predictions_and_no_gt_is_right() -> None:
    result = evaluate(table([(0, "car", CAR, 0.9), (1, "car", CAR, 0.2)]), table([(0, "car", CAR, 1.0)]))
    assert (result.overall.num_frames, result.overall.frames_right) == (2, 2)
    result = evaluate(table([(1, "car", CAR, 0.6)]), table([(0, "car", CAR, 1.0)]))
    assert (result.overall.num_frames, result.overall.frames_right) == (2, 0)


def test_operating_score_and_iou_kind_are_configurable() -> None:
    gt = table([(0, "car", CAR, 1.0)])
    pred = table([(0, "car", at(CAR, z=0.5), 0.4)])  # BEV IoU 1, 3D IoU 0.5
    assert evaluate(pred, gt).category("car").tp == 0  # 0.4 < the default operating score 0.5
    low = EvalConfig(operating_score=0.4, operating_iou={"car": 0.6, **_loose()})
    assert evaluate(pred, gt, low).category("car").tp == 0  # 3D IoU 0.5 < 0.6
    bev = EvalConfig(operating_score=0.4, operating_iou={"car": 0.6, **_loose()}, operating_iou_kind="bev")
    m = evaluate(pred, gt, bev).category("car")
    assert (m.tp, m.mean_iou) == (1, 1.0)


# ---- ranges ---------------------------------------------------------------------------------------


def test_max_range_drops_far_boxes_on_both_sides() -> None:
    gt = table([(0, "car", at(CAR, x=20.0), 1.0), (0, "car", at(CAR, x=60.0), 1.0)])
    pred = table([(0, "car", at(CAR, x=20.0), 0.9), (0, "car", at(CAR, x=-40.0, y=30.0), 0.8)])
    everything = evaluate(pred, gt).category("car")
    assert (everything.num_gt, everything.tp, everything.fp, everything.fn) == (2, 1, 1, 1)
    within = evaluate(pred, gt, EvalConfig(max_range_m=50.0))  # the FP at 50.0 m is kept (<=)
    m = within.category("car")
    assert (m.num_gt, m.num_pred, m.tp, m.fp, m.fn, m.ap_3d) == (1, 2, 1, 1, 0, (1.0, 1.0))
    assert within.to_json()["config"]["max_range_m"] == 50.0


def test_range_breakdown_bins_by_each_box_centre() -> None:
    gt = table(
        [
            (0, "car", at(CAR, x=10.0), 1.0),
            (0, "car", at(CAR, x=0.0, y=-40.0), 1.0),
            (0, "car", at(CAR, x=70.0), 1.0),
        ]
    )
    pred = table([(0, "car", at(CAR, x=10.0), 0.9), (0, "car", at(CAR, x=70.0), 0.9)])
    near, middle, far = evaluate(pred, gt).by_range
    assert [s.name for s in (near, middle, far)] == ["0-30m", "30-50m", "50m+"]
    assert (near.min_range_m, near.max_range_m, far.min_range_m, far.max_range_m) == (0.0, 30.0, 50.0, None)
    assert [(s.num_gt, s.num_pred, s.tp, s.fn) for s in (near, middle, far)] == [
        (1, 1, 1, 0),
        (1, 0, 0, 1),
        (1, 1, 1, 0),
    ]
    assert (near.map_3d, middle.map_3d, far.map_3d) == ((1.0, 1.0), (0.0, 0.0), (1.0, 1.0))
    assert (middle.frames_right, middle.num_frames) == (0, 1)


# ---- inputs and config ----------------------------------------------------------------------------


def test_pandas_input_gives_the_same_result_as_arrow() -> None:
    gt = table([(0, "car", CAR, 1.0), (0, "pedestrian", PED, 1.0)])
    pred = table([(0, "car", at(CAR, x=10.5), 0.9)])
    assert evaluate(pred.to_pandas(), gt.to_pandas()).to_json() == evaluate(pred, gt).to_json()


def test_full_labels_tables_are_accepted() -> None:
    full = labels_table(
        sequence_id="s",
        frame_index=[0, 0],
        timestamp_ns=[5, 5],
        track_id=[1, 2],
        category=["car", "pedestrian"],
        score=[0.9, 0.8],
        boxes=[CAR, PED],
        num_points=[10, 3],
        origin="detected",
    )
    assert evaluate(full, full).overall.map_3d == (1.0, 1.0)


def test_evaluate_rejects_bad_inputs_with_actionable_messages() -> None:
    gt = table([(0, "car", CAR, 1.0)])
    with pytest.raises(EvaluationError, match="predictions: missing column"):
        evaluate(gt.drop_columns(["score"]), gt)
    with pytest.raises(EvaluationError, match="ground truth: unknown category 'tree'"):
        evaluate(gt, table([(0, "tree", CAR, 1.0)]))
    with pytest.raises(EvaluationError, match="row 0 has a box that is not finite"):
        evaluate(table([(0, "car", at(CAR, yaw=math.inf), 0.5)]), gt)
    with pytest.raises(EvaluationError, match=r"score 1\.5"):
        evaluate(table([(0, "car", CAR, 1.5)]), gt)
    with pytest.raises(EvaluationError, match="expected a pyarrow Table or pandas DataFrame"):
        evaluate([1, 2], gt)


def test_config_rejects_inconsistent_settings() -> None:
    with pytest.raises(EvaluationError, match="unknown or repeated"):
        EvalConfig(categories=("car", "tree"))
    with pytest.raises(EvaluationError, match=r"iou_thresholds\['car'\]"):
        EvalConfig(iou_thresholds={"car": (0.0, 0.5)}, categories=("car",))
    with pytest.raises(EvaluationError, match="range_edges_m"):
        EvalConfig(range_edges_m=(50.0, 30.0))
    with pytest.raises(EvaluationError, match="operating_score"):
        EvalConfig(operating_score=2.0)


# ---- reports ------------------------------------------------------------------------------------


def test_json_report_has_stable_keys_and_no_nan() -> None:
    gt = table([(0, "car", CAR, 1.0)])
    data = json.loads(no_nan(evaluate(table([]), gt)))
    assert list(data) == ["format", "config", "overall", "by_range"]
    assert list(data["overall"]) == [
        "name",
        "min_range_m",
        "max_range_m",
        "num_gt",
        "num_pred",
        "map_3d",
        "map_bev",
        "tp",
        "fp",
        "fn",
        "precision",
        "recall",
        "mean_iou",
        "boxes_right",
        "class_errors",
        "boxes_total",
        "box_accuracy",
        "num_frames",
        "frames_right",
        "frame_accuracy",
        "categories",
    ]
    assert [r["name"] for r in data["by_range"]] == ["0-30m", "30-50m", "50m+"]
    assert data["overall"]["categories"]["car"]["ap_bev"] == {"strict": 0.0, "loose": 0.0}


def test_text_table_lists_categories_accuracies_and_ranges() -> None:
    gt = table([(0, "car", CAR, 1.0), (0, "pedestrian", PED, 1.0)])
    pred = table([(0, "car", CAR, 0.9)])
    text = format_table(evaluate(pred, gt))
    lines = text.splitlines()
    assert lines[0] == "fusion evaluation: 1 frames, 2 GT boxes, 1 predictions (all ranges)"
    car = next(line for line in lines if line.startswith("car "))
    assert car.split() == ["car", "0.70/0.50", "1", "1", *["100.00"] * 6, "1.000"]
    truck = next(line for line in lines if line.startswith("truck "))
    assert truck.split() == ["truck", "0.70/0.50", "0", "0", *["-"] * 7]
    assert "box accuracy: 50.00% (1 of 2 boxes right; 0 wrong category, 0 FP, 1 FN)" in lines
    assert "frame accuracy: 0.00% (0 of 1 frames with every box right)" in lines
    assert any(line.startswith("50m+ ") for line in lines)


# ---- load_labels --------------------------------------------------------------------------------


def _labels_file(path: Path, sequence_id: str, n: int) -> None:
    table_ = labels_table(
        sequence_id=sequence_id,
        frame_index=list(range(n)),
        timestamp_ns=list(range(n)),
        track_id=[0] * n,
        category=["car"] * n,
        score=[1.0] * n,
        boxes=[CAR] * n,
        num_points=[1] * n,
        origin="detected",
    )
    write_labels(path, table_, sequence_id)


def test_load_labels_reads_a_file_a_folder_or_a_dataset(tmp_path: Path) -> None:
    _labels_file(tmp_path / "out" / "labels" / "b.parquet", "b", 2)
    _labels_file(tmp_path / "out" / "labels" / "a.parquet", "a", 3)
    (tmp_path / "out" / "sequences.parquet").write_bytes(b"not read")
    # a dataset folder is read once its dataset.json says it is complete (test_cli_eval: refusals)
    (tmp_path / "out" / "dataset.json").write_text('{"schema_version": 1, "sequences": ["a", "b"]}')
    dataset = load_labels(tmp_path / "out")
    assert dataset.column("sequence_id").to_pylist() == ["a"] * 3 + ["b"] * 2
    assert load_labels(tmp_path / "out" / "labels").equals(dataset)
    assert load_labels(tmp_path / "out" / "labels" / "b.parquet").num_rows == 2


def test_load_labels_says_what_to_pass_for_a_wrong_path(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="no such file or folder"):
        load_labels(tmp_path / "missing")
    with pytest.raises(EvaluationError, match=r"holds no \.parquet file"):
        load_labels(tmp_path)


def test_config_round_trips_through_its_json_form() -> None:
    config = EvalConfig(
        categories=("car", "unknown"),
        iou_thresholds={"car": (0.6, 0.4), "unknown": (0.3, 0.1)},
        operating_iou={"car": 0.4, "unknown": 0.1},
        operating_iou_kind="bev",
        max_range_m=60.0,
        range_edges_m=(20.0,),
    )
    again = EvalConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again.to_json() == config.to_json()
    assert (again.iou_thresholds["car"], again.operating_iou["unknown"]) == ((0.6, 0.4), 0.1)
    assert EvalConfig.from_json({"iou_thresholds": {"car": [0.6, 0.4]}}).iou_thresholds["car"] == (0.6, 0.4)
    with pytest.raises(EvaluationError, match=r"unknown key\(s\) \['max_range'\]"):
        EvalConfig.from_json({"max_range": 50})
    with pytest.raises(EvaluationError, match="wrong shape"):
        EvalConfig.from_json({"iou_thresholds": {"car": {"strict": 0.7}}})


def test_ground_truth_needs_no_score_column() -> None:
    gt = table([(0, "car", CAR, 1.0)])
    assert evaluate(gt, gt.drop_columns(["score"])).overall.map_3d == (1.0, 1.0)
