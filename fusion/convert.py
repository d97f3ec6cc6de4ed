"""`fusion convert`: public driving datasets (KITTI raw, KITTI object, Argoverse 2) and folders of PCD
sweeps into a ROS bag.

fusion reads ROS bags; a team evaluating it has KITTI and Argoverse 2 folders. `convert` writes
one bag from one such folder, streaming (one sweep and one image per camera in memory at a time),
with the messages `fusion run` needs:

==========================================  ==========================  ==============================
topic                                       type                        from
==========================================  ==========================  ==============================
/tf_static                                  tf2_msgs/TFMessage          the calibration, as one tree
                                                                        rooted at the vehicle frame
                                                                        (KITTI: imu with oxts, else
                                                                        velodyne; AV2: egovehicle)
/tf                                         tf2_msgs/TFMessage          ego poses: map -> imu (KITTI
                                                                        oxts), map -> egovehicle (AV2
                                                                        city_SE3_egovehicle)
/velodyne/points (KITTI), /lidar/points     sensor_msgs/PointCloud2     each sweep: x y z intensity
(AV2)                                                                   float32 (the KITTI .bin bytes
                                                                        as they are); AV2 adds ring
                                                                        (laser_number) uint16
/<camera>/image/compressed                  sensor_msgs/CompressedImage the PNG / JPEG file's bytes
/<camera>/camera_info                       sensor_msgs/CameraInfo      with each image
==========================================  ==========================  ==============================

Stamps. KITTI raw: a sweep is stamped with `velodyne_points/timestamps_start.txt` (the beam points
backwards then; the cameras are triggered half a turn later, when it points forwards) and recorded
at `timestamps_end.txt`; images and oxts with their own `timestamps.txt`. A folder without
timestamps needs `hz`: sweep k at `1 s + k / hz`, its images and oxts half a sweep later (KITTI's
camera trigger). KITTI object frames are unrelated scenes, each one sweep, 1 s apart (or `1 / hz`),
images 50 ms after the sweep (the 10 Hz HDL-64E's forward instant). AV2: the file names' ns.
KITTI timestamps are read as UTC. No per-point time is written for KITTI: the order of the points
in KITTI's .bin files does not tell the spin direction for certain, so the sync falls back to
`SyncConfig.sweep_period_ns` / `spin` / `stamp_azimuth_rad` (stamp at the back), which is how KITTI
was recorded. No per-point time is written for AV2 either: its sweeps come already compensated for
the ego's motion to the sweep's stamp (NVIDIA NCore's AV2 converter documents it: "egomotion-compensated
to the sweep reference timestamp ... with real per-point timestamps (offset_ns)"; on the log in the
datasets folder, deskewing them again left static points 34.1 mm apart from the next sweep's, against
31.8 mm as shipped), and fusion deskews every cloud that carries per-point time. The cost: no capture
time for a moving object's points (`fusion.capture`), which the per-point time would have given.

PCD folders (`_pcd`): each `*.pcd` (name order) is one sweep on /lidar/points in `frame_id`: x y z
float32, intensity float32 and ring uint16 when present, and the per-point time fields fusion.decode
reads (t, time, time_offset, offset_ns, timestamp) with their own name and type. Stamped with the
earliest point of an absolute `timestamp` field, else 1 s + k / hz. Optional poses (named 3x4 lines,
or KITTI odometry's unnamed ones) go on /tf as map -> frame_id at the sweeps' stamps.

Output: written under a hidden temporary name beside `out` and renamed into place when complete;
an existing `out` is refused unless `overwrite` (then replaced only once the new bag is complete).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from calib.calibration import Calibration
from calib.camera import Camera
from calib.errors import CalibrationError
from calib.transform import Transform
from fusion.errors import FusionError
from fusion.simulate.drive import output_paths
from fusion.simulate.writer import BagSink, Format

log = logging.getLogger(__name__)

Source = Literal["kitti-raw", "kitti-object", "av2", "pcd"]
SOURCES: Final[tuple[str, ...]] = get_args(Source)

WORLD_FRAME: Final = "map"
"""The fixed frame of the poses: KITTI's first oxts pose (the devkit's convention), AV2's city frame."""
NO_CLOCK_START_NS: Final = 1_000_000_000
"""Where the stamps of a source without a clock start (1 s: ROS tools take time 0 for 'unset')."""
KITTI_SWEEP_PERIOD_NS: Final = 100_000_000
"""KITTI's HDL-64E turns at 10 Hz."""
POSE_MARGIN_NS: Final = 1_000_000_000
"""AV2 poses are kept within this of the first and last sweep (the log's whole trajectory is in
city_SE3_egovehicle.feather even when only a few sweeps are)."""

TF_TOPIC: Final = "/tf"
TF_STATIC_TOPIC: Final = "/tf_static"
_TF_TYPE: Final = "tf2_msgs/msg/TFMessage"
_CLOUD_TYPE: Final = "sensor_msgs/msg/PointCloud2"
_IMAGE_TYPE: Final = "sensor_msgs/msg/CompressedImage"
_INFO_TYPE: Final = "sensor_msgs/msg/CameraInfo"

# sensor_msgs/PointField datatypes
_UINT16: Final = 4
_FLOAT32: Final = 7

M4 = npt.NDArray[np.float64]
_Event = tuple[int, int, "Callable[[], None]"]  # (record time, order, the write), merged by time


class ConvertError(FusionError):
    """A source folder cannot be converted: missing or malformed files, or output in the way."""


@dataclass(frozen=True)
class ConvertResult:
    """What `convert` wrote."""

    log_path: Path  # the bag (a .bag or .mcap file, or a ROS2 sqlite3 directory)
    source: str  # kitti-raw | kitti-object | av2 | pcd
    num_sweeps: int
    images: Mapping[str, int]  # camera name -> images written
    num_poses: int  # ego poses written on /tf
    start_ns: int  # first and last sweep stamp
    end_ns: int
    lidar_topic: str
    notes: tuple[str, ...] = ()  # what was found, what was missing and left out

    def summary(self) -> str:
        """The lines `fusion convert` prints: what went in, where it is, what to run next."""
        images = ", ".join(f"{name} {count}" for name, count in self.images.items()) or "none"
        span_s = (self.end_ns - self.start_ns) * 1e-9
        lines = [f"note: {n}" for n in self.notes]
        lines.append(
            f"converted {self.source}: {self.num_sweeps} sweeps on {self.lidar_topic}, images: {images}, "
            f"{self.num_poses} poses, span {span_s:.2f} s -> {self.log_path}"
        )
        lines.append(f"next: fusion run {self.log_path} --out OUT")
        return "\n".join(lines)


# ---- what a source gives the writer --------------------------------------------------------------


@dataclass(frozen=True)
class _Cloud:
    """One sweep: PointCloud2 fields, its raw little-endian point records and their count."""

    stamp_ns: int
    record_ns: int
    fields: tuple[tuple[str, int, int], ...]  # (name, offset, datatype)
    point_step: int
    data: bytes
    num_points: int


@dataclass(frozen=True)
class _Image:
    stamp_ns: int
    fmt: str  # "png" | "jpeg"
    data: bytes


@dataclass
class _Plan:
    """Everything but the bulk data, which the iterators read lazily in time order."""

    lidar_topic: str
    lidar_frame: str
    statics: list[tuple[str, str, M4]]  # (parent, child, parent_from_child)
    poses: list[tuple[int, str, str, M4]]  # (stamp_ns, parent, child, parent_from_child)
    sweep_stamps: list[int]
    sweeps: Iterator[_Cloud]
    cameras: dict[str, tuple[Camera | None, list[int], Iterator[_Image]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---- entry point ---------------------------------------------------------------------------------


def convert(
    src: Path | str,
    source: str,
    out: Path | str,
    *,
    fmt: Format = "mcap",
    hz: float | None = None,
    calibration: Path | str | None = None,
    frames: Sequence[str] | None = None,
    poses: Path | str | None = None,
    frame_id: str | None = None,
    overwrite: bool = False,
) -> ConvertResult:
    """Convert the dataset folder `src` of kind `source` into the bag `out` (see the module docstring).

    hz: sweep rate for a folder without timestamps (KITTI raw: required there, refused where the
    folder has them; KITTI object: the frames' spacing, default 1 Hz). calibration: KITTI raw's
    date folder (or one of its calib files) when it is not beside or above `src`. frames: KITTI
    object frame names ("000008") to take, default all. poses, frame_id: pcd only: the poses file
    (3x4 world_from_lidar per line, named by PCD stem or in file order) and the cloud's frame (default
    lidar). Raises ConvertError (a FusionError) with
    one line naming the file and the fix.
    """
    if source not in SOURCES:
        raise ConvertError(f"unknown source {source!r}; use --from {' | '.join(SOURCES)}")
    if hz is not None and not (math.isfinite(hz) and hz > 0):
        raise ConvertError(f"--hz must be a positive number, got {hz}")
    root = Path(src)
    if not root.is_dir():
        raise ConvertError(f"{root}: no such folder; give the {source} folder to convert")
    log_path, _ = output_paths(out, fmt)
    if (log_path.exists() or log_path.is_symlink()) and not overwrite:
        raise ConvertError(f"{log_path} exists; pass --overwrite to replace it, or choose another --out")
    if frames is not None and source != "kitti-object":
        raise ConvertError("--frames chooses KITTI object frames; give it with --from kitti-object")
    if (poses is not None or frame_id is not None) and source != "pcd":
        raise ConvertError(f"--poses and --frame-id apply to --from pcd; {source} folders carry their own")
    if source == "kitti-raw":
        plan = _kitti_raw(root, hz, Path(calibration) if calibration else None)
    elif source == "kitti-object":
        if calibration is not None:
            raise ConvertError("--calibration: KITTI object frames carry their own calib/NNNNNN.txt; drop it")
        plan = _kitti_object(root, hz, frames)
    elif source == "pcd":
        if calibration is not None:
            raise ConvertError(
                "--calibration does not apply to --from pcd (a PCD folder is one LiDAR): drop it"
            )
        if frame_id is not None and not frame_id.strip("/ "):
            raise ConvertError(f"--frame-id {frame_id!r} is not a frame name; give one such as lidar")
        plan = _pcd(root, hz, Path(poses) if poses is not None else None, frame_id or PCD_DEFAULT_FRAME)
    else:
        if hz is not None or calibration is not None:
            raise ConvertError("--hz and --calibration do not apply to --from av2 (its files carry both)")
        plan = _av2(root)
    if not plan.sweep_stamps:
        raise ConvertError(f"{root}: no LiDAR sweep found; a {source} folder needs at least one")

    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConvertError(f"cannot create {log_path.parent}: {err.strerror}") from err
    partial = log_path.parent / f".{log_path.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        if fmt == "ros1" or (fmt == "sqlite3" and log_path.suffix != ".db3"):
            storage = written = partial / log_path.name
        else:  # a lone storage file, taken out of the ROS2 directory the writer makes
            storage = partial / "bag"
            written = storage / f"bag{log_path.suffix}"
        images = _write(storage, fmt, plan)
        if log_path.exists() or log_path.is_symlink():  # overwrite: only now that the new one is whole
            if log_path.is_dir() and not log_path.is_symlink():
                shutil.rmtree(log_path)
            else:
                log_path.unlink()
        written.rename(log_path)
    except OSError as err:
        raise ConvertError(f"cannot write {log_path}: {err.strerror or err}") from err
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return ConvertResult(
        log_path=log_path,
        source=source,
        num_sweeps=len(plan.sweep_stamps),
        images=images,
        num_poses=len(plan.poses),
        start_ns=plan.sweep_stamps[0],
        end_ns=plan.sweep_stamps[-1],
        lidar_topic=plan.lidar_topic,
        notes=tuple(plan.notes),
    )


def _write(storage: Path, fmt: Format, plan: _Plan) -> dict[str, int]:
    """Every message in record-time order (streams merged lazily); returns images per camera."""
    counts = dict.fromkeys(plan.cameras, 0)
    with BagSink(storage, fmt) as sink:
        msgs = sink.messages
        sink.add_topic(TF_STATIC_TOPIC, _TF_TYPE, latched=True)
        if plan.poses:
            sink.add_topic(TF_TOPIC, _TF_TYPE)
        sink.add_topic(plan.lidar_topic, _CLOUD_TYPE)
        for name, (camera, _, _) in plan.cameras.items():
            sink.add_topic(f"/{name}/image/compressed", _IMAGE_TYPE)
            if camera is not None:
                sink.add_topic(f"/{name}/camera_info", _INFO_TYPE)

        firsts = [plan.sweep_stamps[0]] + [p[0] for p in plan.poses[:1]]
        firsts += [stamps[0] for _, stamps, _ in plan.cameras.values() if stamps]
        start = min(firsts)
        if plan.statics:
            statics = [(start, parent, child, m) for parent, child, m in plan.statics]
            sink.write(TF_STATIC_TOPIC, start, msgs.tf_message(statics))

        order = itertools.count()

        def poses() -> Iterator[_Event]:
            for stamp, parent, child, m in plan.poses:
                msg = msgs.tf_message([(stamp, parent, child, m)])
                yield stamp, next(order), partial(sink.write, TF_TOPIC, stamp, msg)

        def write_cloud(cloud: _Cloud) -> None:
            sink.write(plan.lidar_topic, cloud.record_ns, _point_cloud(msgs, cloud, plan.lidar_frame))

        def clouds() -> Iterator[_Event]:
            for cloud in plan.sweeps:
                yield cloud.record_ns, next(order), partial(write_cloud, cloud)

        def write_image(name: str, camera: Camera | None, image: _Image) -> None:
            frame = camera.frame_id if camera is not None else name
            header = msgs.header(image.stamp_ns, frame)
            msg = msgs.store.types[_IMAGE_TYPE](
                header=header, format=image.fmt, data=np.frombuffer(image.data, dtype=np.uint8)
            )
            sink.write(f"/{name}/image/compressed", image.stamp_ns, msg)
            if camera is not None:
                sink.write(f"/{name}/camera_info", image.stamp_ns, msgs.camera_info(image.stamp_ns, camera))
            counts[name] += 1

        def images(name: str, camera: Camera | None, stream: Iterator[_Image]) -> Iterator[_Event]:
            for image in stream:
                yield image.stamp_ns, next(order), partial(write_image, name, camera, image)

        streams: list[Iterator[_Event]] = [poses(), clouds()]
        streams += [images(name, cam, stream) for name, (cam, _, stream) in plan.cameras.items()]
        for _, _, write in heapq.merge(*streams, key=lambda e: (e[0], e[1])):
            write()
    return counts


def _point_cloud(msgs: Any, cloud: _Cloud, frame_id: str) -> Any:
    t = msgs.store.types
    fields = [
        t["sensor_msgs/msg/PointField"](name=n, offset=o, datatype=d, count=1) for n, o, d in cloud.fields
    ]
    return t[_CLOUD_TYPE](
        header=msgs.header(cloud.stamp_ns, frame_id),
        height=1,
        width=cloud.num_points,
        fields=fields,
        is_bigendian=False,
        point_step=cloud.point_step,
        row_step=cloud.point_step * cloud.num_points,
        data=np.frombuffer(cloud.data, dtype=np.uint8),
        is_dense=True,
    )


# ---- shared helpers ------------------------------------------------------------------------------

_XYZI: Final = (("x", 0, _FLOAT32), ("y", 4, _FLOAT32), ("z", 8, _FLOAT32), ("intensity", 12, _FLOAT32))


def read_kitti_bin(path: Path) -> bytes:
    """A KITTI velodyne .bin's bytes (float32 x y z reflectance per point), checked for size."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConvertError(f"{path}: cannot read ({err.strerror}); restore the file") from err
    if len(data) % 16:
        raise ConvertError(
            f"{path}: {len(data)} bytes is not a multiple of 16 (float32 x y z reflectance per point); "
            "the file is truncated or not a KITTI velodyne .bin: copy it again"
        )
    return data


def _checked_image(path: Path, fmt: str) -> _Image:
    """An image file's bytes, after checking that they decode (one line naming the file otherwise)."""
    import cv2

    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConvertError(f"{path}: cannot read ({err.strerror}); restore the file") from err
    flags = cv2.IMREAD_REDUCED_GRAYSCALE_8 if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if data else None
    if decoded is None:
        raise ConvertError(f"{path}: does not decode as a {fmt.upper()} image; copy it again or remove it")
    return _Image(0, fmt, data)


def _stamps_file(path: Path) -> list[int]:
    """KITTI raw timestamps.txt: one `YYYY-MM-DD HH:MM:SS.fffffffff` a line -> ns (read as UTC)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConvertError(f"{path}: cannot read ({err}); restore it from the KITTI raw drive zip") from err
    out: list[int] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            whole, _, fraction = text.partition(".")
            moment = dt.datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
            if fraction and not fraction.isdigit():
                raise ValueError(fraction)
            nanos = int((fraction + "000000000")[:9]) if fraction else 0
        except ValueError as err:
            raise ConvertError(
                f"{path}:{number}: {text!r} is not a KITTI timestamp (YYYY-MM-DD HH:MM:SS.fffffffff); "
                "restore the file from the KITTI raw drive zip"
            ) from err
        out.append(int(moment.timestamp()) * 1_000_000_000 + nanos)
    return out


def _indexed_files(folder: Path, suffix: str) -> list[tuple[int, Path]]:
    """(frame number, path) of `folder/*suffix` whose stems are numbers, in order."""
    files = [(int(p.stem), p) for p in folder.glob(f"*{suffix}") if p.stem.isdigit()]
    return sorted(files)


def _stamp_at(stamps: Sequence[int], index: int, path: Path, stamps_path: Path) -> int:
    if index >= len(stamps):
        raise ConvertError(
            f"{path}: frame {index} has no line in {stamps_path} ({len(stamps)} lines); "
            "restore the timestamps file of this drive"
        )
    return stamps[index]


def _tree(calibration: Calibration, root: str) -> list[tuple[str, str, M4]]:
    """The calibration's transforms as one tree from `root` (parent, child, parent_from_child), breadth
    first: TF allows one parent per frame, and the poses attach the vehicle frame to the world."""
    neighbours: dict[str, set[str]] = {}
    for t in calibration.transforms:
        neighbours.setdefault(t.parent, set()).add(t.child)
        neighbours.setdefault(t.child, set()).add(t.parent)
    out: list[tuple[str, str, M4]] = []
    seen = {root}
    queue = [root]
    while queue:
        parent = queue.pop(0)
        for child in sorted(neighbours.get(parent, ())):
            if child not in seen:
                seen.add(child)
                queue.append(child)
                out.append((parent, child, calibration.lookup(parent, child).matrix))
    return out


# ---- KITTI ---------------------------------------------------------------------------------------


def oxts_poses(packets: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """KITTI oxts packets (N, >= 6: lat lon alt roll pitch yaw ...) -> `map_from_imu` poses (N, 4, 4).

    The KITTI devkit's convertOxtsToPose: a Mercator projection scaled by cos(latitude) of the first
    packet, R = Rz(yaw) Ry(pitch) Rx(roll), and every pose relative to the first (which becomes I).
    """
    oxts = np.asarray(packets, dtype=np.float64).reshape(-1, np.shape(packets)[-1])
    earth_radius = 6378137.0
    scale = math.cos(math.radians(float(oxts[0, 0])))
    lat, lon, alt = oxts[:, 0], oxts[:, 1], oxts[:, 2]
    tx = scale * np.radians(lon) * earth_radius
    ty = scale * earth_radius * np.log(np.tan(np.radians(90.0 + lat) / 2.0))
    roll, pitch, yaw = oxts[:, 3], oxts[:, 4], oxts[:, 5]
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    n = len(oxts)
    poses = np.zeros((n, 4, 4))
    poses[:, 0, 0] = cy * cp
    poses[:, 0, 1] = cy * sp * sr - sy * cr
    poses[:, 0, 2] = cy * sp * cr + sy * sr
    poses[:, 1, 0] = sy * cp
    poses[:, 1, 1] = sy * sp * sr + cy * cr
    poses[:, 1, 2] = sy * sp * cr - cy * sr
    poses[:, 2, 0] = -sp
    poses[:, 2, 1] = cp * sr
    poses[:, 2, 2] = cp * cr
    poses[:, 0, 3], poses[:, 1, 3], poses[:, 2, 3] = tx, ty, alt
    poses[:, 3, 3] = 1.0
    first_inverse = np.linalg.inv(poses[0])
    return np.asarray(first_inverse @ poses, dtype=np.float64)


def _read_oxts(path: Path) -> npt.NDArray[np.float64]:
    try:
        values = path.read_text(encoding="utf-8").split()
        packet = np.array([float(v) for v in values], dtype=np.float64)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConvertError(f"{path}: not a KITTI oxts packet ({err}); restore it from the drive zip") from err
    if packet.size != 30 or not np.isfinite(packet[:6]).all():
        raise ConvertError(
            f"{path}: {packet.size} values; a KITTI oxts packet has 30 (lat lon alt roll pitch yaw ...; "
            "see oxts/dataformat.txt): restore it from the drive zip"
        )
    return packet


def _find_kitti_raw_calibration(root: Path) -> Path | None:
    for folder in (root, *list(root.resolve().parents)[:2]):
        if (folder / "calib_cam_to_cam.txt").is_file():
            return folder
    return None


def _kitti_raw(root: Path, hz: float | None, calibration_path: Path | None) -> _Plan:
    velo = root / "velodyne_points"
    bins = _indexed_files(velo / "data", ".bin")
    if not bins:
        raise ConvertError(
            f"{root}: no velodyne_points/data/NNNNNNNNNN.bin; give a KITTI raw drive folder "
            "(2011_09_26_drive_0001_sync) or use --from kitti-object for a training/ folder"
        )
    notes: list[str] = []
    start_path = velo / "timestamps_start.txt"
    has_clock = start_path.is_file()
    if has_clock and hz is not None:
        raise ConvertError(
            f"{start_path} stamps the sweeps; --hz would replace real stamps with made-up ones: drop --hz"
        )
    if not has_clock and hz is None:
        raise ConvertError(
            f"{root}: no velodyne_points/timestamps_start.txt, so the sweeps have no stamps; pass --hz 10 "
            "(KITTI records at 10 Hz) to stamp them 1/HZ apart from 1 s, or restore the timestamps files"
        )
    period = KITTI_SWEEP_PERIOD_NS if hz is None else round(1e9 / hz)
    if has_clock:
        starts = _stamps_file(start_path)
        end_path = velo / "timestamps_end.txt"
        ends = _stamps_file(end_path) if end_path.is_file() else None
        stamps = [_stamp_at(starts, i, p, start_path) for i, p in bins]
        records = [
            _stamp_at(ends, i, p, end_path) if ends else s + period
            for (i, p), s in zip(bins, stamps, strict=True)
        ]
        notes.append("sweeps stamped with timestamps_start.txt (the beam at the back), images with theirs")
    else:
        stamps = [NO_CLOCK_START_NS + i * period for i, _ in bins]
        records = [s + period for s in stamps]
        notes.append(
            f"no timestamps: sweeps stamped {period * 1e-6:g} ms apart from 1 s (--hz {hz:g}), images "
            "and oxts half a sweep later (KITTI triggers its cameras when the beam points forwards)"
        )
    if calibration_path is None:
        calibration_path = _find_kitti_raw_calibration(root)
    calibration: Calibration | None = None
    if calibration_path is not None:
        from calib.loaders import load_calibration

        calibration = load_calibration(calibration_path)
        notes.append(f"calibration: {calibration.source}")

    def sweeps() -> Iterator[_Cloud]:
        for (_, path), stamp, record in zip(bins, stamps, records, strict=True):
            data = read_kitti_bin(path)
            yield _Cloud(stamp, record, _XYZI, 16, data, len(data) // 16)

    poses: list[tuple[int, str, str, M4]] = []
    oxts_files = _indexed_files(root / "oxts" / "data", ".txt")
    root_frame = "velodyne"
    if oxts_files:
        if calibration is None or "imu" not in calibration.frames:
            notes.append("oxts left out: no calib_imu_to_velo.txt to put the imu on the vehicle")
        else:
            oxts_stamps_path = root / "oxts" / "timestamps.txt"
            if has_clock:
                oxts_stamps = _stamps_file(oxts_stamps_path)
                pose_stamps = [_stamp_at(oxts_stamps, i, p, oxts_stamps_path) for i, p in oxts_files]
            else:
                pose_stamps = [NO_CLOCK_START_NS + i * period + period // 2 for i, _ in oxts_files]
            matrices = oxts_poses(np.stack([_read_oxts(p) for _, p in oxts_files]))
            poses = [(s, WORLD_FRAME, "imu", m) for s, m in zip(pose_stamps, matrices, strict=True)]
            root_frame = "imu"
            notes.append(f"{len(poses)} oxts poses as map -> imu (map = the first packet's pose)")
    else:
        notes.append("no oxts/data: no ego poses (sweeps are not deskewed, tracks have no world frame)")

    statics = _tree(calibration, root_frame) if calibration is not None else []
    cameras: dict[str, tuple[Camera | None, list[int], Iterator[_Image]]] = {}
    for index in range(4):
        name = f"image_0{index}"
        pngs = _indexed_files(root / name / "data", ".png")
        if not pngs:
            continue
        camera = calibration.cameras.get(name) if calibration is not None else None
        if camera is None:
            raise ConvertError(
                f"{root / name}: images but no calibration for camera {name}; pass --calibration with the "
                "drive's date folder (calib_cam_to_cam.txt, calib_velo_to_cam.txt)"
            )
        if has_clock:
            image_stamps_path = root / name / "timestamps.txt"
            image_stamps = _stamps_file(image_stamps_path)
            cam_stamps = [_stamp_at(image_stamps, i, p, image_stamps_path) for i, p in pngs]
        else:
            cam_stamps = [NO_CLOCK_START_NS + i * period + period // 2 for i, _ in pngs]

        def stream(files: list[tuple[int, Path]] = pngs, at: list[int] = cam_stamps) -> Iterator[_Image]:
            for (_, path), stamp in zip(files, at, strict=True):
                image = _checked_image(path, "png")
                yield _Image(stamp, image.fmt, image.data)

        cameras[name] = (camera, cam_stamps, stream())
    if calibration is None and not cameras:
        notes.append("no calibration found beside or above the folder: LiDAR only")
    return _Plan("/velodyne/points", "velodyne", statics, poses, stamps, sweeps(), cameras, notes)


def _kitti_object(root: Path, hz: float | None, frames: Sequence[str] | None) -> _Plan:
    from calib.loaders import load_calibration

    velo = root / "velodyne"
    if frames is None:
        names = sorted(p.stem for p in velo.glob("*.bin"))
        if not names:
            raise ConvertError(
                f"{root}: no velodyne/NNNNNN.bin; give a KITTI object training/ (or testing/) folder"
            )
    else:
        names = list(dict.fromkeys(frames))
        for name in names:
            if not (velo / f"{name}.bin").is_file():
                raise ConvertError(f"{velo / f'{name}.bin'}: no such frame; --frames names frames of {velo}")
    spacing = NO_CLOCK_START_NS if hz is None else round(1e9 / hz)
    stamps = [NO_CLOCK_START_NS + k * spacing for k in range(len(names))]
    first_calib = root / "calib" / f"{names[0]}.txt"
    if not first_calib.is_file():
        raise ConvertError(f"{first_calib}: missing; every KITTI object frame needs its calib/NNNNNN.txt")
    calibration = load_calibration(first_calib)
    for name in names[1:]:
        other_path = root / "calib" / f"{name}.txt"
        if not other_path.is_file():
            raise ConvertError(f"{other_path}: missing; every KITTI object frame needs its calib/NNNNNN.txt")
        other = load_calibration(other_path)
        if not _same_calibration(calibration, other):
            raise ConvertError(
                f"{other_path}: differs from {first_calib}; one log has one rig: convert frames of "
                "different calibrations into separate logs (--frames)"
            )
    notes = [
        f"{len(names)} KITTI object frame(s) ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}) as "
        f"sweeps {spacing * 1e-9:g} s apart from 1 s: they are unrelated scenes, so tracks across them "
        "mean nothing"
    ]

    def sweeps() -> Iterator[_Cloud]:
        for name, stamp in zip(names, stamps, strict=True):
            data = read_kitti_bin(velo / f"{name}.bin")
            yield _Cloud(stamp, stamp + KITTI_SWEEP_PERIOD_NS, _XYZI, 16, data, len(data) // 16)

    cameras: dict[str, tuple[Camera | None, list[int], Iterator[_Image]]] = {}
    for index in range(4):
        folder = root / f"image_{index}"
        name = f"image_0{index}"
        if not folder.is_dir() or name not in calibration.cameras:
            continue
        present = [(n, s) for n, s in zip(names, stamps, strict=True) if (folder / f"{n}.png").is_file()]
        if len(present) < len(names):
            notes.append(f"{folder}: {len(names) - len(present)} of the frames have no image")
        at = [s + KITTI_SWEEP_PERIOD_NS // 2 for _, s in present]

        def stream(items: list[tuple[str, int]] = present, where: Path = folder) -> Iterator[_Image]:
            for frame, stamp in items:
                image = _checked_image(where / f"{frame}.png", "png")
                yield _Image(stamp + KITTI_SWEEP_PERIOD_NS // 2, image.fmt, image.data)

        cameras[name] = (calibration.cameras[name], at, stream())
    return _Plan(
        "/velodyne/points", "velodyne", _tree(calibration, "velodyne"), [], stamps, sweeps(), cameras, notes
    )


def _same_calibration(a: Calibration, b: Calibration) -> bool:
    if set(a.cameras) != set(b.cameras) or {t.child for t in a.transforms} != {t.child for t in b.transforms}:
        return False
    for name, cam in a.cameras.items():
        other = b.cameras[name]
        if not np.allclose(cam.K, other.K) or (cam.width, cam.height) != (other.width, other.height):
            return False
    for t in a.transforms:
        u = b.transform_for(t.child)
        if u is None or u.parent != t.parent or not t.isclose(u, atol=1e-9):
            return False
    return True


# ---- Argoverse 2 ---------------------------------------------------------------------------------

_AV2_LIDAR_COLUMNS: Final = ("x", "y", "z", "intensity")
_AV2_POSE_COLUMNS: Final = ("timestamp_ns", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
_AV2_INTRINSIC_COLUMNS: Final = (
    "sensor_name",
    "fx_px",
    "fy_px",
    "cx_px",
    "cy_px",
    "k1",
    "k2",
    "k3",
    "height_px",
    "width_px",
)
_AV2_FRAME: Final = "egovehicle"


def _feather(path: Path, columns: Iterable[str], what: str) -> Any:
    """A Feather table with `columns` (a pyarrow Table), or a one-line ConvertError."""
    import pyarrow as pa
    from pyarrow import feather

    try:
        table = feather.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise ConvertError(f"{path}: not a Feather file ({err}); copy the {what} again") from err
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ConvertError(
            f"{path}: missing column(s) {', '.join(missing)}; this is not an Argoverse 2 {what} "
            f"(columns: {', '.join(table.column_names)})"
        )
    return table


def _se3(table: Any, path: Path) -> npt.NDArray[np.float64]:
    """(N, 4, 4) matrices of AV2 rows qw qx qy qz tx_m ty_m tz_m."""
    from calib.transform import quaternion_to_rotation

    cols = {c: np.asarray(table.column(c).to_numpy(), dtype=np.float64) for c in _AV2_POSE_COLUMNS[1:]}
    if not all(np.isfinite(v).all() for v in cols.values()):
        raise ConvertError(f"{path}: a pose holds NaN or inf; copy the file again")
    q = np.stack([cols["qx"], cols["qy"], cols["qz"], cols["qw"]], axis=1)
    out = np.zeros((len(q), 4, 4))
    try:
        out[:, :3, :3] = quaternion_to_rotation(q)
    except CalibrationError as err:
        raise ConvertError(f"{path}: {err}; copy the file again") from err
    out[:, 0, 3], out[:, 1, 3], out[:, 2, 3] = cols["tx_m"], cols["ty_m"], cols["tz_m"]
    out[:, 3, 3] = 1.0
    return out


def _av2_cloud(path: Path, stamp: int) -> _Cloud:
    table = _feather(path, _AV2_LIDAR_COLUMNS, "LiDAR sweep (sensors/lidar/<ns>.feather)")
    n = table.num_rows
    names = set(table.column_names)
    fields = list(_XYZI)
    formats: list[tuple[str, str]] = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")]
    if "laser_number" in names:
        fields.append(("ring", 16, _UINT16))
        formats.append(("ring", "<u2"))
        formats.append(("_pad", "<u2"))
    points = np.zeros(n, dtype=np.dtype(formats))
    for name in ("x", "y", "z", "intensity"):
        points[name] = table.column(name).to_numpy()
    if "laser_number" in names:
        points["ring"] = table.column("laser_number").to_numpy()
    # offset_ns (ns from the stamp) only dates the record: the points are ego-motion compensated
    # to the stamp already, and a per-point time would have fusion deskew them twice (module docstring)
    offsets = np.zeros(0, dtype=np.int64)
    if "offset_ns" in names:
        offsets = np.asarray(table.column("offset_ns").to_numpy(), dtype=np.int64)
    record = stamp + int(offsets.max()) if offsets.size else stamp + KITTI_SWEEP_PERIOD_NS
    return _Cloud(stamp, record, tuple(fields), points.dtype.itemsize, points.tobytes(), n)


def _av2(root: Path) -> _Plan:
    lidar_dir = root / "sensors" / "lidar"
    sweeps_files = sorted((int(p.stem), p) for p in lidar_dir.glob("*.feather") if p.stem.isdigit())
    if not sweeps_files:
        raise ConvertError(
            f"{root}: no sensors/lidar/<ns>.feather; give an Argoverse 2 sensor log folder (the one "
            "holding sensors/ and city_SE3_egovehicle.feather)"
        )
    stamps = [s for s, _ in sweeps_files]
    notes = [
        f"{len(stamps)} LiDAR sweep(s) in the ego frame ({_AV2_FRAME}), both LiDARs merged as AV2 ships them"
    ]

    poses: list[tuple[int, str, str, M4]] = []
    pose_path = root / "city_SE3_egovehicle.feather"
    if pose_path.is_file():
        table = _feather(pose_path, _AV2_POSE_COLUMNS, "pose table (city_SE3_egovehicle.feather)")
        times = np.asarray(table.column("timestamp_ns").to_numpy(), dtype=np.int64)
        matrices = _se3(table, pose_path)
        keep = np.flatnonzero((times >= stamps[0] - POSE_MARGIN_NS) & (times <= stamps[-1] + POSE_MARGIN_NS))
        keep = keep[np.argsort(times[keep], kind="stable")]
        poses = [(int(times[i]), WORLD_FRAME, _AV2_FRAME, matrices[i]) for i in keep]
        notes.append(
            f"{len(poses)} of the {len(times)} poses (those within {POSE_MARGIN_NS * 1e-9:g} s of the "
            f"sweeps) as map -> {_AV2_FRAME} (map = AV2's city frame)"
        )
    else:
        notes.append("no city_SE3_egovehicle.feather: no ego poses (no deskew, no world frame)")

    statics: list[tuple[str, str, M4]] = []
    extrinsics_path = root / "calibration" / "egovehicle_SE3_sensor.feather"
    intrinsics_path = root / "calibration" / "intrinsics.feather"
    models: dict[str, Camera] = {}
    if extrinsics_path.is_file():
        table = _feather(extrinsics_path, ("sensor_name", *_AV2_POSE_COLUMNS[1:]), "calibration")
        names = [str(n) for n in table.column("sensor_name").to_pylist()]
        for name, matrix in zip(names, _se3(table, extrinsics_path), strict=True):
            try:
                Transform.from_matrix(matrix, parent=_AV2_FRAME, child=name, atol=1e-6)
            except CalibrationError as err:
                raise ConvertError(f"{extrinsics_path}: sensor {name}: {err}; copy the file again") from err
            statics.append((_AV2_FRAME, name, matrix))
        notes.append(f"extrinsics of {len(names)} sensors")
    else:
        notes.append("no calibration/egovehicle_SE3_sensor.feather: no sensor extrinsics")
    if intrinsics_path.is_file():
        table = _feather(intrinsics_path, _AV2_INTRINSIC_COLUMNS, "intrinsics table")
        for row in table.to_pylist():
            name = str(row["sensor_name"])
            k = np.array(
                [[row["fx_px"], 0.0, row["cx_px"]], [0.0, row["fy_px"], row["cy_px"]], [0.0, 0.0, 1.0]]
            )
            try:
                models[name] = Camera(
                    name=name,
                    frame_id=name,
                    width=int(row["width_px"]),
                    height=int(row["height_px"]),
                    model="plumb_bob",
                    K=k,
                    D=(float(row["k1"]), float(row["k2"]), 0.0, 0.0, float(row["k3"])),
                )
            except CalibrationError as err:
                raise ConvertError(f"{intrinsics_path}: camera {name}: {err}; copy the file again") from err

    cameras: dict[str, tuple[Camera | None, list[int], Iterator[_Image]]] = {}
    camera_root = root / "sensors" / "cameras"
    for folder in sorted(p for p in camera_root.glob("*") if p.is_dir()):
        jpgs = sorted((int(p.stem), p) for p in folder.glob("*.jpg") if p.stem.isdigit())
        if not jpgs:
            continue
        camera = models.get(folder.name)
        if camera is None:
            notes.append(f"camera {folder.name}: images but no intrinsics, written without CameraInfo")

        def stream(files: list[tuple[int, Path]] = jpgs) -> Iterator[_Image]:
            for stamp, path in files:
                image = _checked_image(path, "jpeg")
                yield _Image(stamp, image.fmt, image.data)

        cameras[folder.name] = (camera, [s for s, _ in jpgs], stream())
    if not cameras:
        notes.append("no camera images (sensors/cameras/<name>/<ns>.jpg): LiDAR only")

    def sweeps() -> Iterator[_Cloud]:
        for stamp, path in sweeps_files:
            yield _av2_cloud(path, stamp)

    return _Plan("/lidar/points", _AV2_FRAME, statics, poses, stamps, sweeps(), cameras, notes)


# ---- a folder of PCD sweeps ----------------------------------------------------------------------

PCD_DEFAULT_FRAME: Final = "lidar"
_PCD_TOPIC: Final = "/lidar/points"
_PCD_TIME_FIELDS: Final = ("t", "time", "time_offset", "offset_ns", "timestamp")
"""The per-point time fields `fusion.decode` reads (its TIME_CONVENTIONS), passed through as they are."""
_EPOCH_FLOOR_S: Final = 1e8
"""An absolute `timestamp` (seconds since the epoch) is past 1973; smaller values are not a clock."""
_POINTFIELD_TYPES: Final = {
    np.dtype(np.int8): 1,
    np.dtype(np.uint8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.uint16): 4,
    np.dtype(np.int32): 5,
    np.dtype(np.uint32): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.float64): 8,
}


def _read_pcd(path: Path) -> dict[str, npt.NDArray[Any]]:
    """A PCD file's fields by name (open3d's tensor API): "positions" (N, 3) float32 and each other
    attribute (N,) as stored (intensity, ring, timestamp, ...). One-line ConvertError when open3d cannot
    read it or it has no x y z."""
    import open3d as o3d

    if not os.access(path, os.R_OK):
        raise ConvertError(f"{path}: cannot read the file; restore it or remove it from the folder")
    level = o3d.utility.get_verbosity_level()
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)  # its own warnings are ours here
    try:
        cloud = o3d.t.io.read_point_cloud(path)
    finally:
        o3d.utility.set_verbosity_level(level)
    names = list(cloud.point)
    if "positions" not in names:
        raise ConvertError(
            f"{path}: open3d reads no x y z points from it (fields: {', '.join(names) or 'none'}); "
            "a sweep needs FIELDS x y z: fix or remove the file"
        )
    out: dict[str, npt.NDArray[Any]] = {}
    for name in names:
        values = cloud.point[name].numpy()
        out[name] = values.reshape(-1) if values.ndim == 2 and values.shape[1] == 1 else values
    if not len(out["positions"]):
        raise ConvertError(f"{path}: holds no points; remove it from the folder")
    return out


def _pcd_stamp_range(path: Path, fields: Mapping[str, npt.NDArray[Any]]) -> tuple[int, int] | None:
    """(earliest, latest) point time in ns from an absolute `timestamp` field, or None without one."""
    if "timestamp" not in fields:
        return None
    ts = fields["timestamp"]
    first, last = (float(ts.min()), float(ts.max())) if ts.size else (math.nan, math.nan)
    if ts.dtype != np.float64 or not (math.isfinite(first) and math.isfinite(last)) or first < _EPOCH_FLOOR_S:
        raise ConvertError(
            f"{path}: field timestamp ({ts.dtype}, from {first}) is not absolute seconds since the epoch "
            "(float64, as Hesai/Livox write it: float32 cannot hold it to the ms); rename the field to "
            "time (seconds from the sweep start) and pass --hz"
        )
    return round(first * 1e9), round(last * 1e9)


def _pcd_cloud(path: Path, fields: Mapping[str, npt.NDArray[Any]], stamp: int, record: int) -> _Cloud:
    """x y z float32, intensity float32, ring uint16 and the time fields as stored (each field aligned
    to its size, as PCL lays out a point)."""
    xyz = fields["positions"]
    n = len(xyz)
    columns: list[tuple[str, npt.NDArray[Any]]] = [
        ("x", xyz[:, 0].astype(np.float32)),
        ("y", xyz[:, 1].astype(np.float32)),
        ("z", xyz[:, 2].astype(np.float32)),
    ]
    if "intensity" in fields:
        columns.append(("intensity", fields["intensity"].astype(np.float32)))
    if "ring" in fields:
        ring = fields["ring"]
        if ring.size and (ring.min() < 0 or ring.max() > np.iinfo(np.uint16).max):
            raise ConvertError(f"{path}: field ring holds values outside 0..65535; fix or drop the field")
        columns.append(("ring", ring.astype(np.uint16)))
    for name in _PCD_TIME_FIELDS:
        if name in fields:
            if fields[name].dtype not in _POINTFIELD_TYPES:
                raise ConvertError(
                    f"{path}: field {name} is {fields[name].dtype}, which a PointCloud2 cannot carry; "
                    "store it as float64, float32 or an integer"
                )
            columns.append((name, fields[name]))
    offset = 0
    layout: list[tuple[str, int, int]] = []
    names: list[str] = []
    formats: list[np.dtype[Any]] = []
    offsets: list[int] = []
    for name, values in columns:
        size = values.dtype.itemsize
        offset = -(-offset // size) * size  # aligned as PCL aligns a struct's members
        layout.append((name, offset, _POINTFIELD_TYPES[values.dtype]))
        names.append(name)
        formats.append(values.dtype.newbyteorder("<"))
        offsets.append(offset)
        offset += size
    widest = max(f.itemsize for f in formats)
    step = -(-offset // widest) * widest
    points = np.zeros(
        n, dtype=np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    )
    for name, values in columns:
        points[name] = values
    return _Cloud(stamp, record, tuple(layout), step, points.tobytes(), n)


def _pose_matrix(values: Sequence[str], where: str) -> M4:
    """A 3x4 row-major world_from_lidar (12 numbers) as (4, 4), checked to be a rigid transform."""
    try:
        numbers = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError as err:
        raise ConvertError(f"{where}: {err}; a pose is 12 numbers, the 3x4 matrix row by row") from err
    m = np.eye(4)
    m[:3, :] = numbers.reshape(3, 4)
    try:  # calib's rigid-transform check, with the tolerance of poses written to 9 decimals
        Transform.from_matrix(m, parent=WORLD_FRAME, child="lidar", atol=1e-4)
    except CalibrationError:
        raise ConvertError(
            f"{where}: the 3x3 part is not a rotation (R^T R != I or det != 1); a pose is the 3x4 "
            "world_from_lidar matrix row by row (r11 r12 r13 tx r21 ... tz): fix the line"
        ) from None
    return m


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_pcd_poses(path: Path, stems: Sequence[str]) -> tuple[dict[str, M4], list[str]]:
    """A poses file -> (PCD stem -> world_from_lidar (4, 4), notes).

    Lines are `NAME r11 r12 r13 tx r21 r22 r23 ty r31 r32 r33 tz` (NAME = a PCD file's stem) or, in
    KITTI odometry's poses.txt, the 12 numbers alone, one line per PCD in the folder's order. Named
    lines outside the folder's span of names are left out (the file may cover a whole drive); a name
    inside it without its PCD, a bad line or (unnamed) a count that differs is a one-line error.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConvertError(
            f"{path}: cannot read the poses file ({err}); give a readable --poses FILE"
        ) from err
    rows = [(number, line.split()) for number, line in enumerate(lines, 1) if line.strip()]
    if not rows:
        raise ConvertError(f"{path}: no pose lines; give --poses a file of 3x4 poses or drop --poses")
    head = rows[0][1][0]
    named = len(rows[0][1]) == 13 or head in stems or not _is_number(head)
    for number, tokens in rows:
        if len(tokens) != (13 if named else 12):
            raise ConvertError(
                f"{path}:{number}: {len(tokens)} values; every line is "
                f"{'NAME and 12 numbers' if named else '12 numbers'} (the 3x4 world_from_lidar, row by row) "
                "as the first line is: fix the line"
            )
    notes: list[str] = []
    if not named:
        if len(rows) != len(stems):
            number = rows[min(len(rows), len(stems))][0] if len(rows) > len(stems) else rows[-1][0]
            raise ConvertError(
                f"{path}:{number}: {len(rows)} unnamed poses for {len(stems)} PCD files; a poses file "
                "without names needs one line per PCD in name order: fix the count or name each line"
            )
        out = {
            stem: _pose_matrix(tokens, f"{path}:{number}")
            for stem, (number, tokens) in zip(stems, rows, strict=True)
        }
        return out, notes
    wanted = set(stems)
    first, last = min(stems), max(stems)
    out = {}
    outside = 0
    for number, tokens in rows:
        name = tokens[0]
        if name not in wanted:
            if first <= name <= last:
                raise ConvertError(
                    f"{path}:{number}: pose for {name!r} but the folder has no {name}.pcd; restore the PCD "
                    "or delete the line"
                )
            outside += 1
            continue
        if name in out:
            raise ConvertError(f"{path}:{number}: a second pose for {name!r}; keep one line per PCD")
        out[name] = _pose_matrix(tokens[1:], f"{path}:{number}")
    if not out:
        raise ConvertError(
            f"{path}: none of its {len(rows)} names is a PCD of the folder (first: {rows[0][1][0]!r}, "
            f"PCDs: {first!r} ...); the names are the PCD files' stems"
        )
    if outside:
        notes.append(
            f"{outside} poses of {path.name} name no PCD in the folder (outside its sweeps): left out"
        )
    return out, notes


def _pcd(root: Path, hz: float | None, poses_path: Path | None, frame_id: str) -> _Plan:
    """A folder of PCD sweeps (sorted by name) and optional poses (see `_read_pcd_poses`) as a plan.

    Stamps come from an absolute per-point `timestamp` (the sweep = its earliest point, recorded at
    its latest), otherwise from `hz` (sweep k at 1 s + k / hz). Every file is read once here to check
    it and date it, and again when written (one sweep in memory at a time).
    """
    files = sorted(p for p in root.glob("*.pcd") if p.is_file())
    if not files:
        raise ConvertError(f"{root}: no *.pcd files; give a folder of PCD sweeps (one sweep per file)")
    ranges: list[tuple[int, int] | None] = []
    kept: set[str] = set()
    for path in files:
        fields = _read_pcd(path)
        ranges.append(_pcd_stamp_range(path, fields))
        kept.update(fields)
    timed = [r is not None for r in ranges]
    if any(timed) and not all(timed):
        odd = files[timed.index(not timed[0])]
        raise ConvertError(
            f"{odd}: {'has' if not timed[0] else 'lacks'} the per-point timestamp field that {files[0].name} "
            f"{'lacks' if not timed[0] else 'has'}; one folder is one LiDAR: convert them separately"
        )
    notes: list[str] = []
    if all(timed):
        if hz is not None:
            raise ConvertError(
                f"{files[0]}: its per-point timestamp dates the sweeps; --hz would replace real stamps "
                "with made-up ones: drop --hz"
            )
        stamps = [r[0] for r in ranges if r is not None]
        records = [r[1] for r in ranges if r is not None]
        if any(b <= a for a, b in itertools.pairwise(stamps)):
            raise ConvertError(
                f"{root}: the sweeps' timestamps do not increase in file-name order; name the files so "
                "that they sort in time"
            )
        notes.append(f"{len(files)} PCD sweeps stamped with their earliest point's timestamp")
    else:
        if hz is None:
            raise ConvertError(
                f"{files[0]}: no per-point timestamp (absolute seconds) to date the sweeps; pass --hz 10 "
                "(the sweep rate) to stamp them 1/HZ apart from 1 s"
            )
        period = round(1e9 / hz)
        stamps = [NO_CLOCK_START_NS + k * period for k in range(len(files))]
        records = [s + period for s in stamps]
        notes.append(f"{len(files)} PCD sweeps {period * 1e-6:g} ms apart from 1 s (--hz {hz:g})")
    times = [n for n in _PCD_TIME_FIELDS if n in kept]
    notes.append(f"per-point time: {', '.join(times)}" if times else "no per-point time field: no deskew")
    left = sorted(kept - {"positions", "intensity", "ring", *_PCD_TIME_FIELDS})
    if left:
        notes.append(f"PCD fields left out: {', '.join(left)}")

    poses: list[tuple[int, str, str, M4]] = []
    if poses_path is not None:
        by_stem, pose_notes = _read_pcd_poses(poses_path, [p.stem for p in files])
        notes += pose_notes
        poses = [
            (stamp, WORLD_FRAME, frame_id, by_stem[p.stem])
            for p, stamp in zip(files, stamps, strict=True)
            if p.stem in by_stem
        ]
        if len(poses) < len(files):
            notes.append(
                f"{poses_path.name} has poses for {len(poses)} of the {len(files)} sweeps: the others get "
                "none (no deskew, no world frame)"
            )
        notes.append(f"{len(poses)} poses as {WORLD_FRAME} -> {frame_id} at their sweeps' stamps")
    else:
        notes.append("no --poses: no ego poses (sweeps are not deskewed, tracks have no world frame)")

    def sweeps() -> Iterator[_Cloud]:
        for path, stamp, record in zip(files, stamps, records, strict=True):
            yield _pcd_cloud(path, _read_pcd(path), stamp, record)

    return _Plan(_PCD_TOPIC, frame_id, [], poses, stamps, sweeps(), {}, notes)
