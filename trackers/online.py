"""The online tracker: one call per frame, `predict -> associate -> update -> birth -> retire`.

    tracker = Tracker(TrackerConfig())
    for boxes, t_ns, world_from_sensor in frames:          # empty frames included
        out = tracker.step(boxes, t_ns, world_from_sensor)  # TrackedBoxes

Tracks live in arrays, not objects: one `_Bank` per motion model in use holds the states (T, n), the
covariances (T, n, n) and the bookkeeping (ids, categories, states, hit and miss counts) of its
tracks, so predicting and updating 50 tracks is a handful of numpy calls.

Frames: with `world_from_sensor` (4, 4) the detections are moved into the world frame before they are
associated and the tracks live there (a moving ego then does not look like moving objects); without
it they live in the sensor frame. Pass a pose for every frame or for none.

Association is ByteTrack-style in two stages: detections scoring at least `score_high` against every
live track, then the remaining detections in [score_low, score_high) against the confirmed and lost
tracks still unmatched. Only unmatched high-score detections start tracks. A LOST track (coasting on
its prediction) also never matches a detection whose ground-plane centre is more than `Params.gate_sigma`
standard deviations from that prediction (Mahalanobis, its x, y covariance plus r_pos^2): the box of
the next car parked nose to tail touches a still car's box (GIoU about -0.1, inside the cost
threshold), so without it a track that lost its parked car for a few frames slid onto the next one.
World frame only (with poses): in the sensor frame the prediction leaves out the ego's own motion.
Time steps come from the stamps, so a dropped frame is just a longer prediction.

Output: CONFIRMED tracks, and LOST ones for their first `Params.output_misses` missed frames
(`TrackerConfig.output_tentative` / `output_lost` add every TENTATIVE / LOST track). A track's output
score is its last matched detection's score times `score_decay` per missed frame and times
min(1, hits / `Params.score_ramp_hits`), so that young tracks rank below established ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt
from numba import njit

from calib.transform import invert_matrices, wrap_angle
from fusion.boxes import CATEGORIES, Boxes
from trackers.association import COST_KINDS, MATCHERS, Association, associate, cost_matrix
from trackers.config import TrackerConfig
from trackers.errors import TrackingError
from trackers.motion import MOTION_MODELS, NOISE_FIELDS, MotionModel, noise_row
from trackers.types import Track, TrackedBoxes, TrackState

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Idx = npt.NDArray[np.intp]

_CATEGORY_INDEX: Final = {c: i for i, c in enumerate(CATEGORIES)}
_CATEGORY_NAMES: Final = np.array(CATEGORIES, dtype="<U10")
_TENTATIVE, _CONFIRMED, _LOST, _DEAD = (int(s) for s in TrackState)
_R_POS: Final = NOISE_FIELDS.index("r_pos")


@dataclass
class _Bank:
    """The tracks that share one motion model, as parallel arrays (T rows)."""

    model: MotionModel
    x: F64  # (T, n) states
    p: F64  # (T, n, n) covariances
    noise: F64  # (T, len(NOISE_FIELDS)) noise standard deviations
    track_id: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    category: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # index into CATEGORIES
    state: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))
    hits: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    misses: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    last_update_ns: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    score: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    matched: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    detection: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # input row that updated it, -1

    _ROWS: ClassVar[tuple[str, ...]] = ("x", "p", "noise", "track_id", "category", "state", "hits", "misses",
                    "last_update_ns", "score", "matched", "detection")  # fmt: skip

    @classmethod
    def empty(cls, model: MotionModel, n_noise: int) -> _Bank:
        dim = model.dim
        return cls(model, np.zeros((0, dim)), np.zeros((0, dim, dim)), np.zeros((0, n_noise)))

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    def keep(self, mask: npt.NDArray[np.bool_]) -> None:
        for name in self._ROWS:
            setattr(self, name, getattr(self, name)[mask])

    def extend(self, other: _Bank) -> None:
        for name in self._ROWS:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))


def _transform_boxes(matrix: F64, boxes: F64) -> F64:
    """Boxes (N, 7) moved by a rigid transform (4, 4): centre transformed, yaw of the rotated heading."""
    out = boxes.copy()
    rot = matrix[:3, :3]
    out[:, :3] = boxes[:, :3] @ rot.T + matrix[:3, 3]
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    out[:, 6] = wrap_angle(np.arctan2(rot[1, 0] * cos + rot[1, 1] * sin, rot[0, 0] * cos + rot[0, 1] * sin))
    return out


class Tracker:
    """Online 3D multi-object tracker (see the module docstring)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        params = [self.config.params[c] for c in CATEGORIES]
        if bad := {p.motion for p in params} - set(MOTION_MODELS):
            raise TrackingError(f"motion models {sorted(bad)} unknown; use one of {', '.join(MOTION_MODELS)}")
        # per-category parameters as arrays indexed by category index
        self._kind = np.array([COST_KINDS[p.cost] for p in params], np.int64)
        self._gate = np.array([p.gate_m for p in params])
        self._gate_sigma = np.array([p.gate_sigma for p in params])
        self._threshold = np.array([p.cost_threshold for p in params])
        self._score_high = np.array([p.score_high for p in params])
        self._score_low = np.array([p.score_low for p in params])
        self._min_hits = np.array([p.min_hits for p in params], np.int64)
        self._max_age_frames = np.array([p.max_age_frames for p in params], np.int64)
        self._max_age_ns = np.array([round(p.max_age_s * 1e9) for p in params], np.int64)
        self._decay = np.array([p.score_decay for p in params], np.float32)
        self._output_misses = np.array([p.output_misses for p in params], np.int64)
        self._ramp_hits = np.array([p.score_ramp_hits for p in params], np.float32)
        self._noise = np.stack([noise_row(p) for p in params])
        self._motion = [p.motion for p in params]
        self._matcher = MATCHERS[self.config.matcher]
        self._banks: dict[str, _Bank] = {
            name: _Bank.empty(MOTION_MODELS[name](), self._noise.shape[1])
            for name in dict.fromkeys(self._motion)
        }
        self._bank_of_category = np.array([list(self._banks).index(m) for m in self._motion], np.int64)
        self._next_id = 0
        self._last_ns: int | None = None
        self._world: bool | None = None

    # --- the algorithm -------------------------------------------------------------------------------

    def step(self, boxes: Boxes, t_ns: int, world_from_sensor: npt.ArrayLike | None = None) -> TrackedBoxes:
        """Track one frame's detections `boxes` (sensor frame) stamped `t_ns`; returns the output tracks.

        world_from_sensor: (4, 4) pose of the sensor at `t_ns`, or None to track in the sensor frame.
        """
        pose = self._advance(boxes, t_ns, world_from_sensor)
        return self._output(boxes.frame_id, t_ns, pose)

    def step_matches(self, boxes: Boxes, t_ns: int, world_from_sensor: npt.ArrayLike | None = None) -> I64:
        """`step` without building its output: per row of `boxes`, the id of the track that row
        updated or started (-1: none), whatever `output_tentative` and `output_lost` say (a track
        a detection updated or started is confirmed or tentative, never lost). What offline
        tracking needs of a pass (`trackers.refine.track_both_ways`); the output boxes were a fifth
        of a step's time."""
        self._advance(boxes, t_ns, world_from_sensor)
        ids = np.full(len(boxes), -1, np.int64)
        for bank in self._banks.values():
            k = np.flatnonzero(bank.detection >= 0)
            ids[bank.detection[k]] = bank.track_id[k]
        return ids

    def _advance(self, boxes: Boxes, t_ns: int, world_from_sensor: npt.ArrayLike | None) -> F64 | None:
        """predict -> associate -> update -> birth -> retire for one frame; the frame's pose."""
        pose = self._check_frame(t_ns, world_from_sensor)
        dt_s = 0.0 if self._last_ns is None else (t_ns - self._last_ns) * 1e-9
        self._last_ns = t_ns
        det_boxes, det_cat, det_score, det_row = self._detections(boxes, pose)

        self._predict(dt_s)
        association = self._associate(det_boxes, det_cat, det_score)
        self._update(association, det_boxes, det_score, det_row, t_ns)
        self._birth(association.unmatched_dets, det_boxes, det_cat, det_score, det_row, t_ns)
        self._retire(t_ns)
        return pose

    def _predict(self, dt_s: float) -> None:
        for bank in self._banks.values():
            if len(bank) and dt_s > 0.0:
                bank.x, bank.p = bank.model.predict(bank.x, bank.p, dt_s, bank.noise)

    def _associate(self, det_boxes: F64, det_cat: I64, det_score: F64) -> Association:
        """Two stages; indices are detections' and tracks' in the concatenation of the banks."""
        track_boxes = self._concat_boxes()
        track_cat = np.concatenate([b.category for b in self._banks.values()])
        track_state = np.concatenate([b.state for b in self._banks.values()])
        high = det_score >= self._score_high[det_cat]
        cost = cost_matrix(
            det_boxes, track_boxes, det_cat, track_cat, self._kind[det_cat], self._gate[det_cat],
            self._threshold[det_cat], across_categories=self.config.match_across_categories,
        )  # fmt: skip
        self._gate_innovation(cost, det_boxes, det_cat)
        high_idx, low_idx = np.flatnonzero(high), np.flatnonzero(~high)
        first = associate(cost[high_idx], self._matcher)
        matches = [np.stack([high_idx[first.matches[:, 0]], first.matches[:, 1]], axis=1)]
        unmatched_tracks = first.unmatched_tracks
        if low_idx.size and unmatched_tracks.size:
            eligible = unmatched_tracks[track_state[unmatched_tracks] != _TENTATIVE]
            second = associate(cost[np.ix_(low_idx, eligible)], self._matcher)
            matches.append(np.stack([low_idx[second.matches[:, 0]], eligible[second.matches[:, 1]]], axis=1))
            matched_tracks = np.zeros(track_boxes.shape[0], bool)
            matched_tracks[eligible[second.matches[:, 1]]] = True
            unmatched_tracks = unmatched_tracks[~matched_tracks[unmatched_tracks]]
        all_matches = np.concatenate(matches).astype(np.intp)
        matched_dets = np.zeros(det_boxes.shape[0], bool)
        matched_dets[all_matches[:, 0]] = True
        return Association(all_matches, np.flatnonzero(~matched_dets), unmatched_tracks.astype(np.intp))

    def _gate_innovation(self, cost: F64, det_boxes: F64, det_cat: I64) -> None:
        """Set `cost` (D, T) to inf where a detection's ground-plane centre is further than its category's
        `gate_sigma` standard deviations from a track's prediction (Mahalanobis, the track's x, y
        covariance (2, 2) plus r_pos^2 I). A track that coasted (LOST) with a small velocity keeps a
        small covariance, so it cannot jump onto the next parked car whose box its box touches. World
        frame only: in the sensor frame a track's prediction leaves out the ego's turns and speed changes,
        which its covariance does not cover (on KITTI, sensor frame, it cost Cyclist MOTA 0.19)."""
        if not self._world:  # sensor frame: the ego's unmodelled motion is in the innovation
            return
        sigma = self._gate_sigma[det_cat]
        column = 0
        for bank in self._banks.values():  # the tracks' columns of `cost`, bank after bank
            n = len(bank)
            if n:
                _gate_lost(cost, det_boxes, sigma, column, bank.x, bank.p, bank.noise[:, _R_POS], bank.state)
            column += n

    def _update(
        self, association: Association, det_boxes: F64, det_score: F64, det_row: I64, t_ns: int
    ) -> None:
        start = 0
        for bank in self._banks.values():
            n = len(bank)
            rows = association.matches[:, 1] - start
            in_bank = (rows >= 0) & (rows < n)
            rows, dets = rows[in_bank], association.matches[in_bank, 0]
            start += n
            bank.matched = np.zeros(n, bool)
            bank.detection = np.full(n, -1, np.int64)
            if rows.size:
                bank.x[rows], bank.p[rows] = bank.model.update(
                    bank.x[rows], bank.p[rows], det_boxes[dets], bank.noise[rows]
                )
                bank.matched[rows] = True
                bank.detection[rows] = det_row[dets]
                bank.score[rows] = det_score[dets]
                bank.last_update_ns[rows] = t_ns
            hit = bank.matched
            bank.hits = bank.hits + hit
            bank.misses = np.where(hit, 0, bank.misses + 1)
            confirmed = (bank.state == _LOST) | (bank.hits >= self._min_hits[bank.category])
            bank.state = np.where(
                hit,
                np.where(confirmed, _CONFIRMED, bank.state),
                np.where(
                    bank.state == _TENTATIVE, _DEAD, np.where(bank.state == _CONFIRMED, _LOST, bank.state)
                ),
            ).astype(np.int8)

    def _birth(
        self, unmatched: Idx, det_boxes: F64, det_cat: I64, det_score: F64, det_row: I64, t_ns: int
    ) -> None:
        new = unmatched[det_score[unmatched] >= self._score_high[det_cat[unmatched]]]
        if not new.size:
            return
        for b, bank in enumerate(self._banks.values()):
            take = new if len(self._banks) == 1 else new[self._bank_of_category[det_cat[new]] == b]
            if not take.size:
                continue
            cat, noise = det_cat[take], self._noise[det_cat[take]]
            x, p = bank.model.initiate(det_boxes[take], noise)
            n = take.size
            born = _Bank(
                bank.model, x, p, noise,
                track_id=np.arange(self._next_id, self._next_id + n, dtype=np.int64),
                category=cat,
                state=np.where(self._min_hits[cat] <= 1, _CONFIRMED, _TENTATIVE).astype(np.int8),
                hits=np.ones(n, np.int64), misses=np.zeros(n, np.int64),
                last_update_ns=np.full(n, t_ns, np.int64),
                score=det_score[take].astype(np.float32), matched=np.ones(n, bool),
                detection=det_row[take],
            )  # fmt: skip
            self._next_id += n
            bank.extend(born)

    def _retire(self, t_ns: int) -> None:
        for bank in self._banks.values():
            too_old = (bank.misses > self._max_age_frames[bank.category]) | (
                t_ns - bank.last_update_ns > self._max_age_ns[bank.category]
            )
            dead = (bank.state == _DEAD) | ((bank.state == _LOST) & too_old)
            if dead.any():
                bank.keep(~dead)

    # --- input and output ----------------------------------------------------------------------------

    def _check_frame(self, t_ns: int, world_from_sensor: npt.ArrayLike | None) -> F64 | None:
        if self._last_ns is not None and t_ns < self._last_ns:
            raise TrackingError(f"frame at {t_ns} ns is older than the previous one at {self._last_ns} ns")
        world = world_from_sensor is not None
        if self._world is not None and world != self._world:
            raise TrackingError(
                "pass world_from_sensor for every frame or for none (the tracking frame changed)"
            )
        self._world = world
        if world_from_sensor is None:
            return None
        pose = np.asarray(world_from_sensor, dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise TrackingError(f"world_from_sensor must be a finite (4, 4) matrix, got shape {pose.shape}")
        return pose

    def _detections(self, boxes: Boxes, pose: F64 | None) -> tuple[F64, I64, F64, I64]:
        """Detections scoring at least their category's score_low, in the tracking frame, with their
        rows in `boxes`."""
        if len(boxes) == 0:
            return np.zeros((0, 7)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
        cat = np.array([_CATEGORY_INDEX[c] for c in boxes.category.tolist()], np.int64)
        score = boxes.score.astype(np.float64)
        keep = score >= self._score_low[cat]
        det = boxes.boxes[keep]
        if not np.isfinite(det).all():
            raise TrackingError("detections contain non-finite box values; drop or fix them before tracking")
        if pose is not None:
            det = _transform_boxes(pose, det)
        return det, cat[keep], score[keep], np.flatnonzero(keep).astype(np.int64)

    def _concat_boxes(self) -> F64:
        parts = [b.model.boxes(b.x) for b in self._banks.values()]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _output(self, frame_id: str, t_ns: int, pose: F64 | None) -> TrackedBoxes:
        banks = self._banks.values()
        states = np.concatenate([b.state for b in banks])
        all_cat = np.concatenate([b.category for b in banks])
        all_misses = np.concatenate([b.misses for b in banks])
        lost = states == _LOST
        show = (states == _CONFIRMED) | (lost & (all_misses <= self._output_misses[all_cat]))
        if self.config.output_tentative:
            show |= states == _TENTATIVE
        if self.config.output_lost:
            show |= lost
        ids = np.concatenate([b.track_id for b in banks])[show]
        order = np.argsort(ids, kind="stable")
        world = self._concat_boxes()[show][order]
        cat = all_cat[show][order]
        misses = all_misses[show][order]
        score = np.concatenate([b.score for b in banks])[show][order]
        hits = np.concatenate([b.hits for b in banks])[show][order].astype(np.float32)
        ramp = np.minimum(np.float32(1.0), hits / self._ramp_hits[cat])
        score = (score * ramp * self._decay[cat] ** misses.astype(np.float32)).astype(np.float32)
        velocity = np.concatenate([b.model.velocity(b.x) for b in banks])[show][order]
        sensor = world if pose is None else _transform_boxes(invert_matrices(pose), world)
        return TrackedBoxes(
            track_id=ids[order],
            boxes=sensor,
            boxes_world=world,
            category=_CATEGORY_NAMES[cat],
            score=score,
            velocity=velocity,
            matched=np.concatenate([b.matched for b in banks])[show][order],
            detection_index=np.concatenate([b.detection for b in banks])[show][order],
            state=states[show][order].astype(np.int8),
            frame_id=frame_id,
            stamp_ns=t_ns,
        )

    # --- inspection ----------------------------------------------------------------------------------

    @property
    def num_tracks(self) -> int:
        """Live tracks (TENTATIVE, CONFIRMED and LOST)."""
        return sum(len(b) for b in self._banks.values())

    def tracks(self) -> list[Track]:
        """Snapshots of the live tracks, by id."""
        out = []
        for bank in self._banks.values():
            boxes, vel = bank.model.boxes(bank.x), bank.model.velocity(bank.x)
            for i in range(len(bank)):
                out.append(
                    Track(
                        track_id=int(bank.track_id[i]),
                        category=CATEGORIES[int(bank.category[i])],
                        state=TrackState(int(bank.state[i])),
                        box=boxes[i].copy(),
                        velocity=vel[i].copy(),
                        score=float(bank.score[i]),
                        hits=int(bank.hits[i]),
                        misses=int(bank.misses[i]),
                        last_update_ns=int(bank.last_update_ns[i]),
                    )
                )
        return sorted(out, key=lambda t: t.track_id)


@njit(cache=True)
def _gate_lost(
    cost: F64,
    det_boxes: F64,
    sigma: F64,
    column: int,
    x: F64,
    p: F64,
    r_pos: F64,
    state: npt.NDArray[np.int8],
) -> None:  # pragma: no cover - numba
    """`Tracker._gate_innovation` for one bank of tracks (columns `column`.. of `cost` (D, T)): inf where
    a LOST track's predicted x, y (`x` (n, k), covariance `p` (n, k, k), plus `r_pos` (n,) squared) is
    more than `sigma` (D,) standard deviations from a detection's centre (`det_boxes` (D, 7))."""
    for j in range(x.shape[0]):
        if state[j] != _LOST:
            continue
        s00 = p[j, 0, 0] + r_pos[j] * r_pos[j]
        s11 = p[j, 1, 1] + r_pos[j] * r_pos[j]
        s01 = p[j, 0, 1]
        det = s00 * s11 - s01 * s01
        for i in range(det_boxes.shape[0]):
            if sigma[i] <= 0.0 or not np.isfinite(cost[i, column + j]):
                continue
            dx = det_boxes[i, 0] - x[j, 0]
            dy = det_boxes[i, 1] - x[j, 1]
            d2 = (dx * dx * s11 - 2.0 * dx * dy * s01 + dy * dy * s00) / det  # d' S^-1 d
            if d2 > sigma[i] * sigma[i]:
                cost[i, column + j] = np.inf
