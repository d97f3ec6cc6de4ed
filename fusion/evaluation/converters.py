"""Other datasets' 3D labels as labels tables (the LABELS schema of shared/CONTRACT.md), for `evaluate`.

KITTI object (`label_2/<frame>.txt` + `calib/<frame>.txt`)
---------------------------------------------------------
One line per object, 15 columns (16 for a detector's result, the last being its score)::

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]

`h w l` are height, width, length (metres); `x y z` the **bottom centre** of the box in KITTI's
rectified camera frame `rect` (x right, y down, z forward); `ry` the rotation about rect's y axis,
0 when the box's length points along rect +x. The converted box is in the `velodyne` frame (the
LiDAR's, the frame of the labels table):

- bottom = `velodyne_from_rect` applied to `(x, y, z)`; centre = bottom + `(0, 0, h/2)`;
- yaw = `-ry - pi/2` (wrapped): at ry = 0 the length points along rect +x, which is velodyne -y;
  ry turns about rect +y (down), yaw about velodyne +z (up), hence the minus;
- length = l, width = w, height = h.

The box is upright in rect, whose y axis is tilted from velodyne's z by about half a degree (R0_rect,
Tr_velo_to_cam); the converted box is upright in velodyne, resting on the exact bottom centre.
This is the convention of OpenPCDet and mmdetection3d (`boxes3d_kitti_camera_to_lidar`,
`box_camera_to_lidar`), so their detections compare like with like, and the LiDAR points inside
each converted box are exactly the `num_lidar_pts` of mmdetection3d's KITTI infos.

A result file's scores must lie in 0..1, or `logistic_scores=True` maps raw confidences (e.g.
PointRCNN's, up to ~10) through `1 / (1 + exp(-s))`: AP depends only on their order, which is kept;
`EvalConfig.operating_score` then applies to the mapped value. Lines without a score get 1, mapped
or not.

Rows: `sequence_id` the file's stem (e.g. "000000"), `frame_index` 0, `timestamp_ns` 0 (each
object frame is its own sequence; both can be given), `track_id` the row's index among the kept
lines, `score` 1 (or the 16th column), `num_points` the points inside the box when the frame's
LiDAR points are given, else 0; `origin` "detected"; world boxes, velocity and camera boxes null/empty.

KITTI tracking (`label_02/<sequence>.txt` + `calib/<sequence>.txt`)
-------------------------------------------------------------------
17 columns (18 for a tracker's result, the last being its score)::

    frame track_id type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]

Boxes convert as for KITTI object. `sequence_id` the file's stem (e.g. "0000"), `frame_index` the
`frame` column, `timestamp_ns` = frame * `frame_period_ns` (KITTI records at 10 Hz; the label
files carry no time), `track_id` the file's. The calibration file may use the tracking spellings
(`R_rect`, `Tr_velo_cam`); see `calib.loaders`.

KITTI categories (`KITTI_CATEGORIES`): Car, Van -> car; Truck -> truck; Tram -> bus (the nearest
of our categories: a long, tall passenger vehicle); Pedestrian, Person_sitting -> pedestrian;
Cyclist -> cyclist; Misc -> unknown (real objects with real boxes: trailers, segways; `evaluate`
skips `unknown` unless asked); DontCare -> dropped (its box is a placeholder, -1000 / -1).
KITTI's truncation, occlusion and 2D boxes have no column in the labels table and are dropped.

Argoverse 2 (`<log>/annotations.feather`)
-----------------------------------------
One row per cuboid per LiDAR timestamp: `timestamp_ns, track_uuid, category, length_m, width_m,
height_m, qw, qx, qy, qz, tx_m, ty_m, tz_m, num_interior_pts`, in the ego-vehicle frame (x forward,
y left, z up), centre at the cuboid's centre, length along its x axis. AV2's LiDAR sweeps are
stored in the same ego frame, so the boxes stay in it: the "lidar frame" of the converted table
is the ego frame. yaw = the quaternion's rotation about z (`atan2(2 (w z + x y), 1 - 2 (y^2 + z^2))`;
AV2 cuboids only turn about z). `frame_index` numbers the sorted distinct timestamps,
`timestamp_ns` is AV2's, `track_id` numbers the UUIDs in order of first appearance (rows taken by
timestamp, then file order), `num_points` = `num_interior_pts`, `sequence_id` the log folder's name.

AV2 categories (`AV2_CATEGORIES`; any other -> unknown): REGULAR_VEHICLE -> car; LARGE_VEHICLE,
TRUCK, BOX_TRUCK, TRUCK_CAB -> truck; BUS, SCHOOL_BUS, ARTICULATED_BUS -> bus; PEDESTRIAN ->
pedestrian; BICYCLIST, BICYCLE -> cyclist; MOTORCYCLIST, MOTORCYCLE -> motorcycle. Others
(VEHICULAR_TRAILER, STROLLER, BOLLARD, CONSTRUCTION_CONE, WHEELED_DEVICE, DOG, SIGN, ...) -> unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from numba import njit
from pyarrow import feather

from calib.errors import CalibrationError
from calib.loaders import RECT, VELODYNE, load_calibration
from exporters import ExportError, labels_table, wrap_angle
from fusion.evaluation.errors import EvaluationError

F64 = npt.NDArray[np.float64]

KITTI_CATEGORIES: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "Car": "car",
        "Van": "car",
        "Truck": "truck",
        "Tram": "bus",
        "Pedestrian": "pedestrian",
        "Person_sitting": "pedestrian",
        "Cyclist": "cyclist",
        "Misc": "unknown",
        "DontCare": None,
    }
)
"""KITTI type -> our category; None drops the row."""

AV2_CATEGORIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "REGULAR_VEHICLE": "car",
        "LARGE_VEHICLE": "truck",
        "TRUCK": "truck",
        "BOX_TRUCK": "truck",
        "TRUCK_CAB": "truck",
        "BUS": "bus",
        "SCHOOL_BUS": "bus",
        "ARTICULATED_BUS": "bus",
        "PEDESTRIAN": "pedestrian",
        "BICYCLIST": "cyclist",
        "BICYCLE": "cyclist",
        "MOTORCYCLIST": "motorcycle",
        "MOTORCYCLE": "motorcycle",
    }
)
"""AV2 category -> ours; a category not listed becomes "unknown"."""

KITTI_FRAME_PERIOD_NS: Final = 100_000_000
"""KITTI's LiDAR runs at 10 Hz."""

_AV2_COLUMNS: Final = (
    "timestamp_ns",
    "track_uuid",
    "category",
    "length_m",
    "width_m",
    "height_m",
    "qw",
    "qx",
    "qy",
    "qz",
    "tx_m",
    "ty_m",
    "tz_m",
    "num_interior_pts",
)


# ---- KITTI --------------------------------------------------------------------------------------


def kitti_object_labels(
    label_path: Path | str,
    calib_path: Path | str,
    *,
    sequence_id: str | None = None,
    frame_index: int = 0,
    timestamp_ns: int = 0,
    points: npt.ArrayLike | None = None,
    categories: Mapping[str, str | None] = KITTI_CATEGORIES,
    logistic_scores: bool = False,
) -> pa.Table:
    """The boxes of a KITTI object `label_2` file as a labels table, in the velodyne frame.

    calib_path: the frame's `calib/<frame>.txt`. sequence_id: default the label file's stem.
    points: (N, >=3) velodyne points of the frame (e.g. the `.bin`), to fill `num_points`.
    Raises EvaluationError "FILE:LINE: what; fix" for a malformed line or an unmapped type,
    CalibrationError for an unusable calibration file.
    """
    path = Path(label_path)
    parsed = _read_kitti(path, leading=0, what="KITTI object label")
    n = len(parsed.types)
    return _kitti_table(
        path,
        parsed,
        calib_path,
        categories,
        sequence_id=sequence_id if sequence_id is not None else path.stem,
        frame_index=np.full(n, frame_index, dtype=np.int64),
        timestamp_ns=np.full(n, timestamp_ns, dtype=np.int64),
        track_id=None,
        points=points,
        logistic_scores=logistic_scores,
    )


def kitti_tracking_labels(
    label_path: Path | str,
    calib_path: Path | str,
    *,
    sequence_id: str | None = None,
    frame_period_ns: int = KITTI_FRAME_PERIOD_NS,
    categories: Mapping[str, str | None] = KITTI_CATEGORIES,
    logistic_scores: bool = False,
) -> pa.Table:
    """The boxes of a KITTI tracking label (or result) file as a labels table, in the velodyne frame.

    calib_path: the sequence's `calib/<sequence>.txt`. sequence_id: default the file's stem.
    timestamp_ns = frame * frame_period_ns. Raises EvaluationError "FILE:LINE: what; fix" for a
    malformed line or an unmapped type, CalibrationError for an unusable calibration file.
    """
    path = Path(label_path)
    parsed = _read_kitti(path, leading=2, what="KITTI tracking label")
    frame = parsed.leading[:, 0]
    return _kitti_table(
        path,
        parsed,
        calib_path,
        categories,
        sequence_id=sequence_id if sequence_id is not None else path.stem,
        frame_index=frame,
        timestamp_ns=frame * np.int64(frame_period_ns),
        track_id=parsed.leading[:, 1],
        points=None,
        logistic_scores=logistic_scores,
    )


class _KittiRows:
    """The lines of a KITTI label file: `types` (N,), `leading` (N, k) int64 (frame, track id),
    `numbers` (N, 14) float64 (truncated ... ry), `score` (N,) float64 (1 where the line has none),
    `has_score` (N,) bool, `line` (N,) line numbers."""

    def __init__(
        self,
        types: list[str],
        leading: npt.NDArray[np.int64],
        numbers: F64,
        score: F64,
        has_score: npt.NDArray[np.bool_],
        line: list[int],
    ) -> None:
        self.types = types
        self.leading = leading
        self.numbers = numbers
        self.score = score
        self.has_score = has_score
        self.line = line


def _read_kitti(path: Path, *, leading: int, what: str) -> _KittiRows:
    """Parse `path`: `leading` integer columns, the type, 14 numbers, an optional score."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise EvaluationError(f"{path}: no such file; pass the {what} file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise EvaluationError(f"{path}: cannot read it as text ({err}); pass the {what} file") from err
    base = leading + 1 + 14
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    scored: list[bool] = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) not in (base, base + 1):
            raise EvaluationError(
                f"{path}:{number}: {len(tokens)} columns, expected {base} ({what}) or {base + 1} "
                "(with a score); restore the line from the dataset"
            )
        scored.append(len(tokens) > base)
        if len(tokens) == base:
            tokens.append("1")
        rows.append(tokens)
        line_numbers.append(number)
    table = np.array(rows, dtype=str).reshape(len(rows), base + 1)
    try:
        ints = table[:, :leading].astype(np.int64)
        numbers = table[:, leading + 1 :].astype(np.float64)
    except ValueError:
        for k, tokens in enumerate(rows):
            try:
                [int(t) for t in tokens[:leading]]
                [float(t) for t in tokens[leading + 1 :]]
            except ValueError as err:
                raise EvaluationError(
                    f"{path}:{line_numbers[k]}: {err}; {what} columns after the type are numbers"
                    + (" (frame and track id integers)" if leading else "")
                ) from None
        raise
    return _KittiRows(
        [str(t) for t in table[:, leading]],
        ints,
        numbers[:, :14],
        numbers[:, 14],
        np.array(scored, dtype=bool),
        line_numbers,
    )


def _kitti_table(
    path: Path,
    parsed: _KittiRows,
    calib_path: Path | str,
    categories: Mapping[str, str | None],
    *,
    sequence_id: str,
    frame_index: npt.NDArray[np.int64],
    timestamp_ns: npt.NDArray[np.int64],
    track_id: npt.NDArray[np.int64] | None,
    points: npt.ArrayLike | None,
    logistic_scores: bool,
) -> pa.Table:
    unknown = sorted({t for t in parsed.types if t not in categories})
    if unknown:
        k = next(i for i, t in enumerate(parsed.types) if t == unknown[0])
        raise EvaluationError(
            f"{path}:{parsed.line[k]}: type {unknown[0]!r} has no category; pass categories= mapping it "
            f"(known: {', '.join(categories)})"
        )
    mapped = [categories[t] for t in parsed.types]
    keep = np.array([c is not None for c in mapped], dtype=bool).reshape(-1)
    kept_categories = [c for c in mapped if c is not None]
    numbers = parsed.numbers[keep]
    boxes = kitti_rect_to_velodyne(numbers[:, 7:14], _velodyne_from_rect(calib_path))
    n = len(boxes)
    if points is not None:
        cloud = np.asarray(points, dtype=np.float64)
        if cloud.ndim != 2 or cloud.shape[1] < 3:
            raise EvaluationError(f"points have shape {cloud.shape}; pass (N, >=3) velodyne x, y, z")
        num_points = count_points_in_boxes(cloud[:, :3], boxes)
    else:
        num_points = np.zeros(n, dtype=np.int64)
    tracks = np.arange(n, dtype=np.int64) if track_id is None else track_id[keep]
    score = parsed.score[keep]
    if logistic_scores:
        score = np.where(parsed.has_score[keep], 1.0 / (1.0 + np.exp(-score)), score)
    elif len(score) and not ((score >= 0.0) & (score <= 1.0)).all():
        k = int(np.flatnonzero(keep)[np.flatnonzero(~((score >= 0.0) & (score <= 1.0)))[0]])
        raise EvaluationError(
            f"{path}:{parsed.line[k]}: score {parsed.score[k]:g} is outside 0..1; map raw confidences "
            "through 1 / (1 + exp(-s)) with `fusion import --format kitti --logistic-scores` "
            "(logistic_scores=True in Python; the order, hence AP, is kept)"
        )
    try:
        return labels_table(
            sequence_id=sequence_id,
            frame_index=frame_index[keep],
            timestamp_ns=timestamp_ns[keep],
            track_id=tracks,
            category=kept_categories,
            score=score,
            boxes=boxes,
            num_points=num_points,
            origin="detected",
        )
    except ExportError as err:
        raise EvaluationError(f"{path}: {err}") from err


def _velodyne_from_rect(calib_path: Path | str) -> npt.NDArray[np.float64]:
    calibration = load_calibration(calib_path)
    try:
        transform = calibration.lookup(VELODYNE, RECT)
    except CalibrationError as err:
        raise EvaluationError(
            f"{calib_path}: {err}; pass the KITTI object/tracking calib.txt of the same frame"
        ) from err
    return np.asarray(transform.matrix, dtype=np.float64)


def kitti_rect_to_velodyne(camera_boxes: npt.ArrayLike, velodyne_from_rect: npt.ArrayLike) -> F64:
    """KITTI camera boxes (N, 7) `h w l x y z ry` (rect frame, bottom centre) as (N, 7) velodyne boxes
    `x y z length width height yaw` (geometric centre; yaw wrapped to [-pi, pi)).

    velodyne_from_rect: (4, 4), e.g. `load_calibration(calib).lookup("velodyne", "rect").matrix`.
    See the module docstring for the conventions.
    """
    cam = np.asarray(camera_boxes, dtype=np.float64).reshape(-1, 7)
    m = np.asarray(velodyne_from_rect, dtype=np.float64)
    h, w, length = cam[:, 0], cam[:, 1], cam[:, 2]
    bottom = cam[:, 3:6] @ m[:3, :3].T + m[:3, 3]
    yaw = wrap_angle(-cam[:, 6] - 0.5 * math.pi)
    return np.stack([bottom[:, 0], bottom[:, 1], bottom[:, 2] + 0.5 * h, length, w, h, yaw], axis=1)


def kitti_velodyne_to_rect(boxes: npt.ArrayLike, rect_from_velodyne: npt.ArrayLike) -> F64:
    """The inverse of `kitti_rect_to_velodyne`: velodyne boxes (N, 7) `x y z length width height yaw`
    (geometric centre) as KITTI camera boxes (N, 7) `h w l x y z ry` (rect frame, bottom centre; ry
    wrapped to [-pi, pi)).

    rect_from_velodyne: (4, 4), the inverse of the matrix `kitti_rect_to_velodyne` takes, so that
    `kitti_rect_to_velodyne(kitti_velodyne_to_rect(b, M), inv(M))` gives `b` back (to rounding).
    """
    box = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    m = np.asarray(rect_from_velodyne, dtype=np.float64)
    bottom = box[:, :3] - np.stack([np.zeros(len(box)), np.zeros(len(box)), 0.5 * box[:, 5]], axis=1)
    rect = bottom @ m[:3, :3].T + m[:3, 3]
    ry = wrap_angle(-box[:, 6] - 0.5 * math.pi)
    return np.stack([box[:, 5], box[:, 4], box[:, 3], rect[:, 0], rect[:, 1], rect[:, 2], ry], axis=1)


def count_points_in_boxes(points: npt.ArrayLike, boxes: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Points of `points` (N, 3) in each upright box of `boxes` (M, 7), boundaries included: (M,) int64."""
    cloud = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 3))
    box = np.ascontiguousarray(np.asarray(boxes, dtype=np.float64).reshape(-1, 7))
    return _count_in_boxes(cloud, box)


@njit(cache=True)
def _count_in_boxes(points: F64, boxes: F64) -> npt.NDArray[np.int64]:
    counts = np.zeros(boxes.shape[0], dtype=np.int64)
    for b in range(boxes.shape[0]):
        cx, cy, cz = boxes[b, 0], boxes[b, 1], boxes[b, 2]
        hl, hw, hh = 0.5 * boxes[b, 3], 0.5 * boxes[b, 4], 0.5 * boxes[b, 5]
        c = np.cos(boxes[b, 6])
        s = np.sin(boxes[b, 6])
        reach = math.hypot(hl, hw)
        for i in range(points.shape[0]):
            dx = points[i, 0] - cx
            dy = points[i, 1] - cy
            if abs(dx) > reach or abs(dy) > reach or abs(points[i, 2] - cz) > hh:
                continue
            if abs(c * dx + s * dy) <= hl and abs(-s * dx + c * dy) <= hw:
                counts[b] += 1
    return counts


# ---- Argoverse 2 --------------------------------------------------------------------------------


def av2_annotations_labels(
    path: Path | str,
    *,
    sequence_id: str | None = None,
    categories: Mapping[str, str] = AV2_CATEGORIES,
) -> pa.Table:
    """An Argoverse 2 `annotations.feather` as a labels table (ego frame; see the module docstring).

    sequence_id: default the name of the folder holding the file (the log id). A category not in
    `categories` becomes "unknown". Raises EvaluationError when the file is not an AV2 annotations
    table.
    """
    p = Path(path)
    try:
        table = feather.read_table(p)
    except FileNotFoundError as err:
        raise EvaluationError(f"{p}: no such file; pass a log's annotations.feather") from err
    except (OSError, pa.ArrowInvalid) as err:
        raise EvaluationError(f"{p}: not a Feather file ({err}); pass a log's annotations.feather") from err
    missing = [c for c in _AV2_COLUMNS if c not in table.column_names]
    if missing:
        raise EvaluationError(
            f"{p}: missing column(s) {', '.join(missing)}; this is not an AV2 annotations.feather"
        )
    for name in _AV2_COLUMNS:
        if table.column(name).null_count:
            raise EvaluationError(f"{p}: column '{name}' holds nulls; every cuboid needs a value")

    def numbers(name: str) -> F64:
        return np.asarray(table.column(name).to_numpy(), dtype=np.float64)

    stamp = np.asarray(table.column("timestamp_ns").to_numpy(), dtype=np.int64)
    order = np.argsort(stamp, kind="stable")
    stamp = stamp[order]
    unique_stamps, frame = np.unique(stamp, return_inverse=True)
    uuids = np.asarray(table.column("track_uuid").to_numpy(zero_copy_only=False), dtype=str)[order]
    unique_uuids, first, uuid_index = np.unique(uuids, return_index=True, return_inverse=True)
    rank = np.empty(len(unique_uuids), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique_uuids))
    track = rank[uuid_index.reshape(-1)]

    names = np.asarray(table.column("category").to_numpy(zero_copy_only=False), dtype=str)[order]
    unique_names, name_index = np.unique(names, return_inverse=True)
    ours = np.array([categories.get(str(name), "unknown") for name in unique_names], dtype=str)
    category = ours[name_index.reshape(-1)] if len(names) else np.zeros(0, dtype=str)

    qw, qx, qy, qz = (numbers(k)[order] for k in ("qw", "qx", "qy", "qz"))
    yaw = np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
    boxes = np.stack(
        [numbers(k)[order] for k in ("tx_m", "ty_m", "tz_m", "length_m", "width_m", "height_m")] + [yaw],
        axis=1,
    ).reshape(-1, 7)
    points = np.asarray(table.column("num_interior_pts").to_numpy(), dtype=np.int64)[order]
    try:
        return labels_table(
            sequence_id=sequence_id if sequence_id is not None else p.parent.name,
            frame_index=frame.reshape(-1).astype(np.int64),
            timestamp_ns=unique_stamps[frame.reshape(-1)] if len(stamp) else stamp,
            track_id=track,
            category=category,
            score=np.ones(len(stamp)),
            boxes=boxes,
            num_points=points,
            origin="detected",
        )
    except ExportError as err:
        raise EvaluationError(f"{p}: {err}") from err
