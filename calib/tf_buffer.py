"""A TF tree over time: `target_from_source` at any time, from TF and Odometry records.

Each frame has at most one parent. An edge ``parent -> child`` is either

- static (from /tf_static, ``TransformRecord.static``): one value that holds for all time;
  when several arrive, the one with the latest stamp wins (ties: the last added);
- dynamic (from /tf): samples over time, interpolated linearly in translation and by slerp
  in rotation;
- odometry (nav_msgs/Odometry, `TransformBuffer.add_odometry`): dynamic samples of the pose
  of ``child`` in ``parent``, used only when TF gives ``child`` no parent (TF wins).

Samples may arrive in any order: adds only append, and an edge's samples are sorted into
arrays on the first lookup after them. Two samples of an edge with the same stamp: the last
added wins.

Extrapolation policy. A dynamic edge answers from ``first - max_extrapolation_ns`` to
``last + max_extrapolation_ns``. Within that margin, beyond the end samples, the edge is
*extrapolated linearly* at the velocity of its first (or last) pair of samples (constant
translational and angular rate; a vehicle moving at 20 m/s would otherwise be 1 m off after
50 ms of holding). An edge with a single sample, or whose end pair of samples is itself a gap
(see below), holds its end value instead. Further out, the lookup raises CalibrationError.

Gaps. Between two consecutive samples further apart than ``max_gap_ns`` there is no data to
interpolate; a lookup whose time falls strictly inside such a gap raises CalibrationError
naming the edge, the time and the gap.

Defaults: ``max_extrapolation_ns = 50 ms`` (half a 10 Hz LiDAR sweep), ``max_gap_ns = 500 ms``
(five missed samples of a 10 Hz odometry).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from calib.errors import CalibrationError
from calib.frames import normalize_frame
from calib.transform import (
    Transform,
    compose_matrices,
    invert_matrices,
    quaternion_to_rotation,
    slerp,
)

if TYPE_CHECKING:  # records are read by attribute; importing fusion.decode would load cv2
    from fusion.decode.types import OdometryRecord, TransformRecord

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

DEFAULT_MAX_EXTRAPOLATION_NS: Final = 50_000_000
DEFAULT_MAX_GAP_NS: Final = 500_000_000

_BOTH_STATIC_AND_DYNAMIC: Final = "TF '%s' -> '%s' comes both static and dynamic; using the static one"


def _ms(duration_ns: int) -> str:
    return f"{duration_ns / 1e6:.1f} ms"


@dataclass(frozen=True, eq=False)
class _Samples:
    """Sorted samples of one dynamic edge.

    stamps_ns: (M,) int64 strictly increasing; translations: (M, 3) float64;
    quaternions: (M, 4) float64 unit (x, y, z, w).
    """

    stamps_ns: npt.NDArray[np.int64]
    translations: F64
    quaternions: F64


@dataclass(eq=False)
class _DynamicEdge:
    """Samples of one dynamic edge: sorted arrays, plus the samples added since (append-only)."""

    parent: str
    child: str
    source: str  # "TF" or "odometry", for messages
    _pending_stamps: list[int] = field(default_factory=list)
    _pending_values: list[tuple[float, ...]] = field(default_factory=list)  # tx ty tz qx qy qz qw
    _sorted: _Samples | None = None

    def append(self, stamp_ns: int, value: tuple[float, ...]) -> None:
        """Add a sample checked by `_sample_value`."""
        self._pending_stamps.append(int(stamp_ns))
        self._pending_values.append(value)

    def samples(self) -> _Samples:
        """The samples sorted by stamp, one per stamp (the last added), merged on demand."""
        if self._pending_stamps or self._sorted is None:
            stamps = np.asarray(self._pending_stamps, dtype=np.int64)
            values = np.asarray(self._pending_values, dtype=np.float64).reshape(-1, 7)
            if self._sorted is not None:  # earlier samples first, so that later adds win ties
                old = self._sorted
                stamps = np.concatenate([old.stamps_ns, stamps])
                values = np.concatenate([np.hstack([old.translations, old.quaternions]), values])
            order = np.argsort(stamps, kind="stable")  # equal stamps keep their arrival order
            stamps, values = stamps[order], values[order]
            last_of_run = np.append(stamps[1:] != stamps[:-1], True)
            stamps, values = stamps[last_of_run], values[last_of_run]
            quaternions = values[:, 3:] / np.linalg.norm(values[:, 3:], axis=1, keepdims=True)
            self._sorted = _Samples(stamps, np.ascontiguousarray(values[:, :3]), quaternions)
            self._pending_stamps, self._pending_values = [], []
        return self._sorted


def _sample_value(
    source: str,
    parent: str,
    child: str,
    stamp_ns: int,
    translation: Iterable[float],
    rotation_xyzw: Iterable[float],
) -> tuple[float, ...]:
    """(tx, ty, tz, qx, qy, qz, qw) of one sample; raises CalibrationError for a broken one."""
    value = (*(float(v) for v in translation), *(float(v) for v in rotation_xyzw))
    where = f"{source} sample '{parent}' -> '{child}' at {int(stamp_ns)} ns"
    if len(value) != 7 or not all(math.isfinite(v) for v in value):
        raise CalibrationError(f"{where} has NaN, infinite or missing values; drop the broken message")
    if math.hypot(*value[3:]) < 1e-12:
        raise CalibrationError(f"{where} has a zero quaternion (no rotation); drop the broken message")
    return value


@dataclass(frozen=True, eq=False)
class _StaticEdge:
    parent: str
    child: str
    stamp_ns: int
    parent_from_child: Transform


class TransformBuffer:
    """The TF tree over time; `lookup(target, source, t_ns)` gives `target_from_source`.

    Build it with `from_records`, or `add` / `add_odometry` one record at a time (any order).
    max_extrapolation_ns: how far beyond a dynamic edge's first/last sample a lookup may go
        (extrapolated linearly; see the module docstring).
    max_gap_ns: consecutive samples of a dynamic edge further apart than this are a gap that
        lookups inside it refuse.
    """

    def __init__(
        self,
        *,
        max_extrapolation_ns: int = DEFAULT_MAX_EXTRAPOLATION_NS,
        max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    ) -> None:
        if max_extrapolation_ns < 0 or max_gap_ns <= 0:
            raise CalibrationError(
                f"max_extrapolation_ns must be >= 0 and max_gap_ns > 0, "
                f"got {max_extrapolation_ns} and {max_gap_ns}"
            )
        self.max_extrapolation_ns: Final = int(max_extrapolation_ns)
        self.max_gap_ns: Final = int(max_gap_ns)
        self._static: dict[str, _StaticEdge] = {}  # by child
        self._dynamic: dict[str, _DynamicEdge] = {}  # by child
        self._odometry: dict[str, _DynamicEdge] = {}  # by child
        self._parents: dict[str, str] | None = None  # the effective tree, rebuilt after a new edge

    @classmethod
    def from_records(
        cls,
        transforms: Iterable[TransformRecord],
        odometry: Iterable[OdometryRecord] = (),
        *,
        max_extrapolation_ns: int = DEFAULT_MAX_EXTRAPOLATION_NS,
        max_gap_ns: int = DEFAULT_MAX_GAP_NS,
    ) -> TransformBuffer:
        """A buffer holding every TF record (static and dynamic) and odometry record."""
        buffer = cls(max_extrapolation_ns=max_extrapolation_ns, max_gap_ns=max_gap_ns)
        for rec in transforms:
            buffer.add(rec)
        for odo in odometry:
            buffer.add_odometry(odo)
        return buffer

    # ---- adding

    def _check_parent(self, parent: str, child: str, existing: str | None, what: str) -> None:
        if parent == child:
            raise CalibrationError(f"{what} '{parent}' -> '{child}' relates a frame to itself; drop it")
        if existing is not None and existing != parent:
            raise CalibrationError(
                f"frame '{child}' has two parents in {what}: '{existing}' and '{parent}'; a TF tree "
                f"allows one, so drop or rename one of the broadcasters of '{child}'"
            )

    def add(self, rec: TransformRecord) -> None:
        """Add one TF sample (`rec.static`: from /tf_static, holds for all time)."""
        parent, child = normalize_frame(rec.parent), normalize_frame(rec.child)
        static = self._static.get(child)
        dynamic = self._dynamic.get(child)
        existing = static.parent if static is not None else dynamic.parent if dynamic is not None else None
        self._check_parent(parent, child, existing, "TF")
        value = _sample_value("TF", parent, child, rec.stamp_ns, rec.translation, rec.rotation_xyzw)
        if rec.static:
            if static is None or rec.stamp_ns >= static.stamp_ns:
                transform = Transform.from_quaternion(value[:3], value[3:], parent=parent, child=child)
                self._static[child] = _StaticEdge(parent, child, int(rec.stamp_ns), transform)
            if static is None:
                self._parents = None
                if dynamic is not None:
                    logger.warning(_BOTH_STATIC_AND_DYNAMIC, parent, child)
        else:
            if dynamic is None:
                dynamic = self._dynamic[child] = _DynamicEdge(parent, child, "TF")
                self._parents = None
                if static is not None:
                    logger.warning(_BOTH_STATIC_AND_DYNAMIC, parent, child)
            dynamic.append(rec.stamp_ns, value)

    def add_odometry(self, rec: OdometryRecord) -> None:
        """Add one odometry pose (child in parent); used only where TF gives `child` no parent."""
        parent, child = normalize_frame(rec.parent), normalize_frame(rec.child)
        edge = self._odometry.get(child)
        self._check_parent(parent, child, None if edge is None else edge.parent, "odometry")
        value = _sample_value("odometry", parent, child, rec.stamp_ns, rec.translation, rec.rotation_xyzw)
        if edge is None:
            edge = self._odometry[child] = _DynamicEdge(parent, child, "odometry")
            self._parents = None
        edge.append(rec.stamp_ns, value)

    # ---- the tree

    def _tree(self) -> dict[str, str]:
        """child -> parent of the effective tree (TF edges, then odometry where TF has none)."""
        if self._parents is None:
            parents = {child: e.parent for child, e in self._dynamic.items()}
            parents.update({child: e.parent for child, e in self._static.items()})
            for child, odo in self._odometry.items():
                if child in parents:
                    if parents[child] != odo.parent:
                        logger.info(
                            "ignoring odometry '%s' -> '%s': TF already gives '%s' the parent '%s'",
                            odo.parent,
                            child,
                            child,
                            parents[child],
                        )
                    continue
                parents[child] = odo.parent
            for child in parents:
                seen = [child]
                frame = child
                while frame in parents:
                    frame = parents[frame]
                    if frame in seen:
                        cycle = " -> ".join([frame, *reversed(seen[seen.index(frame) :])])
                        raise CalibrationError(f"the TF tree has a cycle {cycle}; drop one of its transforms")
                    seen.append(frame)
            self._parents = parents
        return self._parents

    @property
    def frames(self) -> tuple[str, ...]:
        """Every frame the buffer knows, sorted."""
        tree = self._tree()
        return tuple(sorted(set(tree) | set(tree.values())))

    def root(self, frame: str) -> str:
        """The top of `frame`'s tree (the frame itself when it has no parent)."""
        return self._chain(frame)[-1]

    def moves(self, target: str, source: str) -> bool:
        """Whether target <- source changes over time (a dynamic TF or odometry edge on the path)."""
        up_source, up_target = self._path(target, source)
        return any(f in self._dynamic or f in self._odometry for f in (*up_source, *up_target))

    def _describe_tree(self) -> str:
        tree = self._tree()
        if not tree:
            return "the buffer is empty"
        edges = sorted((parent, child) for child, parent in tree.items())
        return "the tree has: " + ", ".join(f"{parent}->{child}" for parent, child in edges)

    def _chain(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root]."""
        tree = self._tree()
        chain = [frame]
        while chain[-1] in tree:
            chain.append(tree[chain[-1]])
        return chain

    def _path(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Frames whose parent edges lead from source up to the common ancestor, and from target."""
        tree = self._tree()
        known = set(tree) | set(tree.values())
        for frame in (target, source):
            if frame not in known:
                raise CalibrationError(
                    f"unknown frame '{frame}' (looking up '{target}' <- '{source}'); "
                    f"known frames: {', '.join(sorted(known)) or 'none'}"
                )
        up_source, up_target = self._chain(source), self._chain(target)
        in_target = set(up_target)
        common = next((f for f in up_source if f in in_target), None)
        if common is None:
            raise CalibrationError(
                f"no TF path from '{source}' to '{target}'; {self._describe_tree()}. "
                "Record the missing transform, or look up within one tree"
            )
        return up_source[: up_source.index(common)], up_target[: up_target.index(common)]

    # ---- lookups

    def _edge_matrices(self, child: str, times_ns: npt.NDArray[np.int64], what: str) -> F64:
        """`parent_from_child` (4, 4) for a static edge, else (K, 4, 4) at `times_ns`."""
        static = self._static.get(child)
        if static is not None:
            return static.parent_from_child.matrix
        edge = self._dynamic.get(child) or self._odometry[child]
        return self._interpolate(edge, times_ns, what)

    def _interpolate(self, edge: _DynamicEdge, times_ns: npt.NDArray[np.int64], what: str) -> F64:
        s = edge.samples()
        stamps = s.stamps_ns
        name = f"{edge.source} '{edge.parent}' -> '{edge.child}'"
        first, last = int(stamps[0]), int(stamps[-1])
        early = times_ns < first - self.max_extrapolation_ns
        late = times_ns > last + self.max_extrapolation_ns
        if early.any() or late.any():
            t = int(times_ns[np.argmax(early | late)])
            side = f"{_ms(first - t)} before its first" if t < first else f"{_ms(t - last)} after its last"
            raise CalibrationError(
                f"cannot look up {what} at {t} ns: {name} has samples from {first} to {last} ns and "
                f"{t} ns is {side} sample (max_extrapolation_ns = {_ms(self.max_extrapolation_ns)}); "
                "trim the time window to where TF exists or raise max_extrapolation_ns"
            )
        out = np.zeros((times_ns.shape[0], 4, 4))
        out[:, 3, 3] = 1.0
        if stamps.shape[0] == 1:  # one sample: hold it
            out[:, :3, :3] = quaternion_to_rotation(s.quaternions[0])
            out[:, :3, 3] = s.translations[0]
            return out
        i = np.clip(np.searchsorted(stamps, times_ns, side="right") - 1, 0, stamps.shape[0] - 2)
        t0, t1 = stamps[i], stamps[i + 1]
        span = t1 - t0
        inside = (times_ns > t0) & (times_ns < t1)
        in_gap = inside & (span > self.max_gap_ns)
        if in_gap.any():
            k = int(np.argmax(in_gap))
            raise CalibrationError(
                f"cannot look up {what} at {int(times_ns[k])} ns: {name} has a gap of {_ms(int(span[k]))} "
                f"between samples at {int(t0[k])} and {int(t1[k])} ns (max_gap_ns = {_ms(self.max_gap_ns)}); "
                "the transform is unknown there: skip that time or raise max_gap_ns"
            )
        fraction = (times_ns - t0).astype(np.float64) / span.astype(np.float64)
        # Beyond the ends, an end pair that is itself a gap gives no velocity: hold the end value.
        fraction = np.where(span > self.max_gap_ns, np.clip(fraction, 0.0, 1.0), fraction)
        q = slerp(s.quaternions[i], s.quaternions[i + 1], fraction)
        p0, p1 = s.translations[i], s.translations[i + 1]
        out[:, :3, :3] = quaternion_to_rotation(q)
        out[:, :3, 3] = p0 + fraction[:, None] * (p1 - p0)
        return out

    def lookup_many(self, target: str, source: str, times_ns: npt.ArrayLike) -> F64:
        """`target_from_source` matrices (K, 4, 4) float64 at times_ns (K,) int64.

        Vectorised over K: each dynamic edge on the path is interpolated with one searchsorted
        and one batched slerp. Raises CalibrationError for an unknown frame, disconnected
        frames, a time beyond the extrapolation margin of an edge, or inside a gap.
        """
        target, source = normalize_frame(target), normalize_frame(source)
        times = np.asarray(times_ns)
        if times.ndim != 1 or not (np.issubdtype(times.dtype, np.integer) or times.size == 0):
            raise CalibrationError(
                "lookup_many takes times as a (K,) integer array of nanoseconds, "
                f"got {times.dtype} of shape {times.shape}"
            )
        times = times.astype(np.int64, copy=False)
        up_source, up_target = self._path(target, source)
        what = f"'{target}' <- '{source}'"
        # common_from_source = parent(s_n)_from_s_n @ ... @ parent(source)_from_source, same for target.
        common_from_source = compose_matrices(*(self._edge_matrices(f, times, what) for f in up_source[::-1]))
        common_from_target = compose_matrices(*(self._edge_matrices(f, times, what) for f in up_target[::-1]))
        out = compose_matrices(invert_matrices(common_from_target), common_from_source)
        return np.array(np.broadcast_to(out, (times.shape[0], 4, 4)), dtype=np.float64)

    def lookup(self, target: str, source: str, t_ns: int) -> Transform:
        """`target_from_source` at t_ns (walks up to the common ancestor, interpolating dynamic edges).

        Raises CalibrationError as `lookup_many` does.
        """
        matrix = self.lookup_many(target, source, np.array([int(t_ns)], dtype=np.int64))[0]
        return Transform.from_matrix(matrix, parent=target, child=source)

    def can_transform(self, target: str, source: str, t_ns: int) -> bool:
        """Whether `lookup(target, source, t_ns)` would succeed."""
        try:
            self.lookup_many(target, source, np.array([int(t_ns)], dtype=np.int64))
        except CalibrationError:
            return False
        return True

    def __repr__(self) -> str:
        return f"TransformBuffer({len(self.frames)} frames; {self._describe_tree()})"
