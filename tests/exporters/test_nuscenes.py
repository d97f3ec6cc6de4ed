"""nuScenes-style per-frame JSON: the devkit's tracking results format, read back into the lidar frame."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exporters.errors import ExportError
from exporters.formats import export_dataset
from exporters.nuscenes import NUSCENES_NAMES, read_nuscenes, sample_token
from exporters.reader import open_dataset

# nuscenes-devkit, python-sdk/nuscenes/eval/tracking/README.md ("Results format") and
# eval/detection/README.md: the keys of a submission and of each sample_result, and the classes.
TRACKING_NAMES = {"bicycle", "bus", "car", "motorcycle", "pedestrian", "trailer", "truck"}
META_KEYS = {"use_camera", "use_lidar", "use_radar", "use_map", "use_external"}
RESULT_KEYS = {
    "sample_token": str,
    "translation": list,
    "size": list,
    "rotation": list,
    "velocity": list,
    "tracking_id": str,
    "tracking_name": str,
    "tracking_score": float,
    "detection_name": str,
    "detection_score": float,
    "attribute_name": str,
}


@pytest.fixture(scope="module")
def document_path(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    (path,) = export_dataset(sample_dataset, "nuscenes", tmp_path_factory.mktemp("nuscenes"))
    return path


def test_document_follows_the_devkit_results_format(sample_dataset: Path, document_path: Path) -> None:
    seq = open_dataset(sample_dataset).sequence("sim_drive")
    document: dict[str, Any] = json.loads(document_path.read_text())
    assert set(document["meta"]) == META_KEYS and all(isinstance(v, bool) for v in document["meta"].values())
    assert set(document["results"]) == {sample_token("sim_drive", i) for i in range(seq.num_frames)}
    count = 0
    for token, boxes in document["results"].items():
        for box in boxes:
            count += 1
            assert {k: type(v) for k, v in box.items()} == RESULT_KEYS
            assert box["sample_token"] == token
            assert len(box["translation"]) == 3 and len(box["size"]) == 3 and len(box["velocity"]) == 2
            assert all(s > 0 for s in box["size"])
            assert math.isclose(sum(q * q for q in box["rotation"]), 1.0, abs_tol=1e-12)
            assert box["tracking_name"] in TRACKING_NAMES and box["detection_name"] == box["tracking_name"]
            assert 0.0 <= box["tracking_score"] <= 1.0
    known = pc.is_in(seq.labels()["category"], value_set=pa.array(list(NUSCENES_NAMES)))
    assert count == pc.sum(known).as_py()
    assert document["fusion"]["dropped"]["unknown"] == seq.labels().num_rows - count


def test_boxes_are_in_the_world_frame_when_the_sweep_has_a_pose(
    sample_dataset: Path, document_path: Path
) -> None:
    first = open_dataset(sample_dataset).sequence("sim_drive").labels().slice(0, 1).to_pylist()[0]
    document = json.loads(document_path.read_text())
    token = sample_token("sim_drive", first["frame_index"])
    box = next(b for b in document["results"][token] if b["tracking_id"] == str(first["track_id"]))
    assert box["translation"] == [first["world_x"], first["world_y"], first["world_z"]]
    assert box["size"] == [first["width"], first["length"], first["height"]]
    assert box["velocity"] == [first["velocity_x"], first["velocity_y"]]
    w, _, _, z = box["rotation"]
    assert 2.0 * math.atan2(z, w) == pytest.approx(first["world_yaw"], abs=1e-12)
    assert document["fusion"]["samples"][token]["frame"] == "world"


def test_round_trip_keeps_every_box_of_a_nuscenes_class(sample_dataset: Path, document_path: Path) -> None:
    labels = open_dataset(sample_dataset).sequence("sim_drive").labels()
    want = labels.filter(pc.is_in(labels["category"], value_set=pa.array(list(NUSCENES_NAMES))))
    got = read_nuscenes(document_path)
    for name in ("frame_index", "timestamp_ns", "track_id", "category", "score"):
        assert got.column(name).equals(want.column(name)), name
    for name in ("x", "y", "z", "length", "width", "height", "world_x", "world_y", "world_z", "velocity_x"):
        assert np.allclose(got.column(name).to_numpy(), want.column(name).to_numpy(), atol=1e-9), name
    for name in ("yaw", "world_yaw"):
        d = got.column(name).to_numpy() - want.column(name).to_numpy()
        assert np.allclose(np.angle(np.exp(1j * d)), 0.0, atol=1e-12), name


def test_a_file_without_the_fusion_section_is_refused(document_path: Path, tmp_path: Path) -> None:
    document = json.loads(document_path.read_text())
    del document["fusion"]
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ExportError, match="no 'fusion' key"):
        read_nuscenes(path)
