"""Ground truth of a simulated log, in the labels layout of shared/CONTRACT.md.

One row per actor per sweep, for the actors the sweep actually hit (`num_points` >= `min_points`,
1 by default, as KITTI and nuScenes keep boxes with at least one point): an actor hidden behind
another, or out of range, has no row in that sweep.

- Box: the actor's exact box at the sweep's header stamp, in the lidar frame at that stamp
  (centre at the geometric centre, yaw wrapped to [-pi, pi)); `world_*` the same box in `odom`;
  `velocity_*` its exact world velocity.
- `num_points`: the sweep's points the ray caster attributes to that actor. Points are captured
  over the whole sweep and are not motion compensated, so a moving actor's points do not all
  fall inside its box at the stamp; they do lie on its box at their own capture time.
- `camera_boxes`: per camera, the 2D extent of the actor's box as that camera's image shows it:
  the box at the instant the camera fired (when the sweep crossed its optical axis), seen from
  the camera's pose at that instant, clipped against the near plane, projected through the lens
  distortion (edges sampled densely, so curved edges count) and clipped to the image. Occlusion
  is ignored (an amodal box); cameras where no part of the box is in the image are absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from calib.projection import box_corners as _box_corners_of
from calib.projection import project_box_corners
from calib.transform import wrap_angle
from fusion.simulate.camera_render import camera_from_world
from fusion.simulate.geometry import apply, inverse, yaw_of
from fusion.simulate.lidar import Sweep
from fusion.simulate.rig import Rig
from fusion.simulate.scene import Scene

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class FrameTruth:
    """Ground truth of one sweep; M rows, K camera boxes.

    actor: (M,) int64 index into Scene.actors.  boxes: (M, 7) lidar frame x y z l w h yaw.
    world_boxes: (M, 4) world x y z yaw.  velocity: (M, 2) world vx vy.  num_points: (M,) int64.
    box_row: (K,) int64 row of each camera box; box_camera: (K,) camera names;
    box_extent: (K, 4) float64 x_min y_min x_max y_max pixels.
    """

    frame_index: int
    stamp_ns: int
    actor: npt.NDArray[np.int64]
    track_id: npt.NDArray[np.int64]
    category: tuple[str, ...]
    boxes: F64
    world_boxes: F64
    velocity: F64
    num_points: npt.NDArray[np.int64]
    box_row: npt.NDArray[np.int64]
    box_camera: tuple[str, ...]
    box_extent: F64


def box_corners(states: F64, half: F64) -> F64:
    """World corners (M, 8, 3) of boxes with states (M, >=4) x y z yaw and half sizes (M, 3).

    Corners in the order of `calib.projection.box_corners`.
    """
    boxes = np.concatenate([states[:, :3], 2.0 * half, states[:, 3:4]], axis=1)
    return _box_corners_of(boxes)


def frame_truth(scene: Scene, rig: Rig, sweep: Sweep, *, min_points: int = 1) -> FrameTruth:
    """The ground-truth rows of one sweep (see the module docstring)."""
    hit = sweep.actor[sweep.actor >= 0]
    counts = np.bincount(hit, minlength=len(scene.actors))
    actors = np.flatnonzero(counts >= max(min_points, 1)).astype(np.int64)
    stamp = np.array([sweep.stamp_ns], dtype=np.int64)
    states = scene.actor_states(stamp, actors.tolist())[0]  # (M, 6)
    half = scene.actor_half_sizes()[actors]
    world_from_lidar = scene.world_from_base(stamp)[0] @ rig.lidar.base_from_lidar()
    centre = apply(inverse(world_from_lidar), states[:, :3])
    yaw = wrap_angle(states[:, 3] - yaw_of(world_from_lidar))
    boxes = np.concatenate([centre, 2.0 * half, yaw[:, None]], axis=1)
    world = np.concatenate([states[:, :3], wrap_angle(states[:, 3])[:, None]], axis=1)

    rows: list[npt.NDArray[np.int64]] = []
    names: list[str] = []
    extents: list[F64] = []
    for mount in rig.cameras:  # a loop over cameras; each call is vectorised over boxes
        t_cam = sweep.stamp_ns + rig.trigger_offset_ns(mount)
        at_trigger = scene.actor_states(np.array([t_cam]), actors.tolist())[0]
        corners = apply(camera_from_world(scene, mount, t_cam)[None, None], box_corners(at_trigger, half))
        ext, visible = project_box_corners(mount.camera, corners)
        rows.append(np.flatnonzero(visible).astype(np.int64))
        names.extend([mount.name] * int(visible.sum()))
        extents.append(ext[visible])
    return FrameTruth(
        frame_index=sweep.index,
        stamp_ns=sweep.stamp_ns,
        actor=actors,
        track_id=np.array([scene.actors[a].track_id for a in actors], dtype=np.int64),
        category=tuple(scene.actors[a].category for a in actors),
        boxes=boxes,
        world_boxes=world,
        velocity=states[:, 4:6].copy(),
        num_points=counts[actors].astype(np.int64),
        box_row=np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
        box_camera=tuple(names),
        box_extent=np.concatenate(extents) if extents else np.zeros((0, 4)),
    )
