"""`fusion.prelabel.finish_sequence`: the label rows of a log, made as whole columns, each sit in its
own sweep: its stamp, its LiDAR frame (world copy = the sweep's pose applied), and projected only
into the cameras that sweep was paired with; tracked and untracked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from exporters.reader import open_dataset
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
