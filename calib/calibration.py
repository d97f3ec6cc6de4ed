"""A set of sensor calibrations: cameras (intrinsics) and static extrinsics, from a bag or a file.

`calib.loaders.load_calibration` builds one from a file; `fusion` builds one from a bag's
CameraInfo and /tf_static. ``--calibration FILE`` overrides the bag per sensor::

    effective = from_file.merged_over(from_bag)

Each transform is a static ``parent_from_child`` (e.g. ``lidar_from_camera``, ``ego_from_sensor``);
they form a forest in which every frame has at most one parent, as a TF tree. `Calibration.lookup`
walks it in either direction, so ``calibration.lookup("cam2_rect", "velodyne")`` answers
``cam2_rect_from_velodyne`` whichever way the file wrote the edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from calib.camera import Camera
from calib.errors import CalibrationError
from calib.frames import normalize_frame
from calib.transform import Transform


@dataclass(frozen=True, eq=False)
class Calibration:
    """Cameras and static transforms of one rig, and where they came from.

    cameras: camera name -> Camera (read-only mapping; names unique, frame ids unique).
    transforms: static `parent_from_child` extrinsics; each child frame appears once.
    source: the file (or "bag ...") they came from, for messages.
    camera_topics: camera name -> image topic, where the source names one (optional).

    Raises CalibrationError for a name that disagrees with its camera, two cameras in one frame,
    a frame with two parents, or a topic of an unknown camera.
    """

    cameras: Mapping[str, Camera]
    transforms: tuple[Transform, ...]
    source: str
    camera_topics: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cameras = dict(self.cameras)
        frames: dict[str, str] = {}
        for name, camera in cameras.items():
            if name != camera.name:
                raise CalibrationError(
                    f"{self.source}: camera {camera.name!r} is filed under the name {name!r}; "
                    "key cameras by Camera.name"
                )
            frame = normalize_frame(camera.frame_id)
            if frame in frames:
                raise CalibrationError(
                    f"{self.source}: cameras {frames[frame]!r} and {name!r} share the frame '{frame}'; "
                    "give each camera its own frame_id"
                )
            frames[frame] = name
        parents: dict[str, str] = {}
        for t in self.transforms:
            if t.child in parents:
                raise CalibrationError(
                    f"{self.source}: frame '{t.child}' has two parents, '{parents[t.child]}' and "
                    f"'{t.parent}'; a calibration is a tree: keep one transform per child frame"
                )
            parents[t.child] = t.parent
        _check_no_loop(self.source, self.transforms)
        topics = dict(self.camera_topics)
        unknown = sorted(set(topics) - set(cameras))
        if unknown:
            raise CalibrationError(
                f"{self.source}: topics given for unknown cameras {unknown}; known: {sorted(cameras)}"
            )
        object.__setattr__(self, "cameras", MappingProxyType(cameras))
        object.__setattr__(self, "transforms", tuple(self.transforms))
        object.__setattr__(self, "camera_topics", MappingProxyType(topics))

    @classmethod
    def empty(cls, source: str) -> Calibration:
        """A calibration with no cameras and no transforms."""
        return cls(cameras={}, transforms=(), source=source)

    @property
    def frames(self) -> tuple[str, ...]:
        """Every frame named by a camera or a transform, sorted."""
        names = {normalize_frame(c.frame_id) for c in self.cameras.values()}
        for t in self.transforms:
            names.update((t.parent, t.child))
        return tuple(sorted(names))

    def camera_for_frame(self, frame_id: str) -> Camera | None:
        """The camera whose optical frame is `frame_id` ("/a" == "a"), or None."""
        frame = normalize_frame(frame_id)
        return next((c for c in self.cameras.values() if normalize_frame(c.frame_id) == frame), None)

    def transform_for(self, child_frame: str) -> Transform | None:
        """The transform `parent_from_child` whose child is `child_frame`, or None."""
        child = normalize_frame(child_frame)
        return next((t for t in self.transforms if t.child == child), None)

    def lookup(self, target: str, source: str) -> Transform:
        """`target_from_source`, composed from the static transforms (walked in either direction).

        Raises CalibrationError when a frame is unknown or the two frames are not connected.
        """
        target, source = normalize_frame(target), normalize_frame(source)
        if target == source:
            return Transform.identity(target)
        # Breadth-first from source; each step is a transform `next_from_frame`.
        edges: dict[str, list[Transform]] = {}
        for t in self.transforms:
            edges.setdefault(t.child, []).append(t)
            edges.setdefault(t.parent, []).append(t.inverse())
        for frame in (target, source):
            if frame not in edges:
                raise CalibrationError(
                    f"{self.source}: no transform mentions frame '{frame}' (looking up '{target}' <- "
                    f"'{source}'); frames: {', '.join(self.frames) or 'none'}"
                )
        reached: dict[str, Transform] = {source: Transform.identity(source)}
        frontier = [source]
        while frontier and target not in reached:
            nxt: list[str] = []
            for frame in frontier:
                for step in edges[frame]:
                    if step.parent not in reached:
                        reached[step.parent] = step @ reached[frame]
                        nxt.append(step.parent)
            frontier = nxt
        if target not in reached:
            raise CalibrationError(
                f"{self.source}: no chain of transforms from '{source}' to '{target}'; add the missing "
                "extrinsic to the calibration file"
            )
        return reached[target]

    def merged_over(self, other: Calibration) -> Calibration:
        """`other` with this calibration's sensors in place of its own, sensor by sensor.

        A camera of `self` replaces the camera of `other` in the same frame (and one of the same
        name); a transform of `self` replaces the transform of `other` with the same child frame.
        Everything else of both is kept. A transform of `other` between the same two frames as
        one of `self`, in the opposite direction, is dropped too. Raises CalibrationError when the
        merged transforms close a loop.
        """
        frames = {normalize_frame(c.frame_id) for c in self.cameras.values()}
        cameras = {
            name: cam
            for name, cam in other.cameras.items()
            if normalize_frame(cam.frame_id) not in frames and name not in self.cameras
        }
        topics = {name: topic for name, topic in other.camera_topics.items() if name in cameras}
        cameras.update(self.cameras)
        topics.update(self.camera_topics)
        children = {t.child for t in self.transforms}
        pairs = {frozenset((t.parent, t.child)) for t in self.transforms}
        kept = (t for t in other.transforms if t.child not in children and {t.parent, t.child} not in pairs)
        transforms = (*kept, *self.transforms)
        return Calibration(
            cameras=cameras,
            transforms=transforms,
            source=f"{self.source} over {other.source}",
            camera_topics=topics,
        )


def _check_no_loop(source: str, transforms: tuple[Transform, ...]) -> None:
    """Raise CalibrationError when the transforms, as undirected edges, close a loop."""
    root: dict[str, str] = {}

    def find(frame: str) -> str:
        while root.setdefault(frame, frame) != frame:
            frame = root[frame]
        return frame

    for t in transforms:
        a, b = find(t.parent), find(t.child)
        if a == b:
            raise CalibrationError(
                f"{source}: the transform '{t.parent}' <- '{t.child}' closes a loop with the others "
                "(the two frames are already related); keep one chain between any two frames"
            )
        root[a] = b
