"""AB3DMOT's KITTI 3D MOT protocol (`fusion.evaluation.kitti_mot`) on hand-built sequences whose
counts follow from the devkit's rules, and where those rules differ from py-motmetrics'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusion.evaluation.errors import EvaluationError
from fusion.evaluation.kitti_mot import (
    KittiMotResult,
    KittiObjects,
    evaluate_kitti_mot,
    read_kitti_tracking,
    sample_thresholds,
)

CAR = (1.5, 1.6, 4.0)  # h w l
BOX2D = (500.0, 150.0, 600.0, 220.0)  # 70 px tall


def _row(frame: int, track: int, kind: str = "Car", x: float = 0.0, z: float = 20.0, score: float = 0.5,
         trunc: int = 0, occ: int = 0, box2d: tuple[float, ...] = BOX2D) -> str:  # fmt: skip
    h, w, length = CAR
    return (
        f"{frame} {track} {kind} {trunc} {occ} 0 {' '.join(map(str, box2d))} {h} {w} {length} "
        f"{x} 1.6 {z} 0 {score}"
    )


def _objects(tmp_path: Path, name: str, rows: list[str], with_score: bool) -> KittiObjects:
    path = tmp_path / name
    lines = rows if with_score else [" ".join(r.split()[:17]) for r in rows]
    path.write_text("".join(line + "\n" for line in lines))
    return read_kitti_tracking(path, with_score=with_score)


def _evaluate(
    tmp_path: Path, gt: list[str], pred: list[str], n_frames: int, kitti_class: str = "Car"
) -> KittiMotResult:
    labels = {"0000": _objects(tmp_path, "gt.txt", gt, False)}
    results = {"0000": _objects(tmp_path, "pred.txt", pred, True)}
    return evaluate_kitti_mot(results, labels, {"0000": n_frames}, kitti_class)


def test_perfect_long_track_scores_one_everywhere(tmp_path: Path) -> None:
    gt = [_row(f, 7, z=10.0 + f) for f in range(80)]
    pred = [_row(f, 3, z=10.0 + f) for f in range(80)]
    result = _evaluate(tmp_path, gt, pred, 80)
    assert result.samota == pytest.approx(1.0)
    assert result.best.mota == pytest.approx(1.0)
    assert result.best.motp == pytest.approx(1.0)
    assert (result.best.id_switches, result.best.fp, result.best.fn) == (0, 0, 0)


def test_short_track_reaches_only_one_recall_point_per_tp(tmp_path: Path) -> None:
    # the devkit takes one threshold per TP score: 5 TPs give the recall points 1/40 .. 4/40 only
    gt = [_row(f, 1, z=10.0 + f) for f in range(5)]
    pred = [_row(f, 1, z=10.0 + f) for f in range(5)]
    result = _evaluate(tmp_path, gt, pred, 5)
    assert [p.recall_point for p in result.points] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert result.samota == pytest.approx(4 / 40)


def test_id_switch_only_when_the_gt_was_tracked_the_frame_before(tmp_path: Path) -> None:
    gt = [_row(f, 1, z=10.0 + f) for f in range(6)]
    switched = [_row(f, 1 if f < 3 else 2, z=10.0 + f) for f in range(6)]
    result = _evaluate(tmp_path, gt, switched, 6)
    assert (result.best.id_switches, result.best.fragmentations) == (1, 1)
    assert result.best.mota == pytest.approx(1 - 1 / 6)
    # a missed frame between the two ids: a fragmentation, no id switch (py-motmetrics counts one)
    gap = [_row(f, 1 if f < 3 else 2, z=10.0 + f) for f in range(6) if f != 3]
    result = _evaluate(tmp_path, gt, gap, 6)
    assert (result.best.id_switches, result.best.fragmentations, result.best.fn) == (0, 1, 1)


def test_no_match_carried_over_the_better_box_wins(tmp_path: Path) -> None:
    # frame 1: track 2 overlaps the GT better than track 1 (still overlapping): the devkit re-assigns
    # by cost every frame (py-motmetrics keeps track 1), an id switch, and track 1 is an FP
    gt = [_row(0, 1), _row(1, 1)]
    pred = [_row(0, 1), _row(1, 1, x=0.5), _row(1, 2)]
    result = _evaluate(tmp_path, gt, pred, 2)
    assert (result.best.id_switches, result.best.fp) == (1, 1)


def test_dontcare_small_neighbour_and_truncated_are_ignored(tmp_path: Path) -> None:
    gt = [
        _row(0, 1),
        "0 -1 DontCare -1 -1 -10 100 100 300 300 -1 -1 -1 -1000 -1000 -1000 -10",
        _row(0, 2, kind="Van", x=8.0),
        _row(0, 3, x=-8.0, trunc=1),
    ]
    pred = [
        _row(0, 1),
        _row(0, 5, x=20.0, box2d=(120.0, 120.0, 200.0, 200.0)),  # inside the DontCare region
        _row(0, 6, x=-20.0, box2d=(900.0, 150.0, 950.0, 170.0)),  # 20 px tall
        _row(0, 7, x=8.0),  # on the van: an ignored TP, not an FP
    ]
    result = _evaluate(tmp_path, gt, pred, 1)
    best = result.best
    assert (best.n_gt, best.fp, best.fn, best.ignored_tp) == (1, 0, 0, 1)
    assert best.tp == 2  # the devkit's TP count keeps the ignored TP
    assert best.mota == pytest.approx(1.0)


def test_tracks_are_thresholded_whole_by_their_mean_score(tmp_path: Path) -> None:
    gt = [_row(f, 1, z=10.0 + f) for f in range(60)]
    good = [_row(f, 1, z=10.0 + f, score=0.75) for f in range(60)]
    # a false track far from the GT: one high-scoring row cannot lift its mean above the true track's
    false = [_row(f, 9, x=30.0, z=10.0 + f, score=1.0 if f == 0 else 0.25) for f in range(10)]
    result = _evaluate(tmp_path, gt, good + false, 60)
    assert result.best.fp == 0
    assert result.best.mota == pytest.approx(1.0)
    assert result.best_threshold == pytest.approx(0.75)


def test_sample_thresholds_walk_down_the_scores() -> None:
    # num_gt 80, 80 distinct scores: a recall point per 2 scores, the point r = 0 dropped
    scores = np.linspace(1.0, 0.2, 80)
    points = sample_thresholds(scores, 80)
    assert len(points) == 40
    assert points[0][0] == pytest.approx(scores[1])
    assert points[0][1] == pytest.approx(0.025)
    assert points[-1][1] == pytest.approx(1.0)
    assert sample_thresholds(scores, 0) == []


def test_duplicate_track_id_in_a_frame_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="twice in one frame"):
        _evaluate(tmp_path, [_row(0, 1)], [_row(0, 4), _row(0, 4, x=5.0)], 1)


def test_malformed_result_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "0000.txt"
    path.write_text(_row(0, 1) + "\n0 1 Car 0 0\n")
    with pytest.raises(EvaluationError, match=r"0000\.txt:2: 5 columns"):
        read_kitti_tracking(path, with_score=True)
    assert len(read_kitti_tracking(tmp_path / "missing.txt", with_score=True)) == 0
    with pytest.raises(EvaluationError, match="no such label file"):
        read_kitti_tracking(tmp_path / "missing.txt")
