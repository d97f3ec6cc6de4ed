"""The declared schemas of CONTRACT.md and the atomic, validating Parquet writer and reader."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporters.errors import ExportError
from exporters.parquet_io import (
    AtomicParquetWriter,
    conform_table,
    read_table,
    sequence_id_of,
    write_table_atomic,
)
from exporters.schema import (
    CATEGORIES,
    FLAGS,
    FRAMES,
    IMAGES,
    LABELS,
    ORIGINS,
    POINTS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SEQUENCE_ID_KEY,
    SEQUENCES,
    TRANSFORM,
    is_valid_sequence_id,
    schema_with_metadata,
)

ALL_SCHEMAS = {
    "sequences": SEQUENCES,
    "frames": FRAMES,
    "labels": LABELS,
    "points": POINTS,
    "images": IMAGES,
    "flags": FLAGS,
}

# Column names in order, and the nullable ones, exactly as CONTRACT.md lists them.
CONTRACT_COLUMNS = {
    "sequences": "sequence_id source_path source_size_bytes start_ns end_ns num_frames lidar_topic "
    "world_frame cameras_json config_json",
    "frames": "sequence_id frame_index timestamp_ns source_log_time_ns num_points deskewed "
    "world_from_lidar cameras",
    "labels": "sequence_id frame_index timestamp_ns track_id category score x y z length width height yaw "
    "world_x world_y world_z world_yaw velocity_x velocity_y num_points origin camera_boxes",
    "points": "frame_index x y z intensity time_offset_ns",
    "images": "frame_index timestamp_ns encoding data",
    "flags": "sequence_id frame_index track_id flag severity detail",
}
CONTRACT_NULLABLE = {
    "sequences": {"world_frame"},
    "frames": {"world_from_lidar"},
    "labels": {"world_x", "world_y", "world_z", "world_yaw", "velocity_x", "velocity_y"},
    "points": set(),
    "images": set(),
    "flags": {"frame_index", "track_id"},
}


def _frames_table(n: int = 2, sequence_id: str = "seq") -> pa.Table:
    return pa.table(
        {
            "sequence_id": [sequence_id] * n,
            "frame_index": list(range(n)),
            "timestamp_ns": [1_000 + i for i in range(n)],
            "source_log_time_ns": [2_000 + i for i in range(n)],
            "num_points": [10] * n,
            "deskewed": [True] * n,
            "world_from_lidar": [[float(v) for v in range(16)]] + [None] * (n - 1),
            "cameras": [[{"name": "front", "timestamp_ns": 1_000, "offset_ns": -5}]] + [[]] * (n - 1),
        }
    )


def _tree(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("table", ALL_SCHEMAS)
def test_schema_has_the_contract_columns_in_order(table: str) -> None:
    assert ALL_SCHEMAS[table].names == CONTRACT_COLUMNS[table].split()


@pytest.mark.parametrize("table", ALL_SCHEMAS)
def test_only_the_contract_nullable_columns_are_nullable(table: str) -> None:
    nullable = {field.name for field in ALL_SCHEMAS[table] if field.nullable}
    assert nullable == CONTRACT_NULLABLE[table]


def test_declared_types_follow_the_contract() -> None:
    assert TRANSFORM.equals(pa.list_(pa.field("element", pa.float64(), nullable=False), 16))
    assert LABELS.field("score").type == pa.float32()
    assert LABELS.field("track_id").type == pa.int64()
    assert FRAMES.field("frame_index").type == pa.int32()
    assert FRAMES.field("world_from_lidar").type.list_size == 16
    camera = FRAMES.field("cameras").type.value_type
    assert [camera.field(i).name for i in range(camera.num_fields)] == ["name", "timestamp_ns", "offset_ns"]
    box = LABELS.field("camera_boxes").type.value_type
    assert [str(box.field(i).type) for i in range(box.num_fields)] == ["string"] + ["float"] * 4
    assert IMAGES.field("data").type == pa.binary()
    assert SCHEMA_VERSION == 1
    assert CATEGORIES == ("car", "truck", "bus", "pedestrian", "cyclist", "motorcycle", "unknown")
    assert ORIGINS == ("detected", "interpolated")


def test_schema_with_metadata_sets_version_and_sequence_id() -> None:
    schema = schema_with_metadata(POINTS.with_metadata({b"other": b"kept"}), "drive_01")
    assert schema.metadata == {SCHEMA_VERSION_KEY: b"1", SEQUENCE_ID_KEY: b"drive_01", b"other": b"kept"}


@pytest.mark.parametrize("sequence_id", ["drive-01.a_b", "X9"])
def test_sanitised_sequence_ids_are_valid(sequence_id: str) -> None:
    assert is_valid_sequence_id(sequence_id)


@pytest.mark.parametrize("sequence_id", ["", ".", "..", "a/b", "a b", "é"])
def test_unsanitised_sequence_ids_are_invalid(sequence_id: str) -> None:
    assert not is_valid_sequence_id(sequence_id)


@pytest.mark.parametrize("table", ALL_SCHEMAS)
def test_file_reads_back_with_plain_pyarrow_as_the_declared_schema(table: str, tmp_path: Path) -> None:
    path = tmp_path / f"{table}.parquet"
    schema = ALL_SCHEMAS[table]
    write_table_atomic(schema.empty_table(), path, sequence_id="seq", schema=schema)

    read_back = pq.read_table(path).schema
    assert read_back.remove_metadata().equals(schema)
    assert str(read_back.remove_metadata()) == str(schema)  # list elements named as Parquet names them
    assert read_back.metadata[b"fusion.schema_version"] == b"1"
    assert read_back.metadata[b"fusion.sequence_id"] == b"seq"


def test_frames_round_trip_through_read_table(tmp_path: Path) -> None:
    path = tmp_path / "frames" / "seq.parquet"  # parent directories are created
    written = write_table_atomic(_frames_table(), path, sequence_id="seq", schema=FRAMES)

    table = read_table(written, FRAMES)
    assert table.schema.remove_metadata().equals(FRAMES)
    assert sequence_id_of(table) == "seq"
    assert table["world_from_lidar"].to_pylist() == [[float(v) for v in range(16)], None]
    assert table["cameras"].to_pylist() == [[{"name": "front", "timestamp_ns": 1_000, "offset_ns": -5}], []]
    assert _tree(path.parent) == ["seq.parquet"]


def test_read_table_reads_only_the_selected_columns(tmp_path: Path) -> None:
    path = write_table_atomic(_frames_table(), tmp_path / "f.parquet", sequence_id="seq", schema=FRAMES)
    assert read_table(path, FRAMES, columns=["frame_index"]).column_names == ["frame_index"]


def test_conform_casts_losslessly_and_orders_columns() -> None:
    table = _frames_table()
    shuffled = table.select(list(reversed(table.column_names)))
    conformed = conform_table(shuffled, FRAMES, path="f.parquet")
    assert conformed.schema.equals(FRAMES)
    assert conformed["frame_index"].to_pylist() == [0, 1]


@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        ("frame_index", [0.0, 1.5], r"'frame_index' cannot be cast .* without loss"),
        ("frame_index", [0, 2**40], r"'frame_index' cannot be cast"),
        ("num_points", ["10", "11"], r"'num_points' has type string, the contract declares int32"),
        ("deskewed", [1, 0], r"'deskewed' has type int64"),
        ("timestamp_ns", [1, None], r"'timestamp_ns' holds nulls but is declared not null"),
    ],
)
def test_conform_rejects_a_bad_column_naming_it_and_the_file(
    column: str, values: list[object], match: str
) -> None:
    table = _frames_table().set_column(FRAMES.get_field_index(column), column, pa.array(values))
    with pytest.raises(ExportError, match=r"frames\.parquet: .*" + match):
        conform_table(table, FRAMES, path="frames.parquet")


def test_conform_rejects_a_null_inside_a_list_of_structs() -> None:
    front = {"name": "front", "timestamp_ns": 1, "offset_ns": 0}
    cameras = pa.array([[front, {"name": None, "timestamp_ns": 2, "offset_ns": 0}], []])
    table = _frames_table().set_column(FRAMES.get_field_index("cameras"), "cameras", cameras)
    with pytest.raises(ExportError, match=r"'cameras\[\]\.name' holds nulls"):
        conform_table(table, FRAMES, path="f.parquet")


def test_conform_rejects_missing_and_extra_columns() -> None:
    with pytest.raises(ExportError, match=r"f\.parquet: missing column\(s\) \['deskewed'\]"):
        conform_table(_frames_table().drop_columns(["deskewed"]), FRAMES, path="f.parquet")
    with pytest.raises(ExportError, match=r"\['bogus'\] are not in the contract"):
        conform_table(_frames_table().append_column("bogus", pa.array([1, 2])), FRAMES, path="f.parquet")


def test_failed_cast_leaves_no_file(tmp_path: Path) -> None:
    table = _frames_table().set_column(1, "frame_index", pa.array([0.5, 1.0]))
    with pytest.raises(ExportError, match="frame_index"):
        write_table_atomic(table, tmp_path / "f.parquet", sequence_id="seq", schema=FRAMES)
    assert _tree(tmp_path) == []


def test_unwritable_destination_names_the_path_and_the_fix(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "regular_file"
    not_a_directory.write_text("")
    path = not_a_directory / "labels" / "seq.parquet"
    match = r"cannot write .*regular_file/labels/seq\.parquet: .*choose another --out"
    with pytest.raises(ExportError, match=match):
        write_table_atomic(_frames_table(), path, sequence_id="seq", schema=FRAMES)
    assert _tree(tmp_path) == ["regular_file"]


def test_exception_while_writing_leaves_neither_final_nor_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    with (
        pytest.raises(RuntimeError, match="killed"),
        AtomicParquetWriter(path, schema=FRAMES, sequence_id="seq") as w,
    ):
        w.write(_frames_table())
        assert len(_tree(tmp_path)) == 1  # only the hidden temporary file exists meanwhile
        assert _tree(tmp_path)[0].startswith(".p.parquet.tmp-")
        raise RuntimeError("killed")
    assert _tree(tmp_path) == []


def test_io_error_while_writing_is_an_export_error_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ExportError, match=r"f\.parquet: No space left on device; free disk space"):
        write_table_atomic(_frames_table(), tmp_path / "f.parquet", sequence_id="seq", schema=FRAMES)
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("durable", [True, False])
def test_only_a_durable_file_is_flushed_to_disk_and_both_appear_only_whole(
    durable: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    path = tmp_path / "f.parquet"
    with AtomicParquetWriter(path, schema=FRAMES, sequence_id="seq", durable=durable) as w:
        w.write(_frames_table())
        assert _tree(tmp_path)[0].startswith(".f.parquet.tmp-")  # not under its name before commit
    assert _tree(tmp_path) == ["f.parquet"] and pq.read_table(path).num_rows == len(_frames_table())
    assert len(synced) == (2 if durable else 0)  # the file and its directory, or neither


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    write_table_atomic(_frames_table(1), path, sequence_id="seq", schema=FRAMES)
    with pytest.raises(ExportError, match=r"f\.parquet: it already exists .*choose another --out"):
        write_table_atomic(_frames_table(2), path, sequence_id="seq", schema=FRAMES)
    assert pq.read_table(path).num_rows == 1

    write_table_atomic(_frames_table(2), path, sequence_id="seq", schema=FRAMES, overwrite=True)
    assert pq.read_table(path).num_rows == 2
    assert _tree(tmp_path) == ["f.parquet"]


def test_rejects_an_unsanitised_sequence_id(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"sequence id '\.\./x' is not sanitised"):
        write_table_atomic(_frames_table(), tmp_path / "f.parquet", sequence_id="../x", schema=FRAMES)


def test_rejects_rows_of_another_sequence(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"holds 'other', but the file is for sequence 'seq'"):
        write_table_atomic(
            _frames_table(sequence_id="other"), tmp_path / "f.parquet", sequence_id="seq", schema=FRAMES
        )
    assert _tree(tmp_path) == []


def test_streaming_writer_writes_one_row_group_per_write(tmp_path: Path) -> None:
    path = tmp_path / "points.parquet"
    with AtomicParquetWriter(path, schema=POINTS, sequence_id="seq") as writer:
        for frame in range(3):
            writer.write(
                pa.table(
                    {
                        "frame_index": [frame] * 4,
                        "x": [0.0] * 4,
                        "y": [1.0] * 4,
                        "z": [2.0] * 4,
                        "intensity": [0.5] * 4,
                        "time_offset_ns": [0, 1, 2, 3],
                    }
                )
            )
    file = pq.ParquetFile(path)
    assert file.num_row_groups == 3
    assert file.read_row_group(2)["frame_index"].to_pylist() == [2] * 4


def test_read_rejects_an_unknown_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    future = (
        _frames_table()
        .cast(FRAMES)
        .replace_schema_metadata({SCHEMA_VERSION_KEY: b"2", SEQUENCE_ID_KEY: b"seq"})
    )
    pq.write_table(future, path)
    with pytest.raises(ExportError, match=r"f\.parquet: schema version '2' is unknown .* reads version 1"):
        read_table(path, FRAMES)


def test_read_rejects_a_file_without_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(_frames_table(), path)
    with pytest.raises(ExportError, match=r"no fusion\.schema_version metadata"):
        read_table(path, FRAMES)


def test_read_rejects_a_column_of_another_type(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    table = schema_with_metadata(POINTS, "seq").empty_table()
    table = table.set_column(1, pa.field("x", pa.float64(), nullable=False), pa.array([], pa.float64()))
    pq.write_table(table, path)
    with pytest.raises(ExportError, match=r"column 'x' is double not null, expected float not null"):
        read_table(path, POINTS)


def test_read_rejects_missing_and_non_parquet_files(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such file"):
        read_table(tmp_path / "absent.parquet", FRAMES)
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(ExportError, match="not a Parquet file"):
        read_table(tmp_path / "text.parquet", FRAMES)
