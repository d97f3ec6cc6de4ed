"""Evaluation of 3D labels against ground truth: rotated IoU, AP and accuracies, reports, converters.

    from fusion.evaluation import evaluate, format_table, load_labels

    result = evaluate(load_labels("out/"), load_labels("truth.labels.parquet"))
    print(format_table(result))
    json.dumps(result.to_json())

Tracking: `evaluate_tracking(pred, gt, TrackingConfig())`, `format_tracking_table(result)`.

Definitions are in `fusion.evaluation.metrics` and `fusion.evaluation.tracking`; dataset conventions
in `fusion.evaluation.converters`.
"""

from fusion.evaluation.converters import (
    AV2_CATEGORIES,
    KITTI_CATEGORIES,
    av2_annotations_labels,
    count_points_in_boxes,
    kitti_object_labels,
    kitti_rect_to_velodyne,
    kitti_tracking_labels,
    kitti_velodyne_to_rect,
)
from fusion.evaluation.errors import EvaluationError
from fusion.evaluation.io import load_labels
from fusion.evaluation.iou import bev_iou, iou_3d
from fusion.evaluation.metrics import (
    DEFAULT_IOU_THRESHOLDS,
    LEVELS,
    BoxMatching,
    CategoryMetrics,
    EvalConfig,
    EvalResult,
    SliceMetrics,
    average_precision,
    evaluate,
    match_boxes,
)
from fusion.evaluation.report import format_table
from fusion.evaluation.tracking import (
    ClearMetrics,
    TrackingConfig,
    TrackingMetrics,
    TrackingResult,
    evaluate_tracking,
    format_tracking_table,
    recall_thresholds,
)

__all__ = [
    "AV2_CATEGORIES",
    "DEFAULT_IOU_THRESHOLDS",
    "KITTI_CATEGORIES",
    "LEVELS",
    "BoxMatching",
    "CategoryMetrics",
    "ClearMetrics",
    "EvalConfig",
    "EvalResult",
    "EvaluationError",
    "SliceMetrics",
    "TrackingConfig",
    "TrackingMetrics",
    "TrackingResult",
    "av2_annotations_labels",
    "average_precision",
    "bev_iou",
    "count_points_in_boxes",
    "evaluate",
    "evaluate_tracking",
    "format_table",
    "format_tracking_table",
    "iou_3d",
    "kitti_object_labels",
    "kitti_rect_to_velodyne",
    "kitti_tracking_labels",
    "kitti_velodyne_to_rect",
    "load_labels",
    "match_boxes",
    "recall_thresholds",
]
