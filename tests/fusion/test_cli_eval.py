"""`fusion eval` through the command line: tables, JSON, ground truth in every supported format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fusion.cli import main

REPO = Path(__file__).resolve().parents[2]
TRUTH = REPO / "data_samples" / "sim_drive.labels.parquet"


def test_ground_truth_against_itself_is_perfect_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--pred", str(TRUTH), "--gt", str(TRUTH), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "NaN" not in json.dumps(doc)
    overall = doc["overall"]
    assert (overall["num_gt"], overall["num_pred"], overall["fp"], overall["fn"]) == (1372, 1372, 0, 0)
    assert overall["map_3d"] == overall["map_bev"] == {"loose": 1.0, "strict": 1.0}
    assert overall["box_accuracy"] == 1.0 and overall["frame_accuracy"] == 1.0


def test_missing_predictions_lower_recall_and_frame_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = pq.read_table(TRUTH)
    pred = table.filter(pc.not_equal(table["frame_index"], 5))  # one frame's boxes missed
    pq.write_table(pred, tmp_path / "pred.parquet")
    assert main(["eval", "--pred", str(tmp_path / "pred.parquet"), "--gt", str(TRUTH)]) == 0
    out = capsys.readouterr().out
    assert "frame accuracy: 96.67% (29 of 30 frames" in out


def test_max_range_filters_both_sides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--pred", str(TRUTH), "--gt", str(TRUTH), "--max-range", "30"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "fusion evaluation: 30 frames, 501 GT boxes, 501 predictions (within 30 m)"


def test_kitti_label_file_as_ground_truth(datasets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = datasets / "kitti_object_vis/data/object/training"
    label, calib = root / "label_2/000000.txt", root / "calib/000000.txt"
    assert main(["eval", "--pred", str(TRUTH), "--gt", str(label), "--gt-calib", str(calib), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "NaN" not in json.dumps(doc)


def test_kitti_label_without_calibration_is_a_one_line_error(
    datasets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    label = datasets / "kitti_object_vis/data/object/training/label_2/000000.txt"
    assert main(["eval", "--pred", str(TRUTH), "--gt", str(label)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gt-calib" in err[0]


def test_tracking_metrics_of_a_track_split_in_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Renumbering one car's track from frame 15 on is exactly one ID switch."""
    table = pq.read_table(TRUTH)
    df = table.to_pandas()
    car = df[df.category == "car"].track_id.iloc[0]
    late = (df.track_id == car) & (df.frame_index >= 15)
    df.loc[late, "track_id"] = df.track_id.max() + 1
    column = table.schema.get_field_index("track_id")
    renumbered = table.set_column(column, table.schema.field(column), pa.array(df.track_id, pa.int64()))
    pq.write_table(renumbered, tmp_path / "pred.parquet")  # keeps fusion's schema metadata
    assert (
        main(["eval", "--tracking", "--pred", str(tmp_path / "pred.parquet"), "--gt", str(TRUTH), "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert "NaN" not in json.dumps(doc)
    car_metrics = doc["categories"]["car"]
    assert (car_metrics["id_switches"], car_metrics["fp"], car_metrics["fn"]) == (1, 0, 0)
    assert doc["overall"]["id_switches"] == 1
    assert car_metrics["idf1"] < 1.0 and car_metrics["mota"] == pytest.approx(1 - 1 / car_metrics["num_gt"])


def test_tracking_max_range_drops_far_rows_on_both_sides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tracks predicted within 30 m only: perfect within 30 m (--max-range or the TOML's [tracking]
    table), every farther GT box a miss over all ranges. --max-range was ignored with --tracking."""
    table = pq.read_table(TRUTH)
    near = pc.less_equal(
        pc.sqrt(pc.add(pc.multiply(table["x"], table["x"]), pc.multiply(table["y"], table["y"]))), 30.0
    )
    pq.write_table(table.filter(near), tmp_path / "pred.parquet")
    (tmp_path / "eval.toml").write_text("[tracking]\nmax_range_m = 30.0\n")
    common = ["eval", "--tracking", "--pred", str(tmp_path / "pred.parquet"), "--gt", str(TRUTH)]
    docs = []
    for extra in (["--max-range", "30"], ["--config", str(tmp_path / "eval.toml")], []):
        assert main([*common, *extra, "--json"]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    within, from_toml, everywhere = (d["overall"] for d in docs)
    assert within == from_toml
    assert (within["fn"], within["fp"], within["id_switches"], within["mota"]) == (0, 0, 0, 1.0)
    assert everywhere["fn"] == everywhere["num_gt"] - within["num_gt"] > 0
    assert main([*common, "--max-range", "30"]) == 0
    assert "within 30 m" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tracking", "--score", "0.5"], "--score sets the detection operating point"),
        (["--match", "distance"], "--match pairs tracks; give it with --tracking"),
        (["--tracking", "--config", "EVAL_TOML"], "no [tracking] table"),
        (["--tracking", "--config", "BAD_TOML"], "max_range_m"),
    ],
)
def test_options_that_do_not_apply_to_the_evaluation_asked_for_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "eval.toml").write_text("[eval]\nmax_range_m = 30.0\n")  # a detection config
    (tmp_path / "bad.toml").write_text("[tracking]\nmax_range_m = -1.0\n")
    extra = [
        {"EVAL_TOML": str(tmp_path / "eval.toml"), "BAD_TOML": str(tmp_path / "bad.toml")}.get(a, a)
        for a in extra
    ]
    assert main(["eval", "--pred", str(TRUTH), "--gt", str(TRUTH), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    ("marker", "message"),
    [(None, "no dataset.json"), ('{"schema_version": 99, "sequences": []}', "schema version 99 is unknown")],
)
def test_an_unfinished_or_newer_dataset_folder_is_refused_on_either_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], marker: str | None, message: str
) -> None:
    folder = tmp_path / "ds"
    (folder / "labels").mkdir(parents=True)
    shutil.copy(TRUTH, folder / "labels" / "sim_drive.parquet")  # its labels, but the run never finished
    if marker is not None:
        (folder / "dataset.json").write_text(marker)
    for pred, gt in ((folder, TRUTH), (TRUTH, folder)):
        assert main(["eval", "--pred", str(pred), "--gt", str(gt)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(folder) in err[0] and message in err[0], err


def test_a_kitti_ground_truth_that_is_missing_unreadable_or_uncalibrated_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calib = tmp_path / "calib.txt"
    calib.write_text("P2: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    binary = tmp_path / "0000.txt"
    binary.write_bytes(bytes(range(256)))
    cases = [
        (
            ["eval", "--pred", str(TRUTH), "--gt", str(tmp_path / "none.txt"), "--gt-calib", str(calib)],
            "no such",
        ),
        (["eval", "--pred", str(TRUTH), "--gt", str(binary), "--gt-calib", str(calib)], "cannot be read as"),
        # qa's option is --reviewed-calib; the error named eval's --gt-calib
        (["qa", "--prelabels", str(TRUTH), "--reviewed", str(binary)], "needs --reviewed-calib"),
    ]
    for argv, message in cases:  # the first two were tracebacks (FileNotFoundError, UnicodeDecodeError)
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    ("verb", "extra", "message"),
    [
        ("eval", ["--iou", "1.5"], "argument --iou: must be in (0, 1], got 1.5"),
        ("eval", ["--score", "-1"], "argument --score: must be in [0, 1], got -1"),
        ("qa", ["--iou", "0"], "argument --iou: must be in (0, 1], got 0"),
        ("qa", ["--score", "2"], "argument --score: must be in [0, 1], got 2"),
    ],
)
def test_an_iou_or_score_out_of_range_names_the_option(
    verb: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # it named EvalConfig's fields (`EvalConfig.operating_iou['car'] = (1.5,)`), not the option
    sides = (
        ["--pred", str(TRUTH), "--gt", str(TRUTH)]
        if verb == "eval"
        else ["--prelabels", str(TRUTH), "--reviewed", str(TRUTH)]
    )
    with pytest.raises(SystemExit) as exit_info:
        main([verb, *sides, *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
