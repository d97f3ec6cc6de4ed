"""Training PointPillars as mmdetection3d trains it, small enough for a CPU: targets, losses, one step.

Targets follow mmdet3d's Anchor3DHead with `assign_per_class=True`: the anchors of class c's size
are matched to class c's boxes by the IoU of their nearest axis-aligned BEV rectangles
(`BboxOverlapsNearest3D`); an anchor is positive at IoU >= pos_iou, negative below neg_iou, and each
box's best anchors are positive too. Losses: sigmoid focal loss (alpha 0.25, gamma 2) over all
anchors, smooth L1 (beta 1/9, weight 2) on the deltas with the yaw difference as a sine, and cross
entropy (weight 0.2) on the direction bin, normalised by the positives.

`small_pointpillars_variables` is the mmdet3d config (as variables) of the model shipped in
data_samples/; `train_step` runs one optimiser step on a batch of (points, boxes, labels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from numba import njit
from torch import Tensor
from torch.nn import functional as nnf

from fusion.detect.learned.config import AnchorHeadConfig
from fusion.detect.learned.networks import PillarNet
from fusion.detect.learned.ops import aligned_anchors, batch_inputs, encode_deltas, limit_period

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def small_pointpillars_variables(
    class_names: Sequence[str],
    sizes: Sequence[Sequence[float]],
    *,
    anchor_z: float = -1.95,
    half_range: float = 51.2,
    voxel: float = 0.4,
    z_range: tuple[float, float] = (-3.5, 2.5),
    intensity_scale: float = 1.0 / 255.0,
) -> dict[str, Any]:
    """An mmdet3d 1.x PointPillars config (its variables) at reduced width for a CPU.

    sizes: per class (x_size, y_size, z_size) of its anchor; anchor_z: the anchors' bottom (lidar frame).
    """
    pcr = [-half_range, -half_range, z_range[0], half_range, half_range, z_range[1]]
    n = round(2 * half_range / voxel)
    rng = [-half_range, -half_range, anchor_z, half_range, half_range, anchor_z]
    return {
        "class_names": list(class_names),
        "point_cloud_range": pcr,
        "voxel_size": [voxel, voxel, z_range[1] - z_range[0]],
        "fusion": {"intensity_scale": intensity_scale},
        "model": {
            "type": "VoxelNet",
            "data_preprocessor": {
                "type": "Det3DDataPreprocessor",
                "voxel": True,
                "voxel_layer": {
                    "max_num_points": 20,
                    "point_cloud_range": pcr,
                    "voxel_size": [voxel, voxel, z_range[1] - z_range[0]],
                    "max_voxels": [16000, 16000],
                },
            },
            "voxel_encoder": {
                "type": "PillarFeatureNet",
                "in_channels": 4,
                "feat_channels": [16],
                "with_distance": False,
                "voxel_size": [voxel, voxel, z_range[1] - z_range[0]],
                "point_cloud_range": pcr,
            },
            "middle_encoder": {"type": "PointPillarsScatter", "in_channels": 16, "output_shape": [n, n]},
            "backbone": {
                "type": "SECOND",
                "in_channels": 16,
                "layer_nums": [1, 1, 1],
                "layer_strides": [2, 2, 2],
                "out_channels": [24, 48, 64],
            },
            "neck": {
                "type": "SECONDFPN",
                "in_channels": [24, 48, 64],
                "upsample_strides": [1, 2, 4],
                "out_channels": [24, 24, 24],
            },
            "bbox_head": {
                "type": "Anchor3DHead",
                "num_classes": len(class_names),
                "in_channels": 72,
                "feat_channels": 72,
                "use_direction_classifier": True,
                "assign_per_class": True,
                "anchor_generator": {
                    "type": "AlignedAnchor3DRangeGenerator",
                    "ranges": [rng],
                    "sizes": [list(map(float, s)) for s in sizes],
                    "rotations": [0, 1.57],
                    "reshape_out": False,
                },
                "diff_rad_by_sin": True,
                "bbox_coder": {"type": "DeltaXYZWLHRBBoxCoder"},
                "loss_cls": {"type": "mmdet.FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25},
                "loss_bbox": {"type": "mmdet.SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 2.0},
                "loss_dir": {"type": "mmdet.CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 0.2},
            },
            "test_cfg": {
                "use_rotate_nms": True,
                "nms_across_levels": False,
                "nms_thr": 0.01,
                "score_thr": 0.1,
                "min_bbox_size": 0,
                "nms_pre": 200,
                "max_num": 100,
            },
        },
    }


@dataclass(frozen=True)
class AssignConfig:
    """Per-class IoU thresholds of the anchor assigner."""

    pos_iou: tuple[float, ...]  # per class
    neg_iou: tuple[float, ...]  # per class


def nearest_bev(boxes: Tensor) -> Tensor:
    """(N, 7) boxes -> (N, 4) x1 y1 x2 y2 of the nearest axis-aligned rectangle (mmdet3d's rule)."""
    rot = limit_period(boxes[:, 6], 0.5, math.pi).abs()
    swap = rot > math.pi / 4
    dx = torch.where(swap, boxes[:, 4], boxes[:, 3])
    dy = torch.where(swap, boxes[:, 3], boxes[:, 4])
    return torch.stack(
        [boxes[:, 0] - dx / 2, boxes[:, 1] - dy / 2, boxes[:, 0] + dx / 2, boxes[:, 1] + dy / 2], dim=1
    )


def aligned_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU (N, M) of axis-aligned rectangles a (N, 4), b (M, 4)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)


def anchor_targets(
    head: AnchorHeadConfig,
    anchors: Tensor,
    gt: Tensor,
    gt_labels: Tensor,
    assign: AssignConfig,
    anchor_bev: F64 | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Targets of one sweep. anchors (H*W*S*R, 7) (size s serves class s); gt (G, 7) mmdet3d boxes;
    anchor_bev: `nearest_bev(anchors)` as float64 numpy, when already known.

    Returns labels (A,) long (class, or -1 negative, -2 ignored), the positives' indices (P,), their
    deltas (P, 7) and direction bins (P,) long. IoU: nearest axis-aligned BEV rectangles, computed
    only for the anchors around each box (numba).
    """
    num_sizes, num_rot = len(head.sizes), len(head.rotations)
    a_bev = anchor_bev if anchor_bev is not None else nearest_bev(anchors).numpy().astype(np.float64)
    g_bev = nearest_bev(gt).numpy().astype(np.float64) if gt.shape[0] else np.zeros((0, 4))
    labels_np, arg = _assign(
        a_bev,
        g_bev,
        gt_labels.numpy().astype(np.int64),
        num_sizes,
        num_rot,
        np.asarray(assign.pos_iou, np.float64),
        np.asarray(assign.neg_iou, np.float64),
    )
    labels = torch.from_numpy(labels_np)
    pos = np.flatnonzero(labels_np >= 0)
    index = torch.from_numpy(pos)
    matched = gt[torch.from_numpy(arg[pos])] if pos.size else anchors[:0]
    deltas = encode_deltas(anchors[index], matched)
    offset_rot = limit_period(matched[:, 6] - head.dir_offset, head.dir_limit_offset, 2 * math.pi)
    direction = torch.floor(offset_rot / math.pi).long().clamp(0, 1)
    return labels, index, deltas, direction


@njit(cache=True)
def _near_anchors(
    anchors: F64,
    box: F64,
    c: int,
    grid: tuple[float, float, float, float, float],
    nx: int,
    ny: int,
    per_cell: int,
    num_rot: int,
) -> tuple[npt.NDArray[np.int64], F64]:
    """The anchors of class `c` in the cells a box (x1, y1, x2, y2) can reach that overlap it, and their
    BEV IoUs. grid: first cell centre x, y, cell steps x, y, and the largest anchor extent."""
    cx0, cy0, step_x, step_y, reach = grid
    x1, y1, x2, y2 = box[0], box[1], box[2], box[3]
    area_g = (x2 - x1) * (y2 - y1)
    ix0 = max(math.floor((x1 - reach - cx0) / step_x), 0)
    ix1 = min(math.ceil((x2 + reach - cx0) / step_x), nx - 1)
    iy0 = max(math.floor((y1 - reach - cy0) / step_y), 0)
    iy1 = min(math.ceil((y2 + reach - cy0) / step_y), ny - 1)
    cap = max(ix1 - ix0 + 1, 0) * max(iy1 - iy0 + 1, 0) * num_rot
    near = np.empty(cap, np.int64)
    ious = np.empty(cap)
    n = 0
    for iy in range(iy0, iy1 + 1):
        for ix in range(ix0, ix1 + 1):
            for r in range(num_rot):
                a = (iy * nx + ix) * per_cell + c * num_rot + r
                w = min(x2, anchors[a, 2]) - max(x1, anchors[a, 0])
                h = min(y2, anchors[a, 3]) - max(y1, anchors[a, 1])
                if w <= 0.0 or h <= 0.0:
                    continue
                inter = w * h
                area_a = (anchors[a, 2] - anchors[a, 0]) * (anchors[a, 3] - anchors[a, 1])
                near[n] = a
                ious[n] = inter / (area_a + area_g - inter)
                n += 1
    return near[:n], ious[:n]


@njit(cache=True)
def _assign(
    anchors: F64,
    boxes: F64,
    box_labels: npt.NDArray[np.int64],
    num_sizes: int,
    num_rot: int,
    pos_iou: F64,
    neg_iou: F64,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    n = anchors.shape[0]
    best = np.zeros(n)
    arg = np.full(n, -1, np.int64)
    g_best = np.zeros(boxes.shape[0])
    # anchors of one size lie on a regular grid: cell index = a // (sizes * rotations)
    per_cell = num_sizes * num_rot
    cells = n // per_cell
    # the grid's extent, from the anchors themselves (row-major cells: y then x)
    cx0 = 0.5 * (anchors[0, 0] + anchors[0, 2])
    cy0 = 0.5 * (anchors[0, 1] + anchors[0, 3])
    nx = 1
    while nx < cells and abs(0.5 * (anchors[nx * per_cell, 1] + anchors[nx * per_cell, 3]) - cy0) < 1e-6:
        nx += 1
    ny = cells // nx
    step_x = 0.5 * (anchors[per_cell, 0] + anchors[per_cell, 2]) - cx0 if nx > 1 else 1.0
    step_y = 0.5 * (anchors[nx * per_cell, 1] + anchors[nx * per_cell, 3]) - cy0 if ny > 1 else 1.0
    reach = 0.0
    for a in range(per_cell):
        reach = max(reach, anchors[a, 2] - anchors[a, 0], anchors[a, 3] - anchors[a, 1])
    grid = (cx0, cy0, step_x, step_y, reach)
    for g in range(boxes.shape[0]):
        near, ious = _near_anchors(anchors, boxes[g], box_labels[g], grid, nx, ny, per_cell, num_rot)
        for k in range(near.shape[0]):
            a = near[k]
            if ious[k] > best[a]:
                best[a] = ious[k]
                arg[a] = g
            g_best[g] = max(g_best[g], ious[k])
    labels = np.full(n, -1, np.int64)
    for a in range(n):
        if arg[a] < 0:
            continue
        c = box_labels[arg[a]]
        if best[a] >= pos_iou[c]:
            labels[a] = c
        elif best[a] >= neg_iou[c]:
            labels[a] = -2
    # each box's best anchors are positive too (MaxIoUAssigner's gt_max_assign_all)
    for g in range(boxes.shape[0]):
        if g_best[g] <= 0.0:
            continue
        near, ious = _near_anchors(anchors, boxes[g], box_labels[g], grid, nx, ny, per_cell, num_rot)
        for k in range(near.shape[0]):
            if ious[k] >= g_best[g]:
                labels[near[k]] = box_labels[g]
                arg[near[k]] = g
    return labels, arg


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, weight: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Summed sigmoid focal loss (mmdet's FocalLoss) of logits and one-hot targets of the same shape,
    each anchor weighted by `weight` (0: ignored)."""
    p = logits.sigmoid()
    ce = nnf.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    pt = p * targets + (1 - p) * (1 - targets)
    w = (alpha * targets + (1 - alpha) * (1 - targets)) * (1 - pt).pow(gamma)
    return (w * ce * weight).sum()


def smooth_l1(pred: Tensor, target: Tensor, beta: float = 1.0 / 9.0) -> Tensor:
    diff = (pred - target).abs()
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta).sum()


def train_loss(
    model: PillarNet,
    points: Sequence[F32],
    boxes: Sequence[F64],
    labels: Sequence[npt.NDArray[np.int64]],
    assign: AssignConfig,
    anchors_cache: dict[tuple[int, int], tuple[Tensor, F64]],
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one batch. boxes: per sweep (G, 7) mmdet3d LiDAR boxes (bottom z); labels (G,)."""
    head = model.cfg.head
    if not isinstance(head, AnchorHeadConfig):
        raise TypeError("train_loss trains an anchor head (PointPillars)")
    voxels, counts, coors = batch_inputs(points, model.cfg)
    cls, reg, direction = model(voxels, counts, coors, len(points))
    size = (int(cls.shape[-2]), int(cls.shape[-1]))
    if size not in anchors_cache:
        a = aligned_anchors(size, head.ranges, head.sizes, head.rotations)
        anchors_cache[size] = (a, nearest_bev(a).numpy().astype(np.float64))
    anchors, anchor_bev = anchors_cache[size]
    k = head.num_classes
    loss_cls = cls.new_zeros(())
    loss_box = cls.new_zeros(())
    loss_dir = cls.new_zeros(())
    num_pos = 0
    for b in range(len(points)):
        gt = torch.from_numpy(boxes[b]).float()
        lab, pos, deltas, dir_t = anchor_targets(
            head, anchors, gt, torch.from_numpy(labels[b]), assign, anchor_bev
        )
        logits = cls[b].permute(1, 2, 0).reshape(-1, k)
        weight = (lab != -2).float()[:, None]
        onehot = torch.zeros_like(logits)
        onehot[pos, lab[pos]] = 1.0
        loss_cls = loss_cls + sigmoid_focal_loss(logits, onehot, weight)
        if pos.numel():
            p = reg[b].permute(1, 2, 0).reshape(-1, 7)[pos]
            t = deltas
            p_sin = torch.sin(p[:, 6:7]) * torch.cos(t[:, 6:7])
            t_sin = torch.cos(p[:, 6:7]) * torch.sin(t[:, 6:7])
            loss_box = loss_box + smooth_l1(torch.cat([p[:, :6], p_sin], 1), torch.cat([t[:, :6], t_sin], 1))
            dirs = direction[b].permute(1, 2, 0).reshape(-1, 2)[pos]
            loss_dir = loss_dir + nnf.cross_entropy(dirs, dir_t, reduction="sum")
        num_pos += int(pos.numel())
    norm = max(num_pos, 1)
    total = (loss_cls + 2.0 * loss_box + 0.2 * loss_dir) / norm
    return total, {
        "cls": float(loss_cls.detach()) / norm,
        "box": float(loss_box.detach()) / norm,
        "dir": float(loss_dir.detach()) / norm,
        "pos": float(num_pos),
    }
