"""What a reviewer sees of one sweep of a pre-label dataset, read through `exporters.reader`.

`SequenceScene(seq).frame(k)` gathers sweep k of a sequence: its points (lidar frame), its boxes
with category, track id and velocity, and for every camera with a synchronised image the image
with the boxes and points projected into it. `fusion.view` (Rerun) and `fusion.render` (PNG)
draw the same `SceneFrame`, so the two never disagree.

Projection goes through `calib.projection` only. A camera's image is not taken at the sweep's
stamp (on a spinning LiDAR the camera fires when the sweep crosses its axis, up to a sweep period
later), so when the sequence has poses everything is moved to the image's own time before it is
projected::

    camera_from_sweep = camera_from_lidar @ lidar(t_image)_from_world @ world_from_lidar(t_sweep)

with ``lidar(t_image)_from_world`` interpolated between the sweeps' poses by a
`calib.tf_buffer.TransformBuffer`; a box is also moved by its own (world-frame) velocity times
``t_image - t_sweep``. Without poses both are projected as they are (the sequence cannot say how
the vehicle moved); the labels' own `camera_boxes` are computed that way, at the sweep's stamp.

Trails (`SequenceScene.trails`) are each track's box centres up to a sweep: in the world frame
when the sequence has poses, otherwise in the lidar frame of each box's own sweep (ego-relative:
they bend with the vehicle's motion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from calib.camera import Camera
from calib.projection import box_corners, boxes_to_image, project_points
from calib.tf_buffer import TransformBuffer
from calib.transform import Transform
from exporters.reader import Sequence
from fusion.boxes import CATEGORIES
from fusion.decode.types import TransformRecord
from fusion.errors import ViewError

F64 = npt.NDArray[np.float64]

CATEGORY_COLORS: Final[dict[str, tuple[int, int, int]]] = {
    "car": (31, 119, 180),  # blue
    "truck": (255, 127, 14),  # orange
    "bus": (148, 103, 189),  # purple
    "pedestrian": (214, 39, 40),  # red
    "cyclist": (44, 160, 44),  # green
    "motorcycle": (227, 119, 194),  # pink
    "unknown": (127, 127, 127),  # grey
}
"""RGB per category, the same in the viewer and in rendered pictures."""

CATEGORY_IDS: Final[dict[str, int]] = {name: i + 1 for i, name in enumerate(CATEGORIES)}
"""Category -> class id (Rerun's annotation context); 0 is left for 'no class'."""

# A box's wireframe as one path through its corners (corner order of `calib.projection.box_corners`):
# the twelve edges (some walked twice) and a cross on the front face (+x, the heading: 1-6, 2-5).
BOX_PATH: Final = np.array([0, 1, 2, 3, 0, 4, 5, 6, 7, 4, 5, 1, 2, 6, 7, 3, 2, 5, 6, 1], dtype=np.int64)

_WORLD: Final = "world"  # the frame names of the sequence's pose buffer
_LIDAR: Final = "lidar"


@dataclass(frozen=True)
class SceneConfig:
    """How a sweep is gathered for viewing."""

    edge_samples: int = 8  # points per box edge projected into an image (lens distortion bends edges)
    # images up to this far past the first/last sweep's pose (extrapolated at the end sweeps' velocity);
    # a camera fires within about one sweep period of the sweep's stamp
    max_pose_extrapolation_ns: int = 200_000_000
    compensate_motion: bool = True  # move points and boxes to each image's own time (needs poses)


@dataclass(frozen=True)
class CameraScene:
    """One camera's image of a sweep with what projects into it.

    image: (H, W, 3) uint8 RGB.
    points_uv: (K, 2) float64 pixels of the sweep's points that fall in the image;
    points_depth: (K,) float64 metres along the optical axis.
    box_rows: (B,) int64 rows of the frame's boxes that are visible in the image;
    extents: (B, 4) float64 x_min, y_min, x_max, y_max pixels (clipped to the image).
    wireframes: polylines (P, 2) float64 pixels of the visible boxes' edges (not clipped to the
    image; a part behind the camera is left out); wire_rows: (len(wireframes),) the box row of each.
    """

    name: str
    camera: Camera
    image: npt.NDArray[np.uint8]
    image_stamp_ns: int
    motion_compensated: bool
    points_uv: F64
    points_depth: F64
    box_rows: npt.NDArray[np.int64]
    extents: F64
    wireframes: tuple[F64, ...]
    wire_rows: npt.NDArray[np.int64]


@dataclass(frozen=True)
class SceneFrame:
    """One sweep of a sequence as a reviewer sees it (boxes and points in the sweep's lidar frame).

    xyz: (N, 3) float32, intensity: (N,) float32 (zeros when the dataset has none stored).
    boxes: (M, 7) float64 x y z length width height yaw; category: (M,) str; track_id: (M,) int64;
    score: (M,) float32; origin: (M,) str; velocity: (M, 2) float64 m/s in the lidar frame
    (NaN when unknown); world_centers: (M, 3) float64 (NaN without poses).
    """

    sequence_id: str
    frame_index: int
    timestamp_ns: int
    world_from_lidar: Transform | None
    xyz: npt.NDArray[np.float32]
    intensity: npt.NDArray[np.float32]
    boxes: F64
    category: npt.NDArray[np.str_]
    track_id: npt.NDArray[np.int64]
    score: npt.NDArray[np.float32]
    origin: npt.NDArray[np.str_]
    velocity: F64
    world_centers: F64
    cameras: tuple[CameraScene, ...]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def box_labels(self) -> list[str]:
        """One label per box: `category #track_id`."""
        return [f"{c} #{t}" for c, t in zip(self.category, self.track_id, strict=True)]


def _f64(table: pa.Table, name: str) -> F64:
    """A float column as float64 with nulls as NaN."""
    column = table.column(name)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _yaw_of(transform: Transform) -> float:
    r = transform.rotation
    return math.atan2(float(r[1, 0]), float(r[0, 0]))


class SequenceScene:
    """Sweeps of one sequence of an open dataset, ready to draw (see the module docstring)."""

    def __init__(self, seq: Sequence, config: SceneConfig | None = None) -> None:
        self.seq = seq
        self.config = config or SceneConfig()
        frames = seq.frames()
        self.timestamps_ns: npt.NDArray[np.int64] = np.asarray(
            frames.column("timestamp_ns").to_numpy(), np.int64
        )
        self.frame_cameras: list[dict[str, int]] = [
            {str(c["name"]): int(c["timestamp_ns"]) for c in (cams or [])}
            for cams in frames.column("cameras").to_pylist()
        ]
        where = f"{seq.paths['frames']}"
        self.poses: list[Transform | None] = [
            None
            if m is None
            else Transform.from_matrix(np.asarray(m, np.float64).reshape(4, 4), parent=_WORLD, child=_LIDAR)
            for m in frames.column("world_from_lidar").to_pylist()
        ]
        known = [p for p in self.poses if p is not None]
        self.has_poses = bool(self.poses) and len(known) == len(self.poses)
        """Every sweep has a world pose (a sequence with some missing is drawn as one without)."""
        self.world_frame: str | None = seq.row.get("world_frame") if self.has_poses else None
        self._buffer: TransformBuffer | None = None
        if self.has_poses and self.config.compensate_motion:
            buffer = TransformBuffer(max_extrapolation_ns=self.config.max_pose_extrapolation_ns)
            for stamp, pose in zip(self.timestamps_ns, known, strict=True):
                t = pose.translation
                buffer.add(
                    TransformRecord(
                        _WORLD,
                        _LIDAR,
                        int(stamp),
                        (float(t[0]), float(t[1]), float(t[2])),
                        pose.quaternion_xyzw,
                        static=False,
                    )
                )
            self._buffer = buffer
        labels = seq.labels().sort_by([("frame_index", "ascending"), ("track_id", "ascending")])
        self._label_frame = np.asarray(labels.column("frame_index").to_numpy(), np.int32)
        self._boxes = np.stack(
            [_f64(labels, n) for n in ("x", "y", "z", "length", "width", "height", "yaw")], 1
        )
        self._world = np.stack([_f64(labels, n) for n in ("world_x", "world_y", "world_z")], 1)
        self._world_yaw = _f64(labels, "world_yaw")
        self._velocity_world = np.stack([_f64(labels, "velocity_x"), _f64(labels, "velocity_y")], 1)
        self._category = np.asarray(labels.column("category").to_pylist(), dtype=str)
        self._track = np.asarray(labels.column("track_id").to_numpy(), np.int64)
        self._score = np.asarray(labels.column("score").to_numpy(), np.float32)
        self._origin = np.asarray(labels.column("origin").to_pylist(), dtype=str)
        self._starts = np.searchsorted(self._label_frame, np.arange(len(self.timestamps_ns) + 1))
        self._calibration = seq.calibration
        self._image_cameras = set(seq.image_cameras())
        if len(self._label_frame) and int(self._label_frame.max()) >= len(self.timestamps_ns):
            raise ViewError(
                f"{seq.paths['labels']}: labels of frame {int(self._label_frame.max())}, but {where} has "
                f"{len(self.timestamps_ns)} frames; the dataset is damaged (run fusion validate)"
            )

    @property
    def num_frames(self) -> int:
        return len(self.timestamps_ns)

    @property
    def track_ids(self) -> npt.NDArray[np.int64]:
        """Every track id of the sequence, sorted."""
        return np.unique(self._track)

    def frame(self, frame_index: int, *, images: bool = True) -> SceneFrame:
        """Sweep `frame_index` with its boxes and (with `images`) every camera's projections."""
        if not 0 <= frame_index < self.num_frames:
            raise ViewError(
                f"{self.seq.paths['frames']}: no frame {frame_index}; sequence {self.seq.sequence_id!r} "
                f"has frames 0..{self.num_frames - 1}"
            )
        rows = slice(int(self._starts[frame_index]), int(self._starts[frame_index + 1]))
        pose = self.poses[frame_index]
        boxes = self._boxes[rows]
        velocity = np.full((boxes.shape[0], 2), np.nan)
        if pose is not None:  # world-frame velocity into this sweep's lidar frame
            v = np.zeros((boxes.shape[0], 3))
            v[:, :2] = self._velocity_world[rows]
            velocity = (v @ pose.inverse().rotation.T)[:, :2]
        if self.seq.has_points:
            xyz, intensity, _ = self.seq.points(frame_index)
        else:
            xyz, intensity = np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
        frame = SceneFrame(
            sequence_id=self.seq.sequence_id,
            frame_index=frame_index,
            timestamp_ns=int(self.timestamps_ns[frame_index]),
            world_from_lidar=pose,
            xyz=xyz,
            intensity=intensity,
            boxes=boxes,
            category=self._category[rows],
            track_id=self._track[rows],
            score=self._score[rows],
            origin=self._origin[rows],
            velocity=velocity,
            world_centers=self._world[rows],
            cameras=(),
        )
        if not images:
            return frame
        cameras = tuple(
            self._camera(frame, name, stamp)
            for name, stamp in sorted(self.frame_cameras[frame_index].items())
            if name in self._image_cameras and name in self._calibration
        )
        return SceneFrame(**{**frame.__dict__, "cameras": cameras})

    def trails(self, frame_index: int) -> dict[int, F64]:
        """Track id -> (P, 3) centres of that track over frames 0..frame_index, for the tracks seen in
        `frame_index`: world frame with poses, else each sweep's own lidar frame."""
        upto = int(self._starts[frame_index + 1])
        now = self._track[int(self._starts[frame_index]) : upto]
        centres = self._world[:upto] if self.has_poses else self._boxes[:upto, :3]
        tracks = self._track[:upto]
        return {int(t): centres[tracks == t] for t in now}

    def _camera(self, frame: SceneFrame, name: str, image_stamp_ns: int) -> CameraScene:
        camera, lidar_from_camera = self._calibration[name]
        camera_from_lidar = lidar_from_camera.inverse()
        boxes = frame.boxes
        pose = frame.world_from_lidar
        compensated = self._buffer is not None and pose is not None
        if self._buffer is not None and pose is not None:
            lidar_now_from_world = self._buffer.lookup(_LIDAR, _WORLD, image_stamp_ns)
            camera_from_sweep = camera_from_lidar @ lidar_now_from_world @ pose
            dt_s = (image_stamp_ns - frame.timestamp_ns) * 1e-9
            moved = boxes.copy()
            moved[:, :2] += np.nan_to_num(frame.velocity) * dt_s
            boxes = moved
        else:
            camera_from_sweep = camera_from_lidar
        uv, depth, valid = project_points(frame.xyz, camera, camera_from_sweep)
        extents, visible = boxes_to_image(boxes, camera, camera_from_sweep)
        rows = np.flatnonzero(visible).astype(np.int64)
        wires, wire_rows = self._wireframes(boxes[rows], rows, camera, camera_from_sweep)
        return CameraScene(
            name=name,
            camera=camera,
            image=self.seq.image(name, frame.frame_index),
            image_stamp_ns=image_stamp_ns,
            motion_compensated=compensated,
            points_uv=uv[valid],
            points_depth=depth[valid],
            box_rows=rows,
            extents=extents[rows],
            wireframes=wires,
            wire_rows=wire_rows,
        )

    def _wireframes(
        self, boxes: F64, rows: npt.NDArray[np.int64], camera: Camera, camera_from_sweep: Transform
    ) -> tuple[tuple[F64, ...], npt.NDArray[np.int64]]:
        """Each box's `BOX_PATH` sampled densely and projected; runs of finite pixels become polylines
        (a path is cut where it passes behind the camera)."""
        if not len(boxes):
            return (), np.zeros(0, np.int64)
        s = self.config.edge_samples
        corners = box_corners(boxes)  # (M, 8, 3)
        a = corners[:, BOX_PATH[:-1]]  # (M, E, 3) the path's segments
        b = corners[:, BOX_PATH[1:]]
        u = (np.arange(s) / s)[None, None, :, None]
        samples = (a[:, :, None, :] + u * (b - a)[:, :, None, :]).reshape(len(boxes), -1, 3)
        samples = np.concatenate([samples, corners[:, BOX_PATH[-1:]]], axis=1)  # (M, E * S + 1, 3)
        uv, _, _ = project_points(samples.reshape(-1, 3), camera, camera_from_sweep)
        uv = uv.reshape(len(boxes), -1, 2)
        finite = np.asarray(np.isfinite(uv).all(axis=2), dtype=np.bool_)
        wires: list[F64] = []
        owners: list[int] = []
        for m in range(len(boxes)):
            if finite[m].all():
                wires.append(uv[m])
                owners.append(int(rows[m]))
                continue
            breaks = np.flatnonzero(np.diff(finite[m].astype(np.int8)) != 0) + 1
            for run in np.split(np.arange(uv.shape[1]), breaks):
                if len(run) >= 2 and finite[m, run[0]]:
                    wires.append(uv[m, run])
                    owners.append(int(rows[m]))
        return tuple(wires), np.asarray(owners, np.int64)


def colormap(
    values: npt.NDArray[np.floating], name: str = "turbo", *, value_range: tuple[float, float] | None = None
) -> npt.NDArray[np.uint8]:
    """RGB (N, 3) uint8 of values (N,) through matplotlib colormap `name`, scaled over `value_range`
    (None: the values' 2nd to 98th percentile)."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return np.zeros((0, 3), np.uint8)
    lo, hi = value_range if value_range is not None else np.percentile(v, [2.0, 98.0])
    scaled = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(v)
    rgba = colormaps[name](scaled)
    return np.asarray(np.round(rgba[:, :3] * 255.0), dtype=np.uint8)
