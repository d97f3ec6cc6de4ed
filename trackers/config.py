"""Tracker configuration: per-category `Params` and the `TrackerConfig` that holds them.

Frozen dataclasses, loadable from a mapping or a TOML file:

    [tracker]
    matcher = "hungarian"
    [tracker.params.car]
    cost = "giou_3d"
    cost_threshold = 1.5
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from fusion.boxes import CATEGORIES
from trackers.errors import TrackingError

CostName = Literal["giou_3d", "bev_iou", "centre_distance"]
MatcherName = Literal["hungarian", "greedy"]
COST_NAMES: Final = ("giou_3d", "bev_iou", "centre_distance")
MATCHER_NAMES: Final = ("hungarian", "greedy")


@dataclass(frozen=True)
class Params:
    """Tracking parameters of one category."""

    # lifecycle
    min_hits: int = 3  # matched frames (birth included) before a TENTATIVE track is CONFIRMED
    max_age_frames: int = 10  # consecutive missed frames after which a LOST track is DEAD
    max_age_s: float = 1.5  # ... or seconds since its last match, whichever comes first
    # detection scores
    score_high: float = 0.5  # detections at or above: first association stage, and may start tracks
    score_low: float = 0.1  # detections below are dropped; [score_low, score_high) only extend tracks
    score_decay: float = 0.9  # factor per missed frame applied to a LOST track's output score
    # output policy (TrackerConfig.output_tentative / output_lost widen it to every such track)
    output_misses: int = 0  # a LOST track is output (predicted box) for its first this many missed frames
    score_ramp_hits: int = 1  # output score times min(1, hits / this): young tracks rank below old ones
    # association
    cost: CostName = "giou_3d"  # "giou_3d" (1 - GIoU, in [0, 2]), "bev_iou" (1 - IoU), "centre_distance" (m)
    cost_threshold: float = 1.2  # pairs with a larger cost never match (1.2: fewest id switches, KITTI train)
    gate_m: float = 8.0  # pairs with centres further apart (m) never match (also skips the cost)
    # a LOST (coasting) track never matches a detection whose ground-plane centre is more than this many
    # standard deviations from its prediction (Mahalanobis: predicted x, y covariance plus r_pos^2); 0: off.
    # World-frame tracking only (poses given)
    gate_sigma: float = 7.0
    # motion model and noise (standard deviations)
    motion: str = "cv"  # key of trackers.motion.MOTION_MODELS: "cv" or "ctrv"
    q_accel: float = 2.0  # process: linear acceleration, m/s^2
    q_yaw_rate: float = 0.5  # process: yaw rate (cv) or yaw acceleration (ctrv), rad/s (rad/s^2)
    q_z: float = 0.2  # process: vertical velocity (cv: vz random walk m/s^2; ctrv: z random walk m/sqrt(s))
    q_size: float = 0.05  # process: size random walk, m/sqrt(s)
    r_pos: float = 0.2  # measurement: centre x, y, z, m
    r_yaw: float = 0.1  # measurement: yaw, rad
    r_size: float = 0.2  # measurement: length, width, height, m
    init_speed_std: float = 10.0  # initial velocity uncertainty of a new track, m/s
    init_yaw_rate_std: float = 1.0  # initial yaw rate uncertainty (ctrv), rad/s

    def __post_init__(self) -> None:
        if self.cost not in COST_NAMES:
            raise TrackingError(f"cost {self.cost!r} is not one of {', '.join(COST_NAMES)}")
        if self.gate_sigma < 0:
            raise TrackingError(f"gate_sigma must be >= 0 (0: off), got {self.gate_sigma}")
        if self.min_hits < 1 or self.max_age_frames < 0 or self.max_age_s < 0:
            raise TrackingError("min_hits must be >= 1 and max_age_frames, max_age_s >= 0")
        if self.output_misses < 0 or self.score_ramp_hits < 1:
            raise TrackingError(
                f"need output_misses >= 0 and score_ramp_hits >= 1, got {self.output_misses}, "
                f"{self.score_ramp_hits}"
            )
        if not 0.0 <= self.score_low <= self.score_high:
            raise TrackingError(f"need 0 <= score_low <= score_high, got {self.score_low}, {self.score_high}")
        noises = ("q_accel", "q_yaw_rate", "q_z", "q_size", "r_pos", "r_yaw", "r_size", "init_speed_std")
        if any(getattr(self, n) <= 0 for n in noises):
            raise TrackingError(f"noise standard deviations {', '.join(noises)} must be > 0")


_VEHICLE = Params()
DEFAULT_PARAMS: Final[Mapping[str, Params]] = MappingProxyType(
    {
        "car": _VEHICLE,
        "truck": replace(_VEHICLE, r_pos=0.3, r_size=0.4, gate_m=10.0),
        "bus": replace(_VEHICLE, r_pos=0.4, r_size=0.5, gate_m=12.0),
        "pedestrian": replace(
            _VEHICLE,
            cost="centre_distance",
            cost_threshold=1.0,
            gate_m=2.0,
            q_accel=1.5,
            q_yaw_rate=1.5,
            r_pos=0.1,
            r_yaw=0.6,
            r_size=0.1,
            init_speed_std=2.0,
        ),
        "cyclist": replace(
            _VEHICLE,
            cost="giou_3d",
            cost_threshold=1.6,  # small boxes: a 1.7 m bicycle moves ~1.4 m a frame relative to the ego
            gate_m=4.0,
            q_yaw_rate=1.0,
            r_pos=0.15,
            init_speed_std=5.0,
        ),
        "motorcycle": replace(_VEHICLE, gate_m=5.0, q_yaw_rate=1.0, r_pos=0.15),
        "unknown": replace(_VEHICLE, cost="centre_distance", cost_threshold=2.0, gate_m=3.0, min_hits=4),
    }
)

# Output policy "ranked", for consumers that threshold the score themselves (sAMOTA / AMOTA sweeps,
# pre-labels reviewed by score): every track is output from its first detection (min_hits 1: a
# TENTATIVE track dies at its first miss, so min_hits > 1 loses objects whose detections flicker and
# re-births them under new ids), coasts one missed frame, and scores min(1, hits / 6) times its
# detection score, so that young (often false) tracks rank below established ones. KITTI training
# split, PointRCNN, no ego motion: sAMOTA car +6.5, pedestrian +3.3, cyclist +7.5 over DEFAULT_PARAMS,
# no more id switches at the best-MOTA threshold; HOTA and IDF1 (all outputs, unthresholded) drop.
RANKED_PARAMS: Final[Mapping[str, Params]] = MappingProxyType(
    {c: replace(p, min_hits=1, output_misses=1, score_ramp_hits=6) for c, p in DEFAULT_PARAMS.items()}
)
OUTPUT_POLICIES: Final[Mapping[str, Mapping[str, Params]]] = MappingProxyType(
    {"confirmed": DEFAULT_PARAMS, "ranked": RANKED_PARAMS}
)


@dataclass(frozen=True)
class TrackerConfig:
    """Configuration of the online tracker."""

    params: Mapping[str, Params] = field(default_factory=lambda: DEFAULT_PARAMS)  # per category
    matcher: MatcherName = "hungarian"  # "hungarian" (optimal) or "greedy" (lowest cost first)
    match_across_categories: bool = False  # let a detection update a track of another category
    output_tentative: bool = False  # also output TENTATIVE tracks
    output_lost: bool = False  # also output LOST tracks (predicted boxes, decayed score)

    def __post_init__(self) -> None:
        if self.matcher not in MATCHER_NAMES:
            raise TrackingError(f"matcher {self.matcher!r} is not one of {', '.join(MATCHER_NAMES)}")
        if missing := set(CATEGORIES) - set(self.params):
            raise TrackingError(f"params lack categories {sorted(missing)}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> TrackerConfig:
        """Config from a mapping: top-level fields, `params.default` (applied to every category) and
        `params.<category>` tables, each overriding the built-in defaults field by field."""
        known = {f.name for f in fields(cls)} - {"params"}
        if unknown := set(mapping) - known - {"params"}:
            allowed = sorted(known | {"params"})
            raise TrackingError(f"unknown tracker config keys {sorted(unknown)}; use {allowed}")
        raw_params: Mapping[str, Mapping[str, Any]] = mapping.get("params", {})
        param_fields = {f.name for f in fields(Params)}
        if unknown_cats := set(raw_params) - set(CATEGORIES) - {"default"}:
            raise TrackingError(f"unknown categories {sorted(unknown_cats)} in params")
        params: dict[str, Params] = {}
        for cat in CATEGORIES:
            overrides = {**raw_params.get("default", {}), **raw_params.get(cat, {})}
            if bad := set(overrides) - param_fields:
                raise TrackingError(f"unknown params {sorted(bad)} for {cat}; use {sorted(param_fields)}")
            params[cat] = replace(DEFAULT_PARAMS[cat], **overrides)
        top = {k: v for k, v in mapping.items() if k in known}
        return cls(params=MappingProxyType(params), **top)

    def to_mapping(self) -> dict[str, Any]:
        """The effective configuration as plain values, to write with the output (`from_mapping` reads it)."""
        top: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "params"}
        top["params"] = {c: {f.name: getattr(p, f.name) for f in fields(p)} for c, p in self.params.items()}
        return top

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (pickle cannot take its read-only params mapping as it is), so a pass of
        `trackers.refine.track_both_ways` can run in another process."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["params"] = dict(self.params)
        return (_tracker_config, (values,))

    @classmethod
    def from_toml(cls, path: str | Path, table: str = "tracker") -> TrackerConfig:
        """Config from the `[tracker]` table (or the whole file when it has none) of a TOML file."""
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
        return cls.from_mapping(data.get(table, data))


def _tracker_config(values: dict[str, Any]) -> TrackerConfig:
    """`TrackerConfig.__reduce__`'s inverse."""
    return TrackerConfig(**{**values, "params": MappingProxyType(values["params"])})
