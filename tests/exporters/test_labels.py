"""Building, checking, writing and reading the labels table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from calib.transform import wrap_angle
from exporters.errors import ExportError
from exporters.labels import CameraBoxes, labels_table, read_labels, write_labels
from exporters.parquet_io import sequence_id_of
from exporters.schema import LABELS, SCHEMA_VERSION_KEY, SEQUENCE_ID_KEY


def _columns(**overrides: Any) -> dict[str, Any]:
    """Three boxes in two frames, given out of order; camera boxes for rows 0 and 2."""
    columns: dict[str, Any] = {
        "sequence_id": "drive_01",
        "frame_index": np.array([1, 0, 0]),
        "timestamp_ns": np.array([200, 100, 100]),
        "track_id": np.array([7, 9, 7]),
        "category": np.array(["car", "pedestrian", "car"]),
        "score": np.array([0.9, 0.4, 0.8]),
        "boxes": np.array(
            [
                [10.0, 1.0, 0.5, 4.5, 1.9, 1.6, 0.1],
                [5.0, -2.0, 0.9, 0.6, 0.6, 1.8, math.pi],
                [9.0, 1.0, 0.5, 4.5, 1.9, 1.6, 0.1],
            ]
        ),
        "num_points": np.array([120, 15, 130]),
        "origin": np.array(["detected", "detected", "interpolated"]),
        "world_boxes": np.array([[110.0, 51.0, 0.5, 1.1], [np.nan] * 4, [109.0, 51.0, 0.5, 1.1]]),
        "velocity": np.array([[10.0, 0.0], [np.nan, np.nan], [10.0, 0.0]]),
        "camera_boxes": CameraBoxes(
            row=np.array([2, 0, 0]),
            camera=np.array(["front", "front", "left"]),
            x_min=np.array([100.0, 110.0, 5.0]),
            y_min=np.array([200.0, 190.0, 7.0]),
            x_max=np.array([300.0, 320.0, 50.0]),
            y_max=np.array([400.0, 410.0, 60.0]),
        ),
    }
    columns.update(overrides)
    return columns


def test_wrap_angle_maps_pi_to_minus_pi() -> None:
    assert wrap_angle(math.pi) == -math.pi
    assert wrap_angle(-math.pi) == -math.pi
    assert wrap_angle(3 * math.pi) == -math.pi
    assert wrap_angle(0.5) == 0.5
    assert wrap_angle(-0.5 - 2 * math.pi) == pytest.approx(-0.5)


def test_wrap_angle_of_an_array_stays_in_half_open_range() -> None:
    angles = np.array([math.pi, np.nextafter(-math.pi, -4.0), -7.0, 7.0, 0.0])
    wrapped = wrap_angle(angles)
    assert wrapped.shape == angles.shape
    assert np.all((wrapped >= -math.pi) & (wrapped < math.pi))
    assert wrapped[0] == -math.pi
    assert wrapped[2] == pytest.approx(-7.0 + 2 * math.pi)


def test_builder_sorts_rows_and_keeps_camera_boxes_with_their_rows() -> None:
    table = labels_table(**_columns())

    assert table.schema.equals(LABELS)
    assert table["frame_index"].to_pylist() == [0, 0, 1]
    assert table["track_id"].to_pylist() == [7, 9, 7]
    assert table["x"].to_pylist() == [9.0, 5.0, 10.0]
    assert table["camera_boxes"].to_pylist() == [
        [{"camera": "front", "x_min": 100.0, "y_min": 200.0, "x_max": 300.0, "y_max": 400.0}],
        [],
        [
            {"camera": "front", "x_min": 110.0, "y_min": 190.0, "x_max": 320.0, "y_max": 410.0},
            {"camera": "left", "x_min": 5.0, "y_min": 7.0, "x_max": 50.0, "y_max": 60.0},
        ],
    ]


def test_builder_given_rows_already_in_order_builds_the_same_table() -> None:
    """Rows in (frame, track) order are taken as they are (no reordering copy): same table."""
    given = _columns()
    order = np.array([2, 1, 0])  # the sorted order of `_columns`' rows
    rank = np.empty(3, np.int64)
    rank[order] = np.arange(3)
    cams = given["camera_boxes"]
    in_order = {
        name: (value[order] if isinstance(value, np.ndarray) else value) for name, value in given.items()
    }
    in_order["camera_boxes"] = CameraBoxes(
        row=rank[cams.row], camera=cams.camera, x_min=cams.x_min, y_min=cams.y_min, x_max=cams.x_max,
        y_max=cams.y_max,
    )  # fmt: skip
    assert labels_table(**in_order).equals(labels_table(**given))


def test_builder_wraps_yaw_and_stores_nan_rows_as_null() -> None:
    table = labels_table(**_columns())
    assert table["yaw"][1].as_py() == -math.pi
    assert table["world_x"].to_pylist() == [109.0, None, 110.0]
    assert table["velocity_y"].to_pylist() == [0.0, None, 0.0]


def test_builder_without_world_boxes_velocity_or_camera_boxes() -> None:
    table = labels_table(**_columns(world_boxes=None, velocity=None, camera_boxes=None, origin="detected"))
    assert table["world_yaw"].null_count == 3
    assert table["velocity_x"].null_count == 3
    assert table["camera_boxes"].to_pylist() == [[], [], []]
    assert table["origin"].to_pylist() == ["detected"] * 3


def test_labels_round_trip_with_camera_boxes_and_metadata(tmp_path: Path) -> None:
    table = labels_table(**_columns())
    path = write_labels(tmp_path / "labels" / "drive_01.parquet", table, "drive_01")

    read_back = read_labels(path)
    assert read_back.equals(table)
    assert sequence_id_of(read_back) == "drive_01"
    assert read_back.schema.metadata[SCHEMA_VERSION_KEY] == b"1"
    assert read_back.schema.metadata[SEQUENCE_ID_KEY] == b"drive_01"


def test_labels_file_is_readable_without_our_code(tmp_path: Path) -> None:
    write_labels(tmp_path / "labels" / "drive_01.parquet", labels_table(**_columns()), "drive_01")

    plain = pq.read_table(tmp_path / "labels" / "drive_01.parquet")
    assert plain.schema.remove_metadata().equals(LABELS)
    dataset = ds.dataset(tmp_path / "labels", format="parquet")
    assert dataset.to_table(filter=ds.field("frame_index") == 1)["track_id"].to_pylist() == [7]
    pd = pytest.importorskip("pandas", reason="pandas is not installed (not a fusion dependency)")
    frame = pd.read_parquet(tmp_path / "labels")
    assert list(frame.columns) == LABELS.names
    assert frame["category"].tolist() == ["car", "pedestrian", "car"]


def test_empty_labels_round_trip(tmp_path: Path) -> None:
    empty = labels_table(
        sequence_id="s",
        frame_index=np.empty(0, np.int64),
        timestamp_ns=[],
        track_id=[],
        category=[],
        score=[],
        boxes=np.empty((0, 7)),
        num_points=[],
        origin=[],
    )
    assert empty.num_rows == 0
    assert read_labels(write_labels(tmp_path / "s.parquet", empty, "s")).num_rows == 0


def test_bad_category_is_rejected_naming_it() -> None:
    with pytest.raises(ExportError, match=r"'category' has unknown value 'Car'; allowed: car, truck"):
        labels_table(**_columns(category=["car", "Car", "car"]))


def test_bad_origin_is_rejected_naming_it() -> None:
    with pytest.raises(ExportError, match=r"'origin' has unknown value 'guessed'"):
        labels_table(**_columns(origin="guessed"))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"boxes": np.full((3, 7), np.nan)}, r"'x' is not finite \(row 0: nan\)"),
        ({"boxes": np.ones((3, 6))}, r"'boxes' has shape \(3, 6\), expected \(3, 7\)"),
        ({"score": [0.5, 1.5, 0.5]}, r"'score' is not within 0\.\.1"),
        ({"track_id": [1.0, 2.0, 3.0]}, r"'track_id' must hold integers"),
        ({"frame_index": [0, 2**31, 1]}, r"'frame_index' has values outside int32"),
        ({"world_boxes": np.full((3, 4), np.inf)}, r"'world_x' is not finite"),
        ({"track_id": [7, 9, 9]}, r"track_id 9 appears more than once in frame_index 0"),
        ({"timestamp_ns": [200, 100, 101]}, r"rows of frame_index 0 have different timestamp_ns"),
        ({"boxes": np.array([[1, 1, 1, -1.0, 1, 1, 0]] * 3)}, r"'length' is negative"),
    ],
)
def test_invalid_boxes_are_rejected(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ExportError, match=match):
        labels_table(**_columns(**overrides))


@pytest.mark.parametrize(
    ("camera_boxes", "match"),
    [
        (CameraBoxes([3], ["front"], [0.0], [0.0], [1.0], [1.0]), r"must index the 3 label rows"),
        (CameraBoxes([0], ["front"], [5.0], [0.0], [1.0], [1.0]), r"has x_min 5\.0 > x_max 1\.0"),
        (CameraBoxes([0], ["front"], [np.inf], [0.0], [1.0], [1.0]), r"'camera_boxes.x_min' is not finite"),
        (
            CameraBoxes([1, 1], ["left"] * 2, [0.0] * 2, [0.0] * 2, [1.0] * 2, [1.0] * 2),
            r"camera 'left' twice",
        ),
    ],
)
def test_invalid_camera_boxes_are_rejected(camera_boxes: CameraBoxes, match: str) -> None:
    with pytest.raises(ExportError, match=match):
        labels_table(**_columns(camera_boxes=camera_boxes))


def test_write_labels_rejects_an_unwrapped_yaw_from_a_foreign_table(tmp_path: Path) -> None:
    table = labels_table(**_columns())
    table = table.set_column(LABELS.get_field_index("yaw"), "yaw", pa.array([0.0, math.pi, 0.0]))
    with pytest.raises(ExportError, match=r"cannot write .*x\.parquet: 'yaw' is outside \[-pi, pi\)"):
        write_labels(tmp_path / "x.parquet", table, "drive_01")
    assert list(tmp_path.iterdir()) == []


def test_write_labels_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write_labels(tmp_path / "l.parquet", labels_table(**_columns()), "drive_01")
    with pytest.raises(ExportError, match="already exists"):
        write_labels(path, labels_table(**_columns()), "drive_01")
    write_labels(path, labels_table(**_columns()), "drive_01", overwrite=True)
