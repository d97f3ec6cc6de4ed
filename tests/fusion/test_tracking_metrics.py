"""evaluate_tracking on hand-made sequences with answers worked out by hand, and against py-motmetrics."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.evaluation import (
    EvaluationError,
    TrackingConfig,
    evaluate_tracking,
    format_tracking_table,
    iou_3d,
    kitti_tracking_labels,
    recall_thresholds,
)

CAR = (4.0, 2.0, 1.5)
Row = tuple[str, int, int, float, float]  # sequence, frame, track, x, y


def table(
    rows: Sequence[Row], *, score: float | Sequence[float] = 0.9, category: str = "car"
) -> pd.DataFrame:
    scores = [score] * len(rows) if isinstance(score, float) else list(score)
    return pd.DataFrame(
        {
            "sequence_id": pd.Series([r[0] for r in rows], dtype=str),
            "frame_index": pd.Series([r[1] for r in rows], dtype="int64"),
            "track_id": pd.Series([r[2] for r in rows], dtype="int64"),
            "category": pd.Series([category] * len(rows), dtype=str),
            "score": pd.Series(scores, dtype="float64"),
            "x": pd.Series([r[3] for r in rows], dtype="float64"),
            "y": pd.Series([r[4] for r in rows], dtype="float64"),
            "z": 0.0,
            "length": CAR[0],
            "width": CAR[1],
            "height": CAR[2],
            "yaw": 0.0,
        }
    )


def track(track_id: int, frames: Sequence[int], *, y: float = 0.0, seq: str = "s") -> list[Row]:
    """A car driving along +x at 1 m a frame, on the line y."""
    return [(seq, f, track_id, float(f), y) for f in frames]


CARS = TrackingConfig(categories=("car",))
TEN = range(10)


def test_perfect_tracks_score_one_everywhere() -> None:
    gt = table(track(1, TEN) + track(2, TEN, y=10.0))
    pred = table(track(7, TEN) + track(8, TEN, y=10.0))
    m = evaluate_tracking(pred, gt, CARS).category("car")
    assert (m.clear.tp, m.clear.fp, m.clear.fn, m.clear.id_switches, m.clear.fragmentations) == (
        20,
        0,
        0,
        0,
        0,
    )
    assert m.clear.mota == 1.0
    assert m.clear.motp == pytest.approx(1.0)
    assert (m.idf1, m.idp, m.idr) == (1.0, 1.0, 1.0)
    assert m.hota == pytest.approx(1.0) and m.deta == pytest.approx(1.0) and m.assa == pytest.approx(1.0)
    assert m.samota == pytest.approx(1.0) and m.amota == pytest.approx(1.0) and m.amotp == pytest.approx(1.0)
    assert (m.num_gt_tracks, m.num_pred_tracks) == (2, 2)


def test_one_id_switch_in_the_middle() -> None:
    gt = table(track(1, TEN))
    pred = table(track(1, range(5)) + track(2, range(5, 10)))
    m = evaluate_tracking(pred, gt, CARS).category("car")
    assert (m.clear.fp, m.clear.fn, m.clear.id_switches, m.clear.fragmentations) == (0, 0, 1, 0)
    assert m.clear.mota == pytest.approx(0.9)
    # best identity pairing keeps 5 of 10 frames: IDF1 = 2 * 5 / (10 + 10)
    assert m.idf1 == pytest.approx(0.5)
    # HOTA: DetA 1; each pair has A = 5 / (10 + 5 - 5) = 0.5, so AssA 0.5
    assert m.deta == pytest.approx(1.0) and m.assa == pytest.approx(0.5)
    assert m.hota == pytest.approx(math.sqrt(0.5))


def test_one_missed_frame_is_one_miss_and_one_fragmentation() -> None:
    gt = table(track(1, TEN))
    pred = table(track(1, [f for f in TEN if f != 5]))
    m = evaluate_tracking(pred, gt, CARS).category("car")
    assert (m.clear.tp, m.clear.fp, m.clear.fn, m.clear.id_switches, m.clear.fragmentations) == (
        9,
        0,
        1,
        0,
        1,
    )
    assert m.clear.mota == pytest.approx(0.9)
    assert m.idf1 == pytest.approx(18 / 19)


def test_a_false_track_adds_its_boxes_as_false_positives() -> None:
    gt = table(track(1, TEN))
    pred = table(track(1, TEN) + track(2, range(3), y=30.0))
    m = evaluate_tracking(pred, gt, CARS).category("car")
    assert (m.clear.tp, m.clear.fp, m.clear.fn, m.clear.id_switches) == (10, 3, 0, 0)
    assert m.clear.mota == pytest.approx(0.7)
    assert m.idf1 == pytest.approx(20 / 23)
    assert m.clear.precision == pytest.approx(10 / 13)


def test_switch_after_a_gap_counts_as_in_motmetrics() -> None:
    gt = table(track(1, TEN))
    pred = table(track(1, range(4)) + track(2, range(6, 10)))
    m = evaluate_tracking(pred, gt, CARS).category("car")
    assert (m.clear.fn, m.clear.id_switches, m.clear.fragmentations) == (2, 1, 1)


def test_low_score_false_track_is_cut_by_the_recall_sweep() -> None:
    gt = table(track(1, TEN))
    pred = table(track(1, TEN) + track(2, TEN, y=30.0), score=[0.9] * 10 + [0.2] * 10)
    m = evaluate_tracking(pred, gt, CARS).category("car")
    assert m.clear.fp == 10 and m.clear.mota == pytest.approx(0.0)
    assert m.samota == pytest.approx(1.0) and m.amota == pytest.approx(1.0)
    assert m.best_threshold == pytest.approx(0.9)
    assert m.best is not None and (m.best.fp, m.best.mota) == (0, 1.0)


def test_samota_of_half_recall_by_hand() -> None:
    # n = 20 GT boxes, the prediction covers one of the two cars: recall 0.5, points r = 1/40 .. 20/40.
    # FN = 10 at each: sMOTA_r = min(1, 10 / (20 r)) = 1; MOTA_r = 0.5; the 20 unreachable points add 0.
    gt = table(track(1, TEN) + track(2, TEN, y=10.0))
    pred = table(track(5, TEN))
    m = evaluate_tracking(pred, gt, CARS).category("car")
    assert m.samota == pytest.approx(0.5)
    assert m.amota == pytest.approx(0.25)
    assert m.clear.mota == pytest.approx(0.5)


def test_recall_thresholds_pick_the_first_score_reaching_each_point() -> None:
    assert recall_thresholds([0.9, 0.5, 0.7, 0.3], num_gt=8, num_points=4) == [
        (0.25, 0.7),
        (0.5, 0.3),
    ]
    assert recall_thresholds([], num_gt=3) == []
    assert recall_thresholds([0.4], num_gt=0) == []


def test_empty_sides_give_none_or_zero_never_nan() -> None:
    empty = table([])
    gt = table(track(1, range(4)))
    both = evaluate_tracking(empty, empty, CARS)
    m = both.category("car")
    assert (m.clear.mota, m.clear.motp, m.idf1, m.hota, m.samota, m.amota) == (None,) * 6
    missed = evaluate_tracking(empty, gt, CARS).category("car")
    assert (missed.clear.fn, missed.clear.mota, missed.idf1, missed.hota, missed.samota) == (
        4,
        0.0,
        0.0,
        0.0,
        0.0,
    )
    assert missed.clear.motp is None and missed.best is None
    ghost = evaluate_tracking(gt, empty, CARS).category("car")
    assert (ghost.clear.fp, ghost.clear.mota, ghost.idf1, ghost.hota, ghost.samota) == (
        4,
        None,
        0.0,
        0.0,
        None,
    )
    for result in (both, evaluate_tracking(empty, gt, CARS), evaluate_tracking(gt, empty, CARS)):
        json.dumps(result.to_json(), allow_nan=False)


def test_ignored_gt_and_ignorable_predictions_are_neither_tp_nor_fp() -> None:
    gt = table(track(1, TEN) + track(2, TEN, y=10.0))
    gt["ignore"] = [False] * 10 + [True] * 10  # car 2 is a "Van"
    pred = table(
        track(1, TEN) + track(2, TEN, y=10.0) + track(3, range(2), y=40.0) + track(4, range(3), y=-40.0)
    )
    pred["ignore"] = [True] * 10 + [False] * 10 + [True] * 2 + [False] * 3  # track 3: "DontCare"
    m = evaluate_tracking(pred, gt, CARS).category("car")
    # track 1 (flagged, but matched to real GT) stays a TP; track 2 is on the ignored car; track 3 is
    # flagged and unmatched; track 4 is a plain FP.
    assert (m.clear.num_gt, m.clear.num_pred, m.clear.tp, m.clear.fp, m.clear.fn) == (10, 13, 10, 3, 0)
    assert (m.num_ignored_gt, m.num_ignored_pred) == (10, 12)


def test_same_track_id_in_two_sequences_is_two_tracks() -> None:
    gt = table(track(1, TEN, seq="a") + track(1, TEN, seq="b"))
    pred = table(track(3, TEN, seq="a") + track(3, TEN, seq="b"))
    result = evaluate_tracking(pred, gt, CARS)
    m = result.category("car")
    assert (m.clear.id_switches, m.idf1, m.num_gt_tracks, m.num_pred_tracks) == (0, 1.0, 2, 2)
    assert (result.num_sequences, result.num_frames) == (2, 20)


def test_distance_matching_reports_motp_in_metres() -> None:
    gt = table(track(1, TEN))
    pred = table([(s, f, t, x + 0.5, y) for s, f, t, x, y in track(1, TEN)])
    config = TrackingConfig(categories=("car",), match="distance", distance_m=2.0)
    m = evaluate_tracking(pred, gt, config).category("car")
    assert (m.clear.tp, m.clear.fp, m.clear.fn) == (10, 0, 0)
    assert m.clear.motp == pytest.approx(0.5)
    # HOTA similarity 1 - 0.5 / 2 = 0.75: matched for alpha <= 0.75 (15 of 19 alphas)
    assert m.deta == pytest.approx(15 / 19)
    far = table([(s, f, t, x + 2.5, y) for s, f, t, x, y in track(1, TEN)])
    assert evaluate_tracking(far, gt, config).category("car").clear.tp == 0


def test_categories_are_separate_and_overall_sums_them() -> None:
    gt = pd.concat([table(track(1, TEN)), table(track(2, TEN, y=10.0), category="pedestrian")])
    pred = pd.concat([table(track(1, TEN)), table(track(2, TEN, y=10.0), category="cyclist")])
    result = evaluate_tracking(pred, gt, TrackingConfig(categories=("car", "pedestrian", "cyclist")))
    assert result.category("car").clear.mota == 1.0
    assert (result.category("pedestrian").clear.fn, result.category("cyclist").clear.fp) == (10, 10)
    overall = result.overall
    assert (overall.clear.tp, overall.clear.fp, overall.clear.fn) == (10, 10, 10)
    assert overall.clear.mota == pytest.approx(0.0)
    # sAMOTA overall: the mean over the categories with GT (car 1, pedestrian 0)
    assert overall.samota == pytest.approx(0.5)
    text = format_tracking_table(result)
    assert "overall" in text and "pedestrian" in text and "best MOTA" in text


def test_bad_inputs_raise_actionable_errors() -> None:
    gt = table(track(1, range(3)))
    twice = table(track(1, range(3)) + track(1, [1]))
    with pytest.raises(EvaluationError, match="two boxes in one frame"):
        evaluate_tracking(twice, gt, CARS)
    with pytest.raises(EvaluationError, match=r"missing column.*track_id"):
        evaluate_tracking(gt.drop(columns=["track_id"]), gt, CARS)
    with pytest.raises(EvaluationError, match=r"missing column.*score"):
        evaluate_tracking(gt.drop(columns=["score"]), gt, CARS)
    with pytest.raises(EvaluationError, match="iou_threshold"):
        TrackingConfig(iou_threshold=0.0)
    with pytest.raises(EvaluationError, match="unknown or repeated"):
        TrackingConfig(categories=("car", "car"))
    with pytest.raises(EvaluationError, match="pyarrow Table or pandas DataFrame"):
        evaluate_tracking([], gt, CARS)


def test_config_round_trips_through_json() -> None:
    config = TrackingConfig(categories=("pedestrian",), match="distance", distance_m=2.0, recall_sweep=False)
    assert TrackingConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(EvaluationError, match="unknown key"):
        TrackingConfig.from_json({"iou": 0.5})


def test_kitti_ground_truth_against_itself_is_perfect(datasets: Path) -> None:
    root = datasets / "ab3dmot"
    gt = kitti_tracking_labels(
        root / "scripts" / "KITTI" / "label" / "0000.txt",
        root / "data" / "KITTI" / "mini" / "training" / "calib" / "0000.txt",
    )
    result = evaluate_tracking(gt, gt, TrackingConfig(categories=("car", "pedestrian", "cyclist")))
    overall = result.overall
    evaluated = sum(c in ("car", "pedestrian", "cyclist") for c in gt.column("category").to_pylist())
    assert overall.clear.num_gt == overall.clear.tp == evaluated > 0
    assert (overall.clear.fp, overall.clear.fn, overall.clear.id_switches) == (0, 0, 0)
    assert overall.clear.mota == 1.0 and overall.idf1 == 1.0
    assert overall.samota == pytest.approx(1.0) and overall.hota == pytest.approx(1.0)
    assert result.num_frames == 154


def test_results_are_deterministic_and_row_order_free() -> None:
    rng = np.random.default_rng(3)
    gt, pred = _random_scene(rng, n_frames=30, n_objects=6)
    a = evaluate_tracking(pred, gt, CARS).to_json()
    b = evaluate_tracking(pred.sample(frac=1.0, random_state=1), gt.sample(frac=1.0, random_state=2), CARS)
    assert a == b.to_json()


# ---- against py-motmetrics ----------------------------------------------------------------------


def _random_scene(
    rng: np.random.Generator, n_frames: int, n_objects: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Objects on crossing straight lines; predictions with noise, misses, id swaps and clutter."""
    start = rng.uniform(-15, 15, (n_objects, 2))
    velocity = rng.uniform(-0.6, 0.6, (n_objects, 2))
    gt_rows: list[Row] = []
    pred_rows: list[Row] = []
    scores: list[float] = []
    pred_id = np.arange(n_objects) + 100
    next_id = 1000
    for f in range(n_frames):
        pos = start + velocity * f
        for k in range(n_objects):
            if rng.random() < 0.1:
                continue  # object absent this frame
            gt_rows.append(("s", f, k, float(pos[k, 0]), float(pos[k, 1])))
            if rng.random() < 0.15:
                continue  # missed
            if rng.random() < 0.03:
                pred_id[k] = next_id  # the tracker loses the object and starts a new track
                next_id += 1
            noise = rng.normal(0, 0.4, 2)
            pred_rows.append(
                ("s", f, int(pred_id[k]), float(pos[k, 0] + noise[0]), float(pos[k, 1] + noise[1]))
            )
            scores.append(float(rng.uniform(0.3, 1.0)))
        for _ in range(rng.poisson(1.0)):
            xy = rng.uniform(-20, 20, 2)
            pred_rows.append(("s", f, next_id, float(xy[0]), float(xy[1])))
            scores.append(float(rng.uniform(0.0, 0.5)))
            next_id += 1
    return table(gt_rows), table(pred_rows, score=scores)


@pytest.mark.parametrize(("match", "seed"), [("iou_3d", 0), ("iou_3d", 1), ("distance", 2), ("bev_iou", 3)])
def test_clear_mot_and_idf1_equal_motmetrics(match: str, seed: int) -> None:
    mm = pytest.importorskip("motmetrics")
    rng = np.random.default_rng(seed)
    gt, pred = _random_scene(rng, n_frames=60, n_objects=8)
    config = TrackingConfig(categories=("car",), match=match, iou_threshold=0.25, distance_m=1.0)  # type: ignore[arg-type]
    ours = evaluate_tracking(pred, gt, config).category("car")

    acc = mm.MOTAccumulator(auto_id=False)
    for f in sorted(set(gt.frame_index) | set(pred.frame_index)):
        g = gt[gt.frame_index == f]
        p = pred[pred.frame_index == f]
        gb = g[["x", "y", "z", "length", "width", "height", "yaw"]].to_numpy()
        pb = p[["x", "y", "z", "length", "width", "height", "yaw"]].to_numpy()
        if match == "distance":
            d = np.hypot(gb[:, None, 0] - pb[None, :, 0], gb[:, None, 1] - pb[None, :, 1])
            d = np.where(d <= 1.0, d, np.nan)
        else:
            iou = iou_3d(gb, pb) if match == "iou_3d" else _bev(gb, pb)
            d = np.where((iou >= 0.25) & (iou > 0), 1.0 - iou, np.nan)
        acc.update(g.track_id.tolist(), p.track_id.tolist(), d, frameid=int(f))
    names = [
        *("num_switches", "num_fragmentations", "num_false_positives", "num_misses"),
        *("mota", "motp", "idf1", "num_detections"),
    ]
    summary = mm.metrics.create().compute(acc, metrics=names).iloc[0]

    assert ours.clear.id_switches == summary["num_switches"]
    assert ours.clear.fragmentations == summary["num_fragmentations"]
    assert ours.clear.fp == summary["num_false_positives"]
    assert ours.clear.fn == summary["num_misses"]
    assert ours.clear.tp == summary["num_detections"]
    assert ours.clear.mota == pytest.approx(summary["mota"], abs=1e-12)
    expected_motp = summary["motp"] if match == "distance" else 1.0 - summary["motp"]
    assert ours.clear.motp == pytest.approx(expected_motp, abs=1e-12)
    assert ours.idf1 == pytest.approx(summary["idf1"], abs=1e-12)
    assert ours.clear.id_switches > 0 and ours.clear.fragmentations > 0  # the scene exercises both


def _bev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from fusion.evaluation import bev_iou

    return bev_iou(a, b)
