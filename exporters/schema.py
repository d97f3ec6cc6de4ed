"""Every table of the pre-label dataset (shared/CONTRACT.md), declared once as a pyarrow schema.

Schemas are never inferred from data: writers cast to these (see `parquet_io.write_table_atomic`)
and readers check against them. A column is nullable only where the contract says so; every
other column, list element and struct child is declared ``not null``.

List element fields are named ``element``, the name the Parquet format gives them, so a file read
back with plain ``pyarrow.parquet.read_table`` has exactly the schema declared here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import pyarrow as pa

SCHEMA_VERSION: Final = 1
"""Version of the contract these schemas implement; written into every file's metadata."""

SCHEMA_VERSION_KEY: Final = b"fusion.schema_version"
SEQUENCE_ID_KEY: Final = b"fusion.sequence_id"

CATEGORIES: Final = ("car", "truck", "bus", "pedestrian", "cyclist", "motorcycle", "unknown")
"""Object categories, lower-case, as they appear in `labels.category`."""

ORIGINS: Final = ("detected", "interpolated")
"""`labels.origin`: a detection supports the box, or 4D refinement filled it in."""

IMAGE_ENCODINGS: Final = ("jpeg", "png")
"""`images.encoding`."""

SEQUENCE_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]+")
"""A sanitised sequence id (it becomes a path component: `labels/<sequence_id>.parquet`)."""

_ELEMENT = "element"


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _nullable(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=True)


def _list_of(type_: pa.DataType) -> pa.DataType:
    return pa.list_(_required(_ELEMENT, type_))


TRANSFORM: Final = pa.list_(_required(_ELEMENT, pa.float64()), 16)
"""A 4x4 row-major transform `<to>_from_<from>`: fixed_size_list<float64>[16]."""

FRAME_CAMERA: Final = pa.struct(
    [
        _required("name", pa.string()),
        _required("timestamp_ns", pa.int64()),  # the chosen image's header stamp
        _required("offset_ns", pa.int64()),  # image stamp minus when the sweep crossed the optical axis
    ]
)
"""One element of `frames.cameras`: the image chosen for one camera."""

CAMERA_BOX: Final = pa.struct(
    [
        _required("camera", pa.string()),
        _required("x_min", pa.float32()),
        _required("y_min", pa.float32()),
        _required("x_max", pa.float32()),
        _required("y_max", pa.float32()),
    ]
)
"""One element of `labels.camera_boxes`: the box's clipped projection in one camera, in pixels."""

SEQUENCES: Final = pa.schema(
    [
        _required("sequence_id", pa.string()),
        _required("source_path", pa.string()),
        _required("source_size_bytes", pa.int64()),
        _required("start_ns", pa.int64()),
        _required("end_ns", pa.int64()),
        _required("num_frames", pa.int32()),
        _required("lidar_topic", pa.string()),
        _nullable("world_frame", pa.string()),  # null when the log has no poses
        _required("cameras_json", pa.string()),
        _required("config_json", pa.string()),
    ]
)
"""`sequences.parquet`: one row per sequence."""

FRAMES: Final = pa.schema(
    [
        _required("sequence_id", pa.string()),
        _required("frame_index", pa.int32()),
        _required("timestamp_ns", pa.int64()),
        _required("source_log_time_ns", pa.int64()),
        _required("num_points", pa.int32()),
        _required("deskewed", pa.bool_()),
        _nullable("world_from_lidar", TRANSFORM),
        _required("cameras", _list_of(FRAME_CAMERA)),
    ]
)
"""`frames/<sequence_id>.parquet`: one row per LiDAR sweep."""

BOX_COLUMNS: Final = ("x", "y", "z", "length", "width", "height", "yaw")
"""The one box layout, in the lidar frame at the sweep's `timestamp_ns`."""

WORLD_BOX_COLUMNS: Final = ("world_x", "world_y", "world_z", "world_yaw")
VELOCITY_COLUMNS: Final = ("velocity_x", "velocity_y")

LABELS: Final = pa.schema(
    [
        _required("sequence_id", pa.string()),
        _required("frame_index", pa.int32()),
        _required("timestamp_ns", pa.int64()),
        _required("track_id", pa.int64()),
        _required("category", pa.string()),
        _required("score", pa.float32()),
        *(_required(name, pa.float64()) for name in BOX_COLUMNS),
        *(_nullable(name, pa.float64()) for name in WORLD_BOX_COLUMNS),
        *(_nullable(name, pa.float64()) for name in VELOCITY_COLUMNS),
        _required("num_points", pa.int32()),
        _required("origin", pa.string()),
        _required("camera_boxes", _list_of(CAMERA_BOX)),
    ]
)
"""`labels/<sequence_id>.parquet`: one row per box per sweep."""

POINTS: Final = pa.schema(
    [
        _required("frame_index", pa.int32()),
        _required("x", pa.float32()),
        _required("y", pa.float32()),
        _required("z", pa.float32()),
        _required("intensity", pa.float32()),
        _required("time_offset_ns", pa.int32()),
    ]
)
"""`points/<sequence_id>.parquet`: one row group per sweep, lidar frame."""

IMAGES: Final = pa.schema(
    [
        _required("frame_index", pa.int32()),
        _required("timestamp_ns", pa.int64()),
        _required("encoding", pa.string()),
        _required("data", pa.binary()),
    ]
)
"""`images/<sequence_id>/<camera>.parquet`: one row per synchronized image."""

FLAGS: Final = pa.schema(
    [
        _required("sequence_id", pa.string()),
        _nullable("frame_index", pa.int32()),  # null: a whole-track flag
        _nullable("track_id", pa.int64()),  # null: a whole-frame flag
        _required("flag", pa.string()),
        _required("severity", pa.float32()),
        _required("detail", pa.string()),
    ]
)
"""`flags/<sequence_id>.parquet`: the review queue."""


def schema_with_metadata(schema: pa.Schema, sequence_id: str) -> pa.Schema:
    """`schema` with the contract's key-value metadata (`fusion.schema_version`, `fusion.sequence_id`).

    Other metadata already on `schema` is kept; the two fusion keys are replaced.
    """
    metadata = dict(schema.metadata or {})
    metadata[SCHEMA_VERSION_KEY] = str(SCHEMA_VERSION).encode()
    metadata[SEQUENCE_ID_KEY] = sequence_id.encode()
    return schema.with_metadata(metadata)


BAG_SUFFIXES = (".bag", ".mcap", ".db3")


def sequence_id_for(source: Path, others: Iterable[Path] = ()) -> str:
    """The contract's sequence id of an input log: its file stem reduced to `[A-Za-z0-9._-]`.

    When another input in `others` reduces to the same id, a short hash of the absolute source
    path is appended, so two logs never share an id (and no input string becomes a path unsanitised).
    """

    def reduce(p: Path) -> str:
        stem = p.name[: -len(p.suffix)] if p.suffix.lower() in BAG_SUFFIXES else p.name
        sid = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
        return sid if sid not in {"", ".", ".."} else "log"

    sid = reduce(source)
    me = source.resolve()
    if any(reduce(o) == sid and o.resolve() != me for o in others):
        sid = f"{sid}-{hashlib.sha1(str(me).encode()).hexdigest()[:8]}"
    return sid


def is_valid_sequence_id(sequence_id: str) -> bool:
    """Whether `sequence_id` is already sanitised (non-empty, only `[A-Za-z0-9._-]`, not `.`/`..`)."""
    return SEQUENCE_ID_PATTERN.fullmatch(sequence_id) is not None and sequence_id not in {".", ".."}
