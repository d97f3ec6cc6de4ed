"""A chunk's records as columns (`fusion.records`): a few arrays whatever its sweeps, and the same
tracks and frames table as the per-sweep objects they replace."""

from __future__ import annotations

import pickle
import pickletools
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from exporters.dataset import FrameCamera, FrameRow, frame_columns_table, frames_table
from fusion.bags import open_bag
from fusion.boxes import Boxes
from fusion.chunks import ChunkResult, plan_log, run_chunk
from fusion.config import RunConfig
from fusion.prelabel import detect_in_batches
from fusion.records import BoxColumns, SweepColumns, SweepRecorder, frame_detections
from fusion.sync import FusedFrame, prepare, synchronize
from trackers import TrackTable, track_both_ways

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"


def _pickle_ops(result: ChunkResult) -> int:
    """The opcodes of a chunk result's pickle (as `fusion.pipeline` sends it): one or a few per
    object in it, one per array whatever its length."""
    return sum(1 for _ in pickletools.genops(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)))


def test_a_chunk_result_holds_the_same_few_objects_whatever_its_sweeps(tmp_path: Path) -> None:
    config = RunConfig().with_overrides(chunk_s=100.0)
    plan = plan_log(SAMPLE, "sim_drive", config)
    detector = config.detector.build()
    times = plan.windows[0]
    whole = run_chunk(plan, 0, tmp_path, config, detector=detector)
    with open_bag(SAMPLE) as bag:
        stamps = [raw.log_time_ns for raw in bag.messages([plan.ctx.lidar_topic])]
    few = run_chunk(plan, 0, tmp_path, config, detector=detector, window=(times[0], stamps[4]))
    assert len(whole.sweeps) == 30 and len(few.sweeps) == 4
    assert len(whole.detections) > 4 * len(few.detections) > 0
    assert whole.warnings == few.warnings
    # per sweep a frame, its boxes and its row took ~100 opcodes; now the count does not grow with sweeps
    # (~490 in all, ~8 per column: BoxColumns.length_bound took it from 488 to 496)
    assert _pickle_ops(whole) <= _pickle_ops(few) + 8 < 520
    for part in (whole.sweeps, whole.detections):
        for value in vars(part).values():
            assert isinstance(value, (np.ndarray, str, tuple)), type(value)
            assert not isinstance(value, np.ndarray) or value.dtype != object


def _per_sweep(config: RunConfig) -> tuple[list[tuple[FusedFrame, Boxes]], SweepColumns, BoxColumns]:
    """The sample's sweeps and detections in one pass: as objects per sweep and as columns."""
    kept: list[tuple[FusedFrame, Boxes]] = []
    with open_bag(SAMPLE) as bag:
        ctx = prepare(bag, config.sync_config())
        records = SweepRecorder(sorted(ctx.cameras), ctx.lidar_frame)
        swept = synchronize(bag, ctx, config.sync_config())
        for frame, boxes in detect_in_batches(config.detector.build(), swept):
            records.add(frame, boxes)
            kept.append((frame, boxes))
    return kept, records.sweeps(), records.detections()


class _ElsewhereSubmitter:
    """Runs what is submitted on a pickled copy of its arguments (as another worker would)."""

    def submit(self, fn: Any, /, *args: Any) -> Future[Any]:
        fn, args = pickle.loads(pickle.dumps((fn, args)))
        done: Future[Any] = Future()
        done.set_result(fn(*args))
        return done


@pytest.fixture(scope="module")
def sample_sweeps() -> tuple[list[tuple[FusedFrame, Boxes]], SweepColumns, BoxColumns]:
    return _per_sweep(RunConfig())


def test_tracking_the_columns_gives_the_tracks_of_the_per_sweep_boxes(
    sample_sweeps: tuple[list[tuple[FusedFrame, Boxes]], SweepColumns, BoxColumns],
) -> None:
    per_sweep, sweeps, detections = sample_sweeps
    frames = [
        (boxes, f.stamp_ns, f.world_from_lidar.matrix if f.world_from_lidar is not None else None)
        for f, boxes in per_sweep
    ]
    want = track_both_ways(frames)
    # the columns in two parts joined, as a finishing step joins its chunks'
    parts = list(_split_boxes(detections, 11))
    joined = BoxColumns.join(parts)
    assert parts == []
    got = track_both_ways(frame_detections(sweeps, joined), executor=_ElsewhereSubmitter())
    assert len(want) > 100 and len(got) == len(want)
    for name in TrackTable.__dataclass_fields__:
        a, b = getattr(want, name), getattr(got, name)
        assert a.dtype.kind == b.dtype.kind and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    for k, (_, boxes) in enumerate(per_sweep):  # and each frame of the columns is the sweep's boxes
        view, t_ns, pose = frame_detections(sweeps, joined)[k]
        assert t_ns == per_sweep[k][0].stamp_ns and pose is not None
        assert np.array_equal(view.boxes, boxes.boxes) and list(view.category) == list(boxes.category)


def test_the_frames_table_of_the_columns_is_that_of_the_frame_rows(
    sample_sweeps: tuple[list[tuple[FusedFrame, Boxes]], SweepColumns, BoxColumns],
) -> None:
    per_sweep, sweeps, _ = sample_sweeps
    rows = [
        FrameRow(
            frame_index=f.index,
            timestamp_ns=f.stamp_ns,
            source_log_time_ns=f.log_time_ns,
            num_points=len(f.cloud),
            deskewed=f.deskewed,
            world_from_lidar=f.world_from_lidar,
            cameras=tuple(FrameCamera(n, img.stamp_ns, img.offset_ns) for n, img in sorted(f.images.items())),
        )
        for f, _ in per_sweep
    ]
    want = frames_table("sim_drive", rows)
    assert sum(len(r.cameras) for r in rows) > 30  # most sweeps have images
    assert frame_columns_table("sim_drive", sweeps.frame_columns()).equals(want)
    # two chunks joined, the second numbered from 0 and lacking a camera
    first, second = _split(sweeps, 13)
    drop = second.cameras[1:]
    second = SweepColumns(
        **{**vars(second), "cameras": drop, "frame_index": second.frame_index - 13,
           "paired": second.paired[:, 1:], "image_stamp_ns": second.image_stamp_ns[:, 1:],
           "image_offset_ns": second.image_offset_ns[:, 1:]}
    )  # fmt: skip
    joined = SweepColumns.join([first, second.renumbered(13)])
    assert joined.cameras == sweeps.cameras
    without = [r if r.frame_index < 13 else FrameRow(**{**vars(r), "cameras": tuple(
        c for c in r.cameras if c.name != sweeps.cameras[0])}) for r in rows]  # fmt: skip
    assert frame_columns_table("sim_drive", joined.frame_columns()).equals(frames_table("sim_drive", without))


def _split_boxes(detections: BoxColumns, k: int) -> tuple[BoxColumns, BoxColumns]:
    """The detections of the first k sweeps, and of the others."""
    rows = int(detections.counts[:k].sum())

    def part(first: bool) -> BoxColumns:
        return BoxColumns(
            **{
                name: (value[:k] if first else value[k:])
                if name == "counts"
                else (value[:rows] if first else value[rows:])
                for name, value in vars(detections).items()
            }
        )

    return part(True), part(False)


def _split(sweeps: SweepColumns, k: int) -> tuple[SweepColumns, SweepColumns]:
    def part(rows: slice) -> SweepColumns:
        return SweepColumns(
            **{
                name: value[rows] if isinstance(value, np.ndarray) else value
                for name, value in vars(sweeps).items()
            }
        )

    return part(slice(None, k)), part(slice(k, None))


def test_a_sweep_with_an_image_of_an_unknown_camera_is_refused(
    sample_sweeps: tuple[list[tuple[FusedFrame, Boxes]], SweepColumns, BoxColumns],
) -> None:
    per_sweep, sweeps, _ = sample_sweeps
    frame, boxes = next((f, b) for f, b in per_sweep if f.images)
    with pytest.raises(ValueError, match="an image of camera"):
        SweepRecorder(sweeps.cameras[:0], sweeps.lidar_frame).add(frame, boxes)
