"""`Mmdet3dDetector`: any mmdetection3d LiDAR model, run by mmdet3d itself (`mmdet3d.apis`).

mmdet3d is optional and heavy (mmcv's compiled ops, numpy<2): it lives in its own environment
(`make mmdet3d-env`). When it cannot be imported, building this detector fails with one line that
says how to install it, and that `--detector pointpillars|centerpoint` runs those two architectures
from the same checkpoints without it.

Boxes come back as mmdet3d's `LiDARInstance3DBoxes` (bottom-centre z, yaw about +z from +x in
mmdet3d >= 1.0) and are converted to the contract's convention like the pure-torch detectors' boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fusion.boxes import Boxes
from fusion.decode.types import PointCloud
from fusion.detect.errors import DetectError

INSTALL_HINT = (
    "mmdetection3d is not installed in this environment; install it with `make mmdet3d-env` "
    "(its own virtualenv: mmcv's compiled ops and numpy<2), or run PointPillars / CenterPoint "
    "checkpoints without it: --detector pointpillars|centerpoint --checkpoint CKPT --model-config CFG"
)


class Mmdet3dDetector:
    """An mmdet3d model from its config and checkpoint (a `LearnedConfig`), through mmdet3d.apis."""

    name = "mmdet3d"

    def __init__(self, config: Any = None) -> None:
        if config is None or getattr(config, "model_config", None) is None:
            raise DetectError("--detector mmdet3d needs --model-config CFG and --checkpoint CKPT")
        try:
            from mmdet3d.apis import inference_detector, init_model
        except ImportError as err:
            raise DetectError(f"--detector mmdet3d: {INSTALL_HINT} ({err})") from err
        from fusion.detect.learned.config import DEFAULT_CATEGORY_MAP
        from fusion.detect.learned.detector import resolve_device

        self.config = config
        self.batch_size = int(config.batch_size)
        device = resolve_device(config.device)
        self._inference = inference_detector
        self.model = init_model(str(config.model_config), str(config.checkpoint), device=str(device))
        meta = getattr(self.model, "dataset_meta", None) or {}
        names = list(meta.get("classes", []))
        if not names:
            raise DetectError(f"{config.checkpoint}: the model names no classes (dataset_meta.classes)")
        categories: Mapping[str, str | None] = getattr(config, "categories", DEFAULT_CATEGORY_MAP)
        self._categories = [categories.get(str(n).lower(), "unknown") for n in names]
        self._load_dim = _load_dim(self.model.cfg)
        scale = getattr(config, "intensity_scale", None)
        self.intensity_scale = 1.0 if scale is None else float(scale)

    def point_features(self, cloud: PointCloud) -> npt.NDArray[np.float32]:
        """(N, load_dim) float32: x, y, z, intensity * scale, zeros for further channels."""
        feats = np.zeros((len(cloud), max(self._load_dim, 3)), np.float32)
        feats[:, :3] = cloud.xyz
        if self._load_dim > 3 and cloud.intensity is not None:
            feats[:, 3] = cloud.intensity * np.float32(self.intensity_scale)
        return feats

    def detect(self, cloud: PointCloud) -> Boxes:
        return self.detect_batch([cloud])[0]

    def detect_batch(self, clouds: Sequence[PointCloud]) -> list[Boxes]:
        from fusion.detect.learned.ops import to_contract_boxes
        from fusion.evaluation.converters import count_points_in_boxes

        out: list[Boxes] = []
        for start in range(0, len(clouds), self.batch_size):
            chunk = list(clouds[start : start + self.batch_size])
            # mmdet3d 1.x returns (results, data): a list of Det3DDataSample for a list of inputs
            results = self._inference(self.model, [self.point_features(c) for c in chunk])[0]
            if not isinstance(results, list | tuple):
                results = [results]
            for cloud, result in zip(chunk, results, strict=True):
                pred = result.pred_instances_3d
                raw = pred.bboxes_3d.tensor[:, :7].detach().cpu().numpy()
                scores = pred.scores_3d.detach().cpu().numpy().astype(np.float32)
                labels = pred.labels_3d.detach().cpu().numpy().astype(np.int64)
                cats = np.array([self._categories[int(k)] or "" for k in labels], dtype="<U10")
                keep = (cats != "") & (scores >= getattr(self.config, "min_score", 0.0))
                boxes = to_contract_boxes(raw[keep])
                counts = count_points_in_boxes(cloud.xyz, boxes)
                out.append(
                    Boxes.build(
                        boxes,
                        cats[keep],
                        scores[keep],
                        counts,
                        frame_id=cloud.frame_id,
                        stamp_ns=cloud.stamp_ns,
                    )
                )
        return out


def _load_dim(cfg: Any) -> int:
    """Point channels the model's test pipeline loads (LoadPointsFromFile.load_dim / use_dim), default 4."""
    try:
        pipeline = cfg.test_dataloader.dataset.pipeline
        first = pipeline[0]
        use = first.get("use_dim", first.get("load_dim", 4))
        return len(use) if isinstance(use, list | tuple) else int(use)
    except (AttributeError, KeyError, IndexError, TypeError):
        return 4
