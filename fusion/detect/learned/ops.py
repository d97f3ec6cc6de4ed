"""The numeric pieces around the networks, each as mmdetection3d 1.x (and mmcv 2.x) defines it:

    hard_voxelize          mmcv `Voxelization` (hard): points -> pillars, first come, first kept (numba)
    aligned_anchors        `AlignedAnchor3DRangeGenerator` (align_corner=False, size_per_range=True)
    decode_deltas          `DeltaXYZWLHRBBoxCoder.decode`
    encode_deltas          `DeltaXYZWLHRBBoxCoder.encode` (training)
    limit_period           `mmdet3d.structures.limit_period`
    nms_bev                `mmdet3d.models.layers.nms_bev` on mmcv's `nms_rotated` (suppress IoU >= thr)
    nms_normal_bev         the axis-aligned variant (mmcv `nms`, suppress IoU > thr)
    circle_nms             `mmdet3d.models.layers.circle_nms` (suppress centre distance^2 <= thr)

Boxes here are mmdet3d LiDAR boxes: (x, y, z_bottom, x_size, y_size, z_size, yaw), yaw about +z
from +x (mmdet3d >= 1.0); `to_contract_boxes` turns them into the contract's (centre z, wrapped yaw).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
from numba import njit
from torch import Tensor

from calib.transform import wrap_angle
from fusion.boxes import OVERLAP_SCRATCH, bev_corners, quad_intersection_area

if TYPE_CHECKING:
    from fusion.detect.learned.config import ModelConfig

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


# ---- voxelisation ----------------------------------------------------------------------------------


def hard_voxelize(
    points: F32,
    point_cloud_range: tuple[float, ...],
    voxel_size: tuple[float, ...],
    max_points: int,
    max_voxels: int,
    range_filter: bool = True,
) -> tuple[F32, I32, I32]:
    """mmcv's hard voxelisation of points (N, C) float32 (x, y, z first).

    range_filter: first drop the points not strictly inside the range, as mmdet3d's test pipeline
    (`PointsRangeFilter`) does before voxelising: a point exactly on the range's lower bound (KITTI
    has returns at x = 0) is dropped there, and kept by voxelisation alone.

    Returns voxels (V, max_points, C) float32 zero-padded, coors (V, 3) int32 as (z, y, x), and
    num_points (V,) int32, voxels in order of their first point; points outside the range, past
    `max_points` in a voxel or in a voxel past `max_voxels` are dropped. Arithmetic in float32 as mmcv's.
    """
    pts = np.ascontiguousarray(points, dtype=np.float32)
    r = np.asarray(point_cloud_range, dtype=np.float32)
    v = np.asarray(voxel_size, dtype=np.float32)
    grid = np.round((r[3:] - r[:3]) / v).astype(np.int64)
    voxels = np.zeros((max_voxels, max_points, pts.shape[1]), np.float32)
    coors = np.zeros((max_voxels, 3), np.int32)
    counts = np.zeros(max_voxels, np.int32)
    n = _hard_voxelize(
        pts, r[:3].copy(), r[3:].copy(), v, grid, max_points, max_voxels, range_filter, voxels, coors, counts
    )
    return voxels[:n], coors[:n], counts[:n]


@njit(cache=True)
def _hard_voxelize(
    points: F32,
    lo: F32,
    hi: F32,
    size: F32,
    grid: I64,
    max_points: int,
    max_voxels: int,
    range_filter: bool,
    voxels: F32,
    coors: I32,
    counts: I32,
) -> int:
    nx, ny, nz = grid[0], grid[1], grid[2]
    index = np.full(nx * ny * nz, -1, np.int64)
    num = 0
    c = np.zeros(3, np.int64)
    for i in range(points.shape[0]):
        ok = True
        for j in range(3):
            if range_filter and not (lo[j] < points[i, j] < hi[j]):
                ok = False
                break
            q = math.floor(np.float32(points[i, j] - lo[j]) / size[j])
            if q < 0 or q >= grid[j]:
                ok = False
                break
            c[j] = q
        if not ok:
            continue
        flat = (c[2] * ny + c[1]) * nx + c[0]
        vid = index[flat]
        if vid == -1:
            if num >= max_voxels:
                continue
            vid = num
            num += 1
            index[flat] = vid
            coors[vid, 0] = c[2]
            coors[vid, 1] = c[1]
            coors[vid, 2] = c[0]
        k = counts[vid]
        if k < max_points:
            for f in range(points.shape[1]):
                voxels[vid, k, f] = points[i, f]
            counts[vid] = k + 1
    return num


# ---- anchors and the delta coder -------------------------------------------------------------------


def aligned_anchors(
    feature_size: tuple[int, int],
    ranges: tuple[tuple[float, ...], ...],
    sizes: tuple[tuple[float, float, float], ...],
    rotations: tuple[float, ...],
    align_corner: bool = False,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The anchors of one (ny, nx) feature map: (ny * nx * S * R, 7) float32, ordered by cell (y, x),
    then size, then rotation, as Anchor3DHead lays its channels out. Sizes are (x_size, y_size, z_size);
    each range's z is the anchors' bottom."""
    per_range = ranges if len(ranges) == len(sizes) else tuple(ranges[0] for _ in sizes)
    parts = [
        _anchors_single_range(feature_size, r, s, rotations, align_corner, device)
        for r, s in zip(per_range, sizes, strict=True)
    ]
    return torch.cat(parts, dim=-3).reshape(-1, 7)


def _anchors_single_range(
    feature_size: tuple[int, int],
    anchor_range: tuple[float, ...],
    size: tuple[float, float, float],
    rotations: tuple[float, ...],
    align_corner: bool,
    device: torch.device | str,
) -> Tensor:
    ny, nx = feature_size
    rng = torch.tensor(anchor_range, device=device, dtype=torch.float32)
    z_centers = torch.linspace(rng[2].item(), rng[5].item(), 2, device=device)
    y_centers = torch.linspace(rng[1].item(), rng[4].item(), ny + 1, device=device)
    x_centers = torch.linspace(rng[0].item(), rng[3].item(), nx + 1, device=device)
    sizes = torch.tensor(size, device=device, dtype=torch.float32).reshape(-1, 3)
    rot = torch.tensor(rotations, device=device, dtype=torch.float32)
    if not align_corner:
        z_centers = z_centers + (z_centers[1] - z_centers[0]) / 2
        y_centers = y_centers + (y_centers[1] - y_centers[0]) / 2
        x_centers = x_centers + (x_centers[1] - x_centers[0]) / 2
    rets = list(torch.meshgrid(x_centers[:nx], y_centers[:ny], z_centers[:1], rot, indexing="ij"))
    tile = [1, 1, 1, int(sizes.shape[0]), 1]
    for i in range(len(rets)):
        rets[i] = rets[i].unsqueeze(-2).repeat(tile).unsqueeze(-1)
    size_shape = list(rets[0].shape)
    size_shape[3] = 1
    rets.insert(3, sizes.reshape(1, 1, 1, 1, 1, 3).repeat(size_shape))
    return torch.cat(rets, dim=-1).permute(2, 1, 0, 3, 4, 5)


def decode_deltas(anchors: Tensor, deltas: Tensor) -> Tensor:
    """DeltaXYZWLHRBBoxCoder.decode: anchors, deltas (N, 7) -> boxes (N, 7), bottom-centre z."""
    xa, ya, za, wa, la, ha, ra = torch.split(anchors, 1, dim=-1)
    xt, yt, zt, wt, lt, ht, rt = torch.split(deltas, 1, dim=-1)
    za = za + ha / 2
    diagonal = torch.sqrt(la**2 + wa**2)
    xg = xt * diagonal + xa
    yg = yt * diagonal + ya
    zg = zt * ha + za
    lg = torch.exp(lt) * la
    wg = torch.exp(wt) * wa
    hg = torch.exp(ht) * ha
    rg = rt + ra
    zg = zg - hg / 2
    return torch.cat([xg, yg, zg, wg, lg, hg, rg], dim=-1)


def encode_deltas(anchors: Tensor, boxes: Tensor) -> Tensor:
    """DeltaXYZWLHRBBoxCoder.encode: the deltas that decode `anchors` into `boxes` (N, 7)."""
    xa, ya, za, wa, la, ha, ra = torch.split(anchors, 1, dim=-1)
    xg, yg, zg, wg, lg, hg, rg = torch.split(boxes, 1, dim=-1)
    za = za + ha / 2
    zg = zg + hg / 2
    diagonal = torch.sqrt(la**2 + wa**2)
    return torch.cat(
        [
            (xg - xa) / diagonal,
            (yg - ya) / diagonal,
            (zg - za) / ha,
            torch.log(wg / wa),
            torch.log(lg / la),
            torch.log(hg / ha),
            rg - ra,
        ],
        dim=-1,
    )


def limit_period(val: Tensor, offset: float = 0.5, period: float = math.pi) -> Tensor:
    """`val - floor(val / period + offset) * period`: into [-offset * period, (1 - offset) * period)."""
    return val - torch.floor(val / period + offset) * period


# ---- NMS -------------------------------------------------------------------------------------------


def nms_bev(
    boxes: F64, scores: F64, thresh: float, pre_max_size: int | None = None, post_max_size: int | None = None
) -> I64:
    """Rotated BEV NMS: boxes (N, 5) x, y, x_size, y_size, yaw; scores (N,). Indices kept, best first.

    A box is dropped when its rotated IoU with a kept, higher-scoring box is >= thresh (mmcv's rule).
    Equal scores keep torch's descending-sort order (mmdet3d sorts with torch), float32 as mmdet3d's.
    """
    order = descending_order(scores)
    if pre_max_size is not None:
        order = order[:pre_max_size]
    b = np.zeros((order.shape[0], 7), np.float64)
    b[:, 0:2] = boxes[order, 0:2]
    b[:, 3:5] = boxes[order, 2:4]
    b[:, 6] = boxes[order, 4]
    keep = order[_nms_rotated(b, float(thresh))]
    return keep[:post_max_size] if post_max_size is not None else keep


@njit(cache=True)
def _nms_rotated(boxes: F64, thresh: float) -> I64:
    n = boxes.shape[0]
    suppressed = np.zeros(n, np.bool_)
    keep = np.empty(n, np.int64)
    m = 0
    ax = np.empty(4)
    ay = np.empty(4)
    bx = np.empty(4)
    by = np.empty(4)
    px = np.empty(OVERLAP_SCRATCH)
    py = np.empty(OVERLAP_SCRATCH)
    qx = np.empty(OVERLAP_SCRATCH)
    qy = np.empty(OVERLAP_SCRATCH)
    for i in range(n):
        if suppressed[i]:
            continue
        keep[m] = i
        m += 1
        area_i = boxes[i, 3] * boxes[i, 4]
        bev_corners(boxes[i], boxes[i, 0], boxes[i, 1], ax, ay)
        for j in range(i + 1, n):
            if suppressed[j]:
                continue
            bev_corners(boxes[j], boxes[i, 0], boxes[i, 1], bx, by)
            inter = quad_intersection_area(ax, ay, bx, by, px, py, qx, qy)
            union = area_i + boxes[j, 3] * boxes[j, 4] - inter
            iou = inter / max(union, 1e-8)
            if iou >= thresh:
                suppressed[j] = True
    return keep[:m]


def descending_order(scores: npt.ArrayLike) -> I64:
    """Indices sorting `scores` (N,) from high to low as torch.sort(descending=True) orders them (in
    float32): mmdet3d's tie order, which decides which of equal-score boxes survive a cut."""
    t = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    return t.sort(0, descending=True)[1].numpy().astype(np.int64)


def nms_normal_bev(boxes: F64, scores: F64, thresh: float) -> I64:
    """Axis-aligned BEV NMS (yaw ignored): boxes (N, 5) as in nms_bev; drops IoU > thresh."""
    order = descending_order(scores)
    b = boxes[order]
    x1, y1 = b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2
    x2, y2 = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    return order[_nms_aligned(x1, y1, x2, y2, float(thresh))]


@njit(cache=True)
def _nms_aligned(x1: F64, y1: F64, x2: F64, y2: F64, thresh: float) -> I64:
    n = x1.shape[0]
    suppressed = np.zeros(n, np.bool_)
    keep = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if suppressed[i]:
            continue
        keep[m] = i
        m += 1
        area_i = (x2[i] - x1[i]) * (y2[i] - y1[i])
        for j in range(i + 1, n):
            if suppressed[j]:
                continue
            w = max(min(x2[i], x2[j]) - max(x1[i], x1[j]), 0.0)
            h = max(min(y2[i], y2[j]) - max(y1[i], y1[j]), 0.0)
            inter = w * h
            union = area_i + (x2[j] - x1[j]) * (y2[j] - y1[j]) - inter
            if inter / max(union, 1e-8) > thresh:
                suppressed[j] = True
    return keep[:m]


@njit(cache=True)
def circle_nms(dets: F64, thresh: float, post_max_size: int) -> I64:
    """dets (N, 3) x, y, score: drop a centre within sqrt(thresh) of a kept, higher-scoring one."""
    order = np.argsort(-dets[:, 2], kind="mergesort")
    n = dets.shape[0]
    suppressed = np.zeros(n, np.bool_)
    keep = np.empty(n, np.int64)
    m = 0
    for a in range(n):
        i = order[a]
        if suppressed[i]:
            continue
        keep[m] = i
        m += 1
        for b in range(a + 1, n):
            j = order[b]
            if suppressed[j]:
                continue
            if (dets[i, 0] - dets[j, 0]) ** 2 + (dets[i, 1] - dets[j, 1]) ** 2 <= thresh:
                suppressed[j] = True
    return keep[: min(m, post_max_size)]


# ---- conversion ------------------------------------------------------------------------------------


def to_contract_boxes(boxes: npt.ArrayLike) -> F64:
    """mmdet3d LiDAR boxes (N, >=7) x, y, z_bottom, x_size, y_size, z_size, yaw[, vx, vy] -> the
    contract's x, y, z_centre, length, width, height, yaw in [-pi, pi) (N, 7) float64."""
    a = np.asarray(boxes, dtype=np.float64)
    b = (a.reshape(-1, a.shape[-1]) if a.size else np.zeros((0, 7)))[:, :7].copy()
    b[:, 2] += 0.5 * b[:, 5]
    b[:, 6] = wrap_angle(b[:, 6])
    return b


def from_contract_boxes(boxes: npt.ArrayLike) -> F64:
    """The inverse of `to_contract_boxes` (yaw kept as given)."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 7)
    b[:, 2] -= 0.5 * b[:, 5]
    return b


def batch_inputs(points: Sequence[F32], cfg: ModelConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Voxelised batch: voxels (V, P, C), num_points (V,), coors (V, 4) batch z y x."""
    v = cfg.voxel
    voxels, coors, counts = [], [], []
    for b, p in enumerate(points):
        vx, cz, n = hard_voxelize(
            p, v.point_cloud_range, v.voxel_size, v.max_num_points, v.max_voxels, v.range_filter
        )
        voxels.append(vx)
        coors.append(np.concatenate([np.full((cz.shape[0], 1), b, np.int32), cz], axis=1))
        counts.append(n)
    return (
        torch.from_numpy(np.concatenate(voxels)),
        torch.from_numpy(np.concatenate(counts)),
        torch.from_numpy(np.concatenate(coors)),
    )
