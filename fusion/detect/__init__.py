"""Detectors: one LiDAR sweep (`PointCloud`) in, its 3D boxes (`Boxes`) out.

A detector is anything with the `Detector` protocol. `DETECTORS` maps each name to a factory
taking the detector's config (or nothing, for its defaults); a new detector is added to it
explicitly, nothing registers itself on import.

    from fusion.detect import DETECTORS
    detector = DETECTORS["geometric"]()
    boxes = detector.detect(cloud)

The learned detectors (`pointpillars`, `centerpoint`: pure torch, mmdet3d checkpoints; `mmdet3d`:
mmdetection3d itself) take a `LearnedConfig` (checkpoint, model config, device, batch size) and
import torch / mmdet3d only when built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, Protocol, runtime_checkable

from fusion.boxes import Boxes
from fusion.decode.types import PointCloud
from fusion.detect.classify import CategoryRule, ClassifyConfig
from fusion.detect.cluster import ClusterConfig
from fusion.detect.errors import DetectError
from fusion.detect.fit import FitConfig
from fusion.detect.geometric import GeometricConfig, GeometricDetector
from fusion.detect.ground import GroundConfig
from fusion.detect.split import SplitConfig


def _torch_missing(name: str) -> DetectError:
    return DetectError(f"the {name} detector needs torch: pip install 'fusion[learned]' (or torch==2.13.0)")


def pointpillars(config: object | None = None) -> Detector:
    """PointPillars from an mmdet3d checkpoint (`fusion.detect.learned`); config: a LearnedConfig."""
    try:
        from fusion.detect.learned import PillarDetector
    except ImportError as err:
        raise _torch_missing("pointpillars") from err
    return PillarDetector(config, arch="pointpillars")  # type: ignore[arg-type]


def centerpoint(config: object | None = None) -> Detector:
    """CenterPoint (pillar variant) from an mmdet3d checkpoint; config: a LearnedConfig."""
    try:
        from fusion.detect.learned import PillarDetector
    except ImportError as err:
        raise _torch_missing("centerpoint") from err
    return PillarDetector(config, arch="centerpoint")  # type: ignore[arg-type]


def mmdet3d(config: object | None = None) -> Detector:
    """Any mmdet3d LiDAR model through mmdet3d.apis (needs mmdet3d installed); config: a LearnedConfig."""
    from fusion.detect.mmdet3d_backend import Mmdet3dDetector

    return Mmdet3dDetector(config)


def learned_config(options: Mapping[str, object]) -> object:
    """A LearnedConfig (fusion.detect.learned) from plain options: checkpoint, model_config, device,
    batch_size, threads, intensity_scale, min_score, score_calibration. Raises DetectError when torch
    is missing."""
    from pathlib import Path

    try:
        from fusion.detect.learned.config import LearnedConfig
    except ImportError as err:
        raise _torch_missing("learned") from err
    known = {
        "checkpoint",
        "model_config",
        "device",
        "batch_size",
        "threads",
        "intensity_scale",
        "min_score",
        "score_calibration",
    }
    if unknown := sorted(set(options) - known):
        raise DetectError(f"unknown learned-detector option(s) {unknown}; use {sorted(known)}")
    values = dict(options)
    if "checkpoint" not in values:
        raise DetectError("a learned detector needs a checkpoint")
    values["checkpoint"] = Path(str(values["checkpoint"]))
    if values.get("model_config") is not None:
        values["model_config"] = Path(str(values["model_config"]))
    return LearnedConfig(**values)  # type: ignore[arg-type]


@runtime_checkable
class Detector(Protocol):
    """Boxes from sweeps. Boxes come in the cloud's frame (`frame_id`) at its `stamp_ns`."""

    name: str

    def detect(self, cloud: PointCloud) -> Boxes: ...

    def detect_batch(self, clouds: Sequence[PointCloud]) -> list[Boxes]: ...


DETECTORS: Final[Mapping[str, Callable[..., Detector]]] = MappingProxyType(
    {
        "geometric": GeometricDetector,
        "pointpillars": pointpillars,
        "centerpoint": centerpoint,
        "mmdet3d": mmdet3d,
    }
)
"""Detector factories by name; each takes its config (optional)."""

LEARNED_DETECTORS: Final = ("pointpillars", "centerpoint", "mmdet3d")
"""The detectors built from a checkpoint (options as `learned_config` takes them)."""


def build_detector(name: str, config: object | None = None) -> Detector:
    """The detector called `name`, with `config` (None: its defaults).

    Raises DetectError for an unknown name.
    """
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise DetectError(f"unknown detector {name!r}; use one of {', '.join(sorted(DETECTORS))}") from None
    return factory() if config is None else factory(config)


__all__ = [
    "DETECTORS",
    "LEARNED_DETECTORS",
    "CategoryRule",
    "ClassifyConfig",
    "ClusterConfig",
    "DetectError",
    "Detector",
    "FitConfig",
    "GeometricConfig",
    "GeometricDetector",
    "GroundConfig",
    "SplitConfig",
    "build_detector",
    "learned_config",
]
