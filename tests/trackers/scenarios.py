"""Seeded synthetic scenes for the tracker tests and bench: objects with known trajectories."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fusion.boxes import Boxes
from trackers.types import TrackedBoxes

F64 = npt.NDArray[np.float64]
FRAME_NS = 100_000_000
CAR_SIZE = (4.5, 1.9, 1.6)


def frame(
    rows: Sequence[Sequence[float]] | F64, cats: Sequence[str], scores: Sequence[float], t_ns: int
) -> Boxes:
    """Boxes of one frame (sensor frame 'lidar')."""
    return Boxes.build(
        np.asarray(rows, dtype=np.float64).reshape(-1, 7),
        list(cats),
        list(scores),
        np.full(len(cats), 100),
        frame_id="lidar",
        stamp_ns=t_ns,
    )


def car(x: float, y: float, yaw: float) -> list[float]:
    return [x, y, 0.8, *CAR_SIZE, yaw]


def noisy(rng: np.random.Generator, box: Sequence[float] | F64, sigma: float = 0.05) -> list[float]:
    out = np.asarray(box, dtype=np.float64).copy()
    out[:3] += rng.normal(0.0, sigma, 3)
    out[6] += rng.normal(0.0, 0.02)
    return [float(v) for v in out]


def id_of(out: TrackedBoxes, xy: Sequence[float], radius: float = 1.5) -> int | None:
    """Id of the output track nearest `xy` within `radius` (world frame), None if none."""
    if not len(out):
        return None
    d = np.hypot(out.boxes_world[:, 0] - xy[0], out.boxes_world[:, 1] - xy[1])
    k = int(np.argmin(d))
    return int(out.track_id[k]) if d[k] <= radius else None


def id_switches(ids: Sequence[int | None]) -> int:
    """Changes of the id followed by one object (frames without an id are skipped)."""
    seen = [i for i in ids if i is not None]
    return sum(a != b for a, b in itertools.pairwise(seen))
