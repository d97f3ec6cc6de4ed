"""What the finishing step keeps of each sweep, as a few columns rather than objects per sweep.

    records = SweepRecorder(cameras, lidar_frame)
    for frame, boxes in detect_in_batches(detector, frames):
        records.add(frame, boxes)
    sweeps, detections = records.sweeps(), records.detections()

`SweepColumns` holds, per sweep, what tracking, the labels and the frames table read of it (index,
stamps, points kept, deskewed, pose, and per camera whether an image was paired, its stamp and its
offset); `BoxColumns` every sweep's detections concatenated in order with a count per sweep (like
Arrow's list offsets). A chunk task returns these (`fusion.chunks.ChunkResult`): a 5-minute 64-beam
log's 3,000 sweeps used to come back as a `FusedFrame`, a `Boxes` and a `FrameRow` each (~200,000
small Python objects, each with its own small arrays and dicts), which raised the finishing
worker's RSS by ~60-80 MiB, and it stayed there (their pages pinned by the few objects that lived
on). Joined (`SweepColumns.join`, `BoxColumns.join`) they give the tracker its input
(`trackers.FrameDetections`, no copy) and the frames table its columns
(`exporters.dataset.FrameColumns`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from calib.transform import Transform
from exporters.dataset import FrameColumns
from fusion.boxes import Boxes, box_columns

if TYPE_CHECKING:
    from fusion.sync import FusedFrame
    from trackers import FrameDetections

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class SweepColumns:
    """n sweeps of one log (or one chunk of it), in sweep order.

    frame_index: (n,) int64, the sweeps' `FusedFrame.index`.
    stamp_ns: (n,) int64 header stamps; log_time_ns: (n,) int64 bag record times.
    num_points: (n,) int32 finite points kept; deskewed: (n,) bool.
    world_from_lidar: (n, 4, 4) float64 at stamp_ns (`Transform.matrix`); zeros where not
        has_pose (n,) bool.
    cameras: (C,) the camera names, sorted: the columns of the next three.
    paired: (n, C) bool: an image of that camera was paired with the sweep (`FusedFrame.images`).
    image_stamp_ns, image_offset_ns: (n, C) int64 the paired image's stamp and its offset from when
        the sweep crossed the camera's axis (0 where not paired).
    lidar_frame: the LiDAR's frame (the detections' frame).
    """

    frame_index: I64
    stamp_ns: I64
    log_time_ns: I64
    num_points: npt.NDArray[np.int32]
    deskewed: Bool
    world_from_lidar: F64
    has_pose: Bool
    cameras: tuple[str, ...]
    paired: Bool
    image_stamp_ns: I64
    image_offset_ns: I64
    lidar_frame: str

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    @classmethod
    def empty(cls, cameras: Sequence[str] = (), lidar_frame: str = "") -> SweepColumns:
        """No sweeps."""
        names = tuple(sorted(cameras))
        c = len(names)
        return cls(
            frame_index=np.zeros(0, np.int64),
            stamp_ns=np.zeros(0, np.int64),
            log_time_ns=np.zeros(0, np.int64),
            num_points=np.zeros(0, np.int32),
            deskewed=np.zeros(0, bool),
            world_from_lidar=np.zeros((0, 4, 4)),
            has_pose=np.zeros(0, bool),
            cameras=names,
            paired=np.zeros((0, c), bool),
            image_stamp_ns=np.zeros((0, c), np.int64),
            image_offset_ns=np.zeros((0, c), np.int64),
            lidar_frame=lidar_frame,
        )

    def pose(self, k: int) -> Transform | None:
        """Sweep k's world_from_lidar (None without one): the transform it was recorded from."""
        if not self.has_pose[k]:
            return None
        m = self.world_from_lidar[k]
        return Transform("world", self.lidar_frame or "lidar", m[:3, :3], m[:3, 3])

    def renumbered(self, first: int) -> SweepColumns:
        """The sweeps with frame_index moved by `first` (a chunk's local indices made the log's)."""
        return replace(self, frame_index=self.frame_index + first)

    @classmethod
    def join(cls, parts: Sequence[SweepColumns]) -> SweepColumns:
        """The sweeps of `parts` one after another; the cameras are the union of theirs (not paired
        in the parts that lack one)."""
        if not parts:
            return cls.empty()
        names = tuple(sorted({name for part in parts for name in part.cameras}))
        if all(part.cameras == names for part in parts):
            aligned = list(parts)
        else:
            aligned = [part._with_cameras(names) for part in parts]
        return cls(
            frame_index=np.concatenate([p.frame_index for p in aligned]),
            stamp_ns=np.concatenate([p.stamp_ns for p in aligned]),
            log_time_ns=np.concatenate([p.log_time_ns for p in aligned]),
            num_points=np.concatenate([p.num_points for p in aligned]),
            deskewed=np.concatenate([p.deskewed for p in aligned]),
            world_from_lidar=np.concatenate([p.world_from_lidar for p in aligned]),
            has_pose=np.concatenate([p.has_pose for p in aligned]),
            cameras=names,
            paired=np.concatenate([p.paired for p in aligned]),
            image_stamp_ns=np.concatenate([p.image_stamp_ns for p in aligned]),
            image_offset_ns=np.concatenate([p.image_offset_ns for p in aligned]),
            lidar_frame=next((p.lidar_frame for p in parts if p.lidar_frame), ""),
        )

    def _with_cameras(self, names: tuple[str, ...]) -> SweepColumns:
        """The same sweeps with camera columns `names` (a superset of its own)."""
        where = [names.index(name) for name in self.cameras]
        shape = (len(self), len(names))
        paired, stamps, offsets = np.zeros(shape, bool), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        paired[:, where] = self.paired
        stamps[:, where] = self.image_stamp_ns
        offsets[:, where] = self.image_offset_ns
        return replace(self, cameras=names, paired=paired, image_stamp_ns=stamps, image_offset_ns=offsets)

    def frame_columns(self) -> FrameColumns:
        """The rows of the frames table: each sweep's paired images in camera name order."""
        rows, cols = np.nonzero(self.paired)  # row by row, cameras in name order within a row
        del rows
        return FrameColumns(
            frame_index=self.frame_index,
            timestamp_ns=self.stamp_ns,
            source_log_time_ns=self.log_time_ns,
            num_points=self.num_points,
            deskewed=self.deskewed,
            world_from_lidar=self.world_from_lidar.reshape(-1, 16),
            no_pose=~self.has_pose,
            camera_counts=self.paired.sum(axis=1),
            camera_name=pa.array(list(self.cameras), pa.string()).take(pa.array(cols)),
            camera_timestamp_ns=self.image_stamp_ns[self.paired],
            camera_offset_ns=self.image_offset_ns[self.paired],
        )


@dataclass(frozen=True, eq=False)
class BoxColumns:
    """The detections of n sweeps (N in all), each sweep's after the earlier ones' (`Boxes`' columns).

    counts: (n,) int64 detections per sweep.
    boxes: (N, 7) float64 (`fusion.boxes.BOX_FIELDS`, C order); category: (N,) int8 index into
    `fusion.boxes.CATEGORIES`; score: (N,) float32; num_points: (N,) int32; measured: (N, 2) float64;
    capture_offset_ns: (N,) float64 (NaN: unknown); length_bound: (N,) float64 (+inf: unknown).
    """

    counts: I64
    boxes: F64
    category: npt.NDArray[np.int8]
    score: npt.NDArray[np.float32]
    num_points: npt.NDArray[np.int32]
    measured: F64
    capture_offset_ns: F64
    length_bound: F64

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> BoxColumns:
        """No sweeps, no detections."""
        return cls.of([])

    @classmethod
    def of(cls, per_sweep: Sequence[Boxes]) -> BoxColumns:
        """The columns of one `Boxes` per sweep."""
        return cls(**box_columns(per_sweep))

    @classmethod
    def join(cls, parts: list[BoxColumns]) -> BoxColumns:
        """The detections of `parts` one after another. Empties `parts`: each part's columns are
        let go as they are joined (pass the list unnamed elsewhere, and none is held twice)."""
        columns = (
            "counts", "boxes", "category", "score", "num_points", "measured", "capture_offset_ns",
            "length_bound",
        )  # fmt: skip
        taken: dict[str, list[npt.NDArray[Any]]] = {name: [] for name in columns}
        while parts:
            part = parts.pop(0)
            for name in columns:
                taken[name].append(getattr(part, name))
            del part
        if not taken["counts"]:
            return cls.of([])
        return cls(**{name: np.concatenate(taken.pop(name)) for name in columns})

    def bounds(self) -> I64:
        """(n + 1,): sweep k's detections are rows [bounds[k], bounds[k + 1])."""
        bounds = np.zeros(self.counts.shape[0] + 1, np.int64)
        np.cumsum(self.counts, out=bounds[1:])
        return bounds


def frame_detections(sweeps: SweepColumns, detections: BoxColumns) -> FrameDetections:
    """The tracker's input (`trackers.track_both_ways`) of these sweeps and their detections: the
    same arrays, not copies."""
    from trackers import FrameDetections

    if len(detections.counts) != len(sweeps):
        raise ValueError(f"{len(sweeps)} sweeps but detections of {len(detections.counts)}")
    return FrameDetections(
        bounds=detections.bounds(),
        t_ns=sweeps.stamp_ns,
        world_from_sensor=sweeps.world_from_lidar,
        has_pose=sweeps.has_pose,
        boxes=detections.boxes,
        category=detections.category,
        score=detections.score,
        num_points=detections.num_points,
        measured=detections.measured,
        capture_offset_ns=detections.capture_offset_ns,
        length_bound=detections.length_bound,
        frame_id=sweeps.lidar_frame,
    )


class SweepRecorder:
    """Collects `SweepColumns` and `BoxColumns` sweep by sweep (a chunk's, or a whole log's)."""

    def __init__(self, cameras: Sequence[str], lidar_frame: str) -> None:
        self.cameras = tuple(sorted(cameras))
        self.lidar_frame = lidar_frame
        self._column = {name: k for k, name in enumerate(self.cameras)}
        self._scalars: list[tuple[int, int, int, int, bool, bool]] = []
        self._poses: list[F64] = []
        self._images: list[tuple[int, int, int, int]] = []  # (sweep, camera column, stamp, offset)
        self._boxes: list[Boxes] = []

    def __len__(self) -> int:
        return len(self._scalars)

    def add(self, frame: FusedFrame, boxes: Boxes) -> None:
        """The next sweep (its points and images are not kept) and its detections."""
        k = len(self._scalars)
        pose = frame.world_from_lidar
        has_pose = pose is not None
        self._scalars.append(
            (frame.index, frame.stamp_ns, frame.log_time_ns, len(frame.cloud), frame.deskewed, has_pose)
        )
        self._poses.append(pose.matrix if pose is not None else np.zeros((4, 4)))
        for name, img in frame.images.items():
            if name not in self._column:
                raise ValueError(f"sweep {frame.index}: an image of camera {name!r}, none of {self.cameras}")
            self._images.append((k, self._column[name], img.stamp_ns, img.offset_ns))
        self._boxes.append(boxes)

    def sweeps(self) -> SweepColumns:
        """The sweeps added so far."""
        n, c = len(self._scalars), len(self.cameras)
        if not n:
            return SweepColumns.empty(self.cameras, self.lidar_frame)
        index, stamp, log_time, points, deskewed, has_pose = zip(*self._scalars, strict=True)
        paired = np.zeros((n, c), bool)
        stamps, offsets = np.zeros((n, c), np.int64), np.zeros((n, c), np.int64)
        if self._images:
            images = np.array(self._images, np.int64)
            at = (images[:, 0], images[:, 1])
            paired[at] = True
            stamps[at] = images[:, 2]
            offsets[at] = images[:, 3]
        return SweepColumns(
            frame_index=np.array(index, np.int64),
            stamp_ns=np.array(stamp, np.int64),
            log_time_ns=np.array(log_time, np.int64),
            num_points=np.array(points, np.int32),
            deskewed=np.array(deskewed, bool),
            world_from_lidar=np.array(self._poses, np.float64).reshape(n, 4, 4),
            has_pose=np.array(has_pose, bool),
            cameras=self.cameras,
            paired=paired,
            image_stamp_ns=stamps,
            image_offset_ns=offsets,
            lidar_frame=self.lidar_frame,
        )

    def detections(self) -> BoxColumns:
        """The detections of the sweeps added so far."""
        return BoxColumns.of(self._boxes)
