"""Offline 4D refinement of whole tracks: what an annotator would fix, done before they look.

    table = track_both_ways(frames, TrackerConfig())   # (boxes, t_ns, world_from_sensor) per frame
    refined = refine(table, RefineConfig())             # TrackTable, world frame

`track_both_ways` runs the online `Tracker` over the frames forward and over the reversed frames
(stamps negated, so they still increase), then merges the two passes:

    forward  tracks  F1 ──┐           F2 ───────        a miss early on split the object in two
    backward track   B1 ──┴──────────────────────       run from the end, it held on through the miss
    merged           F1 + F2 (one id)

A detection is identified by (frame, detection index); each pass assigns it at most one track id.
A union-find over the forward track ids joins the forward tracks that share detections with the same
backward track, most shared detections first, unless the two would then hold two different
detections in one frame (an id switch in either pass is not spread to a third track). Detections that
only the backward pass tracked join their backward track's group. The table holds the detections
themselves (world frame), one row per tracked detection.

`refine` then, per track (rows grouped by `track_id`):

0. join (categories in `join_frames`; by default pedestrians and cyclists, 30 frames): a track that
   ends at most that many frames before another of its category starts is joined to it when their
   ends agree: each end's position, from a line fitted to its `join_fit_frames` detections nearest
   the gap, extrapolated over the gap, lies within the category's `gate_m` * (`join_gate` +
   `join_gate_per_s` * the gap's seconds) of the other end, on average both ways; lowest
   disagreement first, each track end used once (chains of pieces allowed); the gap is then filled
   (step 6) whatever its length. The online passes retire a track after `max_age_frames` missed
   frames, so an object the detector misses for longer came out as two tracks (a walking pedestrian
   or a cyclist keeps a steady velocity, also relative to a sensor driving steadily, which the line
   carries over the gap).
1. score and filter: the track score is the mean of its top-k detection scores (`score_top_k`; 0: of
   all of them), for categories in `score_range_m` brought nearer 1 by exp(-the track's mean range /
   that distance) (the deficit a detector's confidence has at range), and scaled by min(1,
   detections / `full_score_frames`, or the category's `score_frames`);
   tracks with fewer than `min_track_frames` detections or a score below `min_track_score` are
   removed. The score is written to every box of the track.
2. smooth: a Rauch-Tung-Striebel smoother of a constant-velocity model per axis (x, y, z, then yaw)
   over every frame from the track's first detection to its last, with the category's noise
   (`trackers.config.Params`: q_accel, q_z, q_yaw_rate, r_pos, r_yaw). Frames without a detection
   are predicted only, so the smoothed states fill gaps (for straight, even motion: linearly).
3. heading: a box's yaw is only known up to pi (front and back look alike). Each detection's yaw is
   turned by pi when it points away from the reference heading: the smoothed velocity's direction
   where the track moves faster than `moving_speed_mps` (and `heading_from_velocity`: world-frame
   tracks), else the track's majority heading
   (score-weighted, over the axis of the yaws). Yaws further than `yaw_gate_rad` from the reference
   after that (a box fitted across the object) are not used. The aligned yaws are unwrapped along
   the track and smoothed like the positions.
4. size: one length, width and height per track, each the `size_quantile` of its detections weighted
   by score * num_points ** `size_points_power` (a LiDAR sees part of an object more often than too
   much of it, so a high quantile). With `anchor_seen_faces`, each detection's centre is then moved
   so that, at the track's size, the faces that faced the sensor stay where they were seen (a box
   fitted to the visible part of a car is too short, and centred too near the sensor); the positions
   are smoothed again from those centres (the vertical centre is kept: moving it measured worse).
   A moving object's detections are first corrected for the sweep (`sweep_spin`, `sweep_period_s`):
   a spinning LiDAR catches the face it passes later after the object moved on, so a car driving the
   way the beam sweeps across it looks longer by speed * that delay (0.3-0.4 m for a car passing 4 m
   away at 18 m/s), and the other way shorter; detections with a large such delay also weigh less.
   A dimension the sensor never saw (length: fewer than `size_seen_min` detections viewed at least
   `size_view_deg` away from end-on, i.e. the car ahead seen from behind, or, `size_typical_length`
   categories, no length measured, every one completed by the detector; width: from side-on) is
   at least the category's `size_prior` (a partial view only ever measures too short). Tracks
   without known sensor positions keep their measured size. A length the detector completed to a
   typical size rather than measured (`TrackTable.measured`, from `Boxes.measured`, shorter than the
   box) does not count for the length of a track of a `size_prior` category, unless its measured
   lengths carry less than `size_measured_share` of its weight and none of them is a car's length (at
   most `size_outlier_ratio` above the prior's, `size_typical_length` categories: a few measured
   lengths among many completed ones are a full view caught once, or a box merged with a neighbour,
   far longer than the car). A measured
   length more than `size_outlier_ratio` above the weighted median of the track's measured lengths is
   a box merged with a neighbour (the car parked behind, seen far off at a grazing angle) and does not
   count either. Boxes whose heading was gated out (`yaw_gate_rad`: fitted across the object, its
   length taken for their width) count for no dimension.
   Free space (`size_free_space`, `size_prior` categories): every observed extent of a detection
   (`TrackTable.measured`, completed or not, not merged nor fitted across; its sweep stretch taken
   out, less its smear, what that correction may have missed) is a lower bound of the length, and
   every finite `TrackTable.length_bound` (the geometric detector's: where the LiDAR's next ray beyond
   the far end passed the object) an upper one; where a track has an upper bound, its length is kept
   if it violates as few of these bounds as any length does, else moved to the nearest length that
   does (a wrong bound is outvoted by the others).
   Capture time (`capture_correction`): a spinning LiDAR catches a moving object when its beam passes
   it, up to a sweep period after the stamp (`TrackTable.capture_offset_ns`, from `fusion.capture`),
   and deskewing takes out the ego motion only, so a detected centre is where the object was then. The
   second smoothing takes each detected x, y as the position at that instant (measurement p + v *
   offset of the state (p, v) at the stamp: H = [1, offset]), so the smoothed boxes are where the
   objects were at the stamp (a car ahead at 16 m/s, caught 50 ms in, 0.8 m back). The velocity is
   the smoother's own, estimated with the positions (no velocity from an earlier pass is needed); the
   first smoothing (velocities for headings, the sweep stretch and sizes) is left as it was, so sizes
   and headings do not change. The sweep stretch corrects a box's length by the difference of its
   faces' capture times, this its centre by their mean: the two do not overlap. Unknown (NaN) offsets:
   no correction; held static objects are held at their detected centres, unmoved.
5. static objects: a track whose smoothed median speed is below `static_speed_mps` and whose
   smoothed path moves less than `static_displacement_m` (first to last frame), from the detected
   centres or from the anchored ones, is held at one pose,
   the median of its detections' centres and the mean aligned heading of those not gated out;
   velocity zero. With `static_robust` (default), also a track whose centres (detected or anchored)
   pass the same two limits robustly: its velocity the difference of the per-axis median centres of
   the later and the earlier half of its detections over the difference of their median times, its
   path that velocity times the track's duration. A parked car passed close by gets boxes the detector
   turned 15-120 degrees and shifted ~1 m in a run of frames; the smoother takes those for motion (a
   false 1-3 m/s), the halves' medians hardly move. A mover progresses, so its halves' medians part
   at its speed (a car creeping at 1.5 m/s is not held). A held track's heading is then the weighted
   median of its aligned yaws (about their mean), not the mean: turned boxes inside the yaw gate pull
   a mean.
6. output: the detected frames (origin "detected"), the frames of gaps of at most
   `max_gap_frames` and of the gaps tracks were joined across (origin "interpolated", num_points 0:
   the smoothed states there); other gaps stay empty.

Everything is in the world frame (the frame the table's boxes are in); times in int nanoseconds.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol, overload

import numpy as np
import numpy.typing as npt
from numba import njit

from calib.transform import wrap_angle
from fusion.boxes import CATEGORIES, Boxes, box_columns
from trackers.config import DEFAULT_PARAMS, Params, TrackerConfig
from trackers.errors import TrackingError
from trackers.online import Tracker
from trackers.types import TrackedBoxes

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bool = npt.NDArray[np.bool_]
Str = npt.NDArray[np.str_]

ORIGINS: Final = ("detected", "interpolated")
_CATEGORY_INDEX: Final = {c: i for i, c in enumerate(CATEGORIES)}
_CATEGORY_NAMES: Final = np.array(CATEGORIES, dtype="<U10")

Frame = tuple[Boxes, int, npt.ArrayLike | None]
"""One frame for `track_both_ways`: detections (sensor frame), stamp ns, world_from_sensor (4, 4) or None."""


@dataclass(frozen=True, eq=False)
class FrameDetections(Sequence[Frame]):
    """The frames of a sequence (F) and their detections (N) as a few columns, for `track_both_ways`:
    as a sequence, frame i is (`Boxes` of rows bounds[i]:bounds[i + 1] (views), t_ns[i], its pose),
    each made when asked for. What a long log's detections are held as instead of a `Boxes` and a
    pose per frame (a 5-minute 64-beam log: ~200k detections in 3,000 frames), and what is pickled
    when the backward pass runs elsewhere.

    bounds: (F + 1,) int64, frame i's rows are [bounds[i], bounds[i + 1]).
    t_ns: (F,) int64 stamps; world_from_sensor: (F, 4, 4) float64, a frame's pose where has_pose (F,).
    boxes: (N, 7) float64 (C order), category: (N,) int8 index into `fusion.boxes.CATEGORIES`,
    score: (N,) float32, num_points: (N,) int32, measured: (N, 2) float64, capture_offset_ns: (N,)
    float64, length_bound: (N,) float64 (`Boxes`' columns). frame_id: the sensor frame of the boxes.
    """

    bounds: I64
    t_ns: I64
    world_from_sensor: F64
    has_pose: Bool
    boxes: F64
    category: npt.NDArray[np.int8]
    score: F32
    num_points: I32
    measured: F64
    capture_offset_ns: F64
    length_bound: F64
    frame_id: str

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])

    @classmethod
    def of(cls, frames: Sequence[Frame]) -> FrameDetections:
        """The columns of `frames` (per frame: `Boxes`, stamp ns, world_from_sensor (4, 4) or None)."""
        columns = box_columns([boxes for boxes, _, _ in frames])
        bounds = np.zeros(len(frames) + 1, np.int64)
        np.cumsum(columns.pop("counts"), out=bounds[1:])
        poses = np.zeros((len(frames), 4, 4))
        has_pose = np.array([pose is not None for _, _, pose in frames], bool).reshape(-1)
        for k, (_, _, pose) in enumerate(frames):
            if pose is not None:
                poses[k] = np.asarray(pose, dtype=np.float64)
        return cls(
            bounds=bounds,
            t_ns=np.array([int(t_ns) for _, t_ns, _ in frames], np.int64),
            world_from_sensor=poses,
            has_pose=has_pose,
            frame_id=frames[0][0].frame_id if frames else "",
            **columns,
        )

    @overload
    def __getitem__(self, i: int) -> Frame: ...
    @overload
    def __getitem__(self, i: slice) -> list[Frame]: ...
    def __getitem__(self, i: int | slice) -> Frame | list[Frame]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} of {len(self)}")
        i %= len(self)
        lo, hi = int(self.bounds[i]), int(self.bounds[i + 1])
        boxes = Boxes(
            self.boxes[lo:hi],
            _CATEGORY_NAMES[self.category[lo:hi]],
            self.score[lo:hi],
            self.num_points[lo:hi],
            self.frame_id,
            int(self.t_ns[i]),
            self.measured[lo:hi],
            self.capture_offset_ns[lo:hi],
            self.length_bound[lo:hi],
        )
        return boxes, int(self.t_ns[i]), self.world_from_sensor[i] if self.has_pose[i] else None


@dataclass(frozen=True, eq=False)
class TrackTable:
    """Boxes of whole tracks, one row per box (N rows), in any row order.

    frame_index: (N,) int64, the frame's position in the sequence.
    t_ns: (N,) int64 the frame's stamp.
    track_id: (N,) int64.
    category: (N,) str, one of CATEGORIES.
    score: (N,) float32 in [0, 1]: a detection's score, or after `refine` its track's score.
    boxes_world: (N, 7) float64 x y z length width height yaw in the world (tracking) frame.
    origin: (N,) str, "detected" or "interpolated".
    num_points: (N,) int32 LiDAR points in the box (0 when unknown or interpolated).
    velocity: (N, 3) float64 world-frame velocity m/s (NaN when unknown).
    sensor_origin: (N, 3) float64 where the sensor was (world frame) when it saw the box (NaN when unknown).
    measured: (N, 2) float64 the length and width the detector measured (`Boxes.measured`: shorter than
        the box's where it completed a partial view to a typical size); the box's own when not given,
        and in `refine`'s output.
    capture_offset_ns: (N,) float64 when the LiDAR caught the detection minus `t_ns`
        (`Boxes.capture_offset_ns`): a moving object's detected box lies where it was then; NaN when
        unknown (not given: all NaN; and in `refine`'s output, whose boxes are at `t_ns`).
    length_bound: (N,) float64 the longest the object can be by the free space the LiDAR saw beyond
        it (`Boxes.length_bound`); +inf when unknown (not given: all +inf; and in `refine`'s output).
    """

    frame_index: I64
    t_ns: I64
    track_id: I64
    category: Str
    score: F32
    boxes_world: F64
    origin: Str
    num_points: I32
    velocity: F64
    sensor_origin: F64
    measured: F64
    capture_offset_ns: F64 = field(default_factory=lambda: np.zeros(0, np.float64))
    length_bound: F64 = field(default_factory=lambda: np.zeros(0, np.float64))

    def __post_init__(self) -> None:
        n = self.frame_index.shape[0]
        if self.capture_offset_ns.shape == (0,) and n:  # not given: unknown
            object.__setattr__(self, "capture_offset_ns", np.full(n, np.nan))
        if self.length_bound.shape == (0,) and n:  # not given: unknown
            object.__setattr__(self, "length_bound", np.full(n, np.inf))
        shapes = {
            "frame_index": (n,), "t_ns": (n,), "track_id": (n,), "category": (n,), "score": (n,),
            "boxes_world": (n, 7), "origin": (n,), "num_points": (n,), "velocity": (n, 3),
            "sensor_origin": (n, 3), "measured": (n, 2), "capture_offset_ns": (n,), "length_bound": (n,),
        }  # fmt: skip
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                got = getattr(self, name).shape
                raise TrackingError(f"TrackTable.{name} must have shape {shape}, got {got}")
        if n and (bad := {str(o) for o in np.unique(self.origin)} - set(ORIGINS)):
            raise TrackingError(f"unknown origins {sorted(bad)}; use one of {', '.join(ORIGINS)}")
        if n and (bad := {str(c) for c in np.unique(self.category)} - set(CATEGORIES)):
            raise TrackingError(f"unknown categories {sorted(bad)}; use one of {', '.join(CATEGORIES)}")

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    @classmethod
    def build(
        cls,
        *,
        frame_index: npt.ArrayLike,
        t_ns: npt.ArrayLike,
        track_id: npt.ArrayLike,
        category: Sequence[str] | Str,
        score: npt.ArrayLike,
        boxes_world: npt.ArrayLike,
        origin: str | Sequence[str] | Str = "detected",
        num_points: npt.ArrayLike | None = None,
        velocity: npt.ArrayLike | None = None,
        sensor_origin: npt.ArrayLike | None = None,
        measured: npt.ArrayLike | None = None,
        capture_offset_ns: npt.ArrayLike | None = None,
        length_bound: npt.ArrayLike | None = None,
    ) -> TrackTable:
        """A table from array-likes, dtypes fixed and yaw wrapped; `origin` may be one string for all rows."""
        frames = np.asarray(frame_index, dtype=np.int64).reshape(-1)
        n = frames.shape[0]
        boxes = np.array(boxes_world, dtype=np.float64).reshape(-1, 7)
        boxes[:, 6] = wrap_angle(boxes[:, 6])
        origins = np.full(n, origin, dtype="<U12") if isinstance(origin, str) else np.asarray(origin, "<U12")
        return cls(
            frame_index=frames,
            t_ns=np.asarray(t_ns, dtype=np.int64).reshape(-1),
            track_id=np.asarray(track_id, dtype=np.int64).reshape(-1),
            category=np.asarray(category, dtype="<U10").reshape(-1),
            score=np.asarray(score, dtype=np.float32).reshape(-1),
            boxes_world=boxes,
            origin=origins.reshape(-1),
            num_points=np.zeros(n, np.int32)
            if num_points is None
            else np.asarray(num_points, np.int32).ravel(),
            velocity=_rows3(velocity, n),
            sensor_origin=_rows3(sensor_origin, n),
            measured=boxes[:, 3:5].copy()
            if measured is None
            else np.asarray(measured, np.float64).reshape(-1, 2),
            capture_offset_ns=np.full(n, np.nan)
            if capture_offset_ns is None
            else np.asarray(capture_offset_ns, np.float64).reshape(-1),
            length_bound=np.full(n, np.inf)
            if length_bound is None
            else np.asarray(length_bound, np.float64).reshape(-1),
        )

    @classmethod
    def empty(cls) -> TrackTable:
        return cls.build(frame_index=[], t_ns=[], track_id=[], category=[], score=[], boxes_world=[])

    @classmethod
    def from_tracked(
        cls, frames: Sequence[TrackedBoxes], frame_index: Sequence[int] | None = None
    ) -> TrackTable:
        """The matched boxes of per-frame tracker outputs (frame i of `frames` is frame_index[i], default i).

        Boxes are the tracker's (filtered) world boxes; rows where no detection updated the track (LOST
        predictions) are left out: `refine` fills gaps itself.
        """
        index = list(range(len(frames))) if frame_index is None else list(frame_index)
        if len(index) != len(frames):
            raise TrackingError(f"{len(frames)} frames but {len(index)} frame indices")
        if not frames:
            return cls.empty()
        parts = [(i, f, np.flatnonzero(f.matched)) for i, f in zip(index, frames, strict=True)]
        return cls.build(
            frame_index=np.concatenate([np.full(k.size, i, np.int64) for i, _, k in parts]),
            t_ns=np.concatenate([np.full(k.size, f.stamp_ns, np.int64) for _, f, k in parts]),
            track_id=np.concatenate([f.track_id[k] for _, f, k in parts]),
            category=np.concatenate([f.category[k] for _, f, k in parts]),
            score=np.concatenate([f.score[k] for _, f, k in parts]),
            boxes_world=np.concatenate([f.boxes_world[k] for _, f, k in parts]),
            velocity=np.concatenate([f.velocity[k] for _, f, k in parts]),
        )

    def select(self, rows: Bool | npt.NDArray[np.intp] | slice) -> TrackTable:
        return TrackTable(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def sorted(self) -> TrackTable:
        """Rows ordered by (track_id, frame_index)."""
        return self.select(np.lexsort((self.frame_index, self.track_id)))


def _rows3(values: npt.ArrayLike | None, n: int) -> F64:
    return np.full((n, 3), np.nan) if values is None else np.asarray(values, np.float64).reshape(-1, 3)


# typical sizes (length, width, height, m): what a dimension never seen is at least
SIZE_PRIOR: Final[Mapping[str, tuple[float, float, float]]] = MappingProxyType(
    {"car": (4.5, 1.8, 1.5), "truck": (7.0, 2.4, 3.0), "bus": (11.0, 2.5, 3.1)}
)


# how many frames apart the tracks of one object may be joined (`RefineConfig.join_frames`), per category
JOIN_FRAMES: Final[Mapping[str, int]] = MappingProxyType({"pedestrian": 30, "cyclist": 30})


@dataclass(frozen=True)
class RefineConfig:
    """Configuration of the offline refinement (see the module docstring for each step)."""

    params: Mapping[str, Params] = field(default_factory=lambda: DEFAULT_PARAMS)  # noise per category
    min_track_frames: int = 3  # tracks with fewer detected frames are removed
    min_track_score: float = 0.3  # tracks whose (length-scaled) score is lower are removed
    # the track score is the mean of this many of its best detection scores (0: of all of them) ...
    score_top_k: int = 5
    full_score_frames: int = 10  # ... times min(1, detected frames / this)
    # ... or, per category, / this instead (how many detections make a track as credible as its scores)
    score_frames: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # ... and, per category, its confidence deficit (1 - mean score) times exp(-range / this, m), range =
    # the mean horizontal distance of its detections from the sensor: a detector's scores fall with
    # range for real objects, so a distant track is as credible as a nearer one with higher scores,
    # and a near track with middling scores is suspect (absent: no range term)
    score_range_m: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    max_gap_frames: int = 5  # gaps of at most this many frames without a detection are interpolated
    # per category: a track that ends at most this many frames before another of its category starts is
    # joined to it when their ends agree (each end's position extrapolated over the gap, from a line
    # fitted to its `join_fit_frames` detections nearest the gap, lies within the category's `gate_m`
    # (Params) * (join_gate + join_gate_per_s * the gap's seconds) of the other end's, on average both
    # ways; lowest disagreement first, each end once), and the gap between them is filled whatever its
    # length (absent: no joining). Pedestrians (gate_m 2 m): 0.5 m + 0.25 m/s; cyclists (4 m): 1 m + 0.5 m/s.
    # Default: pedestrians and cyclists, 30 frames (KITTI training split, both folds, and simulated logs:
    # equal or better; cars: mixed across the KITTI folds)
    join_frames: Mapping[str, int] = field(default_factory=lambda: JOIN_FRAMES)
    join_gate: float = 0.25
    join_gate_per_s: float = 0.125
    join_fit_frames: int = 5
    size_quantile: float = 0.9  # each of length, width, height: this weighted quantile of the detections ...
    size_points_power: float = 0.5  # ... weighted by score * num_points ** this (well-seen boxes count more)
    # ... and by 1 / (1 + (smear / size_smear_m) ** 2): a spinning LiDAR catches a moving object's points
    # over the part of its sweep (`sweep_period_s`) that the box's azimuth span takes, so the box is
    # stretched or squeezed by up to speed * that time (0: no smear weighting)
    size_smear_m: float = 0.05
    sweep_period_s: float = 0.1
    # the LiDAR's spin seen from above ("cw", "ccw"; fusion.sync's default "cw"), which tells whether a
    # moving object's box was stretched or squeezed: each detection's length and width are corrected by
    # velocity * (capture time of one face - of the opposite face) before the quantile; "" leaves them
    sweep_spin: str = "cw"
    moving_speed_mps: float = 1.0  # faster (smoothed): a box's heading follows the velocity's direction
    # ... only when the tracks live in a world frame: in a moving sensor frame (no poses) a parked car
    # moves backwards, so velocities are not headings (set False there)
    heading_from_velocity: bool = True
    yaw_gate_rad: float = math.pi / 4  # aligned yaws further than this from the reference are not used
    static_speed_mps: float = 0.5  # tracks slower than this (median smoothed speed) ...
    static_displacement_m: float = 1.0  # ... that move less than this, first to last frame, are held still
    # also held still: tracks whose detected centres, robustly, neither move faster than `static_speed_mps`
    # nor further than `static_displacement_m` over the track (the median centre of the track's later
    # half of detections against that of its earlier half): a parked car's boxes the detector turned and
    # shifted scatter around one point, which the smoother takes for a velocity; a mover progresses. And a
    # held track's heading is the weighted median of its yaws, not their mean (False: neither)
    static_robust: bool = True
    anchor_seen_faces: bool = True  # centres follow the track size from the faces the sensor saw
    # a detection's centre is where the object was when the LiDAR caught it (`TrackTable.capture_offset_ns`
    # after the stamp): the smoother takes it as the position at that instant, so a moving object's boxes
    # come out where it was at the stamp (False, or unknown offsets: every centre taken at the stamp)
    capture_correction: bool = True
    # size prior (length, width, height, m) per category: a dimension the sensor never saw (length: no
    # detection viewed at least `size_view_deg` away from end-on; width: from side-on) is at least this
    size_prior: Mapping[str, tuple[float, float, float]] = field(default_factory=lambda: SIZE_PRIOR)
    size_view_deg: float = 20.0  # a view this far from end-on (side-on) shows the length (width) ...
    size_seen_min: int = 3  # ... when this many detections had it
    # a length the detector completed to its category's typical size (`TrackTable.measured` shorter
    # than the box) is left out of the length quantile of a track of a `size_prior` category when the
    # track's measured lengths carry at least this share of its size weight (0: always), and below that
    # share when one of them is at most `size_outlier_ratio` above the prior's length (a car's length;
    # `size_typical_length` categories only)
    size_measured_share: float = 0.2
    # categories whose `size_prior` length is a typical one (cars: 3.5-5.3 m; not trucks, from 6 m vans to
    # 12 m lorries): a few measured lengths near it are the object's, and a length no detection measured
    # is at least it (categories without a `size_prior`: no effect)
    size_typical_length: tuple[str, ...] = ("car",)
    # a measured length more than this fraction above the weighted median of its track's measured
    # lengths is a box merged with a neighbour and does not count (`size_prior` categories; 0: off)
    size_outlier_ratio: float = 0.1
    # a vehicle's length is at least its detections' observed extents and at most their
    # `TrackTable.length_bound` (the free space the LiDAR saw beyond it): where a track has such a bound,
    # its length is moved to where the fewest of these bounds are violated (`size_prior` categories;
    # False: the length as before)
    size_free_space: bool = True
    init_speed_std: float = 30.0  # smoother: initial velocity std (m/s; rad/s for yaw), nearly diffuse

    def __post_init__(self) -> None:
        if missing := set(CATEGORIES) - set(self.params):
            raise TrackingError(f"refine params lack categories {sorted(missing)}")
        if self.min_track_frames < 1 or self.score_top_k < 0 or self.full_score_frames < 1:
            raise TrackingError("need min_track_frames, full_score_frames >= 1 and score_top_k >= 0")
        if bad := set(self.score_frames) - set(CATEGORIES):
            raise TrackingError(
                f"score_frames has unknown categories {sorted(bad)}; use {', '.join(CATEGORIES)}"
            )
        if any(not isinstance(v, int) or v < 1 for v in self.score_frames.values()):
            raise TrackingError("score_frames values must be whole numbers of detections >= 1")
        if bad := set(self.score_range_m) - set(CATEGORIES):
            raise TrackingError(
                f"score_range_m has unknown categories {sorted(bad)}; use {', '.join(CATEGORIES)}"
            )
        if not all(v > 0.0 for v in self.score_range_m.values()):
            raise TrackingError("score_range_m values must be distances > 0 in metres")
        if self.max_gap_frames < 0:
            raise TrackingError(f"max_gap_frames must be >= 0, got {self.max_gap_frames}")
        if self.join_gate < 0.0 or self.join_gate_per_s < 0.0 or self.join_fit_frames < 2:
            raise TrackingError("need join_gate, join_gate_per_s >= 0 and join_fit_frames >= 2")
        if bad := set(self.join_frames) - set(CATEGORIES):
            raise TrackingError(
                f"join_frames has unknown categories {sorted(bad)}; use {', '.join(CATEGORIES)}"
            )
        if any(not isinstance(v, int) or v < 0 for v in self.join_frames.values()):
            raise TrackingError("join_frames values must be whole numbers of frames >= 0")
        if bad := set(self.size_prior) - set(CATEGORIES):
            raise TrackingError(
                f"size_prior has unknown categories {sorted(bad)}; use {', '.join(CATEGORIES)}"
            )
        if any(len(v) != 3 or min(v) <= 0 for v in self.size_prior.values()):
            raise TrackingError("size_prior values must be (length, width, height) > 0 in metres")
        if bad := set(self.size_typical_length) - set(CATEGORIES):  # those without a size_prior: no effect
            raise TrackingError(
                f"size_typical_length has unknown categories {sorted(bad)}; use {', '.join(CATEGORIES)}"
            )
        if not self.size_measured_share >= 0.0:
            raise TrackingError(f"size_measured_share must be >= 0, got {self.size_measured_share}")
        if not self.size_outlier_ratio >= 0.0:
            raise TrackingError(f"size_outlier_ratio must be >= 0, got {self.size_outlier_ratio}")
        if not 0.0 <= self.size_view_deg <= 90.0 or self.size_seen_min < 1:
            raise TrackingError("need 0 <= size_view_deg <= 90 and size_seen_min >= 1")
        if self.size_smear_m < 0.0 or self.sweep_period_s <= 0.0:
            raise TrackingError("need size_smear_m >= 0 and sweep_period_s > 0")
        if self.sweep_spin not in ("cw", "ccw", ""):
            raise TrackingError(f"sweep_spin must be 'cw', 'ccw' or '' (unknown), got {self.sweep_spin!r}")
        if not 0.0 <= self.size_quantile <= 1.0:
            raise TrackingError(f"size_quantile must be in [0, 1], got {self.size_quantile}")
        if self.init_speed_std <= 0:
            raise TrackingError(f"init_speed_std must be > 0, got {self.init_speed_std}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RefineConfig:
        """Config from a mapping: top-level fields, and `params.default` / `params.<category>` tables
        overriding the tracker's per-category defaults field by field (as `TrackerConfig.from_mapping`)."""
        known = {f.name for f in fields(cls)}
        if unknown := set(mapping) - known:
            raise TrackingError(f"unknown refine config keys {sorted(unknown)}; use {sorted(known)}")
        top = {k: v for k, v in mapping.items() if k != "params"}
        if "size_prior" in top:
            top["size_prior"] = MappingProxyType({c: tuple(v) for c, v in top["size_prior"].items()})
        for name in ("score_frames", "join_frames"):
            if name in top:
                top[name] = MappingProxyType(dict(top[name]))
        if "size_typical_length" in top:
            top["size_typical_length"] = tuple(top["size_typical_length"])
        if "score_range_m" in top:
            top["score_range_m"] = MappingProxyType({c: float(v) for c, v in top["score_range_m"].items()})
        if "params" in mapping:
            top["params"] = TrackerConfig.from_mapping({"params": mapping["params"]}).params
        return cls(**top)

    def to_mapping(self) -> dict[str, Any]:
        """The effective configuration as plain values (`from_mapping` reads it back)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "params"}
        out["size_prior"] = {c: list(v) for c, v in self.size_prior.items()}
        out["score_frames"] = dict(self.score_frames)
        out["join_frames"] = dict(self.join_frames)
        out["size_typical_length"] = list(self.size_typical_length)
        out["score_range_m"] = dict(self.score_range_m)
        out["params"] = {c: {f.name: getattr(p, f.name) for f in fields(p)} for c, p in self.params.items()}
        return out

    @classmethod
    def from_toml(cls, path: str | Path, table: str = "refine") -> RefineConfig:
        """Config from the `[refine]` table (or the whole file when it has none) of a TOML file."""
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
        return cls.from_mapping(data.get(table, data))


# --- forward and backward tracking ---------------------------------------------------------------


class Submitter(Protocol):
    """What `track_both_ways` can run its backward pass on: `concurrent.futures.Executor.submit`
    (or a Dask client's, wrapped): submit(fn, *args) returns something whose result() is fn(*args)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any: ...


def track_both_ways(
    frames: Sequence[Frame], config: TrackerConfig | None = None, *, executor: Submitter | None = None
) -> TrackTable:
    """Track `frames` forward and backward with the online tracker and merge the passes (module docstring).

    frames: per frame (in time order) its detections (sensor frame), stamp ns and world_from_sensor
    (4, 4) or None (then the sensor frame is the "world"). Frame i gets frame_index i. The tracker runs
    with `output_tentative=True`, so every detection it matched has an id; `refine` drops the short ones.
    executor: the backward pass is submitted to it (`track_pass(frames, config, backward=True)`, frames
    and config pickled when it runs elsewhere) and runs while this call does the forward pass; the
    result is the same as without it.
    """
    cfg = replace(config or TrackerConfig(), output_tentative=True, output_lost=False)
    # the detections as columns, for the table; the passes step through `frames` as given (a
    # `FrameDetections` makes each frame's `Boxes` as views when a pass reaches it, and is what the
    # backward pass is sent: a few arrays, not a `Boxes` per frame)
    columns = frames if isinstance(frames, FrameDetections) else FrameDetections.of(frames)
    world = [
        _world_boxes(columns.boxes[lo:hi], pose)
        for lo, hi, pose in zip(
            columns.bounds[:-1].tolist(), columns.bounds[1:].tolist(), _poses(columns), strict=True
        )
    ]
    stamps = columns.t_ns.tolist()
    if any(b < a for a, b in itertools.pairwise(stamps)):
        raise TrackingError("frames must be in time order (stamps not decreasing)")
    pending = executor.submit(track_pass, frames, cfg, True) if executor is not None else None
    forward = track_pass(frames, cfg)
    backward = pending.result() if pending is not None else track_pass(frames, cfg, backward=True)
    group = _merge(forward, backward)

    gi = np.concatenate(group) if group else np.zeros(0, np.int64)
    kept = np.flatnonzero(gi >= 0)  # flat detection indices (all frames' detections in order)
    if not kept.size:
        return TrackTable.empty()
    fi = np.repeat(np.arange(len(columns), dtype=np.int64), np.diff(columns.bounds))[kept]
    gi = gi[kept]
    # merged groups numbered in order of first appearance
    _, first = np.unique(gi, return_index=True)
    order = np.sort(first)
    renumber = np.empty(int(gi.max()) + 1, np.int64)
    renumber[gi[order]] = np.arange(order.size)
    origins = np.where(columns.has_pose[:, None], columns.world_from_sensor[:, :3, 3], 0.0)
    return TrackTable.build(
        frame_index=fi,
        t_ns=columns.t_ns[fi],
        track_id=renumber[gi],
        category=_CATEGORY_NAMES[columns.category[kept]],
        score=columns.score[kept],
        boxes_world=(np.concatenate(world) if world else np.zeros((0, 7))).reshape(-1, 7)[kept],
        num_points=columns.num_points[kept],
        measured=columns.measured[kept],
        capture_offset_ns=columns.capture_offset_ns[kept],
        length_bound=columns.length_bound[kept],
        sensor_origin=origins[fi],
    )


def _poses(frames: FrameDetections) -> list[F64 | None]:
    """Each frame's world_from_sensor (4, 4) (a view), None where it has none."""
    has_pose = frames.has_pose.tolist()
    return [m if has else None for m, has in zip(frames.world_from_sensor, has_pose, strict=True)]


def _world_boxes(boxes: F64, pose: npt.ArrayLike | None) -> F64:
    """(M, 7) sensor-frame boxes (M, 7) in the world at `pose` (4, 4), or copied without one."""
    if pose is None:
        return boxes.copy()
    m = np.asarray(pose, dtype=np.float64)
    out = boxes.copy()
    out[:, :3] = boxes[:, :3] @ m[:3, :3].T + m[:3, 3]
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    out[:, 6] = wrap_angle(np.arctan2(m[1, 0] * cos + m[1, 1] * sin, m[0, 0] * cos + m[0, 1] * sin))
    return out


def track_pass(frames: Sequence[Frame], config: TrackerConfig, backward: bool = False) -> list[I64]:
    """One pass of `track_both_ways` (config as it sets it): per frame, the track id each detection
    got (-1: none); `backward` runs from the last frame to the first, stamps negated."""
    if backward:
        return _run(frames, range(len(frames) - 1, -1, -1), config, sign=-1)
    return _run(frames, range(len(frames)), config, sign=1)


def _run(frames: Sequence[Frame], order: range, cfg: TrackerConfig, sign: int) -> list[I64]:
    """Per frame: the track id each detection got in this pass (-1: none). Time runs as sign * t_ns."""
    tracker = Tracker(cfg)
    if isinstance(frames, FrameDetections):
        counts = np.diff(frames.bounds).tolist()
    else:
        counts = [len(b) for b, _, _ in frames]
    ids = [np.full(n, -1, np.int64) for n in counts]
    for i in order:
        boxes, t_ns, pose = frames[i]
        ids[i] = tracker.step_matches(boxes, sign * int(t_ns), pose)
    return ids


def _merge(forward: list[I64], backward: list[I64]) -> list[I64]:
    """Per frame, each detection's merged group id (-1: untracked) from the two passes' ids."""
    fwd = np.concatenate(forward) if forward else np.zeros(0, np.int64)
    bwd = np.concatenate(backward) if backward else np.zeros(0, np.int64)
    frame = np.repeat(np.arange(len(forward), dtype=np.int64), [f.size for f in forward])
    offset = int(fwd.max()) + 1 if fwd.size and fwd.max() >= 0 else 0
    # each detection's starting group: its forward track, else its backward track (ids offset past forward's)
    start = np.where(fwd >= 0, fwd, np.where(bwd >= 0, bwd + offset, -1))
    parent: dict[int, int] = {}
    frames_of: dict[int, dict[int, int]] = {}  # root -> frame -> detection (flat index)
    for d, g in enumerate(start.tolist()):
        if g < 0:
            continue
        parent.setdefault(g, g)
        frames_of.setdefault(g, {})[int(frame[d])] = d

    def find(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    # edges: (backward track, starting group) weighted by shared detections, heaviest first
    both = (bwd >= 0) & (start >= 0)
    pairs, counts = np.unique(np.stack([bwd[both], start[both]], axis=1), axis=0, return_counts=True)
    anchor: dict[int, int] = {}  # backward track -> the group it was joined to
    for k in np.argsort(-counts, kind="stable").tolist():
        b, g = int(pairs[k, 0]), int(pairs[k, 1])
        if b not in anchor:
            anchor[b] = g
            continue
        ra, rb = find(anchor[b]), find(g)
        if ra == rb:
            continue
        fa, fb = frames_of[ra], frames_of[rb]
        if any(fa.get(f, d) != d for f, d in fb.items()):
            continue  # both hold a different detection in one frame: not one object
        small, big = (ra, rb) if len(fa) < len(fb) else (rb, ra)
        parent[small] = big
        frames_of[big].update(frames_of.pop(small))
    merged = np.array([find(g) if g >= 0 else -1 for g in start.tolist()], dtype=np.int64)
    bounds = np.cumsum([f.size for f in forward])[:-1]
    return list(np.split(merged, bounds))


# --- refinement ------------------------------------------------------------------------------------


def refine(tracks: TrackTable, config: RefineConfig | None = None) -> TrackTable:
    """Refined whole tracks (module docstring): smoothed, one size, consistent yaw, gaps filled,
    static objects held, short or weak tracks removed; rows ordered by (track_id, frame_index)."""
    blocks = refine_blocks(tracks, config)
    del tracks  # a caller that passes the table unnamed leaves it to `refine_blocks` alone
    parts = list(blocks)
    if not parts:
        return TrackTable.empty()
    if len(parts) == 1:
        return parts[0]
    refined = [_columns(p) for p in parts]
    del parts  # joined column by column, each block's column dropped as it is joined
    return TrackTable(
        **{f.name: np.concatenate([c.pop(f.name) for c in refined]) for f in fields(TrackTable)}
    )


def refine_blocks(tracks: TrackTable, config: RefineConfig | None = None) -> Iterator[TrackTable]:
    """`refine`, a block of whole tracks (about `REFINE_BLOCK_ROWS` detections) at a time: the
    blocks, in order, joined are `refine(tracks, config)`. A caller that keeps only what it needs
    of each block never holds the whole refined table, nor the blocks beside their join (a
    5-minute 64-beam log: ~93k rows, ~22 MB). Pass `tracks` unnamed, and it is dropped once its
    deduplicated copy is made."""
    cfg = config or RefineConfig()
    if not len(tracks):
        return
    rows = _dedupe(tracks)
    columns = _columns(tracks)
    del tracks  # each column is dropped once its deduplicated copy is made
    (det,) = _taken(columns, [rows])
    del rows
    det, bridged = _joined(det, cfg)  # rows sorted by track and frame; bridged: a joined track's first rows
    starts = _starts(det.track_id)
    counts = np.diff(np.append(starts, len(det)))
    category = _track_category(det, starts)
    # horizontal range of each detection from the sensor (from the frame's origin where it is unknown)
    ranges = np.hypot(*(det.boxes_world[:, :2] - np.nan_to_num(det.sensor_origin[:, :2])).T)
    score = _track_score(det.score, ranges, starts, counts, category, cfg)
    keep = (counts >= cfg.min_track_frames) & (score >= cfg.min_track_score)
    kept = np.flatnonzero(np.repeat(keep, counts))  # rows of the tracks kept
    if not kept.size:
        return
    category, score = category[keep], score[keep]
    starts = _starts(det.track_id[kept])
    counts = np.diff(np.append(starts, kept.size))
    known_frames, known_idx = np.unique(det.frame_index[kept], return_index=True)  # stamps of gap frames
    known_t = det.t_ns[kept[known_idx]].astype(np.float64)
    # the kept rows cut into blocks of whole tracks, each its own copy: the deduplicated table is let
    # go before refinement and each block once refined
    ranges = _blocks(counts, REFINE_BLOCK_ROWS)
    columns = _columns(det)
    del det
    pieces = [kept[int(starts[lo]) : int(starts[hi]) if hi < starts.size else kept.size] for lo, hi in ranges]
    bridges = [bridged[rows] for rows in pieces]
    blocks = _taken(columns, pieces)
    del kept, pieces
    for lo, hi in ranges:  # each block passed on unnamed: `_refine_tracks` drops it before its output
        yield _refine_tracks(
            blocks.pop(0), category[lo:hi], score[lo:hi], known_frames, known_t, cfg, bridges.pop(0)
        )


REFINE_BLOCK_ROWS: Final = 8192
"""`refine` works through the tracks a block of about this many detections at a time (tracks are
refined independently): its per-row intermediates (the grid of every frame of every track,
smoothed states, sizes, ~1 kB a row all told) are then a block's, not a whole log's. A 5-minute
64-beam log has ~90k detections; refining it whole raised the finishing worker's RSS by ~60 MiB."""


def _joined(det: TrackTable, cfg: RefineConfig) -> tuple[TrackTable, Bool]:
    """`det` (N rows sorted by track and frame, deduplicated) with tracks joined across gaps (module
    docstring, step 0; `RefineConfig.join_frames`), rows sorted by track and frame again, and (N,)
    bool: the first row of each track joined onto another (the row after the gap). Each joined track
    takes the id of the first of its pieces. Pieces of fewer than `min_track_frames` (at least 2)
    detections are not joined."""
    bridged = np.zeros(len(det), bool)
    if not cfg.join_frames or not len(det):
        return det, bridged
    starts = _starts(det.track_id)
    counts = np.diff(np.append(starts, len(det)))
    category = _track_category(det, starts)
    limit = np.array([cfg.join_frames.get(c, 0) for c in CATEGORIES], np.int64)[category]
    ok = (limit > 0) & (counts >= max(cfg.min_track_frames, 2))
    if ok.sum() < 2:
        return det, bridged
    t = det.t_ns.astype(np.float64) * 1e-9
    xy = det.boxes_world[:, :2]
    ends = starts + counts
    head = np.zeros((starts.size, 4))  # x, y at the first detection; vx, vy
    tail = np.zeros((starts.size, 4))  # x, y at the last detection; vx, vy
    m = cfg.join_fit_frames
    for k in np.flatnonzero(ok).tolist():
        a, b = int(starts[k]), int(ends[k])
        head[k] = _line_at(t[a : min(b, a + m)], xy[a : min(b, a + m)], t[a])
        tail[k] = _line_at(t[max(a, b - m) : b], xy[max(a, b - m) : b], t[b - 1])
    first, last = det.frame_index[starts], det.frame_index[ends - 1]
    t_first, t_last = t[starts], t[ends - 1]
    gate_m = np.array([cfg.params[c].gate_m for c in CATEGORIES], np.float64)[category]
    candidates: list[tuple[float, int, int]] = []
    for a in np.flatnonzero(ok).tolist():
        gap = first - last[a] - 1
        for b in np.flatnonzero(ok & (category == category[a]) & (gap >= 0) & (gap <= limit[a])).tolist():
            dt = float(t_first[b] - t_last[a])
            ahead = np.hypot(*(head[b, :2] - tail[a, :2] - tail[a, 2:] * dt))
            back = np.hypot(*(tail[a, :2] - head[b, :2] + head[b, 2:] * dt))
            cost = 0.5 * float(ahead + back)
            if cost <= gate_m[a] * (cfg.join_gate + cfg.join_gate_per_s * dt):
                candidates.append((cost, a, b))
    if not candidates:
        return det, bridged
    parent = np.arange(starts.size)
    has_next = np.zeros(starts.size, bool)
    has_prev = np.zeros(starts.size, bool)
    for _, a, b in sorted(candidates):
        if has_next[a] or has_prev[b]:
            continue
        has_next[a] = has_prev[b] = True
        parent[b] = a
    root = parent.copy()
    for _ in range(starts.size):  # follow chains a -> b -> c to their first piece
        nxt = parent[root]
        if (nxt == root).all():
            break
        root = nxt
    track_ids = det.track_id[starts]
    row_track = np.repeat(np.arange(starts.size), counts)
    bridged[starts[has_prev]] = True
    order = np.lexsort((det.frame_index, track_ids[root][row_track]))
    joined = replace(det.select(order), track_id=track_ids[root][row_track][order])
    return joined, bridged[order]


def _line_at(t: F64, xy: F64, at: float) -> F64:
    """(4,): x, y at time `at` and vx, vy of the least-squares line through positions xy (n, 2) at t (n,)."""
    tc = t - at
    design = np.stack([np.ones_like(tc), tc], axis=1)
    coef, *_ = np.linalg.lstsq(design, xy, rcond=None)
    return np.array([coef[0, 0], coef[0, 1], coef[1, 0], coef[1, 1]])


def _blocks(counts: I64, rows: int) -> list[tuple[int, int]]:
    """Consecutive track ranges [lo, hi) of about `rows` detections each (a longer track alone)."""
    out: list[tuple[int, int]] = []
    lo, total = 0, 0
    for k, n in enumerate(counts.tolist()):
        if total and total + n > rows:
            out.append((lo, k))
            lo, total = k, 0
        total += n
    out.append((lo, len(counts)))
    return out


def _refine_tracks(
    det: TrackTable, category: I64, score: F32, known_frames: I64, known_t: F64, cfg: RefineConfig,
    bridged: Bool,
) -> TrackTable:  # fmt: skip
    """`refine` of whole tracks `det` (rows sorted by track and frame, deduplicated, kept), each
    track's category index and score; `known_frames`, `known_t`: the log's detected frames and
    their stamps, which give a gap frame's stamp; `bridged` (N,): the rows after a gap that joined two
    tracks (`_joined`), which is filled whatever its length."""
    starts = _starts(det.track_id)
    counts = np.diff(np.append(starts, len(det)))

    # the grid: every frame from a track's first detection to its last
    first, last = det.frame_index[starts], det.frame_index[starts + counts - 1]
    span = last - first + 1
    grid_start = np.concatenate([[0], np.cumsum(span)[:-1]]).astype(np.int64)
    track_of_grid = np.repeat(np.arange(starts.size), span)
    grid_frame = first[track_of_grid] + (np.arange(int(span.sum())) - grid_start[track_of_grid])
    track_of_det = np.repeat(np.arange(starts.size), counts)
    det_grid = grid_start[track_of_det] + det.frame_index - first[track_of_det]  # grid row of each detection
    grid_t = np.rint(np.interp(grid_frame, known_frames, known_t)).astype(np.int64)
    grid_t[det_grid] = det.t_ns
    t_s = (grid_t - grid_t[grid_start][track_of_grid]) * 1e-9
    ends = grid_start + span
    noise = np.array([[p.q_accel, p.q_accel, p.q_z, p.q_yaw_rate, p.r_pos, p.r_pos, p.r_pos, p.r_yaw]
                      for p in (cfg.params[c] for c in CATEGORIES)])[category]  # fmt: skip
    n_grid = grid_frame.size

    # positions (a first smoothing: the velocities that headings, the sweep stretch and sizes need)
    z_pos = np.full((n_grid, 3), np.nan)
    z_pos[det_grid] = det.boxes_world[:, :3]
    pos, vel = _smooth(t_s, z_pos, grid_start, ends, noise[:, :3], noise[:, 4:7], cfg.init_speed_std)

    # headings
    speed = np.hypot(vel[:, 0], vel[:, 1])
    moving = (speed[det_grid] >= cfg.moving_speed_mps) & cfg.heading_from_velocity
    ref = np.where(moving, np.arctan2(vel[det_grid, 1], vel[det_grid, 0]), np.nan)
    yaw = _aligned_yaw(det.boxes_world[:, 6], ref, det.score, starts)
    ref_yaw = np.where(moving, ref, _track_heading(yaw, det.score, starts, counts))
    usable = np.abs(wrap_angle(yaw - ref_yaw)) <= cfg.yaw_gate_rad
    z_yaw = np.full((n_grid, 1), np.nan)
    z_yaw[det_grid[usable], 0] = _unwrap(yaw, starts)[usable]
    yaw_s, _ = _smooth(t_s, z_yaw, grid_start, ends, noise[:, 3:4], noise[:, 7:8], cfg.init_speed_std)
    del z_yaw, moving, ref
    grid_yaw = yaw_s[:, 0]
    no_yaw = np.isnan(grid_yaw)  # a track whose every yaw was gated out keeps its reference heading
    if no_yaw.any():
        fallback = np.full(n_grid, np.nan)
        fallback[det_grid] = ref_yaw
        grid_yaw[no_yaw] = _fill_per_track(fallback, grid_start, ends)[no_yaw]

    # size; centres moved so that the faces the sensor saw stay put; static objects
    size_weight = det.score * np.maximum(det.num_points, 1).astype(np.float64) ** cfg.size_points_power
    # how far a moving object moved while the sweep crossed its box (m)
    smear = (
        speed[det_grid] * cfg.sweep_period_s * _azimuth_span(det.boxes_world, det.sensor_origin) / math.tau
    )
    if cfg.size_smear_m > 0.0:
        size_weight = size_weight / (1.0 + (smear / cfg.size_smear_m) ** 2)
    seen = det.boxes_world[:, 3:6]
    if cfg.sweep_spin:
        omega = (1.0 if cfg.sweep_spin == "ccw" else -1.0) * math.tau / cfg.sweep_period_s
        seen = _unsmeared(det.boxes_world, vel[det_grid], det.sensor_origin, omega)
    size_weight = size_weight * usable  # a box fitted across the object has its length as its width
    weight = np.repeat(size_weight[:, None], 3, axis=1)
    vehicle = np.isin(_CATEGORY_NAMES[category], list(cfg.size_prior))[track_of_det]  # prior: never short
    measured = det.measured[:, 0] >= det.boxes_world[:, 3] - 1e-6
    merged = np.zeros(len(det), bool)
    if cfg.size_outlier_ratio > 0.0:  # boxes merged with a neighbour: far longer than the rest
        merged = ~_not_outliers(seen[:, 0], size_weight * measured, starts, cfg.size_outlier_ratio)
        measured &= ~merged
        weight[:, 0] *= ~(merged & vehicle)
    typical = np.array([c in cfg.size_typical_length for c in CATEGORIES])[category]
    prior_length = np.array([cfg.size_prior.get(c, (np.nan,) * 3)[0] for c in CATEGORIES])[category]
    bound = np.where(typical, prior_length * (1.0 + cfg.size_outlier_ratio), -np.inf)  # else none is
    plausible = seen[:, 0] <= bound[track_of_det]
    counted = _measured_lengths(
        measured, plausible, weight[:, 0], track_of_det, starts.size, cfg.size_measured_share
    )
    weight[:, 0] *= counted | ~vehicle
    size = _track_size(seen, weight, starts, cfg.size_quantile)
    size = _size_prior(size, det, ref_yaw, track_of_det, category, measured, typical, cfg)
    if cfg.size_free_space:  # the lengths the free space beyond the vehicle allows
        stretch = det.boxes_world[:, 3] - seen[:, 0]  # the sweep's stretch of each box's length
        longest = det.length_bound - stretch
        # every observed extent is a lower bound, completed or not, less what the stretch correction
        # may have missed (up to the box's smear); not those merged with a neighbour
        extent = np.where(~merged, det.measured[:, 0] - stretch - smear, -np.inf)
        size[:, 0] = _length_within_bounds(size[:, 0], extent, longest, vehicle & usable, track_of_det)
    del seen, size_weight, weight, vehicle, counted, plausible, bound, prior_length, typical, smear
    # parked: by the detected centres or by the anchored ones (anchoring a parked car's boxes to a track
    # length that is off by a few cm moves them when the sensor passes it and the near face changes)
    static = _static(pos, speed, grid_start, ends, cfg)
    centres = det.boxes_world[:, :3]
    # the positions smoothed again (the output's): from the anchored centres, and each detected centre
    # taken as the position at its capture instant, not at the stamp (x and y: a road object's vertical
    # centre does not move with its speed); the static hold below takes the centres as detected
    lag = _capture_lag(det.capture_offset_ns, det_grid, n_grid) if cfg.capture_correction else None
    if cfg.anchor_seen_faces or lag is not None:
        if cfg.anchor_seen_faces:
            centres = _anchored(det.boxes_world, size[track_of_det], det.sensor_origin, usable)
            z_pos[det_grid] = centres
        del pos, vel, speed  # replaced below: not held twice
        pos, vel = _smooth(t_s, z_pos, grid_start, ends, noise[:, :3], noise[:, 4:7], cfg.init_speed_std, lag)
        speed = np.hypot(vel[:, 0], vel[:, 1])
    del lag
    static |= _static(pos, speed, grid_start, ends, cfg)
    if cfg.static_robust:
        static |= _static_robust(det.boxes_world[:, :2], det.t_ns, starts, cfg)
        static |= _static_robust(centres[:, :2], det.t_ns, starts, cfg)
    if static.any():
        held = np.repeat(static, span)
        centre = np.stack([_segment_median(centres[:, a], starts) for a in range(3)], axis=1)
        # the yaws of boxes not fitted across the object
        heading = _held_heading(yaw, det.score * usable, starts, counts, static, cfg.static_robust)
        pos[held] = centre[track_of_grid[held]]
        grid_yaw[held] = heading[track_of_grid[held]]
        vel[held] = 0.0

    # output rows: detected frames, short gaps and the gaps tracks were joined across; the whole-log
    # intermediates are dropped first (the grid and the detections are each as large as the output)
    observed = np.zeros(n_grid, bool)
    observed[det_grid] = True
    emit = np.flatnonzero(observed | _short_gaps(observed, cfg.max_gap_frames, det_grid[bridged]))
    num_points = np.zeros(n_grid, np.int32)
    num_points[det_grid] = det.num_points
    track_ids = det.track_id[starts]
    del det, z_pos, yaw_s, t_s, speed, centres, usable
    out_track = track_of_grid[emit]
    del track_of_grid
    boxes = np.concatenate([pos[emit], size[out_track], grid_yaw[emit, None]], axis=1)
    del pos, grid_yaw
    return TrackTable.build(
        frame_index=grid_frame[emit],
        t_ns=grid_t[emit],
        track_id=track_ids[out_track],
        category=_CATEGORY_NAMES[category][out_track],
        score=score[out_track],
        boxes_world=boxes,
        origin=np.where(observed[emit], "detected", "interpolated"),
        num_points=num_points[emit],
        velocity=vel[emit],
    )


def one_category_per_object(
    tracks: TrackTable, distance_m: float = 1.0, min_shared: float = 0.5
) -> TrackTable:
    """The tracks of `tracks` with each object kept in one category only.

    Detectors run per category (or confuse them) find one object twice: a cyclist as a cyclist and as
    a pedestrian. Two tracks of different categories are one object when their centres are within
    `distance_m` (ground plane) in at least `min_shared` of the frames of the shorter of the two. Tracks
    are taken by decreasing track score (the mean of their rows' scores: after `refine`, the track
    score) and each is kept unless it is one object with a kept track of another category; the rows
    of the others are removed (rows keep their order). Tracks are told apart by (category, track_id),
    so the tables of per-category runs may share track ids.
    """
    if distance_m <= 0.0 or not 0.0 < min_shared <= 1.0:
        raise TrackingError(f"need distance_m > 0 and 0 < min_shared <= 1, got {distance_m}, {min_shared}")
    if not len(tracks):
        return tracks
    cat = np.array([_CATEGORY_INDEX[c] for c in tracks.category.tolist()], np.int64)
    keys = np.stack([cat, tracks.track_id], axis=1)
    _, track = np.unique(keys, axis=0, return_inverse=True)
    track = track.reshape(-1)
    n_tracks = int(track.max()) + 1
    rows = np.bincount(track, minlength=n_tracks)
    score = np.bincount(track, tracks.score.astype(np.float64), n_tracks) / rows
    track_cat = np.zeros(n_tracks, np.int64)
    track_cat[track] = cat
    shared = _close_frames(tracks.frame_index, track, cat, tracks.boxes_world[:, :2], distance_m)
    kept: list[int] = []
    removed = np.zeros(n_tracks, bool)
    for t in np.argsort(-score, kind="stable").tolist():
        for k in kept:
            close = shared.get((min(t, k), max(t, k)), 0)
            if track_cat[k] != track_cat[t] and close >= min_shared * min(rows[t], rows[k]):
                removed[t] = True
                break
        if not removed[t]:
            kept.append(t)
    return tracks.select(~removed[track])


def _close_frames(
    frame: I64, track: npt.NDArray[np.intp], cat: I64, xy: F64, distance_m: float
) -> dict[tuple[int, int], int]:
    """{(track a, track b), a < b: frames in which rows of the two, of different categories, are within
    `distance_m` of each other (ground plane)}, from per-row frame (N,), track (N,), category index (N,)
    and ground-plane centre xy (N, 2)."""
    order = np.argsort(frame, kind="stable")
    bounds = np.flatnonzero(np.diff(frame[order])) + 1
    out: dict[tuple[int, int], int] = {}
    for rows in np.split(order, bounds):
        if rows.size < 2 or np.unique(cat[rows]).size < 2:
            continue
        d = np.hypot(*(xy[rows, None, :] - xy[None, rows, :]).transpose(2, 0, 1))
        close = (d < distance_m) & (cat[rows, None] != cat[None, rows])
        for i, j in zip(*np.nonzero(np.triu(close, 1)), strict=True):
            a, b = sorted((int(track[rows[i]]), int(track[rows[j]])))
            out[a, b] = out.get((a, b), 0) + 1
    return out


def _size_prior(size: F64, det: TrackTable, ref_yaw: F64, track_of_det: I64, category: I64,
                measured: Bool, typical: Bool, cfg: RefineConfig) -> F64:  # fmt: skip
    """(T, 3) sizes with the category prior as the floor of the length (width) of each track that no
    `size_seen_min` detections viewed at least `size_view_deg` from end-on (side-on): a LiDAR box of an
    object seen end-on is as long as the part seen, never longer than the object. The length's floor
    too of a `typical` (T,) track (a `size_typical_length` category) where no detection's length was
    `measured` (N,) (each one a partial view the detector completed to its own floor)."""
    prior = np.array([cfg.size_prior.get(c, (np.nan,) * 3) for c in CATEGORIES], np.float64)[category]
    if not np.isfinite(prior).any():
        return size
    rel = (
        np.arctan2(
            det.boxes_world[:, 1] - det.sensor_origin[:, 1], det.boxes_world[:, 0] - det.sensor_origin[:, 0]
        )
        - ref_yaw
    )
    known = np.isfinite(rel)
    limit = math.sin(math.radians(cfg.size_view_deg))
    n = size.shape[0]
    viewed = np.bincount(track_of_det, known.astype(np.float64), n) >= cfg.size_seen_min  # sensor known
    out = size.copy()
    for dim, along in ((0, np.abs(np.sin(rel))), (1, np.abs(np.cos(rel)))):
        views = np.bincount(track_of_det, (known & (along >= limit)).astype(np.float64), n)
        unseen = views < cfg.size_seen_min
        if dim == 0:
            unseen |= typical & (np.bincount(track_of_det, measured.astype(np.float64), n) == 0)
        unseen &= viewed & np.isfinite(prior[:, dim])
        out[unseen, dim] = np.maximum(size[unseen, dim], prior[unseen, dim])
    return out


def _length_within_bounds(length: F64, extent: F64, longest: F64, usable: Bool, track_of_det: I64) -> F64:
    """(T,) each track's `length` (T,), moved where its detections' bounds say it cannot be. Every
    observed `extent` (N,) (-inf: none) is a lower bound of the object's length (a LiDAR sees part of
    it, never more) and each `longest` (N,) (+inf: unknown) an upper bound (the free space the sensor
    saw beyond it, `Boxes.length_bound`); rows not `usable` (N,) count for neither. A wrong bound (a
    box merged with a neighbour, a misfitted one, a ray that passed over the object) contradicts the
    others, so the length is taken where the fewest bounds are violated: a length there is kept, any
    other moved to the nearest such length. Tracks without an upper bound keep their length (the
    longest extent alone is too often a merged or stretched box)."""
    out = length.copy()
    has_upper = usable & np.isfinite(longest)
    for t in np.unique(track_of_det[has_upper]).tolist():
        rows = usable & (track_of_det == t)
        lower = extent[rows][np.isfinite(extent[rows])]
        upper = longest[rows][np.isfinite(longest[rows])]
        candidates = np.concatenate([lower, upper, [length[t]]])
        violated = (lower[None, :] > candidates[:, None] + 1e-9).sum(axis=1) + (
            upper[None, :] < candidates[:, None] - 1e-9
        ).sum(axis=1)
        best = violated == violated.min()
        if not best[-1]:  # the length contradicts more bounds than it must: the nearest that does not
            out[t] = candidates[best][np.argmin(np.abs(candidates[best] - length[t]))]
    return out


def _unsmeared(boxes: F64, vel: F64, sensor: F64, omega: float) -> F64:
    """(N, 3) the length, width, height of `boxes` (N, 7) with the stretch of a spinning LiDAR (beam
    azimuth rate `omega`, rad/s, + counter-clockwise) taken out: a face caught `dt` later than the
    opposite one has moved `velocity` (N, 3) * dt further. Unknown sensor positions: unchanged."""
    out = boxes[:, 3:6].copy()
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    ok = np.isfinite(sensor).all(axis=1) & np.isfinite(vel).all(axis=1)
    for dim, (ux, uy) in ((0, (cos, sin)), (1, (-sin, cos))):
        half = boxes[:, 3 + dim] / 2.0
        az = [
            np.arctan2(boxes[:, 1] + k * half * uy - sensor[:, 1], boxes[:, 0] + k * half * ux - sensor[:, 0])
            for k in (1.0, -1.0)
        ]
        dt = wrap_angle(az[0] - az[1]) / omega  # the + face's capture time minus the - face's
        stretch = (vel[:, 0] * ux + vel[:, 1] * uy) * dt
        out[:, dim] = np.where(ok, out[:, dim] - stretch, out[:, dim])
    return out


def _azimuth_span(boxes: F64, sensor: F64) -> F64:
    """(N,) the horizontal angle (rad) that each box of `boxes` (N, 7) spans seen from `sensor` (N, 3);
    0 where the sensor position is unknown."""
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    hl, hw = boxes[:, 3] / 2.0, boxes[:, 4] / 2.0
    sx, sy = np.array([1.0, 1.0, -1.0, -1.0]), np.array([1.0, -1.0, -1.0, 1.0])
    cx = boxes[:, 0:1] + sx * (hl * cos)[:, None] - sy * (hw * sin)[:, None]  # (N, 4) corners
    cy = boxes[:, 1:2] + sx * (hl * sin)[:, None] + sy * (hw * cos)[:, None]
    centre = np.arctan2(boxes[:, 1] - sensor[:, 1], boxes[:, 0] - sensor[:, 0])
    rel = wrap_angle(np.arctan2(cy - sensor[:, 1:2], cx - sensor[:, 0:1]) - centre[:, None])
    span = rel.max(axis=1) - rel.min(axis=1)
    return np.asarray(np.where(np.isfinite(span), span, 0.0), dtype=np.float64)


def _anchored(boxes: F64, size: F64, sensor: F64, usable: Bool) -> F64:
    """(N, 3) box centres moved for the track's size `size` (N, 3) keeping in place the faces seen from
    `sensor` (N, 3): along each horizontal axis of the box, the face towards the sensor. Rows not
    `usable` (heading across the track's) or with an unknown sensor position keep their centre."""
    out = boxes[:, :3].copy()
    ok = usable & np.isfinite(sensor).all(axis=1)
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rel = np.where(ok[:, None], sensor[:, :2] - boxes[:, :2], 0.0)
    side_l = np.sign(rel[:, 0] * cos + rel[:, 1] * sin)  # +1: the sensor is ahead of the box's front face
    side_w = np.sign(-rel[:, 0] * sin + rel[:, 1] * cos)
    shift_l = side_l * (boxes[:, 3] - size[:, 0]) / 2.0
    shift_w = side_w * (boxes[:, 4] - size[:, 1]) / 2.0
    out[:, 0] += np.where(ok, shift_l * cos - shift_w * sin, 0.0)
    out[:, 1] += np.where(ok, shift_l * sin + shift_w * cos, 0.0)
    return out


def _starts(track_id: I64) -> npt.NDArray[np.intp]:
    """First row of each track in rows sorted by track id."""
    if not track_id.size:
        return np.zeros(0, np.intp)
    return np.flatnonzero(np.r_[True, track_id[1:] != track_id[:-1]])


def _columns(table: TrackTable) -> dict[str, npt.NDArray[Any]]:
    """The columns of `table` by name (for `_taken`)."""
    return {f.name: getattr(table, f.name) for f in fields(TrackTable)}


def _taken(columns: dict[str, npt.NDArray[Any]], pieces: Sequence[npt.NDArray[np.intp]]) -> list[TrackTable]:
    """A table of the rows `pieces[i]` of `columns` for each i; empties `columns` column by column,
    each dropped once taken, so a table whose columns only `columns` holds is never held whole
    beside its copies (a 5-minute 64-beam log's track table: ~100k rows, ~24 MB)."""
    parts: list[dict[str, npt.NDArray[Any]]] = [{} for _ in pieces]
    for name in list(columns):
        values = columns.pop(name)
        for part, rows in zip(parts, pieces, strict=True):
            part[name] = values[rows]
        del values
    return [TrackTable(**part) for part in parts]


def _dedupe(table: TrackTable) -> npt.NDArray[np.intp]:
    """The detected rows sorted by (track, frame), one per (track, frame): the highest-scoring (the
    first in `table` among equal scores). Indices, so that the table is copied once (sorting,
    filtering and deduplicating it copy by copy held four at once)."""
    detected = np.flatnonzero(table.origin == "detected")
    order = detected[
        np.lexsort((-table.score[detected], table.frame_index[detected], table.track_id[detected]))
    ]
    track, frame = table.track_id[order], table.frame_index[order]
    dup = np.r_[False, (np.diff(track) == 0) & (np.diff(frame) == 0)]
    return np.asarray(order[~dup], dtype=np.intp)


def _track_category(det: TrackTable, starts: npt.NDArray[np.intp]) -> I64:
    """Each track's category index: the one with the largest summed score."""
    cat = np.array([_CATEGORY_INDEX[c] for c in det.category.tolist()], np.int64)
    track = np.repeat(np.arange(starts.size), np.diff(np.append(starts, len(det))))
    votes = np.zeros((starts.size, len(CATEGORIES)))
    np.add.at(votes, (track, cat), det.score.astype(np.float64) + 1e-6)
    return np.asarray(np.argmax(votes, axis=1), dtype=np.int64)


def _track_score(
    score: F32, ranges: F64, starts: npt.NDArray[np.intp], counts: I64, category: I64, cfg: RefineConfig
) -> F32:
    """Per track: the mean of its top-k detection scores (k = `score_top_k`, 0: all), its deficit from 1
    times exp(-mean range / its category's `score_range_m`) where it has one, times min(1, detections /
    its category's `score_frames`, else `full_score_frames`). ranges: (N,) each detection's horizontal
    distance from the sensor, m."""
    track = np.repeat(np.arange(starts.size), counts)
    order = np.lexsort((-score, track))  # per track, best first
    rank = np.arange(score.size) - np.repeat(starts, counts)
    k = cfg.score_top_k if cfg.score_top_k > 0 else score.size
    top = rank < k
    sums = np.bincount(track, weights=np.where(top, score[order], 0.0), minlength=starts.size)
    mean = sums / np.minimum(counts, k)
    if cfg.score_range_m:
        scale = np.array([cfg.score_range_m.get(c, np.inf) for c in CATEGORIES], np.float64)[category]
        mean_range = np.bincount(track, weights=ranges, minlength=starts.size) / counts
        mean = 1.0 - (1.0 - mean) * np.exp(-mean_range / scale)
    per_category = [cfg.score_frames.get(c, cfg.full_score_frames) for c in CATEGORIES]
    frames: F64 = np.array(per_category, np.float64)[category]
    scaled = mean * np.minimum(1.0, counts / frames)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _aligned_yaw(yaw: F64, ref: F64, weight: F32, starts: npt.NDArray[np.intp]) -> F64:
    """Yaws turned by pi where they point away from `ref`; NaN refs: the track's (weighted) majority."""
    counts = np.diff(np.append(starts, yaw.size))
    out = yaw.copy()
    has_ref = ~np.isnan(ref)
    flip = has_ref & (np.abs(wrap_angle(yaw - np.where(has_ref, ref, 0.0))) > 0.5 * math.pi)
    out[flip] = wrap_angle(yaw[flip] + math.pi)
    majority = _track_heading(out, weight, starts, counts, prefer=has_ref)
    rest = ~has_ref & (np.abs(wrap_angle(out - majority)) > 0.5 * math.pi)
    out[rest] = wrap_angle(out[rest] + math.pi)
    return out


def _track_heading(
    yaw: F64, weight: F32, starts: npt.NDArray[np.intp], counts: I64, *, prefer: Bool | None = None,
    mean: bool = False,
) -> F64:  # fmt: skip
    """Per row, its track's heading: the weighted circular mean of the yaws where `prefer` (when a track
    has any), else the axis of all its yaws (mean of 2 yaw) turned to the side most of the weight is on.
    With `mean`, the plain weighted circular mean of the (already aligned) yaws."""
    track = np.repeat(np.arange(starts.size), counts)
    w = weight.astype(np.float64) + 1e-6
    if mean:
        return np.asarray(_circular_mean(yaw, w, track, starts.size)[track], dtype=np.float64)
    axis = 0.5 * _circular_mean(2.0 * yaw, w, track, starts.size)
    along = np.cos(yaw - axis[track]) >= 0.0
    side = np.bincount(track, np.where(along, w, -w), starts.size)
    heading = np.where(side >= 0.0, axis, axis + math.pi)
    if prefer is not None and prefer.any():
        has = np.bincount(track, prefer.astype(np.float64), starts.size) > 0
        heading = np.where(has, _circular_mean(yaw, np.where(prefer, w, 0.0), track, starts.size), heading)
    return np.asarray(wrap_angle(heading)[track], dtype=np.float64)


def _circular_mean(angle: F64, weight: F64, group: npt.NDArray[np.intp], n: int) -> F64:
    """(n,) weighted circular mean of `angle` per group."""
    c = np.bincount(group, weight * np.cos(angle), n)
    s = np.bincount(group, weight * np.sin(angle), n)
    return np.asarray(np.arctan2(s, c), dtype=np.float64)


def _unwrap(yaw: F64, starts: npt.NDArray[np.intp]) -> F64:
    """Yaws made continuous along each track (steps wrapped to [-pi, pi)), starting at the first yaw.
    Each track's steps are summed on their own (a running sum over all tracks, less its value at the
    track's start, made a track's yaws depend on the other tracks' rounding)."""
    step = np.r_[0.0, wrap_angle(np.diff(yaw))]
    out = np.empty_like(yaw, dtype=np.float64)
    _unwrap_kernel(np.ascontiguousarray(yaw, dtype=np.float64), step, starts.astype(np.int64), out)
    return out


@njit(cache=True)
def _unwrap_kernel(yaw: F64, step: F64, starts: I64, out: F64) -> None:  # pragma: no cover - numba
    for k in range(starts.size):
        s = starts[k]
        e = starts[k + 1] if k + 1 < starts.size else yaw.size
        total = 0.0
        out[s] = yaw[s]
        for i in range(s + 1, e):
            total += step[i]
            out[i] = yaw[s] + total


def _not_outliers(values: F64, weight: F64, starts: npt.NDArray[np.intp], ratio: float) -> Bool:
    """(N,) bool: the `values` (N,) at most `ratio` times above their track's weighted median: the
    smallest of its values with positive `weight` (N,) whose cumulative weight reaches half the
    track's (a track with no positive weight: all kept)."""
    counts = np.diff(np.append(starts, values.size))
    track = np.repeat(np.arange(starts.size), counts)
    order = np.lexsort((values, track))  # per track (rows are grouped by track), by value
    w = np.maximum(weight[order], 0.0)
    cum = np.cumsum(w)
    before = np.r_[0.0, cum][starts]
    total = np.bincount(track, w, starts.size)
    sorted_track = track[order]
    reached = (cum - before[sorted_track] >= 0.5 * total[sorted_track]) & (w > 0.0)
    median = np.full(starts.size, np.inf)
    np.minimum.at(median, sorted_track[reached], values[order][reached])
    return np.asarray(values <= median[track] * (1.0 + ratio), dtype=np.bool_)


def _measured_lengths(
    measured: Bool, plausible: Bool, weight: F64, track_of_det: I64, n: int, share: float
) -> Bool:
    """(N,) bool: the detections whose length counts for their track's length. A length the detector
    completed to its category's typical size (not `measured` (N,)) is not a measurement and does not
    count. In a track whose measured lengths carry less than `share` of its `weight` (N,), only the
    measured lengths that are `plausible` (N,) (not far above the category's typical length) count,
    and where it has none, every length does: a few measured lengths among many completed ones are
    either a full view of the car (seen once as it was passed) or a box merged with a neighbour
    (longer than a car), and the completed ones then keep the merged one down."""
    total = np.bincount(track_of_det, weight, n)
    part = np.bincount(track_of_det, np.where(measured, weight, 0.0), n)
    few = (part < share * total)[track_of_det]
    sane = measured & plausible & (weight > 0.0)
    has_sane = np.bincount(track_of_det, sane.astype(np.float64), n)[track_of_det] > 0
    return np.asarray(np.where(few, np.where(has_sane, sane, True), measured), dtype=np.bool_)


def _track_size(sizes: F64, weight: F64, starts: npt.NDArray[np.intp], q: float) -> F64:
    """(T, 3): per track and dimension, the weighted quantile `q` of the detections' sizes (N, 3), with
    weights (N, 3) per dimension (a track whose weights are all 0 in a dimension: unweighted)."""
    counts = np.diff(np.append(starts, sizes.shape[0]))
    track = np.repeat(np.arange(starts.size), counts)
    w = weight.astype(np.float64) + 1e-6
    out = np.empty((starts.size, 3))
    for a in range(3):
        order = np.lexsort((sizes[:, a], track))
        ws = w[order, a]
        cum = np.cumsum(ws)
        base = np.r_[0.0, cum][starts]
        total = np.bincount(track, ws, starts.size)
        # midpoint rule: the value whose cumulative weight (centred) first reaches q of the track's
        frac = (cum - 0.5 * ws - base[track]) / total[track]
        below = np.bincount(track, (frac < q).astype(np.float64), starts.size).astype(np.int64)
        pick = starts + np.clip(below, 1, counts) - 1
        out[:, a] = sizes[order[pick], a]
    return out


def _segment_median(values: F64, starts: npt.NDArray[np.intp]) -> F64:
    return np.array([np.median(v) for v in np.split(values, starts[1:])], dtype=np.float64)


def _static(pos: F64, speed: F64, grid_start: I64, ends: I64, cfg: RefineConfig) -> Bool:
    """Per track: slow (median smoothed speed) and barely displaced (first to last smoothed position)."""
    moved = np.hypot(*(pos[ends - 1, :2] - pos[grid_start, :2]).T)
    median_speed = np.array([np.median(s) for s in np.split(speed, grid_start[1:])])
    return np.asarray((median_speed < cfg.static_speed_mps) & (moved < cfg.static_displacement_m))


def _held_heading(
    yaw: F64, weight: F32, starts: npt.NDArray[np.intp], counts: I64, static: Bool, median: bool
) -> F64:
    """(T,) per track: the weighted circular mean of its aligned yaws (N,); with `median`, for `static`
    tracks, their weighted median taken about that mean instead (a box turned 15-45 degrees, inside the
    yaw gate, pulls a mean, not a median; all weights 0: the mean)."""
    mean = _track_heading(yaw, weight, starts, counts, mean=True)[starts]
    out = mean.copy()
    for k in np.flatnonzero(static & median).tolist():
        rows = slice(int(starts[k]), int(starts[k] + counts[k]))
        w = weight[rows].astype(np.float64)
        if w.sum() > 0.0:
            off = wrap_angle(yaw[rows] - mean[k])
            order = np.argsort(off)
            cumulative = np.cumsum(w[order])
            out[k] = wrap_angle(mean[k] + off[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])
    return out


def _static_robust(xy: F64, t_ns: I64, starts: npt.NDArray[np.intp], cfg: RefineConfig) -> Bool:
    """Per track: its detected centres xy (N, 2) at t_ns (N,) (rows sorted by track, then time) neither
    move faster than `static_speed_mps` nor further than `static_displacement_m` over the track, robustly:
    the velocity is the difference of the per-axis median centres of the later and the earlier half of
    its detections over that of their median times (a box in four turned and shifted moves neither
    median), and the distance that velocity times the track's duration. Tracks of fewer than 4
    detections: False (their halves say nothing)."""
    out = np.zeros(starts.size, bool)
    for k, (c, t) in enumerate(zip(np.split(xy, starts[1:]), np.split(t_ns, starts[1:]), strict=True)):
        half = c.shape[0] // 2
        if half < 2:
            continue
        dt = (float(np.median(t[-half:])) - float(np.median(t[:half]))) * 1e-9
        if dt <= 0.0:
            continue
        speed = float(np.hypot(*(np.median(c[-half:], axis=0) - np.median(c[:half], axis=0)))) / dt
        out[k] = speed < cfg.static_speed_mps and speed * (t[-1] - t[0]) * 1e-9 < cfg.static_displacement_m
    return out


def _fill_per_track(values: F64, grid_start: I64, ends: I64) -> F64:
    """NaNs replaced by the nearest earlier value of the same track (else the first later one)."""
    out = values.copy()
    for s, e in zip(grid_start.tolist(), ends.tolist(), strict=True):
        seg = out[s:e]
        ok = np.flatnonzero(~np.isnan(seg))
        if ok.size:
            idx = np.maximum.accumulate(np.where(~np.isnan(seg), np.arange(seg.size), -1))
            seg[:] = np.where(idx >= 0, seg[np.maximum(idx, 0)], seg[ok[0]])
    return out


def _short_gaps(observed: Bool, max_gap: int, bridged: npt.NDArray[np.intp]) -> Bool:
    """Grid rows in runs of at most `max_gap` unobserved frames, and in the runs just before the rows
    `bridged` (where two tracks were joined: filled whatever their length); tracks start and end
    observed."""
    run_id = np.cumsum(observed)  # unobserved rows share the id of the observed row before them
    lengths = np.bincount(run_id, weights=(~observed).astype(np.float64))
    fill = lengths <= max_gap if max_gap > 0 else np.zeros(lengths.size, bool)
    fill[run_id[bridged] - 1] = True
    return np.asarray(~observed & fill[run_id])


def _capture_lag(offset_ns: F64, det_grid: I64, n_grid: int) -> F64 | None:
    """(M, 3) seconds from each grid row's stamp to the capture instant of its detection's x and y
    (z: 0), from the detections' `capture_offset_ns` (N,) at grid rows `det_grid` (N,); None when no
    offset is known and non-zero (NaN: unknown, taken at the stamp)."""
    known = np.isfinite(offset_ns)
    if not (known & (offset_ns != 0.0)).any():
        return None
    lag = np.zeros((n_grid, 3))
    lag[det_grid, :2] = np.where(known, offset_ns * 1e-9, 0.0)[:, None]
    return lag


def _smooth(
    t_s: F64, z: F64, starts: I64, ends: I64, q: F64, r: F64, v0: float, lag: F64 | None = None
) -> tuple[F64, F64]:
    """RTS-smoothed positions and velocities (M, A) of per-axis constant-velocity models.

    t_s (M,) seconds; z (M, A) measurements, NaN where missing; tracks are rows [starts[k], ends[k]);
    q (T, A) acceleration noise std, r (T, A) measurement noise std per track; lag (M, A) seconds or
    None (0): a measurement is of the position `lag` after its row's time (a moving object caught by a
    sweep after its stamp), the states are at the rows' times. Axes with no measurement in a track
    come out NaN.
    """
    pos, vel = np.full(z.shape, np.nan), np.full(z.shape, np.nan)
    lags = np.zeros(z.shape) if lag is None else np.ascontiguousarray(lag, dtype=np.float64)
    _rts_kernel(
        np.ascontiguousarray(t_s), np.ascontiguousarray(z), starts.astype(np.int64), ends.astype(np.int64),
        np.ascontiguousarray(q), np.ascontiguousarray(r), v0, lags, pos, vel,
    )  # fmt: skip
    return pos, vel


@njit(cache=True)
def _rts_kernel(
    t_s: F64, z: F64, starts: I64, ends: I64, q: F64, r: F64, v0: float, lag: F64, pos: F64, vel: F64
) -> None:  # pragma: no cover - numba
    """Kalman filter then Rauch-Tung-Striebel pass per track and axis; state (p, v), 2x2 covariances.

    Prior: the first measurement of the axis, velocity 0 with std v0, position std 10 m (nearly
    diffuse). Prediction F = [[1, dt], [0, 1]], Q = q^2 [[dt^4/4, dt^3/2], [dt^3/2, dt^2]] (white
    acceleration, as the online tracker's). Update with H = [1, d], d = lag (the measurement is the
    position d after the state's time: p + v d), R = r^2 where measured.
    """
    n_axes = z.shape[1]
    for k in range(starts.size):
        s, e = starts[k], ends[k]
        n = e - s
        xf = np.empty((n, 2))  # filtered
        pf = np.empty((n, 3))  # filtered covariance (p00, p01, p11)
        xp = np.empty((n, 2))  # predicted
        pp = np.empty((n, 3))
        for a in range(n_axes):
            first = -1
            for i in range(n):
                if not math.isnan(z[s + i, a]):
                    first = i
                    break
            if first < 0:
                continue
            x0, x1 = z[s + first, a], 0.0
            p00, p01, p11 = 100.0, 0.0, v0 * v0
            qa, ra = q[k, a] * q[k, a], r[k, a] * r[k, a]
            for i in range(n):
                if i > 0:
                    dt = t_s[s + i] - t_s[s + i - 1]
                    x0 = x0 + dt * x1
                    n00 = p00 + 2.0 * dt * p01 + dt * dt * p11 + qa * dt**4 / 4.0
                    n01 = p01 + dt * p11 + qa * dt**3 / 2.0
                    n11 = p11 + qa * dt * dt
                    p00, p01, p11 = n00, n01, n11
                xp[i, 0], xp[i, 1] = x0, x1
                pp[i, 0], pp[i, 1], pp[i, 2] = p00, p01, p11
                m = z[s + i, a]
                d = lag[s + i, a]
                if not math.isnan(m) and d == 0.0:
                    sv = p00 + ra
                    k0, k1 = p00 / sv, p01 / sv
                    innov = m - x0
                    x0, x1 = x0 + k0 * innov, x1 + k1 * innov
                    p00, p01, p11 = (1.0 - k0) * p00, (1.0 - k0) * p01, p11 - k1 * p01
                elif not math.isnan(m):  # H = [1, d]: P H^T = (h0, h1), S = H P H^T + R
                    h0, h1 = p00 + d * p01, p01 + d * p11
                    sv = h0 + d * h1 + ra
                    k0, k1 = h0 / sv, h1 / sv
                    innov = m - (x0 + d * x1)
                    x0, x1 = x0 + k0 * innov, x1 + k1 * innov
                    p00, p01, p11 = p00 - k0 * h0, p01 - k0 * h1, p11 - k1 * h1
                xf[i, 0], xf[i, 1] = x0, x1
                pf[i, 0], pf[i, 1], pf[i, 2] = p00, p01, p11
            pos[s + n - 1, a], vel[s + n - 1, a] = xf[n - 1, 0], xf[n - 1, 1]
            s0, s1 = xf[n - 1, 0], xf[n - 1, 1]
            for i in range(n - 2, -1, -1):
                dt = t_s[s + i + 1] - t_s[s + i]
                # C = Pf F^T Pp^-1
                a00, a01, a11 = pf[i, 0], pf[i, 1], pf[i, 2]
                f00, f01, f10, f11 = a00 + dt * a01, a01, a01 + dt * a11, a11  # Pf F^T
                b00, b01, b11 = pp[i + 1, 0], pp[i + 1, 1], pp[i + 1, 2]
                det = b00 * b11 - b01 * b01
                i00, i01, i11 = b11 / det, -b01 / det, b00 / det
                c00, c01 = f00 * i00 + f01 * i01, f00 * i01 + f01 * i11
                c10, c11 = f10 * i00 + f11 * i01, f10 * i01 + f11 * i11
                d0, d1 = s0 - xp[i + 1, 0], s1 - xp[i + 1, 1]
                s0 = xf[i, 0] + c00 * d0 + c01 * d1
                s1 = xf[i, 1] + c10 * d0 + c11 * d1
                pos[s + i, a], vel[s + i, a] = s0, s1
