"""`Boxes`: the 3D boxes of one sweep, as every stage after detection passes them on.

Layout (the contract's box convention): `boxes` is (N, 7) float64 with columns
`x, y, z, length, width, height, yaw` — centre at the box's geometric centre, `length` along the
heading, `width` across it, `height` vertical, `yaw` about +z from +x, wrapped to [-pi, pi) —
in the frame `frame_id` at `stamp_ns`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numba import njit

from calib.transform import wrap_angle

BOX_FIELDS: Final = ("x", "y", "z", "length", "width", "height", "yaw")
CATEGORIES: Final = ("car", "truck", "bus", "pedestrian", "cyclist", "motorcycle", "unknown")
# Scratch rows of `quad_intersection_area`'s buffers: a convex quad clipped by another has at most 8
# vertices; 16 leaves room to spare.
OVERLAP_SCRATCH: Final = 16

F64 = npt.NDArray[np.float64]


def category_codes(category: npt.NDArray[np.str_]) -> npt.NDArray[np.int8]:
    """(N,) int8 index into `CATEGORIES` of category names (N,) (each one of them): a byte a box where
    a columnar record keeps the category (`CATEGORIES[code]`, or a numpy array of them, turns it back)."""
    codes = np.zeros(category.shape[0], np.int8)
    for code, name in enumerate(CATEGORIES):
        codes[category == name] = code
    return codes


# ---- rotated footprint overlap (numba), shared by evaluation (IoU) and tracking (GIoU) ------------


@njit(cache=True)
def bev_corners(box: F64, cx: float, cy: float, out_x: F64, out_y: F64) -> None:
    """The 4 BEV corners of `box` (7,), counter-clockwise, relative to (cx, cy), into out_x/out_y (4,)."""
    c = np.cos(box[6])
    s = np.sin(box[6])
    hl = 0.5 * box[3]
    hw = 0.5 * box[4]
    dx = box[0] - cx
    dy = box[1] - cy
    # local (hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw): counter-clockwise
    lx = (hl, -hl, -hl, hl)
    ly = (hw, hw, -hw, -hw)
    for k in range(4):
        out_x[k] = dx + c * lx[k] - s * ly[k]
        out_y[k] = dy + s * lx[k] + c * ly[k]


@njit(cache=True)
def quad_intersection_area(ax: F64, ay: F64, bx: F64, by: F64, px: F64, py: F64, qx: F64, qy: F64) -> float:
    """Area of the intersection of convex CCW quads a and b (4,) each; p, q are scratch buffers."""
    n = 4
    for k in range(4):
        px[k] = ax[k]
        py[k] = ay[k]
    for e in range(4):
        # clip polygon p (n vertices) by the half plane left of edge b[e] -> b[e+1]
        ex0 = bx[e]
        ey0 = by[e]
        ex1 = bx[(e + 1) % 4]
        ey1 = by[(e + 1) % 4]
        dxe = ex1 - ex0
        dye = ey1 - ey0
        m = 0
        for k in range(n):
            sx = px[k]
            sy = py[k]
            tx = px[(k + 1) % n]
            ty = py[(k + 1) % n]
            ds = dxe * (sy - ey0) - dye * (sx - ex0)
            dt = dxe * (ty - ey0) - dye * (tx - ex0)
            if ds >= 0.0:
                qx[m] = sx
                qy[m] = sy
                m += 1
                if dt < 0.0:
                    f = ds / (ds - dt)
                    qx[m] = sx + f * (tx - sx)
                    qy[m] = sy + f * (ty - sy)
                    m += 1
            elif dt >= 0.0:
                f = ds / (ds - dt)
                qx[m] = sx + f * (tx - sx)
                qy[m] = sy + f * (ty - sy)
                m += 1
        n = m
        if n < 3:
            return 0.0
        for k in range(n):
            px[k] = qx[k]
            py[k] = qy[k]
    twice = 0.0
    for k in range(n):
        twice += px[k] * py[(k + 1) % n] - px[(k + 1) % n] * py[k]
    return max(0.5 * twice, 0.0)


@dataclass(frozen=True, eq=False)
class Boxes:
    """N boxes of one sweep.

    boxes: (N, 7) float64, BOX_FIELDS.
    category: (N,) str (numpy unicode), each one of CATEGORIES.
    score: (N,) float32 in [0, 1].
    num_points: (N,) int32, points inside each box.
    measured: (N, 2) float64, the length and width the detector measured along the box's axes: shorter
        than the box's where it completed a partial view (a LiDAR sees the near sides of an object)
        to a typical size; the box's own length and width when not given. Not part of the output
        contract: it tells the refinement which sizes are measurements.
    capture_offset_ns: (N,) float64, when the LiDAR caught each box's object minus `stamp_ns`
        (`fusion.capture`): a spinning LiDAR sweeps the scene over a period, so a moving object's box
        lies where the object was then, not at the stamp; NaN when unknown (not given: all NaN). Not
        part of the output contract: refinement moves each box back to the stamp along its velocity.
    length_bound: (N,) float64, the longest each object can be by where the LiDAR's rays went past it
        (`fusion.detect.sampling`: the detector's points only reach up to one column spacing short of
        a far end; the next column's ray passing the object closes it); +inf when unknown (not given:
        all +inf). Not part of the output contract: refinement caps a track's length with it.
    """

    boxes: npt.NDArray[np.float64]
    category: npt.NDArray[np.str_]
    score: npt.NDArray[np.float32]
    num_points: npt.NDArray[np.int32]
    frame_id: str
    stamp_ns: int
    measured: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2), np.float64))
    capture_offset_ns: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, np.float64))
    length_bound: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, np.float64))

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 7:
            raise ValueError(f"boxes must be (N, 7) [{', '.join(BOX_FIELDS)}], got {self.boxes.shape}")
        for name in ("category", "score", "num_points"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if self.measured.shape == (0, 2) and n:  # not given: every size measured
            object.__setattr__(self, "measured", self.boxes[:, 3:5].copy())
        if self.measured.shape != (n, 2):
            raise ValueError(f"measured must have shape ({n}, 2), got {self.measured.shape}")
        if self.capture_offset_ns.shape == (0,) and n:  # not given: unknown
            object.__setattr__(self, "capture_offset_ns", np.full(n, np.nan))
        if self.capture_offset_ns.shape != (n,):
            raise ValueError(f"capture_offset_ns must have shape ({n},), got {self.capture_offset_ns.shape}")
        if self.length_bound.shape == (0,) and n:  # not given: unknown
            object.__setattr__(self, "length_bound", np.full(n, np.inf))
        if self.length_bound.shape != (n,):
            raise ValueError(f"length_bound must have shape ({n},), got {self.length_bound.shape}")
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
        measured: npt.ArrayLike | None = None,
        capture_offset_ns: npt.ArrayLike | None = None,
        length_bound: npt.ArrayLike | None = None,
    ) -> Boxes:
        """Boxes from array-likes, with dtypes fixed and yaw wrapped; `measured` (N, 2) or None (the
        boxes' own lengths and widths); `capture_offset_ns` (N,) or None (unknown: NaN); `length_bound`
        (N,) or None (unknown: +inf)."""
        arr = np.array(boxes, dtype=np.float64).reshape(-1, 7)
        arr[:, 6] = wrap_angle(arr[:, 6])
        return cls(
            boxes=arr,
            category=np.asarray(category, dtype="<U10").reshape(-1),
            score=np.asarray(score, dtype=np.float32).reshape(-1),
            num_points=np.asarray(num_points, dtype=np.int32).reshape(-1),
            frame_id=frame_id,
            stamp_ns=stamp_ns,
            measured=np.zeros((0, 2), np.float64)
            if measured is None
            else np.asarray(measured, dtype=np.float64).reshape(-1, 2),
            capture_offset_ns=np.zeros(0, np.float64)
            if capture_offset_ns is None
            else np.asarray(capture_offset_ns, dtype=np.float64).reshape(-1),
            length_bound=np.zeros(0, np.float64)
            if length_bound is None
            else np.asarray(length_bound, dtype=np.float64).reshape(-1),
        )

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Boxes:
        return Boxes(
            self.boxes[mask],
            self.category[mask],
            self.score[mask],
            self.num_points[mask],
            self.frame_id,
            self.stamp_ns,
            self.measured[mask],
            self.capture_offset_ns[mask],
            self.length_bound[mask],
        )


def box_columns(per_frame: Sequence[Boxes]) -> dict[str, npt.NDArray[Any]]:
    """The boxes of `per_frame` one frame after another, as columns: counts (F,) int64 boxes a frame;
    boxes (N, 7) float64 (C order); category (N,) int8 (`category_codes`); score (N,) float32;
    num_points (N,) int32; measured (N, 2) float64; capture_offset_ns (N,) float64; length_bound (N,)
    float64."""

    def joined(name: str, shape: tuple[int, ...], dtype: Any) -> npt.NDArray[Any]:
        values = [getattr(b, name) for b in per_frame]
        out = np.concatenate(values) if values else np.zeros((0, *shape), dtype)
        return np.ascontiguousarray(out.reshape(-1, *shape), dtype=dtype)

    return {
        "counts": np.array([len(b) for b in per_frame], np.int64),
        "boxes": joined("boxes", (7,), np.float64),
        "category": category_codes(joined("category", (), np.str_)),
        "score": joined("score", (), np.float32),
        "num_points": joined("num_points", (), np.int32),
        "measured": joined("measured", (2,), np.float64),
        "capture_offset_ns": joined("capture_offset_ns", (), np.float64),
        "length_bound": joined("length_bound", (), np.float64),
    }
