"""`simulate_log`: write a deterministic synthetic drive log and its exact ground truth.

The log (what a real recording would hold):

======================================  ===========================  ===============================
topic                                   type                         rate, stamp
======================================  ===========================  ===============================
/tf_static                              tf2_msgs/TFMessage           once (latched): base_link ->
                                                                     lidar, camera_front, camera_left,
                                                                     camera_rear (optical frames)
/tf                                     tf2_msgs/TFMessage           50 Hz: odom -> base_link
/odom                                   nav_msgs/Odometry            50 Hz: pose in odom, twist in
                                                                     base_link
/lidar/points                           sensor_msgs/PointCloud2      10 Hz, stamp = sweep start; x y z
                                                                     intensity ring time (s since the
                                                                     stamp); not motion compensated
/camera_<name>/image/compressed         sensor_msgs/CompressedImage  10 Hz jpeg, stamp = when the
                                                                     sweep crossed the optical axis
/camera_<name>/camera_info              sensor_msgs/CameraInfo       with each image, same stamp
======================================  ===========================  ===============================

Record (log) times are the header stamps plus a seeded, realistic delay: a fraction of a
millisecond for poses, 8-20 ms for images, and for a sweep the end of the sweep plus 2-6 ms
(a sweep is published once complete). Sync must use header stamps.

Output naming. `out` is the log: ros1 -> a `.bag` file; mcap -> a lone `.mcap` file; sqlite3 -> a
ROS2 bag directory (metadata.yaml + `<name>.db3`), or a lone `.db3` file when `out` ends in `.db3`.
A missing suffix is added (`drive` -> `drive.mcap`). The ground truth goes beside it as
`<stem>.labels.parquet` (labels table of shared/CONTRACT.md, sequence id = the stem). Neither may
exist beforehand. Both are written under a temporary name in the same directory and renamed
into place when complete (ground truth first, the log last).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final, get_args

import numpy as np
import pyarrow as pa
from rosbags.rosbag1 import WriterError as WriterError1
from rosbags.rosbag2 import WriterError as WriterError2

from exporters.labels import CameraBoxes, labels_table, write_labels
from exporters.schema import sequence_id_for
from fusion.errors import FusionError
from fusion.simulate.camera_render import CameraRenderer, encode_jpeg
from fusion.simulate.groundtruth import FrameTruth, frame_truth
from fusion.simulate.lidar import simulate_sweep
from fusion.simulate.rig import LIDAR_MODELS, Rig, default_rig
from fusion.simulate.scene import Scene, build_scene
from fusion.simulate.writer import BagSink, Format

log = logging.getLogger(__name__)

FORMATS: Final[tuple[str, ...]] = get_args(Format)
FIRST_SWEEP_OFFSET_NS: Final = 50_000_000
"""The first sweep starts this long after the log (poses are recorded from the log's start)."""
MAX_SECONDS: Final = 600.0

TF_TOPIC: Final = "/tf"
TF_STATIC_TOPIC: Final = "/tf_static"
ODOM_TOPIC: Final = "/odom"
_TF_TYPE: Final = "tf2_msgs/msg/TFMessage"


@dataclass(frozen=True)
class SimulationResult:
    """What `simulate_log` wrote."""

    log_path: Path  # the bag: .bag, .mcap, a ROS2 directory or a .db3
    ground_truth_path: Path  # <stem>.labels.parquet beside it
    num_sweeps: int
    num_images: int  # over all cameras
    num_boxes: int  # ground-truth rows
    num_tracks: int  # distinct track ids among them


def output_paths(out: Path | str, fmt: Format) -> tuple[Path, Path]:
    """(log path, ground-truth path) for the user's `out` and format (see the module docstring).

    Raises FusionError when `out` names another format's file (e.g. `x.mcap` with ros1).
    """
    if fmt not in FORMATS:
        raise FusionError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if not out.name or out.name in {".", ".."}:
        raise FusionError(f"{out}: OUT must name a file or directory to create, e.g. drive.{fmt}")
    wanted = {"ros1": (".bag",), "mcap": (".mcap",), "sqlite3": ("", ".db3")}[fmt]
    if wanted[0] and out.is_dir():  # `sim/` became sim.mcap beside the folder
        raise FusionError(f"{out}: is a directory; give a file name in it, e.g. {out / f'drive{wanted[0]}'}")
    suffix = out.suffix.lower()
    known = {".bag": "ros1", ".mcap": "mcap", ".db3": "sqlite3"}
    if suffix in known and suffix not in wanted:
        raise FusionError(
            f"{out}: a {suffix} name does not fit --format {fmt}; "
            f"use --format {known[suffix]} or a name ending in {wanted[0] or '/ (a directory)'}"
        )
    if suffix not in known and wanted[0]:
        out = out.with_name(out.name + wanted[0])
    stem = out.name[: -len(out.suffix)] if out.suffix.lower() in known else out.name
    return out, out.with_name(f"{stem}.labels.parquet")


def simulate_log(
    out: Path | str,
    *,
    fmt: Format = "mcap",
    seconds: float = 3.0,
    seed: int = 0,
    lidar_columns: int = 512,
    image_width: int = 640,
    image_height: int = 400,
    jpeg_quality: int = 75,
    min_points: int = 1,
    lidar: str = "vlp32c",
) -> SimulationResult:
    """Write a synthetic drive log of `seconds` (one sweep per 100 ms) and its ground truth.

    Deterministic: the same arguments give the same messages and a byte-identical ground truth.
    `lidar` names the LiDAR model (`rig.LIDAR_MODELS`: "vlp32c", 32 beams, or "hdl64e", 64 beams),
    firing `lidar_columns` columns per revolution (hdl64e with 2048 columns: ~120k points a sweep);
    images `image_width` x `image_height` at `jpeg_quality`; ground-truth rows need `min_points`
    LiDAR points on the object.

    Raises FusionError when an output already exists, the name does not fit the format, an
    argument is out of range, or the log cannot be written.
    """
    log_path, gt_path = output_paths(out, fmt)
    if not (math.isfinite(seconds) and 0.0 < seconds <= MAX_SECONDS):
        raise FusionError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {seconds}")
    if seed < 0:
        raise FusionError(f"--seed must be a non-negative integer, got {seed}")
    if lidar_columns < 16 or image_width < 32 or image_height < 32 or not 1 <= jpeg_quality <= 100:
        raise FusionError(
            "lidar_columns must be >= 16, the image at least 32x32 and jpeg_quality in 1..100; "
            f"got {lidar_columns}, {image_width}x{image_height}, {jpeg_quality}"
        )
    if lidar not in LIDAR_MODELS:
        raise FusionError(f"unknown LiDAR model {lidar!r}; use one of {', '.join(LIDAR_MODELS)}")
    for path in (log_path, gt_path):
        if path.exists() or path.is_symlink():
            raise FusionError(f"{path} exists; remove it or choose another OUT")
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FusionError(f"cannot create {log_path.parent}: {err.strerror}") from err

    rig = default_rig(image_width, image_height, lidar_columns, jpeg_quality, lidar)
    num_sweeps = max(1, round(seconds * 1e9 / rig.lidar.period_ns))
    scene = build_scene(seed)
    partial = log_path.parent / f".{log_path.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        if fmt == "ros1" or (fmt == "sqlite3" and log_path.suffix != ".db3"):
            storage = written = partial / log_path.name  # the .bag file, or the ROS2 directory
        else:  # a lone storage file: take it out of the ROS2 directory the writer makes
            storage = partial / "bag"
            written = storage / f"bag{log_path.suffix}"
        truths, num_images = _write_log(storage, fmt, scene, rig, num_sweeps, seed, min_points)
        table = _labels(truths, sequence_id_for(log_path))
        write_labels(partial / gt_path.name, table, sequence_id_for(log_path))
        _move_into_place(partial / gt_path.name, gt_path)
        try:
            _move_into_place(written, log_path)
        except BaseException:
            gt_path.unlink()  # ours, written a moment ago: no ground truth without its log
            raise
    except (WriterError1, WriterError2) as err:
        raise FusionError(f"cannot write {log_path}: {err}") from err
    except OSError as err:
        raise FusionError(f"cannot write {log_path}: {err.strerror or err}") from err
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    num_tracks = len(np.unique(table["track_id"].to_numpy())) if table.num_rows else 0
    log.info(
        "simulated %d sweeps, %d images, %d boxes into %s", num_sweeps, num_images, table.num_rows, log_path
    )
    return SimulationResult(log_path, gt_path, num_sweeps, num_images, table.num_rows, num_tracks)


def _move_into_place(src: Path, dst: Path) -> None:
    """Rename a finished file or directory to its final name, which must still be free."""
    if dst.exists() or dst.is_symlink():
        raise FusionError(f"{dst} exists; remove it or choose another OUT")
    src.rename(dst)


def _write_log(
    storage: Path, fmt: Format, scene: Scene, rig: Rig, num_sweeps: int, seed: int, min_points: int
) -> tuple[list[FrameTruth], int]:
    """Simulate and write every message in record-time order; returns the ground truth per sweep."""
    rng = np.random.default_rng([seed, 2])  # transport delays, drawn in generation order
    period = rig.lidar.period_ns
    first_ns = scene.start_ns + FIRST_SWEEP_OFFSET_NS
    end_ns = first_ns + num_sweeps * period + FIRST_SWEEP_OFFSET_NS
    pose_ns = np.arange(scene.start_ns, end_ns + 1, rig.pose_period_ns, dtype=np.int64)
    world_from_base = scene.world_from_base(pose_ns)
    velocity, yaw_rate = scene.ego_velocity(pose_ns)
    renderers = [CameraRenderer(mount) for mount in rig.cameras]
    truths: list[FrameTruth] = []
    num_images = 0
    pending: list[tuple[int, int, str, bytes]] = []
    order = itertools.count()

    with BagSink(storage, fmt) as sink:
        msgs = sink.messages
        sink.add_topic(TF_STATIC_TOPIC, _TF_TYPE, latched=True)
        sink.add_topic(TF_TOPIC, _TF_TYPE)
        sink.add_topic(ODOM_TOPIC, "nav_msgs/msg/Odometry")
        sink.add_topic(rig.lidar.topic, "sensor_msgs/msg/PointCloud2")
        for mount in rig.cameras:
            sink.add_topic(mount.image_topic, "sensor_msgs/msg/CompressedImage")
            sink.add_topic(mount.info_topic, "sensor_msgs/msg/CameraInfo")

        def push(record_ns: int, topic: str, msg: object, msgtype: str) -> None:
            heapq.heappush(pending, (record_ns, next(order), topic, msgs.serialize(msg, msgtype)))

        def flush(before_ns: int | None) -> None:
            while pending and (before_ns is None or pending[0][0] < before_ns):
                record_ns, _, topic, data = heapq.heappop(pending)
                sink.write_raw(topic, record_ns, data)

        statics = [(scene.start_ns, rig.base_frame, rig.lidar.frame_id, rig.lidar.base_from_lidar())]
        statics += [
            (scene.start_ns, rig.base_frame, m.camera.frame_id, m.base_from_camera()) for m in rig.cameras
        ]
        push(scene.start_ns, TF_STATIC_TOPIC, msgs.tf_message(statics), _TF_TYPE)

        next_pose = 0

        def poses_before(limit_ns: int) -> None:
            nonlocal next_pose
            while next_pose < len(pose_ns) and pose_ns[next_pose] < limit_ns:
                i = next_pose
                stamp = int(pose_ns[i])
                pose = world_from_base[i]
                tf = msgs.tf_message([(stamp, rig.world_frame, rig.base_frame, pose)])
                push(stamp + int(rng.integers(200_000, 1_500_000)), TF_TOPIC, tf, _TF_TYPE)
                v_base = pose[:3, :3].T @ np.array([velocity[i, 0], velocity[i, 1], 0.0])
                odom = msgs.odometry(
                    stamp,
                    rig.world_frame,
                    rig.base_frame,
                    pose,
                    (float(v_base[0]), float(v_base[1]), float(v_base[2])),
                    (0.0, 0.0, float(yaw_rate[i])),
                )
                push(stamp + int(rng.integers(300_000, 2_000_000)), ODOM_TOPIC, odom, "nav_msgs/msg/Odometry")
                next_pose += 1

        for k in range(num_sweeps):
            stamp = first_ns + k * period
            poses_before(stamp + period)
            sweep = simulate_sweep(scene, rig.lidar, stamp, index=k, noise_seed=seed)
            cloud = msgs.point_cloud(sweep, rig.lidar.frame_id)
            push(
                stamp + period + int(rng.integers(2_000_000, 6_000_000)),
                rig.lidar.topic,
                cloud,
                "sensor_msgs/msg/PointCloud2",
            )
            for mount, renderer in zip(rig.cameras, renderers, strict=True):
                t_image = stamp + rig.trigger_offset_ns(mount)
                jpeg = encode_jpeg(renderer.render(scene, t_image), mount.jpeg_quality)
                record = t_image + int(rng.integers(8_000_000, 20_000_000))
                push(
                    record,
                    mount.image_topic,
                    msgs.compressed_image(t_image, mount.camera.frame_id, jpeg),
                    "sensor_msgs/msg/CompressedImage",
                )
                push(
                    record + 50_000,
                    mount.info_topic,
                    msgs.camera_info(t_image, mount.camera),
                    "sensor_msgs/msg/CameraInfo",
                )
                num_images += 1
            truths.append(frame_truth(scene, rig, sweep, min_points=min_points))
            flush(stamp + period)  # every later message has a stamp, hence a record time, after this
        poses_before(end_ns + 1)
        flush(None)
    return truths, num_images


def _labels(truths: list[FrameTruth], sequence_id: str) -> pa.Table:
    """The labels table of all sweeps' ground truth (origin `detected`, score 1)."""
    sizes = [len(t.actor) for t in truths]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(starts[-1])
    extents = np.concatenate([t.box_extent for t in truths]) if truths else np.zeros((0, 4))
    return labels_table(
        sequence_id=sequence_id,
        frame_index=np.repeat([t.frame_index for t in truths], sizes).astype(np.int32),
        timestamp_ns=np.repeat([t.stamp_ns for t in truths], sizes).astype(np.int64),
        track_id=np.concatenate([t.track_id for t in truths]) if truths else np.zeros(0, np.int64),
        category=[c for t in truths for c in t.category],
        score=np.ones(n, dtype=np.float32),
        boxes=np.concatenate([t.boxes for t in truths]) if truths else np.zeros((0, 7)),
        num_points=np.concatenate([t.num_points for t in truths]) if truths else np.zeros(0, np.int64),
        origin="detected",
        world_boxes=np.concatenate([t.world_boxes for t in truths]) if truths else np.zeros((0, 4)),
        velocity=np.concatenate([t.velocity for t in truths]) if truths else np.zeros((0, 2)),
        camera_boxes=CameraBoxes(
            row=np.concatenate([t.box_row + s for t, s in zip(truths, starts, strict=False)])
            if truths
            else np.zeros(0, np.int64),
            camera=[c for t in truths for c in t.box_camera],
            x_min=extents[:, 0],
            y_min=extents[:, 1],
            x_max=extents[:, 2],
            y_max=extents[:, 3],
        ),
    )
