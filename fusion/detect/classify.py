"""From fitted cluster shapes to labelled boxes: a category by shape, the box completed to the
category's size, and a calibrated score.

Category: the first rule of `ClassifyConfig.priority` whose limits the cluster meets (observed
longer and shorter bird's-eye-view extent, highest point above the ground, lowest point above
the ground, extent of the base); else `unknown` (kept when `keep_unknown` and small enough), else
dropped.

Completion: a LiDAR sees the near sides of an object, so a rectangle fitted to its points is
short of the object's size. The category's `prior` length and width are imposed where the
observed extent is shorter, keeping the edge nearer the sensor and growing the box away from it
(symmetrically where the sensor looks at the middle of that side); each box keeps the length and
width it was observed with (`Boxes.measured`). Which observed axis is the
length: the longer one when it is longer than the prior width could explain, else the one more
along the line of sight (a car seen from behind shows its width across the view). The heading
keeps a 180 degree ambiguity; yaw is that of the length axis.

Suppression: a box whose centre lies inside a vehicle box with more points is dropped (the
second piece of a car cut in two by an occluder; a fragment of it taken for a pedestrian).

Score: a logistic model per category, `sigmoid(w . features)`, fitted offline on simulated logs
(seeds 1.., never the committed sample's seed 0) by `bench/calibrate_detect.py` to the event
"this box is a true positive": a BEV IoU with an unmatched ground-truth box of its category of
at least 0.5 (car, truck, bus) or 0.25 (pedestrian, cyclist, motorcycle), boxes taken greedily in
descending point count; for `unknown`, IoU 0.25 with a box of any category. The weights are the
constants of `SCORE_WEIGHTS`; features are `score_features`. On held-out seeds the scores are
calibrated within a few points (see the reliability tables the script prints); on real sensors
they are a ranking, not a probability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from calib.transform import wrap_angle
from fusion.boxes import Boxes
from fusion.detect.fit import (
    S_BASE,
    S_BOTTOM,
    S_COUNT,
    S_CX,
    S_CY,
    S_EXT1,
    S_EXT2,
    S_FLOOR,
    S_SPREAD,
    S_THETA,
    S_TOP,
    S_ZTOP,
    Shapes,
)

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CategoryRule:
    """The limits a cluster meets to be of a category, and the size its box is completed to (m)."""

    max_length: float  # observed longer bird's-eye-view extent at most
    max_width: float  # observed shorter extent at most
    min_length: float  # observed longer extent at least
    min_top: float  # highest point above the ground at least
    max_top: float  # highest point above the ground at most
    max_bottom: float  # lowest point above the ground at most (it stands on the ground)
    min_base: float  # the base's extent over the observed length at least (a tree's trunk is narrow)
    prior: tuple[float, float]  # (length, width) a box is completed to where seen shorter


def _frozen(d: dict[str, CategoryRule]) -> Mapping[str, CategoryRule]:
    return MappingProxyType(d)


MIN_EXTENT_M: Final = 0.01
"""A box's smallest length and width (the contract wants both > 0; a cluster can measure 0 across)."""

DEFAULT_RULES: Final[Mapping[str, CategoryRule]] = _frozen(
    {
        "bus": CategoryRule(14.0, 3.2, 9.0, 2.6, 4.2, 0.8, 0.5, (12.0, 2.55)),
        "truck": CategoryRule(14.0, 3.2, 1.8, 2.3, 4.2, 0.8, 0.5, (6.5, 2.5)),
        "pedestrian": CategoryRule(1.1, 1.0, 0.0, 1.0, 2.1, 1.6, 0.0, (0.6, 0.6)),
        "motorcycle": CategoryRule(2.6, 1.0, 1.95, 1.5, 2.1, 0.6, 0.3, (2.1, 0.8)),
        "cyclist": CategoryRule(2.3, 0.95, 1.0, 1.55, 2.1, 0.6, 0.3, (1.8, 0.65)),
        "car": CategoryRule(6.2, 2.6, 0.8, 1.0, 2.3, 1.4, 0.3, (4.2, 1.8)),
    }
)


@dataclass(frozen=True)
class ClassifyConfig:
    """Categories by shape, and what is kept."""

    # Category limits and completion sizes, by category name (a contract category).
    rules: Mapping[str, CategoryRule] = field(default_factory=lambda: DEFAULT_RULES)
    # The order rules are tried in; the first met wins.
    priority: tuple[str, ...] = ("bus", "truck", "pedestrian", "motorcycle", "cyclist", "car")
    # Clusters no rule takes become `unknown` boxes (else they are dropped) ...
    keep_unknown: bool = True
    # ... when their longer extent is at most this (metres) and their top at least `unknown_min_top`.
    unknown_max_length: float = 8.0
    unknown_min_top: float = 0.3
    # Boxes scoring lower are dropped.
    min_score: float = 0.0
    # A box whose centre lies inside a box of these categories with more points is dropped ...
    containers: tuple[str, ...] = ("car", "truck", "bus")
    # ... that box grown by this margin (metres) on every side.
    suppress_margin: float = 0.0


SCORE_FEATURES: Final = (
    "bias",
    "log_points",
    "log_range",
    "top",
    "length",
    "width",
    "log_spread",
    "bottom",
    "base_ratio",
)
"""The score model's inputs (`score_features`): 1; log of the cluster's points; log of the box's range
(m); highest and lowest point above the ground (m); observed longer and shorter extent (m); log of
the depth-over-width of the view; the base's extent over the observed length."""

# Logistic weights per category over SCORE_FEATURES (see the module docstring for the fit).
SCORE_WEIGHTS: Final[Mapping[str, tuple[float, ...]]] = MappingProxyType(
    {
        "car": (4.7045, 0.3576, 0.6943, -7.2003, 0.8408, 0.7051, -0.4125, -1.8105, 1.1477),
        "truck": (5.6423, 0.0233, -0.2341, -2.6861, -0.1832, 1.3074, -0.4047, -2.5580, 1.8985),
        "bus": (4.3451, 0.4045, -3.5236, -1.8181, 0.4828, 1.4003, 1.0694, -0.5732, 1.1544),
        "pedestrian": (-13.0332, 0.8573, 1.5406, 2.7253, 0.2674, 3.6778, 0.0846, 1.8699, -0.3618),
        "cyclist": (-0.3897, 0.8756, -0.4327, -2.4625, 0.5990, 1.8961, 2.1590, -0.0098, 0.1014),
        "motorcycle": (-0.0757, 0.4380, -0.3279, -1.1658, -0.5064, 0.4196, 0.1522, -0.0631, -0.4609),
        "unknown": (0.6816, 0.3733, -0.2265, -3.2697, 0.4668, 1.0491, 0.7426, 1.2977, -1.0582),
    }
)


@dataclass(frozen=True, eq=False)
class Classified:
    """The kept clusters: `cluster` (K,) int64 indices into the shapes, `boxes` (K, 7), `category`
    (K,) str, `features` (K, len(SCORE_FEATURES)) float64 (the score's inputs), `score` (K,) float32,
    `measured` (K, 2) float64 (the observed extents along the box's length and width)."""

    cluster: npt.NDArray[np.int64]
    boxes: F64
    category: npt.NDArray[np.str_]
    features: F64
    score: npt.NDArray[np.float32]
    measured: F64


def categorize(shapes: Shapes, config: ClassifyConfig = ClassifyConfig()) -> npt.NDArray[np.str_]:
    """(C,) category per cluster by the rules; "" for a cluster that is dropped."""
    v = shapes.values
    length = np.maximum(v[:, S_EXT1], v[:, S_EXT2])
    width = np.minimum(v[:, S_EXT1], v[:, S_EXT2])
    top, bottom, base = v[:, S_TOP], v[:, S_BOTTOM], v[:, S_BASE]
    out = np.full(len(shapes), "", dtype="<U10")
    free = shapes.fitted.copy()
    for name in config.priority:
        r = config.rules[name]
        hit = (
            free
            & (length <= r.max_length)
            & (length >= r.min_length)
            & (width <= r.max_width)
            & (top >= r.min_top)
            & (top <= r.max_top)
            & (bottom <= r.max_bottom)
            & (base >= r.min_base * length)
        )
        out[hit] = name
        free &= ~hit
    if config.keep_unknown:
        out[free & (length <= config.unknown_max_length) & (top >= config.unknown_min_top)] = "unknown"
    return out


def complete_boxes(shapes: Shapes, category: npt.NDArray[np.str_], config: ClassifyConfig) -> F64:
    """(C, 7) boxes x y z l w h yaw: each rectangle completed to its category's prior size."""
    return completed_boxes(shapes, category, config)[0]


def completed_boxes(
    shapes: Shapes, category: npt.NDArray[np.str_], config: ClassifyConfig
) -> tuple[F64, F64]:
    """`complete_boxes` and (C, 2) the observed extents along each box's length and width (shorter than
    the box's where it was completed to the prior)."""
    v = shapes.values
    n = len(shapes)
    prior = np.zeros((n, 2))
    for name, rule in config.rules.items():
        prior[category == name] = rule.prior
    theta = v[:, S_THETA]
    e1 = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    e2 = np.stack([-np.sin(theta), np.cos(theta)], axis=1)
    centre = v[:, [S_CX, S_CY]].copy()
    ext1, ext2 = v[:, S_EXT1], v[:, S_EXT2]
    sight = centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-9)
    along1 = np.abs(np.einsum("ij,ij->i", e1, sight)) >= np.abs(np.einsum("ij,ij->i", e2, sight))
    longer1 = ext1 >= ext2
    clear = np.maximum(ext1, ext2) > 1.25 * prior[:, 1]  # too long to be the width
    first_is_length = np.where(clear, longer1, along1)
    len_axis = np.where(first_is_length[:, None], e1, e2)
    wid_axis = np.where(first_is_length[:, None], e2, e1)
    len_ext = np.where(first_is_length, ext1, ext2)
    wid_ext = np.where(first_is_length, ext2, ext1)
    # a box has a size: points quantised onto one line (AV2 ships float16 coordinates) measured 0 wide
    new_len = np.maximum(len_ext, np.maximum(prior[:, 0], MIN_EXTENT_M))
    new_wid = np.maximum(wid_ext, np.maximum(prior[:, 1], MIN_EXTENT_M))
    for axis, ext, new in ((len_axis, len_ext, new_len), (wid_axis, wid_ext, new_wid)):
        sensor = -np.einsum("ij,ij->i", centre, axis)  # the sensor along this axis, from the centre
        away = np.where(np.abs(sensor) > 0.5 * ext, -np.sign(sensor), 0.0)
        centre += axis * (away * 0.5 * (new - ext))[:, None]
    swap = new_wid > new_len  # observed wider than long (no prior): keep length >= width
    yaw = np.arctan2(len_axis[:, 1], len_axis[:, 0]) + np.where(swap, 0.5 * np.pi, 0.0)
    length = np.where(swap, new_wid, new_len)
    width = np.where(swap, new_len, new_wid)
    measured = np.stack([np.where(swap, wid_ext, len_ext), np.where(swap, len_ext, wid_ext)], axis=1)
    height = np.maximum(v[:, S_ZTOP] - v[:, S_FLOOR], 0.1)
    z = v[:, S_FLOOR] + 0.5 * height
    boxes = np.stack([centre[:, 0], centre[:, 1], z, length, width, height, wrap_angle(yaw)], axis=1)
    return boxes, measured


def score_features(shapes: Shapes, boxes: F64) -> F64:
    """(C, len(SCORE_FEATURES)) the inputs of the score model."""
    v = shapes.values
    length = np.maximum(v[:, S_EXT1], v[:, S_EXT2])
    return np.stack(
        [
            np.ones(len(shapes)),
            np.log(np.maximum(v[:, S_COUNT], 1.0)),
            np.log(np.maximum(np.hypot(boxes[:, 0], boxes[:, 1]), 1.0)),
            v[:, S_TOP],
            length,
            np.minimum(v[:, S_EXT1], v[:, S_EXT2]),
            np.log(np.maximum(v[:, S_SPREAD], 1e-2)),
            v[:, S_BOTTOM],
            np.minimum(v[:, S_BASE] / np.maximum(length, 1e-2), 1.0),
        ],
        axis=1,
    )


def score_boxes(features: F64, category: npt.NDArray[np.str_]) -> npt.NDArray[np.float32]:
    """(K,) float32 calibrated score of each box (SCORE_WEIGHTS)."""
    logit = np.zeros(features.shape[0])
    for name, w in SCORE_WEIGHTS.items():
        sel = category == name
        if sel.any():
            logit[sel] = features[sel] @ np.asarray(w)
    return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)


def suppress_inside(
    boxes: F64, category: npt.NDArray[np.str_], count: F64, config: ClassifyConfig
) -> npt.NDArray[np.bool_]:
    """(K,) bool: boxes kept. Taken by descending point count, a box is dropped when its centre lies
    inside a kept box of a `container` category (grown by `suppress_margin`): the second piece of a
    car split by an occluder, completed to a whole car, or a fragment of it taken for a pedestrian."""
    n = boxes.shape[0]
    keep = np.ones(n, dtype=np.bool_)
    if n < 2:
        return keep
    container = np.isin(category, config.containers)
    dx = boxes[None, :, 0] - boxes[:, None, 0]  # [i, j]: centre j relative to box i
    dy = boxes[None, :, 1] - boxes[:, None, 1]
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    along = np.abs(c * dx + s * dy)
    across = np.abs(-s * dx + c * dy)
    m = config.suppress_margin
    inside = (along <= 0.5 * boxes[:, 3:4] + m) & (across <= 0.5 * boxes[:, 4:5] + m)
    np.fill_diagonal(inside, False)
    for i in np.argsort(-count, kind="stable"):
        if keep[i] and container[i]:
            keep &= ~inside[i]
    return keep


def classify(shapes: Shapes, config: ClassifyConfig = ClassifyConfig()) -> Classified:
    """Categories, completed boxes and scores of the clusters that are kept."""
    category = categorize(shapes, config)
    keep = np.flatnonzero(category != "")
    sub = Shapes(values=shapes.values[keep], fitted=shapes.fitted[keep])
    cat = category[keep]
    boxes, measured = completed_boxes(sub, cat, config)
    kept = suppress_inside(boxes, cat, sub.values[:, S_COUNT], config)
    keep, boxes, cat, measured = keep[kept], boxes[kept], cat[kept], measured[kept]
    sub = Shapes(values=sub.values[kept], fitted=sub.fitted[kept])
    features = score_features(sub, boxes)
    score = score_boxes(features, cat)
    ok = score >= config.min_score
    return Classified(
        cluster=keep[ok].astype(np.int64),
        boxes=boxes[ok],
        category=cat[ok],
        features=features[ok],
        score=score[ok],
        measured=measured[ok],
    )


def to_boxes(result: Classified, num_points: npt.NDArray[np.int64], frame_id: str, stamp_ns: int) -> Boxes:
    """The `Boxes` of a classification; num_points (K,) the points of each box's cluster."""
    if result.boxes.shape[0] == 0:
        return Boxes.empty(frame_id, stamp_ns)
    return Boxes.build(
        result.boxes,
        result.category,
        result.score,
        num_points,
        frame_id=frame_id,
        stamp_ns=stamp_ns,
        measured=result.measured,
    )
