"""Read a pre-label dataset (shared/CONTRACT.md): the reviewer-side API.

    ds = open_dataset("out/")
    ds.sequence_ids                          # ["drive_01", ...]
    seq = ds.sequence("drive_01")
    seq.frames(), seq.labels(as_pandas=True) # pyarrow Tables or pandas DataFrames
    xyz, intensity, time_offset_ns = seq.points(12)   # reads exactly one Parquet row group
    rgb = seq.image("front", 12)             # (H, W, 3) uint8 RGB
    camera, lidar_from_camera = seq.calibration["front"]

A directory is opened only when its `dataset.json` exists (it is written last). Each schema
version has its own `Layout` (the Arrow schemas of that version) and opener in `OPENERS`: a
reader for version 2 adds an entry and keeps version 1's, so old datasets stay readable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from calib.camera import Camera
from calib.transform import Transform
from exporters.dataset import DATASET_JSON, SEQUENCES_FILE, SequenceCamera, camera_file_stem, dataset_paths
from exporters.errors import ExportError
from exporters.parquet_io import VERIFY_PAGES
from exporters.schema import (
    FLAGS,
    FRAMES,
    IMAGES,
    LABELS,
    POINTS,
    SCHEMA_VERSION_KEY,
    SEQUENCES,
    is_valid_sequence_id,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Layout:
    """The Arrow schemas of one schema version of the contract."""

    version: int
    sequences: pa.Schema
    frames: pa.Schema
    labels: pa.Schema
    points: pa.Schema
    images: pa.Schema
    flags: pa.Schema


LAYOUT_V1: Final = Layout(1, SEQUENCES, FRAMES, LABELS, POINTS, IMAGES, FLAGS)

LAYOUTS: Final[Mapping[int, Layout]] = {1: LAYOUT_V1}
"""Every schema version this fusion reads."""


def read_dataset_json(path: Path | str) -> dict[str, Any]:
    """The parsed `dataset.json` of dataset directory `path`, its schema version known.

    Raises `ExportError` when it is missing (the run did not finish), not JSON, or of a schema
    version this fusion does not read.
    """
    root = Path(path)
    marker = root / DATASET_JSON
    if not root.is_dir():
        raise ExportError(f"{root}: no such dataset directory; give the --out of a fusion run")
    if not marker.is_file():
        raise ExportError(
            f"{root}: not a complete fusion dataset (no {DATASET_JSON}): "
            "the run that wrote it did not finish; re-run it"
        )
    try:
        document = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(
            f"{marker}: cannot be read as JSON ({err}); the dataset is damaged, re-run it"
        ) from err
    if not isinstance(document, dict):
        raise ExportError(f"{marker}: is not a JSON object; the dataset is damaged, re-run it")
    version = document.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in LAYOUTS:
        known = ", ".join(str(v) for v in sorted(LAYOUTS))
        raise ExportError(
            f"{root}: schema version {version!r} is unknown to this fusion, which reads version(s) {known}; "
            "use the fusion release that wrote it"
        )
    sequences = document.get("sequences")
    if not isinstance(sequences, list) or not all(
        isinstance(s, str) and is_valid_sequence_id(s) for s in sequences
    ):
        raise ExportError(f"{marker}: 'sequences' must be a list of sequence ids; the dataset is damaged")
    return document


def read_versioned(
    path: Path, schema: pa.Schema, version: int, *, columns: list[str] | None = None
) -> pa.Table:
    """Read a Parquet file of the dataset, checking its `fusion.schema_version` is `version` and its
    columns have `schema`'s types. Raises `ExportError` naming the file otherwise."""
    try:
        file_schema = pq.read_schema(path)
    except FileNotFoundError as err:
        raise ExportError(f"cannot read {path}: no such file; the dataset is incomplete, re-run it") from err
    except (OSError, pa.ArrowException) as err:
        raise ExportError(f"cannot read {path}: not a readable Parquet file ({err})") from err
    raw = (file_schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    found = None if raw is None else bytes(raw).decode(errors="replace")
    if found != str(version):
        raise ExportError(
            f"cannot read {path}: its fusion.schema_version is {found!r}, the dataset's is {version}; "
            "the dataset mixes runs, re-run it"
        )
    names = list(schema.names if columns is None else columns)
    for name in names:
        want = schema.field(name)
        index = file_schema.get_field_index(name)
        if index < 0 or not file_schema.field(index).type.equals(want.type):
            have = "missing" if index < 0 else str(file_schema.field(index).type)
            raise ExportError(f"cannot read {path}: column '{name}' is {have}, expected {want.type}")
    try:
        return pq.read_table(path, columns=names, **VERIFY_PAGES)
    except (OSError, pa.ArrowException) as err:
        raise ExportError(
            f"cannot read {path}: corrupt Parquet file ({err}); the dataset is damaged, re-run it"
        ) from err


@overload
def _maybe_pandas(table: pa.Table, as_pandas: Literal[False]) -> pa.Table: ...
@overload
def _maybe_pandas(table: pa.Table, as_pandas: Literal[True]) -> pd.DataFrame: ...
@overload
def _maybe_pandas(table: pa.Table, as_pandas: bool) -> pa.Table | pd.DataFrame: ...
def _maybe_pandas(table: pa.Table, as_pandas: bool) -> pa.Table | pd.DataFrame:
    return table.to_pandas() if as_pandas else table


class Sequence:
    """One sequence (one input log) of an open dataset."""

    def __init__(self, root: Path, layout: Layout, row: Mapping[str, Any]) -> None:
        self.root = root
        self.layout = layout
        self.row = dict(row)
        """Its row of `sequences.parquet` as a dict."""
        self.sequence_id: str = str(row["sequence_id"])
        self.paths = dataset_paths(root, self.sequence_id)
        self._points_file: pq.ParquetFile | None = None
        self._images: dict[str, tuple[pq.ParquetFile, npt.NDArray[np.int32], npt.NDArray[np.int64]]] = {}

    def __repr__(self) -> str:
        return f"Sequence({self.sequence_id!r}, {self.num_frames} frames, root={str(self.root)!r})"

    @property
    def num_frames(self) -> int:
        return int(self.row["num_frames"])

    @property
    def cameras(self) -> list[dict[str, Any]]:
        """The parsed `cameras_json`: one dict per camera."""
        cameras: list[dict[str, Any]] = json.loads(self.row["cameras_json"])
        return cameras

    @property
    def config(self) -> dict[str, Any]:
        """The parsed `config_json`."""
        config: dict[str, Any] = json.loads(self.row["config_json"])
        return config

    @cached_property
    def calibration(self) -> dict[str, tuple[Camera, Transform]]:
        """Camera name -> (camera, lidar_from_camera) (the transform's parent frame is named "lidar")."""
        result: dict[str, tuple[Camera, Transform]] = {}
        for entry in self.cameras:
            cam = SequenceCamera.from_json(entry)
            result[cam.camera.name] = (cam.camera, cam.lidar_from_camera)
        return result

    @overload
    def frames(self, *, as_pandas: Literal[False] = ...) -> pa.Table: ...
    @overload
    def frames(self, *, as_pandas: Literal[True]) -> pd.DataFrame: ...
    def frames(self, *, as_pandas: bool = False) -> pa.Table | pd.DataFrame:
        """`frames/<sid>.parquet`: one row per sweep."""
        return _maybe_pandas(self._read("frames", self.layout.frames), as_pandas)

    @overload
    def labels(self, *, as_pandas: Literal[False] = ...) -> pa.Table: ...
    @overload
    def labels(self, *, as_pandas: Literal[True]) -> pd.DataFrame: ...
    def labels(self, *, as_pandas: bool = False) -> pa.Table | pd.DataFrame:
        """`labels/<sid>.parquet`: one row per box per sweep."""
        return _maybe_pandas(self._read("labels", self.layout.labels), as_pandas)

    @property
    def has_flags(self) -> bool:
        return self.paths["flags"].is_file()

    @overload
    def flags(self, *, as_pandas: Literal[False] = ...) -> pa.Table: ...
    @overload
    def flags(self, *, as_pandas: Literal[True]) -> pd.DataFrame: ...
    def flags(self, *, as_pandas: bool = False) -> pa.Table | pd.DataFrame:
        """`flags/<sid>.parquet` (an empty table when the sequence has none)."""
        if not self.has_flags:
            return _maybe_pandas(self.layout.flags.empty_table(), as_pandas)
        return _maybe_pandas(self._read("flags", self.layout.flags), as_pandas)

    @property
    def has_points(self) -> bool:
        return self.paths["points"].is_file()

    def points(
        self, frame_index: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]:
        """One sweep's points, reading one row group of `points/<sid>.parquet`.

        Returns xyz: (N, 3) float32 (lidar frame), intensity: (N,) float32, time_offset_ns: (N,) int32.
        """
        file = self._points()
        if not 0 <= frame_index < file.num_row_groups:
            raise ExportError(
                f"{self.paths['points']}: no frame {frame_index}; "
                f"it holds frames 0..{file.num_row_groups - 1}"
            )
        group = file.metadata.row_group(frame_index)
        stats = group.column(0).statistics  # frame_index: row group k holds frame k only
        if (
            group.num_rows
            and stats is not None
            and stats.has_min_max
            and not stats.min == stats.max == frame_index
        ):
            raise ExportError(
                f"{self.paths['points']}: row group {frame_index} holds frames {stats.min}..{stats.max}, "
                f"not frame {frame_index}; the file is damaged (run fusion validate), re-run it"
            )
        try:
            table = file.read_row_group(frame_index, columns=["x", "y", "z", "intensity", "time_offset_ns"])
        except (OSError, pa.ArrowException) as err:
            raise ExportError(
                f"{self.paths['points']}: frame {frame_index} cannot be read ({err}); "
                "the file is damaged, re-run it"
            ) from err
        xyz = np.empty((table.num_rows, 3), dtype=np.float32)
        for axis, name in enumerate(("x", "y", "z")):
            xyz[:, axis] = table.column(name).to_numpy()
        intensity = np.asarray(table.column("intensity").to_numpy(), dtype=np.float32)
        offsets = np.asarray(table.column("time_offset_ns").to_numpy(), dtype=np.int32)
        return xyz, intensity, offsets

    def image_cameras(self) -> list[str]:
        """Cameras (names from `cameras_json`) whose images are stored."""
        return [c["name"] for c in self.cameras if self._image_path(c["name"]).is_file()]

    def image(self, camera: str, frame_index: int) -> npt.NDArray[np.uint8]:
        """The image of `camera` synchronized with sweep `frame_index`, decoded: (H, W, 3) uint8 RGB.

        Reads the one row group that holds it. Raises `ExportError` when the camera has no images
        stored or none for that frame.
        """
        import cv2

        file, index, first_rows = self._image_file(camera)
        if not 0 <= frame_index < self.num_frames:
            raise ExportError(
                f"{self._image_path(camera)}: no frame {frame_index}; the sequence holds frames "
                f"0..{self.num_frames - 1}"
            )
        hits = np.flatnonzero(index == frame_index)
        if not len(hits):
            raise ExportError(
                f"{self._image_path(camera)}: no image of camera {camera!r} for frame {frame_index} "
                "(no image was within the sync tolerance)"
            )
        row = int(hits[0])
        group = int(np.searchsorted(first_rows, row, side="right") - 1)
        try:
            table = file.read_row_group(group, columns=["encoding", "data"])
        except (OSError, pa.ArrowException) as err:
            raise ExportError(
                f"{self._image_path(camera)}: the image of frame {frame_index} cannot be read ({err}); "
                "the file is damaged, re-run it"
            ) from err
        data = table.column("data")[row - int(first_rows[group])].as_py()
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            raise ExportError(
                f"{self._image_path(camera)}: the image of frame {frame_index} cannot be decoded; re-run it"
            )
        return np.asarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB), dtype=np.uint8)

    def close(self) -> None:
        """Close the Parquet files kept open for `points` and `image`."""
        if self._points_file is not None:
            self._points_file.close()
            self._points_file = None
        for file, _, _ in self._images.values():
            file.close()
        self._images = {}

    def _read(self, kind: str, schema: pa.Schema) -> pa.Table:
        return read_versioned(self.paths[kind], schema, self.layout.version)

    def _points(self) -> pq.ParquetFile:
        if self._points_file is None:
            path = self.paths["points"]
            if not path.is_file():
                raise ExportError(f"{path}: sequence {self.sequence_id!r} has no points stored")
            read_versioned(path, self.layout.points, self.layout.version, columns=[])
            self._points_file = pq.ParquetFile(path, **VERIFY_PAGES)
        return self._points_file

    def _image_path(self, camera: str) -> Path:
        return self.paths["images"] / f"{camera_file_stem(camera)}.parquet"

    def _image_file(self, camera: str) -> tuple[pq.ParquetFile, npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        if camera not in self._images:
            path = self._image_path(camera)
            if not path.is_file():
                names = ", ".join(self.image_cameras()) or "none"
                raise ExportError(
                    f"{path}: sequence {self.sequence_id!r} has no images of camera {camera!r} "
                    f"(cameras with images: {names})"
                )
            index = read_versioned(path, self.layout.images, self.layout.version, columns=["frame_index"])
            file = pq.ParquetFile(path, **VERIFY_PAGES)
            rows = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
            first_rows = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
            frame_index = np.asarray(index.column("frame_index").to_numpy(), dtype=np.int32)
            self._images[camera] = (file, frame_index, first_rows)
        return self._images[camera]


class Dataset:
    """An open dataset directory (see `open_dataset`)."""

    def __init__(self, root: Path, info: Mapping[str, Any], layout: Layout) -> None:
        self.root = root
        self.info = dict(info)
        """The parsed `dataset.json`."""
        self.layout = layout
        self._sequences = read_versioned(root / SEQUENCES_FILE, layout.sequences, layout.version)
        self._rows = {str(r["sequence_id"]): r for r in self._sequences.to_pylist()}
        missing = [sid for sid in self.sequence_ids if sid not in self._rows]
        if missing:
            raise ExportError(
                f"{root / SEQUENCES_FILE}: has no row for sequence(s) {missing} listed in {DATASET_JSON}; "
                "the dataset is damaged, re-run it"
            )

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.root)!r}, version {self.schema_version}, {len(self.sequence_ids)} sequences)"
        )

    @property
    def schema_version(self) -> int:
        return self.layout.version

    @property
    def created_ns(self) -> int:
        return int(self.info["created_ns"])

    @property
    def pipeline(self) -> dict[str, Any]:
        """`dataset.json`'s pipeline: version, detector, tracker, config."""
        pipeline: dict[str, Any] = self.info.get("pipeline", {})
        return pipeline

    @property
    def sequence_ids(self) -> list[str]:
        """The sequence ids, in `dataset.json`'s order."""
        return list(self.info["sequences"])

    @property
    def sequences(self) -> pa.Table:
        """`sequences.parquet`: one row per sequence."""
        return self._sequences

    def sequence(self, sequence_id: str) -> Sequence:
        """One sequence; raises `ExportError` naming the known ids when there is no such sequence."""
        if sequence_id not in self.sequence_ids:
            known = ", ".join(self.sequence_ids) or "none"
            raise ExportError(f"{self.root}: no sequence {sequence_id!r}; it holds: {known}")
        return Sequence(self.root, self.layout, self._rows[sequence_id])

    def __iter__(self) -> Iterator[Sequence]:
        return (self.sequence(sid) for sid in self.sequence_ids)

    def __len__(self) -> int:
        return len(self.sequence_ids)


def _open_v1(root: Path, info: Mapping[str, Any]) -> Dataset:
    return Dataset(root, info, LAYOUT_V1)


OPENERS: Final[Mapping[int, Callable[[Path, Mapping[str, Any]], Dataset]]] = {1: _open_v1}
"""schema_version -> opener. A new version adds its own; older ones stay."""


def open_dataset(path: Path | str) -> Dataset:
    """Open a complete dataset directory (one with `dataset.json`) of a schema version this fusion reads."""
    root = Path(path)
    info = read_dataset_json(root)
    return OPENERS[int(info["schema_version"])](root, info)
