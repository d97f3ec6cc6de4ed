"""One log in time chunks (`fusion.chunks`) gives exactly the dataset of one pass over it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from exporters.dataset import DatasetWriter
from exporters.validate import validate_dataset
from fusion.bags import open_bag
from fusion.chunks import PARTS_DIR, chunk_windows, finish_log, plan_log, remove_parts, run_chunk
from fusion.config import RunConfig
from fusion.prelabel import pipeline_info, prelabel_logs

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"


def test_windows_are_half_open_and_cover_every_record_time_once() -> None:
    windows = chunk_windows(100, 1000, 300)
    assert windows == ((None, 400), (400, 700), (700, 1000), (1000, None))
    for t in (0, 100, 399, 400, 999, 1000, 10**12):
        inside = [w for w in windows if (w[0] is None or t >= w[0]) and (w[1] is None or t < w[1])]
        assert len(inside) == 1
    assert chunk_windows(5, 5, 10) == ((None, None),)


def _sweep_log_times(log: Path, topic: str) -> list[int]:
    with open_bag(log) as bag:
        return [raw.log_time_ns for raw in bag.messages([topic])]


def _chunked(out: Path, config: RunConfig, *, border_on_a_sweep: bool, first_frames: str = "index") -> int:
    """Pre-label the sample chunk by chunk in this process (as the Dask tasks do); returns #chunks.
    first_frames: "index" (from the bag's index), "none" (no index: every part numbered from 0),
    "miscounted" (the index said one sweep more before the third chunk than there is)."""
    plan = plan_log(SAMPLE, "sim_drive", config)
    assert plan.first_frames is not None and plan.first_frames[0] == 0
    if first_frames == "none":
        plan = replace(plan, first_frames=None)
    elif first_frames == "miscounted":
        plan = replace(plan, first_frames=tuple(n + (k >= 2) for k, n in enumerate(plan.first_frames)))
    if border_on_a_sweep:  # borders exactly at sweeps' record times: each belongs to the later chunk
        times = _sweep_log_times(SAMPLE, plan.ctx.lidar_topic)
        plan = replace(
            plan, windows=((None, times[7]), (times[7], times[8]), (times[8], times[20]), (times[20], None))
        )
    detector = config.detector.build()
    results = [run_chunk(plan, k, out, config, detector=detector) for k in range(len(plan.windows))]
    assert sum(len(r.sweeps) for r in results) == plan.total_sweeps == 30
    with DatasetWriter(out, pipeline=pipeline_info(config, "geometric")) as ds:
        summary, info = finish_log(plan, results, out, config)
        assert summary.sweeps == 30 and summary.boxes > 0
        ds.add_sequence(info)
    remove_parts(out, ["sim_drive"])
    return len(plan.windows)


@pytest.mark.parametrize(
    ("border_on_a_sweep", "narrow_pose_pad", "first_frames"),
    [
        (False, False, "index"),
        (True, False, "index"),
        (False, True, "index"),
        (False, False, "none"),
        (False, False, "miscounted"),
    ],
)
def test_chunks_give_the_same_dataset_as_one_pass(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    border_on_a_sweep: bool,
    narrow_pose_pad: bool,
    first_frames: str,
) -> None:
    config = RunConfig().with_overrides(chunk_s=0.45)
    if narrow_pose_pad:  # each chunk reads only 0.3 s of poses either side of its window
        monkeypatch.setattr("fusion.chunks.POSE_PAD_NS", 200_000_000)
    one = tmp_path / "one"
    prelabel_logs([SAMPLE], one, detector=config.detector.build(), config=config)
    chunked = tmp_path / "chunked"
    n = _chunked(chunked, config, border_on_a_sweep=border_on_a_sweep, first_frames=first_frames)
    assert n == (4 if border_on_a_sweep else 7)
    assert validate_dataset(chunked) == []
    assert not (chunked / PARTS_DIR).exists()
    for kind in ("frames", "labels"):
        a = pq.read_table(one / kind / "sim_drive.parquet")
        b = pq.read_table(chunked / kind / "sim_drive.parquet")
        assert a.equals(b), kind
    pa_, pb = (pq.ParquetFile(d / "points" / "sim_drive.parquet") for d in (one, chunked))
    assert pa_.num_row_groups == pb.num_row_groups == 30
    for g in range(30):
        assert pa_.read_row_group(g).equals(pb.read_row_group(g))
    cams = sorted(p.name for p in (one / "images" / "sim_drive").iterdir())
    assert cams == sorted(p.name for p in (chunked / "images" / "sim_drive").iterdir()) and len(cams) == 3
    for cam in cams:
        a = pq.read_table(one / "images" / "sim_drive" / cam)
        b = pq.read_table(chunked / "images" / "sim_drive" / cam)
        assert a.equals(b) and a.num_rows > 20
    frames = pq.read_table(chunked / "frames" / "sim_drive.parquet")
    assert frames.column("frame_index").to_pylist() == list(range(30))
    assert np.all(np.diff(frames.column("timestamp_ns").to_numpy()) > 0)


def test_finishing_refuses_chunks_out_of_order_or_missing_and_leaves_no_file(tmp_path: Path) -> None:
    from exporters.errors import ExportError
    from fusion.chunks import ChunkResult, LogFinisher
    from fusion.records import BoxColumns, SweepColumns

    config = RunConfig().with_overrides(chunk_s=1.0)
    plan = plan_log(SAMPLE, "sim_drive", config)
    assert len(plan.windows) == 3
    out = tmp_path / "out"
    with (
        pytest.raises(ExportError, match="got chunk 1, expected chunk 0"),
        LogFinisher(plan, out, config) as f,
    ):
        f.add(ChunkResult(1, 0, SweepColumns.empty(), BoxColumns.empty(), []))
    with pytest.raises(ExportError, match="0 of 3 chunks added"), LogFinisher(plan, out, config) as f:
        f.finish()
    assert [p for p in out.rglob("*") if p.is_file()] == []  # temporaries dropped, nothing final


def test_warming_the_finishing_step_writes_nothing_and_is_done_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusion.chunks import warm_finishing

    monkeypatch.chdir(tmp_path)
    warm_finishing()
    warm_finishing()
    assert warm_finishing.cache_info().misses == 1  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []


def test_a_part_file_that_fails_to_join_stops_the_log_and_commits_nothing(tmp_path: Path) -> None:
    from exporters.errors import ExportError
    from fusion.chunks import LogFinisher, parts_dir

    config = RunConfig().with_overrides(chunk_s=1.0)
    plan = plan_log(SAMPLE, "sim_drive", config)
    out = tmp_path / "out"
    chunks = [run_chunk(plan, k, out, config) for k in range(len(plan.windows))]
    broken = parts_dir(out, "sim_drive") / "00001.points.parquet"
    broken.write_bytes(broken.read_bytes()[:-100])  # chunk 1's points part truncated on disk
    with pytest.raises(ExportError, match=r"00001\.points\.parquet"), LogFinisher(plan, out, config) as f:
        for chunk in chunks:  # joined in the background: the error may surface here or in finish
            f.add(chunk)
        f.finish()
    final = [p for p in out.rglob("*.parquet") if PARTS_DIR not in p.parts]
    assert final == []  # neither the points nor any images file was committed, nor any table written


def test_the_finisher_drops_the_detections_once_the_label_rows_are_made(tmp_path: Path) -> None:
    """The labels and flags of a long log are built without its detections held (they are ~35 MB
    for 3,000 sweeps); the frame rows stay for the frames table."""
    from fusion.chunks import LogFinisher

    config = RunConfig().with_overrides(chunk_s=100.0)
    plan = plan_log(SAMPLE, "sim_drive", config)
    out = tmp_path / "out"
    (chunk,) = [run_chunk(plan, k, out, config) for k in range(len(plan.windows))]
    with LogFinisher(plan, out, config) as finisher:
        finisher.add(chunk)
        assert sum(len(s) for s in finisher.sweeps) == 30 and sum(len(d) for d in finisher.detections) > 0
        summary, _ = finisher.finish()
    assert summary.sweeps == 30 and summary.boxes > 0
    assert finisher.detections == [] and sum(len(s) for s in finisher.sweeps) == 30
    assert pq.read_table(out / "labels" / "sim_drive.parquet").num_rows == summary.boxes


def test_a_chunk_reads_each_camera_info_at_its_first_record_not_the_logs_whole_index(tmp_path: Path) -> None:
    """Every chunk takes each camera's first CameraInfo: asking for the topic's whole stream read
    the message index of every chunk of the log (3 x 3,000 for 5 minutes of 64-beam sweeps, 60 ms
    of each chunk task, and more the longer the log)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from fusion.bags import typestore_for
    from fusion.chunks import _WindowedBag

    log = tmp_path / "uncompressed"  # read at the index's offsets (the sample's chunks are zstd)
    with open_bag(SAMPLE) as src, Writer(log, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns: dict[str, Any] = {}
        for raw in src.messages():
            if raw.topic not in conns:
                conns[raw.topic] = w.add_connection(raw.topic, raw.msgtype, typestore=typestore_for("ros2"))
            w.write(conns[raw.topic], raw.log_time_ns, bytes(raw.data))
    with open_bag(log) as bag:
        index = bag._mcap_index
        assert index is not None and index.direct and len(index.chunks) >= 10
        infos = sorted(t for t, info in bag.topics.items() if info.msgtype == "sensor_msgs/msg/CameraInfo")
        assert len(infos) == 3
        late = _WindowedBag(bag, bag.topics["/lidar/points"].last_log_ns, None)
        for topic in infos:
            before = index.blocks_read
            (raw,) = late.messages([topic])
            assert index.blocks_read - before == 1
            assert raw.log_time_ns == bag.topics[topic].first_log_ns
            assert bytes(raw.data) == bytes(next(iter(bag.messages([topic]))).data)
