"""ASAM OpenLABEL 1.0 JSON: one document per sequence, written and read back.

What a document holds (keys of the `openlabel` root)::

    metadata            schema_version "1.0.0", name = sequence id, annotator, and under "fusion":
                        sequence_id, source_path, lidar_topic, world_frame (the log's fixed frame name)
    coordinate_systems  "world" (scene_cs; only when the log has poses), "lidar" (sensor_cs, child of
                        world, pose_wrt_parent = world_from_lidar of frame 0), one per camera
                        (sensor_cs, child of lidar, pose_wrt_parent = lidar_from_camera)
    streams             "lidar" (uri = the LiDAR topic) and one per camera (uri = its image topic) with
                        `intrinsics_pinhole` (camera_matrix 3x4, distortion_coeffs: plumb_bob 5,
                        rational_polynomial 8) or `intrinsics_fisheye` (equidistant: lens_coeffs 4)
    objects             one per track: key = track id, type = category, name "<category>-<id>",
                        frame_intervals, object_data_pointers
    frames              key = frame index: frame_properties (timestamp as ISO 8601 UTC with
                        nanoseconds, timestamp_ns exactly, the sweep's transform lidar_to_world, each
                        camera's chosen image stamp under streams.<camera>.stream_properties.sync),
                        and per object: cuboid "box3d" in "lidar" = (x, y, z, qx, qy, qz, qw,
                        length, width, height) with attributes num score, num num_points,
                        text origin; cuboid "box3d_world" in "world" with vec velocity (when the
                        box has world coordinates); one bbox per camera (centre x, y, width,
                        height in that camera's distorted pixels) named after the camera

Pose semantics follow the schema: `transform_src_to_dst.matrix4x4` maps src coordinates into dst
(X_dst = M X_src), so `lidar_to_world` is our `world_from_lidar`; a coordinate system's
`pose_wrt_parent` is `parent_from_child`.

Why not the `vcd` package (Vicomtech's OpenLABEL library): it requires `opencv-python` (the GUI
build, which installs into the same `cv2` package as our `opencv-python-headless`), matplotlib and
protobuf at runtime; it writes pinhole intrinsics as `camera_matrix_3x4` / `distortion_coeffs_1xN`
while the 1.0.0 JSON schema names them `camera_matrix` / `distortion_coeffs`; it accepts frame
timestamps only as str or float; and it has no type hints. The document is small and regular, so
it is built here as plain dicts and checked in tests against the published JSON schema.

A round trip (write -> `read_openlabel`) keeps every labels column, the frames (stamps, poses,
point counts, deskew flag, chosen images) and the cameras. It loses: the points and images (an
OpenLABEL file references streams, it does not embed sensor data), and a camera without
distortion comes back with five zero coefficients (the schema asks for at least five).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

from calib.camera import Camera, DistortionModel
from calib.errors import CalibrationError
from calib.transform import Transform, quaternion_to_rotation
from exporters.dataset import FrameCamera, FrameRow, SequenceCamera
from exporters.errors import ExportError
from exporters.formats import ImportedSequence
from exporters.labels import CameraBoxes, labels_table
from exporters.reader import Sequence
from exporters.schema import is_valid_sequence_id

SCHEMA_VERSION: Final = "1.0.0"
WORLD: Final = "world"
LIDAR: Final = "lidar"
BOX: Final = "box3d"
WORLD_BOX: Final = "box3d_world"
SUFFIX: Final = ".openlabel.json"
_NS: Final = 1_000_000_000


class OpenLabelExporter:
    """`fusion export --format openlabel`: `<dest>/<sid>.openlabel.json` per sequence."""

    name = "openlabel"

    def export(self, sequence: Sequence, dest: Path) -> list[Path]:
        path = dest / f"{sequence.sequence_id}{SUFFIX}"
        document = openlabel_document(sequence)
        with path.open("x", encoding="utf-8") as f:
            json.dump(document, f, allow_nan=False)
        return [path]


# ---- writing


def openlabel_document(sequence: Sequence) -> dict[str, Any]:
    """The OpenLABEL 1.0 document (a JSON-ready dict) of one sequence."""
    row = sequence.row
    frames = sequence.frames().to_pylist()
    labels = sequence.labels().to_pylist()
    world_frame = row["world_frame"]
    has_world = world_frame is not None and any(f["world_from_lidar"] is not None for f in frames)
    cameras = [SequenceCamera.from_json(c) for c in sequence.cameras]

    coordinate_systems: dict[str, Any] = {}
    if has_world:
        coordinate_systems[WORLD] = {"type": "scene_cs", "parent": "", "children": [LIDAR]}
    lidar_cs: dict[str, Any] = {
        "type": "sensor_cs",
        "parent": WORLD if has_world else "",
        "children": [c.camera.name for c in cameras],
    }
    first_pose = next((f["world_from_lidar"] for f in frames if f["world_from_lidar"] is not None), None)
    if has_world and first_pose is not None:
        lidar_cs["pose_wrt_parent"] = {"matrix4x4": [float(v) for v in first_pose]}
    coordinate_systems[LIDAR] = lidar_cs
    streams: dict[str, Any] = {
        LIDAR: {"type": "lidar", "uri": str(row["lidar_topic"]), "description": "the LiDAR sweeps"}
    }
    for cam in cameras:
        coordinate_systems[cam.camera.name] = {
            "type": "sensor_cs",
            "parent": LIDAR,
            "children": [],
            "pose_wrt_parent": {"matrix4x4": _floats(cam.lidar_from_camera.matrix.reshape(16))},
            "frame_id": cam.camera.frame_id,
        }
        streams[cam.camera.name] = {
            "type": "camera",
            "uri": cam.topic,
            "description": f"camera {cam.camera.name} (optical frame {cam.camera.frame_id})",
            "stream_properties": _intrinsics(cam.camera),
        }

    objects: dict[str, Any] = {}
    frame_objects: dict[int, dict[str, Any]] = {}
    by_track: dict[int, list[int]] = {}
    for label in labels:
        track = int(label["track_id"])
        by_track.setdefault(track, []).append(int(label["frame_index"]))
        frame_objects.setdefault(int(label["frame_index"]), {})[str(track)] = {
            "object_data": _object_data(label, has_world)
        }
        if str(track) not in objects:
            objects[str(track)] = {
                "name": f"{label['category']}-{track}",
                "type": str(label["category"]),
                "coordinate_system": LIDAR,
            }
    for label in labels:  # pointers: which data each object has in which frames
        key = str(int(label["track_id"]))
        pointers = objects[key].setdefault("object_data_pointers", {})
        data = frame_objects[int(label["frame_index"])][key]["object_data"]
        for kind, items in data.items():
            for item in items:
                entry = pointers.setdefault(item["name"], {"type": kind, "frame_intervals": [], "_f": []})
                entry["_f"].append(int(label["frame_index"]))
                if kind == "cuboid":
                    entry["attribute_pointers"] = {
                        name: attr_type
                        for attr_type, attrs in item.get("attributes", {}).items()
                        for name in (a["name"] for a in attrs)
                    }
    for key, obj in objects.items():
        obj["frame_intervals"] = _intervals(by_track[int(key)])
        for entry in obj["object_data_pointers"].values():
            entry["frame_intervals"] = _intervals(entry.pop("_f"))

    out_frames: dict[str, Any] = {}
    for frame in frames:
        index = int(frame["frame_index"])
        properties: dict[str, Any] = {
            "timestamp": iso8601(int(frame["timestamp_ns"])),
            "timestamp_ns": int(frame["timestamp_ns"]),
            "source_log_time_ns": int(frame["source_log_time_ns"]),
            "num_points": int(frame["num_points"]),
            "deskewed": bool(frame["deskewed"]),
        }
        if has_world and frame["world_from_lidar"] is not None:
            properties["transforms"] = {
                f"{LIDAR}_to_{WORLD}": {
                    "src": LIDAR,
                    "dst": WORLD,
                    "transform_src_to_dst": {"matrix4x4": _floats(frame["world_from_lidar"])},
                }
            }
        if frame["cameras"]:
            properties["streams"] = {
                c["name"]: {
                    "stream_properties": {
                        "sync": {
                            "timestamp": iso8601(int(c["timestamp_ns"])),
                            "timestamp_ns": int(c["timestamp_ns"]),
                            "offset_ns": int(c["offset_ns"]),
                        }
                    }
                }
                for c in frame["cameras"]
            }
        entry_frame: dict[str, Any] = {"frame_properties": properties}
        if index in frame_objects:
            entry_frame["objects"] = frame_objects[index]
        out_frames[str(index)] = entry_frame

    metadata = {
        "schema_version": SCHEMA_VERSION,
        "name": sequence.sequence_id,
        "annotator": "fusion pre-labels",
        "comment": "3D boxes in the lidar frame; one object per track (key = track id)",
        "fusion": {
            "sequence_id": sequence.sequence_id,
            "source_path": str(row["source_path"]),
            "lidar_topic": str(row["lidar_topic"]),
            "world_frame": world_frame,
        },
    }
    root: dict[str, Any] = {
        "metadata": metadata,
        "coordinate_systems": coordinate_systems,
        "streams": streams,
    }
    if objects:
        root["objects"] = objects
    if frames:
        root["frame_intervals"] = [{"frame_start": 0, "frame_end": len(frames) - 1}]
        root["frames"] = out_frames
    return {"openlabel": root}


def iso8601(timestamp_ns: int) -> str:
    """`timestamp_ns` (ns since the Unix epoch, UTC) as ISO 8601 with nanoseconds.

    1700000000050000000 -> "2023-11-14T22:13:20.050000000Z".
    """
    seconds, nanos = divmod(int(timestamp_ns), _NS)
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def _intrinsics(camera: Camera) -> dict[str, Any]:
    k = np.asarray(camera.K, dtype=np.float64)
    if camera.model == "equidistant":
        return {
            "intrinsics_fisheye": {
                "width_px": int(camera.width),
                "height_px": int(camera.height),
                "lens_coeffs": _floats(camera.D),
                "center_x_px": float(k[0, 2]),
                "center_y_px": float(k[1, 2]),
                "focal_length_x_px": float(k[0, 0]),
                "focal_length_y_px": float(k[1, 1]),
                "fisheye_model": "opencv_fisheye",
            }
        }
    coeffs = _floats(camera.D) if camera.D else [0.0] * 5
    matrix = np.zeros((3, 4))
    matrix[:, :3] = k
    return {
        "intrinsics_pinhole": {
            "width_px": int(camera.width),
            "height_px": int(camera.height),
            "camera_matrix": _floats(matrix.reshape(12)),
            "distortion_coeffs": coeffs,
        }
    }


def _yaw_quaternion(yaw: float) -> list[float]:
    return [0.0, 0.0, math.sin(0.5 * yaw), math.cos(0.5 * yaw)]


def _object_data(label: Mapping[str, Any], has_world: bool) -> dict[str, Any]:
    size = [float(label["length"]), float(label["width"]), float(label["height"])]
    box = {
        "name": BOX,
        "coordinate_system": LIDAR,
        "val": [
            float(label["x"]),
            float(label["y"]),
            float(label["z"]),
            *_yaw_quaternion(label["yaw"]),
            *size,
        ],
        "attributes": {
            "num": [
                {"name": "score", "val": float(label["score"])},
                {"name": "num_points", "val": int(label["num_points"])},
            ],
            "text": [{"name": "origin", "val": str(label["origin"])}],
        },
    }
    cuboids = [box]
    if has_world and label["world_x"] is not None:
        world: dict[str, Any] = {
            "name": WORLD_BOX,
            "coordinate_system": WORLD,
            "val": [
                float(label["world_x"]),
                float(label["world_y"]),
                float(label["world_z"]),
                *_yaw_quaternion(label["world_yaw"]),
                *size,
            ],
        }
        if label["velocity_x"] is not None:
            velocity = [float(label["velocity_x"]), float(label["velocity_y"])]
            world["attributes"] = {"vec": [{"name": "velocity", "val": velocity, "type": "values"}]}
        cuboids.append(world)
    data: dict[str, Any] = {"cuboid": cuboids}
    if label["camera_boxes"]:
        data["bbox"] = [
            {
                "name": b["camera"],
                "coordinate_system": b["camera"],
                "val": [
                    0.5 * (b["x_min"] + b["x_max"]),
                    0.5 * (b["y_min"] + b["y_max"]),
                    b["x_max"] - b["x_min"],
                    b["y_max"] - b["y_min"],
                ],
            }
            for b in label["camera_boxes"]
        ]
    return data


def _intervals(frames: list[int]) -> list[dict[str, int]]:
    """Closed frame intervals covering the sorted distinct `frames`."""
    values = sorted(set(frames))
    out: list[dict[str, int]] = []
    for f in values:
        if out and out[-1]["frame_end"] == f - 1:
            out[-1]["frame_end"] = f
        else:
            out.append({"frame_start": f, "frame_end": f})
    return out


# ---- reading


class _MalformedError(Exception):
    """A part of the document is not what this reader needs (message: where and what)."""


def read_openlabel(path: Path | str) -> ImportedSequence:
    """Read one OpenLABEL 1.0 document (as `openlabel_document` writes it, or as an annotation tool
    returns it with the same structure) into a sequence: boxes from each object's cuboid in the
    "lidar" coordinate system, frame stamps, poses and cameras.

    Objects become tracks: the object key is the track id (numeric keys are kept; UUID keys are
    numbered in order), its `type` the category. A cuboid's score/num_points/origin attributes
    default to 1 / 0 / "detected" when absent (a box drawn by a reviewer). Raises `ExportError`
    "FILE: where: what; fix" for a file that is not JSON or not such a document.
    """
    p = Path(path)
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ExportError(f"{p}: no such file; give an OpenLABEL .json file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ExportError(f"{p}: cannot be read as text ({err}); give an OpenLABEL .json file") from err
    except json.JSONDecodeError as err:
        raise ExportError(f"{p}:{err.lineno}: not JSON ({err.msg}); give an OpenLABEL .json file") from err
    try:
        return _parse(p, document)
    except _MalformedError as err:
        raise ExportError(f"{p}: {err}; it is not an OpenLABEL 1.0 document fusion can read") from err
    except CalibrationError as err:
        raise ExportError(f"{p}: {err}") from err
    except (AttributeError, TypeError, ValueError, KeyError) as err:  # a value of an unexpected kind
        raise ExportError(
            f"{p}: unexpected structure ({type(err).__name__}: {err}); "
            "it is not an OpenLABEL 1.0 document fusion can read"
        ) from err


def _get(node: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(node, dict):
        raise _MalformedError(f"{where} is not a JSON object")
    if key not in node:
        raise _MalformedError(f"{where} has no '{key}'")
    value = node[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise _MalformedError(f"{where}.{key} is {type(value).__name__}, expected {_names(kind)}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}
    return " or ".join(names.get(k, k.__name__) for k in _tuple(kind))


def _numbers(value: Any, count: int, where: str) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise _MalformedError(f"{where} must be {count} numbers")
    out = [float(v) for v in value]
    if not all(math.isfinite(v) for v in out):
        raise _MalformedError(f"{where} holds a non-finite number")
    return out


def _parse(path: Path, document: Any) -> ImportedSequence:
    root = _get(document, "openlabel", dict, "the document")
    metadata = _get(root, "metadata", dict, "openlabel")
    version = _get(metadata, "schema_version", str, "openlabel.metadata")
    if version != SCHEMA_VERSION:
        raise _MalformedError(
            f"openlabel.metadata.schema_version is {version!r}, expected {SCHEMA_VERSION!r}"
        )
    fusion_meta = metadata.get("fusion") if isinstance(metadata.get("fusion"), dict) else {}
    sequence_id = str(fusion_meta.get("sequence_id") or metadata.get("name") or path.name.split(".")[0])
    if not is_valid_sequence_id(sequence_id):
        raise _MalformedError(f"sequence name {sequence_id!r} is not made of A-Z a-z 0-9 . _ -")
    systems = root.get("coordinate_systems", {})
    if not isinstance(systems, dict):
        raise _MalformedError("openlabel.coordinate_systems is not a JSON object")
    streams = root.get("streams", {})
    if not isinstance(streams, dict):
        raise _MalformedError("openlabel.streams is not a JSON object")
    cameras = _cameras(systems, streams)

    frames_node = root.get("frames", {})
    if not isinstance(frames_node, dict):
        raise _MalformedError("openlabel.frames is not a JSON object")
    try:
        indices = sorted(int(k) for k in frames_node)
    except ValueError:
        raise _MalformedError("openlabel.frames has a key that is not a frame number") from None
    if indices != list(range(len(indices))):
        raise _MalformedError(f"openlabel.frames must number frames 0..{len(indices) - 1} without gaps")
    objects = root.get("objects", {})
    if not isinstance(objects, dict):
        raise _MalformedError("openlabel.objects is not a JSON object")
    track_ids = _track_ids(list(objects))

    frames: list[FrameRow] = []
    columns: dict[str, list[Any]] = {
        k: [] for k in ("frame", "stamp", "track", "category", "score", "points", "origin")
    }
    boxes: list[list[float]] = []
    world: list[list[float]] = []
    velocity: list[list[float]] = []
    cam_row: list[int] = []
    cam_name: list[str] = []
    cam_corners: list[list[float]] = []
    has_world = False
    for index in indices:
        where = f"openlabel.frames.{index}"
        frame = frames_node[str(index)]
        properties = _get(frame, "frame_properties", dict, where)
        stamp = _stamp(properties, f"{where}.frame_properties")
        pose = None
        transforms = properties.get("transforms", {})
        for name, transform in (transforms or {}).items():
            if (
                isinstance(transform, dict)
                and transform.get("src") == LIDAR
                and transform.get("dst") == WORLD
            ):
                data = _get(
                    transform, "transform_src_to_dst", dict, f"{where}.frame_properties.transforms.{name}"
                )
                pose = np.asarray(_numbers(data.get("matrix4x4"), 16, f"{where}...{name}.matrix4x4"))
                has_world = True
        chosen = []
        for cam, stream in (properties.get("streams") or {}).items():
            sync = (stream.get("stream_properties") or {}).get("sync") if isinstance(stream, dict) else None
            if isinstance(sync, dict) and isinstance(sync.get("timestamp_ns"), int):
                chosen.append(FrameCamera(str(cam), int(sync["timestamp_ns"]), int(sync.get("offset_ns", 0))))
        frames.append(
            FrameRow(
                frame_index=index,
                timestamp_ns=stamp,
                source_log_time_ns=int(properties.get("source_log_time_ns", stamp)),
                num_points=int(properties.get("num_points", 0)),
                deskewed=bool(properties.get("deskewed", False)),
                world_from_lidar=pose,
                cameras=tuple(chosen),
            )
        )
        for key, entry in (frame.get("objects") or {}).items():
            owhere = f"{where}.objects.{key}"
            if key not in objects:
                raise _MalformedError(f"{owhere}: object {key} is not in openlabel.objects")
            category = _get(objects[key], "type", str, f"openlabel.objects.{key}")
            data = _get(entry, "object_data", dict, owhere)
            box = None
            world_box = None
            vel = [math.nan, math.nan]
            attributes: dict[str, Any] = {}
            for cuboid in data.get("cuboid", []):
                system = cuboid.get("coordinate_system", objects[key].get("coordinate_system", LIDAR))
                values = _numbers(
                    cuboid.get("val"), 10, f"{owhere}.object_data.cuboid {cuboid.get('name')!r}.val"
                )
                if system == LIDAR and box is None:
                    box = values
                    attributes = cuboid.get("attributes") or {}
                elif system == WORLD:
                    world_box = values
                    for vec in (cuboid.get("attributes") or {}).get("vec", []):
                        if vec.get("name") == "velocity":
                            vel = _numbers(vec.get("val"), 2, f"{owhere} velocity")
            if box is None:
                raise _MalformedError(f"{owhere}: no cuboid in coordinate system '{LIDAR}'")
            velocity.append(vel)
            row = len(boxes)
            boxes.append([*box[:3], *box[7:10], _yaw(box[3:7])])
            world.append([*world_box[:3], _yaw(world_box[3:7])] if world_box is not None else [math.nan] * 4)
            nums = {a.get("name"): a.get("val") for a in attributes.get("num", []) if isinstance(a, dict)}
            texts = {a.get("name"): a.get("val") for a in attributes.get("text", []) if isinstance(a, dict)}
            columns["frame"].append(index)
            columns["stamp"].append(stamp)
            columns["track"].append(track_ids[key])
            columns["category"].append(category)
            columns["score"].append(_num({"score": 1.0, **nums}, "score", f"{owhere} attribute"))
            columns["points"].append(
                int(_num({"num_points": 0, **nums}, "num_points", f"{owhere} attribute"))
            )
            columns["origin"].append(str(texts.get("origin", "detected")))
            for bbox in data.get("bbox", []):
                cx, cy, w, h = _numbers(bbox.get("val"), 4, f"{owhere}.object_data.bbox.val")
                cam_row.append(row)
                cam_name.append(str(bbox.get("coordinate_system") or bbox.get("name")))
                cam_corners.append([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h])

    corners = np.asarray(cam_corners, dtype=np.float64).reshape(-1, 4)
    try:
        labels = labels_table(
            sequence_id=sequence_id,
            frame_index=np.asarray(columns["frame"], dtype=np.int64),
            timestamp_ns=np.asarray(columns["stamp"], dtype=np.int64),
            track_id=np.asarray(columns["track"], dtype=np.int64),
            category=columns["category"],
            score=np.asarray(columns["score"], dtype=np.float64),
            boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 7),
            num_points=np.asarray(columns["points"], dtype=np.int64),
            origin=columns["origin"],
            world_boxes=np.asarray(world, dtype=np.float64).reshape(-1, 4) if has_world else None,
            velocity=np.asarray(velocity, dtype=np.float64).reshape(-1, 2) if has_world else None,
            camera_boxes=CameraBoxes(
                np.asarray(cam_row, dtype=np.int64),
                np.asarray(cam_name, dtype=str),
                corners[:, 0],
                corners[:, 1],
                corners[:, 2],
                corners[:, 3],
            ),
        )
    except ExportError as err:
        raise _MalformedError(str(err)) from err
    world_frame = fusion_meta.get("world_frame") if has_world else None
    lidar_stream = streams[LIDAR] if isinstance(streams.get(LIDAR), dict) else {}
    return ImportedSequence(
        sequence_id=sequence_id,
        source_path=str(path),
        frames=tuple(frames),
        labels=labels,
        cameras=tuple(cameras),
        world_frame=str(world_frame or WORLD) if has_world else None,
        lidar_topic=str(fusion_meta.get("lidar_topic") or lidar_stream.get("uri", "")),
        notes=("points", "images"),
    )


def _stamp(properties: Mapping[str, Any], where: str) -> int:
    """A frame's stamp in ns: `timestamp_ns`, else `timestamp` as ISO 8601 or seconds."""
    exact = properties.get("timestamp_ns")
    if isinstance(exact, int) and not isinstance(exact, bool):
        return exact
    value = properties.get("timestamp")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value) * _NS)
    if isinstance(value, str):
        text = value.rstrip("Z")
        head, _, fraction = text.partition(".")
        try:
            moment = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
            nanos = int((fraction + "000000000")[:9]) if fraction else 0
        except ValueError:
            raise _MalformedError(f"{where}.timestamp {value!r} is not ISO 8601") from None
        return int(moment.timestamp()) * _NS + nanos
    raise _MalformedError(f"{where} has no timestamp (ISO 8601 string or seconds) nor timestamp_ns")


def _yaw(quaternion_xyzw: list[float]) -> float:
    """The rotation about +z of a quaternion (x, y, z, w) (our boxes only turn about z)."""
    rotation = quaternion_to_rotation(np.asarray(quaternion_xyzw))
    return math.atan2(float(rotation[1, 0]), float(rotation[0, 0]))


def _track_ids(keys: list[str]) -> dict[str, int]:
    """Object key -> track id: numeric keys as they are, UUIDs numbered after the largest."""
    ids: dict[str, int] = {}
    numeric = [k for k in keys if k.lstrip("-").isdigit()]
    for key in numeric:
        ids[key] = int(key)
    start = max(ids.values(), default=-1) + 1
    for offset, key in enumerate(k for k in keys if k not in ids):
        ids[key] = start + offset
    return ids


def _cameras(systems: Mapping[str, Any], streams: Mapping[str, Any]) -> list[SequenceCamera]:
    cameras = []
    for name, stream in streams.items():
        if not isinstance(stream, dict) or stream.get("type") != "camera":
            continue
        system = systems.get(name)
        if not isinstance(system, dict) or system.get("parent") != LIDAR or "pose_wrt_parent" not in system:
            continue  # a camera without a pose relative to the lidar cannot be used
        where = f"openlabel.coordinate_systems.{name}.pose_wrt_parent"
        matrix = np.asarray(_numbers(system["pose_wrt_parent"].get("matrix4x4"), 16, where)).reshape(4, 4)
        properties = stream.get("stream_properties") or {}
        frame_id = system.get("frame_id")
        camera = _camera(name, str(frame_id) if frame_id else name, properties, f"openlabel.streams.{name}")
        transform = Transform.from_matrix(matrix, parent=LIDAR, child=camera.frame_id)
        cameras.append(
            SequenceCamera(camera=camera, topic=str(stream.get("uri", "")), lidar_from_camera=transform)
        )
    return cameras


def _camera(name: str, frame_id: str, properties: Mapping[str, Any], where: str) -> Camera:
    if "intrinsics_fisheye" in properties:
        f = properties["intrinsics_fisheye"]
        k = [
            [_num(f, "focal_length_x_px", where), 0.0, _num(f, "center_x_px", where)],
            [0.0, _num(f, "focal_length_y_px", where), _num(f, "center_y_px", where)],
            [0.0, 0.0, 1.0],
        ]
        coeffs = _numbers(f.get("lens_coeffs"), 4, f"{where}.intrinsics_fisheye.lens_coeffs")
        return Camera(
            name,
            frame_id,
            int(f.get("width_px", 0)),
            int(f.get("height_px", 0)),
            "equidistant",
            np.asarray(k),
            tuple(coeffs),
        )
    pinhole = _get(properties, "intrinsics_pinhole", dict, f"{where}.stream_properties")
    matrix = np.asarray(_numbers(pinhole.get("camera_matrix"), 12, f"{where}.camera_matrix")).reshape(3, 4)
    coeffs = pinhole.get("distortion_coeffs") or [0.0] * 5
    model: DistortionModel = "rational_polynomial" if len(coeffs) == 8 else "plumb_bob"
    d = _numbers(coeffs, len(coeffs), f"{where}.distortion_coeffs")
    return Camera(
        name,
        frame_id,
        int(pinhole.get("width_px", 0)),
        int(pinhole.get("height_px", 0)),
        model,
        matrix[:, :3].copy(),
        tuple(d),
    )


def _num(node: Mapping[Any, Any], key: str, where: str) -> float:
    value = node.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _MalformedError(f"{where}.{key} must be a number")
    return float(value)
