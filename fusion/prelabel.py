"""Detection, tracking and 4D refinement over a whole log, one process, writing the contract's
dataset and the review queue (`flags/`, `fusion.flags`) (`fusion detect`); and the stages
`fusion.chunks` shares with it (`finish_sequence`, `sweep_writers`, `detect_in_batches`).

With tracking on (`RunConfig.tracker.enabled`, the default) the boxes of all sweeps are tracked
forward and backward and the whole tracks refined (`trackers.refine`): stable track ids, one size
per object, smoothed poses, gaps filled (`origin = interpolated`), a track-level score. With it off
each box is its own track. `fusion.pipeline` runs the same stages on Dask, in time chunks.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from calib.projection import boxes_to_image
from calib.transform import wrap_angle
from exporters.dataset import (
    DatasetWriter,
    ImagesWriter,
    PipelineInfo,
    PointsWriter,
    SequenceCamera,
    SequenceInfo,
    SequenceWriter,
    camera_file_stem,
    dataset_paths,
)
from exporters.errors import ExportError
from exporters.labels import CameraBoxes, labels_table
from exporters.schema import sequence_id_for
from fusion import __version__
from fusion.bags import open_bag
from fusion.boxes import CATEGORIES, Boxes, category_codes
from fusion.capture import with_capture_offsets
from fusion.config import RunConfig
from fusion.errors import FusionError
from fusion.flags import FlagConfig, review_flags
from fusion.memory import release_free_memory
from fusion.records import BoxColumns, SweepColumns, SweepRecorder, frame_detections
from fusion.sync import (
    CameraSetup,
    FusedFrame,
    PairedImage,
    SyncContext,
    no_finite_warning,
    prepare,
    synchronize,
)

if TYPE_CHECKING:
    from calib.calibration import Calibration
    from calib.camera import Camera
    from calib.transform import Transform
    from fusion.detect import Detector
    from trackers.refine import Submitter, TrackTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectSummary:
    """What `prelabel_logs` did for one log."""

    sequence_id: str
    labels_path: Path
    sweeps: int
    boxes: int
    tracks: int
    by_category: dict[str, int]
    seconds: float
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LogFailure:
    """A log that could not be pre-labelled: its sequence is left out of the dataset."""

    log_path: Path
    sequence_id: str
    error: str  # one line


def failure_message(error: BaseException) -> str:
    """A log's error as one line: a FusionError's own message (it names the file and the fix),
    anything else with its type (an unexpected error: `--debug` shows the traceback)."""
    text = " ".join(str(error).split())
    if isinstance(error, FusionError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def prelabel_logs(
    logs: Sequence[Path],
    out: Path,
    *,
    detector: Detector,
    calibration: Calibration | None = None,
    config: RunConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    on_failure: Callable[[LogFailure], None] | None = None,
) -> list[DetectSummary]:
    """Pre-label every log into one dataset at `out` (shared/CONTRACT.md): sequences, frames,
    labels, points (one row group per sweep) and synchronised images, `dataset.json` last.

    progress(sequence_id, done, total) is called after each sweep. Raises FusionError subclasses
    with a message naming the file when a log cannot be read or the output cannot be written; a
    failed run leaves no dataset.json, so no reader takes the directory for complete.
    With `on_failure`, a log that raises (an Exception, not Ctrl-C) has its files removed and is
    reported to on_failure(LogFailure) while the others go on; the dataset lists the finished ones
    (when none finished, no dataset.json is written).
    """
    config = config or RunConfig()
    pipeline = pipeline_info(config, getattr(detector, "name", type(detector).__name__))
    summaries: list[DetectSummary] = []
    try:
        with DatasetWriter(out, pipeline=pipeline, overwrite=overwrite) as dataset:
            if not overwrite:
                refuse_existing_sequences(out, [sequence_id_for(p, others=logs) for p in logs])
            for log_path in logs:
                sid = sequence_id_for(log_path, others=logs)
                seq = dataset.sequence(sid)
                try:
                    summary, info = prelabel_sequence(
                        log_path, sid, seq, detector, calibration, config, progress
                    )
                except Exception as err:
                    if on_failure is None:
                        raise
                    seq.abort()
                    remove_sequence_files(out, sid)
                    on_failure(LogFailure(Path(log_path), sid, failure_message(err)))
                    continue
                dataset.add_sequence(info)
                summaries.append(summary)
            if not summaries:
                raise NothingFinishedError
    except NothingFinishedError:  # every log failed (each reported): no dataset.json
        pass
    return summaries


class NothingFinishedError(Exception):
    """Every log failed: raised inside the dataset writer's block so it writes no dataset.json."""


def refuse_existing_sequences(out: Path, sids: Sequence[str]) -> None:
    """Raise `ExportError` when a file of any of `sids` is already under `out` (before any work, so
    a per-log failure never removes a file this run did not write)."""
    for sid in sids:
        for path in dataset_paths(out, sid).values():
            if path.exists():
                raise ExportError(
                    f"cannot write {path}: it already exists and fusion never overwrites output; "
                    "remove it, choose another --out, or pass --overwrite"
                )


def remove_sequence_files(out: Path, sid: str) -> None:
    """Every final and temporary file of sequence `sid` under `out`."""
    for path in dataset_paths(out, sid).values():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
            for stale in path.parent.glob(f".{path.name}.tmp-*"):
                stale.unlink(missing_ok=True)


def pipeline_info(config: RunConfig, detector: str) -> PipelineInfo:
    """`dataset.json`'s pipeline entry: fusion's version, the detector, the tracker, the effective config."""
    return PipelineInfo(
        version=__version__,
        detector=detector,
        tracker="trackers.Tracker + trackers.refine" if config.tracker.enabled else "none",
        config={**config.to_mapping(), "flags": FlagConfig().to_json()},
    )


def prelabel_sequence(
    log_path: Path,
    sid: str,
    seq: SequenceWriter,
    detector: Detector,
    calibration: Calibration | None,
    config: RunConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[DetectSummary, SequenceInfo]:
    """Pre-label one log into its sequence's files (`seq`) in this process; returns the summary and
    the sequence's row for sequences.parquet. (`fusion.chunks` does the same in time chunks.)"""
    started = time.time()
    with open_bag(log_path) as bag:
        ctx = prepare(bag, config.sync_config(), calibration=calibration)
        total = bag.topics[ctx.lidar_topic].count
        records = SweepRecorder(sorted(ctx.cameras), ctx.lidar_frame)
        with sweep_writers(seq, sorted(ctx.cameras), config) as writers:
            frames = synchronize(bag, ctx, config.sync_config())
            for frame, boxes in detect_in_batches(detector, frames):
                records.add(frame, boxes)
                writers.add(frame)
                if progress is not None:
                    progress(sid, len(records), total)
        log_data = Detected(
            log_path=log_path,
            ctx=ctx,
            sweeps=records.sweeps(),
            detections=[records.detections()],
            warnings=[
                *bag.warnings,
                *ctx.warnings,
                *no_finite_warning(str(bag.path), ctx.lidar_topic, ctx.no_finite_ns),
            ],
            source_size_bytes=bag.size_bytes,
            started_s=started,
        )
    return finish_sequence(seq, log_data, config, calibration)


@dataclass(frozen=True, eq=False)
class Detected:
    """One log after detection: what tracking and the tables need (no points, no images)."""

    log_path: Path
    ctx: SyncContext
    sweeps: SweepColumns  # per sweep, frame_index 0..n-1 in order: its frames row, pose and cameras
    detections: list[BoxColumns]  # the sweeps' detections, in parts (a chunk's each) one after
    # another; `finish_sequence` empties it once they are tracked
    warnings: Sequence[str]
    source_size_bytes: int
    started_s: float  # time.time() when the log's work began


def finish_sequence(
    seq: SequenceWriter,
    detected: Detected,
    config: RunConfig,
    calibration: Calibration | None,
    before_writing: Callable[[], object] | None = None,
    executor: Submitter | None = None,
) -> tuple[DetectSummary, SequenceInfo]:
    """Track and refine the detections (`config.tracker`), write the sequence's labels and frames;
    return the summary and the sequence's row for sequences.parquet. `before_writing` is called
    once the labels are computed and before any file is written (what it raises stops the
    sequence with nothing written; the review flags are computed before it, while a
    `LogFinisher` still joins the last part files); `executor` runs the backward tracking pass
    (`trackers.track_both_ways`). `detected.detections` is emptied once they are tracked: the
    detections (~16 MB for a 5-minute 64-beam log) are not held while the labels and flags are
    built."""
    sid = seq.sequence_id
    ctx = detected.ctx
    sweeps = detected.sweeps
    warnings = list(detected.warnings)
    if config.tracker.enabled:
        found = sum(len(part) for part in detected.detections)
        rows = _tracked_rows(sweeps, detected.detections, config, executor)
        from trackers import RefineConfig

        least = (config.tracker.refine or RefineConfig()).min_track_frames
        if found and not len(rows.track_id) and len(sweeps) < least:  # no track can be long enough
            warnings.append(_too_short_warning(str(detected.log_path), found, len(sweeps), least))
    else:
        rows = _detected_rows(sweeps, detected.detections)
    detected.detections.clear()
    release_free_memory()  # each step's freed memory handed back before the next one's peak
    table = rows.table(sid, ctx)
    del rows  # freed before the flags are computed
    release_free_memory()
    flags = review_flags(table, tracked=config.tracker.enabled)  # while the last parts are joined
    release_free_memory()
    if before_writing is not None:
        before_writing()
    labels_path = seq.write_labels(table)
    release_free_memory()
    seq.write_flags(flags)
    del flags
    release_free_memory()
    frames = sweeps.frame_columns()
    seq.write_frames(frames)
    cameras = sorted(ctx.cameras)
    effective = config.to_mapping()
    effective["topics"] = {"lidar": ctx.lidar_topic, "cameras": [ctx.cameras[n].topic for n in cameras]}
    effective["calibration"] = calibration.source if calibration else None
    info = SequenceInfo.from_frames(
        sid,
        frames,
        source_path=str(detected.log_path),
        source_size_bytes=detected.source_size_bytes,
        lidar_topic=ctx.lidar_topic,
        world_frame=ctx.fixed_frame,
        cameras=[
            SequenceCamera(replace(c.camera, name=c.name), c.topic, c.lidar_from_camera)
            for c in (ctx.cameras[n] for n in cameras)
        ],
        config=effective,
    )
    cats, counts = np.unique(np.asarray(table.column("category").to_pylist(), dtype=str), return_counts=True)
    summary = DetectSummary(
        sequence_id=sid,
        labels_path=labels_path,
        sweeps=len(sweeps),
        boxes=table.num_rows,
        tracks=len(set(table.column("track_id").to_pylist())),
        by_category={str(c): int(n) for c, n in zip(cats, counts, strict=True)},
        seconds=time.time() - detected.started_s,
        warnings=warnings,
    )
    return summary, info


def _too_short_warning(log_path: str, found: int, sweeps: int, least: int) -> str:
    """The summary's line for a log of fewer sweeps than `RefineConfig.min_track_frames` (`least`),
    whose `found` detections refinement therefore all dropped."""
    return (
        f"{log_path}: tracking kept none of the {found} detections of its {sweeps} sweep(s): refinement "
        f"drops tracks with fewer than {least} detections (min_track_frames); pass --no-track to keep "
        "each sweep's detections as they are"
    )


class SweepWriters:
    """The points writer and one images writer per camera of a sequence (or a chunk of one)."""

    def __init__(
        self, points: PointsWriter | None, images: Mapping[str, ImagesWriter], image_format: str
    ) -> None:
        self.points = points
        self.images = images
        self.image_format = image_format

    def add(self, frame: FusedFrame, frame_index: int | None = None) -> None:
        """Write one sweep's points (deskewed, lidar frame) and its paired images at `frame_index`
        (default: the frame's own index)."""
        index = frame.index if frame_index is None else frame_index
        if self.points is not None:
            cloud = frame.cloud
            self.points.add(
                index,
                cloud.xyz,
                _or_zeros(cloud.intensity, len(cloud), np.float32),
                _or_zeros(cloud.time_offset_ns, len(cloud), np.int32),
            )
        for name, img in frame.images.items():
            if name in self.images:
                _add_image(self.images[name], index, img, self.image_format)


def detect_in_batches(detector: Detector, frames: Iterable[FusedFrame]) -> Iterator[tuple[FusedFrame, Boxes]]:
    """Each frame with its boxes, in order. A detector with a `batch_size` (the learned ones) gets that
    many sweeps per call (`detect_batch`), so a GPU sees batches; the others one sweep at a time."""
    batch = max(1, int(getattr(detector, "batch_size", 1)))
    pending: list[FusedFrame] = []
    for frame in frames:
        pending.append(frame)
        if len(pending) >= batch:
            yield from _detect_pending(detector, pending)
            pending = []
    if pending:
        yield from _detect_pending(detector, pending)


def _detect_pending(detector: Detector, pending: list[FusedFrame]) -> Iterator[tuple[FusedFrame, Boxes]]:
    """The frames with their boxes, each box with its capture offset (`fusion.capture`, whatever the
    detector: refinement moves a moving object's box from where the beam caught it to the stamp)."""
    if len(pending) == 1:
        found = [detector.detect(pending[0].cloud)]
    else:
        found = detector.detect_batch([f.cloud for f in pending])
    for frame, boxes in zip(pending, found, strict=True):
        yield frame, with_capture_offsets(boxes, frame)


@contextmanager
def sweep_writers(
    seq: SequenceWriter,
    cameras: Sequence[str],
    config: RunConfig,
    *,
    part_dir: Path | None = None,
    part: str = "",
    first_frame: int = 0,
) -> Iterator[SweepWriters]:
    """`SweepWriters` for `seq` per `config.output`; every file is renamed into place when the block
    succeeds and dropped when it raises. With `part_dir`, a chunk's part files are written there
    instead (`<part>.points.parquet`, `<part>.<camera>.images.parquet`; replaced when retried),
    encoded as the final files are and numbering sweeps from `first_frame`, so that the finishing
    step joins them by copying bytes (`SequenceWriter.points_from_parts`). Part files are scratch:
    not flushed to disk before their rename (the joined files are; a crashed run is redone, a
    killed chunk rewrites its parts), so a short log's parts may never reach the disk at all."""
    out = config.output
    sid = seq.sequence_id
    with ExitStack() as stack:
        pw = None
        if out.points:
            if part_dir is None:
                pw = stack.enter_context(seq.points())
            else:
                path = part_dir / f"{part}.points.parquet"
                pw = stack.enter_context(
                    PointsWriter(path, sid, overwrite=True, first_frame=first_frame, durable=False)
                )
        iws = {}
        if out.images:
            for name in cameras:
                if part_dir is None:
                    iws[name] = stack.enter_context(seq.images(name))
                else:
                    path = part_dir / f"{part}.{camera_file_stem(name)}.images.parquet"
                    iws[name] = stack.enter_context(
                        ImagesWriter(path, sid, name, overwrite=True, durable=False)
                    )
        yield SweepWriters(pw, iws, out.image_format)


def _or_zeros(values: npt.NDArray[Any] | None, n: int, dtype: type[np.generic]) -> npt.NDArray[Any]:
    """`values`, or n zeros of `dtype` for a cloud without the field (no intensity: 0.0; no
    per-point time: offset 0, an int32 as the points table holds; float zeros were refused there)."""
    return values if values is not None else np.zeros(n, dtype)


def _add_image(writer: ImagesWriter, frame_index: int, img: PairedImage, image_format: str) -> None:
    """Store a compressed image's own bytes when it is in `image_format` ("recorded": JPEG or PNG
    as logged); otherwise decode it and encode it with OpenCV (a raw image as JPEG by default)."""
    fmt = str(getattr(img.message, "format", "")).lower()
    for encoding in ("jpeg", "png"):
        recorded = encoding in fmt or (encoding == "jpeg" and "jpg" in fmt)
        if recorded and image_format in ("recorded", encoding):
            writer.add(frame_index, img.stamp_ns, bytes(img.message.data), encoding)
            return
    target = "jpeg" if image_format == "recorded" else image_format
    writer.add_array(frame_index, img.stamp_ns, img.decoded.pixels, encoding=target)  # type: ignore[arg-type]


def _tracked(
    sweeps: SweepColumns, detections: list[BoxColumns], config: RunConfig, executor: Submitter | None
) -> TrackTable:
    """`trackers.track_both_ways` of the sweeps and their detections, which it empties (joined into
    the tracker's input, which is let go once the tracks are made)."""
    from trackers import track_both_ways

    tracked = track_both_ways(
        frame_detections(sweeps, BoxColumns.join(detections)), config.tracker.online, executor=executor
    )
    release_free_memory()
    return tracked


def _tracked_rows(
    sweeps: SweepColumns,
    detections: list[BoxColumns],
    config: RunConfig,
    executor: Submitter | None = None,
) -> _LabelRows:
    """Track all sweeps both ways, refine the whole tracks, and bring the rows into each sweep's
    frame. Empties `detections`: they are let go once tracked, before refinement's peak."""
    from trackers import RefineConfig, TrackTable, refine_blocks

    # without poses the tracks live in the moving sensor frame, where velocities are not headings
    world = bool(sweeps.has_pose.all())
    refine_config = config.tracker.refine or RefineConfig()
    if not world:
        refine_config = replace(refine_config, heading_from_velocity=False)
    # the track table is passed on unnamed: `refine_blocks` drops it once it has its deduplicated
    # copy, so the two are not both held through refinement (~24 MB each for a 5-minute 64-beam log).
    # Of each refined block only what the labels take is kept, the strings as codes: the whole
    # refined table (~22 MB, a third of it category and origin at 4 bytes a character) is never held
    blocks = refine_blocks(_tracked(sweeps, detections, config, executor), refine_config)
    parts = [_label_columns(block) for block in blocks] or [_label_columns(TrackTable.empty())]
    del blocks
    release_free_memory()
    # joined column by column, then each column dropped once its label column is made
    table = {name: np.concatenate([part.pop(name) for part in parts]) for name in _LABEL_COLUMNS}
    del parts
    order = np.lexsort((table["track_id"], table["frame_index"]))  # labels: by frame, then track
    category = _CATEGORY_NAMES.take(pa.array(table.pop("category")[order]))
    origin = _ORIGIN_NAMES.take(pa.array(table.pop("interpolated")[order].astype(np.int8)))
    frame_of_row = table.pop("frame_index")[order]
    track_id = table.pop("track_id")[order]
    score = table.pop("score")[order]
    num_points = table.pop("num_points")[order]
    velocity = table.pop("velocity")[order]
    bounds = _frame_bounds(frame_of_row, len(sweeps))
    del frame_of_row
    boxes_world = table.pop("boxes_world")
    boxes = np.empty((order.size, 7), order="F")  # columns contiguous: Arrow takes them as they are
    in_world_frame = np.full((order.size, 4), np.nan, order="F")
    for k in np.flatnonzero(np.diff(bounds)).tolist():  # the sweeps with rows, one at a time
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        pose = sweeps.pose(k)
        # in each sweep's frame by the same steps (and array layouts) as a sweep's detections,
        # so that the boxes and their world copies are bit for bit what they always were
        sensor = boxes_world[order[lo:hi]]
        if pose is not None:
            lidar_from_world = pose.inverse()
            in_world = sensor.copy()
            sensor[:, :3] = lidar_from_world.apply(in_world[:, :3])
            sensor[:, 6] = in_world[:, 6] + _yaw_of(lidar_from_world.rotation)
        sensor[:, 6] = wrap_angle(sensor[:, 6])
        boxes[lo:hi] = sensor
        in_world_frame[lo:hi] = _world_of(pose, sensor)
    return _LabelRows(
        sweeps=sweeps,
        bounds=bounds,
        track_id=track_id,
        category=category,
        score=score,
        boxes=boxes,
        world=in_world_frame,
        num_points=num_points,
        origin=origin,
        velocity=velocity,
    )


def _label_columns(block: TrackTable) -> dict[str, npt.NDArray[Any]]:
    """What the labels take of refined tracks (`_LABEL_COLUMNS`), the category as its index in
    `fusion.boxes.CATEGORIES` and the origin as whether it is interpolated (a byte, not 40-48)."""
    return {
        "frame_index": block.frame_index,
        "track_id": block.track_id,
        "category": category_codes(block.category),
        "interpolated": block.origin == "interpolated",
        "score": block.score,
        "num_points": block.num_points,
        "velocity": np.ascontiguousarray(block.velocity[:, :2]),
        "boxes_world": block.boxes_world,
    }


_LABEL_COLUMNS: Final = ("frame_index", "track_id", "category", "interpolated", "score", "num_points",
                         "velocity", "boxes_world")  # fmt: skip
_CATEGORY_NAMES: Final = pa.array(CATEGORIES, pa.string())
_ORIGIN_NAMES: Final = pa.array(["detected", "interpolated"], pa.string())


def _detected_rows(sweeps: SweepColumns, detections: list[BoxColumns]) -> _LabelRows:
    """Every detection its own label row (and its own track), in sweep order. Empties `detections`."""
    found = BoxColumns.join(detections)
    if len(found.counts) != len(sweeps):
        raise ValueError(f"{len(sweeps)} sweeps but detections of {len(found.counts)}")
    bounds = found.bounds().astype(np.intp)
    n = int(bounds[-1])
    boxes = np.empty((n, 7), order="F")
    boxes[:] = found.boxes
    world = np.full((n, 4), np.nan, order="F")
    for k in np.flatnonzero(found.counts).tolist():
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        world[lo:hi] = _world_of(sweeps.pose(k), found.boxes[lo:hi])
    return _LabelRows(
        sweeps=sweeps,
        bounds=bounds,
        track_id=np.arange(n, dtype=np.int64),
        category=_CATEGORY_NAMES.take(pa.array(found.category)),
        score=found.score,
        boxes=boxes,
        world=world,
        num_points=found.num_points,
        origin="detected",
        velocity=np.full((n, 2), np.nan),
    )


def _frame_bounds(frame_of_row: npt.NDArray[np.integer[Any]], sweeps: int) -> npt.NDArray[np.intp]:
    """(sweeps + 1,): the rows of sweep k are [bounds[k], bounds[k + 1]) of rows sorted by sweep."""
    bounds = np.zeros(sweeps + 1, np.intp)
    np.cumsum(np.bincount(frame_of_row, minlength=sweeps), out=bounds[1:])
    return bounds


def _world_of(pose: Transform | None, boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(M, 4) world x, y, z, yaw of boxes (M, 7) in the LiDAR frame at `pose` (NaN without one)."""
    world = np.full((len(boxes), 4), np.nan)
    if pose is not None:
        world[:, :3] = pose.apply(boxes[:, :3])
        world[:, 3] = boxes[:, 6] + _yaw_of(pose.rotation)
    return world


def _yaw_of(rotation: npt.NDArray[np.float64]) -> float:
    return math.atan2(float(rotation[1, 0]), float(rotation[0, 0]))


PROJECTION_BATCH: Final = 512
"""Boxes projected into a camera per call. The projection (`calib.projection`) works one face at a
time in a few kB of scratch, so a batch only bounds its corner and extent arrays (~250 B a box);
before that it held every sampled outline of the batch (~11 kB a box), and 512 was the fastest
batch (93k boxes of a 5-minute log, one camera: 2048 a call 1.9 s of CPU, 512 1.0 s)."""

PROJECTION_THREADS: Final = 4
"""The most threads that project a sequence's labels (`project_boxes`; fewer on a machine with
fewer cores)."""


def project_boxes(
    boxes: npt.NDArray[np.float64], camera: Camera, camera_from_lidar: Transform
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """`calib.projection.boxes_to_image` of boxes (M, 7) in the lidar frame, `PROJECTION_BATCH` at
    a time: extents (M, 4) and visible (M,)."""
    (done,) = _project_all(boxes, [(np.arange(len(boxes)), camera, camera_from_lidar)])
    return done


def _project_all(
    boxes: npt.NDArray[np.float64],
    jobs: Sequence[tuple[npt.NDArray[np.intp], Camera, Transform]],
) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]:
    """`project_boxes` of boxes[rows] for each (rows, camera, camera_from_lidar), their batches on
    up to `PROJECTION_THREADS` threads: the projection kernel runs without the GIL, and when a log
    is finished the cores that ran its chunks are idle (a 20-s 64-beam log's three cameras: 0.15 s
    on one core). A batch's boxes are taken from `boxes` in its thread, so no camera's boxes are
    copied whole."""
    batches = [
        (k, rows[lo : lo + PROJECTION_BATCH], camera, transform)
        for k, (rows, camera, transform) in enumerate(jobs)
        for lo in range(0, len(rows), PROJECTION_BATCH)
    ]

    def project(
        batch: tuple[int, npt.NDArray[np.intp], Camera, Transform],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        _, rows, camera, transform = batch
        return boxes_to_image(np.ascontiguousarray(boxes[rows]), camera, transform)

    threads = min(PROJECTION_THREADS, _usable_cores(), len(batches))
    if threads > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="fusion-projection") as pool:
            done = list(pool.map(project, batches))
    else:
        done = [project(batch) for batch in batches]
    extents: list[list[npt.NDArray[np.float64]]] = [[np.zeros((0, 4))] for _ in jobs]
    visible: list[list[npt.NDArray[np.bool_]]] = [[np.zeros(0, bool)] for _ in jobs]
    for (k, _, _, _), (ext, vis) in zip(batches, done, strict=True):  # each job's batches in order
        extents[k].append(ext)
        visible[k].append(vis)
    return [(np.concatenate(e), np.concatenate(v)) for e, v in zip(extents, visible, strict=True)]


def _usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one, as on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True, eq=False)
class _LabelRows:
    """The label rows of a log (N), sorted by sweep, whole columns rather than a few arrays per
    sweep joined at the end (a 5-minute 64-beam log: ~93k rows in 3,000 sweeps; joining per-sweep
    arrays held every column twice, and their ~40,000 small arrays scattered the heap).
    `table` makes the labels table."""

    sweeps: SweepColumns  # per frame_index, the sweep
    bounds: npt.NDArray[np.intp]  # (len(sweeps) + 1,): sweep k's rows are [bounds[k], bounds[k + 1])
    track_id: npt.NDArray[np.int64]  # (N,)
    category: pa.Array  # (N,) strings: a few bytes a row, not numpy's 4 a character
    score: npt.NDArray[np.float32]  # (N,)
    boxes: npt.NDArray[np.float64]  # (N, 7) LiDAR frame, column-major (as `labels_table` keeps it)
    world: npt.NDArray[np.float64]  # (N, 4) world x, y, z, yaw; NaN rows without a pose
    num_points: npt.NDArray[np.int32]  # (N,)
    origin: pa.Array | str  # (N,) strings, or one for every row
    velocity: npt.NDArray[np.float64]  # (N, 2) world-frame; NaN when unknown

    def table(self, sid: str, ctx: SyncContext) -> pa.Table:
        """The labels table, with every box projected into each camera its sweep was paired with."""
        counts = np.diff(self.bounds)
        cams = self._camera_boxes(ctx.cameras, counts)
        release_free_memory()  # the projection's scratch
        return labels_table(
            sequence_id=sid,
            frame_index=np.repeat(self.sweeps.frame_index.astype(np.int32), counts),
            timestamp_ns=np.repeat(self.sweeps.stamp_ns, counts),
            track_id=self.track_id,
            category=self.category,
            score=self.score,
            boxes=self.boxes,
            num_points=self.num_points,
            origin=self.origin,
            world_boxes=self.world,
            velocity=self.velocity,
            camera_boxes=cams,
        )

    def _camera_boxes(
        self, cameras: Mapping[str, CameraSetup], counts: npt.NDArray[np.intp]
    ) -> CameraBoxes | None:
        """Every box projected into each camera its sweep was paired with: one batch of boxes per
        camera and call rather than one call per sweep and camera (each call's own cost was half of
        projecting a sweep's boxes), on this worker's idle cores (`_project_all`). Within a row,
        cameras come in name order. Projected here, not on an idle worker: sending the boxes there
        and the extents back cost more than the two cameras' projection it took off this task (a
        5-minute log: 3.1 s for the labels table with it, 2.6 s without; a 20-s log 0.22-0.26 s,
        0.15-0.17 s)."""
        with_rows = self.sweeps.paired & (counts > 0)[:, None]  # (sweeps, cameras)
        columns = enumerate(self.sweeps.cameras)
        paired = {name: with_rows[:, j] for j, name in columns if with_rows[:, j].any()}
        if not paired:
            return None
        rows, names, extents = [], [], []
        names_in_order = sorted(paired)
        wanted_rows = [np.flatnonzero(np.repeat(paired[name], counts)) for name in names_in_order]
        projected = _project_all(
            self.boxes,
            [
                (wanted, cameras[name].camera, cameras[name].lidar_from_camera.inverse())
                for name, wanted in zip(names_in_order, wanted_rows, strict=True)
            ],
        )
        for name, wanted, (ext, visible) in zip(names_in_order, wanted_rows, projected, strict=True):
            rows.append(wanted[visible])
            names.append(pa.repeat(pa.scalar(name, pa.string()), int(visible.sum())))
            extents.append(ext[visible])
        ext = np.concatenate(extents)
        return CameraBoxes(
            row=np.concatenate(rows),
            camera=pa.concat_arrays(names),  # Arrow strings: a few bytes a row, not 4 per character
            x_min=ext[:, 0],
            y_min=ext[:, 1],
            x_max=ext[:, 2],
            y_max=ext[:, 3],
        )
