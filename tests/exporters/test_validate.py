"""validate_dataset: a valid dataset has no problems; each kind of violation is reported."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporters.validate import validate_dataset
from tests.exporters.test_dataset import write_sample


@pytest.fixture
def out(tmp_path: Path) -> Path:
    write_sample(tmp_path)
    return tmp_path


def _edit(path: Path, column: str, change: Callable[[list[Any]], list[Any]]) -> None:
    """Rewrite one column of a dataset file in place, keeping its schema and metadata."""
    table = pq.read_table(path)
    values = change(table.column(column).to_pylist())
    index = table.schema.get_field_index(column)
    table = table.set_column(
        index, table.schema.field(index), pa.array(values, table.schema.field(index).type)
    )
    pq.write_table(table, path)


def _only(problems: list[str], pattern: str) -> None:
    assert len(problems) >= 1, "no problem reported"
    assert any(re.search(pattern, p) for p in problems), problems


def _set(index: int, value: Any) -> Callable[[list[Any]], list[Any]]:
    def change(values: list[Any]) -> list[Any]:
        values[index] = value
        return values

    return change


def test_a_written_dataset_is_valid(out: Path) -> None:
    assert validate_dataset(out) == []


def test_missing_dataset_json_is_reported(out: Path) -> None:
    (out / "dataset.json").unlink()
    assert validate_dataset(out) == [
        f"{out}: not a complete fusion dataset (no dataset.json): "
        "the run that wrote it did not finish; re-run it"
    ]


def test_unparseable_dataset_json_is_reported(out: Path) -> None:
    (out / "dataset.json").write_text("{")
    _only(validate_dataset(out), r"dataset\.json: cannot be read as JSON")


def test_unknown_schema_version_is_reported(out: Path) -> None:
    document = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**document, "schema_version": 7}))
    _only(validate_dataset(out), "schema version 7 is unknown")


def test_a_missing_sequence_file_is_reported(out: Path) -> None:
    (out / "labels" / "drive_b.parquet").unlink()
    _only(validate_dataset(out), r"labels/drive_b\.parquet: missing")


def test_a_schema_that_differs_from_the_contract_is_reported(out: Path) -> None:
    path = out / "frames" / "drive_b.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("num_points")
    table = table.set_column(
        index, pa.field("num_points", pa.int64(), nullable=False), table["num_points"].cast(pa.int64())
    )
    pq.write_table(table, path)
    _only(
        validate_dataset(out),
        r"frames/drive_b\.parquet: schema differs .*'num_points' is int64 not null, expected int32",
    )


def test_missing_metadata_is_reported(out: Path) -> None:
    path = out / "labels" / "drive_a.parquet"
    pq.write_table(pq.read_table(path).replace_schema_metadata(None), path)
    problems = validate_dataset(out)
    _only(problems, r"labels/drive_a\.parquet: fusion\.schema_version metadata is None")
    _only(problems, r"labels/drive_a\.parquet: fusion\.sequence_id metadata is None")


def test_a_wrong_sequence_id_is_reported(out: Path) -> None:
    shutil.copy(out / "labels" / "drive_a.parquet", out / "labels" / "drive_b.parquet")
    problems = validate_dataset(out)
    _only(
        problems, r"labels/drive_b\.parquet: fusion\.sequence_id metadata is b'drive_a', expected 'drive_b'"
    )
    _only(problems, r"labels/drive_b\.parquet: column sequence_id holds 'drive_a'")


def test_repeated_sequence_rows_are_reported(out: Path) -> None:
    _edit(out / "sequences.parquet", "sequence_id", lambda v: ["drive_a", "drive_a"])
    problems = validate_dataset(out)
    _only(problems, r"sequences\.parquet: sequence_id \['drive_a'\] appear more than once")
    _only(problems, r"no row for sequence\(s\) \['drive_b'\]")


def test_repeated_frame_keys_are_reported(out: Path) -> None:
    _edit(out / "frames" / "drive_b.parquet", "frame_index", _set(2, 1))
    problems = validate_dataset(out)
    _only(problems, r"frames/drive_b\.parquet: \(sequence_id, frame_index\) is not unique")


def test_a_gap_in_frame_indices_is_reported(out: Path) -> None:
    _edit(out / "frames" / "drive_b.parquet", "frame_index", _set(2, 5))
    _only(validate_dataset(out), r"frames/drive_b\.parquet: frame_index must run 0\.\.2 in row order")


def test_num_frames_that_disagrees_is_reported(out: Path) -> None:
    _edit(out / "sequences.parquet", "num_frames", _set(1, 4))
    _only(
        validate_dataset(out), r"frames/drive_b\.parquet: 3 frames but sequences\.parquet says num_frames = 4"
    )


def test_repeated_label_keys_are_reported(out: Path) -> None:
    _edit(out / "labels" / "drive_b.parquet", "track_id", _set(1, 1))
    _only(
        validate_dataset(out), r"labels/drive_b\.parquet: track_id 1 appears more than once in frame_index 0"
    )


def test_a_non_finite_box_is_reported(out: Path) -> None:
    _edit(out / "labels" / "drive_b.parquet", "x", _set(3, math.inf))
    _only(validate_dataset(out), r"labels/drive_b\.parquet: 'x' is not finite \(row 3")


def test_a_zero_size_is_reported(out: Path) -> None:
    _edit(out / "labels" / "drive_b.parquet", "width", _set(0, 0.0))
    _only(validate_dataset(out), r"labels/drive_b\.parquet: 'width' must be > 0 \(row 0")


def test_an_unwrapped_yaw_is_reported(out: Path) -> None:
    _edit(out / "labels" / "drive_b.parquet", "yaw", _set(2, math.pi))
    _only(validate_dataset(out), r"labels/drive_b\.parquet: 'yaw' is outside \[-pi, pi\)")


def test_an_unknown_category_is_reported(out: Path) -> None:
    _edit(out / "labels" / "drive_b.parquet", "category", _set(0, "Car"))
    _only(validate_dataset(out), r"labels/drive_b\.parquet: 'category' has unknown value 'Car'")


def test_an_unknown_origin_is_reported(out: Path) -> None:
    _edit(out / "labels" / "drive_b.parquet", "origin", _set(0, "guessed"))
    _only(validate_dataset(out), r"labels/drive_b\.parquet: 'origin' has unknown value 'guessed'")


def test_a_label_of_a_missing_frame_is_reported(out: Path) -> None:
    _edit(out / "labels" / "drive_b.parquet", "frame_index", lambda v: [f + 1 if f == 2 else f for f in v])
    _only(
        validate_dataset(out),
        r"labels/drive_b\.parquet: row 4 has frame_index 3, not a frame of frames/drive_b",
    )


def test_a_label_timestamp_that_is_not_its_frames_is_reported(out: Path) -> None:
    _edit(out / "labels" / "drive_b.parquet", "timestamp_ns", lambda v: [t + 1 for t in v])
    _only(
        validate_dataset(out),
        r"labels/drive_b\.parquet: row 0 has timestamp_ns 5000000001, its frame's is 5000000000",
    )


def test_points_row_groups_that_are_not_one_per_frame_are_reported(out: Path) -> None:
    path = out / "points" / "drive_a.parquet"
    table = pq.read_table(path)
    pq.write_table(table, path)  # one row group for all sweeps
    _only(validate_dataset(out), r"points/drive_a\.parquet: 1 row groups, expected one per frame \(4\)")


def test_points_that_disagree_with_num_points_are_reported(out: Path) -> None:
    _edit(out / "frames" / "drive_a.parquet", "num_points", lambda v: [n + 1 for n in v])
    _only(
        validate_dataset(out),
        r"points/drive_a\.parquet: row group 0 holds \d+ points, frames says num_points",
    )


def test_an_image_of_a_missing_frame_is_reported(out: Path) -> None:
    _edit(out / "images" / "drive_a" / "front.parquet", "frame_index", _set(2, 9))
    _only(validate_dataset(out), r"images/drive_a/front\.parquet: frame_index 9 is not a frame")


def test_flags_out_of_range_are_reported(out: Path) -> None:
    _edit(out / "flags" / "drive_a.parquet", "severity", _set(0, 1.5))
    _only(validate_dataset(out), r"flags/drive_a\.parquet: severity must be within 0\.\.1")


def test_a_stray_file_of_an_unlisted_sequence_is_reported(out: Path) -> None:
    shutil.copy(out / "labels" / "drive_a.parquet", out / "labels" / "old_run.parquet")
    assert validate_dataset(out) == [
        f"{out / 'labels' / 'old_run.parquet'}: not a sequence of dataset.json; "
        "remove it (glob readers would include it)"
    ]


def test_bad_camera_calibration_is_reported(out: Path) -> None:
    def break_k(values: list[Any]) -> list[Any]:
        cameras = json.loads(values[0])
        cameras[0]["K"] = cameras[0]["K"][:4]
        values[0] = json.dumps(cameras)
        return values

    _edit(out / "sequences.parquet", "cameras_json", break_k)
    _only(validate_dataset(out), r"camera 'front' of 'drive_a' needs 9 finite values in K")
