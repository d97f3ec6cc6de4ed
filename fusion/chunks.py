"""One log in time chunks: the work `fusion.pipeline` spreads over Dask workers (no Dask here).

    plan = plan_log(log, sid, config, calibration)            # topics, cameras, chunk windows
    results = [run_chunk(plan, k, out, config) for k in range(len(plan.windows))]   # in parallel
    summary, info = finish_log(plan, results, out, config, calibration)

`plan_log` cuts the LiDAR topic's record-time span into windows of `config.output.chunk_s`:
half-open `[start_ns, end_ns)`, the first open below and the last open above, so every sweep falls
in exactly one window; it finds the topics and cameras from the first window, and from the bag's
index how many sweeps come before each window (`LogPlan.first_frames`). `run_chunk` reads
the poses of its own window and a pad either side (`fusion.sync.prepare` on a windowed view of the
bag: no task reads the whole log's poses, which in a bag are interleaved with the point clouds
and cost a decompression of the whole file), then decodes, synchronises, deskews and detects the
sweeps of the window and writes their points and images as it goes into its own part files under
`<out>/.parts/<sid>/` (hidden: no glob reader sees them), encoded as the final files are and
numbered from the window's first frame; it returns only what the finishing step needs of its
sweeps (stamps, poses, paired cameras, detections) as a few columns (`fusion.records`).
`LogFinisher` takes the chunks in order as they come, numbers their records on from the previous
chunk's and appends their part files' row groups, byte for byte, to
`points/<sid>.parquet` (one row group per sweep) and `images/<sid>/<camera>.parquet`
(`exporters.parquet_io.AtomicParquetConcat`: nothing is decoded, so joining costs a file copy, not
a second encoding of every point on one core). Where the index's count was wrong (a bag damaged
midway yields fewer sweeps than it lists), the later parts are rewritten renumbered first. At the
end it tracks and refines the detections and writes labels and frames
(`fusion.prelabel.finish_sequence`). Every final file appears by atomic rename.

Each step may be re-run after a crash (a retried task): part files are replaced, and the finishing
step replaces this sequence's own files (the caller checks beforehand that none existed).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

from exporters.dataset import ImagesWriter, PointsWriter, SequenceWriter, camera_file_stem
from exporters.errors import ExportError
from fusion.bags import Bag, RawMessage, open_bag
from fusion.boxes import Boxes
from fusion.config import RunConfig
from fusion.prelabel import Detected, DetectSummary, detect_in_batches, finish_sequence, sweep_writers
from fusion.records import BoxColumns, SweepColumns, SweepRecorder
from fusion.sync import SyncContext, no_finite_warning, prepare, synchronize
from fusion.topics import CAMERA_INFO, ODOMETRY, TF, lidar_topic

if TYPE_CHECKING:
    from calib.calibration import Calibration
    from exporters.dataset import SequenceInfo
    from fusion.detect import Detector
    from trackers.refine import Submitter

log = logging.getLogger(__name__)

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
    first_frames: tuple[int, ...] | None  # per window, the sweeps before it (None: no index tells)
    duration_ns: int  # record time from the first to the last sweep
    source_size_bytes: int
    warnings: tuple[str, ...]
    started_s: float  # time.time() when planning began


@dataclass(frozen=True)
class ChunkParts:
    """What joining a chunk's part files needs to know of it."""

    index: int  # the chunk's number
    first_frame: int  # the frame_index its part files start at
    sweeps: int  # sweeps in its part files


@dataclass(frozen=True, eq=False)
class ChunkResult:
    """What one chunk returns: its sweeps (local frame indices 0..) and their detections, in order,
    as columns (`fusion.records`): a few arrays per chunk, not objects per sweep, so that a long
    log's results do not fill the finishing worker's heap with ~70 small objects a sweep."""

    index: int  # the chunk's number
    first_frame: int  # the frame_index its part files start at
    sweeps: SweepColumns
    detections: BoxColumns
    warnings: list[str]
    # stamps of its sweeps without a finite point (`fusion.sync.no_finite_warning`: one warning a log)
    no_finite_ns: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def parts(self) -> ChunkParts:
        """Its part files' description."""
        return ChunkParts(self.index, self.first_frame, len(self.sweeps))


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
    """Cut `log_path` into `config.output.chunk_s` windows and find its topics and cameras (from the
    poses up to `POSE_PAD_NS` after the first sweep: the poses of the whole log are read by the
    chunks, each for its own window)."""
    started = time.time()
    with open_bag(log_path) as bag:
        lidar = config.topics.lidar or lidar_topic(bag.topics)
        info = bag.topics.get(lidar) if lidar is not None else None
        first = (info.first_log_ns if info is not None else None) or 0
        last = info.last_log_ns if info is not None and info.last_log_ns is not None else first
        windows = chunk_windows(first, last, max(1, round(config.output.chunk_s * 1e9)))
        # topics, cameras and frames from the poses around the first sweep (raises for a missing
        # topic); each chunk reads its own window's poses, so the plan does not read the first
        # window's (in a bag whose chunks mix poses with point clouds, all of that window's data)
        ctx = _prepare_window(bag, config, calibration, (windows[0][0], first + 1))
        info = bag.topics[ctx.lidar_topic]
        stamps = bag.record_times(ctx.lidar_topic)
        starts = np.array([w[0] for w in windows[1:]], dtype=np.int64)  # all but the first are set
        firsts = None if stamps is None else (0, *np.searchsorted(stamps, starts, side="left").tolist())
        return LogPlan(
            log_path=Path(log_path),
            sequence_id=sequence_id,
            ctx=ctx,
            windows=windows,
            total_sweeps=info.count,
            first_frames=firsts,
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
    calibration: Calibration | None = None,
    window: Window | None = None,
    progress: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Decode, synchronise, deskew and detect the sweeps of chunk `index` (or of `window`), writing
    their points and images to the chunk's part files, numbered from the window's first frame
    (`plan.first_frames`; 0 with `window` or without an index). progress(sweeps done in this chunk)."""
    start, end = plan.windows[index] if window is None else window
    first = plan.first_frames[index] if plan.first_frames is not None and window is None else 0
    detector = detector if detector is not None else config.detector.build()
    seq = SequenceWriter(out, plan.sequence_id, overwrite=True)
    sync = config.sync_config()
    with open_bag(plan.log_path) as bag:
        ctx = _prepare_window(bag, config, calibration, (start, end))
        cameras = sorted(set(ctx.cameras) & set(plan.ctx.cameras))
        ctx.cameras = {name: ctx.cameras[name] for name in cameras}
        part = parts_dir(out, plan.sequence_id)
        # the plan's cameras, so that every chunk's columns are the same
        records = SweepRecorder(sorted(plan.ctx.cameras), ctx.lidar_frame)
        with sweep_writers(
            seq, cameras, config, part_dir=part, part=f"{index:05d}", first_frame=first
        ) as writers:
            swept = synchronize(bag, ctx, sync, start_ns=start, end_ns=end)
            for frame, boxes in detect_in_batches(detector, swept):
                records.add(frame, boxes)
                writers.add(frame, first + frame.index)
                if progress is not None:
                    progress(len(records))
        warnings = [w for w in [*bag.warnings, *ctx.warnings] if w not in plan.warnings]
    no_finite = np.array(ctx.no_finite_ns, np.int64)
    return ChunkResult(index, first, records.sweeps(), records.detections(), warnings, no_finite)


POSE_PAD_NS: Final = 1_000_000_000
"""Poses are read this far (plus a sweep period) beyond a chunk's window: every pose lookup of its
sweeps interpolates between the same samples as in one pass over the log (a pose is never
interpolated across a gap longer than `calib.TransformBuffer`'s max_gap_ns, 0.5 s by default;
the rest covers a sweep's stamp lagging its record time). Kept short: in a compressed bag the
poses share chunks with the point clouds, so every second of pad is decompressed again."""


def _prepare_window(
    bag: Bag, config: RunConfig, calibration: Calibration | None, window: Window
) -> SyncContext:
    """`fusion.sync.prepare` reading only what one window needs: poses (TF, odometry) within it
    and a pad either side, the static TF and the first CameraInfo of each camera. Each chunk does
    this for itself, so no task reads the whole log's poses before the chunks can start."""
    sync = config.sync_config()
    pad = POSE_PAD_NS + sync.sweep_period_ns
    start, end = window
    lo = None if start is None else start - pad
    hi = None if end is None else end + pad
    return prepare(_WindowedBag(bag, lo, hi), sync, calibration=calibration)  # type: ignore[arg-type]


class _WindowedBag:
    """A `Bag` whose stream of poses is cut to [lo, hi); CameraInfo and static TF topics yield
    what `prepare` keeps (their first message / all of them), others their first message in the
    window, or in the log when the window has none (what `prepare` asks of them)."""

    def __init__(self, bag: Bag, lo: int | None, hi: int | None) -> None:
        self._bag = bag
        self._lo = lo
        self._hi = hi
        self.path = bag.path
        self.topics = bag.topics
        self.warnings = bag.warnings

    def deserialize(self, raw: RawMessage) -> Any:
        return self._bag.deserialize(raw)

    def messages(self, topics: Sequence[str]) -> Iterator[RawMessage]:
        kinds = {t: self.topics[t].msgtype for t in topics}
        static = [t for t in topics if kinds[t] == TF and t.rstrip("/").endswith("tf_static")]
        infos = [t for t in topics if kinds[t] == CAMERA_INFO]
        poses = [t for t in topics if kinds[t] in (TF, ODOMETRY) and t not in static]
        other = [t for t in topics if t not in {*static, *infos, *poses}]
        if static:
            yield from self._bag.messages(static)
        for topic in infos:  # the first message, read at its record time: not the log's whole index
            first = self.topics[topic].first_log_ns
            at: Window = (None, None) if first is None else (first, first + 1)
            yield from itertools.islice(self._bag.messages([topic], *at), 1)
        if poses:
            yield from self._bag.messages(poses, start_ns=self._lo, end_ns=self._hi)
        if other:
            found = False
            for raw in self._bag.messages(other, start_ns=self._lo, end_ns=self._hi):
                found = True
                yield raw
            if not found:
                yield from self._bag.messages(other)


class LogFinisher:
    """Finishes one log from its chunks, taken in order as they come: each `add` renumbers the
    chunk's records and has its part files appended to the sequence's points and images files by
    a thread of the finisher's own (so the joining overlaps the chunks still running, and the
    tracking in `finish`: it is disk work, `os.copy_file_range`, with the GIL released); `finish`
    tracks, refines and writes labels and frames. The part files are left for the caller to
    remove (`remove_parts`) once it holds the result, so a retried finish finds them. Use as a
    context manager: an error aborts every file still being written."""

    def __init__(self, plan: LogPlan, out: Path, config: RunConfig) -> None:
        self.plan = plan
        self.out = out
        self.config = config
        self.seq = SequenceWriter(out, plan.sequence_id, overwrite=True)
        _remove_stale_temporaries(self.seq)
        self.sweeps: list[SweepColumns] = []  # per chunk taken, its sweeps numbered in the log
        self.detections: list[BoxColumns] = []  # per chunk taken, its detections; emptied by `finish`
        self.warnings = list(plan.warnings)
        self._no_finite_ns: list[int] = []  # of the chunks taken
        self._added = 0
        self._counts: list[int] = []  # sweeps per chunk appended
        self._taken: list[int] = []  # chunks whose records are in frames/rows
        self._stack = ExitStack()
        # one thread: part files are appended in chunk order, then the files are committed
        self._joiner = ThreadPoolExecutor(1, thread_name_prefix="fusion-join")
        self._joins: list[Future[None]] = []
        self._join_failed = False
        self.points = (
            self._stack.enter_context(self.seq.points_from_parts()) if config.output.points else None
        )
        cameras = sorted(plan.ctx.cameras) if config.output.images else []
        self.images = {name: self._stack.enter_context(self.seq.images_from_parts(name)) for name in cameras}

    def add(self, chunk: ChunkResult) -> None:
        """Append the next chunk's part files (chunk numbers must come 0, 1, 2, ...) and keep its
        frame rows and detections for `finish`."""
        self.add_parts(chunk.parts)
        self._take_records(chunk)

    def add_parts(self, chunk: ChunkParts) -> None:
        """Have the next chunk's part files appended (in the background; an error surfaces at the
        next call or in `finish`); `finish` must then be given the chunk. A Dask worker does this
        while chunks still run beside it and fetches the chunks' records only once they are all
        done, so that they are not scattered through a heap that the running chunks keep filling
        and emptying."""
        sid = self.plan.sequence_id
        expected = self.chunks_added
        if chunk.index != expected:
            raise ExportError(f"cannot finish {sid}: got chunk {chunk.index}, expected chunk {expected}")
        for done in [j for j in self._joins if j.done()]:
            done.result()  # a failed join raises now rather than at the end
        offset = sum(self._counts)
        self._joins.append(self._joiner.submit(self._in_order, self._append_parts, chunk, offset))
        self._counts.append(chunk.sweeps)
        self._added = expected + 1

    def _in_order(self, step: Callable[..., object], *args: Any) -> None:
        """Run one step of the joining thread, unless an earlier one failed: nothing more is
        appended to, or committed from, a file that misses a chunk."""
        if self._join_failed:
            raise ExportError(f"cannot finish {self.plan.sequence_id}: an earlier part file failed to join")
        try:
            step(*args)
        except BaseException:
            self._join_failed = True
            raise

    def _append_parts(self, chunk: ChunkParts, offset: int) -> None:
        sid = self.plan.sequence_id
        part = parts_dir(self.out, sid)
        shift = offset - chunk.first_frame  # 0 unless the bag's index miscounted an earlier chunk
        if self.points is not None:
            path = part / f"{chunk.index:05d}.points.parquet"
            rewrite = functools.partial(_renumber_points, sequence_id=sid, first_frame=offset)
            with _renumbered(path, shift, rewrite) as numbered:
                added = self.points.append(numbered)
            if added != chunk.sweeps:
                raise ExportError(
                    f"cannot merge {path}: {added} sweeps, its chunk reported {chunk.sweeps}; re-run"
                )
        for name, writer in self.images.items():
            path = part / f"{chunk.index:05d}.{camera_file_stem(name)}.images.parquet"
            rewrite = functools.partial(_renumber_images, sequence_id=sid, camera=name)
            with _renumbered(path, shift, rewrite) as numbered:
                writer.append(numbered)

    def _take_records(self, chunk: ChunkResult) -> None:
        offset = sum(len(s) for s in self.sweeps)
        k = len(self._taken)
        if chunk.index != k or len(chunk.sweeps) != self._counts[k]:
            raise ExportError(
                f"cannot finish {self.plan.sequence_id}: chunk {chunk.index} given again as chunk {k} "
                f"with {len(chunk.sweeps)} sweeps, appended with {self._counts[k]}"
            )
        self.sweeps.append(chunk.sweeps.renumbered(offset))
        self.detections.append(chunk.detections)
        self.warnings += [w for w in chunk.warnings if w not in self.warnings]
        self._no_finite_ns += chunk.no_finite_ns.tolist()
        self._taken.append(chunk.index)

    @property
    def chunks_added(self) -> int:
        """Chunks appended so far."""
        return self._added

    def finish(
        self,
        calibration: Calibration | None = None,
        chunks: Iterable[ChunkResult] = (),
        executor: Submitter | None = None,
    ) -> tuple[DetectSummary, SequenceInfo]:
        """Close the points and images files (renamed into place), track, refine, write labels and
        frames; the summary and the sequence's row. `chunks`: in order, those added with
        `add_parts`. `executor`: runs the backward tracking pass (`trackers.track_both_ways`)."""
        if self.chunks_added != len(self.plan.windows):
            raise ExportError(
                f"cannot finish {self.plan.sequence_id}: {self.chunks_added} of "
                f"{len(self.plan.windows)} chunks added"
            )
        for chunk in chunks:
            self._take_records(chunk)
        if len(self._taken) != self.chunks_added:
            raise ExportError(
                f"cannot finish {self.plan.sequence_id}: the records of {len(self._taken)} of "
                f"{self.chunks_added} chunks given"
            )
        detected = Detected(
            log_path=self.plan.log_path,
            ctx=self.plan.ctx,
            sweeps=SweepColumns.join(self.sweeps),
            detections=self.detections,  # emptied once tracked
            warnings=[
                *self.warnings,
                *no_finite_warning(str(self.plan.log_path), self.plan.ctx.lidar_topic, self._no_finite_ns),
            ],
            source_size_bytes=self.plan.source_size_bytes,
            started_s=self.plan.started_s,
        )
        # The last parts are appended and the points and images files flushed to disk and renamed
        # into place by the joining thread while tracking runs (disk work with the GIL released:
        # for a 200-sweep 64-beam log ~0.4 s of joining and ~0.2 s of fsync the finishing step
        # used to spend after the last chunk with the CPU idle); the tables are written only once
        # those files are in place, so a failed join leaves nothing under a final name.
        self._joins.append(self._joiner.submit(self._in_order, self._stack.close))
        try:
            return finish_sequence(self.seq, detected, self.config, calibration, self._joined, executor)
        except BaseException:
            self._joiner.shutdown(wait=True, cancel_futures=True)  # stopped before any abort
            raise

    def _joined(self) -> None:
        """Wait for the joining thread's work; raise the first error it met."""
        try:
            for join in self._joins:
                join.result()
        finally:
            self._joiner.shutdown()

    def abort(self) -> None:
        """Drop the points and images files being written (once the joining thread has stopped)."""
        self._joiner.shutdown(wait=True, cancel_futures=True)
        self.seq.abort()
        self._stack.pop_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is not None:
            self.abort()


@functools.cache
def warm_finishing() -> None:
    """Load what the end of `LogFinisher.finish` runs for the first time in a process (the tracker's
    and the camera projection's compiled kernels, from numba's cache: ~0.3 s) on a few made-up
    boxes; once per process, later calls return at once. A finishing task calls it while it waits
    for its first chunk, so it does not pay for it after the last one, when nothing else runs
    beside it; a worker that is warmed before its first log (`bench/pipeline.py`) pays neither."""
    from calib.camera import Camera
    from calib.projection import boxes_to_image
    from calib.transform import Transform
    from trackers import refine, track_both_ways

    boxes = Boxes.build(
        np.array([[8.0, 1.0, 0.0, 4.2, 1.8, 1.5, 0.1], [15.0, -3.0, 0.0, 0.6, 0.6, 1.7, 0.0]]),
        np.array(["car", "pedestrian"]),
        np.array([0.9, 0.8], np.float32),
        np.array([120, 30], np.int32),
        frame_id="lidar",
        stamp_ns=0,
    )
    refine(track_both_ways([(boxes, k * 100_000_000, None) for k in range(6)]))
    k = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    camera = Camera("warm", "warm_optical", 640, 480, "plumb_bob", k, ())  # one kernel for every lens
    optical_from_lidar = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    boxes_to_image(boxes.boxes, camera, Transform("warm_optical", "lidar", optical_from_lidar, np.zeros(3)))


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


@contextlib.contextmanager
def _renumbered(path: Path, shift: int, rewrite: Callable[[Path, Path, int], None]) -> Iterator[Path]:
    """`path` itself when `shift` is 0, else a copy of it with every frame_index moved by `shift`
    (`rewrite(src, dst, shift)`), removed afterwards."""
    if shift == 0:
        yield path
        return
    log.info("%s: frame numbers moved by %d (the bag's index miscounted earlier sweeps)", path, shift)
    renumbered = path.with_name(f"{path.stem}.renumbered.parquet")
    try:
        rewrite(path, renumbered, shift)
        yield renumbered
    finally:
        renumbered.unlink(missing_ok=True)


def _renumber_points(src: Path, dst: Path, shift: int, *, sequence_id: str, first_frame: int) -> None:
    """Rewrite a points part file (one row group per sweep) numbering its sweeps from `first_frame`
    (= their old numbers + `shift`)."""
    file = _part(src)
    with PointsWriter(dst, sequence_id, overwrite=True, first_frame=first_frame) as writer:
        for g in range(file.num_row_groups):
            table = file.read_row_group(g)
            xyz = np.column_stack([table.column(c).to_numpy() for c in ("x", "y", "z")])
            writer.add(
                writer.next_frame,
                xyz,
                table.column("intensity").to_numpy(),
                table.column("time_offset_ns").to_numpy(),
            )


def _renumber_images(src: Path, dst: Path, shift: int, *, sequence_id: str, camera: str) -> None:
    """Rewrite an images part file with its frame indices moved by `shift`."""
    file = _part(src)
    with ImagesWriter(dst, sequence_id, camera, overwrite=True) as writer:
        for g in range(file.num_row_groups):
            table = file.read_row_group(g)
            for frame, stamp, encoding, data in zip(
                table.column("frame_index").to_pylist(),
                table.column("timestamp_ns").to_pylist(),
                table.column("encoding").to_pylist(),
                table.column("data").to_pylist(),
                strict=True,
            ):
                writer.add(frame + shift, stamp, data, encoding)


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
