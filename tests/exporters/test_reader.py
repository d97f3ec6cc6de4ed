"""Reading a dataset back: round trip, one row group per sweep read, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporters.errors import ExportError
from exporters.reader import open_dataset
from tests.exporters.test_dataset import write_sample


def _set_version(root: Path, version: Any) -> None:
    path = root / "dataset.json"
    document = json.loads(path.read_text())
    document["schema_version"] = version
    path.write_text(json.dumps(document))


def test_round_trip_reads_back_every_table(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.schema_version == 1
    assert ds.sequence_ids == ["drive_a", "drive_b"]
    assert ds.sequences.column("sequence_id").to_pylist() == ["drive_a", "drive_b"]
    assert ds.pipeline["detector"] == "geometric"
    for sid in sample.ids:
        seq = ds.sequence(sid)
        assert seq.frames().equals(sample.frames[sid])
        assert seq.labels().equals(sample.labels[sid])
        assert seq.config == {"detector": "geometric", "voxel_m": 0.2}
    seq_a = ds.sequence("drive_a")
    assert seq_a.flags().equals(sample.flags.cast(seq_a.flags().schema))
    assert ds.sequence("drive_b").flags().num_rows == 0
    assert ds.sequences.column("world_frame").to_pylist() == ["map", None]


def test_round_trip_as_pandas(tmp_path: Path) -> None:
    write_sample(tmp_path)
    labels = open_dataset(tmp_path).sequence("drive_a").labels(as_pandas=True)
    assert list(labels["track_id"][:2]) == [1, 2]
    assert labels["category"].tolist()[:2] == ["car", "pedestrian"]


def test_points_returns_exactly_that_sweep(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    seq = open_dataset(tmp_path).sequence("drive_a")
    for k, (xyz, intensity, offsets) in enumerate(sample.points["drive_a"]):
        got_xyz, got_intensity, got_offsets = seq.points(k)
        assert got_xyz.dtype == np.float32 and got_xyz.shape == (len(xyz), 3)
        np.testing.assert_array_equal(got_xyz, xyz)
        np.testing.assert_array_equal(got_intensity, intensity)
        np.testing.assert_array_equal(got_offsets, offsets)
    assert seq.points(2)[0].shape == (0, 3)  # the empty sweep


def test_points_reads_one_row_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sample(tmp_path)
    seq = open_dataset(tmp_path).sequence("drive_a")
    calls: list[int] = []
    original = pq.ParquetFile.read_row_group

    def spy(self: pq.ParquetFile, i: int, *args: Any, **kwargs: Any) -> pa.Table:
        calls.append(i)
        return original(self, i, *args, **kwargs)

    def no_full_read(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("points() read the whole file")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(pq.ParquetFile, "read", no_full_read)
    seq.points(3)
    assert calls == [3]
    assert pq.ParquetFile(tmp_path / "points" / "drive_a.parquet").num_row_groups == seq.num_frames


def test_points_refuses_a_frame_out_of_range(tmp_path: Path) -> None:
    write_sample(tmp_path)
    seq = open_dataset(tmp_path).sequence("drive_a")
    with pytest.raises(ExportError, match=r"no frame 4; it holds frames 0\.\.3"):
        seq.points(4)
    with pytest.raises(ExportError, match="'drive_b' has no points stored"):
        open_dataset(tmp_path).sequence("drive_b").points(0)


def test_image_decodes_that_frames_image(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    seq = open_dataset(tmp_path).sequence("drive_a")
    image = seq.image("front", 1)
    assert image.dtype == np.uint8 and image.shape == (24, 32, 3)
    np.testing.assert_array_equal(image, sample.image)  # PNG: lossless, RGB in and out
    assert seq.image("front", 3)[0, 0].tolist() == [120, 120, 120]
    assert seq.image_cameras() == ["front"]


def test_image_refuses_a_frame_without_an_image(tmp_path: Path) -> None:
    write_sample(tmp_path)
    seq = open_dataset(tmp_path).sequence("drive_a")
    with pytest.raises(ExportError, match="no image of camera 'front' for frame 2"):
        seq.image("front", 2)
    with pytest.raises(ExportError, match=r"no images of camera 'rear' .*cameras with images: front"):
        seq.image("rear", 0)


def test_calibration_returns_cameras_and_transforms(tmp_path: Path) -> None:
    sample = write_sample(tmp_path)
    calibration = open_dataset(tmp_path).sequence("drive_a").calibration
    camera, lidar_from_camera = calibration["front"]
    expected = sample.camera
    assert camera.name == "front" and camera.frame_id == "cam_front"
    assert (camera.width, camera.height, camera.model) == (32, 24, "plumb_bob")
    np.testing.assert_array_equal(camera.K, expected.camera.K)
    assert camera.D == expected.camera.D
    assert lidar_from_camera.isclose(expected.lidar_from_camera)
    assert open_dataset(tmp_path).sequence("drive_b").calibration == {}


def test_open_refuses_a_directory_without_dataset_json(tmp_path: Path) -> None:
    write_sample(tmp_path)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(ExportError, match=r"not a complete fusion dataset \(no dataset\.json\).*re-run it"):
        open_dataset(tmp_path)


def test_open_refuses_an_unknown_schema_version(tmp_path: Path) -> None:
    write_sample(tmp_path)
    _set_version(tmp_path, 2)
    with pytest.raises(
        ExportError, match=r"schema version 2 is unknown to this fusion, which reads version\(s\) 1"
    ):
        open_dataset(tmp_path)


def test_open_refuses_a_damaged_dataset_json(tmp_path: Path) -> None:
    write_sample(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ExportError, match=r"dataset\.json: cannot be read as JSON"):
        open_dataset(tmp_path)


def test_reading_a_file_of_another_version_is_refused(tmp_path: Path) -> None:
    write_sample(tmp_path)
    path = tmp_path / "labels" / "drive_a.parquet"
    table = pq.read_table(path)
    metadata = {**table.schema.metadata, b"fusion.schema_version": b"2"}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    with pytest.raises(ExportError, match=r"fusion\.schema_version is '2', the dataset's is 1"):
        open_dataset(tmp_path).sequence("drive_a").labels()


def test_sequence_refuses_an_unknown_id(tmp_path: Path) -> None:
    write_sample(tmp_path)
    with pytest.raises(ExportError, match="no sequence 'drive_z'; it holds: drive_a, drive_b"):
        open_dataset(tmp_path).sequence("drive_z")


def test_image_refuses_a_frame_the_sequence_does_not_have(tmp_path: Path) -> None:
    write_sample(tmp_path)
    seq = open_dataset(tmp_path).sequence("drive_a")
    for frame in (4, -1):  # said "no image was within the sync tolerance", as for a real frame
        with pytest.raises(ExportError, match=rf"no frame {frame}; the sequence holds frames 0\.\.3"):
            seq.image("front", frame)


def _flip_page_bytes(path: Path, column: str) -> None:
    """Flip 4 bytes at the end of `column`'s first data page (row group 0), inside its values."""
    chunk = pq.ParquetFile(path).metadata.row_group(0)
    meta = next(chunk.column(i) for i in range(chunk.num_columns) if chunk.column(i).path_in_schema == column)
    end = meta.data_page_offset + meta.total_compressed_size
    data = bytearray(path.read_bytes())
    for k in range(end - 8, end - 4):
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_page_are_refused_not_read_as_other_numbers(tmp_path: Path) -> None:
    from exporters.validate import validate_dataset

    sample = write_sample(tmp_path)
    points = tmp_path / "points" / "drive_a.parquet"
    _flip_page_bytes(points, "x")
    # random floats do not compress: zstd keeps them as a raw block, and Parquet without page
    # checksums hands the flipped bytes back as other coordinates
    naive = pq.ParquetFile(points).read_row_group(0, columns=["x"]).column("x").to_numpy()
    assert not np.array_equal(naive, sample.points["drive_a"][0][0][:, 0])
    with pytest.raises(ExportError, match=r"drive_a\.parquet: frame 0 cannot be read .*checksum.*re-run it"):
        open_dataset(tmp_path).sequence("drive_a").points(0)
    labels = tmp_path / "labels" / "drive_a.parquet"
    _flip_page_bytes(labels, "x")
    with pytest.raises(ExportError, match=r"labels/drive_a\.parquet: corrupt Parquet file .*checksum"):
        open_dataset(tmp_path).sequence("drive_a").labels()
    assert any("labels/drive_a.parquet: corrupt Parquet file" in p for p in validate_dataset(tmp_path))
