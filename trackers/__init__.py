"""Online 3D multi-object tracking and offline 4D refinement (arrays in, tracks out).

    from trackers import Tracker, TrackerConfig
    tracker = Tracker(TrackerConfig())
    out = tracker.step(boxes, t_ns, world_from_sensor)  # TrackedBoxes, once per frame

Modules: `online` (Tracker), `motion` (Kalman filters behind `MotionModel`, `MOTION_MODELS`),
`association` (costs and matchers), `config` (`Params` per category, `TrackerConfig`), `types`
(`Track`, `TrackState`, `TrackedBoxes`), `errors` (`TrackingError`), `refine` (offline 4D refinement of
whole tracks: `track_both_ways` (its frames as a list or as columns, `FrameDetections`), `refine` (or
`refine_blocks`), `one_category_per_object`, `TrackTable`, `RefineConfig`).
Nothing here knows of bags, Dask or Parquet.
"""

from trackers.config import DEFAULT_PARAMS, Params, TrackerConfig
from trackers.errors import TrackingError
from trackers.online import Tracker
from trackers.refine import (
    FrameDetections,
    RefineConfig,
    TrackTable,
    one_category_per_object,
    refine,
    refine_blocks,
    track_both_ways,
)
from trackers.types import Track, TrackedBoxes, TrackState

__all__ = [
    "DEFAULT_PARAMS",
    "FrameDetections",
    "Params",
    "RefineConfig",
    "Track",
    "TrackState",
    "TrackTable",
    "TrackedBoxes",
    "Tracker",
    "TrackerConfig",
    "TrackingError",
    "one_category_per_object",
    "refine",
    "refine_blocks",
    "track_both_ways",
]
