"""Write the pre-label dataset directory of shared/CONTRACT.md (schema version 1).

Layout written (every Parquet file with `fusion.schema_version` / `fusion.sequence_id` metadata,
every file written under a hidden temporary name and renamed into place)::

    <out>/dataset.json                          last, atomically: present = the dataset is complete
    <out>/sequences.parquet                     one row per sequence (`SequenceInfo`)
    <out>/frames/<sid>.parquet                  one row per sweep (`FrameRow`)
    <out>/labels/<sid>.parquet                  the pre-labels (`exporters.labels.labels_table`)
    <out>/points/<sid>.parquet                  optional: one row group per sweep (`PointsWriter`)
    <out>/images/<sid>/<camera>.parquet         optional: one row per image (`ImagesWriter`)
    <out>/flags/<sid>.parquet                   optional: the review queue

Use::

    with DatasetWriter(out, pipeline=PipelineInfo("0.1.0", "geometric", "ab3dmot", config)) as ds:
        seq = ds.sequence("drive_01")
        with seq.points() as points:
            for frame_index, cloud in enumerate(clouds):
                points.add(frame_index, cloud.xyz, cloud.intensity, cloud.time_offset_ns)
        seq.write_frames(frame_rows)
        seq.write_labels(labels)
        ds.add_sequence(SequenceInfo(...))
    # leaving the block writes sequences.parquet, then dataset.json; an exception writes neither

A `SequenceWriter` holds only paths, so one can be made in another process
(`SequenceWriter(out, sid)`) and the driver then calls `add_sequence` and `finish`.
Nothing is ever overwritten unless `overwrite=True`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from calib.camera import Camera
from calib.transform import Transform
from exporters.errors import ExportError
from exporters.labels import write_labels
from exporters.parquet_io import (
    DEFAULT_PARQUET_OPTIONS,
    AtomicParquetConcat,
    AtomicParquetWriter,
    conform_table,
    write_table_atomic,
)
from exporters.schema import (
    FLAGS,
    FRAMES,
    IMAGE_ENCODINGS,
    IMAGES,
    POINTS,
    SCHEMA_VERSION,
    SEQUENCES,
    is_valid_sequence_id,
    schema_with_metadata,
)

DATASET_JSON: Final = "dataset.json"
SEQUENCES_FILE: Final = "sequences.parquet"
SEQUENCE_DIRS: Final = ("frames", "labels", "points", "images", "flags")
"""Sub-directories holding per-sequence files."""

POINT_FLOAT_COLUMNS: Final = ("x", "y", "z", "intensity")
POINTS_PARQUET_OPTIONS: Final[dict[str, Any]] = {
    "compression": "zstd",
    "use_byte_stream_split": list(POINT_FLOAT_COLUMNS),
    "use_dictionary": ["frame_index"],  # dictionary would win over byte-stream-split on the floats
}
"""Parquet options of `points/<sid>.parquet`: byte-stream-split + zstd on the float columns."""

IMAGES_PARQUET_OPTIONS: Final[dict[str, Any]] = {
    "compression": {"frame_index": "zstd", "timestamp_ns": "zstd", "encoding": "zstd", "data": "none"},
    "use_dictionary": ["encoding"],
    "write_statistics": ["frame_index", "timestamp_ns", "encoding"],
}
"""Parquet options of `images/<sid>/<camera>.parquet`: JPEG/PNG bytes are stored as they are."""

IMAGE_ROW_GROUP_BYTES: Final = 8 * 1024 * 1024
IMAGE_ROW_GROUP_ROWS: Final = 32
"""An images row group is flushed at this many bytes or rows, whichever comes first."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def camera_file_stem(camera: str) -> str:
    """The file stem of a camera's images file: its name reduced to `[A-Za-z0-9._-]` (others -> `_`)."""
    stem = _UNSAFE.sub("_", camera)
    return stem if stem not in {"", ".", ".."} else "camera"


def dataset_paths(out: Path, sequence_id: str) -> dict[str, Path]:
    """The final paths of one sequence's files under `out` (points/flags/images may not exist)."""
    return {
        "frames": out / "frames" / f"{sequence_id}.parquet",
        "labels": out / "labels" / f"{sequence_id}.parquet",
        "points": out / "points" / f"{sequence_id}.parquet",
        "flags": out / "flags" / f"{sequence_id}.parquet",
        "images": out / "images" / sequence_id,
    }


# ---- rows


@dataclass(frozen=True)
class SequenceCamera:
    """One camera of a sequence as `sequences.cameras_json` records it."""

    camera: Camera  # intrinsics, distortion, image size, optical frame id
    topic: str  # the image topic in the log
    lidar_from_camera: Transform  # maps camera optical-frame points into the lidar frame

    def to_json(self) -> dict[str, Any]:
        """`{name, topic, frame_id, width, height, model, K (9), D (list), lidar_from_camera (16)}`."""
        cam = self.camera
        return {
            "name": cam.name,
            "topic": self.topic,
            "frame_id": cam.frame_id,
            "width": int(cam.width),
            "height": int(cam.height),
            "model": cam.model,
            "K": [float(v) for v in np.asarray(cam.K).reshape(9)],
            "D": [float(v) for v in cam.D],
            "lidar_from_camera": [float(v) for v in self.lidar_from_camera.matrix.reshape(16)],
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], *, lidar_frame: str = "lidar") -> SequenceCamera:
        """Inverse of `to_json`; the transform is `lidar_frame` <- the camera's `frame_id`."""
        camera = Camera(
            name=str(entry["name"]),
            frame_id=str(entry["frame_id"]),
            width=int(entry["width"]),
            height=int(entry["height"]),
            model=entry["model"],
            K=np.asarray(entry["K"], dtype=np.float64).reshape(3, 3),
            D=tuple(float(v) for v in entry["D"]),
        )
        matrix = np.asarray(entry["lidar_from_camera"], dtype=np.float64).reshape(4, 4)
        transform = Transform.from_matrix(matrix, parent=lidar_frame, child=camera.frame_id)
        return cls(camera=camera, topic=str(entry["topic"]), lidar_from_camera=transform)


@dataclass(frozen=True)
class SequenceInfo:
    """One row of `sequences.parquet`: one input log."""

    sequence_id: str  # sanitised id (`exporters.schema.sequence_id_for`)
    source_path: str  # the log as given on the command line
    source_size_bytes: int  # its size on disk (a directory's total for ROS 2 bags)
    start_ns: int  # first sweep's header stamp
    end_ns: int  # last sweep's header stamp
    num_frames: int  # sweeps, = rows of frames/<sid>.parquet
    lidar_topic: str  # the PointCloud2 topic the sweeps came from
    world_frame: str | None  # the fixed TF frame (`map`/`odom`); None when the log has no poses
    cameras: tuple[SequenceCamera, ...] = ()  # the cameras used, in the order given
    config: Mapping[str, Any] = field(default_factory=dict)  # the effective pipeline configuration

    @classmethod
    def from_frames(
        cls,
        sequence_id: str,
        frames: Sequence[FrameRow] | FrameColumns,
        *,
        source_path: str,
        source_size_bytes: int,
        lidar_topic: str,
        world_frame: str | None,
        cameras: Sequence[SequenceCamera] = (),
        config: Mapping[str, Any] | None = None,
    ) -> SequenceInfo:
        """The row of a sequence whose sweeps are `frames`: start/end/num_frames taken from them."""
        if isinstance(frames, FrameColumns):
            stamps = np.asarray(frames.timestamp_ns, dtype=np.int64).tolist()
        else:
            stamps = [f.timestamp_ns for f in frames]
        return cls(
            sequence_id=sequence_id,
            source_path=source_path,
            source_size_bytes=source_size_bytes,
            start_ns=min(stamps, default=0),
            end_ns=max(stamps, default=0),
            num_frames=len(stamps),
            lidar_topic=lidar_topic,
            world_frame=world_frame,
            cameras=tuple(cameras),
            config=dict(config or {}),
        )


def sequences_table(rows: Sequence[SequenceInfo]) -> pa.Table:
    """The SEQUENCES table of `rows` (order kept). Raises `ExportError` for a bad or repeated id."""
    ids = [r.sequence_id for r in rows]
    for sid in ids:
        _check_sequence_id(sid)
    repeated = sorted({sid for sid in ids if ids.count(sid) > 1})
    if repeated:
        raise ExportError(f"{SEQUENCES_FILE}: sequence id(s) {repeated} appear more than once")
    columns: dict[str, Any] = {
        "sequence_id": ids,
        "source_path": [r.source_path for r in rows],
        "source_size_bytes": [r.source_size_bytes for r in rows],
        "start_ns": [r.start_ns for r in rows],
        "end_ns": [r.end_ns for r in rows],
        "num_frames": [r.num_frames for r in rows],
        "lidar_topic": [r.lidar_topic for r in rows],
        "world_frame": [r.world_frame for r in rows],
        "cameras_json": [json.dumps([c.to_json() for c in r.cameras]) for r in rows],
        "config_json": [_config_json(r.sequence_id, r.config) for r in rows],
    }
    table = pa.Table.from_pydict(columns, schema=SEQUENCES.remove_metadata())
    return conform_table(table, SEQUENCES, path=SEQUENCES_FILE)


@dataclass(frozen=True)
class FrameCamera:
    """The image chosen for one camera in one sweep (an element of `frames.cameras`)."""

    name: str  # the camera's name, as in `sequences.cameras_json`
    timestamp_ns: int  # the image's header stamp
    offset_ns: int  # image stamp minus when the sweep crossed the camera's optical axis


@dataclass(frozen=True)
class FrameRow:
    """One row of `frames/<sid>.parquet`: one LiDAR sweep."""

    frame_index: int  # 0..n-1 in sweep order
    timestamp_ns: int  # the PointCloud2 header stamp
    source_log_time_ns: int  # the bag record time of the sweep message
    num_points: int  # finite points kept
    deskewed: bool  # points were motion-compensated to `timestamp_ns`
    world_from_lidar: Transform | npt.ArrayLike | None = None  # pose at `timestamp_ns`; (4, 4) or (16,)
    cameras: tuple[FrameCamera, ...] = ()  # cameras with an image within tolerance


def frames_table(sequence_id: str, frames: Sequence[FrameRow]) -> pa.Table:
    """The FRAMES table of one sequence; `frames` must hold frame_index 0..n-1 in order.

    Raises `ExportError` when the indices are not contiguous from 0 or a pose is not 16 finite values.
    """
    n = len(frames)
    poses = np.zeros((n, 16), dtype=np.float64)
    no_pose = np.zeros(n, dtype=bool)
    for i, f in enumerate(frames):
        if f.world_from_lidar is None:
            no_pose[i] = True
            continue
        m = f.world_from_lidar.matrix if isinstance(f.world_from_lidar, Transform) else f.world_from_lidar
        values = np.asarray(m, dtype=np.float64).reshape(-1)
        poses[i] = values if values.shape == (16,) else np.nan  # not 16 values: refused as not finite
    counts = np.array([len(f.cameras) for f in frames], dtype=np.int64)
    flat = [c for f in frames for c in f.cameras]
    return frame_columns_table(
        sequence_id,
        FrameColumns(
            frame_index=np.array([f.frame_index for f in frames], dtype=np.int64),
            timestamp_ns=np.array([f.timestamp_ns for f in frames], dtype=np.int64),
            source_log_time_ns=np.array([f.source_log_time_ns for f in frames], dtype=np.int64),
            num_points=np.array([f.num_points for f in frames], dtype=np.int64),
            deskewed=np.array([bool(f.deskewed) for f in frames], dtype=bool),
            world_from_lidar=poses,
            no_pose=no_pose,
            camera_counts=counts,
            camera_name=pa.array([c.name for c in flat], type=pa.string()),
            camera_timestamp_ns=np.array([c.timestamp_ns for c in flat], dtype=np.int64),
            camera_offset_ns=np.array([c.offset_ns for c in flat], dtype=np.int64),
        ),
    )


@dataclass(frozen=True, eq=False)
class FrameColumns:
    """The rows of `frames/<sid>.parquet` as columns (n sweeps, M paired images in all): what
    `FrameRow`s hold, without a Python object per sweep.

    frame_index, timestamp_ns, source_log_time_ns, num_points: (n,) integers; deskewed: (n,) bool.
    world_from_lidar: (n, 16) float64, 4x4 row-major (any values where `no_pose`); no_pose: (n,) bool.
    camera_counts: (n,) the images of each sweep; camera_name (M,) Arrow strings, camera_timestamp_ns
    and camera_offset_ns (M,) int64: sweep k's are the `camera_counts[k]` after the earlier sweeps'.
    """

    frame_index: npt.NDArray[np.integer[Any]]
    timestamp_ns: npt.NDArray[np.integer[Any]]
    source_log_time_ns: npt.NDArray[np.integer[Any]]
    num_points: npt.NDArray[np.integer[Any]]
    deskewed: npt.NDArray[np.bool_]
    world_from_lidar: npt.NDArray[np.float64]
    no_pose: npt.NDArray[np.bool_]
    camera_counts: npt.NDArray[np.integer[Any]]
    camera_name: pa.Array
    camera_timestamp_ns: npt.NDArray[np.integer[Any]]
    camera_offset_ns: npt.NDArray[np.integer[Any]]


def frame_columns_table(sequence_id: str, frames: FrameColumns) -> pa.Table:
    """The FRAMES table of one sequence from columns (`frames_table` of the same rows).

    Raises `ExportError` when the indices are not 0..n-1 in order or a pose is not 16 finite values.
    """
    _check_sequence_id(sequence_id)
    where = f"frames/{sequence_id}.parquet"
    index = np.asarray(frames.frame_index, dtype=np.int64)
    n = len(index)
    if not np.array_equal(index, np.arange(n)):
        raise ExportError(
            f"cannot write {where}: frame_index must be 0..{n - 1} in order, got {index[:10].tolist()}..."
        )
    poses = np.asarray(frames.world_from_lidar, dtype=np.float64).reshape(n, 16)
    no_pose = np.asarray(frames.no_pose, dtype=bool)
    bad = np.flatnonzero(~no_pose & ~np.isfinite(poses).all(axis=1))
    if bad.size:
        raise ExportError(
            f"cannot write {where}: world_from_lidar of frame {int(bad[0])} must be 16 finite values "
            "(4x4 row-major)"
        )
    poses = np.where(no_pose[:, None], 0.0, poses)
    pose_values = pa.array(poses.reshape(-1), type=pa.float64())
    pose_type = FRAMES.field("world_from_lidar").type
    pose_column = pa.FixedSizeListArray.from_arrays(pose_values, type=pose_type, mask=pa.array(no_pose))

    camera_type = FRAMES.field("cameras").type
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(frames.camera_counts, out=offsets[1:])
    struct = pa.StructArray.from_arrays(
        [
            frames.camera_name.cast(pa.string()),
            pa.array(np.asarray(frames.camera_timestamp_ns, dtype=np.int64), type=pa.int64()),
            pa.array(np.asarray(frames.camera_offset_ns, dtype=np.int64), type=pa.int64()),
        ],
        fields=list(camera_type.value_type),
    )
    cameras = pa.ListArray.from_arrays(pa.array(offsets), struct, type=camera_type)
    columns = [
        pa.repeat(pa.scalar(sequence_id, pa.string()), n),
        pa.array(index, type=pa.int32()),
        pa.array(np.asarray(frames.timestamp_ns, dtype=np.int64), type=pa.int64()),
        pa.array(np.asarray(frames.source_log_time_ns, dtype=np.int64), type=pa.int64()),
        pa.array(np.asarray(frames.num_points, dtype=np.int32), type=pa.int32()),
        pa.array(np.asarray(frames.deskewed, dtype=bool), type=pa.bool_()),
        pose_column,
        cameras,
    ]
    return conform_table(pa.Table.from_arrays(columns, names=FRAMES.names), FRAMES, path=where)


def points_table(
    frame_index: int, xyz: npt.ArrayLike, intensity: npt.ArrayLike, time_offset_ns: npt.ArrayLike
) -> pa.Table:
    """The POINTS rows of one sweep.

    xyz: (N, 3) float (stored float32), intensity: (N,) float, time_offset_ns: (N,) int (int32 range).
    """
    p = np.asarray(xyz)
    n = p.shape[0] if p.ndim == 2 else -1
    if p.ndim != 2 or p.shape[1] != 3:
        raise ExportError(f"points of frame {frame_index}: xyz must be (N, 3), got shape {p.shape}")
    inten = np.asarray(intensity)
    offsets = np.asarray(time_offset_ns)
    if inten.shape != (n,) or offsets.shape != (n,):
        raise ExportError(
            f"points of frame {frame_index}: intensity {inten.shape} and time_offset_ns {offsets.shape} "
            f"must both be ({n},)"
        )
    if n and offsets.dtype.kind not in "iu":
        raise ExportError(
            f"points of frame {frame_index}: time_offset_ns must hold integers, got {offsets.dtype}"
        )
    if n and (offsets.min() < np.iinfo(np.int32).min or offsets.max() > np.iinfo(np.int32).max):
        raise ExportError(f"points of frame {frame_index}: time_offset_ns does not fit int32 (about +-2.1 s)")
    p32 = np.ascontiguousarray(p, dtype=np.float32)
    return pa.Table.from_arrays(
        [
            pa.array(np.full(n, frame_index, dtype=np.int32)),
            pa.array(p32[:, 0]),
            pa.array(p32[:, 1]),
            pa.array(p32[:, 2]),
            pa.array(inten.astype(np.float32, copy=False)),
            pa.array(offsets.astype(np.int32, copy=False)),
        ],
        schema=POINTS.remove_metadata(),
    )


@dataclass(frozen=True)
class PipelineInfo:
    """`dataset.json`'s `pipeline`: what produced the dataset."""

    version: str  # fusion's version
    detector: str  # the detector's name
    tracker: str  # the tracker's name
    config: Mapping[str, Any] = field(default_factory=dict)  # the full effective configuration

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "detector": self.detector,
            "tracker": self.tracker,
            "config": json.loads(_config_json("pipeline", self.config)),
        }


# ---- incremental writers


class _ClosedOnSuccess:
    """A writer used as a context manager: `close()` (rename into place) when the block succeeds,
    `abort()` (drop the temporary file) when it raises."""

    def close(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class PartsWriter(_ClosedOnSuccess):
    """A points or images file of a sequence joined from part files (`AtomicParquetConcat`): each
    part's row groups are copied as they are, so the parts must hold the final frame indices.
    Same commit/abort rules as `PointsWriter`."""

    def __init__(self, path: Path, *, overwrite: bool = False) -> None:
        self.path = path
        self._closed = False
        self._concat = AtomicParquetConcat(path, overwrite=overwrite)

    @property
    def closed(self) -> bool:
        """Committed or aborted."""
        return self._closed

    @property
    def num_row_groups(self) -> int:
        """Row groups appended so far (sweeps, for points)."""
        return self._concat.num_row_groups

    def append(self, part: Path) -> int:
        """Append every row group of `part`; how many."""
        return self._concat.append(part)

    def close(self) -> Path:
        """Finish the file and rename it into place."""
        self._closed = True
        self._concat.commit()
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (safe to call more than once)."""
        self._closed = True
        self._concat.abort()


class PointsWriter(_ClosedOnSuccess):
    """`points/<sid>.parquet`, one row group per sweep, added in frame_index order 0, 1, 2, ...

    Every sweep of the sequence is added (an empty one as an empty row group), so row group k holds
    frame k. The file appears under its final name only on `close` (or leaving the `with` block
    normally); an exception aborts and leaves nothing. `durable`: see `AtomicParquetWriter`.
    """

    def __init__(
        self,
        path: Path,
        sequence_id: str,
        *,
        overwrite: bool = False,
        parquet_options: Mapping[str, Any] = POINTS_PARQUET_OPTIONS,
        first_frame: int = 0,
        durable: bool = True,
    ) -> None:
        self.path = path
        self.sequence_id = sequence_id
        self._first = first_frame  # a part of a sequence (`fusion.chunks`) starts later
        self._next = first_frame
        self._closed = False
        self._writer = AtomicParquetWriter(
            path,
            schema=POINTS,
            sequence_id=sequence_id,
            overwrite=overwrite,
            durable=durable,
            **parquet_options,
        )

    @property
    def closed(self) -> bool:
        """Committed or aborted."""
        return self._closed

    @property
    def num_frames(self) -> int:
        """Sweeps added so far."""
        return self._next - self._first

    @property
    def next_frame(self) -> int:
        """The frame_index the next `add` must give."""
        return self._next

    def add(
        self,
        frame_index: int,
        xyz: npt.ArrayLike,
        intensity: npt.ArrayLike,
        time_offset_ns: npt.ArrayLike,
    ) -> None:
        """Append one sweep as one row group. xyz: (N, 3), intensity: (N,), time_offset_ns: (N,) int."""
        if frame_index != self._next:
            self.abort()
            raise ExportError(
                f"cannot write {self.path}: sweeps must be added in frame_index order; "
                f"expected frame {self._next}, got {frame_index}"
            )
        table = points_table(frame_index, xyz, intensity, time_offset_ns)
        self._writer.write(table, row_group_size=max(table.num_rows, 1))
        self._next += 1

    def close(self) -> Path:
        """Finish the file and rename it into place."""
        self._closed = True
        self._writer.commit()
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (safe to call more than once)."""
        self._closed = True
        self._writer.abort()


class ImagesWriter(_ClosedOnSuccess):
    """`images/<sid>/<camera>.parquet`: one row per synchronized image, in frame_index order.

    Images are buffered and written a few at a time (`IMAGE_ROW_GROUP_BYTES` / `IMAGE_ROW_GROUP_ROWS`
    per row group). Same commit/abort rules (and `durable`) as `PointsWriter`.
    """

    def __init__(
        self, path: Path, sequence_id: str, camera: str, *, overwrite: bool = False, durable: bool = True
    ) -> None:
        self.path = path
        self.camera = camera
        self._last = -1
        self._rows: list[tuple[int, int, str, bytes]] = []
        self._bytes = 0
        self._closed = False
        self._writer = AtomicParquetWriter(
            path,
            schema=IMAGES,
            sequence_id=sequence_id,
            overwrite=overwrite,
            durable=durable,
            **IMAGES_PARQUET_OPTIONS,
        )

    @property
    def closed(self) -> bool:
        """Committed or aborted."""
        return self._closed

    def add(self, frame_index: int, timestamp_ns: int, data: bytes, encoding: str) -> None:
        """Append one encoded image (`encoding`: "jpeg" or "png"), frame indices increasing."""
        if encoding not in IMAGE_ENCODINGS:
            self.abort()
            raise ExportError(
                f"cannot write {self.path}: image encoding {encoding!r} is not one of "
                f"{', '.join(IMAGE_ENCODINGS)}"
            )
        if frame_index <= self._last:
            self.abort()
            raise ExportError(
                f"cannot write {self.path}: images must be added with increasing frame_index; "
                f"got {frame_index} after {self._last}"
            )
        self._last = frame_index
        self._rows.append((frame_index, timestamp_ns, encoding, bytes(data)))
        self._bytes += len(data)
        if self._bytes >= IMAGE_ROW_GROUP_BYTES or len(self._rows) >= IMAGE_ROW_GROUP_ROWS:
            self._flush()

    def add_array(
        self, frame_index: int, timestamp_ns: int, rgb: npt.NDArray[np.uint8], *, encoding: str = "jpeg"
    ) -> None:
        """Encode an (H, W, 3) uint8 RGB (or (H, W) mono) image with OpenCV and `add` it."""
        import cv2

        pixels: npt.NDArray[Any] = np.asarray(rgb)
        if pixels.ndim == 3 and pixels.shape[2] == 3:
            pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
        ok, buffer = cv2.imencode(".jpg" if encoding == "jpeg" else f".{encoding}", pixels)
        if not ok:
            self.abort()
            raise ExportError(
                f"cannot write {self.path}: OpenCV could not encode frame {frame_index} as {encoding}"
            )
        self.add(frame_index, timestamp_ns, buffer.tobytes(), encoding)

    def close(self) -> Path:
        """Write what is buffered, finish the file and rename it into place."""
        self._flush()
        self._closed = True
        self._writer.commit()
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (safe to call more than once)."""
        self._rows = []
        self._closed = True
        self._writer.abort()

    def _flush(self) -> None:
        if not self._rows:
            return
        frame, stamp, enc, data = zip(*self._rows, strict=True)
        table = pa.Table.from_arrays(
            [
                pa.array(frame, pa.int32()),
                pa.array(stamp, pa.int64()),
                pa.array(enc, pa.string()),
                pa.array(data, pa.binary()),
            ],
            schema=IMAGES.remove_metadata(),
        )
        self._rows, self._bytes = [], 0
        self._writer.write(table, row_group_size=table.num_rows)


class SequenceWriter:
    """The files of one sequence under `out` (frames, labels, points, images, flags)."""

    def __init__(self, out: Path | str, sequence_id: str, *, overwrite: bool = False) -> None:
        _check_sequence_id(sequence_id)
        self.out = Path(out)
        self.sequence_id = sequence_id
        self.overwrite = overwrite
        self.paths = dataset_paths(self.out, sequence_id)
        self._open: list[PointsWriter | ImagesWriter | PartsWriter] = []
        self._cameras: dict[str, str] = {}  # file stem -> camera name

    def write_frames(self, frames: Sequence[FrameRow] | FrameColumns) -> Path:
        """Write `frames/<sid>.parquet` (see `frames_table`, `frame_columns_table`)."""
        if isinstance(frames, FrameColumns):
            table = frame_columns_table(self.sequence_id, frames)
        else:
            table = frames_table(self.sequence_id, frames)
        return self._write(table, self.paths["frames"], FRAMES)

    def write_labels(self, labels: pa.Table) -> Path:
        """Write `labels/<sid>.parquet` (a table from `exporters.labels.labels_table`)."""
        return write_labels(self.paths["labels"], labels, self.sequence_id, overwrite=self.overwrite)

    def write_flags(self, flags: pa.Table) -> Path:
        """Write `flags/<sid>.parquet` (FLAGS columns; cast to the declared types)."""
        return self._write(flags, self.paths["flags"], FLAGS)

    def points(self) -> PointsWriter:
        """An incremental writer of `points/<sid>.parquet` (one row group per sweep)."""
        writer = PointsWriter(self.paths["points"], self.sequence_id, overwrite=self.overwrite)
        self._open.append(writer)
        return writer

    def images(self, camera: str) -> ImagesWriter:
        """An incremental writer of `images/<sid>/<camera>.parquet` (`camera_file_stem(camera)`)."""
        path = self._images_path(camera)
        writer = ImagesWriter(path, self.sequence_id, camera, overwrite=self.overwrite)
        self._open.append(writer)
        return writer

    def points_from_parts(self) -> PartsWriter:
        """`points/<sid>.parquet` joined from part files that `PointsWriter`s wrote (`fusion.chunks`),
        their row groups copied byte for byte; the parts must number their sweeps on from each other."""
        writer = PartsWriter(self.paths["points"], overwrite=self.overwrite)
        self._open.append(writer)
        return writer

    def images_from_parts(self, camera: str) -> PartsWriter:
        """`images/<sid>/<camera>.parquet` joined from `ImagesWriter` part files, like `points_from_parts`."""
        writer = PartsWriter(self._images_path(camera), overwrite=self.overwrite)
        self._open.append(writer)
        return writer

    def _images_path(self, camera: str) -> Path:
        stem = camera_file_stem(camera)
        if self._cameras.get(stem, camera) != camera:
            raise ExportError(
                f"cannot write images of camera {camera!r} in sequence {self.sequence_id}: its file name "
                f"{stem}.parquet is already used by camera {self._cameras[stem]!r}; rename one camera"
            )
        self._cameras[stem] = camera
        return self.paths["images"] / f"{stem}.parquet"

    def open_writers(self) -> list[PointsWriter | ImagesWriter | PartsWriter]:
        """Incremental writers of this sequence not yet closed or aborted."""
        self._open = [w for w in self._open if not w.closed]
        return list(self._open)

    def abort(self) -> None:
        """Abort every incremental writer still open (their temporary files are removed)."""
        for writer in self._open:
            writer.abort()
        self._open = []

    def _write(self, table: pa.Table, path: Path, schema: pa.Schema) -> Path:
        return write_table_atomic(
            table, path, sequence_id=self.sequence_id, schema=schema, overwrite=self.overwrite
        )


class DatasetWriter:
    """Writes one dataset directory; `dataset.json` last, atomically, and only when all went well.

    Refuses (`ExportError`) to write where a dataset or any of its target files already is, unless
    `overwrite=True`. With `overwrite` the old dataset is removed first (`dataset.json`, then the
    files of the sequences it lists), so a run that then fails leaves a directory no reader takes
    for complete, and no file of the old run is left for glob readers to pick up.

    With `extend=True` (and no `overwrite`) a complete dataset already at `out` is kept: its
    sequences (`existing`, rows of its sequences.parquet; `existing_pipeline`) are listed again by
    `finish`, before the ones added, unless `drop_existing` takes one out; `sequences.parquet` and
    `dataset.json` are then replaced (atomically). A failed run leaves the old dataset as it was.
    """

    def __init__(
        self,
        out: Path | str,
        *,
        pipeline: PipelineInfo | None = None,
        overwrite: bool = False,
        extend: bool = False,
    ) -> None:
        self.out = Path(out)
        self.pipeline = pipeline
        self.overwrite = overwrite
        self._sequences: dict[str, SequenceInfo] = {}
        self._writers: list[SequenceWriter] = []
        self._finished = False
        self.existing: dict[str, dict[str, Any]] = {}
        self.existing_pipeline: dict[str, Any] | None = None
        self._existing_table: pa.Table | None = None
        marker = self.out / DATASET_JSON
        if extend and not overwrite and marker.exists():
            self._load_existing()
        elif not overwrite:
            for existing in (marker, self.out / SEQUENCES_FILE):
                if existing.exists():
                    raise ExportError(
                        f"cannot write {existing}: a dataset is already there and fusion never overwrites "
                        "output; remove it, choose another --out, or pass --overwrite"
                    )
        else:
            _remove_previous_dataset(self.out)
        self._made_out = not self.out.exists()  # then an aborted run takes its empty folders away too
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except FileExistsError as err:  # mkdir(exist_ok) raises it only for a file (or a dangling link)
            raise ExportError(
                f"cannot write the dataset into {self.out}: it is not a directory (a file, or a broken "
                "link); choose another --out (a directory, new or holding a dataset)"
            ) from err
        except OSError as err:
            raise ExportError(f"cannot create {self.out}: {err.strerror}; choose a writable --out") from err

    def _load_existing(self) -> None:
        from exporters.reader import LAYOUTS, read_dataset_json, read_versioned

        document = read_dataset_json(self.out)
        layout = LAYOUTS[document["schema_version"]]
        if layout.version != SCHEMA_VERSION:
            raise ExportError(
                f"cannot add to {self.out}: its schema version is {layout.version}, this fusion writes "
                f"{SCHEMA_VERSION}; pass --overwrite or choose another --out"
            )
        table = read_versioned(self.out / SEQUENCES_FILE, SEQUENCES, SCHEMA_VERSION)
        rows = {str(r["sequence_id"]): r for r in table.to_pylist()}
        missing = [sid for sid in document["sequences"] if sid not in rows]
        if missing:
            raise ExportError(
                f"cannot add to {self.out}: {DATASET_JSON} lists {missing[0]!r}, which {SEQUENCES_FILE} "
                "has no row of; the dataset is damaged, pass --overwrite"
            )
        self.existing = {sid: rows[sid] for sid in document["sequences"]}
        pipeline = document.get("pipeline")
        self.existing_pipeline = pipeline if isinstance(pipeline, dict) else {}
        self._existing_table = table.replace_schema_metadata(None)

    def drop_existing(self, sequence_id: str) -> None:
        """Leave an existing sequence out of the rewritten listing (it is being redone)."""
        self.existing.pop(sequence_id, None)

    def sequence(self, sequence_id: str) -> SequenceWriter:
        """A writer of one sequence's files (register its row with `add_sequence`)."""
        writer = SequenceWriter(self.out, sequence_id, overwrite=self.overwrite)
        self._writers.append(writer)
        return writer

    def add_sequence(self, info: SequenceInfo) -> None:
        """Register a sequence's row; its frames and labels files must be written before `finish`."""
        _check_sequence_id(info.sequence_id)
        if info.sequence_id in self._sequences or info.sequence_id in self.existing:
            raise ExportError(f"sequence {info.sequence_id!r} was added twice; sequence ids must be unique")
        self._sequences[info.sequence_id] = info

    @property
    def sequence_ids(self) -> list[str]:
        """The sequences `finish` lists: the existing ones kept, then those added."""
        return [*self.existing, *self._sequences]

    def finish(self, pipeline: PipelineInfo | None = None) -> Path:
        """Write `sequences.parquet`, then `dataset.json`; returns the dataset directory.

        Raises `ExportError` when an incremental writer is still open, a sequence lacks its frames or
        labels file, or a frames file's row count differs from `num_frames`.
        """
        pipeline = pipeline or self.pipeline
        if pipeline is None:
            raise ExportError(
                f"cannot write {self.out / DATASET_JSON}: no pipeline description; "
                "pass pipeline=PipelineInfo(...) to DatasetWriter or finish"
            )
        for writer in self._writers:
            still_open = writer.open_writers()
            if still_open:
                raise ExportError(
                    f"cannot finish {self.out}: {still_open[0].path} is still being written; close it first"
                )
        for info in self._sequences.values():
            self._check_sequence_files(info)
        table = sequences_table(list(self._sequences.values()))
        replace_old = self.overwrite or self._existing_table is not None
        if self._existing_table is not None:
            ids = self._existing_table.column("sequence_id").to_pylist()
            where = {sid: r for r, sid in enumerate(ids)}
            kept = self._existing_table.take([where[sid] for sid in self.existing])  # listing order
            table = pa.concat_tables([kept.cast(table.schema), table])
        _write_sequences(table, self.out / SEQUENCES_FILE, overwrite=replace_old)
        document = {
            "schema_version": SCHEMA_VERSION,
            "sequences": self.sequence_ids,
            "created_ns": time.time_ns(),
            "pipeline": pipeline.to_json(),
        }
        _write_json_atomic(self.out / DATASET_JSON, document, overwrite=replace_old)
        self._finished = True
        return self.out

    def abort(self) -> None:
        """Abort every open incremental writer; no `dataset.json` is written. An output directory this
        writer made is removed again where nothing is left in it but empty folders."""
        for writer in self._writers:
            writer.abort()
        if self._made_out and self.out.is_dir():
            folders = sorted((p for p in self.out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for folder in [*folders, self.out]:
                with contextlib.suppress(OSError):  # not empty: a file is left in it, kept
                    folder.rmdir()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._finished:
            try:
                self.finish()
            except BaseException:
                self.abort()
                raise

    def _check_sequence_files(self, info: SequenceInfo) -> None:
        import pyarrow.parquet as pq

        paths = dataset_paths(self.out, info.sequence_id)
        for kind in ("frames", "labels"):
            if not paths[kind].is_file():
                raise ExportError(
                    f"cannot finish {self.out}: sequence {info.sequence_id!r} has no {paths[kind]}; "
                    f"write its {kind} first"
                )
        rows = pq.ParquetFile(paths["frames"]).metadata.num_rows
        if rows != info.num_frames:
            raise ExportError(
                f"cannot finish {self.out}: {paths['frames']} has {rows} rows but sequence "
                f"{info.sequence_id!r} says num_frames = {info.num_frames}; make them agree"
            )
        if paths["points"].is_file():
            groups = pq.ParquetFile(paths["points"]).metadata.num_row_groups
            if groups != info.num_frames:
                raise ExportError(
                    f"cannot finish {self.out}: {paths['points']} holds {groups} sweeps but sequence "
                    f"{info.sequence_id!r} has {info.num_frames} frames; add every sweep (empty ones too)"
                )


def _remove_previous_dataset(out: Path) -> None:
    """With `overwrite`: remove the dataset at `out` (its dataset.json first, then the files of the
    sequences it lists, then sequences.parquet), so no file of it outlives the new run. Files of
    sequences it does not list are left alone: fusion removes only what its dataset.json names."""
    marker = out / DATASET_JSON
    try:
        document = json.loads(marker.read_text(encoding="utf-8"))
        listed = document.get("sequences", []) if isinstance(document, dict) else []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        listed = []
    ids = [s for s in listed if isinstance(s, str) and is_valid_sequence_id(s)]
    files = [marker, out / SEQUENCES_FILE]
    for sid in ids:
        paths = dataset_paths(out, sid)
        files += [paths[kind] for kind in ("frames", "labels", "points", "flags")]
        if paths["images"].is_dir():
            files += sorted(paths["images"].glob("*.parquet"))
    try:
        for path in files:
            path.unlink(missing_ok=True)
        for sid in ids:
            images = dataset_paths(out, sid)["images"]
            if images.is_dir() and not any(images.iterdir()):
                images.rmdir()
    except OSError as err:
        raise ExportError(
            f"cannot remove {err.filename} of the dataset being overwritten: {err.strerror}; "
            "check its permissions or choose another --out"
        ) from err


def sequences_file_id(sequence_ids: Iterable[str]) -> str:
    """`fusion.sequence_id` of `sequences.parquet`, which holds every sequence: the ids joined by ","."""
    return ",".join(sequence_ids)


def _write_sequences(table: pa.Table, path: Path, *, overwrite: bool) -> Path:
    """Write sequences.parquet atomically; its `fusion.sequence_id` is `sequences_file_id`."""
    import pyarrow.parquet as pq

    if not overwrite and (path.exists() or path.is_symlink()):
        raise ExportError(
            f"cannot write {path}: it already exists and fusion never overwrites output; "
            "remove it, choose another --out, or pass --overwrite"
        )
    ids = table.column("sequence_id").to_pylist()
    table = table.replace_schema_metadata(schema_with_metadata(SEQUENCES, sequences_file_id(ids)).metadata)
    tmp = _tmp_name(path)
    try:
        with tmp.open("xb") as f:
            pq.write_table(table, f, **DEFAULT_PARQUET_OPTIONS)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except (OSError, pa.ArrowException) as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ExportError(
            f"cannot write {path}: {err}; check the output directory or choose another --out"
        ) from err
    return path


def _tmp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def _write_json_atomic(path: Path, document: Mapping[str, Any], *, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ExportError(
            f"cannot write {path}: it already exists and fusion never overwrites output; "
            "remove it, choose another --out, or pass --overwrite"
        )
    tmp = _tmp_name(path)
    try:
        with tmp.open("x", encoding="utf-8") as f:
            json.dump(document, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {err.strerror or err}; choose a writable --out") from err


def _config_json(where: str, config: Mapping[str, Any] | str) -> str:
    if isinstance(config, str):
        return config
    try:
        return json.dumps(config, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ExportError(f"config of {where} cannot be written as JSON: {err}") from err


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_sequence_id(sequence_id: str) -> None:
    if not is_valid_sequence_id(sequence_id):
        raise ExportError(
            f"sequence id {sequence_id!r} is not sanitised (use only A-Z a-z 0-9 . _ -); "
            "make it with exporters.schema.sequence_id_for"
        )
