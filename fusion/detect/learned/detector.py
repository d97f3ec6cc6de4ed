"""`PillarDetector`: PointPillars or CenterPoint (pillar) from an mmdet3d checkpoint, in pure torch.

    from fusion.detect.learned import LearnedConfig, PillarDetector
    detector = PillarDetector(LearnedConfig(checkpoint=Path("pointpillars.pth"), model_config=Path("cfg.py")))
    boxes = detector.detect_batch(clouds)          # Boxes per sweep, the contract's convention

Per sweep: point features (x, y, z, intensity * scale, zeros for any further channel such as
nuScenes' time lag) -> hard voxelisation (numba) -> the network on `device` (CPU or CUDA, the same
code), `batch_size` sweeps at a time -> mmdet3d's decoding and NMS -> boxes moved from mmdet3d's
LiDAR convention (bottom-centre z) to ours (geometric centre, yaw wrapped), class names mapped to
the contract's categories (`DEFAULT_CATEGORY_MAP`; barriers and cones dropped) -> scores
calibrated per category when the checkpoint carries a calibration (`fusion.detect.calibration`,
meta["fusion_score_calibration"]; `LearnedConfig.score_calibration`), else the network's raw scores.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from fusion.boxes import Boxes
from fusion.decode.types import PointCloud
from fusion.detect.calibration import META_KEY, ScoreCalibration
from fusion.detect.errors import DetectError
from fusion.detect.learned.checkpoint import load_mmdet3d_state, read_checkpoint
from fusion.detect.learned.config import (
    AnchorHeadConfig,
    CenterHeadConfig,
    LearnedConfig,
    ModelConfig,
    config_from_text,
    load_config_file,
    model_config_from_mmdet3d,
)
from fusion.detect.learned.networks import PillarNet
from fusion.detect.learned.ops import aligned_anchors, batch_inputs, to_contract_boxes
from fusion.detect.learned.predict import RawDetections, anchor_predict, center_predict

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu. Raises DetectError for CUDA on a machine without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DetectError(f"unknown torch device {name!r}; use auto, cpu or cuda[:N]") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DetectError(f"device {name!r}: this torch has no CUDA device; use --device cpu")
    return device


def load_model(
    checkpoint: Path, model_config: Path | None = None
) -> tuple[PillarNet, ModelConfig, dict[str, Any]]:
    """The network with the checkpoint's weights, its ModelConfig and the checkpoint's meta (eval mode)."""
    state, meta = read_checkpoint(checkpoint)
    dataset_meta = meta.get("dataset_meta") or {}
    fallback_names = tuple(dataset_meta.get("classes", ())) if isinstance(dataset_meta, Mapping) else ()
    if model_config is not None:
        variables = load_config_file(model_config)
        source = str(model_config)
    elif isinstance(meta.get("fusion_model_config"), Mapping):
        variables = dict(meta["fusion_model_config"])
        source = f"{checkpoint} (its fusion_model_config)"
    elif isinstance(meta.get("cfg"), str):
        variables = config_from_text(meta["cfg"], f"{checkpoint}:meta.cfg")
        source = f"{checkpoint} (its meta.cfg)"
    else:
        raise DetectError(
            f"{checkpoint}: the checkpoint carries no model config; pass --model-config CFG "
            "(the mmdet3d config it was trained with)"
        )
    extra = variables.get("fusion") if isinstance(variables.get("fusion"), Mapping) else {}
    cfg = model_config_from_mmdet3d(variables, extra=extra, class_names=fallback_names)
    log.debug("model config from %s: %s", source, cfg)
    model = PillarNet(cfg)
    load_mmdet3d_state(model, state, cfg.key_prefix, str(checkpoint))
    model.eval()
    return model, cfg, meta


class PillarDetector:
    """PointPillars (`arch="pointpillars"`) or CenterPoint-pillar (`arch="centerpoint"`)."""

    def __init__(self, config: LearnedConfig | None = None, *, arch: str | None = None) -> None:
        if config is None:
            raise DetectError(
                f"the {arch or 'learned'} detector needs a checkpoint: --checkpoint CKPT [--model-config CFG]"
            )
        self.config = config
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        model, cfg, meta = load_model(config.checkpoint, config.model_config)
        if arch is not None and cfg.arch != arch:
            raise DetectError(
                f"{config.checkpoint}: the model config describes a {cfg.arch} model, not {arch}; "
                f"use --detector {cfg.arch}"
            )
        self.name = cfg.arch
        self.model_config = cfg
        self.model = model.to(self.device)
        scale = config.intensity_scale
        if scale is None:
            scale = float(cfg.extra.get("intensity_scale", 1.0))
        self.intensity_scale = scale
        self.batch_size = config.batch_size
        self._categories = [config.categories.get(n.lower(), "unknown") for n in cfg.class_names]
        self._anchors: torch.Tensor | None = None
        self.score_calibration = self._calibration(meta)

    @property
    def categories(self) -> tuple[str, ...]:
        """The contract categories this model reports (sorted)."""
        return tuple(sorted({c for c in self._categories if c}))

    def _calibration(self, meta: Mapping[str, Any]) -> ScoreCalibration | None:
        """The checkpoint's score calibration, or None (raw scores): see LearnedConfig.score_calibration."""
        source = str(self.config.checkpoint)
        if self.config.score_calibration == "raw" or META_KEY not in meta:
            log.info(
                "%s: raw scores (%s)",
                source,
                "as asked" if META_KEY in meta else "the checkpoint carries no score calibration",
            )
            return None
        calibration = ScoreCalibration.from_meta(meta[META_KEY], source)
        missing = sorted({c for c in self._categories if c and c not in calibration.weights})
        if missing:
            raise DetectError(
                f"{source}: its score calibration has no weights for {missing}; refit it "
                "(bench/calibrate_learned.py) or use raw scores (score_calibration='raw')"
            )
        log.info("%s: scores calibrated per category (%s)", source, calibration.fitted_on)
        return calibration

    # ---- the Detector protocol ----

    def detect(self, cloud: PointCloud) -> Boxes:
        """The boxes of one sweep, in the cloud's frame at its stamp."""
        return self.detect_batch([cloud])[0]

    def detect_batch(self, clouds: Sequence[PointCloud]) -> list[Boxes]:
        """Boxes of each cloud, in order; `batch_size` clouds per forward pass."""
        out: list[Boxes] = []
        for start in range(0, len(clouds), self.batch_size):
            chunk = clouds[start : start + self.batch_size]
            raw = self.predict_raw([self.point_features(c) for c in chunk])
            out.extend(self._to_boxes(c, r) for c, r in zip(chunk, raw, strict=True))
        return out

    # ---- the steps, public for tests and benches ----

    def point_features(self, cloud: PointCloud) -> npt.NDArray[np.float32]:
        """(N, C) float32: x, y, z, intensity * scale (0 without intensity), zeros for further channels."""
        xyz = cloud.xyz
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise DetectError(
                f"a point cloud's xyz must be (N, 3), got {xyz.shape} (frame {cloud.frame_id!r})"
            )
        channels = self.model_config.encoder.in_channels
        feats = np.zeros((xyz.shape[0], max(channels, 3)), np.float32)
        feats[:, :3] = xyz
        if channels > 3 and cloud.intensity is not None:
            feats[:, 3] = cloud.intensity * np.float32(self.intensity_scale)
        return feats[:, :channels] if channels >= 3 else feats

    def predict_raw(self, points: Sequence[npt.NDArray[np.float32]]) -> list[RawDetections]:
        """Point features per sweep (N, C) -> mmdet3d-convention detections per sweep."""
        voxels, counts, coors = batch_inputs(points, self.model_config)
        dev = self.device
        with torch.inference_mode():
            out = self.model(voxels.to(dev), counts.to(dev), coors.to(dev), len(points))
            head = self.model_config.head
            if isinstance(head, AnchorHeadConfig) and isinstance(out, tuple):
                cls, reg, direction = out
                return anchor_predict(head, cls, reg, direction, self.anchors((cls.shape[-2], cls.shape[-1])))
            if isinstance(head, CenterHeadConfig) and isinstance(out, list):
                return center_predict(head, out)
            raise DetectError(f"the network's outputs do not fit its head {type(head).__name__}")

    def anchors(self, feature_size: tuple[int, int]) -> torch.Tensor:
        """The head's anchors for a (ny, nx) feature map, on the device (computed once)."""
        head = self.model_config.head
        if not isinstance(head, AnchorHeadConfig):
            raise DetectError("anchors exist only for an anchor head (PointPillars)")
        if self._anchors is None:
            self._anchors = aligned_anchors(
                feature_size, head.ranges, head.sizes, head.rotations, head.align_corner, self.device
            )
        return self._anchors

    def _to_boxes(self, cloud: PointCloud, raw: RawDetections) -> Boxes:
        from fusion.evaluation.converters import count_points_in_boxes

        cats = np.array([self._categories[int(k)] or "" for k in raw.labels], dtype="<U10")
        scores = raw.scores
        if self.score_calibration is not None and len(scores):
            known = cats != ""
            scores = raw.scores.astype(np.float32, copy=True)
            scores[known] = self.score_calibration.apply(raw.scores[known], cats[known])
        keep = (cats != "") & (scores >= self.config.min_score)
        boxes = to_contract_boxes(raw.boxes[keep])
        if not keep.any():
            return Boxes.empty(cloud.frame_id, cloud.stamp_ns)
        counts = count_points_in_boxes(cloud.xyz, boxes)
        return Boxes.build(
            boxes,
            cats[keep],
            scores[keep],
            counts,
            frame_id=cloud.frame_id,
            stamp_ns=cloud.stamp_ns,
        )
