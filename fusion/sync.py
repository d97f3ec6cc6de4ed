"""Put every camera on every LiDAR sweep's timeline: one `FusedFrame` per sweep.

For each sweep, each camera is paired with the image nearest to the instant the sweep crossed
that camera's optical axis (the scheme nuScenes uses to trigger its cameras). That instant comes
from the camera's azimuth in the LiDAR frame (calibration) and the sweep's azimuth-versus-time
relation, fitted to the per-point times; without per-point times it falls back to the sweep
period, spin direction and stamp azimuth of `SyncConfig`. An image further than the tolerance
(default: half the camera's period) from the crossing is not paired, and the frame says so.

Two passes over the log: the first reads the small topics (TF, odometry, CameraInfo) into a
`TransformBuffer` and the camera models; the second streams sweeps and images in record-time
order through bounded buffers. Images are deserialised to read their stamps but decoded only
when a consumer asks for the pixels of a paired one.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from calib import Transform, TransformBuffer, deskew
from calib.camera import Camera
from calib.errors import CalibrationError
from fusion.bags import Bag
from fusion.decode import (
    DecodedImage,
    PointCloud,
    decode_camera_info,
    decode_image,
    decode_odometry,
    decode_pointcloud2,
    decode_tf,
    stamp_ns,
)
from fusion.errors import DecodeError, SyncError
from fusion.topics import (
    CAMERA_INFO,
    ODOMETRY,
    POINTCLOUD2,
    TF,
    camera_info_for,
    image_topics_by_camera,
    lidar_topic,
    topics_of,
)

if TYPE_CHECKING:
    from calib.calibration import Calibration

log = logging.getLogger(__name__)

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class SyncConfig:
    """How sweeps and images are put together. Every field has a default that suits most logs."""

    # PointCloud2 topic of the LiDAR; None: the one with the most messages.
    lidar_topic: str | None = None
    # Image topics to pair; None: every image topic whose camera has a CameraInfo or a calibration.
    camera_topics: tuple[str, ...] | None = None
    # Fixed frame for poses (map or odom); None: the root of the LiDAR's TF tree.
    fixed_frame: str | None = None
    # Largest |image stamp - crossing instant| paired; None: half of each camera's period.
    tolerance_ns: int | None = None
    # Motion-compensate sweeps that carry per-point times, when poses exist.
    deskew: bool = True
    # Fallbacks for sweeps without per-point time: rotation period, spin direction seen from
    # above (+z), and the azimuth (rad, in the LiDAR frame) the beam points at at the header stamp.
    sweep_period_ns: int = 100_000_000
    spin: Literal["ccw", "cw"] = "cw"
    stamp_azimuth_rad: float = math.pi
    # Sweeps without per-point time: give each point the instant the beam pointed at its azimuth
    # by that fallback (for spinning LiDARs whose driver leaves the time out, e.g. KITTI's .bin
    # sweeps or velodyne_pointcloud's XYZIR clouds), so they are deskewed and their objects'
    # capture times known. Off: such sweeps are kept as recorded.
    time_from_azimuth: bool = False
    # How far past a sweep (record time) the stream may run before the sweep is emitted with
    # whatever images arrived; bounds the buffers.
    max_latency_ns: int = 1_000_000_000


@dataclass(frozen=True)
class SweepPhase:
    """azimuth(t) = azimuth0_rad + omega_rad_per_ns * (t - stamp_ns), for t in the sweep."""

    azimuth0_rad: float
    omega_rad_per_ns: float
    first_offset_ns: int  # the earliest point's offset from the stamp
    fitted: bool  # from per-point times (True) or from the config's fallback (False)

    def crossing_offset_ns(self, azimuth_rad: float) -> int:
        """Offset from the stamp at which the beam points at `azimuth_rad` (first time in the sweep)."""
        return round(float(self.crossing_offsets_ns(azimuth_rad)))

    def crossing_offsets_ns(self, azimuth_rad: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """`crossing_offset_ns` of each azimuth (any shape), as float64 (not rounded)."""
        period = TWO_PI / abs(self.omega_rad_per_ns)
        start = self.azimuth0_rad + self.omega_rad_per_ns * self.first_offset_ns
        sign = math.copysign(1.0, self.omega_rad_per_ns)
        turn = np.mod((np.asarray(azimuth_rad, dtype=np.float64) - start) * sign, TWO_PI)
        return np.asarray(self.first_offset_ns + turn / TWO_PI * period, dtype=np.float64)


def sweep_phase(cloud: PointCloud, config: SyncConfig, *, samples: int = 4096) -> SweepPhase:
    """The sweep's azimuth-versus-time line, fitted to (a subsample of) its per-point times."""
    offsets = cloud.time_offset_ns
    if offsets is not None and len(cloud) >= 64:
        step = max(1, len(cloud) // samples)
        t = np.asarray(offsets[::step], dtype=np.int64)
        xy = np.asarray(cloud.xyz[::step, :2], dtype=np.float64)
        order = np.argsort(t, kind="stable")
        t, xy = t[order], xy[order]
        span = int(t[-1] - t[0])
        if span > 0:
            az = np.unwrap(np.arctan2(xy[:, 1], xy[:, 0]))
            omega, az0 = np.polyfit(t.astype(np.float64), az, 1)
            if abs(omega) * span > 0.5:  # it really spins (more than ~30 degrees over the sweep)
                return SweepPhase(float(math.remainder(az0, TWO_PI)), float(omega), int(t[0]), True)
    sign = 1.0 if config.spin == "ccw" else -1.0
    return SweepPhase(config.stamp_azimuth_rad, sign * TWO_PI / config.sweep_period_ns, 0, False)


def with_azimuth_time(cloud: PointCloud, phase: SweepPhase) -> PointCloud:
    """`cloud` with each point's time offset (int32 ns from the stamp) the instant `phase` has the
    beam at the point's azimuth in the LiDAR frame: exact for a spinning LiDAR whose points were
    not moved after they were measured (a point's azimuth is its beam's)."""
    xyz = cloud.xyz
    azimuth = np.arctan2(xyz[:, 1].astype(np.float64), xyz[:, 0].astype(np.float64))
    offsets = np.rint(phase.crossing_offsets_ns(azimuth)).astype(np.int32)
    return replace(cloud, time_offset_ns=offsets)


@dataclass(frozen=True, eq=False)
class PairedImage:
    """The image of one camera chosen for a sweep; pixels are decoded on first access."""

    camera: str
    topic: str
    stamp_ns: int
    offset_ns: int  # image stamp - the instant the sweep crossed this camera's optical axis
    message: Any

    @cached_property
    def decoded(self) -> DecodedImage:
        return decode_image(self.message)


@dataclass(frozen=True, eq=False)
class FusedFrame:
    """One sweep with everything synchronised to it."""

    index: int  # 0.. in sweep order
    stamp_ns: int  # the PointCloud2 header stamp
    log_time_ns: int  # bag record time of the sweep
    cloud: PointCloud  # deskewed to stamp_ns when `deskewed`
    deskewed: bool
    lidar_frame: str
    world_from_lidar: Transform | None  # at stamp_ns, None when the log has no poses
    crossings_ns: Mapping[str, int]  # per camera: when the sweep crossed its optical axis
    images: Mapping[str, PairedImage]  # per camera with an image within tolerance
    unpaired: tuple[str, ...]  # cameras with no image within tolerance
    # the sweep's azimuth-versus-time line (when the beam pointed where), from the cloud as recorded
    phase: SweepPhase | None = None


@dataclass
class CameraSetup:
    name: str
    topic: str
    camera: Camera
    lidar_from_camera: Transform
    azimuth_rad: float  # of the optical axis, in the LiDAR frame
    tolerance_ns: int
    calibration_source: str  # "bag" or the calibration file


@dataclass
class SyncContext:
    """What the first pass found: topics, poses, cameras, and what was left out and why."""

    lidar_topic: str
    lidar_frame: str
    buffer: TransformBuffer
    fixed_frame: str | None
    cameras: dict[str, CameraSetup]
    warnings: list[str] = field(default_factory=list)
    # stamps of the sweeps `synchronize` found without a finite point (`no_finite_warning` says it once)
    no_finite_ns: list[int] = field(default_factory=list)


@dataclass
class CameraSyncStats:
    """Pairing statistics of one camera over a run (fusion inspect's sync report)."""

    camera: str
    topic: str
    calibration_source: str
    paired: int = 0
    unpaired: int = 0
    offsets_ns: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        off = np.abs(np.asarray(self.offsets_ns, dtype=np.float64))
        total = self.paired + self.unpaired
        return {
            "camera": self.camera,
            "topic": self.topic,
            "calibration": self.calibration_source,
            "paired": self.paired,
            "unpaired_sweeps": self.unpaired,
            "pairing_rate": round(self.paired / total, 4) if total else None,
            "offset_median_ms": round(float(np.median(off)) * 1e-6, 3) if off.size else None,
            "offset_p95_ms": round(float(np.percentile(off, 95)) * 1e-6, 3) if off.size else None,
            "offset_max_ms": round(float(off.max()) * 1e-6, 3) if off.size else None,
        }


def prepare(
    bag: Bag, config: SyncConfig = SyncConfig(), *, calibration: Calibration | None = None
) -> SyncContext:
    """First pass: poses, camera models and extrinsics. `calibration` (from --calibration FILE)
    overrides the bag per sensor: a camera by its frame_id, a transform by its child frame."""
    calibration_transforms: Sequence[Transform] = calibration.transforms if calibration else ()
    calibration_cameras: Mapping[str, Camera] = calibration.cameras if calibration else {}
    calibration_source = calibration.source if calibration else ""
    topics = bag.topics
    lidar = config.lidar_topic or lidar_topic(topics)
    if lidar is None:
        raise SyncError(f"{bag.path}: no PointCloud2 topic; fusion needs a LiDAR (see `fusion inspect`)")
    if lidar not in topics or topics[lidar].msgtype != POINTCLOUD2:
        clouds = ", ".join(topics_of(topics, [POINTCLOUD2])) or "none"
        what = f"no topic {lidar}"
        if lidar in topics:
            what = f"{lidar} is a {topics[lidar].msgtype}, not a PointCloud2"
        raise SyncError(f"{bag.path}: {what}; set --lidar-topic ([topics] lidar) to one of: {clouds}")
    overrides = {t.child: t for t in calibration_transforms}
    buffer = TransformBuffer()
    info_msgs: dict[str, Any] = {}
    small = topics_of(topics, [TF, ODOMETRY, CAMERA_INFO])
    for raw in bag.messages(small):
        try:
            msg = bag.deserialize(raw)
            if raw.msgtype == TF:
                static = raw.topic.rstrip("/").endswith("tf_static")
                for rec in decode_tf(msg, static=static):
                    if rec.child not in overrides:
                        buffer.add(rec)
            elif raw.msgtype == ODOMETRY:
                buffer.add_odometry(decode_odometry(msg))
            elif raw.topic not in info_msgs:
                info_msgs[raw.topic] = msg
        except (DecodeError, CalibrationError) as err:
            log.warning("%s: skipping a message on %s: %s", bag.path, raw.topic, err)
    for tr in calibration_transforms:  # a calibration file's extrinsics hold for all time
        _add_static(buffer, tr)

    lidar_frame = _first_frame(bag, lidar)
    fixed = config.fixed_frame or _fixed_frame(buffer, lidar_frame)
    ctx = SyncContext(lidar, lidar_frame, buffer, fixed, {})

    first_sweep_ns = _first_stamp(bag, lidar, topics[lidar].first_log_ns or 0)
    by_camera = image_topics_by_camera(topics)
    wanted = config.camera_topics
    if wanted is not None:
        by_camera = {name: t for name, t in by_camera.items() if t in wanted}
        if missing := sorted(set(wanted) - set(by_camera.values())):
            images = ", ".join(sorted(image_topics_by_camera(topics).values())) or "none"
            raise SyncError(
                f"{bag.path}: no image topic {', '.join(missing)}; set --camera-topic ([topics] cameras) "
                f"to some of: {images}"
            )
    file_cams = {c.frame_id: c for c in calibration_cameras.values()}
    for name, topic in sorted(by_camera.items()):
        info_topic = camera_info_for(topic, info_msgs)
        frame = _first_frame(bag, topic)
        camera: Camera | None = file_cams.get(frame)
        source = calibration_source if camera is not None else "bag"
        if camera is None and info_topic is not None:
            camera = Camera.from_camera_info(decode_camera_info(info_msgs[info_topic]), name=name)
        if camera is None:
            ctx.warnings.append(
                f"{bag.path}: camera {name} ({topic}) left out: no CameraInfo; "
                "pass --calibration FILE with it"
            )
            continue
        try:
            lidar_from_camera = buffer.lookup(lidar_frame, camera.frame_id, first_sweep_ns)
        except CalibrationError as err:
            ctx.warnings.append(f"{bag.path}: camera {name} left out: {err}; pass --calibration FILE with it")
            continue
        axis = lidar_from_camera.rotation[:, 2]
        info = topics[topic]
        period = (
            ((info.last_log_ns or 0) - (info.first_log_ns or 0)) // max(info.count - 1, 1)
            if info.count > 1
            else config.sweep_period_ns
        )
        ctx.cameras[name] = CameraSetup(
            name=name,
            topic=topic,
            camera=camera,
            lidar_from_camera=lidar_from_camera,
            azimuth_rad=math.atan2(float(axis[1]), float(axis[0])),
            tolerance_ns=config.tolerance_ns if config.tolerance_ns is not None else max(period // 2, 1),
            calibration_source=source,
        )
    if calibration_cameras:
        ctx.warnings += _unmatched_calibration_cameras(bag, calibration_cameras, calibration_source)
    for w in ctx.warnings:  # the summary and inspect's problems list them; every chunk task finds them again
        log.info(w)
    return ctx


def _unmatched_calibration_cameras(bag: Bag, cameras: Mapping[str, Camera], source: str) -> list[str]:
    """When no --calibration camera has the frame_id of an image topic of the log, the file's cameras
    are never used: say so, rather than run on as if it had been read (a typo'd or renamed frame, or
    another rig's file). A file describing more cameras than the log has (KITTI's four) is fine."""
    frames: set[str] = set()
    for topic in image_topics_by_camera(bag.topics).values():
        try:
            frames.add(_first_frame(bag, topic))
        except (SyncError, DecodeError):
            continue
    if not frames or any(cam.frame_id in frames for cam in cameras.values()):
        return []
    theirs = ", ".join(sorted(cam.frame_id for cam in cameras.values()))
    return [
        f"{source}: no camera's frame_id ({theirs}) is the frame of an image topic of {bag.path}, so none "
        f"is used; set frame_id to the camera's: {', '.join(sorted(frames))}"
    ]


def _add_static(buffer: TransformBuffer, tr: Transform) -> None:
    from fusion.decode.types import TransformRecord

    q = tr.quaternion_xyzw
    t = tr.translation
    buffer.add(
        TransformRecord(tr.parent, tr.child, 0, (float(t[0]), float(t[1]), float(t[2])), q, static=True)
    )


def _first_frame(bag: Bag, topic: str) -> str:
    for raw in bag.messages([topic]):
        msg = bag.deserialize(raw)
        return str(msg.header.frame_id).strip().lstrip("/")
    raise SyncError(f"{bag.path}: topic {topic} has no messages")


def _first_stamp(bag: Bag, topic: str, default: int) -> int:
    for raw in bag.messages([topic]):
        return stamp_ns(bag.deserialize(raw).header)
    return default


def _fixed_frame(buffer: TransformBuffer, lidar_frame: str) -> str | None:
    """The root of the LiDAR's TF tree, when the LiDAR moves in it (a dynamic edge on the way)."""
    if lidar_frame not in buffer.frames:
        return None
    root = buffer.root(lidar_frame)
    return root if root != lidar_frame and buffer.moves(root, lidar_frame) else None


def synchronize(
    bag: Bag,
    ctx: SyncContext,
    config: SyncConfig = SyncConfig(),
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    stats: dict[str, CameraSyncStats] | None = None,
) -> Iterator[FusedFrame]:
    """Second pass: one FusedFrame per sweep with record time in [start_ns, end_ns)."""
    cams = ctx.cameras
    by_topic = {c.topic: c for c in cams.values()}
    if stats is not None:
        for c in cams.values():
            stats.setdefault(c.name, CameraSyncStats(c.name, c.topic, c.calibration_source))
    images: dict[str, deque[tuple[int, Any]]] = {name: deque() for name in cams}
    newest: dict[str, int] = dict.fromkeys(cams, -(2**62))
    pending: deque[tuple[PointCloud, int, dict[str, int], SweepPhase]] = deque()
    index = 0
    margin = max((c.tolerance_ns for c in cams.values()), default=0) + config.max_latency_ns
    lo = None if start_ns is None else start_ns - margin
    hi = None if end_ns is None else end_ns + margin
    topics = [ctx.lidar_topic, *by_topic]

    def ready(crossings: dict[str, int], now_ns: int, stamp: int) -> bool:
        if now_ns > stamp + config.sweep_period_ns + config.max_latency_ns:
            return True
        return all(newest[n] >= t + cams[n].tolerance_ns for n, t in crossings.items())

    def emit(cloud: PointCloud, log_ns: int, crossings: dict[str, int], phase: SweepPhase) -> FusedFrame:
        nonlocal index
        frame = _fuse(ctx, config, index, cloud, log_ns, crossings, images, stats, phase)
        index += 1
        return frame

    for raw in bag.messages(topics, start_ns=lo, end_ns=hi):
        if raw.topic == ctx.lidar_topic:
            if (start_ns is not None and raw.log_time_ns < start_ns) or (
                end_ns is not None and raw.log_time_ns >= end_ns
            ):
                continue
            cloud = decode_pointcloud2(bag.deserialize(raw))
            if not len(cloud) and cloud.num_dropped:
                ctx.no_finite_ns.append(cloud.stamp_ns)
            phase = sweep_phase(cloud, config)
            if config.time_from_azimuth and cloud.time_offset_ns is None and len(cloud):
                cloud = with_azimuth_time(cloud, phase)
            crossings = {n: cloud.stamp_ns + phase.crossing_offset_ns(c.azimuth_rad) for n, c in cams.items()}
            pending.append((cloud, raw.log_time_ns, crossings, phase))
        else:
            cam = by_topic[raw.topic]
            msg = bag.deserialize(raw)
            t = stamp_ns(msg.header)
            images[cam.name].append((t, msg))
            newest[cam.name] = max(newest[cam.name], t)
        while pending and ready(pending[0][2], raw.log_time_ns, pending[0][0].stamp_ns):
            yield emit(*pending.popleft())
            _prune(images, pending, cams, config)
    while pending:
        yield emit(*pending.popleft())


def no_finite_warning(path: str, topic: str, stamps_ns: Sequence[int]) -> list[str]:
    """The warning about the sweeps of `topic` stamped `stamps_ns` that had no finite point (none:
    no warning). Such a sweep can hold no box; a run's summary would otherwise just show fewer boxes.
    A chunked run sums its chunks' sweeps into this one warning."""
    if not len(stamps_ns):
        return []
    return [
        f"{path}: {len(stamps_ns)} sweep(s) of {topic} had no finite point (every x, y, z NaN or inf; "
        f"the first stamped {min(stamps_ns)} ns) and have no boxes; check the LiDAR driver"
    ]


def _prune(
    images: dict[str, deque[tuple[int, Any]]],
    pending: deque[tuple[PointCloud, int, dict[str, int], SweepPhase]],
    cams: Mapping[str, CameraSetup],
    config: SyncConfig,
) -> None:
    """Drop images too old to pair with any sweep still to come."""
    for name, queue in images.items():
        if pending:
            horizon = pending[0][2][name] - cams[name].tolerance_ns
        else:
            horizon = (queue[-1][0] if queue else 0) - cams[name].tolerance_ns - config.sweep_period_ns
        while len(queue) > 1 and queue[0][0] < horizon:
            queue.popleft()


def _fuse(
    ctx: SyncContext,
    config: SyncConfig,
    index: int,
    cloud: PointCloud,
    log_ns: int,
    crossings: dict[str, int],
    images: Mapping[str, deque[tuple[int, Any]]],
    stats: dict[str, CameraSyncStats] | None,
    phase: SweepPhase | None = None,
) -> FusedFrame:
    paired: dict[str, PairedImage] = {}
    unpaired: list[str] = []
    for name, crossing in crossings.items():
        cam = ctx.cameras[name]
        best = min(images[name], key=lambda item: abs(item[0] - crossing), default=None)
        if best is not None and abs(best[0] - crossing) <= cam.tolerance_ns:
            paired[name] = PairedImage(name, cam.topic, best[0], best[0] - crossing, best[1])
            if stats is not None:
                stats[name].paired += 1
                stats[name].offsets_ns.append(best[0] - crossing)
        else:
            unpaired.append(name)
            if stats is not None:
                stats[name].unpaired += 1
    world_from_lidar = None
    deskewed = False
    if ctx.fixed_frame is not None:
        try:
            world_from_lidar = ctx.buffer.lookup(ctx.fixed_frame, ctx.lidar_frame, cloud.stamp_ns)
            if config.deskew and cloud.time_offset_ns is not None and len(cloud):
                xyz = deskew(
                    cloud.xyz,
                    cloud.time_offset_ns,
                    cloud.stamp_ns,
                    ctx.buffer,
                    ctx.lidar_frame,
                    ctx.fixed_frame,
                )
                cloud = PointCloud(
                    xyz=xyz,
                    intensity=cloud.intensity,
                    time_offset_ns=cloud.time_offset_ns,
                    ring=cloud.ring,
                    frame_id=cloud.frame_id,
                    stamp_ns=cloud.stamp_ns,
                    num_dropped=cloud.num_dropped,
                )
                deskewed = True
        except CalibrationError as err:
            log.warning("sweep %d at %d ns: no pose (%s); kept as recorded", index, cloud.stamp_ns, err)
            world_from_lidar = None
    return FusedFrame(
        index=index,
        stamp_ns=cloud.stamp_ns,
        log_time_ns=log_ns,
        cloud=cloud,
        deskewed=deskewed,
        lidar_frame=ctx.lidar_frame,
        world_from_lidar=world_from_lidar,
        crossings_ns=crossings,
        images=paired,
        unpaired=tuple(sorted(unpaired)),
        phase=phase,
    )
