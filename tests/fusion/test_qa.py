"""`fusion qa`: pre-labels against reviewed labels. Accuracy is `fusion eval`'s (same matching),
edits and reviewer time are counted exactly on hand-made corrections."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from exporters.labels import labels_table
from fusion.cli import main
from fusion.evaluation import EvalConfig, EvaluationError, evaluate, load_labels
from fusion.evaluation.qa import CostModel, QAConfig, compare_reviewed, format_qa_table

REPO = Path(__file__).resolve().parents[2]
TRUTH = REPO / "data_samples" / "sim_drive.labels.parquet"


def _set(table: pa.Table, mask: np.ndarray, **changes: np.ndarray) -> pa.Table:
    for name, values in changes.items():
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        column = table.column(name).to_numpy(zero_copy_only=False).copy()
        column[mask] = values
        table = table.set_column(index, field, pa.array(column, type=field.type))
    return table


@pytest.fixture(scope="module")
def truth() -> pa.Table:
    return load_labels(TRUTH)


@pytest.fixture(scope="module")
def prelabels(truth: pa.Table) -> pa.Table:
    """The sample's ground truth spoiled as a detector would: jittered centres, sizes and yaws,
    scores spread over 0..1, far boxes dropped, a few false boxes and category errors."""
    rng = np.random.default_rng(7)
    n = truth.num_rows
    keep = rng.random(n) > np.clip(np.hypot(truth["x"].to_numpy(), truth["y"].to_numpy()) / 80.0, 0, 0.9)
    t = truth.filter(pa.array(keep))
    m = t.num_rows
    every = np.ones(m, dtype=bool)
    t = _set(
        t,
        every,
        x=t["x"].to_numpy() + rng.normal(0, 0.3, m),
        y=t["y"].to_numpy() + rng.normal(0, 0.3, m),
        length=t["length"].to_numpy() * rng.uniform(0.8, 1.1, m),
        yaw=t["yaw"].to_numpy() + rng.normal(0, 0.1, m),
        score=rng.uniform(0.2, 1.0, m).astype(np.float32),
    )
    wrong_class = rng.random(m) < 0.03
    categories = np.asarray(t["category"].to_pylist(), dtype=object)
    categories[wrong_class] = np.where(categories[wrong_class] == "car", "truck", "car")
    t = _set(t, every, category=categories)
    fake = t.slice(0, 20)
    fake = _set(fake, np.ones(20, bool), x=fake["x"].to_numpy() + 15.0, track_id=np.arange(9000, 9020))
    return pa.concat_tables([t, fake])


@pytest.mark.parametrize("iou", [None, 0.3, 0.5, 0.7])
def test_box_and_frame_accuracy_are_evals_at_the_same_iou(
    prelabels: pa.Table, truth: pa.Table, iou: float | None
) -> None:
    config = QAConfig() if iou is None else QAConfig().with_iou(iou)
    qa = compare_reviewed(prelabels, truth, config).overall
    ev = evaluate(prelabels, truth, config.eval).overall
    assert qa.box_accuracy == ev.box_accuracy
    assert qa.frame_accuracy == ev.frame_accuracy
    assert (qa.boxes_right, qa.boxes_total, qa.frames_right) == (
        ev.boxes_right,
        ev.boxes_total,
        ev.frames_right,
    )
    assert 0.05 < qa.box_accuracy < 0.95  # a realistic mix, not a trivial 0 or 1


def _hundred_cars() -> pa.Table:
    """One frame of 100 cars on a 10 x 10 grid, 8 m by 5 m apart."""
    x = np.repeat(np.arange(10) * 8.0, 10)
    y = np.tile(np.arange(10) * 5.0, 10)
    boxes = np.stack(
        [x, y, np.zeros(100), np.full(100, 4.5), np.full(100, 1.9), np.full(100, 1.5), np.zeros(100)], 1
    )
    return labels_table(
        sequence_id="hand",
        frame_index=np.zeros(100, np.int32),
        timestamp_ns=np.zeros(100, np.int64),
        track_id=np.arange(100),
        category=np.full(100, "car"),
        score=np.full(100, 0.9, np.float32),
        boxes=boxes,
        num_points=np.full(100, 50, np.int32),
        origin="detected",
    )


def test_one_frame_of_100_boxes_with_1_wrong_is_99_percent_boxes_and_0_percent_frames() -> None:
    reviewed = _hundred_cars()
    pre = _set(reviewed, np.arange(100) == 42, x=np.array([200.0]))  # one box far off its object
    result = compare_reviewed(pre, reviewed, QAConfig().with_iou(0.5))
    # the wrong pre-label is a false box and its object a missed one: 99 right of 101
    assert result.overall.boxes_right == 99 and result.overall.boxes_total == 101
    pre = _set(reviewed, np.arange(100) == 42, category=np.array(["truck"], dtype=object))
    result = compare_reviewed(pre, reviewed, QAConfig().with_iou(0.5))
    assert result.overall.box_accuracy == pytest.approx(0.99)  # a wrong category: 99 of 100
    assert result.overall.frame_accuracy == 0.0
    assert result.overall.soft_accuracy == pytest.approx(1.0)
    assert result.overall.relabelled == 1


def test_edits_are_counted_one_by_one() -> None:
    reviewed = _hundred_cars()
    idx = np.arange(100)
    pre = _set(reviewed, idx == 3, x=np.array([0.5]))  # centre 0.5 m off: adjusted
    pre = _set(pre, idx == 4, length=np.array([4.0]))  # 0.5 m shorter: adjusted
    pre = _set(pre, idx == 5, x=np.array([0.03]), yaw=np.array([np.pi]))  # heading flipped: adjusted
    pre = _set(pre, idx == 6, category=np.array(["truck"], dtype=object))  # relabelled
    pre = _set(pre, idx == 7, x=np.array([300.0]))  # deleted, and its object added
    pre = pre.filter(pa.array(idx != 8))  # object 8 added
    pre = _set(pre, np.isin(pre["track_id"].to_numpy(), [10, 11]), track_id=np.array([11, 10]))
    r = compare_reviewed(pre, reviewed, QAConfig()).overall
    assert (r.adjusted, r.relabelled, r.deleted, r.added) == (3, 1, 1, 2)
    assert r.unchanged == 98 - 3  # 99 pre-labels, 98 paired (7 deleted), 3 of them adjusted
    # one frame only: ids can change only between frames
    assert r.identity_changes == 0
    cost = CostModel()
    assert r.time_with_s == pytest.approx(
        cost.verify_s * r.unchanged + cost.adjust_s * 3 + cost.relabel_s + cost.delete_s + cost.draw_s * 2
    )
    assert r.time_without_s == cost.draw_s * 100
    assert r.saved == pytest.approx(1 - r.time_with_s / r.time_without_s)


def test_an_id_swap_costs_one_identity_fix_on_each_track(truth: pa.Table) -> None:
    frames = truth["frame_index"].to_numpy()
    ids = truth["track_id"].to_numpy()
    a, b = 1, 7
    assert {9, 10} <= set(frames[ids == a]) and {9, 10} <= set(frames[ids == b])
    swapped = np.where((frames >= 10) & (ids == a), b, np.where((frames >= 10) & (ids == b), a, ids))
    pre = _set(truth, np.ones(truth.num_rows, bool), track_id=swapped)
    r = compare_reviewed(pre, truth, QAConfig(eval=EvalConfig(operating_score=0.0))).overall
    assert r.identity_changes == 2
    assert (r.adjusted, r.deleted, r.added) == (0, 0, 0)


def test_per_sequence_rows_add_up_to_the_overall(prelabels: pa.Table, truth: pa.Table) -> None:
    def renamed(table: pa.Table, mask: np.ndarray) -> pa.Table:
        return _set(table, mask, sequence_id=np.array(["second"] * int(mask.sum()), dtype=object))

    pre = renamed(prelabels, prelabels["frame_index"].to_numpy() >= 15)
    rev = renamed(truth, truth["frame_index"].to_numpy() >= 15)
    result = compare_reviewed(pre, rev)
    assert [s.name for s in result.sequences] == ["second", "sim_drive"]
    for key in ("frames", "reviewed", "boxes_right", "boxes_total", "added", "deleted", "adjusted"):
        assert sum(getattr(s, key) for s in result.sequences) == getattr(result.overall, key)
    assert result.overall.box_accuracy == compare_reviewed(prelabels, truth).overall.box_accuracy
    assert "second" in format_qa_table(result) and "all" in format_qa_table(result)


def test_cli_qa_json_table_and_plot(
    tmp_path: Path, prelabels: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    pre_file = tmp_path / "pre.parquet"
    pq.write_table(prelabels, pre_file)
    args = ["--prelabels", str(pre_file), "--reviewed", str(TRUTH), "--iou", "0.5"]
    assert main(["qa", *args, "--json", "--plot", str(tmp_path / "iou.png")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert main(["eval", "--pred", str(pre_file), "--gt", str(TRUTH), "--iou", "0.5", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)["overall"]
    assert doc["format"] == "fusion.qa/1"
    assert doc["overall"]["box_accuracy"] == ev["box_accuracy"]
    assert doc["overall"]["frame_accuracy"] == ev["frame_accuracy"]
    assert doc["sequences"]["sim_drive"]["reviewed"] == 1372
    image = Image.open(tmp_path / "iou.png")
    assert image.size == (700, 400)
    assert len(np.unique(np.asarray(image.convert("L")))) > 20  # bars, axes and text drawn
    assert main(["qa", *args]) == 0
    text = capsys.readouterr().out
    assert "sim_drive" in text and "time model" in text


def test_cli_qa_plot_is_readable_by_the_team_and_names_its_thresholds(
    tmp_path: Path, prelabels: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    pre_file = tmp_path / "pre.parquet"
    pq.write_table(prelabels, pre_file)
    plot = tmp_path / "iou.png"
    umask = os.umask(0o022)
    try:
        assert main(["qa", "--prelabels", str(pre_file), "--reviewed", str(TRUTH), "--plot", str(plot)]) == 0
    finally:
        os.umask(umask)
    capsys.readouterr()
    assert stat.S_IMODE(plot.stat().st_mode) == 0o644  # as every other output; was 0600 (mkstemp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iou.png", "pre.parquet"]  # no temporary left
    pixels = np.asarray(Image.open(plot).convert("RGB"))
    # the two dashed threshold lines carry a legend: its text pixels sit in the empty upper-left corner
    corner = pixels[30:90, 80:330]
    assert (corner.min(axis=-1) < 128).sum() > 100


def test_cost_model_and_tolerances_come_from_toml(
    tmp_path: Path, prelabels: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    pre_file = tmp_path / "pre.parquet"
    pq.write_table(prelabels, pre_file)
    config = tmp_path / "qa.toml"
    config.write_text("[qa]\nedit_iou = 0.2\n[qa.cost]\ndraw_s = 60\n")
    args = ["qa", "--prelabels", str(pre_file), "--reviewed", str(TRUTH), "--json", "--config", str(config)]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["cost"]["draw_s"] == 60 and doc["config"]["edit_iou"] == 0.2
    assert doc["overall"]["time_without_s"] == 60 * 1372
    config.write_text("[qa.cost]\ndraw_seconds = 60\n")
    assert main(args) == 2
    assert "unknown key(s) ['draw_seconds']" in capsys.readouterr().err


def test_cli_qa_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qa"]) == 2
    assert "--prelabels OUT --reviewed REVIEWED, or --flags OUT" in capsys.readouterr().err
    assert main(["qa", "--prelabels", str(TRUTH)]) == 2
    assert "go together" in capsys.readouterr().err
    assert main(["qa", "--prelabels", str(tmp_path / "none"), "--reviewed", str(TRUTH)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0]
    args = [
        "qa",
        "--prelabels",
        str(TRUTH),
        "--reviewed",
        str(TRUTH),
        "--plot",
        str(tmp_path / "no" / "x.png"),
    ]
    assert main(args) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    args[-1] = str(tmp_path / "iou.txt")  # a PNG was written under this name
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the plot is a PNG; give --plot a name ending in .png" in err[0]
    assert not (tmp_path / "iou.txt").exists()
    with pytest.raises(EvaluationError, match="edit_iou"):
        QAConfig(edit_iou=0.0)
    with pytest.raises(EvaluationError, match=r"cost\.draw_s"):
        CostModel(draw_s=-1.0)


def test_perfect_and_empty_pre_labels(truth: pa.Table) -> None:
    perfect = compare_reviewed(truth, truth).overall
    assert (perfect.box_accuracy, perfect.frame_accuracy, perfect.soft_accuracy) == (1.0, 1.0, 1.0)
    assert perfect.unchanged == truth.num_rows and perfect.adjusted == perfect.added == perfect.deleted == 0
    assert perfect.time_with_s == CostModel().verify_s * truth.num_rows
    empty = compare_reviewed(truth.slice(0, 0), truth).overall
    assert empty.box_accuracy == 0.0 and empty.added == truth.num_rows and empty.saved == 0.0
