"""The simulated world: a curving road, the ego vehicle, moving and parked actors, static structures.

Everything moves on smooth analytic trajectories, so the exact state of anything at any instant is
known: that is what makes the ground truth exact.

The world frame is `odom` (fixed): x forward and y left of the ego's start pose, z up; the ego's
`base_link` starts at the origin. The road is a circle of centreline radius R curving left; a
point on it is given by its arc length `s` along the centreline (0 at the ego's start) and its
lateral offset `d` (positive to the left)::

      d = +15    pavement / verge  (trees at 14.3, pedestrians at 12.2 and 13.3, poles at 11.0)
      d = +10.5  kerb (0.15 m high)                       ^ oncoming traffic: s decreasing
      d = +9.5   parked cars; +7.75 bike lane; +5.25, +1.75 lanes
      d =  0     centre line        ----- s ----->
      d = -1.75, -5.25 lanes (the ego drives at -5.25); -7.75 bike lane; -9.5 parked cars
      d = -10.5  kerb;  beyond: pavement, then buildings from |d| = 17

Time inside the scene is float seconds since `Scene.start_ns` (`scene.seconds(t_ns)`), converted
only here; every public boundary takes int nanoseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from fusion.simulate import raycast
from fusion.simulate.geometry import yaw_transform
from fusion.simulate.raycast import Material

F64 = npt.NDArray[np.float64]

START_NS: Final = 1_700_000_000_000_000_000
"""Scene epoch: the log starts here (2023-11-14T22:13:20Z), whatever the seed."""

LANE_WIDTH: Final = 3.5
EGO_LANE_D: Final = -5.25
EDGE_D: Final = 7.0
BIKE_D: Final = 7.75
PARKING_D: Final = 9.5
CURB_D: Final = 10.5
VERGE_D: Final = 15.0
CROSSWALK_S: Final = 85.0
CROSSWALK_HALF: Final = 2.0

# Object sizes (length, width, height), metres: nominal values, jittered per object.
SIZES: Final[dict[str, tuple[float, float, float]]] = {
    "car": (4.6, 1.85, 1.5),
    "truck": (9.5, 2.5, 3.4),
    "bus": (12.0, 2.55, 3.1),
    "pedestrian": (0.55, 0.6, 1.75),
    "cyclist": (1.8, 0.65, 1.7),
    "motorcycle": (2.1, 0.8, 1.5),
}


@dataclass(frozen=True)
class Road:
    """A circular road curving left, and the ground around it (see `raycast` for the height field)."""

    radius: float = 180.0  # centreline radius, metres
    grade_x: float = 0.012  # ground slope along world x
    grade_y: float = -0.006  # ground slope along world y
    crown: float = 0.002  # carriageway height -crown * d^2
    curb_height: float = 0.15
    undulation: float = 0.12  # amplitude of a gentle sin * cos undulation, metres
    undulation_kx: float = 1.0 / 55.0
    undulation_ky: float = 1.0 / 70.0

    @property
    def center(self) -> tuple[float, float]:
        """The circle's centre in the world: the ego's lane passes through the origin heading +x."""
        return 0.0, self.radius - EGO_LANE_D

    @property
    def circumference(self) -> float:
        return 2.0 * math.pi * self.radius

    def ground_params(self) -> F64:
        """The height-field parameter vector of `raycast` ((NUM_GROUND_PARAMS,) float64)."""
        g = np.zeros(raycast.NUM_GROUND_PARAMS)
        g[raycast.G_CX], g[raycast.G_CY] = self.center
        g[raycast.G_RADIUS] = self.radius
        g[raycast.G_GRADE_X] = self.grade_x
        g[raycast.G_GRADE_Y] = self.grade_y
        g[raycast.G_CROWN] = self.crown
        g[raycast.G_CURB_D] = CURB_D
        g[raycast.G_CURB_H] = self.curb_height
        g[raycast.G_AMP] = self.undulation
        g[raycast.G_KX] = self.undulation_kx
        g[raycast.G_KY] = self.undulation_ky
        g[raycast.G_Z0] = self.crown * EGO_LANE_D**2  # ground height 0 under the ego's start
        g[raycast.G_VERGE_D] = VERGE_D
        g[raycast.G_LANE_W] = LANE_WIDTH
        g[raycast.G_EDGE_D] = EDGE_D
        g[raycast.G_CROSS_S] = CROSSWALK_S
        g[raycast.G_CROSS_HALF] = CROSSWALK_HALF
        slope = 2.0 * self.crown * CURB_D + self.undulation * (self.undulation_kx + self.undulation_ky)
        g[raycast.G_LIPSCHITZ] = 1.25 * slope
        road_edge = -self.crown * CURB_D**2
        g[raycast.G_RES_LO] = min(road_edge, road_edge + self.curb_height) - self.undulation - 1e-6
        g[raycast.G_RES_HI] = max(0.0, road_edge + self.curb_height) + self.undulation + 1e-6
        return g

    def to_world(self, s: npt.ArrayLike, d: npt.ArrayLike) -> tuple[F64, F64]:
        """World (x, y) of road coordinates (s, d); arrays broadcast."""
        cx, cy = self.center
        phi = -0.5 * math.pi + np.asarray(s, dtype=np.float64) / self.radius
        rho = self.radius - np.asarray(d, dtype=np.float64)
        return cx + rho * np.cos(phi), cy + rho * np.sin(phi)

    def tangent_yaw(self, s: npt.ArrayLike) -> F64:
        """Heading of the road's +s direction at arc length s."""
        return np.asarray(s, dtype=np.float64) / self.radius

    def height(self, x: npt.ArrayLike, y: npt.ArrayLike) -> F64:
        """Ground height at world (x, y); arrays broadcast, shape kept."""
        xb, yb = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        flat = raycast.ground_height(
            np.ascontiguousarray(xb).ravel(), np.ascontiguousarray(yb).ravel(), self.ground_params()
        )
        return np.asarray(flat.reshape(xb.shape), dtype=np.float64)


@dataclass(frozen=True)
class Planar:
    """States in the ground plane at T instants: x, y, yaw (radians), vx, vy (m/s); each (T,)."""

    x: F64
    y: F64
    yaw: F64
    vx: F64
    vy: F64


@dataclass(frozen=True)
class RoadTrajectory:
    """Motion along the road: s(t) = s0 + speed t + surge sin(omega t + phase), d(t) = d0 or a lane change.

    `speed` is signed along +s (negative: oncoming). A parked object has speed 0 and faces +s
    (`facing` +1) or -s (-1), turned by `yaw_offset`. A moving object heads along its velocity.
    """

    road: Road
    s0: float
    d0: float
    speed: float = 0.0
    surge: float = 0.0  # metres
    surge_omega: float = 0.0  # rad/s; keep surge * omega well below |speed|
    surge_phase: float = 0.0
    d1: float | None = None  # lane-change target offset
    change_start_s: float = 0.0
    change_duration_s: float = 4.0
    facing: float = 1.0
    yaw_offset: float = 0.0

    def params(self) -> F64:
        """(11,) the parameters `road_planar` takes, in its column order."""
        return np.array(
            [
                self.s0,
                self.d0,
                self.speed,
                self.surge,
                self.surge_omega,
                self.surge_phase,
                np.nan if self.d1 is None else self.d1,
                self.change_start_s,
                self.change_duration_s,
                self.facing,
                self.yaw_offset,
            ]
        )

    def planar(self, t_s: F64) -> Planar:
        p = road_planar(self.road, self.params()[None, :], np.asarray(t_s, dtype=np.float64))
        return Planar(p.x[:, 0], p.y[:, 0], p.yaw[:, 0], p.vx[:, 0], p.vy[:, 0])


def road_planar(road: Road, params: F64, t_s: F64) -> Planar:
    """States (T, A) of A road trajectories (params: (A, 11), `RoadTrajectory.params`) at times (T,)."""
    t = np.asarray(t_s, dtype=np.float64)[:, None]
    s0, d0, speed, surge, omega, phase, d1, change_start, change_dur, facing, yaw_off = params.T
    arg = omega * t + phase
    s = s0 + speed * t + surge * np.sin(arg)
    s_dot = speed + surge * omega * np.cos(arg)
    changing = np.isfinite(d1)
    u = np.clip((t - change_start) / change_dur, 0.0, 1.0)
    smooth = u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)  # quintic smoothstep
    smooth_dot = 30.0 * u * u * (1.0 - u) ** 2 / change_dur
    delta = np.where(changing, d1 - d0, 0.0)
    d = d0 + delta * smooth
    d_dot = delta * smooth_dot
    cx, cy = road.center
    phi = -0.5 * math.pi + s / road.radius
    phi_dot = s_dot / road.radius
    rho = road.radius - d
    cos_phi = np.cos(phi)
    sin_phi = np.sin(phi)
    x = cx + rho * cos_phi
    y = cy + rho * sin_phi
    vx = -rho * phi_dot * sin_phi - d_dot * cos_phi
    vy = rho * phi_dot * cos_phi - d_dot * sin_phi
    parked_yaw = phi + 0.5 * math.pi + np.where(facing > 0, 0.0, math.pi) + yaw_off
    yaw = np.where(speed != 0.0, np.arctan2(vy, vx), parked_yaw)
    return Planar(x, y, yaw, vx, vy)


@dataclass(frozen=True, eq=False)
class PathTrajectory:
    """Walking a world polyline at constant speed from `start_s` (seconds); standing before and after.

    waypoints: (K, 2) world x, y, K >= 2. The heading is the current segment's.
    """

    waypoints: F64
    speed: float
    start_s: float = 0.0
    _cumulative: F64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        seg = np.diff(self.waypoints, axis=0)
        object.__setattr__(
            self, "_cumulative", np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
        )

    def planar(self, t_s: F64) -> Planar:
        t = np.asarray(t_s, dtype=np.float64)
        cum = self._cumulative
        total = cum[-1]
        travelled = self.speed * (t - self.start_s)
        dist = np.clip(travelled, 0.0, total)
        seg = np.clip(np.searchsorted(cum, dist, side="right") - 1, 0, len(cum) - 2)
        p0 = self.waypoints[seg]
        p1 = self.waypoints[seg + 1]
        seg_len = cum[seg + 1] - cum[seg]
        frac = (dist - cum[seg]) / seg_len
        x = p0[:, 0] + frac * (p1[:, 0] - p0[:, 0])
        y = p0[:, 1] + frac * (p1[:, 1] - p0[:, 1])
        ux = (p1[:, 0] - p0[:, 0]) / seg_len
        uy = (p1[:, 1] - p0[:, 1]) / seg_len
        moving = (travelled > 0.0) & (travelled < total)
        speed = np.where(moving, self.speed, 0.0)
        return Planar(x, y, np.arctan2(uy, ux), speed * ux, speed * uy)


Trajectory = RoadTrajectory | PathTrajectory


@dataclass(frozen=True)
class Actor:
    """A labelled object: stable `track_id`, a contract category, a box size and a trajectory."""

    track_id: int
    category: str
    length: float
    width: float
    height: float
    trajectory: Trajectory
    color: tuple[int, int, int]  # RGB in the rendered images


@dataclass(frozen=True, eq=False)
class StaticWorld:
    """Unlabelled structures. boxes: (S, 7) x, y, z centre, half l, half w, half h, yaw;
    cylinders: (C, 5) x, y, z bottom, z top, radius; spheres: (P, 4) x, y, z, radius;
    each with a (., ) uint8 `Material`."""

    boxes: F64
    box_material: npt.NDArray[np.uint8]
    cylinders: F64
    cylinder_material: npt.NDArray[np.uint8]
    spheres: F64
    sphere_material: npt.NDArray[np.uint8]

    def near(self, x: float, y: float, radius: float) -> StaticWorld:
        """The structures that may lie within `radius` of world (x, y)."""
        box_r = np.hypot(self.boxes[:, 3], self.boxes[:, 4])
        keep_b = np.hypot(self.boxes[:, 0] - x, self.boxes[:, 1] - y) <= radius + box_r
        keep_c = np.hypot(self.cylinders[:, 0] - x, self.cylinders[:, 1] - y) <= radius + self.cylinders[:, 4]
        keep_s = np.hypot(self.spheres[:, 0] - x, self.spheres[:, 1] - y) <= radius + self.spheres[:, 3]
        return StaticWorld(
            np.ascontiguousarray(self.boxes[keep_b]),
            np.ascontiguousarray(self.box_material[keep_b]),
            np.ascontiguousarray(self.cylinders[keep_c]),
            np.ascontiguousarray(self.cylinder_material[keep_c]),
            np.ascontiguousarray(self.spheres[keep_s]),
            np.ascontiguousarray(self.sphere_material[keep_s]),
        )


@dataclass(frozen=True, eq=False)
class Scene:
    """The whole simulated world for one seed. `ego` moves `base_link` (on the ground, yaw only)."""

    seed: int
    start_ns: int
    road: Road
    ego: RoadTrajectory
    actors: tuple[Actor, ...]
    static: StaticWorld
    ground: F64  # (NUM_GROUND_PARAMS,) raycast height-field parameters
    _half: F64 = field(init=False, repr=False)
    _on_road: npt.NDArray[np.intp] = field(init=False, repr=False)
    _road_params: F64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        half = np.array([[a.length, a.width, a.height] for a in self.actors], dtype=np.float64).reshape(-1, 3)
        on_road = [i for i, a in enumerate(self.actors) if isinstance(a.trajectory, RoadTrajectory)]
        params = [self.actors[i].trajectory.params() for i in on_road]  # type: ignore[union-attr]
        object.__setattr__(self, "_half", 0.5 * half)
        object.__setattr__(self, "_on_road", np.array(on_road, dtype=np.intp))
        object.__setattr__(self, "_road_params", np.array(params, dtype=np.float64).reshape(-1, 11))

    def seconds(self, t_ns: npt.ArrayLike) -> F64:
        """Scene time (float seconds since start_ns) of int-nanosecond stamps."""
        return (np.asarray(t_ns, dtype=np.int64) - self.start_ns).astype(np.float64) * 1e-9

    def world_from_base(self, t_ns: npt.ArrayLike) -> F64:
        """Ego poses (..., 4, 4) at stamps t_ns (...,): `odom_from_base_link`."""
        t = self.seconds(t_ns)
        p = self.ego.planar(np.atleast_1d(t).ravel())
        z = self.road.height(p.x, p.y)
        return yaw_transform(p.x, p.y, z, p.yaw).reshape(*np.shape(t), 4, 4)

    def ego_velocity(self, t_ns: npt.ArrayLike) -> tuple[F64, F64]:
        """Ego world velocity (..., 2) and yaw rate (...,) rad/s at stamps t_ns."""
        t = np.atleast_1d(self.seconds(t_ns)).ravel()
        p = self.ego.planar(t)
        dt = 1e-4
        ahead = self.ego.planar(t + dt).yaw
        behind = self.ego.planar(t - dt).yaw
        rate = np.angle(np.exp(1j * (ahead - behind))) / (2.0 * dt)
        shape = np.shape(self.seconds(t_ns))
        return np.stack([p.vx, p.vy], axis=-1).reshape(*shape, 2), rate.reshape(shape)

    def actor_states(
        self, t_ns: npt.ArrayLike, actors: Sequence[int] | npt.NDArray[np.intp] | None = None
    ) -> F64:
        """States (T, A, 6) x, y, z (box centre), yaw, vx, vy at stamps t_ns (T,).

        actors: indices into `actors` (all by default).
        """
        t = np.atleast_1d(self.seconds(t_ns)).ravel()
        which = (
            np.arange(len(self.actors)) if actors is None else np.asarray(actors, dtype=np.intp).reshape(-1)
        )
        out = np.zeros((len(t), len(which), 6))
        if len(which) == 0:
            return out
        rank = np.full(len(self.actors), -1, dtype=np.intp)
        rank[self._on_road] = np.arange(len(self._on_road))
        road_rows = rank[which]
        on_road = road_rows >= 0
        if on_road.any():
            p = road_planar(self.road, self._road_params[road_rows[on_road]], t)
            for column, values in zip((0, 1, 3, 4, 5), (p.x, p.y, p.yaw, p.vx, p.vy), strict=True):
                out[:, on_road, column] = values
        for j in np.flatnonzero(~on_road):  # walkers: a loop over actors, each vectorised over time
            p1 = self.actors[which[j]].trajectory.planar(t)
            out[:, j, [0, 1, 3, 4, 5]] = np.stack([p1.x, p1.y, p1.yaw, p1.vx, p1.vy], axis=1)
        out[..., 2] = self.road.height(out[..., 0], out[..., 1]) + self._half[which, 2][None, :]
        return out

    def actor_half_sizes(self) -> F64:
        """(A, 3) half length, half width, half height of every actor."""
        return self._half


def ego_trajectory(road: Road) -> RoadTrajectory:
    """The ego: ~12 m/s in the right-hand outer lane, gently surging."""
    return RoadTrajectory(road, s0=0.0, d0=EGO_LANE_D, speed=12.0, surge=1.2, surge_omega=0.5)


def build_scene(seed: int = 0, *, start_ns: int = START_NS) -> Scene:
    """The deterministic scene for `seed`: the whole circular road is populated, so the world does
    not depend on how long a log runs (a shorter log is a prefix of a longer one).

    The scripted traffic (overtaking, oncoming, leaving and entering range, a truck hiding a
    pedestrian, a crossing pedestrian) is the same for every seed up to small jitter; parked
    cars, pedestrians on the pavements and static structures are drawn from the seed, each kind
    and side from its own random stream.
    """

    def stream(*key: int) -> np.random.Generator:
        return np.random.default_rng([seed, 0x5C3E, *key])

    road = Road()
    ego = ego_trajectory(road)
    s_lo = -130.0
    s_hi = s_lo + road.circumference - 10.0
    actors = _scripted_actors(road, stream(0))
    for k, side in enumerate((-1.0, 1.0)):
        actors += _parked_cars(road, stream(1, k), side, s_lo, s_hi)
    for k, side in enumerate((-1.0, 1.0)):
        actors += _walkers(road, stream(2, k), side, s_lo, s_hi)
    actors = [
        Actor(i + 1, a.category, a.length, a.width, a.height, a.trajectory, a.color)
        for i, a in enumerate(actors)
    ]
    static = _static_world(road, stream, s_lo, s_hi)
    return Scene(seed, start_ns, road, ego, tuple(actors), static, road.ground_params())


# -- population ------------------------------------------------------------------------------

_CAR_COLORS: Final = (
    (200, 30, 35),
    (30, 60, 160),
    (235, 235, 235),
    (25, 25, 28),
    (150, 155, 160),
    (20, 110, 60),
    (230, 180, 20),
    (110, 40, 120),
    (90, 60, 40),
    (60, 140, 200),
)


def _size(category: str, rng: np.random.Generator) -> tuple[float, float, float]:
    length, width, height = SIZES[category]
    jitter = rng.uniform(-1.0, 1.0, 3) * np.array([0.06, 0.04, 0.05])
    return (
        round(length * (1.0 + jitter[0]), 3),
        round(width * (1.0 + jitter[1]), 3),
        round(height * (1.0 + jitter[2]), 3),
    )


def _color(category: str, rng: np.random.Generator) -> tuple[int, int, int]:
    if category == "car":
        r, g, b = _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))]
        return (r, g, b)
    base = {
        "truck": (240, 240, 235),
        "bus": (250, 200, 30),
        "pedestrian": (60, 50, 120),
        "cyclist": (220, 90, 20),
        "motorcycle": (40, 40, 40),
    }[category]
    shade = rng.uniform(0.8, 1.1)
    return (min(255, int(base[0] * shade)), min(255, int(base[1] * shade)), min(255, int(base[2] * shade)))


def _actor(category: str, trajectory: Trajectory, rng: np.random.Generator) -> Actor:
    length, width, height = _size(category, rng)
    return Actor(0, category, length, width, height, trajectory, _color(category, rng))


def _scripted_actors(road: Road, rng: np.random.Generator) -> list[Actor]:
    def j(a: float) -> float:
        return float(rng.uniform(-a, a))

    def on_road(category: str, s0: float, d0: float, speed: float, **kw: float) -> Actor:
        surge = kw.pop("surge", 0.0)
        omega = kw.pop("surge_omega", 0.0)
        traj = RoadTrajectory(
            road, s0=s0, d0=d0, speed=speed, surge=surge, surge_omega=omega, surge_phase=j(math.pi), **kw
        )
        return _actor(category, traj, rng)

    lanes_fwd = (-1.75, EGO_LANE_D)
    lanes_back = (1.75, 5.25)
    actors = [
        # lead car in the ego's lane, same mean speed
        on_road("car", 22.0 + j(1.0), EGO_LANE_D, 12.0, surge=1.0, surge_omega=0.4),
        # overtaking the ego in the inner lane
        on_road("car", -14.0 + j(1.0), lanes_fwd[0], 18.0 + j(0.5), surge=0.8, surge_omega=0.6),
        # far ahead and faster: leaves the 100 m range
        on_road("car", 88.0 + j(1.0), lanes_fwd[0], 20.0 + j(0.5)),
        # oncoming: one passing, one entering range, a motorcycle, a truck, a bus
        on_road("car", 55.0 + j(1.0), lanes_back[0], -12.0 + j(0.5), surge=0.6, surge_omega=0.7),
        on_road("car", 130.0 + j(1.0), lanes_back[0], -13.0 + j(0.3)),
        on_road("motorcycle", 100.0 + j(1.0), lanes_back[0], -13.5 + j(0.3)),
        on_road("truck", 45.0 + j(0.5), lanes_back[1], -9.0 + j(0.3)),
        on_road("bus", 160.0 + j(1.0), lanes_back[1], -10.0 + j(0.3)),
        # cyclists in the bike lanes
        on_road("cyclist", 15.0 + j(1.0), -BIKE_D, 5.5 + j(0.3)),
        on_road("cyclist", 40.0 + j(1.0), BIKE_D, -5.0 + j(0.3)),
    ]
    # a pedestrian on the far pavement that the oncoming truck hides for a while
    actors.append(_walker(road, rng, 55.0 + j(0.5), -20.0, 12.2, 1.4, 0.0))
    # a pedestrian crossing at the zebra, mid-road at t = 0
    crossing_speed = 1.5
    x0, y0 = road.to_world(CROSSWALK_S, 12.5)
    x1, y1 = road.to_world(CROSSWALK_S, -12.5)
    start = -(12.5 - 1.0) / crossing_speed
    path = np.array([[float(x0), float(y0)], [float(x1), float(y1)]])
    actors.append(_actor("pedestrian", PathTrajectory(path, crossing_speed, start), rng))
    # a small group waiting at the zebra on the right
    for k in range(3):
        s = CROSSWALK_S - 2.5 - 0.8 * k + j(0.2)
        d = -11.25 - 0.3 * (k % 2) + j(0.05)
        traj = RoadTrajectory(road, s0=s, d0=d, facing=1.0, yaw_offset=0.5 * math.pi + j(0.4))
        actors.append(_actor("pedestrian", traj, rng))
    return actors


def _walker(
    road: Road, rng: np.random.Generator, s0: float, distance: float, d: float, speed: float, start_s: float
) -> Actor:
    """A pedestrian walking `distance` metres along the pavement at offset d (negative: towards -s)."""
    n = max(2, int(abs(distance)) + 1)
    s = np.linspace(s0, s0 + distance, n)
    x, y = road.to_world(s, d)
    return _actor("pedestrian", PathTrajectory(np.stack([x, y], axis=1), speed, start_s), rng)


def _parked_cars(road: Road, rng: np.random.Generator, side: float, s_lo: float, s_hi: float) -> list[Actor]:
    actors = []
    s = s_lo + float(rng.uniform(0.0, 8.0))
    while s < s_hi:
        if abs(s - CROSSWALK_S) < 9.0:
            s = CROSSWALK_S + 9.0
            continue
        if rng.random() < 0.25:  # an empty bay
            s += float(rng.uniform(5.0, 12.0))
            continue
        category = "truck" if rng.random() < 0.08 else "car"
        length, width, height = _size(category, rng)
        if category == "truck":  # a delivery van, not an articulated truck
            length, height = round(length * 0.65, 3), round(height * 0.8, 3)
        centre = s + 0.5 * length
        traj = RoadTrajectory(
            road,
            s0=centre,
            d0=side * PARKING_D + float(rng.uniform(-0.15, 0.15)),
            facing=-side,
            yaw_offset=float(rng.uniform(-0.03, 0.03)),
        )
        actors.append(Actor(0, category, length, width, height, traj, _color(category, rng)))
        s += length + float(rng.uniform(1.0, 4.0))
    return actors


def _walkers(road: Road, rng: np.random.Generator, side: float, s_lo: float, s_hi: float) -> list[Actor]:
    actors = []
    s = s_lo + float(rng.uniform(0.0, 30.0))
    while s < s_hi:
        forward = rng.random() < 0.5
        d = side * (12.2 if forward == (side < 0) else 13.3)
        speed = float(rng.uniform(1.1, 1.6))
        start = float(rng.uniform(-5.0, 0.0))
        actors.append(_walker(road, rng, s, 60.0 if forward else -60.0, d, speed, start))
        s += float(rng.uniform(25.0, 45.0))
    return actors


def _static_world(
    road: Road, stream: Callable[..., np.random.Generator], s_lo: float, s_hi: float
) -> StaticWorld:
    boxes: list[list[float]] = []
    box_mat: list[int] = []
    cylinders: list[list[float]] = []
    cyl_mat: list[int] = []
    spheres: list[list[float]] = []
    sph_mat: list[int] = []

    def ground(s: float, d: float) -> tuple[float, float, float]:
        x, y = road.to_world(s, d)
        return float(x), float(y), float(road.height(x, y))

    for k, side in enumerate((-1.0, 1.0)):
        # buildings, with the odd gap (a car park, a side street)
        rng = stream(3, k)
        s = s_lo
        while s < s_hi:
            length = float(rng.uniform(10.0, 30.0))
            if rng.random() < 0.15:
                s += length
                continue
            inner = float(rng.uniform(17.0, 20.0))
            depth = float(rng.uniform(8.0, 16.0))
            height = float(rng.uniform(5.0, 20.0))
            sc = s + 0.5 * length
            x, y, z = ground(sc, side * (inner + 0.5 * depth))
            boxes.append(
                [
                    x,
                    y,
                    z + 0.5 * height - 0.5,
                    0.5 * length,
                    0.5 * depth,
                    0.5 * height + 0.5,
                    float(road.tangent_yaw(sc)),
                ]
            )
            box_mat.append(Material.BUILDING)
            s += length + float(rng.uniform(2.0, 10.0))
        # street lights
        rng = stream(4, k)
        s = s_lo + float(rng.uniform(0.0, 20.0))
        while s < s_hi:
            x, y, z = ground(s, side * 11.0)
            cylinders.append([x, y, z - 0.2, z + 7.5, 0.09])
            cyl_mat.append(Material.POLE)
            s += float(rng.uniform(22.0, 30.0))
        # trees: trunk and canopy
        rng = stream(5, k)
        s = s_lo + float(rng.uniform(0.0, 10.0))
        while s < s_hi:
            if rng.random() < 0.6 and abs(s - CROSSWALK_S) > 4.0:
                x, y, z = ground(s, side * (14.3 + float(rng.uniform(-0.2, 0.2))))
                trunk = float(rng.uniform(2.0, 3.0))
                radius = float(rng.uniform(1.2, 2.0))
                cylinders.append([x, y, z - 0.2, z + trunk, float(rng.uniform(0.12, 0.22))])
                cyl_mat.append(Material.TRUNK)
                spheres.append([x, y, z + trunk + 0.7 * radius, radius])
                sph_mat.append(Material.FOLIAGE)
            s += float(rng.uniform(8.0, 16.0))
    return StaticWorld(
        np.array(boxes, dtype=np.float64).reshape(-1, 7),
        np.array(box_mat, dtype=np.uint8),
        np.array(cylinders, dtype=np.float64).reshape(-1, 5),
        np.array(cyl_mat, dtype=np.uint8),
        np.array(spheres, dtype=np.float64).reshape(-1, 4),
        np.array(sph_mat, dtype=np.uint8),
    )
