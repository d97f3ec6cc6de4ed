"""`Boxes`: the 3D boxes of one sweep, as every stage after detection passes them on.

Layout (the contract's box convention): `boxes` is (N, 7) float64 with columns
`x, y, z, length, width, height, yaw` — centre at the box's geometric centre, `length` along the
heading, `width` across it, `height` vertical, `yaw` about +z from +x, wrapped to [-pi, pi) —
in the frame `frame_id` at `stamp_ns`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from calib.transform import wrap_angle

BOX_FIELDS: Final = ("x", "y", "z", "length", "width", "height", "yaw")
CATEGORIES: Final = ("car", "truck", "bus", "pedestrian", "cyclist", "motorcycle", "unknown")


@dataclass(frozen=True, eq=False)
class Boxes:
    """N boxes of one sweep.

    boxes: (N, 7) float64, BOX_FIELDS.
    category: (N,) str (numpy unicode), each one of CATEGORIES.
    score: (N,) float32 in [0, 1].
    num_points: (N,) int32, points inside each box.
    """

    boxes: npt.NDArray[np.float64]
    category: npt.NDArray[np.str_]
    score: npt.NDArray[np.float32]
    num_points: npt.NDArray[np.int32]
    frame_id: str
    stamp_ns: int

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 7:
            raise ValueError(f"boxes must be (N, 7) [{', '.join(BOX_FIELDS)}], got {self.boxes.shape}")
        for name in ("category", "score", "num_points"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if n and (bad := {str(c) for c in np.unique(self.category)} - set(CATEGORIES)):
            raise ValueError(f"unknown categories {sorted(bad)}; use one of {', '.join(CATEGORIES)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, frame_id: str, stamp_ns: int) -> Boxes:
        return cls(
            boxes=np.zeros((0, 7), np.float64),
            category=np.zeros(0, dtype="<U10"),
            score=np.zeros(0, np.float32),
            num_points=np.zeros(0, np.int32),
            frame_id=frame_id,
            stamp_ns=stamp_ns,
        )

    @classmethod
    def build(
        cls,
        boxes: npt.ArrayLike,
        category: Sequence[str] | npt.NDArray[np.str_],
        score: npt.ArrayLike,
        num_points: npt.ArrayLike,
        *,
        frame_id: str,
        stamp_ns: int,
    ) -> Boxes:
        """Boxes from array-likes, with dtypes fixed and yaw wrapped."""
        arr = np.array(boxes, dtype=np.float64).reshape(-1, 7)
        arr[:, 6] = wrap_angle(arr[:, 6])
        return cls(
            boxes=arr,
            category=np.asarray(category, dtype="<U10").reshape(-1),
            score=np.asarray(score, dtype=np.float32).reshape(-1),
            num_points=np.asarray(num_points, dtype=np.int32).reshape(-1),
            frame_id=frame_id,
            stamp_ns=stamp_ns,
        )

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Boxes:
        return Boxes(
            self.boxes[mask],
            self.category[mask],
            self.score[mask],
            self.num_points[mask],
            self.frame_id,
            self.stamp_ns,
        )
