"""`fusion.prelabel`: the label rows of a log, made as whole columns, each sit in its own sweep
(its stamp, its LiDAR frame: world copy = the sweep's pose applied, and projected only into the
cameras that sweep was paired with; tracked and untracked), and the labels' projection into the
cameras in threaded batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from calib.camera import Camera
from calib.projection import boxes_to_image
from calib.transform import Transform
from exporters.reader import open_dataset
from fusion import prelabel
from fusion.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"


@pytest.fixture(scope="module", params=[[], ["--no-track"]], ids=["tracked", "untracked"])
def dataset(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pa.Table, pa.Table]:
    out = tmp_path_factory.mktemp("detect")
    assert main(["detect", str(SAMPLE), "--out", str(out), "--quiet", "--no-points", *request.param]) == 0
    seq = open_dataset(out).sequence("sim_drive")
    return seq.labels(), seq.frames()


def test_each_label_row_is_in_its_own_sweeps_lidar_frame(dataset: tuple[pa.Table, pa.Table]) -> None:
    labels, frames = dataset
    frame = labels.column("frame_index").to_numpy()
    assert labels.num_rows > 100 and len(np.unique(frame)) > 20
    assert (np.diff(frame) >= 0).all()  # sorted by sweep
    stamps = frames.column("timestamp_ns").to_numpy()
    assert (labels.column("timestamp_ns").to_numpy() == stamps[frame]).all()
    poses = np.array(frames.column("world_from_lidar").to_pylist(), np.float64).reshape(-1, 4, 4)
    lidar = np.stack([labels.column(c).to_numpy() for c in ("x", "y", "z")], axis=1)
    world = np.stack([labels.column(c).to_numpy() for c in ("world_x", "world_y", "world_z")], axis=1)
    expected = np.einsum("nij,nj->ni", poses[frame, :3, :3], lidar) + poses[frame, :3, 3]
    assert np.allclose(world, expected, atol=1e-9)
    heading = np.arctan2(poses[frame, 1, 0], poses[frame, 0, 0])
    turned = labels.column("world_yaw").to_numpy() - labels.column("yaw").to_numpy() - heading
    assert np.allclose(np.angle(np.exp(1j * turned)), 0.0, atol=1e-9)


def test_label_rows_are_projected_only_into_their_sweeps_cameras(dataset: tuple[pa.Table, pa.Table]) -> None:
    labels, frames = dataset
    paired = [{c["name"] for c in cams} for cams in frames.column("cameras").to_pylist()]
    frame = labels.column("frame_index").to_pylist()
    boxes = labels.column("camera_boxes").to_pylist()
    assert sum(len(b) for b in boxes) > labels.num_rows / 4  # most boxes are seen by some camera
    for k, row in zip(frame, boxes, strict=True):
        names = [b["camera"] for b in row]
        assert names == sorted(names) and set(names) <= paired[k]


OPTICAL_FROM_LIDAR = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def _camera(name: str, distortion: tuple[float, ...]) -> Camera:
    k = np.array([[700.0, 0.0, 640.0], [0.0, 700.0, 360.0], [0.0, 0.0, 1.0]])
    return Camera(name, f"{name}_optical", 1280, 720, "plumb_bob", k, distortion)


def test_labels_are_projected_in_threaded_batches_as_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    m = 2 * prelabel.PROJECTION_BATCH + 300  # three batches per camera
    boxes = np.column_stack(
        [
            rng.uniform(-10.0, 60.0, m),  # some behind the camera, some far ahead
            rng.uniform(-30.0, 30.0, m),
            rng.uniform(-2.0, 1.0, m),
            rng.uniform(0.5, 5.0, (m, 3)),
            rng.uniform(-np.pi, np.pi, m),
        ]
    )
    front = (
        _camera("front", (-0.3, 0.1, 0.001, -0.002, 0.0)),
        Transform("front_optical", "lidar", OPTICAL_FROM_LIDAR, np.zeros(3)),
    )
    yaw = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # looking left
    left = (
        _camera("left", ()),
        Transform("left_optical", "lidar", OPTICAL_FROM_LIDAR @ yaw, np.array([0.0, 0.1, 0.0])),
    )
    rows = [np.arange(m), rng.permutation(m)[: m // 2]]
    jobs = [(rows[0], *front), (rows[1], *left)]
    expected = [boxes_to_image(boxes[r], camera, t) for r, (_, camera, t) in zip(rows, jobs, strict=True)]

    for threads in (4, 1):
        monkeypatch.setattr(prelabel, "PROJECTION_THREADS", threads)
        got = prelabel._project_all(boxes, jobs)
        for (ext, vis), (want_ext, want_vis) in zip(got, expected, strict=True):
            np.testing.assert_array_equal(vis, want_vis)
            np.testing.assert_array_equal(ext, want_ext)  # NaN rows where not visible, equal too
    assert 0 < expected[0][1].sum() < m and 0 < expected[1][1].sum() < len(rows[1])
    ext, vis = prelabel.project_boxes(boxes, *front)
    np.testing.assert_array_equal(ext, expected[0][0])


def test_projection_threads_need_no_cpu_affinity_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """`os.sched_getaffinity` is Linux's; elsewhere (macOS) the core count is the machine's."""
    import os

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert prelabel._usable_cores() == 3
    camera = _camera("front", ())
    boxes = np.array([[10.0, 0.0, 0.0, 4.0, 1.8, 1.5, 0.0]] * (prelabel.PROJECTION_BATCH + 1))
    transform = Transform("front_optical", "lidar", OPTICAL_FROM_LIDAR, np.zeros(3))
    ext, vis = prelabel.project_boxes(boxes, camera, transform)  # two batches, on threads
    assert vis.all() and np.isfinite(ext).all()
