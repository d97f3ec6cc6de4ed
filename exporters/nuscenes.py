"""A plain per-frame nuScenes-style JSON: the nuScenes tracking-submission format, one file per sequence.

The format is the devkit's (nutonomy/nuscenes-devkit, python-sdk/nuscenes/eval/tracking/README.md,
"Results format"; the detection task's keys are added to each box, so one file serves both)::

    {"meta": {"use_camera": false, "use_lidar": true, "use_radar": false, "use_map": false,
              "use_external": false},
     "results": {sample_token: [sample_result, ...]},       one entry per frame, boxes of that frame
     "fusion": {...}}                                         ours; see below

    sample_result = {"sample_token": str, "translation": [x, y, z], "size": [width, length, height],
                     "rotation": [w, x, y, z], "velocity": [vx, vy],
                     "tracking_id": str, "tracking_name": str, "tracking_score": float,
                     "detection_name": str, "detection_score": float, "attribute_name": ""}

`sample_token` is "<sequence_id>_<frame_index:06d>" (we have no nuScenes tokens). Boxes are in the
world frame, as nuScenes' global frame, when the sweep has a pose (`translation` = world_x, y, z,
`rotation` = world_yaw about +z, `velocity` = the world velocity); a sweep without a pose gives its
boxes in the lidar frame with velocity [0, 0] and says so in `fusion.samples[token].frame`.

`fusion` holds what the reader needs to come back to the lidar frame: `sequence_id`, and per
sample token `frame_index`, `timestamp_ns`, `frame` ("world" or "lidar"), `world_from_lidar` (16,
row-major, or null) and `velocity_unknown` (the tracking ids whose velocity [0, 0] stands for
"not known"); and `dropped`, the number of boxes of category unknown
(nuScenes has no such class).

Names (`NUSCENES_NAMES`): car, truck, bus, pedestrian, motorcycle as they are; cyclist -> bicycle
(nuScenes' bicycle class holds ridden bicycles); unknown -> dropped.

A round trip (write -> `read_nuscenes`) keeps boxes (to rounding through the pose), track ids,
categories, scores, stamps, world boxes and velocities. It loses: boxes of category unknown,
`num_points`, `origin`, the camera projections, and the rest of the dataset (points, images, cameras).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa

from exporters.errors import ExportError
from exporters.labels import labels_from_rows
from exporters.reader import Sequence

NUSCENES_NAMES: Final[Mapping[str, str]] = {
    "car": "car",
    "truck": "truck",
    "bus": "bus",
    "pedestrian": "pedestrian",
    "cyclist": "bicycle",
    "motorcycle": "motorcycle",
}
"""Our category -> nuScenes tracking/detection class; a category not listed is dropped."""

CATEGORIES_OF_NAMES: Final[Mapping[str, str]] = {v: k for k, v in NUSCENES_NAMES.items()}
SUFFIX: Final = ".nuscenes.json"
META: Final = {
    "use_camera": False,
    "use_lidar": True,
    "use_radar": False,
    "use_map": False,
    "use_external": False,
}


class NuScenesExporter:
    """`fusion export --format nuscenes`: `<dest>/<sid>.nuscenes.json` per sequence."""

    name = "nuscenes"

    def export(self, sequence: Sequence, dest: Path) -> list[Path]:
        path = dest / f"{sequence.sequence_id}{SUFFIX}"
        with path.open("x", encoding="utf-8") as f:
            json.dump(nuscenes_document(sequence), f, allow_nan=False)
        return [path]


def sample_token(sequence_id: str, frame_index: int) -> str:
    return f"{sequence_id}_{frame_index:06d}"


def _yaw_of(matrix: np.ndarray) -> float:
    return math.atan2(float(matrix[1, 0]), float(matrix[0, 0]))


def _quaternion_wxyz(yaw: float) -> list[float]:
    return [math.cos(0.5 * yaw), 0.0, 0.0, math.sin(0.5 * yaw)]


def nuscenes_document(sequence: Sequence) -> dict[str, Any]:
    """The nuScenes-style results document (JSON-ready) of one sequence."""
    sid = sequence.sequence_id
    frames = sequence.frames().to_pylist()
    results: dict[str, list[dict[str, Any]]] = {}
    samples: dict[str, dict[str, Any]] = {}
    world = {}
    for frame in frames:
        token = sample_token(sid, int(frame["frame_index"]))
        pose = frame["world_from_lidar"]
        results[token] = []
        world[int(frame["frame_index"])] = pose is not None
        samples[token] = {
            "frame_index": int(frame["frame_index"]),
            "timestamp_ns": int(frame["timestamp_ns"]),
            "frame": "world" if pose is not None else "lidar",
            "world_from_lidar": [float(v) for v in pose] if pose is not None else None,
            "velocity_unknown": [],
        }
    dropped = 0
    for label in sequence.labels().to_pylist():
        name = NUSCENES_NAMES.get(label["category"])
        if name is None:
            dropped += 1
            continue
        index = int(label["frame_index"])
        token = sample_token(sid, index)
        in_world = world[index] and label["world_x"] is not None
        if in_world:
            centre = [label["world_x"], label["world_y"], label["world_z"]]
            yaw = label["world_yaw"]
        else:
            centre = [label["x"], label["y"], label["z"]]
            yaw = label["yaw"]
        known = in_world and label["velocity_x"] is not None
        if not known:
            samples[token]["velocity_unknown"].append(str(int(label["track_id"])))
        results[token].append(
            {
                "sample_token": token,
                "translation": [float(v) for v in centre],
                "size": [float(label["width"]), float(label["length"]), float(label["height"])],
                "rotation": _quaternion_wxyz(float(yaw)),
                "velocity": [float(label["velocity_x"]), float(label["velocity_y"])] if known else [0.0, 0.0],
                "tracking_id": str(int(label["track_id"])),
                "tracking_name": name,
                "tracking_score": float(label["score"]),
                "detection_name": name,
                "detection_score": float(label["score"]),
                "attribute_name": "",
            }
        )
    return {
        "meta": dict(META),
        "results": results,
        "fusion": {"sequence_id": sid, "samples": samples, "dropped": {"unknown": dropped}},
    }


def read_nuscenes(path: Path | str) -> pa.Table:
    """A file `nuscenes_document` wrote, as a labels table in the lidar frame (see the module docstring).

    Raises `ExportError` "FILE: what; fix" when it is not JSON, lacks the `fusion` section (the
    lidar frame cannot be recovered without the poses), or a box is malformed.
    """
    p = Path(path)
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
        fusion = document["fusion"]
        sid = str(fusion["sequence_id"])
        samples = fusion["samples"]
        results = document["results"]
    except FileNotFoundError as err:
        raise ExportError(f"{p}: no such file") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"{p}: cannot be read as JSON ({err})") from err
    except (KeyError, TypeError) as err:
        raise ExportError(
            f"{p}: no {err} key; only files fusion export --format nuscenes wrote can be read back"
        ) from err
    rows: dict[str, list[Any]] = {k: [] for k in ("frame", "stamp", "track", "category", "score")}
    boxes, world, velocity = [], [], []
    try:
        for token, entries in results.items():
            sample = samples[token]
            pose = sample["world_from_lidar"]
            lidar_from_world = (
                np.linalg.inv(np.asarray(pose, dtype=np.float64).reshape(4, 4)) if pose is not None else None
            )
            for box in entries:
                w, x, y, z = (float(v) for v in box["rotation"])
                yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
                centre = np.asarray(box["translation"], dtype=np.float64)
                width, length, height = (float(v) for v in box["size"])
                if sample["frame"] == "world" and lidar_from_world is not None:
                    local = lidar_from_world[:3, :3] @ centre + lidar_from_world[:3, 3]
                    local_yaw = yaw + _yaw_of(lidar_from_world)
                    world.append([*centre.tolist(), yaw])
                    known = box["tracking_id"] not in sample["velocity_unknown"]
                    velocity.append([float(v) for v in box["velocity"]] if known else [math.nan] * 2)
                else:
                    local, local_yaw = centre, yaw
                    world.append([math.nan] * 4)
                    velocity.append([math.nan] * 2)
                boxes.append([*local.tolist(), length, width, height, local_yaw])
                rows["frame"].append(int(sample["frame_index"]))
                rows["stamp"].append(int(sample["timestamp_ns"]))
                rows["track"].append(int(box["tracking_id"]))
                rows["category"].append(CATEGORIES_OF_NAMES.get(box["tracking_name"], "unknown"))
                rows["score"].append(float(box["tracking_score"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ExportError(f"{p}: a box or sample is malformed ({err!r}); re-export it") from err
    return labels_from_rows(sid, rows, boxes, world_boxes=world, velocity=velocity)
