"""Detectors: one LiDAR sweep (`PointCloud`) in, its 3D boxes (`Boxes`) out.

A detector is anything with the `Detector` protocol. `DETECTORS` maps each name to a factory
taking the detector's config (or nothing, for its defaults); a new detector is added to it
explicitly, nothing registers itself on import.

    from fusion.detect import DETECTORS
    detector = DETECTORS["geometric"]()
    boxes = detector.detect(cloud)
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


@runtime_checkable
class Detector(Protocol):
    """Boxes from sweeps. Boxes come in the cloud's frame (`frame_id`) at its `stamp_ns`."""

    name: str

    def detect(self, cloud: PointCloud) -> Boxes: ...

    def detect_batch(self, clouds: Sequence[PointCloud]) -> list[Boxes]: ...


DETECTORS: Final[Mapping[str, Callable[..., Detector]]] = MappingProxyType(
    {
        "geometric": GeometricDetector,
    }
)
"""Detector factories by name; each takes its config (optional)."""


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
]
