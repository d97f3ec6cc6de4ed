"""`fusion view --save`: a Rerun recording of a dataset, read back and checked entity by entity."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from rerun.chunk import RrdReader

from exporters.reader import open_dataset
from fusion.cli import main
from fusion.scene import CATEGORY_IDS
from tests.fusion.review_dataset import SEQUENCE, build_review_dataset, review_dataset

ROOT = f"/{SEQUENCE}"
CAMERAS = ("camera_front", "camera_left", "camera_rear")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return review_dataset(tmp_path_factory)


@pytest.fixture(scope="module")
def recording(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rrd = tmp_path_factory.mktemp("view") / "sim.rrd"
    assert main(["view", str(dataset), "--save", str(rrd)]) == 0
    return rrd


@pytest.fixture(scope="module")
def entities(recording: Path) -> dict[str, dict[str, list[Any]]]:
    return _read(recording)


def _cell(row: pa.Array) -> Any:
    """One row (a one-row slice) of a component column: numeric lists as numpy arrays, the rest as Python."""
    kind = row.type
    if pa.types.is_list(kind) and pa.types.is_fixed_size_list(kind.value_type):
        instances = row.flatten()  # flatten() honours the slice's offsets (.values would not)
        return instances.flatten().to_numpy(zero_copy_only=False).reshape(-1, kind.value_type.list_size)
    if pa.types.is_list(kind) and pa.types.is_list(kind.value_type):  # strips of points, blobs of bytes
        instances = row.flatten()
        inner = kind.value_type.value_type
        width = inner.list_size if pa.types.is_fixed_size_list(inner) else None
        flat = instances.flatten()
        values = (flat.flatten() if width else flat).to_numpy(zero_copy_only=False)
        step = width or 1
        ends = np.cumsum([0, *(len(v) for v in instances)])
        parts = [values[step * a : step * b] for a, b in itertools.pairwise(ends)]
        return [p.reshape(-1, width) if width else p for p in parts]
    return row.to_pylist()[0]


def _read(rrd: Path) -> dict[str, dict[str, list[Any]]]:
    """entity path -> column name -> values, one per logged row, in `frame` order (static rows first);
    `sweep_time` as int64 ns."""
    rows: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for chunk in RrdReader(rrd).stream():
        batch = chunk.to_record_batch()
        names = [n for n in batch.schema.names if n != "rerun.controls.RowId"]
        valid = {n: batch.column(n).is_valid().to_pylist() for n in names}
        times = {
            n: batch.column(n).cast(pa.int64()).to_pylist() for n in ("frame", "sweep_time") if n in names
        }
        for i in range(batch.num_rows):
            row = {
                n: times[n][i] if n in times else _cell(batch.column(n).slice(i, 1))
                for n in names
                if valid[n][i]
            }
            rows[chunk.entity_path].append((row.get("frame", -1), row))
    entities: dict[str, dict[str, list[Any]]] = {}
    for path, entries in rows.items():
        entries.sort(key=lambda e: e[0])
        merged: dict[str, list[Any]] = defaultdict(list)
        for _, row in entries:
            for name, value in row.items():
                merged[name].append(value)
        entities[path] = dict(merged)
    return entities


def test_recording_holds_every_sweep_on_one_ns_timeline(
    dataset: Path, entities: dict[str, dict[str, list[Any]]]
) -> None:
    seq = open_dataset(dataset).sequence(SEQUENCE)
    frames = seq.frames()
    stamps = frames.column("timestamp_ns").to_pylist()
    points = entities[f"{ROOT}/world/lidar/points"]
    assert points["frame"] == list(range(len(stamps)))
    logged = pa.array(points["sweep_time"], pa.timestamp("ns")).cast(pa.int64()).to_pylist()
    assert logged == stamps  # the sweeps' header stamps, to the nanosecond
    # every sweep's points, all of them, in the lidar frame under the sweep's world pose
    assert [len(p) for p in points["Points3D:positions"]] == frames.column("num_points").to_pylist()
    xyz, _, _ = seq.points(7)
    np.testing.assert_allclose(np.asarray(points["Points3D:positions"][7]), xyz, atol=1e-6)
    colors = np.asarray(points["Points3D:colors"][7], dtype=np.uint32)
    assert len(np.unique(colors)) > 20  # coloured by height, not one colour
    pose = entities[f"{ROOT}/world/lidar"]
    world_from_lidar = np.asarray(frames.column("world_from_lidar")[7].as_py()).reshape(4, 4)
    np.testing.assert_allclose(pose["Transform3D:translation"][7][0], world_from_lidar[:3, 3], atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(pose["Transform3D:mat3x3"][7][0]).reshape(3, 3).T, world_from_lidar[:3, :3], atol=1e-6
    )  # Rerun stores the 3x3 column-major


def test_recording_boxes_carry_category_track_id_and_velocity(
    dataset: Path, entities: dict[str, dict[str, list[Any]]]
) -> None:
    labels = open_dataset(dataset).sequence(SEQUENCE).labels().to_pandas()
    boxes = entities[f"{ROOT}/world/lidar/boxes"]
    per_frame = labels.groupby("frame_index").size().reindex(range(30), fill_value=0).tolist()
    assert [len(c) for c in boxes["Boxes3D:centers"]] == per_frame
    assert sum(per_frame) == len(labels) > 600
    frame = labels[labels.frame_index == 12].sort_values("track_id")
    np.testing.assert_allclose(np.asarray(boxes["Boxes3D:centers"][12]), frame[["x", "y", "z"]], atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(boxes["Boxes3D:half_sizes"][12]), 0.5 * frame[["length", "width", "height"]], atol=1e-5
    )
    quats = np.asarray(boxes["Boxes3D:quaternions"][12])  # x y z w about +z
    np.testing.assert_allclose(2.0 * np.arctan2(quats[:, 2], quats[:, 3]), frame["yaw"], atol=1e-5)
    assert boxes["Boxes3D:labels"][12] == [
        f"{c} #{t}" for c, t in zip(frame.category, frame.track_id, strict=True)
    ]
    assert boxes["Boxes3D:class_ids"][12] == [CATEGORY_IDS[c] for c in frame.category]
    # the annotation context names and colours every category
    context = entities[ROOT]["AnnotationContext:context"][0][0]
    assert {c["class_description"]["info"]["label"]: c["class_id"] for c in context} == CATEGORY_IDS
    # velocities: one arrow per box that has one; trails: one per box, ending at its world centre
    arrows = entities[f"{ROOT}/world/lidar/velocities"]
    assert len(arrows["Arrows3D:vectors"][12]) == int(frame.velocity_x.notna().sum()) > 0
    trails = entities[f"{ROOT}/world/tracks"]
    strips = trails["LineStrips3D:strips"][12]
    assert len(strips) == len(frame)
    np.testing.assert_allclose(
        np.asarray([s[-1] for s in strips]), frame[["world_x", "world_y", "world_z"]], atol=1e-4
    )
    assert max(len(s) for s in strips) == 13  # a track seen since frame 0 has 13 centres by frame 12


def test_recording_holds_each_cameras_images_with_projected_boxes_and_points(
    dataset: Path, entities: dict[str, dict[str, list[Any]]]
) -> None:
    seq = open_dataset(dataset).sequence(SEQUENCE)
    labels = seq.labels().to_pandas()
    chosen = [{c["name"] for c in cams} for cams in seq.frames().column("cameras").to_pylist()]
    for name in CAMERAS:
        base = f"{ROOT}/cameras/{name}"
        images = entities[f"{base}/image"]
        assert len(images["EncodedImage:blob"]) == sum(name in c for c in chosen) == 30
        pixels = cv2.imdecode(np.asarray(images["EncodedImage:blob"][3][0], dtype=np.uint8), cv2.IMREAD_COLOR)
        assert pixels is not None and pixels.shape == (400, 640, 3)
        assert float(np.abs(pixels.astype(float) - seq.image(name, 3)[..., ::-1]).mean()) < 4.0  # JPEG of it
        boxes = entities[f"{base}/boxes"]
        wires = entities[f"{base}/wireframes"]
        points = entities[f"{base}/points"]
        assert len(boxes["Boxes2D:centers"]) == len(points["Points2D:positions"]) == 30
        # the boxes seen by this camera: about those the labels' camera_boxes list (those are at the
        # sweep's stamp; the viewer's are at the image's, so a box at the image border may differ)
        stored = [
            sum(any(b["camera"] == name for b in boxes_) for boxes_ in frame.camera_boxes)
            for _, frame in labels.groupby("frame_index")
        ]
        shown = [len(c) for c in boxes["Boxes2D:centers"]]
        assert sum(shown) > 100
        assert abs(sum(shown) - sum(stored)) <= 0.1 * sum(stored)
        assert all(
            len(w) >= len(c)
            for w, c in zip(wires["LineStrips2D:strips"], boxes["Boxes2D:centers"], strict=True)
        )
        centers = np.concatenate([np.asarray(c).reshape(-1, 2) for c in boxes["Boxes2D:centers"]])
        assert ((centers >= -0.5) & (centers <= [639.5, 399.5])).all()  # extents are clipped to the image
        uv = np.asarray(points["Points2D:positions"][3])
        assert len(uv) > 1000 and ((uv >= -0.5) & (uv < [639.5, 399.5])).all()
    frustum = entities[f"{ROOT}/world/lidar/camera_front"]
    assert np.asarray(frustum["Pinhole:resolution"][0]).tolist() == [[640.0, 400.0]]


def test_rerun_itself_verifies_the_recording(recording: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rerun", "rrd", "verify", str(recording)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_view_of_an_unknown_sequence_is_a_one_line_error_and_writes_nothing(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rrd = tmp_path / "x.rrd"
    assert main(["view", str(dataset), "--sequence", "nope", "--save", str(rrd)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sequence 'nope'; it holds: sim_drive" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_view_refuses_to_overwrite_a_recording(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rrd = tmp_path / "keep.rrd"
    rrd.write_bytes(b"keep me")
    assert main(["view", str(dataset), "--save", str(rrd)]) == 2
    assert "exists; remove it or pass --overwrite" in capsys.readouterr().err
    assert rrd.read_bytes() == b"keep me"
    assert main(["view", str(dataset), "--save", str(tmp_path / "x.txt")]) == 2
    assert "give --save FILE.rrd" in capsys.readouterr().err


def test_view_without_a_display_says_to_save_a_recording(
    dataset: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["view", str(dataset)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "no display to open the Rerun viewer on" in err[0] and "--save FILE.rrd" in err[0]
    )


def test_view_of_a_dataset_without_points_or_images_logs_boxes_only(tmp_path: Path) -> None:
    out = build_review_dataset(tmp_path / "bare", points=False, images=False)
    rrd = tmp_path / "bare.rrd"
    assert main(["view", str(out), "--save", str(rrd)]) == 0
    entities = _read(rrd)
    assert not any("/cameras/" in path for path in entities)
    assert all(len(p) == 0 for p in entities[f"{ROOT}/world/lidar/points"]["Points3D:positions"])
    assert sum(len(b) for b in entities[f"{ROOT}/world/lidar/boxes"]["Boxes3D:centers"]) > 600
    png = tmp_path / "bare.png"
    assert main(["render", str(out), "--sequence", SEQUENCE, "--frame", "3", "--out", str(png)]) == 0
    with Image.open(png) as image:
        assert image.size[0] < image.size[1] * 1.3  # the bird's-eye view alone
