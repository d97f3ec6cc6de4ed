"""One log in time chunks: the work `fusion.pipeline` spreads over Dask workers (no Dask here).

    plan = plan_log(log, sid, config, calibration)            # poses, cameras, chunk windows
    results = [run_chunk(plan, k, out, config) for k in range(len(plan.windows))]   # in parallel
    summary, info = finish_log(plan, results, out, config, calibration)

`plan_log` reads the small topics once (TF, odometry, CameraInfo: `fusion.sync.prepare`) and cuts
the LiDAR topic's record-time span into windows of `config.output.chunk_s`: half-open
`[start_ns, end_ns)`, the first open below and the last open above, so every sweep falls in exactly
one window. `run_chunk` decodes, synchronises, deskews and detects the sweeps of one window and
writes their points and images as it goes into its own part files under
`<out>/.parts/<sid>/` (hidden: no glob reader sees them); it returns only the small per-sweep
records (frame rows, detections). `LogFinisher` takes the chunks in order as they come, numbers
their sweeps on from the previous chunk's and appends their part files row group by row group to
`points/<sid>.parquet` (one row group per sweep) and `images/<sid>/<camera>.parquet`; at the end
it tracks and refines the detections and writes labels and frames
(`fusion.prelabel.finish_sequence`). Every final file appears by atomic rename.

Each step may be re-run after a crash (a retried task): part files are replaced, and the finishing
step replaces this sequence's own files (the caller checks beforehand that none existed).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import numpy as np
import pyarrow.parquet as pq

from exporters.dataset import FrameRow, ImagesWriter, PointsWriter, SequenceWriter, camera_file_stem
from exporters.errors import ExportError
from fusion.bags import open_bag
from fusion.boxes import Boxes
from fusion.config import RunConfig
from fusion.prelabel import Detected, DetectSummary, _frame_row, _light, finish_sequence, sweep_writers
from fusion.sync import FusedFrame, SyncContext, prepare, synchronize

if TYPE_CHECKING:
    from calib.calibration import Calibration
    from exporters.dataset import SequenceInfo
    from fusion.detect import Detector

PARTS_DIR: Final = ".parts"
"""Hidden directory under the output holding chunks' part files until their log is finished."""

Window = tuple[int | None, int | None]


def parts_dir(out: Path, sequence_id: str) -> Path:
    """Where the chunks of `sequence_id` write their part files."""
    return out / PARTS_DIR / sequence_id


@dataclass(frozen=True, eq=False)
class LogPlan:
    """One log, read once for its poses and cameras and cut into record-time windows."""

    log_path: Path
    sequence_id: str
    ctx: SyncContext  # topics, poses (TransformBuffer), cameras
    windows: tuple[Window, ...]  # per chunk [start_ns, end_ns) of record time; None = open
    total_sweeps: int  # messages on the LiDAR topic
    duration_ns: int  # record time from the first to the last sweep
    source_size_bytes: int
    warnings: tuple[str, ...]
    started_s: float  # time.time() when planning began


@dataclass(frozen=True, eq=False)
class ChunkResult:
    """What one chunk returns: per sweep, in order, its frame row and detections (local indices 0..)."""

    index: int  # the chunk's number
    frames: list[tuple[FusedFrame, Boxes]]  # the frame without points or images, and its boxes
    rows: list[FrameRow]
    warnings: list[str]


def chunk_windows(first_ns: int, last_ns: int, chunk_ns: int) -> tuple[Window, ...]:
    """Half-open windows of `chunk_ns` from `first_ns` covering `last_ns`; the first starts open
    (None) and the last ends open, so every record time belongs to exactly one window."""
    if chunk_ns <= 0:
        raise ValueError(f"chunk_ns must be positive, got {chunk_ns}")
    n = max(1, -(-(last_ns - first_ns + 1) // chunk_ns))
    bounds: list[int | None] = [None, *(first_ns + k * chunk_ns for k in range(1, n)), None]
    return tuple((bounds[k], bounds[k + 1]) for k in range(n))


def plan_log(
    log_path: Path, sequence_id: str, config: RunConfig, calibration: Calibration | None = None
) -> LogPlan:
    """Read `log_path`'s poses and cameras and cut it into `config.output.chunk_s` windows."""
    started = time.time()
    with open_bag(log_path) as bag:
        ctx = prepare(bag, config.sync_config(), calibration=calibration)
        info = bag.topics[ctx.lidar_topic]
        first = info.first_log_ns or 0
        last = info.last_log_ns if info.last_log_ns is not None else first
        windows = chunk_windows(first, last, max(1, round(config.output.chunk_s * 1e9)))
        return LogPlan(
            log_path=Path(log_path),
            sequence_id=sequence_id,
            ctx=ctx,
            windows=windows,
            total_sweeps=info.count,
            duration_ns=last - first,
            source_size_bytes=bag.size_bytes,
            warnings=(*bag.warnings, *ctx.warnings),
            started_s=started,
        )


def run_chunk(
    plan: LogPlan,
    index: int,
    out: Path,
    config: RunConfig,
    *,
    detector: Detector | None = None,
    window: Window | None = None,
    progress: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Decode, synchronise, deskew and detect the sweeps of chunk `index` (or of `window`), writing
    their points and images to the chunk's part files. progress(sweeps done in this chunk)."""
    start, end = plan.windows[index] if window is None else window
    detector = detector if detector is not None else config.detector.build()
    seq = SequenceWriter(out, plan.sequence_id, overwrite=True)
    frames: list[tuple[FusedFrame, Boxes]] = []
    rows: list[FrameRow] = []
    sync = config.sync_config()
    with open_bag(plan.log_path) as bag:
        cameras = sorted(plan.ctx.cameras)
        with sweep_writers(
            seq, cameras, config, part_dir=parts_dir(out, plan.sequence_id), part=f"{index:05d}"
        ) as writers:
            for frame in synchronize(bag, plan.ctx, sync, start_ns=start, end_ns=end):
                frames.append((_light(frame), detector.detect(frame.cloud)))
                rows.append(_frame_row(frame))
                writers.add(frame)
                if progress is not None:
                    progress(len(rows))
        warnings = [w for w in bag.warnings if w not in plan.warnings]
    return ChunkResult(index, frames, rows, warnings)


class LogFinisher:
    """Finishes one log from its chunks, taken in order as they come: each `add` renumbers the
    chunk's sweeps and appends its part files to the sequence's points and images files (so the
    merging overlaps the chunks still running); `finish` tracks, refines and writes labels and
    frames. The part files are left for the caller to remove (`remove_parts`) once it holds the
    result, so a retried finish finds them. Use as a context manager: an error aborts every
    file still being written."""

    def __init__(self, plan: LogPlan, out: Path, config: RunConfig) -> None:
        self.plan = plan
        self.out = out
        self.config = config
        self.seq = SequenceWriter(out, plan.sequence_id, overwrite=True)
        _remove_stale_temporaries(self.seq)
        self.frames: list[tuple[FusedFrame, Boxes]] = []
        self.rows: list[FrameRow] = []
        self.warnings = list(plan.warnings)
        self._added = 0
        self._stack = ExitStack()
        self.points = self._stack.enter_context(self.seq.points()) if config.output.points else None
        cameras = sorted(plan.ctx.cameras) if config.output.images else []
        self.images = {name: self._stack.enter_context(self.seq.images(name)) for name in cameras}

    def add(self, chunk: ChunkResult) -> None:
        """Append the next chunk (chunk numbers must come 0, 1, 2, ...)."""
        sid = self.plan.sequence_id
        expected = self.chunks_added
        if chunk.index != expected:
            raise ExportError(f"cannot finish {sid}: got chunk {chunk.index}, expected chunk {expected}")
        offset = len(self.rows)
        self.frames += [(replace(f, index=offset + f.index), b) for f, b in chunk.frames]
        self.rows += [replace(r, frame_index=offset + r.frame_index) for r in chunk.rows]
        self.warnings += [w for w in chunk.warnings if w not in self.warnings]
        part = parts_dir(self.out, sid)
        if self.points is not None:
            _merge_points(self.points, part / f"{chunk.index:05d}.points.parquet", len(chunk.rows))
        for name, writer in self.images.items():
            path = part / f"{chunk.index:05d}.{camera_file_stem(name)}.images.parquet"
            _merge_images(writer, path, offset)
        self._added = expected + 1

    @property
    def chunks_added(self) -> int:
        """Chunks appended so far."""
        return self._added

    def finish(self, calibration: Calibration | None = None) -> tuple[DetectSummary, SequenceInfo]:
        """Close the points and images files (renamed into place), track, refine, write labels and
        frames; the summary and the sequence's row."""
        if self.chunks_added != len(self.plan.windows):
            raise ExportError(
                f"cannot finish {self.plan.sequence_id}: {self.chunks_added} of "
                f"{len(self.plan.windows)} chunks added"
            )
        self._stack.close()
        detected = Detected(
            log_path=self.plan.log_path,
            ctx=self.plan.ctx,
            frames=self.frames,
            rows=self.rows,
            warnings=self.warnings,
            source_size_bytes=self.plan.source_size_bytes,
            started_s=self.plan.started_s,
        )
        return finish_sequence(self.seq, detected, self.config, calibration)

    def abort(self) -> None:
        """Drop the points and images files being written."""
        self.seq.abort()
        self._stack.pop_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is not None:
            self.abort()


def finish_log(
    plan: LogPlan,
    chunks: Sequence[ChunkResult],
    out: Path,
    config: RunConfig,
    calibration: Calibration | None = None,
) -> tuple[DetectSummary, SequenceInfo]:
    """`LogFinisher` over all of a log's chunks at once."""
    with LogFinisher(plan, out, config) as finisher:
        for chunk in sorted(chunks, key=lambda c: c.index):
            finisher.add(chunk)
        return finisher.finish(calibration)


def remove_parts(out: Path, sequence_ids: Sequence[str]) -> None:
    """Remove the part files of `sequence_ids`, and `<out>/.parts` when it is left empty."""
    for sid in sequence_ids:
        shutil.rmtree(parts_dir(out, sid), ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / PARTS_DIR).rmdir()


def _merge_points(writer: PointsWriter, path: Path, count: int) -> None:
    """Append a part file's row groups (one per sweep) in order, numbered on from the writer's."""
    file = _part(path)
    if file.num_row_groups != count:
        raise ExportError(
            f"cannot merge {path}: {file.num_row_groups} sweeps, its chunk reported {count}; re-run"
        )
    for g in range(count):
        table = file.read_row_group(g)
        xyz = np.column_stack([table.column(c).to_numpy() for c in ("x", "y", "z")])
        writer.add(
            writer.num_frames,
            xyz,
            table.column("intensity").to_numpy(),
            table.column("time_offset_ns").to_numpy(),
        )


def _merge_images(writer: ImagesWriter, path: Path, offset: int) -> None:
    """Append a part file's images, their frame_index shifted by their chunk's offset."""
    file = _part(path)
    for g in range(file.num_row_groups):
        table = file.read_row_group(g)
        for frame, stamp, encoding, data in zip(
            table.column("frame_index").to_pylist(),
            table.column("timestamp_ns").to_pylist(),
            table.column("encoding").to_pylist(),
            table.column("data").to_pylist(),
            strict=True,
        ):
            writer.add(offset + frame, stamp, data, encoding)


def _part(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError) as err:
        raise ExportError(f"cannot merge {path}: {err}; its chunk did not finish; re-run") from err


def _remove_stale_temporaries(seq: SequenceWriter) -> None:
    """Hidden temporary files a killed earlier attempt at this sequence left (`.<name>.tmp-*`)."""
    for kind, path in seq.paths.items():
        folder, pattern = (path, ".*.tmp-*") if kind == "images" else (path.parent, f".{path.name}.tmp-*")
        if folder.is_dir():
            for stale in folder.glob(pattern):
                with contextlib.suppress(OSError):
                    stale.unlink()
