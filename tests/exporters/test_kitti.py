"""KITTI tracking export per camera: valid lines and calibration, boxes back in the lidar frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from calib.loaders import RECT, VELODYNE, load_calibration
from exporters.dataset import SequenceCamera
from exporters.errors import ExportError
from exporters.formats import export_dataset
from exporters.kitti import KITTI_TYPES, read_kitti_tracking
from exporters.reader import open_dataset
from fusion.evaluation import KITTI_CATEGORIES
from fusion.evaluation.errors import EvaluationError

KITTI_DEVKIT_TYPES = {
    "Car",
    "Van",
    "Truck",
    "Pedestrian",
    "Person_sitting",
    "Cyclist",
    "Tram",
    "Misc",
    "DontCare",
}


@pytest.fixture(scope="module")
def kitti_root(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("kitti")
    export_dataset(sample_dataset, "kitti", dest)
    return dest


def _visible(labels: pa.Table, camera: str) -> pa.Table:
    mask = [any(b["camera"] == camera for b in boxes) for boxes in labels.column("camera_boxes").to_pylist()]
    return labels.filter(pa.array(mask))


def test_every_camera_gets_kitti_tracking_lines_and_a_calib_file(
    sample_dataset: Path, kitti_root: Path
) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    labels = seq.labels()
    for entry in seq.cameras:
        name = entry["name"]
        lines = (kitti_root / name / "label_02" / "sim_drive.txt").read_text().splitlines()
        visible = _visible(labels, name)
        assert len(lines) == visible.num_rows > 0
        depth = []
        for line, row in zip(lines, visible.to_pylist(), strict=True):
            tokens = line.split()
            assert len(tokens) == 18  # the tracking result format: 17 columns and a score
            assert int(tokens[0]) == row["frame_index"] and int(tokens[1]) == row["track_id"]
            assert tokens[2] in KITTI_DEVKIT_TYPES and tokens[2] == KITTI_TYPES[row["category"]]
            h, w, length = (float(t) for t in tokens[10:13])
            assert (h, w, length) == pytest.approx((row["height"], row["width"], row["length"]), abs=1e-6)
            x, z, ry, alpha = float(tokens[13]), float(tokens[15]), float(tokens[16]), float(tokens[5])
            assert np.angle(np.exp(1j * (alpha - (ry - np.arctan2(x, z))))) == pytest.approx(0.0, abs=2e-6)
            hit = next(b for b in row["camera_boxes"] if b["camera"] == name)
            assert [float(t) for t in tokens[6:10]] == pytest.approx(
                [hit["x_min"], hit["y_min"], hit["x_max"], hit["y_max"]], abs=0.006
            )
            depth.append(z)
        assert np.mean(np.array(depth) > 0) > 0.95  # in the camera's optical frame: in front of it


def test_calib_file_loads_back_as_the_camera(sample_dataset: Path, kitti_root: Path) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    for entry in seq.cameras:
        cam = SequenceCamera.from_json(entry)
        calibration = load_calibration(kitti_root / cam.camera.name / "calib" / "sim_drive.txt")
        rect_from_velodyne = calibration.lookup(RECT, VELODYNE).matrix
        assert np.allclose(rect_from_velodyne, cam.lidar_from_camera.inverse().matrix, atol=1e-12)
        assert np.array_equal(calibration.cameras["image_02"].K, cam.camera.K)


def test_round_trip_brings_the_visible_boxes_back_in_the_lidar_frame(
    sample_dataset: Path, kitti_root: Path
) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    labels = seq.labels()
    for entry in seq.cameras:
        (imported,) = read_kitti_tracking(kitti_root / entry["name"])
        assert imported.sequence_id == "sim_drive"
        got = imported.labels
        want = _visible(labels, entry["name"])
        assert got.column("frame_index").equals(want.column("frame_index"))
        assert got.column("track_id").equals(want.column("track_id"))
        expected_categories = [KITTI_CATEGORIES[KITTI_TYPES[c]] for c in want.column("category").to_pylist()]
        assert got.column("category").to_pylist() == expected_categories
        for name in ("x", "y", "z", "length", "width", "height"):
            assert np.allclose(got.column(name).to_numpy(), want.column(name).to_numpy(), atol=2e-6), name
        dyaw = got.column("yaw").to_numpy() - want.column("yaw").to_numpy()
        assert np.allclose(np.angle(np.exp(1j * dyaw)), 0.0, atol=2e-6)
        assert np.allclose(got.column("score").to_numpy(), want.column("score").to_numpy(), atol=1e-6)
        last = int(got.column("frame_index").to_numpy().max())
        assert [f.timestamp_ns for f in imported.frames] == [k * 100_000_000 for k in range(last + 1)]


def test_a_single_label_file_finds_its_calibration(kitti_root: Path) -> None:
    (imported,) = read_kitti_tracking(kitti_root / "camera_front" / "label_02" / "sim_drive.txt")
    assert imported.labels.num_rows > 0


def test_label_file_without_calibration_is_refused(kitti_root: Path, tmp_path: Path) -> None:
    (tmp_path / "label_02").mkdir()
    label = tmp_path / "label_02" / "0001.txt"
    label.write_text((kitti_root / "camera_front" / "label_02" / "sim_drive.txt").read_text())
    with pytest.raises(ExportError, match=r"no calibration .*calib/0001.txt"):
        read_kitti_tracking(tmp_path)


def test_folder_without_label_02_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no label_02/ folder"):
        read_kitti_tracking(tmp_path)


def test_malformed_line_is_refused_with_its_line_number(kitti_root: Path, tmp_path: Path) -> None:
    for sub in ("label_02", "calib"):
        (tmp_path / sub).mkdir()
    lines = (kitti_root / "camera_front" / "label_02" / "sim_drive.txt").read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:12])
    (tmp_path / "label_02" / "s.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "calib" / "s.txt").write_text(
        (kitti_root / "camera_front" / "calib" / "sim_drive.txt").read_text()
    )
    with pytest.raises(EvaluationError, match=r"s.txt:3: 12 columns"):
        read_kitti_tracking(tmp_path)


def test_a_sequence_without_cameras_is_refused(sample_dataset: Path, tmp_path: Path) -> None:
    import shutil

    import pyarrow.parquet as pq

    copy = tmp_path / "ds"
    shutil.copytree(sample_dataset, copy, ignore=shutil.ignore_patterns("images", "points"))
    table = pq.read_table(copy / "sequences.parquet")
    index = table.schema.get_field_index("cameras_json")
    no_cameras = table.set_column(index, table.schema.field(index), pa.array(["[]"] * table.num_rows))
    pq.write_table(no_cameras.replace_schema_metadata(table.schema.metadata), copy / "sequences.parquet")
    with pytest.raises(ExportError, match="'sim_drive' has no cameras"):
        export_dataset(copy, "kitti", tmp_path / "k")
    assert not (tmp_path / "k").exists() or not any((tmp_path / "k").iterdir())
