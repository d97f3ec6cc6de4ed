"""ASAM OpenLABEL 1.0: the document validates against the published schema and reads back losslessly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pyarrow as pa
import pytest

from exporters.errors import ExportError
from exporters.formats import export_dataset
from exporters.openlabel import iso8601, openlabel_document, read_openlabel
from exporters.reader import open_dataset

BOX_COLUMNS = ("x", "y", "z", "length", "width", "height")


@pytest.fixture(scope="module")
def document_path(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("openlabel")
    (path,) = export_dataset(sample_dataset, "openlabel", dest)
    return path


def _document(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def test_document_validates_against_the_openlabel_schema(
    document_path: Path, openlabel_schema: dict[str, object]
) -> None:
    document = _document(document_path)
    jsonschema.validate(document, openlabel_schema)
    broken = copy.deepcopy(document)
    broken["openlabel"]["metadata"]["schema_version"] = "0.9"  # the check can fail
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, openlabel_schema)


def test_document_holds_coordinate_systems_streams_objects_and_frames(
    sample_dataset: Path, document_path: Path
) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    root = _document(document_path)["openlabel"]
    cameras = [c["name"] for c in seq.cameras]
    assert set(root["coordinate_systems"]) == {"world", "lidar", *cameras}
    assert root["coordinate_systems"]["lidar"]["parent"] == "world"
    for cam in seq.cameras:
        system = root["coordinate_systems"][cam["name"]]
        assert system["parent"] == "lidar"
        assert system["pose_wrt_parent"]["matrix4x4"] == cam["lidar_from_camera"]
    front = root["streams"]["camera_front"]["stream_properties"]["intrinsics_pinhole"]
    assert front["camera_matrix"][:3] == [360.0, 0.0, 321.2] and front["width_px"] == 640
    rear = root["streams"]["camera_rear"]["stream_properties"]["intrinsics_fisheye"]
    assert len(rear["lens_coeffs"]) == 4

    labels = seq.labels()
    tracks = set(labels.column("track_id").to_pylist())
    assert set(root["objects"]) == {str(t) for t in tracks}
    first = labels.slice(0, 1).to_pylist()[0]
    obj = root["objects"][str(first["track_id"])]
    assert obj["type"] == first["category"]
    frame = root["frames"][str(first["frame_index"])]
    cuboid = frame["objects"][str(first["track_id"])]["object_data"]["cuboid"][0]
    assert cuboid["val"][:3] == [first["x"], first["y"], first["z"]]
    assert cuboid["val"][7:] == [first["length"], first["width"], first["height"]]
    qz, qw = cuboid["val"][5:7]
    assert 2.0 * np.arctan2(qz, qw) == pytest.approx(first["yaw"], abs=1e-12)
    attributes = {a["name"]: a["val"] for a in cuboid["attributes"]["num"]}
    assert attributes["score"] == pytest.approx(first["score"])
    assert cuboid["attributes"]["text"] == [{"name": "origin", "val": first["origin"]}]
    boxes = sum(
        len(entry["object_data"]["cuboid"][:1])
        for f in root["frames"].values()
        for entry in f.get("objects", {}).values()
    )
    assert boxes == labels.num_rows
    stamp = seq.frames().column("timestamp_ns")[0].as_py()
    assert root["frames"]["0"]["frame_properties"]["timestamp_ns"] == stamp
    assert root["frames"]["0"]["frame_properties"]["timestamp"] == iso8601(stamp)
    assert "lidar_to_world" in root["frames"]["0"]["frame_properties"]["transforms"]


def test_iso8601_keeps_nanoseconds() -> None:
    assert iso8601(1_700_000_000_050_000_001) == "2023-11-14T22:13:20.050000001Z"


def _assert_tables_match(got: pa.Table, want: pa.Table) -> None:
    assert got.num_rows == want.num_rows
    for name in want.column_names:
        if name in ("yaw", "world_yaw"):  # through a quaternion: equal to rounding
            a = np.asarray(got.column(name).to_numpy(zero_copy_only=False))
            b = np.asarray(want.column(name).to_numpy(zero_copy_only=False))
            assert np.allclose(np.angle(np.exp(1j * (a - b))), 0.0, atol=1e-12), name
        else:
            assert got.column(name).equals(want.column(name)), name


def test_round_trip_keeps_labels_frames_and_cameras(sample_dataset: Path, document_path: Path) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    imported = read_openlabel(document_path)
    assert imported.sequence_id == "sim_drive"
    assert imported.world_frame == seq.row["world_frame"]
    assert imported.lidar_topic == seq.row["lidar_topic"]
    _assert_tables_match(imported.labels, seq.labels())
    frames = seq.frames().to_pylist()
    assert len(imported.frames) == len(frames)
    for got, want in zip(imported.frames, frames, strict=True):
        assert got.timestamp_ns == want["timestamp_ns"]
        assert got.source_log_time_ns == want["source_log_time_ns"]
        assert got.num_points == want["num_points"] and got.deskewed == want["deskewed"]
        assert np.array_equal(np.asarray(got.world_from_lidar).reshape(16), want["world_from_lidar"])
        assert [(c.name, c.timestamp_ns, c.offset_ns) for c in got.cameras] == [
            (c["name"], c["timestamp_ns"], c["offset_ns"]) for c in want["cameras"]
        ]
    assert [c.to_json() for c in imported.cameras] == seq.cameras


def _edit(path: Path, tmp_path: Path, change: Any) -> Path:
    document = _document(path)
    change(document["openlabel"])
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(document))
    return out


def test_reviewed_document_comes_back_with_the_reviewer_edits(document_path: Path, tmp_path: Path) -> None:
    def review(root: dict[str, Any]) -> None:
        frame0 = root["frames"]["0"]["objects"]
        deleted = sorted(frame0, key=int)[0]
        del frame0[deleted]  # a false positive removed
        uid = "0f8fad5b-d9cb-469f-a165-70867728950e"  # a box drawn by the reviewer: no score, no origin
        root["objects"][uid] = {"name": "missed", "type": "pedestrian"}
        frame0[uid] = {
            "object_data": {
                "cuboid": [{"name": "box3d", "val": [5.0, 1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.8, 0.6, 1.7]}]
            }
        }

    before = read_openlabel(document_path).labels
    after = read_openlabel(_edit(document_path, tmp_path, review)).labels
    assert after.num_rows == before.num_rows  # one deleted, one added
    drawn = after.filter(pa.compute.equal(after["category"], "pedestrian")).to_pylist()
    new = [r for r in drawn if r["x"] == 5.0]
    assert len(new) == 1 and new[0]["score"] == 1.0 and new[0]["origin"] == "detected"
    assert new[0]["track_id"] > max(before.column("track_id").to_pylist())
    assert new[0]["length"] == 0.8 and new[0]["yaw"] == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("metadata"), "has no 'metadata'"),
        (lambda r: r["metadata"].update(schema_version="0.3.0"), "schema_version is '0.3.0'"),
        (lambda r: r["frames"].pop("3"), "without gaps"),
        (lambda r: r["frames"]["0"]["frame_properties"].clear(), "no timestamp"),
        (
            lambda r: next(iter(r["frames"]["0"]["objects"].values()))["object_data"]["cuboid"][0].update(
                val=[1, 2]
            ),
            "must be 10 numbers",
        ),
        (lambda r: r["objects"].clear(), "is not in openlabel.objects"),
        (
            lambda r: next(iter(r["frames"]["1"]["objects"].values()))["object_data"].update(cuboid=[7]),
            "unexpected structure",
        ),
    ],
)
def test_malformed_document_is_refused_naming_the_file(
    document_path: Path, tmp_path: Path, change: Any, message: str
) -> None:
    path = _edit(document_path, tmp_path, change)
    with pytest.raises(ExportError, match=message) as info:
        read_openlabel(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_file_that_is_not_json_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"openlabel":\n')
    with pytest.raises(ExportError, match=r"cut.json:2: not JSON"):
        read_openlabel(path)


def test_document_of_a_sequence_without_poses_has_no_world(sample_dataset: Path, tmp_path: Path) -> None:
    import shutil

    import pyarrow.parquet as pq

    copy_root = tmp_path / "ds"
    shutil.copytree(sample_dataset, copy_root, ignore=shutil.ignore_patterns("points", "images"))
    frames_path = copy_root / "frames" / "sim_drive.parquet"
    frames = pq.read_table(frames_path)
    index = frames.schema.get_field_index("world_from_lidar")
    nulls = pa.nulls(frames.num_rows, frames.schema.field(index).type)
    pq.write_table(
        frames.set_column(index, frames.schema.field(index), nulls).replace_schema_metadata(
            frames.schema.metadata
        ),
        frames_path,
    )
    seq = open_dataset(copy_root).sequence("sim_drive")
    root = openlabel_document(seq)["openlabel"]
    assert "world" not in root["coordinate_systems"] and root["coordinate_systems"]["lidar"]["parent"] == ""
    assert all("transforms" not in f["frame_properties"] for f in root["frames"].values())
