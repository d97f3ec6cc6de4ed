"""One LiDAR sweep: every column cast at its own instant from where the sensor was then.

Points are returned in the lidar frame *at their own capture time*: they are not motion
compensated, just as a real spinning sensor delivers them. The caster reports which actor each
point hit, which is what the ground truth's `num_points` counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from fusion.simulate.raycast import Material, cast_rays
from fusion.simulate.rig import LidarSpec
from fusion.simulate.scene import Scene

# Reflectivity (0..1) by material; an actor's by its category.
_REFLECTIVITY: Final[dict[int, float]] = {
    Material.ASPHALT: 0.08,
    Material.MARKING: 0.75,
    Material.CURB: 0.25,
    Material.SIDEWALK: 0.22,
    Material.GRASS: 0.15,
    Material.BUILDING: 0.32,
    Material.POLE: 0.45,
    Material.TRUNK: 0.18,
    Material.FOLIAGE: 0.12,
}
_ACTOR_REFLECTIVITY: Final[dict[str, float]] = {
    "car": 0.35,
    "truck": 0.4,
    "bus": 0.4,
    "pedestrian": 0.18,
    "cyclist": 0.25,
    "motorcycle": 0.3,
}


@dataclass(frozen=True, eq=False)
class Sweep:
    """One simulated sweep, points in capture (firing) order: column by column, ring 0 up.

    xyz: (N, 3) float32, lidar frame at each point's own capture time.
    intensity: (N,) float32, 0..255.  ring: (N,) uint16.
    time_offset_ns: (N,) int64, capture time minus `stamp_ns` (exact).
    actor: (N,) int32, index into `Scene.actors` of the actor hit, -1 for anything else.
    material: (N,) uint8 `Material` hit.
    """

    index: int
    stamp_ns: int
    xyz: npt.NDArray[np.float32]
    intensity: npt.NDArray[np.float32]
    ring: npt.NDArray[np.uint16]
    time_offset_ns: npt.NDArray[np.int64]
    actor: npt.NDArray[np.int32]
    material: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def time_offset_s(self) -> npt.NDArray[np.float32]:
        """(N,) float32 seconds since the stamp: the PointCloud2 `time` field."""
        return (self.time_offset_ns.astype(np.float64) * 1e-9).astype(np.float32)


def actors_near(
    scene: Scene, t_ns: npt.NDArray[np.int64], x: float, y: float, radius: float
) -> npt.NDArray[np.intp]:
    """Indices of the actors whose box may come within `radius` of (x, y) at some instant of t_ns (T,).

    Checks the first and last instant with a margin for the motion between them.
    """
    ends = np.array([t_ns[0], t_ns[-1]], dtype=np.int64)
    states = scene.actor_states(ends)  # (2, A, 6)
    half = scene.actor_half_sizes()
    reach = np.hypot(half[:, 0], half[:, 1])
    span_s = float(t_ns[-1] - t_ns[0]) * 1e-9
    speed = np.hypot(states[..., 4], states[..., 5]).max(axis=0)
    dist = np.hypot(states[..., 0] - x, states[..., 1] - y).min(axis=0)
    return np.flatnonzero(dist <= radius + reach + speed * span_s + 1.0)


def simulate_sweep(scene: Scene, lidar: LidarSpec, stamp_ns: int, *, index: int, noise_seed: int) -> Sweep:
    """Cast one sweep starting at `stamp_ns`; the range noise is drawn from (noise_seed, index)."""
    offsets = lidar.column_offsets_ns()
    times = stamp_ns + offsets
    world_from_lidar = scene.world_from_base(times) @ lidar.base_from_lidar()  # (C, 4, 4)
    dirs_lidar = lidar.beam_directions()  # (C, B, 3)
    num_cols, num_beams = dirs_lidar.shape[:2]
    dirs_world = np.einsum("cij,cbj->cbi", world_from_lidar[:, :3, :3], dirs_lidar)
    origins = np.broadcast_to(world_from_lidar[:, None, :3, 3], dirs_world.shape)

    mid = world_from_lidar[num_cols // 2, :2, 3]
    near = actors_near(scene, times, float(mid[0]), float(mid[1]), lidar.max_range + 2.0)
    poses = np.ascontiguousarray(scene.actor_states(times, near.tolist())[..., :4])  # (C, A, 4)
    half = np.ascontiguousarray(scene.actor_half_sizes()[near]).reshape(-1, 3)
    static = scene.static.near(float(mid[0]), float(mid[1]), lidar.max_range + 5.0)
    slot = np.repeat(np.arange(num_cols, dtype=np.int64), num_beams)
    columns = np.arange(0, num_cols * num_beams + 1, num_beams, dtype=np.int64)

    t, material, hit_actor, normal = cast_rays(
        np.ascontiguousarray(origins.reshape(-1, 3)),
        np.ascontiguousarray(dirs_world.reshape(-1, 3)),
        slot,
        columns,
        poses.reshape(num_cols, -1, 4),
        half,
        static.boxes,
        static.box_material,
        static.cylinders,
        static.cylinder_material,
        static.spheres,
        static.sphere_material,
        scene.ground,
        lidar.min_range,
        lidar.max_range,
    )
    rng = np.random.default_rng([noise_seed, 1, index])
    noisy = t + rng.normal(0.0, lidar.range_noise, t.shape)
    keep = np.isfinite(t) & (noisy >= lidar.min_range) & (noisy < lidar.max_range)

    flat_dirs = dirs_lidar.reshape(-1, 3)[keep]
    rng_k = noisy[keep]
    xyz = (flat_dirs * rng_k[:, None]).astype(np.float32)
    actor = np.where(hit_actor[keep] >= 0, near[np.maximum(hit_actor[keep], 0)], -1).astype(np.int32)
    mat = material[keep]

    reflect = np.zeros(256)
    for m, r in _REFLECTIVITY.items():
        reflect[m] = r
    refl = reflect[mat]
    if near.size:
        cat_refl = np.array([_ACTOR_REFLECTIVITY[scene.actors[a].category] for a in range(len(scene.actors))])
        refl = np.where(actor >= 0, cat_refl[np.maximum(actor, 0)], refl)
    cos_inc = np.abs(np.einsum("ij,ij->i", normal[keep].astype(np.float64), dirs_world.reshape(-1, 3)[keep]))
    intensity = 255.0 * refl * (0.35 + 0.65 * cos_inc) * rng.uniform(0.93, 1.07, rng_k.shape)

    ring = np.tile(np.arange(num_beams, dtype=np.uint16), num_cols)[keep]
    time_ns = np.repeat(offsets, num_beams)[keep]
    return Sweep(
        index=index,
        stamp_ns=stamp_ns,
        xyz=xyz,
        intensity=np.rint(np.clip(intensity, 0.0, 255.0)).astype(np.float32),  # sensors report integers
        ring=ring,
        time_offset_ns=time_ns.astype(np.int64),
        actor=actor,
        material=mat,
    )
