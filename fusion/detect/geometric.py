"""`GeometricDetector`: boxes from one LiDAR sweep by geometry alone (no model weights, one CPU core).

    ground (ground.py)      height of every point above a local ground grown from the sensor outwards
    cluster (cluster.py)    connected components of the points above the ground, in bird's-eye view
    fit (fit.py)            an oriented rectangle per cluster: L-shape fitting, minimum area when small
    split (split.py)        a long, low cluster (a row of parked cars) cut into car-sized pieces, refitted
    classify (classify.py)  a category by shape, the box completed to the category's size, a score

Each stage is a public function of its module taking its own frozen config; `GeometricDetector.detect`
is their composition, and `bench/detect.py` times them one by one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fusion.boxes import CATEGORIES, Boxes
from fusion.decode.types import PointCloud
from fusion.detect.classify import DEFAULT_RULES, CategoryRule, Classified, ClassifyConfig, classify, to_boxes
from fusion.detect.cluster import ClusterConfig, azimuth_step, cluster_points
from fusion.detect.errors import DetectError
from fusion.detect.fit import S_COUNT, S_FLOOR, S_FLOOR_X, S_FLOOR_Y, FitConfig, Shapes, fit_clusters
from fusion.detect.ground import Ground, GroundConfig, estimate_ground
from fusion.detect.sampling import length_upper_bounds
from fusion.detect.split import SplitConfig, split_rows

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GeometricConfig:
    """Configuration of the geometric detector: one frozen config per stage.

    Raises DetectError for a value no detector can work with (a non-positive size, a range
    that is empty, a rule for a category the contract does not have).
    """

    ground: GroundConfig = field(default_factory=GroundConfig)  # ground estimation
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # region of interest, connectivity
    fit: FitConfig = field(default_factory=FitConfig)  # rectangle fitting
    split: SplitConfig = field(default_factory=SplitConfig)  # rows of parked cars cut into cars
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)  # categories, sizes, scores

    def __post_init__(self) -> None:
        g, c, f, k, s = self.ground, self.cluster, self.fit, self.classify, self.split
        positive = {
            "split.max_piece": s.max_piece,
            "split.group_max_piece": s.group_max_piece,
            "ground.cell_size": g.cell_size,
            "ground.max_range": g.max_range,
            "cluster.cell_size": c.cell_size,
            "cluster.max_range": c.max_range,
            "cluster.min_link": c.min_link,
            "fit.coarse_step": f.coarse_step,
            "fit.fine_step": f.fine_step,
            "fit.min_distance": f.min_distance,
        }
        for name, value in positive.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise DetectError(f"detector config {name} = {value!r}; use a positive number")
        if not 0.0 <= c.min_range < c.max_range:
            raise DetectError(
                f"detector config cluster.min_range = {c.min_range} must be in [0, max_range = {c.max_range})"
            )
        if c.min_height >= c.max_height:
            raise DetectError(
                f"detector config cluster.min_height = {c.min_height} must be below "
                f"max_height = {c.max_height}"
            )
        if s.max_cuts < 1 or s.min_gap < 0.0 or s.group_min_gap < 0.0:
            raise DetectError("detector config split.max_cuts must be >= 1 and split.*min_gap >= 0")
        if c.min_points < 1 or c.max_link_cells < 1:
            raise DetectError("detector config cluster.min_points and cluster.max_link_cells must be >= 1")
        if bad := sorted(set(k.rules) - set(CATEGORIES)):
            raise DetectError(
                f"detector config classify.rules has unknown categories {bad}; use {CATEGORIES}"
            )
        if missing := [n for n in k.priority if n not in k.rules]:
            raise DetectError(f"detector config classify.priority names {missing}, which have no rule")

    def to_mapping(self) -> dict[str, Any]:
        """The configuration as plain dicts, lists and numbers (for TOML/JSON; `from_mapping` reads it)."""
        out: dict[str, Any] = {}
        for stage in fields(self):
            values = {}
            for f in fields(getattr(self, stage.name)):
                value = getattr(getattr(self, stage.name), f.name)
                if f.name == "rules":
                    value = {
                        name: {**asdict(rule), "prior": list(rule.prior)} for name, rule in value.items()
                    }
                elif isinstance(value, tuple):
                    value = list(value)
                values[f.name] = value
            out[stage.name] = values
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GeometricConfig:
        """A configuration from nested mappings (e.g. a parsed TOML table: [ground], [cluster], [fit],
        [split], [classify], [classify.rules.car]); missing keys keep their defaults.

        Raises DetectError for an unknown section or key, or a bad value.
        """
        stages: dict[str, type[Any]] = {
            "ground": GroundConfig,
            "cluster": ClusterConfig,
            "fit": FitConfig,
            "split": SplitConfig,
            "classify": ClassifyConfig,
        }
        if unknown := sorted(set(data) - set(stages)):
            raise DetectError(f"detector config: unknown section(s) {unknown}; use {sorted(stages)}")
        built: dict[str, Any] = {}
        for name, kind in stages.items():
            section = dict(data.get(name, {}))
            known = {f.name for f in fields(kind)}
            if unknown := sorted(set(section) - known):
                raise DetectError(f"detector config [{name}]: unknown key(s) {unknown}; use {sorted(known)}")
            if name == "classify" and "rules" in section:
                rules = dict(DEFAULT_RULES)
                for category, rule in section["rules"].items():
                    base = asdict(rules[category]) if category in rules else {}
                    merged = {**base, **rule}
                    try:
                        rules[category] = CategoryRule(**{**merged, "prior": tuple(merged["prior"])})
                    except (TypeError, KeyError) as err:
                        raise DetectError(f"detector config [classify.rules.{category}]: {err}") from err
                section["rules"] = MappingProxyType(rules)
            for key, value in section.items():
                if isinstance(value, list):
                    section[key] = tuple(value)
            built[name] = kind(**section)
        return cls(**built)


BOUNDED_CATEGORIES: Final = ("car", "truck", "bus")
"""The categories whose boxes get a `Boxes.length_bound` (those whose length refinement estimates
from partial views; the others' stay unknown, +inf)."""


class GeometricDetector:
    """Ground removal, clustering, L-shape boxes and shape classification (see the module docstring)."""

    name = "geometric"

    def __init__(self, config: GeometricConfig | None = None) -> None:
        self.config = config or GeometricConfig()

    def detect(self, cloud: PointCloud) -> Boxes:
        """The boxes of one sweep, in the cloud's frame at its stamp."""
        xyz = points_of(cloud)
        if xyz.shape[0] == 0:
            return Boxes.empty(cloud.frame_id, cloud.stamp_ns)
        shapes, result, step, ground = self._classified(xyz, cloud.ring)
        counts = shapes.values[result.cluster, S_COUNT].astype(np.int64)
        boxes = to_boxes(result, counts, cloud.frame_id, cloud.stamp_ns)
        if not len(boxes):
            return boxes
        floor = shapes.values[result.cluster][:, [S_FLOOR_X, S_FLOOR_Y, S_FLOOR]]
        boxes = replace(boxes, boxes=on_the_ground(boxes.boxes, floor, ground))
        # how long each vehicle can be at most, by where the sweep's rays passed it
        vehicle = np.isin(boxes.category, BOUNDED_CATEGORIES)
        bound = length_upper_bounds(xyz, cloud.ring, boxes.boxes, step, vehicle)
        return replace(boxes, length_bound=bound)

    def classified(self, xyz: F32, ring: npt.NDArray[np.uint16] | None) -> tuple[Shapes, Classified]:
        """The stages up to classification: every cluster's shape and the kept boxes with their score
        features (what `bench/calibrate_detect.py` fits the scores on). xyz: (N, 3) float32
        C-contiguous (`points_of`); ring: (N,) or None."""
        shapes, result, _, _ = self._classified(xyz, ring)
        return shapes, result

    def _classified(
        self, xyz: F32, ring: npt.NDArray[np.uint16] | None
    ) -> tuple[Shapes, Classified, float, Ground]:
        """`classified`, the sweep's azimuth step (radians; 0: unknown) and its ground."""
        cfg = self.config
        ground = estimate_ground(xyz, cfg.ground)
        step = azimuth_step(xyz, ring)
        clusters = cluster_points(xyz, ground.height, cfg.cluster, azimuth_step=step)
        shapes = fit_clusters(xyz, ground.height, clusters, cfg.fit)
        clusters, shapes = split_rows(
            xyz, ground.height, clusters, shapes, cfg.split, cfg.fit, min_points=cfg.cluster.min_points
        )
        return shapes, classify(shapes, cfg.classify), step, ground

    def detect_batch(self, clouds: Sequence[PointCloud]) -> list[Boxes]:
        """`detect` of each cloud, in order."""
        return [self.detect(c) for c in clouds]


GROUND_SLOPE_CELLS: Final = 3
"""`on_the_ground` takes the ground's slope under a box from the seen cells this many cells around it."""


def on_the_ground(boxes: F64, floor: F64, ground: Ground) -> F64:
    """`boxes` (K, 7) with each bottom moved to the road under its centre, its top kept (the highest
    point of its cluster). floor (K, 3): the x, y and ground z under the point of the box's cluster
    with the lowest ground; the road at the box's centre is that z carried there along the ground's
    slope, the median slope of the cell planes seen within `GROUND_SLOPE_CELLS` cells of the centre
    (flat where none was seen).

    The mean ground under a car's points sat ~0.13 m above the road (simulated logs; the box as
    high): the cells under a car hold no road return, only the car's lowest points a few centimetres
    to 0.2 m up, and the ground is grown through them. The lowest ground under the cluster is beside
    the car, where the road was seen; a single cell's plane carried metres to the centre is noisier
    than the median slope around it (mean error of car bottoms 0.10 against 0.08 m).
    """
    out = boxes.copy()
    if not boxes.shape[0]:
        return out
    planes, cell, rng = ground.planes, ground.cell_size, ground.max_range
    side = planes.shape[0]
    offsets = np.arange(-GROUND_SLOPE_CELLS, GROUND_SLOPE_CELLS + 1)
    i = np.floor((boxes[:, 0] + rng) / cell).astype(np.int64)[:, None, None] + offsets[None, :, None]
    j = np.floor((boxes[:, 1] + rng) / cell).astype(np.int64)[:, None, None] + offsets[None, None, :]
    i, j = np.broadcast_arrays(i, j)
    inside = (i >= 0) & (i < side) & (j >= 0) & (j < side)
    i, j = np.clip(i, 0, side - 1), np.clip(j, 0, side - 1)
    seen = (inside & ground.observed[i, j]).reshape(len(boxes), -1)
    slope = np.zeros((len(boxes), 2))
    some = seen.any(axis=1)
    for axis in (0, 1):
        values = np.where(seen, planes[i, j, axis].reshape(len(boxes), -1), np.nan)
        slope[some, axis] = np.nanmedian(values[some], axis=1)
    base = floor[:, 2] + np.einsum("ij,ij->i", slope, boxes[:, :2] - floor[:, :2])
    top = boxes[:, 2] + 0.5 * boxes[:, 5]
    out[:, 5] = np.maximum(top - base, 0.1)
    out[:, 2] = top - 0.5 * out[:, 5]
    return out


def points_of(cloud: PointCloud) -> np.ndarray[tuple[int, int], np.dtype[np.float32]]:
    """The cloud's xyz as a dense (N, 3) float32 array (a copy only when it is a strided view).

    Raises DetectError when xyz is not (N, 3).
    """
    xyz = cloud.xyz
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DetectError(f"a point cloud's xyz must be (N, 3), got {xyz.shape} (frame {cloud.frame_id!r})")
    return np.ascontiguousarray(xyz, dtype=np.float32)
