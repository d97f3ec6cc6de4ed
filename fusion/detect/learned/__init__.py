"""Learned LiDAR detectors in pure torch that load mmdetection3d 1.x checkpoints (no mmcv, no mmdet3d).

    PointPillars        PillarFeatureNet + PointPillarsScatter + SECOND + SECONDFPN + Anchor3DHead
    CenterPoint-pillar  the same encoder, backbone and neck + CenterHead (SeparateHead tasks)

`PillarDetector` (detector.py) runs either behind the `Detector` protocol; `config.py` reads the
mmdet3d config values that matter; `checkpoint.py` maps mmdet3d's state_dict keys; `ops.py` holds
voxelisation, anchors, box coding and NMS; `predict.py` mmdet3d's test-time decoding; `train.py`
the losses and targets used to train the small model shipped in data_samples/. Importing this
package imports torch.
"""

from fusion.detect.learned.config import (
    DEFAULT_CATEGORY_MAP,
    LearnedConfig,
    ModelConfig,
    load_config_file,
    model_config_from_mmdet3d,
)
from fusion.detect.learned.detector import PillarDetector, load_model

__all__ = [
    "DEFAULT_CATEGORY_MAP",
    "LearnedConfig",
    "ModelConfig",
    "PillarDetector",
    "load_config_file",
    "load_model",
    "model_config_from_mmdet3d",
]
