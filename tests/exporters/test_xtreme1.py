"""Xtreme1 upload layout: the folders its upload parser expects, PCD clouds, pinhole camera configs that
project like our cameras on undistorted images, and pre-label results that read back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from exporters.dataset import SequenceCamera
from exporters.formats import export_dataset
from exporters.reader import open_dataset
from exporters.xtreme1 import read_pcd, read_xtreme1

RESULT_OBJECT_KEYS = {"type", "className", "trackId", "trackName", "contour", "modelConfidence", "modelClass"}


@pytest.fixture(scope="module")
def scene(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    (path,) = export_dataset(sample_dataset, "xtreme1", tmp_path_factory.mktemp("xtreme1"))
    return path


def test_scene_folder_has_the_upload_layout(sample_dataset: Path, scene: Path) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    assert scene.name == "scene_sim_drive"  # Xtreme1 makes a folder named scene_* one Scene
    folders = {p.name for p in scene.iterdir()}
    cameras = [f"camera_image_{i}" for i in range(len(seq.cameras))]
    assert folders == {"lidar_point_cloud_0", "camera_config", "result", *cameras}
    stems = {f: sorted(p.stem for p in (scene / f).iterdir()) for f in folders}
    names = stems["lidar_point_cloud_0"]
    assert len(names) == seq.num_frames and all(s == names for s in stems.values())
    assert [int(n.split("_")[0]) for n in names] == list(range(seq.num_frames))  # natural order = frame order
    assert {p.suffix for p in (scene / "camera_image_0").iterdir()} == {".jpg"}


def test_point_clouds_are_the_datasets_points(sample_dataset: Path, scene: Path) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    files = sorted((scene / "lidar_point_cloud_0").iterdir())
    header = files[0].read_bytes()[:300].decode("ascii", errors="replace")
    assert "FIELDS x y z intensity" in header and "DATA binary" in header
    for index in (0, seq.num_frames - 1):
        xyz, intensity = read_pcd(files[index])
        want_xyz, want_intensity, _ = seq.points(index)
        assert np.array_equal(xyz, want_xyz) and np.array_equal(intensity, want_intensity)


def test_camera_config_projects_like_the_camera_on_the_undistorted_image(
    sample_dataset: Path, scene: Path
) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    config = json.loads(next((scene / "camera_config").iterdir()).read_text())
    assert len(config) == len(seq.cameras)
    xyz, _, _ = seq.points(0)
    for i, (entry, raw) in enumerate(zip(config, seq.cameras, strict=True)):
        assert set(entry) == {"camera_internal", "camera_external", "rowMajor", "width", "height"}
        assert entry["rowMajor"] is True and (entry["width"], entry["height"]) == (
            raw["width"],
            raw["height"],
        )
        cam = SequenceCamera.from_json(raw)
        camera_from_lidar = np.asarray(entry["camera_external"]).reshape(4, 4)
        inside = cam.camera.name
        points = xyz[:: max(1, len(xyz) // 2000)].astype(np.float64)
        in_camera = points @ camera_from_lidar[:3, :3].T + camera_from_lidar[:3, 3]
        k = entry["camera_internal"]
        near_axis = (in_camera[:, 2] > 2.0) & (
            np.hypot(in_camera[:, 0], in_camera[:, 1]) < 0.6 * in_camera[:, 2]
        )
        pts = in_camera[near_axis]
        pinhole = np.stack(
            [k["fx"] * pts[:, 0] / pts[:, 2] + k["cx"], k["fy"] * pts[:, 1] / pts[:, 2] + k["cy"]], 1
        )
        distorted, _, valid = cam.camera.project(pts)
        pts, pinhole, distorted = pts[valid], pinhole[valid], distorted[valid]
        kk, dd = np.asarray(cam.camera.K), np.asarray(cam.camera.D)
        if cam.camera.model == "equidistant":
            undone = cv2.fisheye.undistortPoints(distorted.reshape(-1, 1, 2), kk, dd, P=kk)
        else:
            undone = cv2.undistortPoints(distorted.reshape(-1, 1, 2), kk, dd, P=kk)
        assert len(pts) > 20, inside
        assert np.median(np.abs(undone.reshape(-1, 2) - pinhole)) < 0.05, inside
        image = cv2.imread(str(next((scene / f"camera_image_{i}").iterdir())))
        assert image.shape == (raw["height"], raw["width"], 3)


def test_results_hold_3d_boxes_with_track_ids_and_model_confidence(sample_dataset: Path, scene: Path) -> None:
    labels = open_dataset(sample_dataset).sequence("sim_drive").labels()
    results = sorted((scene / "result").iterdir())
    objects = json.loads(results[0].read_text())["objects"]
    first = labels.slice(0, 1).to_pylist()[0]
    obj = next(o for o in objects if o["trackId"] == str(first["track_id"]))
    assert set(obj) == RESULT_OBJECT_KEYS and obj["type"] == "3D_BOX"
    assert obj["modelConfidence"] == pytest.approx(first["score"]) and obj["className"] == first["category"]
    contour = obj["contour"]
    assert contour["center3D"] == {"x": first["x"], "y": first["y"], "z": first["z"]}
    assert contour["size3D"] == {"x": first["length"], "y": first["width"], "z": first["height"]}
    assert contour["rotation3D"] == {"x": 0.0, "y": 0.0, "z": first["yaw"]}
    assert sum(len(json.loads(p.read_text())["objects"]) for p in results) == labels.num_rows


def test_round_trip_keeps_boxes_tracks_scores_and_stamps(sample_dataset: Path, scene: Path) -> None:
    want = open_dataset(sample_dataset).sequence("sim_drive").labels()
    got = read_xtreme1(scene)
    for name in (
        "sequence_id",
        "frame_index",
        "timestamp_ns",
        "track_id",
        "category",
        "score",
        "x",
        "y",
        "z",
        "length",
        "width",
        "height",
        "yaw",
        "num_points",
    ):
        assert got.column(name).equals(want.column(name)), name


def test_a_dataset_without_images_gives_point_clouds_and_results_only(
    sample_dataset: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(sample_dataset, copy, ignore=shutil.ignore_patterns("images"))
    (scene,) = export_dataset(copy, "xtreme1", tmp_path / "x")
    assert {p.name for p in scene.iterdir()} == {"lidar_point_cloud_0", "camera_config", "result"}
    assert json.loads(next((scene / "camera_config").iterdir()).read_text()) == []
