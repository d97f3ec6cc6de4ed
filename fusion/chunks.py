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
records (frame rows, detections). `finish_log` numbers the sweeps across chunks, merges the part
files row group by row group into `points/<sid>.parquet` (one row group per sweep) and
`images/<sid>/<camera>.parquet`, then tracks and refines the detections and writes labels and
frames (`fusion.prelabel.finish_sequence`). Every final file appears by atomic rename.

Each step may be re-run after a crash (a retried task): part files are replaced, and the finishing
step replaces this sequence's own files (the caller checks beforehand that none existed).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

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


def finish_log(
    plan: LogPlan,
    chunks: Sequence[ChunkResult],
    out: Path,
    config: RunConfig,
    calibration: Calibration | None = None,
) -> tuple[DetectSummary, SequenceInfo]:
    """Number the chunks' sweeps 0..n-1, merge their part files into the sequence's points and
    images files, track and refine, write labels and frames. The part files are left for the
    caller to remove (`remove_parts`) once it holds the result, so a retried finish finds them."""
    sid = plan.sequence_id
    ordered = sorted(chunks, key=lambda c: c.index)
    if [c.index for c in ordered] != list(range(len(plan.windows))):
        raise ExportError(
            f"cannot finish {sid}: got chunks {[c.index for c in ordered]}, "
            f"expected 0..{len(plan.windows) - 1}"
        )
    seq = SequenceWriter(out, sid, overwrite=True)
    _remove_stale_temporaries(seq)
    offsets = np.cumsum([0, *(len(c.rows) for c in ordered)])[:-1].tolist()
    frames: list[tuple[FusedFrame, Boxes]] = []
    rows: list[FrameRow] = []
    warnings = list(plan.warnings)
    for chunk, offset in zip(ordered, offsets, strict=True):
        frames += [(replace(f, index=offset + f.index), b) for f, b in chunk.frames]
        rows += [replace(r, frame_index=offset + r.frame_index) for r in chunk.rows]
        warnings += [w for w in chunk.warnings if w not in warnings]
    part = parts_dir(out, sid)
    counts = [len(c.rows) for c in ordered]
    if config.output.points:
        with seq.points() as points:
            _merge_points(points, [part / f"{c.index:05d}.points.parquet" for c in ordered], counts)
    if config.output.images:
        for name in sorted(plan.ctx.cameras):
            stem = camera_file_stem(name)
            with seq.images(name) as images:
                paths = [part / f"{c.index:05d}.{stem}.images.parquet" for c in ordered]
                _merge_images(images, paths, offsets)
    detected = Detected(
        log_path=plan.log_path,
        ctx=plan.ctx,
        frames=frames,
        rows=rows,
        warnings=warnings,
        source_size_bytes=plan.source_size_bytes,
        started_s=plan.started_s,
    )
    return finish_sequence(seq, detected, config, calibration)


def remove_parts(out: Path, sequence_ids: Sequence[str]) -> None:
    """Remove the part files of `sequence_ids`, and `<out>/.parts` when it is left empty."""
    for sid in sequence_ids:
        shutil.rmtree(parts_dir(out, sid), ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / PARTS_DIR).rmdir()


def _merge_points(writer: PointsWriter, parts: Sequence[Path], counts: Sequence[int]) -> None:
    """Append the part files' row groups (one per sweep) in order, renumbered 0..n-1."""
    for path, count in zip(parts, counts, strict=True):
        file = _part(path)
        if file.num_row_groups != count:
            raise ExportError(
                f"cannot merge {path}: {file.num_row_groups} sweeps, its chunk reported {count}; "
                "re-run with --overwrite"
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


def _merge_images(writer: ImagesWriter, parts: Sequence[Path], offsets: Sequence[int]) -> None:
    """Append the part files' images in order, their frame_index shifted by their chunk's offset."""
    for path, offset in zip(parts, offsets, strict=True):
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
