"""Check a dataset directory against shared/CONTRACT.md: `validate_dataset(path) -> problems`.

Each problem is one line naming the file and what is wrong. An empty list means the dataset is
valid. `fusion validate OUT` prints them and exits non-zero when there is any.

Checked: `dataset.json` present, parseable, of a known schema version; every listed sequence has
its files and a `sequences.parquet` row; every Parquet file has exactly the declared schema and
the `fusion.schema_version` / `fusion.sequence_id` metadata; keys are unique; frame indices run
0..n-1 and agree with `num_frames`; labels hold finite boxes with positive sizes, wrapped yaws,
known categories and origins, and only frames that exist; the points file has one row group per
frame with that frame's points; images and flags point at existing frames; no Parquet file of a
sequence the dataset does not list lies where glob readers would pick it up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exporters.dataset import (
    DATASET_JSON,
    SEQUENCE_DIRS,
    SEQUENCES_FILE,
    camera_file_stem,
    dataset_paths,
    sequences_file_id,
)
from exporters.errors import ExportError
from exporters.labels import validate_labels
from exporters.parquet_io import VERIFY_PAGES
from exporters.reader import LAYOUTS, Layout, read_dataset_json
from exporters.schema import IMAGE_ENCODINGS, SCHEMA_VERSION_KEY, SEQUENCE_ID_KEY

Report = Callable[[str], None]


def validate_dataset(path: Path | str) -> list[str]:
    """Every way the dataset at `path` breaks the contract, one line each; empty when it is valid."""
    root = Path(path)
    problems: list[str] = []
    try:
        info = read_dataset_json(root)
    except ExportError as err:
        return [str(err)]
    layout = LAYOUTS[int(info["schema_version"])]
    ids: list[str] = list(info["sequences"])
    if len(set(ids)) != len(ids):
        problems.append(f"{root / DATASET_JSON}: 'sequences' lists a sequence id more than once")
    for key, kind in (("created_ns", int), ("pipeline", dict)):
        if not isinstance(info.get(key), kind):
            problems.append(f"{root / DATASET_JSON}: '{key}' is missing or not a {kind.__name__}")

    sequences = _read(
        root / SEQUENCES_FILE, layout.sequences, layout, sequences_file_id(ids), problems.append
    )
    rows: dict[str, dict[str, Any]] = {}
    if sequences is not None:
        found = sequences.column("sequence_id").to_pylist()
        repeated = sorted({s for s in found if found.count(s) > 1})
        if repeated:
            problems.append(f"{root / SEQUENCES_FILE}: sequence_id {repeated} appear more than once")
        rows = {r["sequence_id"]: r for r in sequences.to_pylist()}
        missing = [s for s in ids if s not in rows]
        extra = [s for s in rows if s not in ids]
        if missing:
            problems.append(
                f"{root / SEQUENCES_FILE}: no row for sequence(s) {missing} listed in {DATASET_JSON}"
            )
        if extra:
            problems.append(
                f"{root / SEQUENCES_FILE}: rows for sequence(s) {extra} not listed in {DATASET_JSON}"
            )
    for sid in ids:
        _validate_sequence(root, layout, sid, rows.get(sid), problems.append)
    _stray_files(root, set(ids), problems.append)
    return problems


def _validate_sequence(
    root: Path, layout: Layout, sid: str, row: dict[str, Any] | None, report: Report
) -> None:
    paths = dataset_paths(root, sid)
    cameras = _camera_names(root, sid, row, report)

    frames = _read(paths["frames"], layout.frames, layout, sid, report)
    n = 0
    stamps = np.empty(0, dtype=np.int64)
    if frames is not None:
        n = frames.num_rows
        where = paths["frames"]
        _check_sequence_column(where, frames, sid, report)
        index = frames.column("frame_index").to_numpy()
        if len(np.unique(index)) != n:
            report(f"{where}: (sequence_id, frame_index) is not unique")
        if not np.array_equal(index, np.arange(n)):
            report(f"{where}: frame_index must run 0..{n - 1} in row order, got {index[:8].tolist()}...")
        stamps = frames.column("timestamp_ns").to_numpy()
        if row is not None:
            if row["num_frames"] != n:
                report(f"{where}: {n} frames but {SEQUENCES_FILE} says num_frames = {row['num_frames']}")
            if n and (row["start_ns"] != stamps[0] or row["end_ns"] != stamps[-1]):
                report(
                    f"{root / SEQUENCES_FILE}: start_ns/end_ns of {sid!r} differ from its first/last sweep"
                )
        if cameras is not None:
            names = set(pc.list_flatten(frames.column("cameras").combine_chunks()).field("name").to_pylist())
            unknown = sorted(names - cameras)
            if unknown:
                report(f"{where}: cameras {unknown} are not in the sequence's cameras_json")

    labels = _read(paths["labels"], layout.labels, layout, sid, report)
    if labels is not None:
        _validate_labels(paths["labels"], labels, sid, stamps if frames is not None else None, report)

    if paths["points"].exists():
        _validate_points(paths["points"], layout, sid, frames, report)
    if paths["flags"].exists():
        _validate_flags(paths["flags"], layout, sid, n if frames is not None else None, report)
    if paths["images"].is_dir():
        for image_file in sorted(paths["images"].glob("*.parquet")):
            if cameras is not None and image_file.stem not in {camera_file_stem(c) for c in cameras}:
                report(f"{image_file}: no camera of that name in the sequence's cameras_json")
            _validate_images(image_file, layout, sid, n if frames is not None else None, report)


def _validate_labels(
    where: Path, labels: pa.Table, sid: str, stamps: npt.NDArray[np.int64] | None, report: Report
) -> None:
    _check_sequence_column(where, labels, sid, report)
    try:
        validate_labels(labels, context=str(where))
    except ExportError as err:
        report(str(err))
    for name in ("length", "width", "height"):
        values = labels.column(name).to_numpy()
        bad = np.flatnonzero(~(values > 0.0))
        if len(bad):
            report(f"{where}: '{name}' must be > 0 (row {bad[0]}: {values[bad[0]]})")
    if stamps is None:
        return
    frame = labels.column("frame_index").to_numpy()
    outside = np.flatnonzero((frame < 0) | (frame >= len(stamps)))
    if len(outside):
        report(
            f"{where}: row {outside[0]} has frame_index {frame[outside[0]]}, "
            f"not a frame of frames/{sid}.parquet"
        )
        return
    stamp = labels.column("timestamp_ns").to_numpy()
    differ = np.flatnonzero(stamp != stamps[frame])
    if len(differ):
        report(
            f"{where}: row {differ[0]} has timestamp_ns {stamp[differ[0]]}, "
            f"its frame's is {stamps[frame[differ[0]]]}"
        )


def _validate_points(path: Path, layout: Layout, sid: str, frames: pa.Table | None, report: Report) -> None:
    if _read(path, layout.points, layout, sid, report, columns=[]) is None:
        return
    metadata = pq.ParquetFile(path).metadata
    if frames is None:
        return
    n = frames.num_rows
    if metadata.num_row_groups != n:
        report(f"{path}: {metadata.num_row_groups} row groups, expected one per frame ({n})")
        return
    expected = frames.column("num_points").to_numpy()
    for k in range(n):
        group = metadata.row_group(k)
        if group.num_rows != expected[k]:
            report(
                f"{path}: row group {k} holds {group.num_rows} points, frames says num_points = {expected[k]}"
            )
            return
        stats = group.column(0).statistics
        if group.num_rows and (stats is None or not stats.has_min_max or not stats.min == stats.max == k):
            report(f"{path}: row group {k} does not hold frame_index {k} only")
            return


def _validate_images(path: Path, layout: Layout, sid: str, n: int | None, report: Report) -> None:
    images = _read(
        path, layout.images, layout, sid, report, columns=["frame_index", "timestamp_ns", "encoding"]
    )
    if images is None:
        return
    index = images.column("frame_index").to_numpy()
    if len(index) > 1 and not (np.diff(index) > 0).all():
        report(f"{path}: frame_index must be unique and increasing")
    if n is not None and len(index) and (index.min() < 0 or index.max() >= n):
        report(f"{path}: frame_index {int(index.max())} is not a frame of frames/{sid}.parquet")
    encodings = set(images.column("encoding").to_pylist()) - set(IMAGE_ENCODINGS)
    if encodings:
        report(f"{path}: unknown encoding(s) {sorted(encodings)}; allowed: {', '.join(IMAGE_ENCODINGS)}")


def _validate_flags(path: Path, layout: Layout, sid: str, n: int | None, report: Report) -> None:
    flags = _read(path, layout.flags, layout, sid, report)
    if flags is None:
        return
    _check_sequence_column(path, flags, sid, report)
    severity = flags.column("severity").to_numpy()
    if len(severity) and not ((severity >= 0) & (severity <= 1)).all():
        report(f"{path}: severity must be within 0..1")
    frame = flags.column("frame_index").drop_null().to_numpy()
    if n is not None and len(frame) and (frame.min() < 0 or frame.max() >= n):
        report(f"{path}: a flag names a frame_index that is not a frame of frames/{sid}.parquet")


def _read(
    path: Path,
    schema: pa.Schema,
    layout: Layout,
    sequence_id: str,
    report: Report,
    *,
    columns: list[str] | None = None,
) -> pa.Table | None:
    """The table at `path` when its schema and metadata are right; else report and return None."""
    if not path.is_file():
        report(f"{path}: missing; the dataset is incomplete, re-run it")
        return None
    try:
        file_schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        report(f"{path}: not a readable Parquet file ({err})")
        return None
    metadata = file_schema.metadata or {}
    version = metadata.get(SCHEMA_VERSION_KEY)
    if version is None or bytes(version).decode(errors="replace") != str(layout.version):
        report(f"{path}: fusion.schema_version metadata is {version!r}, expected {str(layout.version)!r}")
    found_id = metadata.get(SEQUENCE_ID_KEY)
    if found_id is None or bytes(found_id).decode(errors="replace") != sequence_id:
        report(f"{path}: fusion.sequence_id metadata is {found_id!r}, expected {sequence_id!r}")
    declared = schema.remove_metadata()
    actual = file_schema.remove_metadata()
    if not actual.equals(declared):
        report(f"{path}: schema differs from the contract's: {_schema_difference(actual, declared)}")
        return None
    try:
        return pq.read_table(path, columns=columns, **VERIFY_PAGES)
    except (OSError, pa.ArrowException) as err:
        report(f"{path}: corrupt Parquet file ({err}); re-run it")
        return None


def _schema_difference(actual: pa.Schema, declared: pa.Schema) -> str:
    if actual.names != declared.names:
        return f"columns {actual.names}, expected {declared.names}"
    for have, want in zip(actual, declared, strict=True):
        if not have.equals(want):
            null = {True: "", False: " not null"}
            return (
                f"column '{want.name}' is {have.type}{null[have.nullable]}, "
                f"expected {want.type}{null[want.nullable]}"
            )
    return "metadata of nested fields differ"


def _check_sequence_column(where: Path, table: pa.Table, sid: str, report: Report) -> None:
    ids = table.column("sequence_id")
    others = pc.unique(pc.filter(ids, pc.not_equal(ids, sid)))
    if len(others):
        report(f"{where}: column sequence_id holds {others[0].as_py()!r}, the file is for {sid!r}")


def _camera_names(root: Path, sid: str, row: dict[str, Any] | None, report: Report) -> set[str] | None:
    if row is None:
        return None
    try:
        cameras = json.loads(row["cameras_json"])
        names = {str(c["name"]) for c in cameras}
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        report(f"{root / SEQUENCES_FILE}: cameras_json of {sid!r} is not a list of cameras ({err})")
        return None
    for c in cameras:
        for key, size in (("K", 9), ("lidar_from_camera", 16)):
            values = c.get(key)
            if not isinstance(values, list) or len(values) != size or not all(map(_finite, values)):
                report(
                    f"{root / SEQUENCES_FILE}: camera {c['name']!r} of {sid!r} "
                    f"needs {size} finite values in {key}"
                )
    try:
        json.loads(row["config_json"])
    except json.JSONDecodeError as err:
        report(f"{root / SEQUENCES_FILE}: config_json of {sid!r} is not JSON ({err})")
    return names


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _stray_files(root: Path, ids: set[str], report: Report) -> None:
    """Parquet files of sequences the dataset does not list (a glob reader would include them)."""
    for kind in SEQUENCE_DIRS:
        folder = root / kind
        if not folder.is_dir():
            continue
        if kind == "images":
            strays = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name not in ids]
        else:
            strays = [p for p in folder.glob("*.parquet") if not p.name.startswith(".") and p.stem not in ids]
        for stray in sorted(strays):
            report(f"{stray}: not a sequence of {DATASET_JSON}; remove it (glob readers would include it)")
