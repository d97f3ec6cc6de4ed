"""Other formats: exporters (a dataset -> files an annotation tool or benchmark reads) and importers
(reviewed labels in such a format -> a dataset whose labels table `fusion eval` / `fusion qa` read).

Plug-in point: an exporter is anything with the `Exporter` protocol, registered by name in the
explicit `EXPORTERS` dict (name -> factory); importers likewise in `IMPORTERS`. No registry fills
itself by import side effects: adding a format is adding a module and one line here.

- `openlabel` (`exporters.openlabel`): `<sid>.openlabel.json`, one ASAM OpenLABEL 1.0 document
  per sequence;
- `xtreme1` (`exporters.xtreme1`): `scene_<sid>/` in Xtreme1's upload layout (PCD point clouds,
  camera configs, camera images, pre-label results);
- `kitti` (`exporters.kitti`): `<camera>/label_02/<sid>.txt` and `<camera>/calib/<sid>.txt`,
  KITTI tracking labels per camera;
- `nuscenes` (`exporters.nuscenes`): `<sid>.nuscenes.json`, nuScenes tracking-submission style,
  the boxes of each frame.

Every export is written into a hidden staging directory inside `dest` and moved into place only
when the whole export succeeded; nothing already in `dest` is ever replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol

import pyarrow as pa

from exporters.dataset import (
    DATASET_JSON,
    DatasetWriter,
    FrameRow,
    PipelineInfo,
    SequenceCamera,
    SequenceInfo,
)
from exporters.errors import ExportError
from exporters.reader import Dataset, Sequence, open_dataset

# ---- exporters


class Exporter(Protocol):
    """Writes the sequences of an open dataset in one format under a directory."""

    name: str

    def export(self, sequence: Sequence, dest: Path) -> list[Path]:
        """Write `sequence` under `dest` (an empty staging directory); return the files written."""
        ...


def _openlabel() -> Exporter:
    from exporters.openlabel import OpenLabelExporter

    return OpenLabelExporter()


def _xtreme1() -> Exporter:
    from exporters.xtreme1 import Xtreme1Exporter

    return Xtreme1Exporter()


def _kitti() -> Exporter:
    from exporters.kitti import KittiTrackingExporter

    return KittiTrackingExporter()


def _nuscenes() -> Exporter:
    from exporters.nuscenes import NuScenesExporter

    return NuScenesExporter()


EXPORTERS: Final[Mapping[str, Callable[[], Exporter]]] = {
    "openlabel": _openlabel,
    "xtreme1": _xtreme1,
    "kitti": _kitti,
    "nuscenes": _nuscenes,
}
"""Format name -> exporter factory (modules are imported only when their format is used)."""


def export_dataset(
    out: Path | str, fmt: str, dest: Path | str, *, sequence_ids: Seq[str] | None = None
) -> list[Path]:
    """Export the sequences `sequence_ids` (default: all) of dataset `out` as `fmt` under `dest`.

    Returns the final paths written. Raises `ExportError` for an unknown format, a dataset that
    cannot be opened, an unknown sequence, a `dest` that cannot be written or already holds what
    the export would write (nothing is replaced; nothing partial is left under a final name).
    """
    if fmt not in EXPORTERS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORTERS)}")
    dataset = open_dataset(out)
    ids = list(sequence_ids) if sequence_ids else dataset.sequence_ids
    sequences = [dataset.sequence(sid) for sid in ids]  # raises for an unknown id, naming the known
    exporter = EXPORTERS[fmt]()
    staging = Staging(Path(dest))
    with staging as stage:
        for seq in sequences:
            try:
                exporter.export(seq, stage)
            finally:
                seq.close()
    return staging.moved


# ---- staging


class Staging:
    """A hidden, empty directory inside `dest` (``with Staging(dest) as stage``); when the block
    succeeds its entries move into `dest` (listed in `moved`).

    Refuses, before moving anything, when an entry of the same name already exists in `dest`. On an
    error the staging directory is removed and `dest` is left as it was (removed when this export
    created it).
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = dest / f".fusion-export-{os.getpid()}-{secrets.token_hex(4)}"
        self.moved: list[Path] = []
        self.created: list[Path] = []

    def __enter__(self) -> Path:
        if self.dest.exists() and not self.dest.is_dir():
            raise ExportError(
                f"{self.dest}: is a file; give --dest a folder (new, or one to add the export to)"
            )
        # the folders this export creates (dest first): removed again when it fails
        self.created = [p for p in (self.dest, *self.dest.parents) if not p.exists()]
        try:
            self.dest.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
        except OSError as err:
            raise ExportError(
                f"cannot write to {self.dest}: {err.strerror or err}; choose a writable --dest"
            ) from err
        return self.path

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        moved = False
        try:
            if exc_type is None:
                self._move_into_place()
                moved = True
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
            if not moved:  # a failed export leaves no empty --dest folder behind either
                for folder in self.created:
                    with contextlib.suppress(OSError):
                        folder.rmdir()

    def _move_into_place(self) -> None:
        entries = sorted(self.path.iterdir())
        for entry in entries:
            target = self.dest / entry.name
            if target.exists() or target.is_symlink():
                raise ExportError(
                    f"cannot write {target}: it already exists and fusion never overwrites output; "
                    "remove it or choose another --dest"
                )
        try:
            for entry in entries:
                entry.replace(self.dest / entry.name)
                self.moved.append(self.dest / entry.name)
        except OSError as err:
            raise ExportError(
                f"cannot write to {self.dest}: {err.strerror or err}; choose a writable --dest"
            ) from err


# ---- importers


@dataclass(frozen=True)
class ImportedSequence:
    """One sequence read back from another format, ready to be written as a dataset."""

    sequence_id: str  # sanitised id
    source_path: str  # the file it was read from
    frames: tuple[FrameRow, ...]  # one per frame, frame_index 0..n-1
    labels: pa.Table  # a LABELS table (exporters.labels.labels_table)
    cameras: tuple[SequenceCamera, ...] = ()  # cameras the format described
    world_frame: str | None = None  # the fixed frame when the format carried poses
    lidar_topic: str = ""  # the LiDAR topic when the format named it
    notes: tuple[str, ...] = field(default_factory=tuple)  # what the format could not hold


def _read_openlabel(src: Path) -> list[ImportedSequence]:
    from exporters.openlabel import read_openlabel

    paths = sorted(src.glob("*.json")) if src.is_dir() else [src]
    if not paths:
        raise ExportError(f"{src}: no .json file in it; give an OpenLABEL file or a folder of them")
    return [read_openlabel(p) for p in paths]


def _read_kitti(src: Path, *, logistic_scores: bool = False) -> list[ImportedSequence]:
    from exporters.kitti import read_kitti_tracking

    return read_kitti_tracking(src, logistic_scores=logistic_scores)


IMPORTERS: Final[Mapping[str, Callable[[Path], list[ImportedSequence]]]] = {
    "openlabel": _read_openlabel,
    "kitti": _read_kitti,
}
"""Format name -> reader of SRC (a file or a folder) into sequences."""


def import_labels(fmt: str, src: Path | str, dest: Path | str, *, logistic_scores: bool = False) -> Dataset:
    """Read `src` in format `fmt` and write it as a dataset at `dest` (via `DatasetWriter`).

    Frames, labels and (when the format has them) cameras and poses are written; points and images
    are not (no such format here carries them). `logistic_scores` (kitti only): a tracker's raw
    confidences mapped to 0..1 by 1 / (1 + exp(-s)). Returns the dataset, opened. Refuses, before
    reading anything, a `dest` that is a file or already holds a dataset (an import never overwrites).
    """
    if fmt not in IMPORTERS:
        raise ExportError(f"unknown import format {fmt!r}; choose one of {', '.join(IMPORTERS)}")
    if logistic_scores and fmt != "kitti":
        raise ExportError(f"logistic scores apply to the kitti import only, not {fmt}; drop the option")
    source, target = Path(src), Path(dest)
    if not source.exists():
        raise ExportError(f"{source}: no such file or folder; give the {fmt} labels to import")
    if target.exists() and not target.is_dir():
        raise ExportError(
            f"{target}: is a file; give --dest a folder (new, or empty) for the imported dataset"
        )
    if (target / DATASET_JSON).exists():
        raise ExportError(
            f"{target}: already holds a dataset and an import never overwrites one; "
            "remove it or choose another --dest"
        )
    sequences = _read_kitti(source, logistic_scores=True) if logistic_scores else IMPORTERS[fmt](source)
    ids = [s.sequence_id for s in sequences]
    repeated = sorted({sid for sid in ids if ids.count(sid) > 1})
    if repeated:
        raise ExportError(f"{source}: sequence id(s) {repeated} appear in more than one file; rename one")
    config: dict[str, Any] = {"import": {"format": fmt, "source": str(source)}}
    pipeline = PipelineInfo(
        version=_version(), detector=f"import:{fmt}", tracker=f"import:{fmt}", config=config
    )
    with DatasetWriter(dest, pipeline=pipeline) as writer:
        for imported in sequences:
            seq = writer.sequence(imported.sequence_id)
            seq.write_frames(imported.frames)
            seq.write_labels(imported.labels)
            writer.add_sequence(
                SequenceInfo.from_frames(
                    imported.sequence_id,
                    imported.frames,
                    source_path=imported.source_path,
                    source_size_bytes=Path(imported.source_path).stat().st_size,
                    lidar_topic=imported.lidar_topic,
                    world_frame=imported.world_frame,
                    cameras=imported.cameras,
                    config={**config, "lost": list(imported.notes)},
                )
            )
    return open_dataset(dest)


def _version() -> str:
    from fusion import __version__

    return __version__
