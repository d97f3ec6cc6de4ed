"""What the tracker hands out: track states, a track snapshot, and one frame's tracked boxes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class TrackState(IntEnum):
    """Lifecycle of a track: TENTATIVE -> CONFIRMED (after min_hits) -> LOST (missed) -> DEAD.

    A LOST track is still predicted and can be matched again (it becomes CONFIRMED); a TENTATIVE
    track that misses a frame, or a LOST track older than max_age, is DEAD and removed.
    An IntEnum so the states can live in a numpy int8 array alongside the tracks.
    """

    TENTATIVE = 0
    CONFIRMED = 1
    LOST = 2
    DEAD = 3


@dataclass(frozen=True)
class Track:
    """Snapshot of one live track (for inspection; the tracker itself keeps arrays).

    box: (7,) x y z length width height yaw in the tracking frame (world when poses are given).
    velocity: (3,) m/s in the tracking frame.
    """

    track_id: int
    category: str
    state: TrackState
    box: F64
    velocity: F64
    score: float
    hits: int  # frames with a matched detection
    misses: int  # consecutive frames without one
    last_update_ns: int  # stamp of the last matched detection


@dataclass(frozen=True, eq=False)
class TrackedBoxes:
    """The tracks output at one frame (N of them).

    track_id: (N,) int64, stable over the life of a track, never reused.
    boxes: (N, 7) float64 x y z l w h yaw in the sensor frame of this frame (`frame_id`).
    boxes_world: (N, 7) float64 in the tracking frame (world when a pose was given, else the sensor frame).
    category: (N,) str.
    score: (N,) float32: the matched detection's score, decayed per missed frame for LOST tracks.
    velocity: (N, 3) float64 m/s in the tracking (world) frame.
    matched: (N,) bool: whether a detection of this frame updated the track.
    detection_index: (N,) int64: the row, in this frame's input `Boxes`, of the detection that updated
        (or started) the track; -1 when none did (`matched` False).
    state: (N,) int8 TrackState values.
    """

    track_id: npt.NDArray[np.int64]
    boxes: F64
    boxes_world: F64
    category: npt.NDArray[np.str_]
    score: npt.NDArray[np.float32]
    velocity: F64
    matched: npt.NDArray[np.bool_]
    detection_index: npt.NDArray[np.int64]
    state: npt.NDArray[np.int8]
    frame_id: str
    stamp_ns: int

    def __len__(self) -> int:
        return int(self.track_id.shape[0])
