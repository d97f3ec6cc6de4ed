"""`fusion inspect`: what is in a log, and what is wrong with it, from one pass over its messages.

The report is plain data (`LogReport`); `LogReport.to_json()` is the stable `--json` document whose
keys the README lists, and `format_report()` is the human table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.errors import CalibrationError
from fusion.bags import Bag, TopicInfo, open_bag
from fusion.decode import decode_image, decode_pointcloud2
from fusion.decode.records import frame_id as clean_frame_id
from fusion.decode.records import stamp_ns
from fusion.errors import DecodeError, SyncError
from fusion.topics import (
    CAMERA_INFO,
    IMAGE_TYPES,
    POINTCLOUD2,
    TF,
    camera_info_for,
    image_topics_by_camera,
    lidar_topic,
)

if TYPE_CHECKING:
    from calib.calibration import Calibration

log = logging.getLogger(__name__)

JSON_VERSION = 1  # bump when a key of the --json document changes meaning or goes away
GAP_PERIODS = 3.0  # a gap over this many nominal periods is reported


@dataclass
class PointCloudStats:
    fields: list[str]
    mean_points: float
    per_point_time: bool
    nan_points: int
    frame_id: str


@dataclass
class ImageStats:
    width: int
    height: int
    encoding: str
    frame_id: str
    camera_info_topic: str | None


@dataclass
class TopicReport:
    name: str
    type: str
    count: int
    decodable: bool
    problem: str | None
    rate_hz: float | None
    rate_source: str | None  # "header" (header stamps) or "record" (bag record times: no header to read)
    first_stamp_ns: int | None
    last_stamp_ns: int | None
    first_log_ns: int | None
    last_log_ns: int | None
    largest_gap_ns: int | None
    non_monotonic: int
    pointcloud: PointCloudStats | None = None
    image: ImageStats | None = None


@dataclass
class TfEdge:
    parent: str
    child: str
    static: bool
    count: int


@dataclass
class LogReport:
    path: str
    format: str
    size_bytes: int
    duration_s: float
    message_count: int
    topics: list[TopicReport]
    cameras: list[dict[str, Any]]
    tf: list[TfEdge]
    tf_frames: list[str]
    problems: list[str] = field(default_factory=list)
    sync: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["json_version"] = JSON_VERSION
        return doc


class _TopicAcc:
    """Accumulates header stamps and per-type stats for one topic, in O(1) memory per message."""

    def __init__(self, info: TopicInfo) -> None:
        self.info = info
        self.stamps: list[int] = []
        self.n_points = 0
        self.n_clouds = 0
        self.nan_points = 0
        self.fields: list[str] = []
        self.per_point_time = False
        self.cloud_frame = ""
        self.image: ImageStats | None = None
        self.decode_errors = 0
        self.first_error: str | None = None

    def add(self, bag: Bag, msg: Any) -> None:
        header = getattr(msg, "header", None)
        if header is not None:
            self.stamps.append(stamp_ns(header))
        elif self.info.msgtype == TF and msg.transforms:
            self.stamps.append(stamp_ns(msg.transforms[0].header))
        if self.info.msgtype == POINTCLOUD2:
            cloud = decode_pointcloud2(msg)
            self.n_clouds += 1
            self.n_points += len(cloud)
            self.nan_points += cloud.num_dropped
            if not self.fields:
                self.fields = [f.name for f in msg.fields]
                self.per_point_time = cloud.time_offset_ns is not None
                self.cloud_frame = cloud.frame_id
        elif self.info.msgtype in IMAGE_TYPES and self.image is None:
            img = decode_image(msg)
            self.image = ImageStats(
                width=int(img.pixels.shape[1]),
                height=int(img.pixels.shape[0]),
                encoding=img.encoding,
                frame_id=img.frame_id,
                camera_info_topic=None,
            )


def inspect_log(
    path: str | Path, topics: Iterable[str] | None = None, *, calibration: Calibration | None = None
) -> LogReport:
    """Read every message of the log once and report on it, then how sweeps and cameras pair
    (see module doc). `calibration` overrides the bag's camera models and extrinsics per sensor."""
    with open_bag(path) as bag:
        accs = {name: _TopicAcc(info) for name, info in bag.topics.items() if info.decodable}
        wanted = [t for t in (topics if topics is not None else accs) if t in accs]
        tf_edges: dict[tuple[str, str, bool], int] = {}
        infos: dict[str, tuple[str, int, int]] = {}  # camera_info topic -> (frame, width, height)
        for raw in bag.messages(wanted):
            acc = accs[raw.topic]
            try:
                msg = bag.deserialize(raw)
                acc.add(bag, msg)
            except DecodeError as err:
                acc.decode_errors += 1
                acc.first_error = acc.first_error or str(err)
                continue
            if raw.msgtype == TF:
                static = raw.topic.rstrip("/").endswith("tf_static")
                for tr in msg.transforms:
                    key = (clean_frame_id(tr.header.frame_id), clean_frame_id(tr.child_frame_id), static)
                    tf_edges[key] = tf_edges.get(key, 0) + 1
            elif raw.msgtype == CAMERA_INFO and raw.topic not in infos:
                infos[raw.topic] = (clean_frame_id(msg.header.frame_id), int(msg.width), int(msg.height))
        report = _build(bag, accs, tf_edges, infos, calibration)
        report.sync, sync_problems = _sync_report(bag, calibration)
        report.problems.extend(sync_problems)
    return report


def _sync_report(bag: Bag, calibration: Calibration | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Pair every sweep with every camera (fusion.sync) and summarise per camera."""
    from fusion.sync import CameraSyncStats, SyncConfig, no_finite_warning, prepare, synchronize

    if lidar_topic(bag.topics) is None or not image_topics_by_camera(bag.topics):
        return [], []
    config = SyncConfig(deskew=False)
    try:
        ctx = prepare(bag, config, calibration=calibration)
        stats: dict[str, CameraSyncStats] = {}
        for _ in synchronize(bag, ctx, config, stats=stats):
            pass
    except (SyncError, CalibrationError, DecodeError) as err:
        return [], [f"sync: {err}"]
    problems = [*ctx.warnings, *no_finite_warning(str(bag.path), ctx.lidar_topic, ctx.no_finite_ns)]
    summaries = [s.summary() for s in stats.values()]
    for s in summaries:
        if s["unpaired_sweeps"]:
            problems.append(
                f"{s['topic']}: {s['unpaired_sweeps']} sweep(s) without an image within tolerance "
                f"(pairing rate {s['pairing_rate']:.1%})"
            )
    return summaries, problems


def _build(
    bag: Bag,
    accs: Mapping[str, _TopicAcc],
    tf_edges: Mapping[tuple[str, str, bool], int],
    infos: Mapping[str, tuple[str, int, int]],
    calibration: Calibration | None = None,
) -> LogReport:
    problems: list[str] = list(bag.warnings)
    reports: list[TopicReport] = []
    for name, info in bag.topics.items():
        acc = accs.get(name)
        stamps = np.asarray(acc.stamps if acc else [], dtype=np.int64)
        rate = first = last = gap = None
        non_mono = 0
        if stamps.size:
            first, last = int(stamps.min()), int(stamps.max())
        if stamps.size >= 2:
            diffs = np.diff(stamps)
            non_mono = int((diffs < 0).sum())
            ordered = np.diff(np.sort(stamps))
            positive = ordered[ordered > 0]
            span = last - first if first is not None and last is not None else 0
            rate = (stamps.size - 1) / (span * 1e-9) if span > 0 else None
            gap = int(ordered.max())
            if positive.size and ordered.max() > GAP_PERIODS * np.median(positive):
                n_gaps = int((ordered > GAP_PERIODS * np.median(positive)).sum())
                problems.append(
                    f"{name}: {n_gaps} gap(s) over {GAP_PERIODS:g} periods; largest {gap * 1e-6:.1f} ms "
                    f"(nominal period {np.median(positive) * 1e-6:.1f} ms)"
                )
            if non_mono:
                problems.append(f"{name}: header stamps go backwards {non_mono} time(s)")
        source = "header" if rate is not None else None
        if rate is None and stamps.size < 2 and info.count >= 2 and info.first_log_ns is not None:
            span = (info.last_log_ns or 0) - info.first_log_ns
            if span > 0:  # undecodable or header-less: the record times still give a rate
                rate, source = (info.count - 1) / (span * 1e-9), "record"
        rep = TopicReport(
            name=name,
            type=info.msgtype,
            count=info.count,
            decodable=info.decodable,
            problem=info.problem,
            rate_hz=round(rate, 3) if rate is not None else None,
            rate_source=source,
            first_stamp_ns=first,
            last_stamp_ns=last,
            first_log_ns=info.first_log_ns,
            last_log_ns=info.last_log_ns,
            largest_gap_ns=gap,
            non_monotonic=non_mono,
        )
        if acc is not None and acc.decode_errors:
            problems.append(
                f"{name}: {acc.decode_errors} message(s) failed to decode; first: {acc.first_error}"
            )
        if acc is not None and info.msgtype == POINTCLOUD2 and acc.n_clouds:
            rep.pointcloud = PointCloudStats(
                fields=acc.fields,
                mean_points=round(acc.n_points / acc.n_clouds, 1),
                per_point_time=acc.per_point_time,
                nan_points=acc.nan_points,
                frame_id=acc.cloud_frame,
            )
            if acc.nan_points:
                problems.append(f"{name}: {acc.nan_points} non-finite (NaN/inf) points dropped")
        if acc is not None and acc.image is not None:
            acc.image.camera_info_topic = camera_info_for(name, infos.keys())
            rep.image = acc.image
        reports.append(rep)

    cameras = []
    for rep in reports:
        if rep.image is None:
            continue
        info_topic = rep.image.camera_info_topic
        cam: dict[str, Any] = {"image_topic": rep.name, "camera_info_topic": info_topic}
        from_file = calibration.camera_for_frame(rep.image.frame_id) if calibration else None
        if from_file is not None:
            cam.update(
                calibration=calibration.source if calibration else None,
                frame_id=from_file.frame_id,
                width=from_file.width,
                height=from_file.height,
            )
        if info_topic is None and from_file is None:
            problems.append(f"{rep.name}: no CameraInfo topic for this camera; pass --calibration")
        elif info_topic is not None:
            frame, w, h = infos[info_topic]
            cam.update(frame_id=frame, width=w, height=h)
            if (w, h) != (rep.image.width, rep.image.height) and w and h:
                problems.append(
                    f"{rep.name}: image is {rep.image.width}x{rep.image.height} but {info_topic} says {w}x{h}"
                )
        cameras.append(cam)
    for name, info in bag.topics.items():
        if not info.decodable:
            problems.append(f"{name}: undecodable ({info.problem})")
    if lidar_topic(bag.topics) is None:
        problems.append(
            "no decodable PointCloud2 topic: fusion detect / run need a LiDAR point cloud, so this log "
            "cannot be pre-labelled (a driver's packets must be converted to PointCloud2 first)"
        )
    problems = list(dict.fromkeys(problems))  # bag warnings and topic problems may repeat

    edges = [TfEdge(p, c, s, n) for (p, c, s), n in sorted(tf_edges.items())]
    frames = sorted({e.parent for e in edges} | {e.child for e in edges})
    firsts = [t.first_log_ns for t in bag.topics.values() if t.first_log_ns is not None]
    lasts = [t.last_log_ns for t in bag.topics.values() if t.last_log_ns is not None]
    return LogReport(
        path=str(bag.path),
        format=str(bag.format),
        size_bytes=bag.size_bytes,
        duration_s=round((max(lasts) - min(firsts)) * 1e-9, 3) if firsts and lasts else 0.0,
        message_count=sum(t.count for t in bag.topics.values()),
        topics=reports,
        cameras=cameras,
        tf=edges,
        tf_frames=frames,
        problems=problems,
    )


def format_report(rep: LogReport) -> str:
    """The human table of `fusion inspect`."""
    lines = [
        f"{rep.path}  ({rep.format}, {rep.size_bytes / 1e6:.1f} MB, {rep.duration_s:.1f} s, "
        f"{rep.message_count} messages)",
        "",
    ]
    head = f"{'topic':<36} {'type':<30} {'count':>7} {'rate Hz':>8} {'max gap ms':>10}  details"
    lines += [head, "-" * len(head)]
    for t in rep.topics:
        detail = ""
        if t.pointcloud:
            pc = t.pointcloud
            detail = (
                f"{pc.mean_points:.0f} pts/sweep, fields {','.join(pc.fields)}, "
                f"per-point time {'yes' if pc.per_point_time else 'no'}"
            )
        elif t.image:
            im = t.image
            detail = f"{im.width}x{im.height} {im.encoding}, info {im.camera_info_topic or 'MISSING'}"
        elif not t.decodable:
            detail = "UNDECODABLE"
        rate = f"{t.rate_hz:.2f}" if t.rate_hz is not None else "-"
        gap = f"{t.largest_gap_ns * 1e-6:.1f}" if t.largest_gap_ns is not None else "-"
        lines.append(f"{t.name:<36} {t.type:<30} {t.count:>7} {rate:>8} {gap:>10}  {detail}")
    lines.append("")
    if rep.tf:
        lines.append("TF tree (parent -> child):")
        for e in rep.tf:
            lines.append(f"  {e.parent} -> {e.child}  ({'static' if e.static else 'dynamic'}, {e.count})")
    else:
        lines.append("TF tree: none")
    if rep.cameras:
        lines.append("Cameras:")
        for c in rep.cameras:
            size = f"{c.get('width')}x{c.get('height')}"
            state = (
                f"CameraInfo {c['camera_info_topic']} ({size}, {c.get('frame_id')})"
                if c["camera_info_topic"]
                else "no CameraInfo"
            )
            lines.append(f"  {c['image_topic']}: {state}")
    if rep.sync:
        lines.append("Sync (each camera's image nearest the instant the sweep crossed its axis):")
        for c in rep.sync:
            rate = f"{c['pairing_rate']:.1%}" if c["pairing_rate"] is not None else "-"
            off = (
                f"offset median {c['offset_median_ms']:.2f} ms, p95 {c['offset_p95_ms']:.2f} ms, "
                f"max {c['offset_max_ms']:.2f} ms"
                if c["offset_median_ms"] is not None
                else "no pair"
            )
            lines.append(
                f"  {c['camera']}: paired {c['paired']} ({rate}), unpaired sweeps {c['unpaired_sweeps']}, "
                f"{off}; calibration from {c['calibration']}"
            )
    lines.append("")
    if rep.problems:
        lines.append(f"Problems ({len(rep.problems)}):")
        lines += [f"  - {p}" for p in rep.problems]
    else:
        lines.append("Problems: none found")
    return "\n".join(lines)
