"""Writing the dataset directory: layout, metadata, encodings, atomicity, refusals."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from calib.camera import Camera
from calib.transform import Transform
from exporters.dataset import (
    DatasetWriter,
    FrameCamera,
    FrameRow,
    PipelineInfo,
    SequenceCamera,
    SequenceInfo,
    frames_table,
    points_table,
)
from exporters.errors import ExportError
from exporters.labels import labels_table
from exporters.schema import (
    FLAGS,
    FRAMES,
    IMAGES,
    LABELS,
    POINTS,
    SCHEMA_VERSION_KEY,
    SEQUENCE_ID_KEY,
    SEQUENCES,
)

PIPELINE = PipelineInfo(
    version="0.1.0", detector="geometric", tracker="ab3dmot", config={"sync": {"tol_ms": 50}}
)


@dataclass(frozen=True)
class Sample:
    """What `write_sample` wrote, to compare the files with."""

    out: Path
    ids: tuple[str, ...]
    points: dict[str, list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]]]
    image: npt.NDArray[np.uint8]  # drive_a, camera front, frame 1 (PNG: lossless)
    frames: dict[str, pa.Table]
    labels: dict[str, pa.Table]
    flags: pa.Table  # drive_a
    camera: SequenceCamera


def sample_camera() -> SequenceCamera:
    camera = Camera(
        name="front",
        frame_id="cam_front",
        width=32,
        height=24,
        model="plumb_bob",
        K=np.array([[30.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]]),
        D=(0.01, -0.002, 0.0, 0.0, 0.0),
    )
    # camera z (forward) = lidar x, camera x (right) = -lidar y, camera y (down) = -lidar z
    matrix = np.array([[0.0, 0.0, 1.0, 1.5], [-1.0, 0.0, 0.0, 0.1], [0.0, -1.0, 0.0, -0.3], [0, 0, 0, 1]])
    transform = Transform.from_matrix(matrix, parent="lidar", child="cam_front")
    return SequenceCamera(camera=camera, topic="/cam/front/image_raw/compressed", lidar_from_camera=transform)


def _frame_rows(n: int, t0_ns: int, counts: list[int], with_sensors: bool) -> list[FrameRow]:
    rows = []
    for i in range(n):
        pose = None
        if with_sensors:
            pose = Transform.from_quaternion(
                [10.0 * i, 2.0, 0.0],
                [0, 0, math.sin(0.1 * i), math.cos(0.1 * i)],
                parent="map",
                child="lidar",
            )
        cameras = (
            (FrameCamera("front", t0_ns + i * 100_000_000 + 3_000_000, 1_500_000),)
            if i != 2 and with_sensors
            else ()
        )
        rows.append(
            FrameRow(
                i,
                t0_ns + i * 100_000_000,
                t0_ns + i * 100_000_000 + 20_000_000,
                counts[i],
                with_sensors,
                pose,
                cameras,
            )
        )
    return rows


def _labels(sid: str, stamps: list[int]) -> pa.Table:
    n = len(stamps)
    return labels_table(
        sequence_id=sid,
        frame_index=np.arange(n).repeat(2),
        timestamp_ns=np.repeat(stamps, 2),
        track_id=np.tile([1, 2], n),
        category=np.tile(["car", "pedestrian"], n),
        score=np.full(2 * n, 0.8),
        boxes=np.tile([[10.0, 1.0, 0.8, 4.5, 1.9, 1.6, 0.2], [6.0, -3.0, 0.9, 0.6, 0.7, 1.8, -1.0]], (n, 1)),
        num_points=np.full(2 * n, 40),
        origin="detected",
    )


def write_sample(out: Path, *, overwrite: bool = False) -> Sample:
    """Two sequences: drive_a (4 sweeps with points, images of one camera, flags), drive_b (3 sweeps)."""
    rng = np.random.default_rng(7)
    camera = sample_camera()
    points: dict[
        str, list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]]
    ] = {}
    frames: dict[str, pa.Table] = {}
    labels: dict[str, pa.Table] = {}
    image = rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
    flags = pa.table(
        {
            "sequence_id": ["drive_a", "drive_a"],
            "frame_index": pa.array([1, None], pa.int32()),
            "track_id": pa.array([None, 2], pa.int64()),
            "flag": ["few_points", "short_track"],
            "severity": pa.array([0.9, 0.4], pa.float32()),
            "detail": ["12 points", "3 frames"],
        }
    )
    with DatasetWriter(out, pipeline=PIPELINE, overwrite=overwrite) as ds:
        for sid, n, t0, with_points in (
            ("drive_a", 4, 1_000_000_000, True),
            ("drive_b", 3, 5_000_000_000, False),
        ):
            seq = ds.sequence(sid)
            counts = [int(c) for c in rng.integers(5, 50, size=n)]
            counts[2] = 0 if with_points else counts[2]  # an empty sweep
            if with_points:
                sweeps = []
                with seq.points() as writer:
                    for i, count in enumerate(counts):
                        xyz = rng.normal(size=(count, 3)).astype(np.float32) * 20
                        intensity = rng.random(count).astype(np.float32)
                        offsets = np.sort(rng.integers(0, 100_000_000, size=count)).astype(np.int32)
                        writer.add(i, xyz, intensity, offsets)
                        sweeps.append((xyz, intensity, offsets))
                points[sid] = sweeps
                with seq.images("front") as images:
                    for i in (0, 1, 3):
                        pixels = image if i == 1 else np.full_like(image, 40 * i)
                        images.add_array(i, t0 + i * 100_000_000 + 3_000_000, pixels, encoding="png")
                seq.write_flags(flags)
            rows = _frame_rows(n, t0, counts, with_sensors=with_points)
            seq.write_frames(rows)
            frames[sid] = frames_table(sid, rows)
            labels[sid] = _labels(sid, [r.timestamp_ns for r in rows])
            seq.write_labels(labels[sid])
            ds.add_sequence(
                SequenceInfo(
                    sequence_id=sid,
                    source_path=f"/logs/{sid}.mcap",
                    source_size_bytes=1234 * n,
                    start_ns=rows[0].timestamp_ns,
                    end_ns=rows[-1].timestamp_ns,
                    num_frames=n,
                    lidar_topic="/lidar/points",
                    world_frame="map" if with_points else None,
                    cameras=(camera,) if with_points else (),
                    config={"detector": "geometric", "voxel_m": 0.2},
                )
            )
    return Sample(out, ("drive_a", "drive_b"), points, image, frames, labels, flags, camera)


def _all_parquet(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.parquet"))


def test_writer_lays_out_the_contract_files(tmp_path: Path) -> None:
    write_sample(tmp_path)
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == [
        "dataset.json",
        "flags/drive_a.parquet",
        "frames/drive_a.parquet",
        "frames/drive_b.parquet",
        "images/drive_a/front.parquet",
        "labels/drive_a.parquet",
        "labels/drive_b.parquet",
        "points/drive_a.parquet",
        "sequences.parquet",
    ]


def test_dataset_json_lists_sequences_and_pipeline(tmp_path: Path) -> None:
    write_sample(tmp_path)
    document = json.loads((tmp_path / "dataset.json").read_text())
    assert document["schema_version"] == 1
    assert document["sequences"] == ["drive_a", "drive_b"]
    assert isinstance(document["created_ns"], int) and document["created_ns"] > 0
    assert document["pipeline"] == {
        "version": "0.1.0",
        "detector": "geometric",
        "tracker": "ab3dmot",
        "config": {"sync": {"tol_ms": 50}},
    }


def test_every_parquet_file_carries_version_and_sequence_metadata(tmp_path: Path) -> None:
    write_sample(tmp_path)
    for path in _all_parquet(tmp_path):
        metadata = pq.read_schema(path).metadata
        assert metadata[SCHEMA_VERSION_KEY] == b"1", path
        expected = b"drive_a,drive_b" if path.name == "sequences.parquet" else b"drive_a"
        if "drive_b" in str(path.relative_to(tmp_path)):
            expected = b"drive_b"
        assert metadata[SEQUENCE_ID_KEY] == expected, path


def test_files_have_exactly_the_declared_schemas(tmp_path: Path) -> None:
    write_sample(tmp_path)
    declared = {"frames": FRAMES, "labels": LABELS, "points": POINTS, "images": IMAGES, "flags": FLAGS}
    for path in _all_parquet(tmp_path):
        kind = path.relative_to(tmp_path).parts[0]
        schema = SEQUENCES if kind == "sequences.parquet" else declared[kind]
        assert pq.read_schema(path).remove_metadata().equals(schema), path


def test_points_have_one_row_group_per_sweep_in_frame_order(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    file = pq.ParquetFile(tmp_path / "points" / "drive_a.parquet")
    frames = sample.frames["drive_a"]
    assert file.num_row_groups == frames.num_rows
    for k in range(file.num_row_groups):
        group = file.metadata.row_group(k)
        assert group.num_rows == frames["num_points"][k].as_py()
        if group.num_rows:
            stats = group.column(0).statistics
            assert stats.min == stats.max == k


def test_points_floats_use_byte_stream_split_and_zstd(tmp_path: Path) -> None:
    write_sample(tmp_path)
    metadata = pq.ParquetFile(tmp_path / "points" / "drive_a.parquet").metadata
    group = metadata.row_group(0)
    for i in range(group.num_columns):
        column = group.column(i)
        assert column.compression == "ZSTD", column.path_in_schema
        if column.path_in_schema in ("x", "y", "z", "intensity"):
            assert "BYTE_STREAM_SPLIT" in column.encodings, (column.path_in_schema, column.encodings)


def test_plain_pyarrow_and_pandas_read_the_dataset(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    labels = pq.read_table(tmp_path / "labels")  # a directory of files, no fusion code
    assert labels.num_rows == sum(t.num_rows for t in sample.labels.values())
    import pandas as pd

    frames = pd.read_parquet(tmp_path / "frames" / "drive_a.parquet")
    assert list(frames["frame_index"]) == [0, 1, 2, 3]
    assert frames["world_from_lidar"][0].shape == (16,)
    sequences = pd.read_parquet(tmp_path / "sequences.parquet")
    assert json.loads(sequences["cameras_json"][0])[0]["name"] == "front"
    points = pq.ParquetFile(tmp_path / "points" / "drive_a.parquet").read_row_group(1).to_pandas()
    np.testing.assert_array_equal(points["x"].to_numpy(), sample.points["drive_a"][1][0][:, 0])


def test_cameras_json_has_the_contract_fields(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    entry = json.loads(pq.read_table(tmp_path / "sequences.parquet")["cameras_json"][0].as_py())[0]
    assert set(entry) == {
        "name",
        "topic",
        "frame_id",
        "width",
        "height",
        "model",
        "K",
        "D",
        "lidar_from_camera",
    }
    assert len(entry["K"]) == 9 and len(entry["lidar_from_camera"]) == 16
    assert entry["lidar_from_camera"] == sample.camera.lidar_from_camera.matrix.reshape(16).tolist()


def test_writer_refuses_an_existing_dataset(tmp_path: Path) -> None:
    write_sample(tmp_path)
    before = (tmp_path / "dataset.json").read_text()
    with pytest.raises(ExportError, match=r"dataset\.json: a dataset is already there .* --overwrite"):
        DatasetWriter(tmp_path, pipeline=PIPELINE)
    assert (tmp_path / "dataset.json").read_text() == before


def test_writer_refuses_existing_target_files_without_dataset_json(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "drive_a.parquet").write_bytes(b"from fusion detect")
    with pytest.raises(ExportError, match=r"labels/drive_a\.parquet: it already exists"):
        write_sample(tmp_path)
    assert (tmp_path / "labels" / "drive_a.parquet").read_bytes() == b"from fusion detect"
    assert not (tmp_path / "dataset.json").exists()


def test_overwrite_replaces_a_dataset(tmp_path: Path) -> None:
    write_sample(tmp_path)
    first = json.loads((tmp_path / "dataset.json").read_text())["created_ns"]
    write_sample(tmp_path, overwrite=True)
    assert json.loads((tmp_path / "dataset.json").read_text())["created_ns"] >= first


def test_crash_mid_write_leaves_no_partial_file_and_no_dataset_json(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="decoder died"), DatasetWriter(tmp_path, pipeline=PIPELINE) as ds:
        seq = ds.sequence("drive_a")
        seq.write_frames(_frame_rows(2, 0, [3, 3], with_sensors=False))
        writer = seq.points()
        writer.add(0, np.zeros((3, 3)), np.zeros(3), np.zeros(3, dtype=np.int32))
        images = seq.images("front")
        images.add(0, 0, b"\xff\xd8 not really jpeg", "jpeg")
        raise RuntimeError("decoder died")
    assert not (tmp_path / "dataset.json").exists()
    assert not (tmp_path / "sequences.parquet").exists()
    assert not (tmp_path / "points" / "drive_a.parquet").exists()
    assert not (tmp_path / "images" / "drive_a" / "front.parquet").exists()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["drive_a.parquet"]  # frames: complete


def test_finish_refuses_a_sequence_without_its_labels(tmp_path: Path) -> None:
    ds = DatasetWriter(tmp_path, pipeline=PIPELINE)
    rows = _frame_rows(2, 0, [1, 1], with_sensors=False)
    ds.sequence("drive_a").write_frames(rows)
    ds.add_sequence(SequenceInfo("drive_a", "a.bag", 1, 0, 100_000_000, 2, "/points", None))
    with pytest.raises(
        ExportError, match=r"sequence 'drive_a' has no .*labels/drive_a\.parquet; write its labels"
    ):
        ds.finish()
    assert not (tmp_path / "dataset.json").exists()


def test_finish_refuses_num_frames_that_disagree_with_the_frames_file(tmp_path: Path) -> None:
    ds = DatasetWriter(tmp_path, pipeline=PIPELINE)
    seq = ds.sequence("drive_a")
    rows = _frame_rows(2, 0, [1, 1], with_sensors=False)
    seq.write_frames(rows)
    seq.write_labels(_labels("drive_a", [0, 100_000_000]))
    ds.add_sequence(SequenceInfo("drive_a", "a.bag", 1, 0, 100_000_000, 3, "/points", None))
    with pytest.raises(ExportError, match="has 2 rows but sequence 'drive_a' says num_frames = 3"):
        ds.finish()


def test_finish_refuses_while_a_points_writer_is_open(tmp_path: Path) -> None:
    ds = DatasetWriter(tmp_path, pipeline=PIPELINE)
    ds.sequence("drive_a").points()
    with pytest.raises(ExportError, match=r"points/drive_a\.parquet is still being written; close it first"):
        ds.finish()


def test_points_writer_refuses_sweeps_out_of_order(tmp_path: Path) -> None:
    ds = DatasetWriter(tmp_path, pipeline=PIPELINE)
    writer = ds.sequence("drive_a").points()
    writer.add(0, np.zeros((1, 3)), np.zeros(1), np.zeros(1, dtype=np.int64))
    with pytest.raises(ExportError, match="expected frame 1, got 2"):
        writer.add(2, np.zeros((1, 3)), np.zeros(1), np.zeros(1, dtype=np.int64))
    assert not (tmp_path / "points" / "drive_a.parquet").exists()


def test_points_table_refuses_mismatched_columns() -> None:
    with pytest.raises(ExportError, match=r"intensity \(2,\) and time_offset_ns \(3,\) must both be \(3,\)"):
        points_table(0, np.zeros((3, 3)), np.zeros(2), np.zeros(3, dtype=np.int32))
    with pytest.raises(ExportError, match="time_offset_ns does not fit int32"):
        points_table(0, np.zeros((1, 3)), np.zeros(1), np.array([2**40]))


def test_frames_table_refuses_gaps_in_frame_index() -> None:
    rows = _frame_rows(3, 0, [1, 1, 1], with_sensors=False)
    with pytest.raises(ExportError, match=r"frame_index must be 0\.\.1 in order"):
        frames_table("drive_a", [rows[0], rows[2]])


def test_writer_refuses_unsanitised_sequence_ids(tmp_path: Path) -> None:
    ds = DatasetWriter(tmp_path, pipeline=PIPELINE)
    with pytest.raises(ExportError, match=r"sequence id '\.\./evil' is not sanitised"):
        ds.sequence("../evil")


def test_image_file_names_are_sanitised(tmp_path: Path) -> None:
    ds = DatasetWriter(tmp_path, pipeline=PIPELINE)
    with ds.sequence("drive_a").images("/cam/front") as images:
        images.add(0, 0, b"x", "png")
    assert (tmp_path / "images" / "drive_a" / "_cam_front.parquet").is_file()


def test_finish_needs_a_pipeline_description(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no pipeline description; pass pipeline=PipelineInfo"):
        DatasetWriter(tmp_path).finish()


def test_overwrite_removes_the_files_of_the_previous_dataset(tmp_path: Path) -> None:
    write_sample(tmp_path)
    (tmp_path / "labels" / "not_ours.parquet").write_bytes(b"someone else's")
    with DatasetWriter(tmp_path, pipeline=PIPELINE, overwrite=True) as ds:
        seq = ds.sequence("drive_c")
        rows = _frame_rows(2, 0, [1, 1], with_sensors=False)
        seq.write_frames(rows)
        seq.write_labels(_labels("drive_c", [r.timestamp_ns for r in rows]))
        ds.add_sequence(
            SequenceInfo.from_frames(
                "drive_c",
                rows,
                source_path="c.bag",
                source_size_bytes=9,
                lidar_topic="/points",
                world_frame=None,
            )
        )
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == [
        "dataset.json",
        "frames/drive_c.parquet",
        "labels/drive_c.parquet",
        "labels/not_ours.parquet",
        "sequences.parquet",
    ]


def test_sequence_info_from_frames_takes_start_end_and_count() -> None:
    rows = _frame_rows(3, 1_000, [1, 1, 1], with_sensors=False)
    info = SequenceInfo.from_frames(
        "drive_a", rows, source_path="a.bag", source_size_bytes=1, lidar_topic="/points", world_frame=None
    )
    assert (info.start_ns, info.end_ns, info.num_frames) == (1_000, 200_001_000, 3)


def test_finish_refuses_points_that_miss_sweeps(tmp_path: Path) -> None:
    ds = DatasetWriter(tmp_path, pipeline=PIPELINE)
    seq = ds.sequence("drive_a")
    rows = _frame_rows(2, 0, [1, 1], with_sensors=False)
    with seq.points() as points:
        points.add(0, np.zeros((1, 3)), np.zeros(1), np.zeros(1, dtype=np.int32))
    seq.write_frames(rows)
    seq.write_labels(_labels("drive_a", [r.timestamp_ns for r in rows]))
    ds.add_sequence(SequenceInfo("drive_a", "a.bag", 1, 0, 100_000_000, 2, "/points", None))
    with pytest.raises(
        ExportError, match="holds 1 sweeps but sequence 'drive_a' has 2 frames; add every sweep"
    ):
        ds.finish()


def test_extend_keeps_the_listed_sequences_and_adds_new_ones(tmp_path: Path) -> None:
    from exporters.reader import open_dataset

    write_sample(tmp_path)
    old_rows = pq.read_table(tmp_path / "sequences.parquet").to_pylist()
    with DatasetWriter(tmp_path, pipeline=PIPELINE, extend=True) as ds:
        assert list(ds.existing) == ["drive_a", "drive_b"]
        assert ds.existing_pipeline == PIPELINE.to_json()
        ds.drop_existing("drive_a")  # being redone: listed again only when added again
        with pytest.raises(ExportError, match="added twice"):
            ds.add_sequence(SequenceInfo("drive_b", "/logs/b.mcap", 1, 0, 0, 0, "/lidar/points", None))
        seq = ds.sequence("drive_c")
        rows = _frame_rows(2, 9_000_000_000, [5, 6], with_sensors=False)
        seq.write_frames(rows)
        seq.write_labels(_labels("drive_c", [r.timestamp_ns for r in rows]))
        ds.add_sequence(
            SequenceInfo.from_frames(
                "drive_c",
                rows,
                source_path="/logs/c.mcap",
                source_size_bytes=9,
                lidar_topic="/l",
                world_frame=None,
            )
        )
    assert json.loads((tmp_path / "dataset.json").read_text())["sequences"] == ["drive_b", "drive_c"]
    table = pq.read_table(tmp_path / "sequences.parquet")
    assert table.to_pylist()[0] == old_rows[1]  # the kept row as it was
    assert open_dataset(tmp_path).sequence("drive_c").num_frames == 2
