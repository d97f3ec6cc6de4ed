"""The torch modules of PointPillars and CenterPoint (pillar variant), laid out as mmdetection3d 1.x
lays them out, so that an mmdet3d checkpoint's `state_dict` loads key for key.

    PillarFeatureNet     voxel_encoder.pfn_layers.{i}.linear / .norm          (BN1d, eps 1e-3)
    PointPillarsScatter  middle_encoder                                        (no parameters)
    SECOND               backbone.blocks.{i}.{conv, bn, relu, ...}            (Conv2d no bias, BN eps 1e-3)
    SECONDFPN            neck.deblocks.{i}.{0: deconv|conv, 1: bn, 2: relu}
    Anchor3DHead         bbox_head.conv_cls / conv_reg / conv_dir_cls          (1x1 convs)
    CenterHead           pts_bbox_head.shared_conv.{conv,bn}, task_heads.{t}.{head}.{k}.{conv,bn} / .{last}

CenterPoint checkpoints (mmdet3d's MVXTwoStageDetector) prefix every key with `pts_`; see
`fusion.detect.learned.checkpoint`. Forward passes reproduce mmdet3d's arithmetic, including
PillarFeatureNet's `legacy=True` quirk (the raw xyz columns are overwritten in place by the offsets
from the pillar centre before they are concatenated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fusion.detect.learned.config import (
    AnchorHeadConfig,
    BackboneConfig,
    CenterHeadConfig,
    EncoderConfig,
    ModelConfig,
    NeckConfig,
    VoxelConfig,
)


class PFNLayer(nn.Module):
    """One pillar feature layer: Linear (no bias) -> BN1d -> ReLU -> max over the pillar's points."""

    def __init__(self, in_channels: int, out_channels: int, eps: float, momentum: float, last: bool) -> None:
        super().__init__()
        self.last = last
        units = out_channels if last else out_channels // 2
        self.linear = nn.Linear(in_channels, units, bias=False)
        self.norm = nn.BatchNorm1d(units, eps=eps, momentum=momentum)

    def forward(self, inputs: Tensor) -> Tensor:
        """inputs: (V, P, C) -> (V, 1, units) when last, else (V, P, 2 * units)."""
        x = self.linear(inputs)
        # BN1d over (V * P, C): the statistics and affine map of mmdet3d's (V, C, P) permute, no copies
        x = self.norm(x.reshape(-1, x.shape[-1])).view(x.shape)
        x = torch.relu(x)
        x_max = torch.max(x, dim=1, keepdim=True)[0]
        if self.last:
            return x_max
        return torch.cat([x, x_max.repeat(1, inputs.shape[1], 1)], dim=2)


class PillarFeatureNet(nn.Module):
    """mmdet3d's PillarFeatureNet (mode 'max')."""

    def __init__(self, cfg: EncoderConfig, voxel: VoxelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        channels = [cfg.feature_channels, *cfg.feat_channels]
        self.pfn_layers = nn.ModuleList(
            PFNLayer(channels[i], channels[i + 1], cfg.norm_eps, cfg.norm_momentum, i == len(channels) - 2)
            for i in range(len(channels) - 1)
        )
        vx, vy, vz = voxel.voxel_size
        r = voxel.point_cloud_range
        self.v = (vx, vy, vz)
        self.offset = (vx / 2 + r[0], vy / 2 + r[1], vz / 2 + r[2])

    def forward(self, features: Tensor, num_points: Tensor, coors: Tensor) -> Tensor:
        """features: (V, P, C) padded with zeros; num_points: (V,); coors: (V, 4) batch, z, y, x -> (V, F)."""
        cfg = self.cfg
        features_ls = [features]
        if cfg.with_cluster_center:
            points_mean = features[:, :, :3].sum(dim=1, keepdim=True) / num_points.type_as(features).view(
                -1, 1, 1
            )
            features_ls.append(features[:, :, :3] - points_mean)
        if cfg.with_voxel_center:
            # legacy: a view of the input, so the raw xyz columns change too (as in mmdet3d)
            f_center = features[:, :, :3] if cfg.legacy else torch.zeros_like(features[:, :, :3])
            for axis, col in ((0, 3), (1, 2), (2, 1)):
                centre = coors[:, col].type_as(features).unsqueeze(1) * self.v[axis] + self.offset[axis]
                f_center[:, :, axis] = features[:, :, axis] - centre
            features_ls.append(f_center)
        if cfg.with_distance:
            features_ls.append(torch.norm(features[:, :, :3], 2, 2, keepdim=True))
        features = torch.cat(features_ls, dim=-1)
        mask = torch.arange(features.shape[1], device=features.device)[None, :] < num_points[:, None]
        features = features * mask.unsqueeze(-1).type_as(features)
        for pfn in self.pfn_layers:
            features = pfn(features)
        return features.squeeze(1)


class PointPillarsScatter(nn.Module):
    """Pillar features onto the BEV canvas: (V, F) -> (B, F, ny, nx)."""

    def __init__(self, in_channels: int, ny: int, nx: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.ny = ny
        self.nx = nx

    def forward(self, voxel_features: Tensor, coors: Tensor, batch_size: int) -> Tensor:
        canvas = voxel_features.new_zeros(batch_size, self.in_channels, self.ny * self.nx)
        index = coors[:, 2].long() * self.nx + coors[:, 3].long()
        canvas[coors[:, 0].long(), :, index] = voxel_features
        return canvas.view(batch_size, self.in_channels, self.ny, self.nx)


class SECOND(nn.Module):
    """mmdet3d's SECOND backbone: per stage a strided 3x3 conv then `layer_nums[i]` 3x3 convs."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        in_filters = [cfg.in_channels, *cfg.out_channels[:-1]]
        blocks = []
        for i, num in enumerate(cfg.layer_nums):
            out = cfg.out_channels[i]
            layers: list[nn.Module] = [
                nn.Conv2d(in_filters[i], out, 3, stride=cfg.layer_strides[i], padding=1, bias=False),
                nn.BatchNorm2d(out, eps=cfg.norm_eps, momentum=cfg.norm_momentum),
                nn.ReLU(inplace=True),
            ]
            for _ in range(num):
                layers += [
                    nn.Conv2d(out, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out, eps=cfg.norm_eps, momentum=cfg.norm_momentum),
                    nn.ReLU(inplace=True),
                ]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs


class SECONDFPN(nn.Module):
    """mmdet3d's SECONDFPN: each stage up- (deconv) or down-sampled (conv) to one size, concatenated."""

    def __init__(self, cfg: NeckConfig) -> None:
        super().__init__()
        deblocks = []
        for i, out in enumerate(cfg.out_channels):
            stride = cfg.upsample_strides[i]
            layer: nn.Module
            if stride > 1 or (stride == 1 and not cfg.use_conv_for_no_stride):
                k = int(stride)
                layer = nn.ConvTranspose2d(cfg.in_channels[i], out, k, stride=k, bias=False)
            else:
                k = round(1 / stride)
                layer = nn.Conv2d(cfg.in_channels[i], out, k, stride=k, bias=False)
            deblocks.append(
                nn.Sequential(
                    layer,
                    nn.BatchNorm2d(out, eps=cfg.norm_eps, momentum=cfg.norm_momentum),
                    nn.ReLU(inplace=True),
                )
            )
        self.deblocks = nn.ModuleList(deblocks)

    def forward(self, x: Sequence[Tensor]) -> Tensor:
        ups = [deblock(x[i]) for i, deblock in enumerate(self.deblocks)]
        return torch.cat(ups, dim=1) if len(ups) > 1 else ups[0]


class Anchor3DHead(nn.Module):
    """1x1 convs: class logits (A * C), box deltas (A * 7), direction logits (A * 2) per BEV cell."""

    def __init__(self, cfg: AnchorHeadConfig) -> None:
        super().__init__()
        a = cfg.num_anchors
        self.conv_cls = nn.Conv2d(cfg.feat_channels, a * cfg.num_classes, 1)
        self.conv_reg = nn.Conv2d(cfg.feat_channels, a * cfg.box_code_size, 1)
        self.conv_dir_cls: nn.Conv2d | None = (
            nn.Conv2d(cfg.feat_channels, a * 2, 1) if cfg.use_direction_classifier else None
        )
        nn.init.normal_(self.conv_cls.weight, std=0.01)
        nn.init.normal_(self.conv_reg.weight, std=0.01)
        if self.conv_cls.bias is not None and self.conv_reg.bias is not None:
            nn.init.constant_(self.conv_cls.bias, -math.log((1 - 0.01) / 0.01))
            nn.init.zeros_(self.conv_reg.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(B, C, H, W) -> cls (B, A*K, H, W), reg (B, A*7, H, W), dir (B, A*2, H, W) or None."""
        d = self.conv_dir_cls(x) if self.conv_dir_cls is not None else None
        return self.conv_cls(x), self.conv_reg(x), d


class ConvModule(nn.Sequential):
    """mmcv's ConvModule with a BN: children named `conv` and `bn` (conv without bias), then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=eps, momentum=momentum)
        self.activate = nn.ReLU(inplace=True)


class SeparateHead(nn.Module):
    """One CenterPoint task: per output (reg, height, dim, rot, vel, heatmap) a stack of convs."""

    def __init__(self, cfg: CenterHeadConfig, num_cls: int) -> None:
        super().__init__()
        self.names = [*cfg.common_heads, "heatmap"]
        heads = {**cfg.common_heads, "heatmap": (num_cls, cfg.num_heatmap_convs)}
        for name, (classes, num_conv) in heads.items():
            layers: list[nn.Module] = []
            c_in = cfg.share_conv_channel
            for _ in range(num_conv - 1):
                layers.append(
                    ConvModule(c_in, cfg.head_conv, cfg.final_kernel, cfg.norm_eps, cfg.norm_momentum)
                )
                c_in = cfg.head_conv
            last = nn.Conv2d(c_in, classes, cfg.final_kernel, padding=cfg.final_kernel // 2, bias=True)
            if name == "heatmap" and last.bias is not None:
                nn.init.constant_(last.bias, cfg.init_bias)
            layers.append(last)
            self.add_module(name, nn.Sequential(*layers))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {name: getattr(self, name)(x) for name in self.names}


class CenterHead(nn.Module):
    """CenterPoint's head: a shared 3x3 ConvModule, then one SeparateHead per task."""

    def __init__(self, cfg: CenterHeadConfig) -> None:
        super().__init__()
        self.shared_conv = ConvModule(
            cfg.in_channels, cfg.share_conv_channel, 3, cfg.norm_eps, cfg.norm_momentum
        )
        self.task_heads = nn.ModuleList(SeparateHead(cfg, len(names)) for names in cfg.tasks)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        x = self.shared_conv(x)
        return [head(x) for head in self.task_heads]


class PillarNet(nn.Module):
    """Encoder, scatter, backbone and neck shared by both detectors, then the model's head.

    Attribute names are mmdet3d's (without the `pts_` prefix of CenterPoint checkpoints).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        nx, ny, _ = cfg.voxel.grid_size
        self.voxel_encoder = PillarFeatureNet(cfg.encoder, cfg.voxel)
        self.middle_encoder = PointPillarsScatter(cfg.encoder.feat_channels[-1], ny, nx)
        self.backbone = SECOND(cfg.backbone)
        self.neck = SECONDFPN(cfg.neck)
        self.bbox_head: Anchor3DHead | CenterHead = (
            Anchor3DHead(cfg.head) if isinstance(cfg.head, AnchorHeadConfig) else CenterHead(cfg.head)
        )

    def features(self, voxels: Tensor, num_points: Tensor, coors: Tensor, batch_size: int) -> Tensor:
        """The neck's BEV feature map (B, C, H, W) of a batch of voxelised sweeps."""
        pillars = self.voxel_encoder(voxels, num_points, coors)
        canvas = self.middle_encoder(pillars, coors, batch_size)
        out: Tensor = self.neck(self.backbone(canvas))
        return out

    def forward(
        self, voxels: Tensor, num_points: Tensor, coors: Tensor, batch_size: int
    ) -> tuple[Tensor, Tensor, Tensor | None] | list[dict[str, Tensor]]:
        out: tuple[Tensor, Tensor, Tensor | None] | list[dict[str, Tensor]] = self.bbox_head(
            self.features(voxels, num_points, coors, batch_size)
        )
        return out
