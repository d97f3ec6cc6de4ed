"""The labels table (`labels/<sequence_id>.parquet`): build it from numpy columns, check, write, read it.

Used for the pipeline's pre-labels, for the ground truth `fusion simulate` writes beside a simulated
log, and by `fusion eval`. Boxes come in the one declared layout `BOX_COLUMNS`
(x, y, z, length, width, height, yaw), lidar frame, centre at the box's geometric centre.

Camera projections are given flat (`CameraBoxes`: one entry per visible (label row, camera) pair)
and turned into the `camera_boxes` list column with offsets, without a Python loop per box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike, NDArray

from calib.transform import wrap_angle
from exporters.errors import ExportError
from exporters.parquet_io import conform_table, read_table, write_table_atomic
from exporters.schema import (
    BOX_COLUMNS,
    CAMERA_BOX,
    CATEGORIES,
    LABELS,
    ORIGINS,
    VELOCITY_COLUMNS,
    WORLD_BOX_COLUMNS,
)


@dataclass(frozen=True)
class CameraBoxes:
    """Clipped projections of label boxes into cameras, flat: entry i belongs to label row `row[i]`.

    `row` indexes the rows as given to `labels_table` (before it sorts them). A (row, camera) pair
    appears at most once; cameras where a box is not visible have no entry. Within a row, entries
    keep the order given here.
    """

    row: ArrayLike  # (M,) int: index of the label row
    camera: ArrayLike  # (M,) str: camera name, as in sequences.cameras_json
    x_min: ArrayLike  # (M,) float: pixels, in that camera's (distorted) image
    y_min: ArrayLike  # (M,) float
    x_max: ArrayLike  # (M,) float
    y_max: ArrayLike  # (M,) float

    @classmethod
    def empty(cls) -> CameraBoxes:
        """No projection for any row."""
        none = np.empty(0, dtype=np.float32)
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.str_), none, none, none, none)


def labels_table(
    *,
    sequence_id: str,
    frame_index: ArrayLike,
    timestamp_ns: ArrayLike,
    track_id: ArrayLike,
    category: ArrayLike,
    score: ArrayLike,
    boxes: ArrayLike,
    num_points: ArrayLike,
    origin: str | ArrayLike,
    world_boxes: ArrayLike | None = None,
    velocity: ArrayLike | None = None,
    camera_boxes: CameraBoxes | None = None,
) -> pa.Table:
    """A LABELS table from numpy columns, one row per box per sweep, sorted by (frame_index, track_id).

    frame_index: (N,) int          sweep index in the sequence
    timestamp_ns: (N,) int64       the sweep's header stamp (equal for rows of one frame)
    track_id: (N,) int64           one per object, at most one row per (frame_index, track_id)
    category: (N,) str             one of `CATEGORIES`
    score: (N,) float              0..1
    boxes: (N, 7) float            `BOX_COLUMNS` in the lidar frame; yaw is wrapped to [-pi, pi)
    num_points: (N,) int           points inside the box
    origin: (N,) str or one str    one of `ORIGINS`
    world_boxes: (N, 4) float      world_x, world_y, world_z, world_yaw (yaw wrapped);
                                   None, or a row holding a NaN, means null (no pose)
    velocity: (N, 2) float         world-frame velocity_x, velocity_y; None or NaN rows mean null
    camera_boxes: CameraBoxes      flat projections; None means no row has any

    Raises `ExportError` naming the column (and row) when a shape, a value's type, a category or
    origin is wrong, a box is not finite or has a negative size, or a (frame, track) repeats.
    """
    frame = _ints("frame_index", frame_index, np.int32)
    n = len(frame)
    stamp = _ints("timestamp_ns", timestamp_ns, np.int64, n)
    track = _ints("track_id", track_id, np.int64, n)
    points = _ints("num_points", num_points, np.int32, n)
    scores = _floats("score", score, (n,))
    box = _floats("boxes", boxes, (n, len(BOX_COLUMNS)))
    _wrap_finite(box[:, -1])
    categories = _strings("category", category, n)
    if isinstance(origin, str):
        origins = pa.repeat(pa.scalar(origin, pa.string()), n)
    else:
        origins = _strings("origin", origin, n)

    world, world_null = _optional_rows("world_boxes", world_boxes, n, len(WORLD_BOX_COLUMNS))
    _wrap_finite(world[:, -1])
    vel, vel_null = _optional_rows("velocity", velocity, n, len(VELOCITY_COLUMNS))

    order = np.lexsort((track, frame))
    # rows given in order already (as the pipeline gives them) are not copied to be reordered:
    # the labels of a 5-minute log are ~20 MB of columns
    sel: NDArray[np.intp] | slice = slice(None) if np.array_equal(order, np.arange(n)) else order

    def taken(values: pa.Array) -> pa.Array:
        return values if isinstance(sel, slice) else values.take(pa.array(sel))

    columns: dict[str, pa.Array] = {
        "sequence_id": pa.repeat(pa.scalar(sequence_id, pa.string()), n),
        "frame_index": pa.array(frame[sel]),
        "timestamp_ns": pa.array(stamp[sel]),
        "track_id": pa.array(track[sel]),
        "category": taken(categories),
        "score": pa.array(scores[sel].astype(np.float32)),
    }
    for i, name in enumerate(BOX_COLUMNS):
        columns[name] = pa.array(box[sel, i])
    for i, name in enumerate(WORLD_BOX_COLUMNS):
        columns[name] = pa.array(world[sel, i], mask=world_null[sel])
    for i, name in enumerate(VELOCITY_COLUMNS):
        columns[name] = pa.array(vel[sel, i], mask=vel_null[sel])
    columns["num_points"] = pa.array(points[sel])
    columns["origin"] = taken(origins)
    columns["camera_boxes"] = _camera_box_lists(camera_boxes or CameraBoxes.empty(), order)

    table = pa.Table.from_arrays([columns[name] for name in LABELS.names], schema=LABELS)
    validate_labels(table)
    return table


def labels_from_rows(
    sequence_id: str,
    rows: dict[str, list[Any]],
    boxes: list[Any],
    *,
    world_boxes: list[Any] | None = None,
    velocity: list[Any] | None = None,
) -> pa.Table:
    """A detected-origin LABELS table from an importer's per-box lists.

    rows: "frame", "stamp", "track", "category", "score" and optionally "points" (else 0), one entry
    per box; boxes: N sequences of the 7 `BOX_COLUMNS` values in the lidar frame; world_boxes (N x 4)
    and velocity (N x 2) as `labels_table` takes them (None: null).
    """
    n = len(boxes)
    return labels_table(
        sequence_id=sequence_id,
        frame_index=np.asarray(rows["frame"], dtype=np.int64),
        timestamp_ns=np.asarray(rows["stamp"], dtype=np.int64),
        track_id=np.asarray(rows["track"], dtype=np.int64),
        category=rows["category"],
        score=np.asarray(rows["score"], dtype=np.float64),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(n, 7),
        num_points=np.asarray(rows.get("points", np.zeros(n)), dtype=np.int64),
        origin="detected",
        world_boxes=None if world_boxes is None else np.asarray(world_boxes, dtype=np.float64).reshape(n, 4),
        velocity=None if velocity is None else np.asarray(velocity, dtype=np.float64).reshape(n, 2),
    )


def validate_labels(table: pa.Table, *, context: str = "labels") -> None:
    """Check what the LABELS schema cannot: categories, origins, finite boxes, ranges, unique keys.

    `table` must already have the LABELS schema (`conform_table`). `context` starts each message
    (e.g. "cannot write <path>"). Raises `ExportError` naming the column, the row and the value.
    """
    _check_in("category", table["category"], CATEGORIES, context)
    _check_in("origin", table["origin"], ORIGINS, context)

    score = table["score"].to_numpy()
    _check_rows(context, "score", score, ~((score >= 0.0) & (score <= 1.0)), "is not within 0..1")
    for name in BOX_COLUMNS:
        values = table[name].to_numpy()
        _check_rows(context, name, values, ~np.isfinite(values), "is not finite")
    for name in ("length", "width", "height"):
        values = table[name].to_numpy()
        _check_rows(context, name, values, values < 0.0, "is negative")
    for name in (*WORLD_BOX_COLUMNS, *VELOCITY_COLUMNS):
        values = table[name].to_numpy(zero_copy_only=False)  # nulls come back as NaN
        null = table[name].is_null().to_numpy(zero_copy_only=False)
        _check_rows(context, name, values, ~np.isfinite(values) & ~null, "is not finite")
    for name in ("yaw", "world_yaw"):
        values = table[name].to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            outside = (values < -math.pi) | (values >= math.pi)
        what = "is outside [-pi, pi); wrap it with calib.transform.wrap_angle"
        _check_rows(context, name, values, outside, what)
    points = table["num_points"].to_numpy()
    _check_rows(context, "num_points", points, points < 0, "is negative")

    frame = table["frame_index"].to_numpy()
    track = table["track_id"].to_numpy()
    stamp = table["timestamp_ns"].to_numpy()
    order = np.lexsort((track, frame))
    same_frame = frame[order][1:] == frame[order][:-1]
    repeated = same_frame & (track[order][1:] == track[order][:-1])
    if repeated.any():
        row = int(order[1:][repeated][0])
        raise ExportError(
            f"{context}: track_id {track[row]} appears more than once in frame_index {frame[row]}"
        )
    restamped = same_frame & (stamp[order][1:] != stamp[order][:-1])
    if restamped.any():
        row = int(order[1:][restamped][0])
        raise ExportError(f"{context}: rows of frame_index {frame[row]} have different timestamp_ns")

    _check_camera_boxes(table["camera_boxes"], context)


def write_labels(path: Path | str, table: pa.Table, sequence_id: str, *, overwrite: bool = False) -> Path:
    """Write a labels table to `path` atomically (see `write_table_atomic`), after `validate_labels`."""
    path = Path(path)
    table = conform_table(table, LABELS, path=path)
    validate_labels(table, context=f"cannot write {path}")
    return write_table_atomic(table, path, sequence_id=sequence_id, schema=LABELS, overwrite=overwrite)


def read_labels(path: Path | str) -> pa.Table:
    """Read a labels file, checking its schema version and columns (see `read_table`)."""
    return read_table(path, LABELS)


def _ints(
    name: str, values: ArrayLike, dtype: type[np.signedinteger[Any]], n: int | None = None
) -> NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1 or (n is not None and len(array) != n):
        raise ExportError(f"labels: '{name}' has shape {array.shape}, expected ({'N' if n is None else n},)")
    if array.size == 0:
        return array.astype(dtype)
    if array.dtype.kind not in "iu":
        raise ExportError(f"labels: '{name}' must hold integers, got {array.dtype}")
    info = np.iinfo(dtype)
    if array.min() < info.min or array.max() > info.max:
        raise ExportError(f"labels: '{name}' has values outside {np.dtype(dtype).name}")
    return array.astype(dtype, copy=False)


def _floats(name: str, values: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    try:
        array = np.array(values, dtype=np.float64)  # a copy: the caller's array is never changed
    except (TypeError, ValueError) as err:
        raise ExportError(f"labels: '{name}' must hold numbers: {err}") from err
    if array.shape != shape:
        raise ExportError(f"labels: '{name}' has shape {array.shape}, expected {shape}")
    return array


def _strings(name: str, values: ArrayLike, n: int) -> pa.Array:
    try:
        array = pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise ExportError(f"labels: '{name}' must hold strings: {err}") from err
    if len(array) != n:
        raise ExportError(f"labels: '{name}' has {len(array)} values, expected {n}")
    return array


def _wrap_finite(yaw: NDArray[np.float64]) -> None:
    """Wrap `yaw` in place, leaving non-finite values for `validate_labels` to report as they were."""
    finite = np.isfinite(yaw)
    yaw[finite] = wrap_angle(yaw[finite])


def _optional_rows(
    name: str, values: ArrayLike | None, n: int, width: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """(n, width) values and the (n,) rows to store as null: all when None, else rows holding a NaN."""
    if values is None:
        return np.zeros((n, width)), np.ones(n, dtype=bool)
    array = _floats(name, values, (n, width))
    null = np.asarray(np.isnan(array).any(axis=1), dtype=bool)
    array[null] = 0.0
    return array, null


def _camera_box_lists(boxes: CameraBoxes, order: NDArray[np.intp]) -> pa.Array:
    """The `camera_boxes` list column for label rows taken in `order` (a permutation of N rows)."""
    n = len(order)
    row = _ints("camera_boxes.row", boxes.row, np.int64)
    m = len(row)
    camera = _strings("camera_boxes.camera", boxes.camera, m)
    corners = [
        _floats(f"camera_boxes.{name}", getattr(boxes, name), (m,))
        for name in ("x_min", "y_min", "x_max", "y_max")
    ]
    if m and (row.min() < 0 or row.max() >= n):
        raise ExportError(
            f"labels: 'camera_boxes.row' must index the {n} label rows, got {row.min()}..{row.max()}"
        )
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    new_row = rank[row]
    by_row = np.argsort(new_row, kind="stable")
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(new_row, minlength=n), out=offsets[1:])
    values = pa.StructArray.from_arrays(
        [camera.take(pa.array(by_row)), *(pa.array(c[by_row].astype(np.float32)) for c in corners)],
        fields=list(CAMERA_BOX),
    )
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=LABELS.field("camera_boxes").type)


def _check_in(name: str, column: pa.ChunkedArray, allowed: tuple[str, ...], context: str) -> None:
    bad = pc.unique(pc.filter(column, pc.invert(pc.is_in(column, value_set=pa.array(allowed)))))
    if len(bad):
        raise ExportError(
            f"{context}: '{name}' has unknown value {bad[0].as_py()!r}; allowed: {', '.join(allowed)}"
        )


def _check_rows(context: str, name: str, values: NDArray[Any], bad: NDArray[np.bool_], what: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ExportError(f"{context}: '{name}' {what} (row {row}: {values[row]})")


def _check_camera_boxes(column: pa.ChunkedArray, context: str) -> None:
    lists = column.combine_chunks()
    parent = pc.list_parent_indices(lists).to_numpy()
    entries = lists.flatten()
    corners = {name: entries.field(name).to_numpy() for name in ("x_min", "y_min", "x_max", "y_max")}
    for name, values in corners.items():
        _check_rows(context, f"camera_boxes.{name}", values, ~np.isfinite(values), "is not finite")
    for low, high in (("x_min", "x_max"), ("y_min", "y_max")):
        inverted = corners[low] > corners[high]
        if inverted.any():
            i = int(np.flatnonzero(inverted)[0])
            raise ExportError(
                f"{context}: 'camera_boxes' of row {parent[i]} has "
                f"{low} {corners[low][i]} > {high} {corners[high][i]}"
            )
    camera = pc.dictionary_encode(entries.field("camera"))
    key = parent.astype(np.int64) * max(len(camera.dictionary), 1) + camera.indices.to_numpy()
    unique, counts = np.unique(key, return_counts=True)
    if (counts > 1).any():
        i = int(np.flatnonzero(key == unique[counts > 1][0])[0])
        camera_name = entries.field("camera")[i].as_py()
        raise ExportError(f"{context}: 'camera_boxes' of row {parent[i]} has camera {camera_name!r} twice")
