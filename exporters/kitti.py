"""KITTI tracking label files, one set per camera, written and read back.

Layout written under `--dest`, per camera of the sequence (KITTI's own tracking layout)::

    <camera>/label_02/<sid>.txt    one line per box visible in that camera, per frame
    <camera>/calib/<sid>.txt       P0..P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo

A label line is the tracking *result* format (17 columns and a score)::

    frame track_id type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry score

with `truncated occluded` = `-1 -1` (unknown, as detectors' result files write them), `x1 y1 x2 y2`
the box's clipped projection in that camera (`labels.camera_boxes`, pixels of the camera's raw,
distorted image), `h w l x y z ry` the box in the camera's optical frame (KITTI's `rect`: x right,
y down, z forward; bottom centre; ry about +y), converted by
`fusion.evaluation.kitti_velodyne_to_rect`, the inverse of the converter `fusion eval` uses to read
KITTI (so a box comes back exactly, in the lidar frame), alpha = ry - atan2(x, z).

The calibration file says the camera is `rect` itself: `R0_rect` = identity, `Tr_velo_to_cam` =
camera_from_lidar (3x4), every `P<i>` = [K | 0] (KITTI has no distortion: a distorted camera's K is
written as it is), `Tr_imu_to_velo` = identity. `calib.loaders.load_calibration` reads it back.

Types (`KITTI_TYPES`): car -> Car, truck -> Truck, bus -> Tram, pedestrian -> Pedestrian,
cyclist -> Cyclist, motorcycle -> Cyclist, unknown -> Misc (the inverse of the reader's mapping,
`fusion.evaluation.KITTI_CATEGORIES`, except motorcycle, which KITTI has no type for).

What a round trip (write -> `read_kitti_tracking`) loses: boxes not visible in that camera, time
(KITTI tracking frames carry no stamps: frame k comes back at k x 100 ms), frames after the last
one with a box, poses and world coordinates, velocities, point counts, `origin`, the other cameras'
projections, lens distortion and the camera itself (the calibration's image size lives in the
images, which are not written), and motorcycle (-> cyclist). Numbers are written with 6 decimals
(1 µm, 1 µrad), 2D boxes with 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from exporters.dataset import FrameRow, SequenceCamera, camera_file_stem
from exporters.errors import ExportError
from exporters.formats import ImportedSequence
from exporters.reader import Sequence
from exporters.schema import is_valid_sequence_id
from fusion.evaluation.converters import (
    KITTI_FRAME_PERIOD_NS,
    kitti_tracking_labels,
    kitti_velodyne_to_rect,
)

KITTI_TYPES: Final[Mapping[str, str]] = {
    "car": "Car",
    "truck": "Truck",
    "bus": "Tram",
    "pedestrian": "Pedestrian",
    "cyclist": "Cyclist",
    "motorcycle": "Cyclist",
    "unknown": "Misc",
}
"""Our category -> KITTI type."""

LABEL_DIR: Final = "label_02"
CALIB_DIR: Final = "calib"


class KittiTrackingExporter:
    """`fusion export --format kitti`: per camera, `<camera>/label_02/<sid>.txt` and its calib."""

    name = "kitti"

    def export(self, sequence: Sequence, dest: Path) -> list[Path]:
        if not sequence.cameras:
            raise ExportError(
                f"sequence {sequence.sequence_id!r} has no cameras: KITTI tracking labels live in a "
                "camera's frame; use --format openlabel or nuscenes for a LiDAR-only sequence"
            )
        labels = sequence.labels()
        written = []
        for entry in sequence.cameras:
            cam = SequenceCamera.from_json(entry)
            folder = dest / camera_file_stem(cam.camera.name)
            (folder / LABEL_DIR).mkdir(parents=True, exist_ok=True)
            (folder / CALIB_DIR).mkdir(parents=True, exist_ok=True)
            calib = folder / CALIB_DIR / f"{sequence.sequence_id}.txt"
            calib.write_text(kitti_calib_text(cam), encoding="utf-8")
            label = folder / LABEL_DIR / f"{sequence.sequence_id}.txt"
            label.write_text(kitti_label_text(labels, cam), encoding="utf-8")
            written += [label, calib]
        return written


def _row(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in values)


def kitti_calib_text(camera: SequenceCamera) -> str:
    """A KITTI object/tracking calib.txt in which `camera`'s optical frame is `rect`."""
    projection = np.zeros((3, 4))
    projection[:, :3] = camera.camera.K
    camera_from_lidar = camera.lidar_from_camera.inverse().matrix
    lines = [f"P{i}: {_row(projection.reshape(12))}" for i in range(4)]
    lines.append(f"R0_rect: {_row(np.eye(3).reshape(9))}")
    lines.append(f"Tr_velo_to_cam: {_row(camera_from_lidar[:3].reshape(12))}")
    lines.append(f"Tr_imu_to_velo: {_row(np.eye(4)[:3].reshape(12))}")
    return "\n".join(lines) + "\n"


def kitti_label_text(labels: pa.Table, camera: SequenceCamera) -> str:
    """The KITTI tracking lines of the boxes of `labels` (a LABELS table) visible in `camera`."""
    name = camera.camera.name
    rows = []
    for index, boxes in enumerate(labels.column("camera_boxes").to_pylist()):
        hit = next((b for b in boxes if b["camera"] == name), None)
        if hit is not None:
            rows.append((index, hit))
    if not rows:
        return ""
    take = pa.array([r[0] for r in rows])
    chosen = labels.take(take)
    boxes = np.stack(
        [chosen.column(c).to_numpy() for c in ("x", "y", "z", "length", "width", "height", "yaw")], axis=1
    )
    camera_from_lidar = camera.lidar_from_camera.inverse().matrix
    kitti = kitti_velodyne_to_rect(boxes, camera_from_lidar)
    alpha = kitti[:, 6] - np.arctan2(kitti[:, 3], kitti[:, 5])
    alpha = (alpha + math.pi) % (2.0 * math.pi) - math.pi
    frames = chosen.column("frame_index").to_pylist()
    tracks = chosen.column("track_id").to_pylist()
    categories = chosen.column("category").to_pylist()
    scores = chosen.column("score").to_pylist()
    lines = []
    for k, (_, hit) in enumerate(rows):
        h, w, length, x, y, z, ry = kitti[k]
        lines.append(
            f"{frames[k]} {tracks[k]} {KITTI_TYPES[categories[k]]} -1 -1 {alpha[k]:.6f} "
            f"{hit['x_min']:.2f} {hit['y_min']:.2f} {hit['x_max']:.2f} {hit['y_max']:.2f} "
            f"{h:.6f} {w:.6f} {length:.6f} {x:.6f} {y:.6f} {z:.6f} {ry:.6f} {scores[k]:.6f}"
        )
    return "\n".join(lines) + "\n"


# ---- reading


def read_kitti_tracking(src: Path | str, *, logistic_scores: bool = False) -> list[ImportedSequence]:
    """KITTI tracking labels as sequences: `src` is a folder holding `label_02/` and `calib/` (every
    `label_02/<seq>.txt` is read with `calib/<seq>.txt`), or one `label_02/<seq>.txt` file.

    Boxes come into the velodyne (lidar) frame through `fusion.evaluation.kitti_tracking_labels`;
    frame k gets timestamp k x 100 ms (KITTI's 10 Hz; the files carry no time). Raises
    `ExportError` when a label file has no calibration beside it; malformed lines raise the
    converter's one-line "FILE:LINE: ..." errors.
    """
    source = Path(src)
    if source.is_dir():
        folder = source / LABEL_DIR
        if not folder.is_dir():
            raise ExportError(
                f"{source}: no {LABEL_DIR}/ folder in it; give a KITTI tracking folder "
                f"({LABEL_DIR}/<seq>.txt and {CALIB_DIR}/<seq>.txt) or one label file"
            )
        labels = sorted(folder.glob("*.txt"))
        if not labels:
            raise ExportError(f"{folder}: no <seq>.txt label file in it")
        root = source
    else:
        if source.suffix != ".txt":
            raise ExportError(
                f"{source}: not a KITTI tracking label file (label_02/<seq>.txt); give one, or the folder "
                f"holding {LABEL_DIR}/ and {CALIB_DIR}/ (or import it with its own --format)"
            )
        labels = [source]
        root = source.parent.parent
    return [_read_one(path, root / CALIB_DIR / path.name, logistic_scores) for path in labels]


def _read_one(label: Path, calib: Path, logistic_scores: bool = False) -> ImportedSequence:
    if not calib.is_file():
        raise ExportError(
            f"{label}: no calibration {calib} beside it; KITTI tracking keeps calib/<seq>.txt next to "
            f"{LABEL_DIR}/<seq>.txt"
        )
    if not is_valid_sequence_id(label.stem):
        raise ExportError(f"{label}: its name is not a sequence id (use only A-Z a-z 0-9 . _ -); rename it")
    table = kitti_tracking_labels(label, calib, logistic_scores=logistic_scores)
    frames_present = table.column("frame_index").to_numpy()
    count = int(frames_present.max()) + 1 if len(frames_present) else 0
    frames = tuple(
        FrameRow(
            frame_index=i,
            timestamp_ns=i * KITTI_FRAME_PERIOD_NS,
            source_log_time_ns=i * KITTI_FRAME_PERIOD_NS,
            num_points=0,
            deskewed=False,
        )
        for i in range(count)
    )
    lost = ("time", "poses", "velocity", "num_points", "origin", "camera_boxes", "points", "images")
    return ImportedSequence(
        sequence_id=label.stem, source_path=str(label), frames=frames, labels=table, notes=lost
    )
