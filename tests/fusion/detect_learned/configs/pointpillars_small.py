# ruff: noqa: C408  (written the way mmdet3d writes its configs)
# Reduced width over bench's full-size KITTI config, the way mmdet3d configs override their `_base_`.
_base_ = ['../../../../bench/configs/pointpillars_kitti.py']  # mmdet3d's full-size KITTI model
model = dict(
    voxel_encoder=dict(feat_channels=[16]),
    middle_encoder=dict(in_channels=16),
    backbone=dict(in_channels=16, layer_nums=[1, 1, 1], out_channels=[16, 16, 32]),
    neck=dict(in_channels=[16, 16, 32], out_channels=[16, 16, 16]),
    bbox_head=dict(in_channels=48, feat_channels=48),
    test_cfg=dict(score_thr={{_base_.model.test_cfg.score_thr}}))
