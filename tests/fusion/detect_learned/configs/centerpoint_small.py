# ruff: noqa: C408  (written the way mmdet3d writes its configs)
# An mmdet3d 1.x CenterPoint pillar config (nuScenes layout, reduced width and range) for tests.
voxel_size = [0.2, 0.2, 8]
point_cloud_range = [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0]
class_names = ['car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle',
               'bicycle', 'pedestrian', 'traffic_cone']
model = dict(
    type='CenterPoint',
    data_preprocessor=dict(
        type='Det3DDataPreprocessor',
        voxel=True,
        voxel_layer=dict(max_num_points=20, voxel_size=voxel_size, max_voxels=(30000, 40000),
                         point_cloud_range=point_cloud_range)),
    pts_voxel_encoder=dict(
        type='PillarFeatureNet', in_channels=5, feat_channels=[16], with_distance=False,
        voxel_size=(0.2, 0.2, 8), norm_cfg=dict(type='BN1d', eps=1e-3, momentum=0.01), legacy=False,
        point_cloud_range=point_cloud_range),
    pts_middle_encoder=dict(type='PointPillarsScatter', in_channels=16, output_shape=(256, 256)),
    pts_backbone=dict(
        type='SECOND', in_channels=16, out_channels=[16, 16, 32], layer_nums=[1, 1, 1],
        layer_strides=[2, 2, 2], norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01),
        conv_cfg=dict(type='Conv2d', bias=False)),
    pts_neck=dict(
        type='SECONDFPN', in_channels=[16, 16, 32], out_channels=[16, 16, 16],
        upsample_strides=[0.5, 1, 2], norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01),
        upsample_cfg=dict(type='deconv', bias=False), use_conv_for_no_stride=True),
    pts_bbox_head=dict(
        type='CenterHead',
        in_channels=sum([16, 16, 16]),
        tasks=[
            dict(num_class=1, class_names=['car']),
            dict(num_class=2, class_names=['truck', 'construction_vehicle']),
            dict(num_class=2, class_names=['bus', 'trailer']),
            dict(num_class=1, class_names=['barrier']),
            dict(num_class=2, class_names=['motorcycle', 'bicycle']),
            dict(num_class=2, class_names=['pedestrian', 'traffic_cone']),
        ],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
        share_conv_channel=16,
        bbox_coder=dict(
            type='CenterPointBBoxCoder', post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
            max_num=500, score_threshold=0.1, out_size_factor=4, voxel_size=voxel_size[:2],
            code_size=9, pc_range=point_cloud_range[:2]),
        separate_head=dict(type='SeparateHead', init_bias=-2.19, final_kernel=3, head_conv=16),
        loss_cls=dict(type='mmdet.GaussianFocalLoss', reduction='mean'),
        norm_bbox=True),
    test_cfg=dict(
        pts=dict(
            post_center_limit_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0], max_per_img=500,
            max_pool_nms=False, min_radius=[4, 12, 10, 1, 0.85, 0.175], score_threshold=0.1,
            pc_range=[-51.2, -51.2], out_size_factor=4, voxel_size=voxel_size[:2], nms_type='rotate',
            pre_max_size=1000, post_max_size=83, nms_thr=0.2)))
