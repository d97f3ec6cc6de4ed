"""From head outputs to boxes, as mmdetection3d 1.x's test path does it.

`anchor_predict`: Anchor3DHead.predict_by_feat (top `nms_pre` anchors by best class score, delta
decoding, per-class rotated NMS above `score_thr`, the best `max_num`, the direction classifier's
flip). `center_predict`: CenterHead.predict_by_feat with CenterPointBBoxCoder (top-K peaks over
all classes of a task, offsets, exp sizes, atan2 yaw, centre-range and score masks, rotated or
circle NMS per task, labels offset by task). Both return per sweep mmdet3d LiDAR boxes (K, 7), or
(K, 9) with a velocity head, with bottom-centre z, scores (K,) and labels (K,) as numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from fusion.detect.learned.config import AnchorHeadConfig, CenterHeadConfig
from fusion.detect.learned.ops import (
    circle_nms,
    decode_deltas,
    descending_order,
    limit_period,
    nms_bev,
    nms_normal_bev,
)


@dataclass(frozen=True, eq=False)
class RawDetections:
    """One sweep's detections in mmdet3d's LiDAR box convention.

    boxes: (K, 7) float64 x, y, z_bottom, x_size, y_size, z_size, yaw; (K, 9) with CenterPoint's
        velocity head: + vx, vy (m/s, the sensor frame).
    scores: (K,) float32.  labels: (K,) int64 index into the model's class names.
    """

    boxes: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]


def _np(t: Tensor) -> npt.NDArray[np.float64]:
    return t.detach().to("cpu", torch.float64).numpy()


def anchor_predict(
    cfg: AnchorHeadConfig, cls: Tensor, reg: Tensor, direction: Tensor | None, anchors: Tensor
) -> list[RawDetections]:
    """cls (B, A*K, H, W), reg (B, A*7, H, W), direction (B, A*2, H, W), anchors (H*W*A, 7)."""
    out = []
    for b in range(cls.shape[0]):
        scores = cls[b].permute(1, 2, 0).reshape(-1, cfg.num_classes).sigmoid()
        deltas = reg[b].permute(1, 2, 0).reshape(-1, cfg.box_code_size)
        dir_cls = (
            torch.max(direction[b].permute(1, 2, 0).reshape(-1, 2), dim=-1)[1]
            if direction is not None
            else torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        )
        priors = anchors
        if 0 < cfg.nms_pre < scores.shape[0]:
            _, top = scores.max(dim=1)[0].topk(cfg.nms_pre)
            priors, deltas, scores, dir_cls = priors[top], deltas[top], scores[top], dir_cls[top]
        boxes = _np(decode_deltas(priors, deltas))
        s = _np(scores)
        d = dir_cls.cpu().numpy()
        bev = boxes[:, [0, 1, 3, 4, 6]]
        keep_boxes, keep_scores, keep_labels, keep_dirs = [], [], [], []
        for c in range(cfg.num_classes):
            idx = np.flatnonzero(s[:, c] > cfg.score_thr)
            if idx.size == 0:
                continue
            nms = nms_bev if cfg.use_rotate_nms else nms_normal_bev
            sel = idx[nms(bev[idx], s[idx, c], cfg.nms_thr)]
            keep_boxes.append(boxes[sel])
            keep_scores.append(s[sel, c])
            keep_labels.append(np.full(sel.size, c, np.int64))
            keep_dirs.append(d[sel])
        if not keep_boxes:
            out.append(RawDetections(np.zeros((0, 7)), np.zeros(0, np.float32), np.zeros(0, np.int64)))
            continue
        bx = np.concatenate(keep_boxes)
        sc = np.concatenate(keep_scores)
        lb = np.concatenate(keep_labels)
        dr = np.concatenate(keep_dirs)
        if bx.shape[0] > cfg.max_num:
            order = descending_order(sc)[: cfg.max_num]
            bx, sc, lb, dr = bx[order], sc[order], lb[order], dr[order]
        if direction is not None:
            yaw = torch.from_numpy(bx[:, 6])
            rot = limit_period(yaw - cfg.dir_offset, cfg.dir_limit_offset, math.pi)
            bx[:, 6] = (rot + cfg.dir_offset + math.pi * torch.from_numpy(dr).to(yaw.dtype)).numpy()
        out.append(RawDetections(bx, sc.astype(np.float32), lb))
    return out


def _gather(feat: Tensor, ind: Tensor) -> Tensor:
    """feat (B, N, C), ind (B, K) -> (B, K, C)."""
    return feat.gather(1, ind.unsqueeze(2).expand(ind.size(0), ind.size(1), feat.size(2)))


def _transpose_and_gather(feat: Tensor, ind: Tensor) -> Tensor:
    """feat (B, C, H, W), ind (B, K) -> (B, K, C)."""
    f = feat.permute(0, 2, 3, 1).contiguous()
    return _gather(f.view(f.size(0), -1, f.size(3)), ind)


def _topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    batch, cat, height, width = scores.size()
    topk_scores, topk_inds = torch.topk(scores.view(batch, cat, -1), k)
    topk_inds = topk_inds % (height * width)
    topk_ys = (topk_inds.float() / torch.tensor(width, dtype=torch.float)).int().float()
    topk_xs = (topk_inds % width).int().float()
    topk_score, topk_ind = torch.topk(topk_scores.view(batch, -1), k)
    topk_clses = (topk_ind / torch.tensor(k, dtype=torch.float)).int()
    topk_inds = _gather(topk_inds.view(batch, -1, 1), topk_ind).view(batch, k)
    topk_ys = _gather(topk_ys.view(batch, -1, 1), topk_ind).view(batch, k)
    topk_xs = _gather(topk_xs.view(batch, -1, 1), topk_ind).view(batch, k)
    return topk_score, topk_inds, topk_clses, topk_ys, topk_xs


def _decode_task(cfg: CenterHeadConfig, pred: dict[str, Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """CenterPointBBoxCoder.decode of one task: per sweep (boxes (K, 7|9) centre z, scores, labels)."""
    heat = pred["heatmap"].sigmoid()
    dim = torch.exp(pred["dim"]) if cfg.norm_bbox else pred["dim"]
    batch = heat.shape[0]
    k = cfg.max_num
    scores, inds, clses, ys, xs = _topk(heat, k)
    reg = _transpose_and_gather(pred["reg"], inds).view(batch, k, 2)
    xs = xs.view(batch, k, 1) + reg[:, :, 0:1]
    ys = ys.view(batch, k, 1) + reg[:, :, 1:2]
    rot_sine = _transpose_and_gather(pred["rot"][:, 0:1], inds).view(batch, k, 1)
    rot_cosine = _transpose_and_gather(pred["rot"][:, 1:2], inds).view(batch, k, 1)
    rot = torch.atan2(rot_sine, rot_cosine)
    hei = _transpose_and_gather(pred["height"], inds).view(batch, k, 1)
    dims = _transpose_and_gather(dim, inds).view(batch, k, 3)
    clses_f = clses.view(batch, k).float()
    scores = scores.view(batch, k)
    xs = xs.view(batch, k, 1) * cfg.out_size_factor * cfg.coder_voxel_size[0] + cfg.coder_pc_range[0]
    ys = ys.view(batch, k, 1) * cfg.out_size_factor * cfg.coder_voxel_size[1] + cfg.coder_pc_range[1]
    parts = [xs, ys, hei, dims, rot]
    if "vel" in pred:
        parts.append(_transpose_and_gather(pred["vel"], inds).view(batch, k, 2))
    boxes = torch.cat(parts, dim=2)
    if cfg.post_center_range is None:
        mask = torch.ones(batch, k, dtype=torch.bool, device=boxes.device)
    else:
        pcr = torch.tensor(cfg.post_center_range, device=heat.device)
        mask = (boxes[..., :3] >= pcr[:3]).all(2) & (boxes[..., :3] <= pcr[3:]).all(2)
    if cfg.coder_score_threshold:
        mask = mask & (scores > cfg.coder_score_threshold)
    return [(boxes[i, mask[i]], scores[i, mask[i]], clses_f[i, mask[i]]) for i in range(batch)]


def center_predict(cfg: CenterHeadConfig, preds: list[dict[str, Tensor]]) -> list[RawDetections]:
    """CenterHead outputs (one dict per task, tensors (B, C, H, W)) -> detections per sweep."""
    per_task = [_decode_task(cfg, pred) for pred in preds]
    batch = preds[0]["heatmap"].shape[0]
    out = []
    for b in range(batch):
        boxes_all, scores_all, labels_all = [], [], []
        offset = 0
        for t, task in enumerate(per_task):
            boxes_t, scores_t, labels_t = task[b]
            boxes = _np(boxes_t)
            scores = scores_t.detach().cpu().numpy().astype(np.float64)
            labels = labels_t.detach().cpu().numpy().astype(np.int64)
            if cfg.nms_type == "circle":
                dets = np.concatenate([boxes[:, :2], scores[:, None]], axis=1)
                keep = circle_nms(np.ascontiguousarray(dets), float(cfg.min_radius[t]), cfg.post_max_size)
                boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            else:
                if cfg.score_threshold > 0.0:
                    ok = scores >= np.float32(cfg.score_threshold)
                    boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
                if boxes.shape[0]:
                    keep = nms_bev(
                        np.ascontiguousarray(boxes[:, [0, 1, 3, 4, 6]]),
                        scores,
                        cfg.nms_thr,
                        cfg.pre_max_size,
                        cfg.post_max_size,
                    )
                    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
                if boxes.shape[0] and cfg.post_center_limit_range:
                    r = np.asarray(cfg.post_center_limit_range, np.float32)
                    c = boxes[:, :3].astype(np.float32)
                    ok = np.asarray((c >= r[:3]).all(axis=1) & (c <= r[3:]).all(axis=1), dtype=bool)
                    boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
            boxes_all.append(boxes)
            scores_all.append(scores)
            labels_all.append(labels + offset)
            offset += len(cfg.tasks[t])
        bx = np.concatenate(boxes_all)
        bx[:, 2] -= 0.5 * bx[:, 5]  # mmdet3d's output: bottom-centre z
        out.append(
            RawDetections(bx, np.concatenate(scores_all).astype(np.float32), np.concatenate(labels_all))
        )
    return out
