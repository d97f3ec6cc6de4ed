"""Model configuration of the learned detectors, read from the mmdetection3d config values that matter.

`ModelConfig` holds what shapes the network and its decoding: the voxel grid (point cloud range,
voxel size, max points per pillar), the encoder, backbone and neck channels, and the head (anchors
and NMS for PointPillars' Anchor3DHead; tasks, coder and NMS for CenterPoint's CenterHead), plus the
class names. It is built from an mmdet3d 1.x config:

    load_config_file("pointpillars_kitti.py")   # a .py config; `_base_` files and {{_base_.x}} resolved
    load_config_file("model.toml")               # or the same variables as TOML / JSON
    model_config_from_mmdet3d(variables)          # -> ModelConfig

A `.py` config is executed as mmengine executes it (a config is code: run only configs you trust);
no mmengine import is needed. Only the data variables it defines are kept.
"""

from __future__ import annotations

import ast
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from fusion.detect.errors import DetectError

# mmdet3d class names (KITTI, nuScenes, Waymo, Lyft, Argoverse 2, ours) -> the contract's categories;
# None: not an object the labels carry (barriers, cones), dropped.
DEFAULT_CATEGORY_MAP: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "car": "car",
        "van": "car",
        "vehicle": "car",
        "regular_vehicle": "car",
        "truck": "truck",
        "construction_vehicle": "truck",
        "trailer": "truck",
        "box_truck": "truck",
        "bus": "bus",
        "pedestrian": "pedestrian",
        "person_sitting": "pedestrian",
        "cyclist": "cyclist",
        "bicycle": "cyclist",
        "bicyclist": "cyclist",
        "motorcycle": "motorcycle",
        "motorcyclist": "motorcycle",
        "barrier": None,
        "traffic_cone": None,
    }
)


@dataclass(frozen=True)
class VoxelConfig:
    """The pillar grid (mmdet3d `voxel_layer`)."""

    point_cloud_range: tuple[float, float, float, float, float, float]  # x_min y_min z_min x_max y_max z_max
    voxel_size: tuple[float, float, float]  # metres; z spans the range for pillars
    max_num_points: int  # points kept per pillar (first come)
    max_voxels: int  # pillars kept per sweep at test time (first come)
    range_filter: bool = True  # the test pipeline's PointsRangeFilter (strictly inside) before voxelising

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """(nx, ny, nz), rounded as mmcv's Voxelization rounds them (float32)."""
        import numpy as np

        r = np.asarray(self.point_cloud_range, np.float32)
        v = np.asarray(self.voxel_size, np.float32)
        n = np.round((r[3:] - r[:3]) / v).astype(int)
        return int(n[0]), int(n[1]), int(n[2])


@dataclass(frozen=True)
class EncoderConfig:
    """mmdet3d `PillarFeatureNet`."""

    in_channels: int  # point features given: x y z intensity [time]
    feat_channels: tuple[int, ...]  # PFN layer widths
    with_distance: bool = False
    with_cluster_center: bool = True
    with_voxel_center: bool = True
    legacy: bool = True  # mmdet3d's default: xyz overwritten by the pillar-centre offsets
    norm_eps: float = 1e-3
    norm_momentum: float = 0.01

    @property
    def feature_channels(self) -> int:
        """Channels into the first PFN layer."""
        return (
            self.in_channels
            + 3 * self.with_cluster_center
            + 3 * self.with_voxel_center
            + int(self.with_distance)
        )


@dataclass(frozen=True)
class BackboneConfig:
    """mmdet3d `SECOND`."""

    in_channels: int
    out_channels: tuple[int, ...]
    layer_nums: tuple[int, ...]
    layer_strides: tuple[int, ...]
    norm_eps: float = 1e-3
    norm_momentum: float = 0.01


@dataclass(frozen=True)
class NeckConfig:
    """mmdet3d `SECONDFPN`."""

    in_channels: tuple[int, ...]
    out_channels: tuple[int, ...]
    upsample_strides: tuple[float, ...]
    use_conv_for_no_stride: bool = False
    norm_eps: float = 1e-3
    norm_momentum: float = 0.01


@dataclass(frozen=True)
class AnchorHeadConfig:
    """mmdet3d `Anchor3DHead` with an `AlignedAnchor3DRangeGenerator` and `DeltaXYZWLHRBBoxCoder`."""

    num_classes: int
    in_channels: int
    feat_channels: int
    ranges: tuple[tuple[float, ...], ...]  # one (x0 y0 z0 x1 y1 z1) per size, or one for all
    sizes: tuple[tuple[float, float, float], ...]  # (x_size, y_size, z_size) per anchor size
    rotations: tuple[float, ...] = (0.0, 1.57)
    align_corner: bool = False
    use_direction_classifier: bool = True
    dir_offset: float = -math.pi / 2
    dir_limit_offset: float = 0.0
    box_code_size: int = 7
    # test_cfg
    use_rotate_nms: bool = True
    nms_pre: int = 100
    nms_thr: float = 0.01
    score_thr: float = 0.1
    max_num: int = 50

    @property
    def num_anchors(self) -> int:
        """Anchors per BEV cell: sizes x rotations."""
        return len(self.sizes) * len(self.rotations)


@dataclass(frozen=True)
class CenterHeadConfig:
    """mmdet3d `CenterHead` with `SeparateHead`s and a `CenterPointBBoxCoder`."""

    in_channels: int
    tasks: tuple[tuple[str, ...], ...]  # class names of each task
    common_heads: Mapping[str, tuple[int, int]]  # name -> (channels, convs), in the config's order
    share_conv_channel: int = 64
    head_conv: int = 64
    final_kernel: int = 3
    num_heatmap_convs: int = 2
    init_bias: float = -2.19
    norm_bbox: bool = True
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
    # bbox_coder
    out_size_factor: int = 4
    coder_voxel_size: tuple[float, float] = (0.2, 0.2)
    coder_pc_range: tuple[float, float] = (-51.2, -51.2)
    post_center_range: tuple[float, ...] | None = None
    max_num: int = 500
    coder_score_threshold: float | None = 0.1
    # test_cfg
    nms_type: str = "rotate"  # rotate | circle
    nms_thr: float = 0.2
    pre_max_size: int = 1000
    post_max_size: int = 83
    min_radius: tuple[float, ...] = ()
    score_threshold: float = 0.1
    post_center_limit_range: tuple[float, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """One PointPillars or CenterPoint (pillar) model."""

    arch: str  # "pointpillars" | "centerpoint"
    voxel: VoxelConfig
    encoder: EncoderConfig
    backbone: BackboneConfig
    neck: NeckConfig
    head: AnchorHeadConfig | CenterHeadConfig
    class_names: tuple[str, ...]
    key_prefix: str = ""  # "pts_" for CenterPoint (MVXTwoStageDetector) checkpoints
    extra: Mapping[str, Any] = field(default_factory=dict)  # fusion-only settings (intensity_scale)


SCORE_CALIBRATIONS: Final = ("checkpoint", "raw")


@dataclass(frozen=True)
class LearnedConfig:
    """How to run a learned detector (the model itself comes from the checkpoint and its config)."""

    checkpoint: Path  # mmdet3d .pth (state_dict under mmdet3d's key names)
    model_config: Path | None = None  # mmdet3d config .py / .toml / .json; None: the one in the checkpoint
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    batch_size: int = 8  # sweeps per forward pass
    threads: int | None = None  # torch CPU threads; None: leave torch's setting
    intensity_scale: float | None = None  # None: the checkpoint's fusion setting, else 1.0
    min_score: float = 0.0  # boxes whose reported (calibrated, if so) score is below this are dropped
    categories: Mapping[str, str | None] = field(default_factory=lambda: dict(DEFAULT_CATEGORY_MAP))
    # "checkpoint": the calibration the checkpoint carries (meta["fusion_score_calibration"], written by
    # bench/calibrate_learned.py: scores become P(the box is right)); a checkpoint without one (any
    # mmdet3d checkpoint) keeps its raw scores. "raw": the network's raw scores, always.
    score_calibration: str = "checkpoint"

    def __post_init__(self) -> None:
        if self.score_calibration not in SCORE_CALIBRATIONS:
            raise DetectError(
                f"detector score_calibration = {self.score_calibration!r}; use one of {SCORE_CALIBRATIONS}"
            )
        if self.batch_size < 1:
            raise DetectError(f"detector batch_size = {self.batch_size}; use 1 or more")
        if self.threads is not None and self.threads < 1:
            raise DetectError(f"detector threads = {self.threads}; use 1 or more")


# ---- reading mmdet3d config files -----------------------------------------------------------------

_BASE_REF = re.compile(r"\{\{\s*_base_\.([A-Za-z0-9_.\[\]]+)\s*\}\}")
_DATA = (dict, list, tuple, str, int, float, bool, type(None))


def load_config_file(path: Path | str) -> dict[str, Any]:
    """The variables of an mmdet3d config: `.py` (executed, `_base_` merged), `.toml` or `.json`.

    Raises DetectError naming the file when it is missing or does not parse.
    """
    p = Path(path)
    if not p.is_file():
        raise DetectError(f"{p}: no such model config; pass an mmdet3d config .py (or .toml/.json)")
    if p.suffix == ".toml":
        try:
            return tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise DetectError(f"{p}: not valid TOML: {err}") from err
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise DetectError(f"{p}: not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise DetectError(f"{p}: a model config must be a JSON object")
        return data
    return _load_py(p, ())


def config_from_text(text: str, name: str) -> dict[str, Any]:
    """The variables of a Python config given as text (mmengine's `cfg` in a checkpoint's meta)."""
    return _exec_config(text, name, {})


def _load_py(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise DetectError(f"{path}: `_base_` files include each other in a cycle")
    text = path.read_text()
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as err:
        raise DetectError(f"{path}:{err.lineno}: not a Python config: {err.msg}") from err
    if any(isinstance(node, ast.With) for node in tree.body):
        raise DetectError(
            f"{path}: mmengine's new-style config (`with read_base()`) is not supported; "
            "use the classic `_base_ = [...]` form or a TOML/JSON copy of the model settings"
        )
    bases: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            bases = [value] if isinstance(value, str) else list(value)
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge_config(merged, _load_py(path.parent / base, (*seen, path)))
    return merge_config(merged, _exec_config(text, str(path), merged))


def _exec_config(text: str, name: str, base: Mapping[str, Any]) -> dict[str, Any]:
    def base_ref(dotted: str) -> Any:
        value: Any = base
        for part in re.split(r"\.|\[|\]", dotted):
            if not part:
                continue
            value = value[int(part)] if part.isdigit() else value[part]
        return value

    source = _BASE_REF.sub(lambda m: f"__base_ref__({m.group(1)!r})", text)
    namespace: dict[str, Any] = {"__base_ref__": base_ref, "__name__": "__mmdet3d_config__"}
    try:
        exec(compile(source, name, "exec"), namespace)
    except Exception as err:
        raise DetectError(f"{name}: the config does not run: {type(err).__name__}: {err}") from err
    return {k: v for k, v in namespace.items() if not k.startswith("_") and isinstance(v, _DATA)}


def merge_config(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """mmengine's merge: dicts merge key by key (unless the child says `_delete_=True`), the rest replaces."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not value.get("_delete_", False):
            out[key] = merge_config(out[key], value)
        elif isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k != "_delete_"}
        else:
            out[key] = value
    return out


# ---- mmdet3d variables -> ModelConfig --------------------------------------------------------------


def _floats(value: Any, n: int | None, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise DetectError(f"model config {what} = {value!r}; use a list of numbers") from err
    if n is not None and len(out) != n:
        raise DetectError(f"model config {what} has {len(out)} values; it needs {n}")
    return out


def _ints(value: Any, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError) as err:
        raise DetectError(f"model config {what} = {value!r}; use a list of integers") from err


def _section(model: Mapping[str, Any], names: Sequence[str], what: str) -> tuple[str, Mapping[str, Any]]:
    for name in names:
        if isinstance(model.get(name), Mapping):
            return name, model[name]
    raise DetectError(f"model config has no {what} (looked for model.{' / model.'.join(names)})")


def _expect_type(section: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    kind = str(section.get("type", "")).split(".")[-1]
    if kind not in allowed:
        raise DetectError(
            f"model config {what}.type = {section.get('type')!r}; the pure-torch detectors support "
            f"{', '.join(allowed)} (use --detector mmdet3d for other models)"
        )


def _norm(section: Mapping[str, Any], eps: float, momentum: float) -> tuple[float, float]:
    norm = section.get("norm_cfg") or {}
    return float(norm.get("eps", eps)), float(norm.get("momentum", momentum))


def model_config_from_mmdet3d(
    variables: Mapping[str, Any], extra: Mapping[str, Any] | None = None, class_names: Sequence[str] = ()
) -> ModelConfig:
    """A ModelConfig from an mmdet3d config's variables (`model`, `class_names` / `metainfo`).

    class_names: used when the config names none (e.g. from a checkpoint's dataset_meta).
    Raises DetectError for a model the pure-torch detectors do not implement, or a missing value.
    """
    model = variables.get("model")
    if not isinstance(model, Mapping):
        raise DetectError("model config has no `model = dict(...)`")
    prefix = "pts_" if "pts_voxel_encoder" in model else ""
    _, enc = _section(model, [f"{prefix}voxel_encoder"], "voxel encoder")
    _expect_type(enc, ["PillarFeatureNet"], "voxel_encoder")
    _, mid = _section(model, [f"{prefix}middle_encoder"], "middle encoder")
    _expect_type(mid, ["PointPillarsScatter"], "middle_encoder")
    _, bb = _section(model, [f"{prefix}backbone"], "backbone")
    _expect_type(bb, ["SECOND"], "backbone")
    _, nk = _section(model, [f"{prefix}neck"], "neck")
    _expect_type(nk, ["SECONDFPN"], "neck")
    _, head = _section(model, [f"{prefix}bbox_head"], "bbox head")
    _expect_type(head, ["Anchor3DHead", "CenterHead"], "bbox_head")

    pre = model.get("data_preprocessor") or {}
    layer = pre.get("voxel_layer") or model.get(f"{prefix}voxel_layer") or model.get("voxel_layer")
    if not isinstance(layer, Mapping):
        raise DetectError("model config has no voxel layer (model.data_preprocessor.voxel_layer)")
    max_voxels = layer.get("max_voxels", 40000)
    if isinstance(max_voxels, list | tuple):
        max_voxels = max_voxels[-1]  # (train, test)
    pcr = _floats(layer.get("point_cloud_range"), 6, "voxel_layer.point_cloud_range")
    voxel = VoxelConfig(
        range_filter=_has_range_filter(variables),
        point_cloud_range=pcr,  # type: ignore[arg-type]
        voxel_size=_floats(layer.get("voxel_size"), 3, "voxel_layer.voxel_size"),  # type: ignore[arg-type]
        max_num_points=int(layer.get("max_num_points", 32)),
        max_voxels=int(max_voxels),
    )
    if voxel.max_num_points < 1 or voxel.max_voxels < 1:
        raise DetectError("model config voxel_layer: dynamic voxelisation (-1) is not supported; use hard")
    if voxel.grid_size[2] != 1:
        raise DetectError(f"model config voxel_size {voxel.voxel_size} is not a pillar (one cell in z)")
    eps, mom = _norm(enc, 1e-3, 0.01)
    if enc.get("mode", "max") != "max":
        raise DetectError("model config voxel_encoder.mode must be 'max'")
    encoder = EncoderConfig(
        in_channels=int(enc.get("in_channels", 4)),
        feat_channels=_ints(enc.get("feat_channels", (64,)), "voxel_encoder.feat_channels"),
        with_distance=bool(enc.get("with_distance", False)),
        with_cluster_center=bool(enc.get("with_cluster_center", True)),
        with_voxel_center=bool(enc.get("with_voxel_center", True)),
        legacy=bool(enc.get("legacy", True)),
        norm_eps=eps,
        norm_momentum=mom,
    )
    out_shape = _ints(mid.get("output_shape"), "middle_encoder.output_shape")
    nx, ny, _ = voxel.grid_size
    if tuple(out_shape) != (ny, nx):
        raise DetectError(
            f"model config middle_encoder.output_shape {list(out_shape)} does not match the voxel grid "
            f"[{ny}, {nx}] of point_cloud_range / voxel_size"
        )
    eps, mom = _norm(bb, 1e-3, 0.01)
    backbone = BackboneConfig(
        in_channels=int(bb.get("in_channels", 128)),
        out_channels=_ints(bb.get("out_channels", (128, 128, 256)), "backbone.out_channels"),
        layer_nums=_ints(bb.get("layer_nums", (3, 5, 5)), "backbone.layer_nums"),
        layer_strides=_ints(bb.get("layer_strides", (2, 2, 2)), "backbone.layer_strides"),
        norm_eps=eps,
        norm_momentum=mom,
    )
    eps, mom = _norm(nk, 1e-3, 0.01)
    neck = NeckConfig(
        in_channels=_ints(nk.get("in_channels", (128, 128, 256)), "neck.in_channels"),
        out_channels=_ints(nk.get("out_channels", (256, 256, 256)), "neck.out_channels"),
        upsample_strides=_floats(nk.get("upsample_strides", (1, 2, 4)), None, "neck.upsample_strides"),
        use_conv_for_no_stride=bool(nk.get("use_conv_for_no_stride", False)),
        norm_eps=eps,
        norm_momentum=mom,
    )
    test_cfg = model.get("test_cfg") or {}
    if prefix and isinstance(test_cfg.get("pts"), Mapping):
        test_cfg = test_cfg["pts"]
    kind = str(head["type"]).split(".")[-1]
    names = tuple(class_names)
    head_cfg: AnchorHeadConfig | CenterHeadConfig
    if kind == "Anchor3DHead":
        head_cfg = _anchor_head(head, test_cfg)
        names = _class_names(variables, class_names)
        if len(names) != head_cfg.num_classes:
            raise DetectError(
                f"model config names {len(names)} classes {list(names)} but bbox_head.num_classes = "
                f"{head_cfg.num_classes}"
            )
        arch = "pointpillars"
    else:
        head_cfg = _center_head(head, test_cfg)
        names = tuple(n for task in head_cfg.tasks for n in task)
        arch = "centerpoint"
    return ModelConfig(arch, voxel, encoder, backbone, neck, head_cfg, names, prefix, dict(extra or {}))


def _has_range_filter(variables: Mapping[str, Any]) -> bool:
    """Whether the config's test pipeline filters points by range (True when it names no pipeline)."""
    pipeline = variables.get("test_pipeline")
    loader = variables.get("test_dataloader")
    if pipeline is None and isinstance(loader, Mapping):
        pipeline = (loader.get("dataset") or {}).get("pipeline")
    if not isinstance(pipeline, list | tuple):
        return True

    def steps(items: Any) -> list[Any]:
        out = []
        for step in items if isinstance(items, list | tuple) else []:
            if isinstance(step, Mapping):
                out.append(step)
                out.extend(steps(step.get("transforms")))
        return out

    return any(str(s.get("type", "")).endswith("PointsRangeFilter") for s in steps(pipeline))


def _class_names(variables: Mapping[str, Any], fallback: Sequence[str]) -> tuple[str, ...]:
    names = variables.get("class_names")
    if names is None and isinstance(variables.get("metainfo"), Mapping):
        names = variables["metainfo"].get("classes")
    if names is None:
        names = fallback
    if not names:
        raise DetectError("model config names no classes (`class_names = [...]` or metainfo.classes)")
    return tuple(str(n) for n in names)


def _anchor_head(head: Mapping[str, Any], test_cfg: Mapping[str, Any]) -> AnchorHeadConfig:
    gen = head.get("anchor_generator") or {}
    _expect_type(gen, ["AlignedAnchor3DRangeGenerator"], "bbox_head.anchor_generator")
    if gen.get("custom_values"):
        raise DetectError("model config anchor_generator.custom_values are not supported")
    if gen.get("scales", [1]) != [1] and tuple(gen.get("scales", [1])) != (1,):
        raise DetectError("model config anchor_generator.scales other than [1] are not supported")
    loss_cls = head.get("loss_cls") or {}
    if not loss_cls.get("use_sigmoid", False):
        raise DetectError("model config bbox_head.loss_cls must use a sigmoid (use_sigmoid=True)")
    coder = head.get("bbox_coder") or {"type": "DeltaXYZWLHRBBoxCoder"}
    _expect_type(coder, ["DeltaXYZWLHRBBoxCoder"], "bbox_head.bbox_coder")
    if int(coder.get("code_size", 7)) != 7:
        raise DetectError("model config bbox_coder.code_size must be 7")
    sizes = tuple(_floats(s, 3, "anchor_generator.sizes") for s in gen.get("sizes", [[3.9, 1.6, 1.56]]))
    ranges = tuple(_floats(r, 6, "anchor_generator.ranges") for r in gen.get("ranges", []))
    if len(ranges) not in (1, len(sizes)) or not gen.get("size_per_range", True):
        raise DetectError("model config anchor_generator.ranges must be one range, or one per size")
    nms_pre = test_cfg.get("nms_pre", -1)
    return AnchorHeadConfig(
        num_classes=int(head["num_classes"]),
        in_channels=int(head.get("in_channels", 384)),
        feat_channels=int(head.get("feat_channels", head.get("in_channels", 384))),
        ranges=ranges,
        sizes=sizes,  # type: ignore[arg-type]
        rotations=_floats(gen.get("rotations", (0, 1.5707963)), None, "anchor_generator.rotations"),
        align_corner=bool(gen.get("align_corner", False)),
        use_direction_classifier=bool(head.get("use_direction_classifier", True)),
        dir_offset=float(head.get("dir_offset", -math.pi / 2)),
        dir_limit_offset=float(head.get("dir_limit_offset", 0)),
        use_rotate_nms=bool(test_cfg.get("use_rotate_nms", True)),
        nms_pre=int(nms_pre),
        nms_thr=float(test_cfg.get("nms_thr", 0.01)),
        score_thr=float(test_cfg.get("score_thr", 0.0)),
        max_num=int(test_cfg.get("max_num", 50)),
    )


def _center_head(head: Mapping[str, Any], test_cfg: Mapping[str, Any]) -> CenterHeadConfig:
    tasks = tuple(tuple(str(n) for n in t["class_names"]) for t in head.get("tasks", []))
    if not tasks:
        raise DetectError("model config bbox_head.tasks is empty")
    common = {str(k): (int(v[0]), int(v[1])) for k, v in (head.get("common_heads") or {}).items()}
    for needed in ("reg", "height", "dim", "rot"):
        if needed not in common:
            raise DetectError(f"model config bbox_head.common_heads lacks {needed!r}")
    coder = head.get("bbox_coder") or {}
    _expect_type(coder, ["CenterPointBBoxCoder"], "bbox_head.bbox_coder")
    sep = head.get("separate_head") or {}
    eps, mom = _norm(head, 1e-5, 0.1)
    if test_cfg.get("max_pool_nms", False):
        raise DetectError("model config test_cfg.max_pool_nms = True is not supported")
    nms_type = str(test_cfg.get("nms_type", "rotate"))
    if nms_type not in ("rotate", "circle"):
        raise DetectError(f"model config test_cfg.nms_type = {nms_type!r}; use 'rotate' or 'circle'")
    pcr = coder.get("post_center_range")
    thr = coder.get("score_threshold")
    return CenterHeadConfig(
        in_channels=int(
            sum(head["in_channels"]) if isinstance(head["in_channels"], list) else head["in_channels"]
        ),
        tasks=tasks,
        common_heads=MappingProxyType(common),
        share_conv_channel=int(head.get("share_conv_channel", 64)),
        head_conv=int(sep.get("head_conv", 64)),
        final_kernel=int(sep.get("final_kernel", 1)),
        num_heatmap_convs=int(head.get("num_heatmap_convs", 2)),
        init_bias=float(sep.get("init_bias", -2.19)),
        norm_bbox=bool(head.get("norm_bbox", True)),
        norm_eps=eps,
        norm_momentum=mom,
        out_size_factor=int(coder.get("out_size_factor", 4)),
        coder_voxel_size=_floats(coder.get("voxel_size", (0.2, 0.2)), None, "bbox_coder.voxel_size")[:2],  # type: ignore[arg-type]
        coder_pc_range=_floats(coder.get("pc_range", (-51.2, -51.2)), None, "bbox_coder.pc_range")[:2],  # type: ignore[arg-type]
        post_center_range=_floats(pcr, 6, "bbox_coder.post_center_range") if pcr is not None else None,
        max_num=int(coder.get("max_num", 100)),
        coder_score_threshold=float(thr) if thr is not None else None,
        nms_type=nms_type,
        nms_thr=float(test_cfg.get("nms_thr", 0.2)),
        pre_max_size=int(test_cfg.get("pre_max_size", 1000)),
        post_max_size=int(test_cfg.get("post_max_size", 83)),
        min_radius=_floats(test_cfg.get("min_radius", ()), None, "test_cfg.min_radius"),
        score_threshold=float(test_cfg.get("score_threshold", 0.1)),
        post_center_limit_range=_floats(
            test_cfg.get("post_center_limit_range", ()), None, "test_cfg.post_center_limit_range"
        ),
    )
