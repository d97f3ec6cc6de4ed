"""The review queue: where a reviewer should look first, computed from a sequence's labels.

    flags = review_flags(labels)        # a FLAGS table (exporters.schema), most severe first
    queue = read_queue("out/")          # every sequence's flags of a dataset, most severe first
    print(format_queue(queue, top=20))

`fusion detect` and `fusion run` write `flags/<sequence_id>.parquet` for every sequence. A flag
names one box (`frame_index` and `track_id`) or, with `frame_index` null, a whole track (when a
condition holds on every box of the track, or is about the track itself):

- `impossible_motion`: the box leaves its track's path and comes back next frame (a one-frame
  teleport), its heading flips and flips back, or the track moves faster, accelerates harder or
  turns faster than its category can (world frame);
- `id_switch`: the track jumps off its path at this box and carries on from there: another
  object's path continues under this id;
- `implausible_size`: length, width or height outside the category's range, or a box's size
  differs from its track's median size by more than `size_change_ratio`;
- `overlap`: the box overlaps a box of another track in the same frame (BEV IoU >= `overlap_iou`);
  the lower-scored of the two is flagged;
- `low_confidence`: the track's score is below `low_score`;
- `short_track`: the track spans fewer than `min_track_frames` frames;
- `few_points`: a detected box holds fewer LiDAR points than its category's `min_points`;
- `interpolated`: a box filled in by 4D refinement (`origin = interpolated`) inside a stretch of at
  least `min_interpolated_frames` such boxes, on a track moving at least its category's
  `interpolated_min_speed_mps` (vehicles: 2 m/s; pedestrians and cyclists: never).

Motion is judged along each track in frame order, in the world frame when every box has a
world pose (`world_x, world_y, world_yaw`), else in the LiDAR frame (then only the jumps, whose
size does not depend on the ego's own motion, are checked; speed, acceleration and yaw rate are
not). A segment is the step between two consecutive boxes of a track; its *expected* step is the
median velocity of the segments within `window` of it times its duration, so one or two bad boxes
do not move the expectation. A segment *jumps* when its step misses the expected one by more than
`jump_m + 0.5 * max_accel * dt^2` (the category's). A box between two jumping segments is a
teleport (`impossible_motion`); a box after a single jumping segment, when the track carries on
smoothly, is an `id_switch`.

Severity (0..1, higher first) = `SEVERITY_BASE[flag] + 0.1 * magnitude`, magnitude in 0..1 (how far
past its limit the value is), so the kinds rank as the table lists them and, within a kind, the
worst first. Thresholds are per category in `FlagConfig.limits` (a Mapping, loadable from TOML
`[flags.limits.car]`). The defaults were tuned for precision on simulated drives: on twelve clean
3 s drives 80.5 % of the flags (79.2 % on the four held out from tuning) point at boxes that really
are wrong against the ground truth, where 6 % of all pre-labels are (`bench/flags_precision.py`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from calib.transform import wrap_angle
from exporters.schema import BOX_COLUMNS, CATEGORIES, FLAGS
from fusion.errors import FusionError
from fusion.evaluation.iou import frame_pair_ious

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


class FlagError(FusionError):
    """The review queue cannot be computed or read: a bad flag config, a labels table without a column."""


FLAG_NAMES: Final = (
    "impossible_motion",
    "id_switch",
    "implausible_size",
    "overlap",
    "low_confidence",
    "short_track",
    "few_points",
    "interpolated",
)

SEVERITY_BASE: Final[Mapping[str, float]] = MappingProxyType(
    {
        "impossible_motion": 0.9,
        "id_switch": 0.85,
        "implausible_size": 0.75,
        "overlap": 0.7,
        "low_confidence": 0.55,
        "short_track": 0.45,
        "few_points": 0.35,
        "interpolated": 0.25,
    }
)
"""Severity of a flag at its limit; its magnitude adds up to 0.1 (module docstring)."""


_FLOAT_LIMITS: Final = (
    "max_speed_mps",
    "max_accel_mps2",
    "max_yaw_rate_rps",
    "jump_m",
    "interpolated_min_speed_mps",
)


@dataclass(frozen=True)
class Limits:
    """What one category can physically be and do, and what its boxes need."""

    min_size_m: tuple[float, float, float]  # smallest plausible length, width, height
    max_size_m: tuple[float, float, float]  # largest plausible length, width, height
    max_speed_mps: float  # fastest plausible speed, world frame
    max_accel_mps2: float  # hardest plausible acceleration or braking
    max_yaw_rate_rps: float  # fastest plausible turn (inf: heading not judged, e.g. pedestrians)
    jump_m: float  # a step that misses the track's expected step by more than this jumps
    min_points: int  # a detected box with fewer LiDAR points is flagged
    interpolated_min_speed_mps: float  # interpolated stretches of tracks this fast are flagged (inf: never)

    def __post_init__(self) -> None:
        for name in (
            "max_speed_mps",
            "max_accel_mps2",
            "max_yaw_rate_rps",
            "jump_m",
            "interpolated_min_speed_mps",
        ):
            object.__setattr__(self, name, float(getattr(self, name)))  # "inf" from JSON, too
        object.__setattr__(self, "min_points", int(self.min_points))
        object.__setattr__(self, "min_size_m", tuple(float(v) for v in self.min_size_m))
        object.__setattr__(self, "max_size_m", tuple(float(v) for v in self.max_size_m))
        if len(self.min_size_m) != 3 or len(self.max_size_m) != 3:
            raise FlagError("Limits.min_size_m and max_size_m need three values: length, width, height")
        if any(lo > hi for lo, hi in zip(self.min_size_m, self.max_size_m, strict=True)):
            raise FlagError(f"Limits: min_size_m {self.min_size_m} exceeds max_size_m {self.max_size_m}")
        for name in ("max_speed_mps", "max_accel_mps2", "max_yaw_rate_rps", "jump_m"):
            if not getattr(self, name) > 0.0:
                raise FlagError(
                    f"Limits.{name} = {getattr(self, name)}; use a positive value (inf: no limit)"
                )


DEFAULT_LIMITS: Final[Mapping[str, Limits]] = MappingProxyType(
    {
        # category: size min, size max, speed, accel, yaw rate, jump, min points, interpolated speed
        "car": Limits((2.5, 1.4, 1.0), (6.5, 2.6, 2.5), 70.0, 15.0, 1.5, 1.0, 3, 2.0),
        "truck": Limits((4.0, 1.8, 1.8), (20.0, 3.2, 4.5), 45.0, 10.0, 1.0, 1.5, 3, 2.0),
        "bus": Limits((6.0, 2.2, 2.5), (20.0, 3.2, 4.5), 35.0, 10.0, 1.0, 1.5, 3, 2.0),
        "pedestrian": Limits((0.2, 0.2, 0.8), (1.5, 1.5, 2.3), 10.0, 10.0, math.inf, 0.7, 2, math.inf),
        "cyclist": Limits((1.0, 0.3, 1.0), (2.5, 1.2, 2.3), 20.0, 10.0, 3.0, 0.8, 2, math.inf),
        "motorcycle": Limits((1.2, 0.4, 0.8), (3.0, 1.4, 2.2), 70.0, 15.0, 2.5, 1.0, 2, 2.0),
        "unknown": Limits((0.05, 0.05, 0.05), (30.0, 30.0, 10.0), 70.0, 15.0, math.inf, 1.5, 2, math.inf),
    }
)
"""Per-category limits: generous physical bounds (a flag means "look", not "wrong")."""


def _default_limits() -> Mapping[str, Limits]:
    return MappingProxyType(dict(DEFAULT_LIMITS))


@dataclass(frozen=True)
class FlagConfig:
    """What `review_flags` flags (module docstring)."""

    # per-category limits; every category of the labels needs an entry
    limits: Mapping[str, Limits] = field(default_factory=_default_limits)
    # tracks scoring below this are flagged low_confidence (scores are calibrated: below 0.5 a
    # track is more likely wrong than right; refinement already drops tracks under 0.3)
    low_score: float = 0.4
    # tracks spanning fewer frames are flagged short_track
    min_track_frames: int = 5
    # boxes of two tracks overlapping by at least this BEV IoU in one frame are flagged overlap
    overlap_iou: float = 0.1
    # a box whose length, width or height is this many times its track's median (or 1/this) is flagged
    size_change_ratio: float = 1.5
    # segments either side whose velocities give a segment's expected step (median)
    window: int = 3
    # an interpolated stretch needs at least this many boxes to be flagged (and its track the
    # category's interpolated_min_speed_mps: a parked object, or a slow one, interpolates well)
    min_interpolated_frames: int = 2
    # which flags to compute (all by default)
    enabled: tuple[str, ...] = FLAG_NAMES

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))
        object.__setattr__(self, "enabled", tuple(self.enabled))
        unknown = sorted(set(self.enabled) - set(FLAG_NAMES))
        if unknown:
            raise FlagError(
                f"FlagConfig.enabled names unknown flags {unknown}; known: {', '.join(FLAG_NAMES)}"
            )
        missing = sorted(set(CATEGORIES) - set(self.limits))
        if missing:
            raise FlagError(f"FlagConfig.limits has no entry for {missing}; give every category one")
        if not 0.0 < self.overlap_iou <= 1.0:
            raise FlagError(f"FlagConfig.overlap_iou = {self.overlap_iou}; use an IoU in (0, 1]")
        if not self.size_change_ratio > 1.0:
            raise FlagError(f"FlagConfig.size_change_ratio = {self.size_change_ratio}; use a ratio > 1")
        if self.window < 1 or self.min_track_frames < 1 or self.min_interpolated_frames < 1:
            raise FlagError("FlagConfig.window, min_track_frames and min_interpolated_frames must be >= 1")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FlagConfig:
        """A config from a mapping (e.g. TOML `[flags]`, `[flags.limits.car]`); `limits` entries
        are merged over the defaults field by field. Raises FlagError for unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FlagError(f"flags config: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        values = dict(data)
        try:
            if "limits" in values:
                limits = dict(DEFAULT_LIMITS)
                for name, entry in values["limits"].items():
                    base = limits.get(name)
                    if base is None:
                        raise FlagError(f"flags config: unknown category {name!r}; use one of {CATEGORIES}")
                    limits[name] = replace(base, **entry)
                values["limits"] = limits
            if "enabled" in values:
                values["enabled"] = tuple(values["enabled"])
            return cls(**values)
        except TypeError as err:
            raise FlagError(f"flags config: a value has the wrong shape ({err})") from err

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON-able values (infinite limits as the string "inf")."""

        def value(v: Any) -> Any:
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            return list(v) if isinstance(v, tuple) else v

        return {
            "limits": {
                c: {f.name: value(getattr(lim, f.name)) for f in fields(lim)}
                for c, lim in self.limits.items()
            },
            **{f.name: value(getattr(self, f.name)) for f in fields(self) if f.name != "limits"},
        }


MEDIAN_BLOCK: Final = 8192
"""Segments whose windowed median velocity is computed at once (~40 bytes of scratch per segment
and window slot): bounds the flags' memory for long logs."""
OVERLAP_FRAMES: Final = 256
"""Sweeps whose box-pair IoUs are computed at once (8 bytes per pair of a sweep's boxes)."""

_NEEDED: Final = ("sequence_id", "frame_index", "timestamp_ns", "track_id", "category", "score", *BOX_COLUMNS)


@dataclass
class _Found:
    """Flags found so far, one entry per flag (row indices into the sorted labels)."""

    row: list[int] = field(default_factory=list)
    flag: list[str] = field(default_factory=list)
    magnitude: list[float] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)

    def add(self, rows: npt.NDArray[np.intp], flag: str, magnitude: F64, details: list[str]) -> None:
        self.row += rows.tolist()
        self.flag += [flag] * len(rows)
        self.magnitude += np.clip(magnitude, 0.0, 1.0).tolist()
        self.detail += details


def review_flags(labels: pa.Table, config: FlagConfig | None = None, *, tracked: bool = True) -> pa.Table:
    """The review queue of one or more sequences' labels (a labels table), as a FLAGS table sorted
    by descending severity. With `tracked=False` (each box its own track: `fusion detect
    --no-track`) only the per-box flags that need no track are computed (size, overlap, points,
    confidence). Raises FlagError when a column the flags need is missing or holds nulls."""
    config = config or FlagConfig()
    for name in _NEEDED:
        if name not in labels.column_names or labels.column(name).null_count:
            raise FlagError(f"labels: column {name!r} is missing or holds nulls; a labels table has it")
    if labels.num_rows == 0:
        return FLAGS.empty_table()
    names, codes = _codes(labels.column("sequence_id"))
    by_name = np.argsort(names)
    rank = np.empty(len(names), np.int64)
    rank[by_name] = np.arange(len(names))
    seq_code = rank[codes]  # each row's sequence as its place among the sorted ids (no string per row)
    frame = labels.column("frame_index").to_numpy().astype(np.int64)
    track = labels.column("track_id").to_numpy().astype(np.int64)
    order = np.lexsort((frame, track, seq_code))
    t = _Labels.of(labels, seq_code[order], names[by_name], order)
    del names, codes, seq_code, frame, track, order  # the flags below hold ~40 bytes a row each

    found = _Found()
    on = set(config.enabled)
    if "implausible_size" in on:
        _size_flags(t, config, found, tracked)
    if "overlap" in on:
        _overlap_flags(t, config, found)
    if "few_points" in on:
        _few_points_flags(t, config, found)
    track_rows: list[tuple[int, str, float, str]] = []  # (first row of track, flag, magnitude, detail)
    if tracked:
        if "impossible_motion" in on or "id_switch" in on:
            _motion_flags(t, config, found, on)
        if "interpolated" in on:
            _interpolated_flags(t, config, found)
        _track_flags(t, config, on, track_rows)
    elif "low_confidence" in on:
        low = np.flatnonzero(t.score < config.low_score)
        found.add(
            low,
            "low_confidence",
            (config.low_score - t.score[low]) / config.low_score,
            [f"score {s:.3f} < {config.low_score:g}" for s in t.score[low]],
        )
    return _table(t, found, track_rows, collapse=tracked)


@dataclass(frozen=True)
class _Labels:
    """The labels sorted by (sequence, track, frame), as arrays (N rows)."""

    sequence: I64  # each row's sequence: an index into sequence_ids
    sequence_ids: npt.NDArray[np.str_]  # sorted
    frame: I64
    t_s: F64  # seconds since the first row's stamp
    track: I64
    score: F64
    boxes: F64  # (N, 7) lidar frame
    xy_yaw: F64  # (N, 3) where motion is judged: world x, y, yaw, or lidar
    world: bool
    num_points: I64 | None
    interpolated: Bool
    kinds: npt.NDArray[np.str_]  # the categories present
    kind: npt.NDArray[np.signedinteger[Any]]  # (N,) index of each row's category in `kinds` (not a
    # string per row: 40 bytes each)
    starts: npt.NDArray[np.intp]  # first row of each (sequence, track) group
    group: npt.NDArray[np.intp]  # (N,) group of each row

    @classmethod
    def of(
        cls, table: pa.Table, sequence: I64, sequence_ids: npt.NDArray[np.str_], order: npt.NDArray[np.intp]
    ) -> _Labels:
        """The rows of `table` in `order` (`sequence`: each of those rows' index into the sorted
        `sequence_ids`), each column
        read and sorted on its own: no sorted copy of the whole table (its camera boxes are a third
        of it) is made."""

        def col(name: str) -> F64:
            return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)[order]

        def ints(name: str) -> I64:
            values: I64 = table.column(name).to_numpy().astype(np.int64)[order]
            return values

        def stacked(names: Sequence[str]) -> F64:  # one column read at a time, not all then stacked
            out = np.empty((len(order), len(names)))
            for i, name in enumerate(names):
                out[:, i] = col(name)
            return out

        boxes = stacked(BOX_COLUMNS)
        world = all(name in table.column_names for name in ("world_x", "world_y", "world_yaw"))
        xy_yaw = boxes[:, [0, 1, 6]]
        if world:
            candidate = stacked(("world_x", "world_y", "world_yaw"))
            world = bool(np.isfinite(candidate).all())
            if world:
                xy_yaw = candidate
        stamp = ints("timestamp_ns")
        track = ints("track_id")
        new_group = np.ones(len(track), dtype=bool)
        new_group[1:] = (track[1:] != track[:-1]) | (sequence[1:] != sequence[:-1])
        starts = np.flatnonzero(new_group)
        has_points = "num_points" in table.column_names and table.column("num_points").null_count == 0
        interpolated = (
            pc.equal(table.column("origin"), "interpolated")
            .to_numpy(zero_copy_only=False)
            .astype(bool)[order]
            if "origin" in table.column_names
            else np.zeros(len(track), dtype=bool)
        )
        kinds, kind = _codes(table.column("category"))
        kind = kind[order]
        return cls(
            sequence=sequence,
            sequence_ids=sequence_ids,
            frame=ints("frame_index"),
            t_s=(stamp - stamp.min()) * 1e-9,
            track=track,
            score=col("score"),
            boxes=boxes,
            xy_yaw=xy_yaw,
            world=world,
            num_points=ints("num_points") if has_points else None,
            interpolated=interpolated,
            kinds=kinds,
            kind=kind,
            starts=starts,
            group=np.cumsum(new_group) - 1,
        )

    def category(self, row: int | np.integer[Any]) -> str:
        """Row `row`'s category."""
        return str(self.kinds[self.kind[row]])

    def limit(self, name: str, config: FlagConfig) -> F64:
        """(N,) the value of Limits field `name` for each row's category."""
        table = {c: float(getattr(config.limits[c], name)) for c in config.limits}
        values: F64 = np.array([table.get(str(c), math.nan) for c in self.kinds], dtype=np.float64)
        return np.take(values, self.kind)


def _codes(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.signedinteger[Any]]]:
    """The distinct strings of a string column without nulls and (N,) each row's index into them:
    no Python string per row."""
    encoded = column.combine_chunks().dictionary_encode()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=str)
    return names, encoded.indices.to_numpy(zero_copy_only=False)


def _size_flags(t: _Labels, config: FlagConfig, found: _Found, tracked: bool) -> None:
    """Sizes outside the category's bounds, or far off the track's median, a block of whole
    tracks at a time (`SIZE_BLOCK`)."""
    per_kind = [_size_bounds(t, config, which) for which in (0, 1)]
    names = ("length", "width", "height")
    details = []
    rows, magnitude = [np.zeros(0, np.intp)], [np.zeros(0)]
    for first, last in _track_blocks(t.starts, len(t.track), SIZE_BLOCK):
        size = t.boxes[first:last, 3:6]
        lo, hi = (bounds[t.kind[first:last]] for bounds in per_kind)
        below = np.where(size < lo, (lo - size) / lo, 0.0)
        above = np.where(size > hi, (size - hi) / hi, 0.0)
        excess = np.maximum(below, above)
        del below, above
        ratio = np.zeros_like(size)
        if tracked:
            median = np.zeros_like(size)
            starts = t.starts[(t.starts >= first) & (t.starts < last)] - first
            for k, start in enumerate(starts):
                end = starts[k + 1] if k + 1 < len(starts) else last - first
                median[start:end] = np.median(size[start:end], axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.maximum(size / median, median / size)
            ratio = np.where(np.isfinite(ratio), ratio, 0.0)
            del median
        changed = ratio > config.size_change_ratio
        block_rows = np.flatnonzero((excess > 0).any(axis=1) | changed.any(axis=1))
        block_magnitude = np.zeros(len(block_rows))
        for i, r in enumerate(block_rows):
            if (excess[r] > 0).any():
                d = int(np.argmax(excess[r]))
                what = "above" if size[r, d] > hi[r, d] else "below"
                bound = hi[r, d] if what == "above" else lo[r, d]
                limit = "maximum" if what == "above" else "minimum"
                kind = t.category(first + r)
                details.append(f"{names[d]} {size[r, d]:.2f} m is {what} a {kind}'s {limit} {bound:.2f} m")
                block_magnitude[i] = float(excess[r, d])
            else:
                d = int(np.argmax(ratio[r]))
                details.append(f"{names[d]} {size[r, d]:.2f} m is {ratio[r, d]:.1f}x off the track's median")
                block_magnitude[i] = (ratio[r, d] - config.size_change_ratio) / config.size_change_ratio
        rows.append(block_rows + first)
        magnitude.append(block_magnitude)
    found.add(np.concatenate(rows), "implausible_size", np.concatenate(magnitude), details)


SIZE_BLOCK: Final = 8192
"""Rows (whole tracks) whose size flags are computed at once: a dozen (N, 3) intermediates of 24
bytes a row are a block's, not a whole log's."""


def _track_blocks(starts: npt.NDArray[np.intp], n: int, rows: int) -> list[tuple[int, int]]:
    """Row ranges [first, last) of whole tracks (`starts`: each track's first row of `n`), about
    `rows` rows each (a longer track alone)."""
    bounds = [0]
    for start in starts.tolist():
        if start - bounds[-1] >= rows:
            bounds.append(start)
    if n > bounds[-1]:
        bounds.append(n)
    return list(itertools.pairwise(bounds))


def _size_bounds(t: _Labels, config: FlagConfig, which: int) -> F64:
    """(K, 3) minimum (which=0) or maximum (1) length, width, height of each category of `t.kinds`."""
    table = {c: (lim.min_size_m if which == 0 else lim.max_size_m) for c, lim in config.limits.items()}
    return np.array([table[str(c)] for c in t.kinds], dtype=np.float64).reshape(-1, 3)


def _overlap_flags(t: _Labels, config: FlagConfig, found: _Found) -> None:
    by_frame = np.lexsort((t.frame, t.sequence))
    key_seq, key_frame = t.sequence[by_frame], t.frame[by_frame]
    new = np.ones(len(by_frame), dtype=bool)
    new[1:] = (key_seq[1:] != key_seq[:-1]) | (key_frame[1:] != key_frame[:-1])
    start = np.append(np.flatnonzero(new), len(by_frame)).astype(np.int64)
    del key_seq, key_frame, new
    best = np.zeros(len(by_frame))
    other = np.full(len(by_frame), -1, dtype=np.int64)
    n_frames = len(start) - 1
    for f in range(n_frames):
        if f % OVERLAP_FRAMES == 0:  # the IoUs of the next block of frames (all pairs of a frame)
            f0, f1 = f, min(f + OVERLAP_FRAMES, n_frames)
            block = start[f0 : f1 + 1] - start[f0]
            rows_in = t.boxes[by_frame[start[f0] : start[f1]]]  # the block's boxes, not all copied
            ious, pair_start = frame_pair_ious(rows_in, rows_in, block, block, False)
        n = int(start[f + 1] - start[f])
        if n < 2:
            continue
        m = ious[pair_start[f - f0] : pair_start[f - f0 + 1]].reshape(n, n).copy()
        rows = by_frame[start[f] : start[f + 1]]
        np.fill_diagonal(m, 0.0)
        m[t.track[rows][:, None] == t.track[rows][None, :]] = 0.0
        for i, j in zip(*np.nonzero(np.triu(m) >= config.overlap_iou), strict=True):
            a, b = rows[i], rows[j]
            # the lower-scored box is flagged; on a tie, the higher track id
            loser, winner = (a, b) if (t.score[a], -t.track[a]) < (t.score[b], -t.track[b]) else (b, a)
            if m[i, j] > best[loser]:
                best[loser], other[loser] = m[i, j], winner
    rows_flagged = np.flatnonzero(other >= 0)
    found.add(
        rows_flagged,
        "overlap",
        best[rows_flagged],
        [f"overlaps track {t.track[other[r]]} (BEV IoU {best[r]:.2f})" for r in rows_flagged],
    )


def _few_points_flags(t: _Labels, config: FlagConfig, found: _Found) -> None:
    if t.num_points is None:
        return
    need = t.limit("min_points", config)
    rows = np.flatnonzero(~t.interpolated & (t.num_points < need))
    found.add(
        rows,
        "few_points",
        1.0 - t.num_points[rows] / need[rows],
        [f"{t.num_points[r]} LiDAR points < {int(need[r])} for a {t.category(r)}" for r in rows],
    )


def _motion_flags(t: _Labels, config: FlagConfig, found: _Found, on: set[str]) -> None:
    n = len(t.track)
    same = np.zeros(max(n - 1, 0), dtype=bool)
    if n > 1:
        same = t.group[1:] == t.group[:-1]
    dt = np.diff(t.t_s) if n > 1 else np.zeros(0)
    valid = same & (dt > 0)
    step = np.diff(t.xy_yaw[:, :2], axis=0) if n > 1 else np.zeros((0, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        velocity = np.where(valid[:, None], step / dt[:, None], np.nan)
    expected = _windowed_median(
        velocity, t.group[:-1] if n > 1 else np.zeros(0, np.intp), valid, config.window
    )
    del velocity
    jump_m = t.limit("jump_m", config)[:-1]
    accel = t.limit("max_accel_mps2", config)[:-1]
    miss = np.linalg.norm(step - expected * dt[:, None], axis=1)
    allowed = jump_m + 0.5 * np.where(np.isfinite(accel), accel, 0.0) * dt**2
    del jump_m, accel
    jumps = valid & (miss > allowed)
    miss_into = np.zeros(n)
    miss_into[1:] = np.where(valid, miss / np.maximum(allowed, 1e-9), 0.0)
    del miss, allowed  # each full-length array is dropped once used: a 5-minute log has ~90k rows

    # Heading: a turn faster than the category's limit (plus 0.2 rad of fitting noise).
    yaw_rate_max = t.limit("max_yaw_rate_rps", config)[:-1]
    signed_dyaw = wrap_angle(np.diff(t.xy_yaw[:, 2])) if n > 1 else np.zeros(0)
    dyaw = np.abs(signed_dyaw)
    turns = valid & t.world & np.isfinite(yaw_rate_max) & (dyaw > yaw_rate_max * dt + 0.2)
    del yaw_rate_max

    # Boxes: into = segment before the box, out = segment after it.
    into_jump = np.zeros(n, dtype=bool)
    out_jump = np.zeros(n, dtype=bool)
    out_valid = np.zeros(n, dtype=bool)
    into_jump[1:] = jumps
    out_jump[:-1] = jumps
    out_valid[:-1] = valid
    teleport = into_jump & out_jump
    prev_teleport = np.zeros(n, dtype=bool)
    prev_teleport[1:] = teleport[:-1]
    switch = into_jump & ~out_jump & out_valid & ~prev_teleport
    dangling = into_jump & ~out_valid  # a jump into a track's last box
    into_turn = np.zeros(n, dtype=bool)
    out_turn = np.zeros(n, dtype=bool)
    into_turn[1:] = turns
    out_turn[:-1] = turns
    into_dyaw = np.zeros(n)
    out_dyaw = np.zeros(n)
    into_dyaw[1:] = signed_dyaw
    out_dyaw[:-1] = signed_dyaw
    undone = np.abs(wrap_angle(into_dyaw + out_dyaw)) < 0.5 * np.minimum(np.abs(into_dyaw), np.abs(out_dyaw))
    flip = into_turn & out_turn & undone  # turns and turns back
    spin = into_turn & out_turn & ~undone  # keeps turning too fast
    prev_turn = np.zeros(n, dtype=bool)
    prev_turn[1:] = into_turn[:-1]
    swing = into_turn & ~out_turn & ~prev_turn  # turns once, too fast, and keeps that heading
    rate = np.zeros(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate[1:] = np.where(valid, dyaw / dt, 0.0)
    del jumps, turns, signed_dyaw, out_valid, prev_teleport, out_turn, into_dyaw, out_dyaw, undone, prev_turn

    if "impossible_motion" in on:
        rows = np.flatnonzero(teleport | dangling)
        found.add(
            rows,
            "impossible_motion",
            (miss_into[rows] - 1.0) / 10.0,
            [
                f"jumps {miss_into[r]:.1f}x its allowed step off the track and back"
                if teleport[r]
                else f"jumps off the track at its last box ({miss_into[r]:.1f}x the allowed step)"
                for r in rows
            ],
        )
        rows = np.flatnonzero((flip | spin | swing) & ~teleport & ~dangling & ~(switch & ("id_switch" in on)))
        limit = t.limit("max_yaw_rate_rps", config)
        found.add(
            rows,
            "impossible_motion",
            (rate[rows] / limit[rows] - 1.0) / 10.0,
            [
                f"heading turns {math.degrees(float(dyaw[r - 1])):.0f} deg and back within a frame"
                if flip[r]
                else f"heading turns at {math.degrees(rate[r]):.0f} deg/s, over a {t.category(r)}'s "
                f"{math.degrees(limit[r]):.0f}"
                for r in rows
            ],
        )
        del rows, limit, flip, spin, swing, rate, dyaw, teleport, dangling
        if t.world:
            # a jump moves the windowed median velocities near it: those boxes are explained already
            near = np.convolve(
                (into_jump | out_jump | into_turn).astype(float), np.ones(2 * config.window + 1), "same"
            )
            already = near > 0
            del near, into_jump, out_jump, into_turn
            _limit_flags(t, config, found, expected, valid, dt, already)
    if "id_switch" in on:
        rows = np.flatnonzero(switch)
        found.add(
            rows,
            "id_switch",
            (miss_into[rows] - 1.0) / 10.0,
            [
                f"the track jumps {np.linalg.norm(step[r - 1]):.1f} m here and carries on from there"
                for r in rows
            ],
        )


def _limit_flags(
    t: _Labels, config: FlagConfig, found: _Found, velocity: F64, valid: Bool, dt: F64, already: Bool
) -> None:
    """Speed and acceleration of the robust (median) velocities beyond the category's limits; each
    flags the later box of its segment, unless a jump there already did."""
    n = len(t.track)
    speed = np.linalg.norm(velocity, axis=1)
    max_speed = t.limit("max_speed_mps", config)[:-1]
    fast = valid & (speed > max_speed)
    accel = np.zeros(n - 1)
    if n > 2:
        both = valid[1:] & valid[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.linalg.norm(velocity[1:] - velocity[:-1], axis=1) / (0.5 * (dt[1:] + dt[:-1]))
        accel[1:] = np.where(both, a, 0.0)
    max_accel = t.limit("max_accel_mps2", config)[:-1]
    hard = accel > max_accel
    rows = np.flatnonzero(fast | hard) + 1
    rows = rows[~already[rows]]
    seg = rows - 1
    mag = np.maximum(speed[seg] / max_speed[seg], accel[seg] / max_accel[seg]) - 1.0
    found.add(
        rows,
        "impossible_motion",
        mag,
        [
            f"speed {speed[s]:.1f} m/s over a {t.category(s)}'s {max_speed[s]:.0f}"
            if fast[s]
            else f"acceleration {accel[s]:.1f} m/s^2 over a {t.category(s)}'s {max_accel[s]:.0f}"
            for s in seg
        ],
    )


def _windowed_median(velocity: F64, group: npt.NDArray[np.intp], valid: Bool, window: int) -> F64:
    """(S, 2): per segment, the median velocity of the valid segments of its track within `window`."""
    s = len(velocity)
    out = np.zeros((s, 2))
    if s == 0:
        return out
    padded = np.full((s + 2 * window, 2), np.nan)
    padded[window : window + s] = np.where(valid[:, None], velocity, np.nan)
    gpad = np.full(s + 2 * window, -1, dtype=np.int64)
    gpad[window : window + s] = group
    offsets = np.arange(2 * window + 1)[None, :]
    for lo in range(0, s, MEDIAN_BLOCK):  # each segment's median is its own: blocks bound the scratch
        hi = min(lo + MEDIAN_BLOCK, s)
        idx = np.arange(lo, hi)[:, None] + offsets
        vals = padded[idx]  # (block, 2w+1, 2)
        same = gpad[idx] == group[lo:hi, None]
        vals = np.where(same[:, :, None], vals, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(vals, axis=1)
        out[lo:hi] = np.where(np.isfinite(med), med, 0.0)
    return out


def _interpolated_flags(t: _Labels, config: FlagConfig, found: _Found) -> None:
    n = len(t.track)
    if not t.interpolated.any():
        return
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (t.interpolated[1:] != t.interpolated[:-1]) | (t.group[1:] != t.group[:-1])
    run_id = np.cumsum(new_run) - 1
    run_len = np.bincount(run_id)[run_id]
    speed = np.zeros(n)
    if n > 1:
        dt = np.diff(t.t_s)
        ok = (t.group[1:] == t.group[:-1]) & (dt > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            seg_speed = np.where(ok, np.linalg.norm(np.diff(t.xy_yaw[:, :2], axis=0), axis=1) / dt, np.nan)
        for k, start in enumerate(t.starts):
            end = t.starts[k + 1] if k + 1 < len(t.starts) else n
            values = seg_speed[start : end - 1]
            values = values[np.isfinite(values)]
            speed[start:end] = float(np.median(values)) if values.size else 0.0
    # without world poses the speed over ground is unknown: only categories flagged at any speed
    moving = (
        speed >= t.limit("interpolated_min_speed_mps", config)
        if t.world
        else (t.limit("interpolated_min_speed_mps", config) <= 0.0)
    )
    rows = np.flatnonzero(t.interpolated & (run_len >= config.min_interpolated_frames) & moving)
    found.add(
        rows,
        "interpolated",
        np.minimum(run_len[rows] / 10.0, 1.0),
        [f"filled in by refinement ({run_len[r]} interpolated frames in a row)" for r in rows],
    )


def _track_flags(
    t: _Labels, config: FlagConfig, on: set[str], out: list[tuple[int, str, float, str]]
) -> None:
    n = len(t.track)
    ends = np.append(t.starts[1:], n)
    for start, end in zip(t.starts.tolist(), ends.tolist(), strict=True):
        score = float(t.score[start:end].max())
        if "low_confidence" in on and score < config.low_score:
            out.append((start, "low_confidence", (config.low_score - score) / config.low_score,
                        f"track score {score:.3f} < {config.low_score:g}"))  # fmt: skip
        span = int(t.frame[end - 1] - t.frame[start] + 1)
        if "short_track" in on and span < config.min_track_frames:
            out.append((start, "short_track", 1.0 - span / config.min_track_frames,
                        f"{span} frame(s) < {config.min_track_frames}"))  # fmt: skip


def _table(
    t: _Labels, found: _Found, track_rows: list[tuple[int, str, float, str]], *, collapse: bool
) -> pa.Table:
    """FLAGS rows: per-box flags (collapsed to one whole-track flag when they cover every box of a
    track of two or more boxes, with collapse), the whole-track flags, most severe first."""
    rows = np.asarray(found.row, dtype=np.intp)
    flags = np.asarray(found.flag, dtype=str) if found.flag else np.zeros(0, dtype=str)
    mags = np.asarray(found.magnitude, dtype=np.float64)
    details = list(found.detail)
    # one flag per (row, kind): the strongest
    keep = np.ones(len(rows), dtype=bool)
    if len(rows):
        order = np.lexsort((-mags, flags, rows))
        dup = np.zeros(len(rows), dtype=bool)
        dup[1:] = (rows[order][1:] == rows[order][:-1]) & (flags[order][1:] == flags[order][:-1])
        keep[order[dup]] = False
    rows, flags, mags = rows[keep], flags[keep], mags[keep]
    details = [d for d, k in zip(details, keep.tolist(), strict=True) if k]

    seq_out: list[str] = []
    frame_out: list[int | None] = []
    track_out: list[int] = []
    flag_out: list[str] = []
    sev_out: list[float] = []
    detail_out: list[str] = []

    def emit(row: int, frame: int | None, flag: str, mag: float, detail: str) -> None:
        seq_out.append(str(t.sequence_ids[t.sequence[row]]))
        frame_out.append(frame)
        track_out.append(int(t.track[row]))
        flag_out.append(flag)
        sev_out.append(min(1.0, SEVERITY_BASE[flag] + 0.1 * min(max(mag, 0.0), 1.0)))
        detail_out.append(detail)

    sizes = np.bincount(t.group, minlength=len(t.starts))
    whole: set[tuple[int, str]] = set()
    if collapse and len(rows):
        for flag in sorted(set(flags.tolist())):
            mine = rows[flags == flag]
            counts = np.bincount(t.group[mine], minlength=len(t.starts))
            for g in np.flatnonzero((counts == sizes) & (sizes >= 2)):
                whole.add((int(g), flag))
                in_group = (flags == flag) & (t.group[rows] == g)
                first = int(np.flatnonzero(in_group)[0])
                emit(int(t.starts[g]), None, flag, float(mags[in_group].max()),
                     f"every frame ({sizes[g]}): {details[first]}")  # fmt: skip
    for i, row in enumerate(rows.tolist()):
        if (int(t.group[row]), str(flags[i])) in whole:
            continue
        emit(row, int(t.frame[row]), str(flags[i]), float(mags[i]), details[i])
    for row, flag, mag, detail in track_rows:
        emit(row, None, flag, mag, detail)

    table = pa.Table.from_arrays(
        [
            pa.array(seq_out, pa.string()),
            pa.array(frame_out, pa.int32()),
            pa.array(track_out, pa.int64()),
            pa.array(flag_out, pa.string()),
            pa.array(sev_out, pa.float32()),
            pa.array(detail_out, pa.string()),
        ],
        schema=FLAGS.remove_metadata(),
    )
    return sort_queue(table)


def sort_queue(flags: pa.Table) -> pa.Table:
    """Flags most severe first; ties by sequence, frame (whole-track flags first), track, flag."""
    if flags.num_rows == 0:
        return flags
    keys = [
        ("severity", "descending", "at_end"),
        ("sequence_id", "ascending", "at_end"),
        ("frame_index", "ascending", "at_start"),
        ("track_id", "ascending", "at_start"),
        ("flag", "ascending", "at_end"),
    ]
    return flags.take(pc.sort_indices(flags, options=pc.SortOptions(sort_keys=keys)))


def read_queue(out: Path | str) -> pa.Table:
    """Every sequence's flags of the dataset at `out`, most severe first. Raises FlagError when the
    dataset has no flags at all (written before flags existed: run fusion detect again)."""
    from exporters.reader import open_dataset

    dataset = open_dataset(out)
    tables = []
    any_file = False
    for sid in dataset.sequence_ids:
        sequence = dataset.sequence(sid)
        any_file = any_file or sequence.has_flags
        tables.append(sequence.flags().cast(FLAGS.remove_metadata()))
    if not any_file:
        raise FlagError(
            f"{out}: no sequence has a flags/ file; run fusion detect or fusion run again to write them"
        )
    return sort_queue(pa.concat_tables(tables))


def queue_to_json(flags: pa.Table, top: int | None = None) -> list[dict[str, Any]]:
    """The queue as JSON-able rows (the FLAGS columns), at most `top` of them."""
    rows: list[dict[str, Any]] = (flags.slice(0, top) if top is not None else flags).to_pylist()
    for row in rows:
        row["severity"] = round(float(row["severity"]), 4)
    return rows


def format_queue(flags: pa.Table, top: int | None = None) -> str:
    """A plain-text table of the queue, most severe first ("-": a whole-track flag's frame)."""
    shown = flags.slice(0, top) if top is not None else flags
    counts = pc.value_counts(flags.column("flag")).to_pylist() if flags.num_rows else []
    counts = sorted(counts, key=lambda c: -c["counts"])
    summary = ", ".join(f"{c['counts']} {c['values']}" for c in counts)
    lines = [f"review queue: {flags.num_rows} flag(s) ({summary or 'none'}), most severe first"]
    if shown.num_rows:
        header = ["severity", "sequence", "frame", "track", "flag", "detail"]

        def dash(value: int | None) -> str:
            return "-" if value is None else str(value)

        cells = [
            [
                f"{r['severity']:.2f}",
                r["sequence_id"],
                dash(r["frame_index"]),
                dash(r["track_id"]),
                r["flag"],
                r["detail"],
            ]
            for r in shown.to_pylist()
        ]
        widths = [max(len(row[k]) for row in (header, *cells)) for k in range(len(header) - 1)]
        for row in (header, *cells):
            lines.append(
                "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
            )
    if top is not None and flags.num_rows > top:
        lines.append(f"... {flags.num_rows - top} more (drop --top to see all)")
    return "\n".join(lines) + "\n"
