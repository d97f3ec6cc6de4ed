"""Detection, tracking and 4D refinement over a whole log, one process, writing the contract's
labels table and the review queue (`flags/`, `fusion.flags`) (`fusion detect`).

With `track=True` (the default) the boxes of all sweeps are tracked forward and backward and the
whole tracks refined (`trackers.refine`): stable track ids, one size per object, smoothed poses,
gaps filled (`origin = interpolated`), a track-level score. With `track=False` each box is its own
track. `fusion.pipeline` will run the same stages on Dask for many logs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from calib.projection import boxes_to_image
from exporters.dataset import (
    DatasetWriter,
    FrameCamera,
    FrameRow,
    ImagesWriter,
    PipelineInfo,
    SequenceCamera,
    SequenceInfo,
    SequenceWriter,
)
from exporters.labels import CameraBoxes, labels_table
from exporters.schema import sequence_id_for
from fusion import __version__
from fusion.bags import open_bag
from fusion.boxes import Boxes
from fusion.decode import PointCloud
from fusion.flags import FlagConfig, review_flags
from fusion.sync import FusedFrame, PairedImage, SyncConfig, SyncContext, prepare, synchronize

if TYPE_CHECKING:
    from calib.calibration import Calibration
    from fusion.detect import Detector

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


def prelabel_logs(
    logs: Sequence[Path],
    out: Path,
    *,
    detector: Detector,
    calibration: Calibration | None = None,
    sync_config: SyncConfig | None = None,
    overwrite: bool = False,
    track: bool = True,
    points: bool = True,
    images: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[DetectSummary]:
    """Pre-label every log into one dataset at `out` (shared/CONTRACT.md): sequences, frames,
    labels, points (one row group per sweep) and synchronised images, `dataset.json` last.

    progress(sequence_id, done, total) is called after each sweep. Raises FusionError subclasses
    with a message naming the file when a log cannot be read or the output cannot be written; a
    failed run leaves no dataset.json, so no reader takes the directory for complete.
    """
    config = sync_config or SyncConfig()
    pipeline = PipelineInfo(
        version=__version__,
        detector=getattr(detector, "name", type(detector).__name__),
        tracker="trackers.Tracker + trackers.refine" if track else "none",
        config={
            "sync": asdict(config),
            "track": track,
            "points": points,
            "images": images,
            "flags": FlagConfig().to_json(),
        },
    )
    summaries: list[DetectSummary] = []
    with DatasetWriter(out, pipeline=pipeline, overwrite=overwrite) as dataset:
        for log_path in logs:
            sid = sequence_id_for(log_path, others=logs)
            summary, info = prelabel_sequence(
                log_path,
                sid,
                dataset.sequence(sid),
                detector,
                calibration,
                config,
                track,
                points,
                images,
                progress,
            )
            dataset.add_sequence(info)
            summaries.append(summary)
    return summaries


def prelabel_sequence(
    log_path: Path,
    sid: str,
    seq: SequenceWriter,
    detector: Detector,
    calibration: Calibration | None,
    config: SyncConfig,
    track: bool,
    points: bool,
    images: bool,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[DetectSummary, SequenceInfo]:
    """Pre-label one log into its sequence's files (`seq`); returns the summary and the sequence's
    row for sequences.parquet. Runs anywhere the output directory is reachable: in this process,
    or in a Dask worker (`fusion.pipeline`)."""
    t0 = time.perf_counter()
    columns = _Columns()
    per_frame: list[tuple[FusedFrame, Boxes]] = []
    rows: list[FrameRow] = []
    with open_bag(log_path) as bag:
        ctx = prepare(bag, config, calibration=calibration)
        total = bag.topics[ctx.lidar_topic].count
        cameras = sorted(ctx.cameras)
        with ExitStack() as stack:
            pw = stack.enter_context(seq.points()) if points else None
            iws = {name: stack.enter_context(seq.images(name)) for name in cameras} if images else {}
            # a detector with a batch_size (the learned ones) sees that many sweeps per call
            batch = max(1, int(getattr(detector, "batch_size", 1)))
            pending: list[FusedFrame] = []

            def flush() -> None:
                if len(pending) == 1:
                    found = [detector.detect(pending[0].cloud)]
                else:
                    found = detector.detect_batch([f.cloud for f in pending])
                for frame, boxes in zip(pending, found, strict=True):
                    if track:
                        per_frame.append((_light(frame), boxes))
                    else:
                        columns.add(frame, boxes, ctx)
                    rows.append(_frame_row(frame))
                    if pw is not None:
                        cloud = frame.cloud
                        pw.add(
                            frame.index,
                            cloud.xyz,
                            _or_zeros(cloud.intensity, len(cloud)),
                            _or_zeros(cloud.time_offset_ns, len(cloud)),
                        )
                    for name, img in frame.images.items():
                        if name in iws:
                            _add_image(iws[name], frame.index, img)
                    if progress is not None:
                        progress(sid, len(rows), total)
                pending.clear()

            for frame in synchronize(bag, ctx, config):
                pending.append(frame)
                if len(pending) >= batch:
                    flush()
            if pending:
                flush()
        warnings = [*bag.warnings, *ctx.warnings]
        size = bag.size_bytes
    if track:
        _add_tracked(columns, per_frame, ctx)
    table = columns.table(sid)
    labels_path = seq.write_labels(table)
    seq.write_flags(review_flags(table, tracked=track))
    seq.write_frames(rows)
    info = SequenceInfo.from_frames(
        sid,
        rows,
        source_path=str(log_path),
        source_size_bytes=size,
        lidar_topic=ctx.lidar_topic,
        world_frame=ctx.fixed_frame,
        cameras=[
            SequenceCamera(replace(c.camera, name=c.name), c.topic, c.lidar_from_camera)
            for c in (ctx.cameras[n] for n in cameras)
        ],
        config={"sync": asdict(config), "calibration": calibration.source if calibration else None},
    )
    cats, counts = np.unique(np.asarray(table.column("category").to_pylist(), dtype=str), return_counts=True)
    summary = DetectSummary(
        sequence_id=sid,
        labels_path=labels_path,
        sweeps=len(rows),
        boxes=table.num_rows,
        tracks=len(set(table.column("track_id").to_pylist())),
        by_category={str(c): int(n) for c, n in zip(cats, counts, strict=True)},
        seconds=time.perf_counter() - t0,
        warnings=warnings,
    )
    return summary, info


def _or_zeros(values: npt.NDArray[Any] | None, n: int) -> npt.NDArray[Any]:
    return values if values is not None else np.zeros(n, np.float32)


def _frame_row(frame: FusedFrame) -> FrameRow:
    return FrameRow(
        frame_index=frame.index,
        timestamp_ns=frame.stamp_ns,
        source_log_time_ns=frame.log_time_ns,
        num_points=len(frame.cloud),
        deskewed=frame.deskewed,
        world_from_lidar=frame.world_from_lidar,
        cameras=tuple(
            FrameCamera(name, img.stamp_ns, img.offset_ns) for name, img in sorted(frame.images.items())
        ),
    )


def _add_image(writer: ImagesWriter, frame_index: int, img: PairedImage) -> None:
    """Store a compressed image's own bytes; encode a raw one as JPEG."""
    fmt = str(getattr(img.message, "format", "")).lower()
    for encoding in ("jpeg", "png"):
        if encoding in fmt or (encoding == "jpeg" and "jpg" in fmt):
            writer.add(frame_index, img.stamp_ns, bytes(img.message.data), encoding)
            return
    writer.add_array(frame_index, img.stamp_ns, img.decoded.pixels, encoding="jpeg")  # type: ignore[arg-type]


def _light(frame: FusedFrame) -> FusedFrame:
    """The frame without its points and images (their names stay in `unpaired`'s complement via
    `crossings_ns`): what tracking needs to keep per sweep, so memory does not grow with points."""
    empty = PointCloud(np.zeros((0, 3), np.float32), None, None, None, frame.cloud.frame_id, frame.stamp_ns)
    return replace(frame, cloud=empty, images={})


def _add_tracked(columns: _Columns, per_frame: list[tuple[FusedFrame, Boxes]], ctx: SyncContext) -> None:
    """Track all sweeps both ways, refine the whole tracks, and add the rows in each sweep's frame."""
    from trackers import RefineConfig, refine, track_both_ways

    frames = [
        (boxes, f.stamp_ns, f.world_from_lidar.matrix if f.world_from_lidar is not None else None)
        for f, boxes in per_frame
    ]
    # without poses the tracks live in the moving sensor frame, where velocities are not headings
    world = all(pose is not None for _, _, pose in frames)
    table = refine(track_both_ways(frames), RefineConfig(heading_from_velocity=world))
    order = np.lexsort((table.track_id, table.frame_index))
    for fi in np.unique(table.frame_index[order]):
        rows = order[table.frame_index[order] == fi]
        frame, _ = per_frame[int(fi)]
        world = table.boxes_world[rows]
        if frame.world_from_lidar is not None:
            lidar_from_world = frame.world_from_lidar.inverse()
            sensor = world.copy()
            sensor[:, :3] = lidar_from_world.apply(world[:, :3])
            sensor[:, 6] = world[:, 6] + _yaw_of(lidar_from_world.rotation)
        else:
            sensor = world
        boxes = Boxes.build(
            sensor,
            table.category[rows],
            table.score[rows],
            table.num_points[rows],
            frame_id=frame.lidar_frame,
            stamp_ns=frame.stamp_ns,
        )
        columns.add(
            frame,
            boxes,
            ctx,
            track_id=table.track_id[rows],
            origin=table.origin[rows],
            velocity=table.velocity[rows, :2],
        )


def _yaw_of(rotation: npt.NDArray[np.float64]) -> float:
    return math.atan2(float(rotation[1, 0]), float(rotation[0, 0]))


class _Columns:
    """Accumulates label rows frame by frame as numpy chunks; one table at the end."""

    def __init__(self) -> None:
        self.frame_index: list[npt.NDArray[np.int32]] = []
        self.timestamp: list[npt.NDArray[np.int64]] = []
        self.category: list[npt.NDArray[np.str_]] = []
        self.score: list[npt.NDArray[np.float32]] = []
        self.boxes: list[npt.NDArray[np.float64]] = []
        self.world: list[npt.NDArray[np.float64]] = []
        self.num_points: list[npt.NDArray[np.int32]] = []
        self.cam_rows: list[npt.NDArray[np.int64]] = []
        self.cam_names: list[npt.NDArray[np.str_]] = []
        self.cam_extents: list[npt.NDArray[np.float64]] = []
        self.track_id: list[npt.NDArray[np.int64]] = []
        self.origin: list[npt.NDArray[np.str_]] = []
        self.velocity: list[npt.NDArray[np.float64]] = []
        self.rows = 0

    def add(
        self,
        frame: FusedFrame,
        boxes: Boxes,
        ctx: SyncContext,
        *,
        track_id: npt.NDArray[np.int64] | None = None,
        origin: npt.NDArray[np.str_] | None = None,
        velocity: npt.NDArray[np.float64] | None = None,
    ) -> None:
        n = len(boxes)
        if n == 0:
            return
        # untracked: each box is its own track
        self.track_id.append(track_id if track_id is not None else np.arange(self.rows, self.rows + n))
        self.origin.append(origin if origin is not None else np.full(n, "detected"))
        self.velocity.append(velocity if velocity is not None else np.full((n, 2), np.nan))
        self.frame_index.append(np.full(n, frame.index, np.int32))
        self.timestamp.append(np.full(n, frame.stamp_ns, np.int64))
        self.category.append(boxes.category)
        self.score.append(boxes.score)
        self.boxes.append(boxes.boxes)
        self.num_points.append(boxes.num_points)
        world = np.full((n, 4), np.nan)
        if frame.world_from_lidar is not None:
            world[:, :3] = frame.world_from_lidar.apply(boxes.boxes[:, :3])
            world[:, 3] = boxes.boxes[:, 6] + _yaw_of(frame.world_from_lidar.rotation)
        self.world.append(world)
        paired = sorted(set(frame.crossings_ns) - set(frame.unpaired))
        for name in paired:
            setup = ctx.cameras[name]
            extents, visible = boxes_to_image(boxes.boxes, setup.camera, setup.lidar_from_camera.inverse())
            idx = np.flatnonzero(visible)
            self.cam_rows.append(self.rows + idx)
            self.cam_names.append(np.full(idx.size, name))
            self.cam_extents.append(extents[idx])
        self.rows += n

    def table(self, sid: str) -> pa.Table:
        n = self.rows
        cat = np.concatenate(self.category) if n else np.zeros(0, dtype="<U10")
        cams = None
        if self.cam_rows:
            ext = np.concatenate(self.cam_extents) if self.cam_extents else np.zeros((0, 4))
            cams = CameraBoxes(
                row=np.concatenate(self.cam_rows),
                camera=np.concatenate(self.cam_names),
                x_min=ext[:, 0],
                y_min=ext[:, 1],
                x_max=ext[:, 2],
                y_max=ext[:, 3],
            )
        return labels_table(
            sequence_id=sid,
            frame_index=np.concatenate(self.frame_index) if n else np.zeros(0, np.int32),
            timestamp_ns=np.concatenate(self.timestamp) if n else np.zeros(0, np.int64),
            track_id=np.concatenate(self.track_id).astype(np.int64) if n else np.zeros(0, np.int64),
            category=cat,
            score=np.concatenate(self.score) if n else np.zeros(0, np.float32),
            boxes=np.concatenate(self.boxes) if n else np.zeros((0, 7)),
            num_points=np.concatenate(self.num_points) if n else np.zeros(0, np.int32),
            origin=np.concatenate(self.origin) if n else "detected",
            world_boxes=np.concatenate(self.world) if n else np.zeros((0, 4)),
            velocity=np.concatenate(self.velocity) if n else np.zeros((0, 2)),
            camera_boxes=cams,
        )
