"""Training targets: the windowed numba anchor assigner against a brute-force assignment over every anchor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fusion.detect.learned import load_config_file, model_config_from_mmdet3d
from fusion.detect.learned.config import AnchorHeadConfig
from fusion.detect.learned.ops import aligned_anchors, encode_deltas
from fusion.detect.learned.train import AssignConfig, aligned_iou, anchor_targets, nearest_bev

CONFIGS = Path(__file__).parent / "configs"


def _brute_force_labels(
    anchors: torch.Tensor,
    gt: torch.Tensor,
    labels: np.ndarray,
    per_cell: int,
    num_rot: int,
    assign: AssignConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and matched box per anchor: mmdet3d's per-class MaxIoUAssigner on nearest-BEV
    rectangles, over all anchors at once: an anchor of
    size s serves class s; best box (first on ties) >= pos -> class, >= neg -> ignored (-2), else -1;
    then every anchor reaching a box's best IoU is positive for it (gt_max_assign_all)."""
    iou = aligned_iou(nearest_bev(anchors).double(), nearest_bev(gt).double()).numpy()
    anchor_class = (np.arange(len(anchors)) % per_cell) // num_rot
    iou[anchor_class[:, None] != labels[None, :]] = 0.0
    out = np.full(len(anchors), -1, np.int64)
    best = iou.max(axis=1) if len(gt) else np.zeros(len(anchors))
    arg = iou.argmax(axis=1) if len(gt) else np.zeros(len(anchors), np.int64)
    for a in np.flatnonzero(best > 0):
        c = labels[arg[a]]
        if best[a] >= assign.pos_iou[c]:
            out[a] = c
        elif best[a] >= assign.neg_iou[c]:
            out[a] = -2
    matched = arg.copy()
    for g in range(len(gt)):
        g_best = iou[:, g].max()
        if g_best > 0:
            best_of_g = (iou[:, g] >= g_best) & (iou[:, g] > 0)
            out[best_of_g] = labels[g]
            matched[best_of_g] = g  # a later box's best anchors are its own
    return out, matched


def test_windowed_anchor_assignment_equals_the_brute_force_one() -> None:
    cfg = model_config_from_mmdet3d(load_config_file(CONFIGS / "pointpillars_small.py"))
    head = cfg.head
    assert isinstance(head, AnchorHeadConfig)
    anchors = aligned_anchors((24, 20), head.ranges, head.sizes, head.rotations, head.align_corner)
    num_rot, per_cell = len(head.rotations), len(head.sizes) * len(head.rotations)
    assign = AssignConfig(pos_iou=(0.5, 0.5, 0.6), neg_iou=(0.35, 0.35, 0.45))
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(6):
        g = int(rng.integers(1, 12))
        labels = rng.integers(0, len(head.sizes), g)
        sizes = np.array(head.sizes)[labels] * rng.uniform(0.8, 1.3, (g, 3))
        centre = np.column_stack([rng.uniform(2, 66, g), rng.uniform(-38, 38, g), rng.uniform(-2, 0, g)])
        yaw = rng.uniform(-np.pi, np.pi, g)
        gt = torch.from_numpy(np.column_stack([centre, sizes, yaw])).float()
        got, index, deltas, _ = anchor_targets(head, anchors, gt, torch.from_numpy(labels), assign)
        want, matched = _brute_force_labels(anchors, gt, labels, per_cell, num_rot, assign)
        np.testing.assert_array_equal(got.numpy(), want)
        np.testing.assert_array_equal(index.numpy(), np.flatnonzero(want >= 0))
        expected = encode_deltas(anchors[index], gt[torch.from_numpy(matched[index.numpy()])])
        torch.testing.assert_close(deltas, expected)
        checked += int((want >= 0).sum())
    assert checked > 20  # positives were exercised, not only negatives
