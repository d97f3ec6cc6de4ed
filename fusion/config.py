"""The configuration of a pre-labelling run (`fusion run --config FILE`): frozen dataclasses, loaded
from TOML, overridden by command-line flags, and written with the output (`dataset.json`'s
`pipeline.config` and each sequence's `config_json`).

A config file (every table and key optional; a missing one keeps its default)::

    [topics]
    lidar = "/lidar/points"                        # default: the PointCloud2 topic with most messages
    cameras = ["/camera_front/image/compressed"]   # default: every image topic with a CameraInfo

    [sync]                                         # fusion.sync.SyncConfig (less its two topic fields)
    deskew = true
    tolerance_ns = 20_000_000

    [detector]
    name = "geometric"
    [detector.options.cluster]                     # the detector's own config (GeometricConfig)
    min_points = 4

    [tracker]
    enabled = true
    [tracker.online]                               # trackers.TrackerConfig
    matcher = "hungarian"
    [tracker.refine]                               # trackers.refine.RefineConfig
    min_track_frames = 3

    [output]
    points = true
    images = true
    image_format = "recorded"                      # or "jpeg" / "png": re-encoded with OpenCV
    chunk_s = 10.0                                 # seconds of log per Dask task

A key no dataclass has is an error naming the key and the file (`ConfigError`), never ignored; so is
a value of the wrong type (a string where the field is an integer, say), checked against the
dataclasses' annotations before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, Union, get_args, get_origin, get_type_hints

from fusion.errors import FusionError
from fusion.sync import SyncConfig

ImageFormat = Literal["recorded", "jpeg", "png"]
IMAGE_FORMATS: Final[tuple[str, ...]] = get_args(ImageFormat)

_TOPIC_FIELDS: Final = ("lidar_topic", "camera_topics")  # SyncConfig fields set from [topics]


class ConfigError(FusionError):
    """A config file that cannot be read, or a key or value no run can use."""


def _detector_configs() -> Mapping[str, Callable[[Mapping[str, Any]], Any]]:
    """Detector name -> its config's `from_mapping` (the `[detector.options]` table)."""
    from fusion.detect import LEARNED_DETECTORS, learned_config
    from fusion.detect.geometric import GeometricConfig

    return {"geometric": GeometricConfig.from_mapping, **dict.fromkeys(LEARNED_DETECTORS, learned_config)}


@dataclass(frozen=True)
class TopicsConfig:
    """Which topics of each log to use."""

    lidar: str | None = None  # the PointCloud2 topic; None: the one with the most messages
    cameras: tuple[str, ...] | None = None  # image topics; None: every image topic with a CameraInfo


@dataclass(frozen=True)
class DetectorConfig:
    """The detector, by name (`fusion.detect.DETECTORS`), and its own options."""

    name: str = "geometric"  # key of fusion.detect.DETECTORS
    options: Mapping[str, Any] = field(default_factory=dict)  # nested tables for the detector's config

    def build_config(self) -> Any:
        """The detector's own config object (None: its defaults). Raises ConfigError."""
        from fusion.detect import DETECTORS, LEARNED_DETECTORS

        if self.name not in DETECTORS:
            raise ConfigError(f"unknown detector {self.name!r}; choose one of {', '.join(sorted(DETECTORS))}")
        needs_checkpoint = ConfigError(
            f"--detector {self.name} needs --checkpoint CKPT (an mmdet3d .pth; in a --config file: "
            "checkpoint under [detector.options])"
        )
        if not self.options:
            if self.name in LEARNED_DETECTORS:
                raise needs_checkpoint
            return None
        loader = _detector_configs().get(self.name)
        if loader is None:
            raise ConfigError(f"detector {self.name!r} takes no [detector.options]")
        missing = self.name in LEARNED_DETECTORS and "checkpoint" not in self.options
        try:
            config = loader(self.options)
        except FusionError as err:
            if missing and not str(err).startswith("unknown"):  # a typo'd "chekpoint" is named first
                raise needs_checkpoint from err
            raise ConfigError(str(err)) from err
        if missing:
            raise needs_checkpoint
        return config

    def build(self) -> Any:
        """The detector (`fusion.detect.Detector`)."""
        from fusion.detect import build_detector

        return build_detector(self.name, self.build_config())

    def to_mapping(self) -> dict[str, Any]:
        config = self.build_config()
        options = config.to_mapping() if hasattr(config, "to_mapping") else dict(self.options)
        return {"name": self.name, "options": options}


@dataclass(frozen=True)
class TrackingSection:
    """Tracking and 4D refinement of each log's detections."""

    enabled: bool = True  # False: each box its own track, no refinement
    online: Any = None  # trackers.TrackerConfig; None: its defaults
    refine: Any = None  # trackers.refine.RefineConfig; None: its defaults

    def to_mapping(self) -> dict[str, Any]:
        from trackers.config import TrackerConfig
        from trackers.refine import RefineConfig

        return {
            "enabled": self.enabled,
            "online": (self.online or TrackerConfig()).to_mapping(),
            "refine": (self.refine or RefineConfig()).to_mapping(),
        }


@dataclass(frozen=True)
class OutputConfig:
    """What is written besides frames and labels, and how the work is cut."""

    points: bool = True  # write points/<sid>.parquet
    images: bool = True  # write images/<sid>/<camera>.parquet
    image_format: ImageFormat = "recorded"  # "recorded": compressed bytes as logged (raw -> JPEG)
    chunk_s: float = 10.0  # seconds of log per Dask task (decode, sync, deskew, detect)

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"image_format {self.image_format!r}; use one of {', '.join(IMAGE_FORMATS)}")
        if not (isinstance(self.chunk_s, int | float) and math.isfinite(self.chunk_s) and self.chunk_s > 0):
            raise ConfigError(f"chunk_s = {self.chunk_s!r}; use a positive number of seconds")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is configured by."""

    topics: TopicsConfig = field(default_factory=TopicsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)  # its topic fields come from `topics`
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackingSection = field(default_factory=TrackingSection)
    output: OutputConfig = field(default_factory=OutputConfig)

    def sync_config(self) -> SyncConfig:
        """`sync` with the topics of `topics`."""
        return replace(self.sync, lidar_topic=self.topics.lidar, camera_topics=self.topics.cameras)

    def to_mapping(self) -> dict[str, Any]:
        """The effective configuration as plain values (what the output records)."""
        sync = {f.name: getattr(self.sync, f.name) for f in fields(SyncConfig) if f.name not in _TOPIC_FIELDS}
        return {
            "topics": {
                "lidar": self.topics.lidar,
                "cameras": list(self.topics.cameras) if self.topics.cameras is not None else None,
            },
            "sync": sync,
            "detector": self.detector.to_mapping(),
            "tracker": self.tracker.to_mapping(),
            "output": {f.name: getattr(self.output, f.name) for f in fields(OutputConfig)},
        }

    def with_overrides(
        self,
        *,
        lidar_topic: str | None = None,
        camera_topics: tuple[str, ...] | None = None,
        detector: str | None = None,
        detector_options: Mapping[str, Any] | None = None,
        track: bool | None = None,
        points: bool | None = None,
        images: bool | None = None,
        image_format: str | None = None,
        chunk_s: float | None = None,
    ) -> RunConfig:
        """This config with each given (not None) value replaced: command-line flags win over the file.
        detector_options are merged over the detector's options (a learned detector's checkpoint, ...)."""
        topics = replace(
            self.topics,
            lidar=lidar_topic if lidar_topic is not None else self.topics.lidar,
            cameras=camera_topics if camera_topics is not None else self.topics.cameras,
        )
        det = self.detector
        if detector is not None and detector != det.name:
            det = DetectorConfig(name=detector)  # options of another detector do not carry over
        if detector_options:
            det = DetectorConfig(name=det.name, options={**det.options, **detector_options})
        o = self.output
        output = OutputConfig(
            points=o.points if points is None else points,
            images=o.images if images is None else images,
            image_format=o.image_format if image_format is None else image_format,  # type: ignore[arg-type]
            chunk_s=o.chunk_s if chunk_s is None else chunk_s,
        )
        tracker = replace(self.tracker, enabled=track) if track is not None else self.tracker
        config = replace(self, topics=topics, detector=det, tracker=tracker, output=output)
        config.detector.build_config()  # an unknown name fails here
        return config


def load_config(path: Path | str) -> RunConfig:
    """A `RunConfig` from a TOML file. Raises ConfigError naming the file for anything wrong."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return config_from_mapping(data, source=str(path))


def config_from_mapping(data: Mapping[str, Any], *, source: str = "config") -> RunConfig:
    """A `RunConfig` from nested mappings (a parsed TOML document). Raises ConfigError naming `source`
    and the unknown or bad key."""
    _known(data, {"topics", "sync", "detector", "tracker", "output"}, source, "")
    _check_types(data, source)
    try:
        topics = _section(TopicsConfig, data.get("topics", {}), source, "topics")
        sync_keys = {f.name for f in fields(SyncConfig)} - set(_TOPIC_FIELDS)
        sync_data = _table(data.get("sync", {}), source, "sync")
        _known(sync_data, sync_keys, source, "sync")
        sync = SyncConfig(**sync_data)
        _check_sync(sync)
        det_data = _table(data.get("detector", {}), source, "detector")
        _known(det_data, {"name", "options"}, source, "detector")
        detector = DetectorConfig(
            name=str(det_data.get("name", "geometric")),
            options=MappingProxyType(dict(_table(det_data.get("options", {}), source, "detector.options"))),
        )
        detector.build_config()
        trk = _table(data.get("tracker", {}), source, "tracker")
        _known(trk, {"enabled", "online", "refine"}, source, "tracker")
        tracker = TrackingSection(
            enabled=_bool(trk.get("enabled", True), source, "tracker.enabled"),
            online=_tracker_config(trk.get("online"), source),
            refine=_refine_config(trk.get("refine"), source),
        )
        output = _section(OutputConfig, data.get("output", {}), source, "output")
    except FusionError as err:
        if str(err).startswith(source):
            raise
        raise ConfigError(f"{source}: {err}") from err
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from err
    return RunConfig(topics=topics, sync=sync, detector=detector, tracker=tracker, output=output)


def _check_sync(sync: SyncConfig) -> None:
    """Refuse sync values of the right type but out of range: a negative tolerance paired no image
    at all, silently (every camera's images table written empty)."""
    if sync.tolerance_ns is not None and sync.tolerance_ns < 0:
        raise ConfigError(
            f"sync.tolerance_ns = {sync.tolerance_ns}; use a non-negative number of ns "
            "(or leave it out: half of each camera's period)"
        )
    if sync.max_latency_ns < 0:
        raise ConfigError(f"sync.max_latency_ns = {sync.max_latency_ns}; use a non-negative number of ns")
    if sync.sweep_period_ns <= 0:
        raise ConfigError(f"sync.sweep_period_ns = {sync.sweep_period_ns}; use a positive number of ns")
    if sync.spin not in ("ccw", "cw"):
        raise ConfigError(f"sync.spin = {sync.spin!r}; use 'ccw' or 'cw'")
    if not math.isfinite(sync.stamp_azimuth_rad):
        raise ConfigError(f"sync.stamp_azimuth_rad = {sync.stamp_azimuth_rad!r}; use a finite angle in rad")


def _tracker_config(data: Any, source: str) -> Any:
    if data is None:
        return None
    from trackers.config import TrackerConfig

    return TrackerConfig.from_mapping(_table(data, source, "tracker.online"))


def _refine_config(data: Any, source: str) -> Any:
    if data is None:
        return None
    from trackers.refine import RefineConfig

    return RefineConfig.from_mapping(_table(data, source, "tracker.refine"))


def _table(value: Any, source: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: [{where}] must be a table, got {type(value).__name__}")
    return value


def _known(data: Mapping[str, Any], known: set[str], source: str, where: str) -> None:
    for key in data:
        if key not in known:
            name = f"{where}.{key}" if where else key
            raise ConfigError(f"{source}: unknown key {name!r}; use one of {', '.join(sorted(known))}")


def _bool(value: Any, source: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {where} must be true or false, got {value!r}")
    return value


def _section(kind: Any, value: Any, source: str, where: str) -> Any:
    data = dict(_table(value, source, where))
    _known(data, {f.name for f in fields(kind)}, source, where)
    for key, item in data.items():
        if isinstance(item, list):
            data[key] = tuple(item)
    return kind(**data)


def _check_types(data: Mapping[str, Any], source: str) -> None:
    """Every value against its dataclass field's annotation (unknown keys are left to `_known` and the
    sections' own loaders). Raises ConfigError: `run.toml: sync.tolerance_ns = 'five'; use an integer`."""
    from trackers.config import TrackerConfig
    from trackers.refine import RefineConfig

    sections: list[tuple[str, Any, Any]] = [
        ("topics", TopicsConfig, data.get("topics")),
        ("sync", SyncConfig, data.get("sync")),
        ("output", OutputConfig, data.get("output")),
    ]
    tracker = data.get("tracker")
    if isinstance(tracker, Mapping):
        sections += [
            ("tracker.online", TrackerConfig, tracker.get("online")),
            ("tracker.refine", RefineConfig, tracker.get("refine")),
        ]
    detector = data.get("detector")
    if isinstance(detector, Mapping):
        if not isinstance(detector.get("name", ""), str):
            raise ConfigError(f"{source}: detector.name = {detector['name']!r}; use a string")
        if detector.get("name", "geometric") == "geometric":
            from fusion.detect.geometric import GeometricConfig

            sections.append(("detector.options", GeometricConfig, detector.get("options")))
    for where, kind, value in sections:
        if isinstance(value, Mapping):  # a non-table is reported by the section's loader
            problem = _type_problem(kind, value, where)
            if problem is not None:
                raise ConfigError(f"{source}: {problem}")


def _type_problem(hint: Any, value: Any, where: str) -> str | None:
    """Why `value` does not fit the annotation `hint` (None: it fits, or the hint is not checked)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return _union_problem(hint, value, where)
    if dataclasses.is_dataclass(hint):
        hints = get_type_hints(hint)
        return _items_problem(value, where, hints.get)
    if origin is Literal:
        return _literal_problem(get_args(hint), value, where)
    if origin is tuple:
        return _tuple_problem(get_args(hint), value, where)
    if origin is Mapping or hint is Mapping:
        args = get_args(hint)
        return _items_problem(value, where, lambda key: args[1] if args else None)
    return _scalar_problem(hint, value, where)


def _literal_problem(choices: tuple[Any, ...], value: Any, where: str) -> str | None:
    if value in choices and type(value) in {type(c) for c in choices}:
        return None
    return f"{where} {value!r}; use one of {', '.join(str(c) for c in choices)}"


def _union_problem(hint: Any, value: Any, where: str) -> str | None:
    if value is None and type(None) in get_args(hint):
        return None  # as the effective config writes a field left to auto-detection
    arms = [a for a in get_args(hint) if a is not type(None)]
    problems = [_type_problem(a, value, where) for a in arms]
    return None if any(p is None for p in problems) else problems[0]


def _items_problem(value: Any, where: str, hint_of: Callable[[str], Any]) -> str | None:
    """A table's values, each against `hint_of(key)` (None: not checked)."""
    if not isinstance(value, Mapping):
        return f"{where} = {value!r}; use a table"
    for key, item in value.items():
        hint = hint_of(key)
        if hint is not None and (problem := _type_problem(hint, item, f"{where}.{key}")):
            return problem
    return None


def _tuple_problem(args: tuple[Any, ...], value: Any, where: str) -> str | None:
    if not isinstance(value, list | tuple):
        return f"{where} = {value!r}; use a list"
    items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
    if len(items) != len(value):
        return f"{where} = {value!r}; use a list of {len(items)} values"
    pairs = enumerate(zip(items, value, strict=True))
    problems = (_type_problem(arg, item, f"{where}[{i}]") for i, (arg, item) in pairs)
    return next((p for p in problems if p is not None), None)


_SCALARS: Final[Mapping[Any, str]] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def _scalar_problem(hint: Any, value: Any, where: str) -> str | None:
    if hint not in _SCALARS:
        return None  # Any, or a type the sections' loaders check themselves
    allowed: tuple[type, ...] = (int, float) if hint is float else (hint,)
    if isinstance(value, bool) == (hint is bool) and isinstance(value, allowed):
        return None
    return f"{where} = {value!r}; use {_SCALARS[hint]}"
