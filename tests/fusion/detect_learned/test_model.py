"""The pure-torch PointPillars / CenterPoint: mmdet3d configs and checkpoints in, mmdet3d's arithmetic
(pillar features, head decoding) checked by hand, boxes out behind the Detector protocol."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.decode.types import PointCloud
from fusion.detect import DETECTORS, DetectError, build_detector, learned_config
from fusion.detect.learned import LearnedConfig, PillarDetector, load_config_file, model_config_from_mmdet3d
from fusion.detect.learned.checkpoint import mmdet3d_state, read_checkpoint
from fusion.detect.learned.config import AnchorHeadConfig, CenterHeadConfig, EncoderConfig, VoxelConfig
from fusion.detect.learned.networks import PillarFeatureNet, PillarNet
from fusion.detect.learned.predict import anchor_predict, center_predict

CONFIGS = Path(__file__).parent / "configs"
FULL_SIZE = Path(__file__).parents[3] / "bench" / "configs"  # mmdet3d's full-size model configs


def _save(tmp_path: Path, name: str, *, meta: dict | None = None, seed: int = 0) -> Path:
    variables = load_config_file(CONFIGS / f"{name}.py")
    cfg = model_config_from_mmdet3d(variables)
    torch.manual_seed(seed)
    model = PillarNet(cfg)
    path = tmp_path / f"{name}.pth"
    torch.save(
        {
            "meta": meta or {"fusion_model_config": variables},
            "state_dict": mmdet3d_state(model, cfg.key_prefix),
        },
        path,
    )
    return path


# ---- configs -----------------------------------------------------------------------------------------


def test_py_config_merges_its_base_and_resolves_base_references() -> None:
    cfg = model_config_from_mmdet3d(load_config_file(CONFIGS / "pointpillars_small.py"))
    assert cfg.arch == "pointpillars"
    assert cfg.encoder.feat_channels == (16,)  # the child's override
    assert cfg.voxel.point_cloud_range == (0.0, -39.68, -3.0, 69.12, 39.68, 1.0)  # the base's
    assert cfg.voxel.grid_size == (432, 496, 1)
    assert cfg.voxel.max_voxels == 40000  # max_voxels (train, test): the test value
    head = cfg.head
    assert isinstance(head, AnchorHeadConfig)
    assert head.score_thr == 0.1  # {{_base_.model.test_cfg.score_thr}}
    assert head.nms_pre == 100  # merged from the base's test_cfg
    assert head.num_anchors == 6
    assert cfg.class_names == ("Pedestrian", "Cyclist", "Car")


def test_json_config_gives_the_same_model_as_the_py_config(tmp_path: Path) -> None:
    variables = load_config_file(CONFIGS / "pointpillars_small.py")
    (tmp_path / "model.json").write_text(json.dumps(variables))
    assert model_config_from_mmdet3d(load_config_file(tmp_path / "model.json")) == model_config_from_mmdet3d(
        variables
    )


def test_centerpoint_config_reads_tasks_heads_and_pts_prefix() -> None:
    cfg = model_config_from_mmdet3d(load_config_file(CONFIGS / "centerpoint_small.py"))
    assert cfg.arch == "centerpoint"
    assert cfg.key_prefix == "pts_"
    head = cfg.head
    assert isinstance(head, CenterHeadConfig)
    assert head.tasks[1] == ("truck", "construction_vehicle")
    assert list(head.common_heads) == ["reg", "height", "dim", "rot", "vel"]
    assert head.final_kernel == 3
    assert head.nms_type == "rotate"
    assert head.min_radius[-1] == 0.175
    assert cfg.encoder.legacy is False
    assert cfg.neck.upsample_strides == (0.5, 1.0, 2.0)


def test_unsupported_head_is_an_error_that_points_to_the_mmdet3d_backend() -> None:
    variables = load_config_file(CONFIGS / "pointpillars_small.py")
    variables["model"]["bbox_head"]["type"] = "FreeAnchor3DHead"
    with pytest.raises(DetectError, match=r"FreeAnchor3DHead.*--detector mmdet3d"):
        model_config_from_mmdet3d(variables)


def test_config_whose_scatter_shape_disagrees_with_the_grid_is_an_error() -> None:
    variables = load_config_file(CONFIGS / "pointpillars_small.py")
    variables["model"]["middle_encoder"]["output_shape"] = [400, 432]
    with pytest.raises(
        DetectError, match=r"output_shape \[400, 432\] does not match the voxel grid \[496, 432\]"
    ):
        model_config_from_mmdet3d(variables)


# ---- mmdet3d state dict keys ---------------------------------------------------------------------


def test_module_names_are_mmdet3d_state_dict_keys() -> None:
    pp = model_config_from_mmdet3d(load_config_file(FULL_SIZE / "pointpillars_kitti.py"))
    shapes = {k: tuple(v.shape) for k, v in mmdet3d_state(PillarNet(pp), "").items()}
    # the full-size KITTI PointPillars of mmdet3d 1.x
    assert shapes["voxel_encoder.pfn_layers.0.linear.weight"] == (64, 10)
    assert shapes["voxel_encoder.pfn_layers.0.norm.running_var"] == (64,)
    assert shapes["backbone.blocks.0.0.weight"] == (64, 64, 3, 3)
    assert shapes["backbone.blocks.2.15.weight"] == (256, 256, 3, 3)  # conv k at index 3k: the 6th is 15
    assert shapes["backbone.blocks.2.16.weight"] == (256,)  # its BN
    assert shapes["neck.deblocks.2.0.weight"] == (256, 128, 4, 4)  # ConvTranspose2d: (in, out, k, k)
    assert shapes["bbox_head.conv_cls.weight"] == (18, 384, 1, 1)
    assert shapes["bbox_head.conv_reg.weight"] == (42, 384, 1, 1)
    assert shapes["bbox_head.conv_dir_cls.weight"] == (12, 384, 1, 1)
    # parameters layer by layer: PFN 10*64 + BN 128; SECOND 4 convs 64x64, 6 of 128 (the first from 64),
    # 6 of 256 (the first from 128), each 3x3 + BN; FPN deconvs 64->128 k1, 128->128 k2, 256->128 k4 + BN;
    # head 1x1 convs with bias to 18 + 42 + 12 channels
    by_hand = (
        (640 + 128)
        + 4 * (64 * 64 * 9 + 128)
        + (64 * 128 * 9 + 256)
        + 5 * (128 * 128 * 9 + 256)
        + (128 * 256 * 9 + 512)
        + 5 * (256 * 256 * 9 + 512)
        + (64 * 128 + 256)
        + (128 * 128 * 4 + 256)
        + (256 * 128 * 16 + 256)
        + 385 * (18 + 42 + 12)
    )
    assert (
        sum(math.prod(s) for k, s in shapes.items() if "num_batches" not in k and "running" not in k)
        == by_hand
    )

    cp = model_config_from_mmdet3d(load_config_file(CONFIGS / "centerpoint_small.py"))
    keys = mmdet3d_state(PillarNet(cp), "pts_")
    assert tuple(keys["pts_voxel_encoder.pfn_layers.0.linear.weight"].shape) == (16, 11)  # 5 + 3 + 3
    assert tuple(keys["pts_neck.deblocks.0.0.weight"].shape) == (16, 16, 2, 2)  # stride 0.5: a conv
    assert tuple(keys["pts_bbox_head.shared_conv.conv.weight"].shape) == (16, 48, 3, 3)
    assert "pts_bbox_head.shared_conv.bn.running_mean" in keys
    assert tuple(keys["pts_bbox_head.task_heads.1.heatmap.1.weight"].shape) == (2, 16, 3, 3)
    assert tuple(keys["pts_bbox_head.task_heads.0.reg.0.conv.weight"].shape) == (16, 16, 3, 3)
    assert tuple(keys["pts_bbox_head.task_heads.0.vel.1.bias"].shape) == (2,)


def test_checkpoint_with_unknown_missing_or_misshapen_keys_is_an_error_listing_them(tmp_path: Path) -> None:
    path = _save(tmp_path, "pointpillars_small")
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["state_dict"]
    state["bbox_head.conv_extra.weight"] = torch.zeros(1)
    del state["backbone.blocks.0.1.weight"]
    state["bbox_head.conv_cls.weight"] = torch.zeros(3, 48, 1, 1)
    torch.save(ckpt, path)
    with pytest.raises(DetectError) as err:
        PillarDetector(LearnedConfig(checkpoint=path))
    msg = str(err.value)
    assert "1 unknown key(s): bbox_head.conv_extra.weight" in msg
    assert "1 missing key(s): backbone.blocks.0.1.weight" in msg
    assert "bbox_head.conv_cls.weight (3, 48, 1, 1) (model: (18, 48, 1, 1))" in msg


class _HistoryBuffer:  # stands for mmengine's message-hub objects, whose classes are not installed
    def __init__(self) -> None:
        self.values = [1.0, 2.0]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_mmengine_checkpoint_with_foreign_objects_loads_its_weights_without_running_them(
    tmp_path: Path,
) -> None:
    path = _save(tmp_path, "centerpoint_small")
    ckpt = torch.load(path, weights_only=True)
    marker = tmp_path / "pwned"
    ckpt["message_hub"] = {"log_scalars": _HistoryBuffer(), "evil": _Exploit(marker)}
    torch.save(ckpt, path)
    state, meta = read_checkpoint(path)
    assert not marker.exists()
    assert "pts_bbox_head.shared_conv.conv.weight" in state
    assert "fusion_model_config" in meta


def test_config_comes_from_the_checkpoint_meta_cfg_text_when_none_is_given(tmp_path: Path) -> None:
    text = (CONFIGS / "centerpoint_small.py").read_text()
    path = _save(tmp_path, "centerpoint_small", meta={"cfg": text})
    detector = PillarDetector(LearnedConfig(checkpoint=path), arch="centerpoint")
    assert detector.name == "centerpoint"
    bare = _save(tmp_path, "centerpoint_small", meta={"seed": 1})
    with pytest.raises(DetectError, match="carries no model config; pass --model-config"):
        PillarDetector(LearnedConfig(checkpoint=bare))
    ok = PillarDetector(LearnedConfig(checkpoint=bare, model_config=CONFIGS / "centerpoint_small.py"))
    assert ok.model_config.arch == "centerpoint"


# ---- mmdet3d arithmetic, by hand -----------------------------------------------------------------


@pytest.mark.parametrize("legacy", [True, False])
def test_pillar_features_follow_mmdet3d_including_the_legacy_overwrite(legacy: bool) -> None:
    voxel = VoxelConfig((0.0, -4.0, -3.0, 8.0, 4.0, 1.0), (1.0, 1.0, 4.0), 3, 10)
    enc = EncoderConfig(in_channels=4, feat_channels=(10,), legacy=legacy)
    net = PillarFeatureNet(enc, voxel).eval()
    with torch.no_grad():
        net.pfn_layers[0].linear.weight.copy_(torch.eye(10))
    pts = np.array([[2.2, 0.7, -1.0, 0.5], [2.9, 0.1, 0.4, 0.9]], np.float32)
    voxels = np.zeros((1, 3, 4), np.float32)
    voxels[0, :2] = pts
    coors = torch.tensor([[0, 0, 4, 2]])  # batch, z, y, x: pillar x in [2, 3), y in [0, 1)
    with torch.no_grad():
        out = net(torch.from_numpy(voxels), torch.tensor([2]), coors).numpy()[0]
    centre = np.array([2.5, 0.5, -1.0])  # pillar centre; z: the range's middle
    mean = pts[:, :3].mean(axis=0)
    first = pts[:, :3] - centre if legacy else pts[:, :3]  # legacy: xyz overwritten in place
    feats = np.concatenate([first, pts[:, 3:], pts[:, :3] - mean, pts[:, :3] - centre], axis=1)
    feats = np.vstack([feats, np.zeros((1, 10))])  # the padded slot takes part in the max
    expected = np.maximum(feats / math.sqrt(1 + 1e-3), 0).max(axis=0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_anchor_head_decoding_by_hand() -> None:
    head = AnchorHeadConfig(
        num_classes=1,
        in_channels=8,
        feat_channels=8,
        ranges=((0.0, 0.0, -1.0, 4.0, 4.0, -1.0),),
        sizes=((4.0, 2.0, 1.5),),
        rotations=(0.0, 1.57),
        nms_pre=100,
        score_thr=0.1,
        max_num=10,
    )
    from fusion.detect.learned.ops import aligned_anchors

    anchors = aligned_anchors((2, 2), head.ranges, head.sizes, head.rotations)
    cls = torch.full((1, 2, 2, 2), -10.0)  # (B, A*K, H, W), A = 2 rotations
    reg = torch.zeros(1, 14, 2, 2)
    direction = torch.zeros(1, 4, 2, 2)
    cls[0, 1, 1, 0] = 2.0  # anchor at cell (y=1, x=0), rotation 1.57
    reg[0, 7 + 0, 1, 0] = 0.1  # its x delta
    direction[0, 3, 1, 0] = 5.0  # its direction bin 1
    (det,) = anchor_predict(head, cls, reg, direction, anchors)
    diag = math.hypot(4.0, 2.0)
    # limit_period(1.57 - dir_offset, 0, pi) + dir_offset + pi * bin, dir_offset = -pi/2: 1.57 + pi
    yaw = 1.57 + math.pi
    np.testing.assert_allclose(det.boxes, [[1.0 + 0.1 * diag, 3.0, -1.0, 4.0, 2.0, 1.5, yaw]], atol=1e-5)
    np.testing.assert_allclose(det.scores, [1 / (1 + math.exp(-2.0))], rtol=1e-6)
    np.testing.assert_array_equal(det.labels, [0])


def test_center_head_decoding_by_hand() -> None:
    head = CenterHeadConfig(
        in_channels=8,
        tasks=(("car",), ("truck", "bus")),
        common_heads={"reg": (2, 2), "height": (1, 2), "dim": (3, 2), "rot": (2, 2), "vel": (2, 2)},
        max_num=10,
        coder_score_threshold=0.1,
        score_threshold=0.1,
    )
    preds = []
    for classes in (1, 2):
        p = {
            "heatmap": torch.full((1, classes, 8, 8), -10.0),
            "reg": torch.zeros(1, 2, 8, 8),
            "height": torch.zeros(1, 1, 8, 8),
            "dim": torch.zeros(1, 3, 8, 8),
            "rot": torch.zeros(1, 2, 8, 8),
            "vel": torch.zeros(1, 2, 8, 8),
        }
        preds.append(p)
    t = preds[1]
    t["heatmap"][0, 1, 2, 5] = 3.0  # task 1, its class 1 ("bus"), at cell y=2, x=5
    t["reg"][0, :, 2, 5] = torch.tensor([0.3, 0.6])
    t["height"][0, 0, 2, 5] = 0.5
    t["dim"][0, :, 2, 5] = torch.log(torch.tensor([4.0, 2.0, 1.5]))
    t["rot"][0, :, 2, 5] = torch.tensor([math.sin(0.4), math.cos(0.4)])
    t["vel"][0, :, 2, 5] = torch.tensor([1.0, -1.0])
    (det,) = center_predict(head, preds)
    x = (5 + 0.3) * 4 * 0.2 - 51.2
    y = (2 + 0.6) * 4 * 0.2 - 51.2
    np.testing.assert_allclose(det.boxes, [[x, y, 0.5 - 0.75, 4.0, 2.0, 1.5, 0.4, 1.0, -1.0]], atol=1e-5)
    np.testing.assert_allclose(det.scores, [1 / (1 + math.exp(-3.0))], rtol=1e-6)
    np.testing.assert_array_equal(det.labels, [2])  # task 0 has 1 class: "bus" is label 1 + 1


# ---- the Detector ------------------------------------------------------------------------------------


def _cloud(seed: int, n: int = 6000) -> PointCloud:
    rng = np.random.default_rng(seed)
    xyz = np.column_stack([rng.uniform(-25, 25, n), rng.uniform(-25, 25, n), rng.uniform(-2, 1, n)]).astype(
        np.float32
    )
    return PointCloud(xyz, rng.uniform(0, 255, n).astype(np.float32), None, None, "lidar", 10 + seed)


def test_batched_inference_gives_each_sweep_its_own_boxes(tmp_path: Path) -> None:
    detector = build_detector(
        "centerpoint", learned_config({"checkpoint": _save(tmp_path, "centerpoint_small"), "batch_size": 2})
    )
    clouds = [_cloud(1), _cloud(2), _cloud(3)]
    together = detector.detect_batch(clouds)
    for cloud, batched in zip(clouds, together, strict=True):
        alone = detector.detect(cloud)
        assert batched.stamp_ns == cloud.stamp_ns
        assert len(alone) == len(batched) > 0
        np.testing.assert_allclose(batched.boxes, alone.boxes, atol=1e-4)
        np.testing.assert_array_equal(batched.category, alone.category)
        # barriers and cones are not contract categories: dropped
        assert set(np.unique(batched.category)) <= {
            "car",
            "truck",
            "bus",
            "motorcycle",
            "cyclist",
            "pedestrian",
        }
        assert (batched.boxes[:, 6] >= -math.pi).all() and (batched.boxes[:, 6] < math.pi).all()


def test_learned_detectors_are_registered_and_need_a_checkpoint(tmp_path: Path) -> None:
    assert {"pointpillars", "centerpoint", "mmdet3d"} <= set(DETECTORS)
    with pytest.raises(DetectError, match="needs a checkpoint: --checkpoint CKPT"):
        build_detector("pointpillars")
    path = _save(tmp_path, "centerpoint_small")
    with pytest.raises(
        DetectError, match="describes a centerpoint model, not pointpillars; use --detector centerpoint"
    ):
        build_detector("pointpillars", learned_config({"checkpoint": path}))
    with pytest.raises(DetectError, match="no such checkpoint"):
        build_detector("pointpillars", learned_config({"checkpoint": tmp_path / "nope.pth"}))


def test_a_file_that_is_not_a_checkpoint_is_one_line_with_the_fix(tmp_path: Path) -> None:
    path = _save(tmp_path, "pointpillars_small")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:1000])  # a copy cut short
    text = tmp_path / "text.pth"
    text.write_text("garbage\n")
    for bad in (cut, text):
        with pytest.raises(DetectError) as info:
            build_detector("pointpillars", learned_config({"checkpoint": bad}))
        message = str(info.value)
        assert message.startswith(f"{bad}: not a readable torch checkpoint") and "\n" not in message
        assert message.endswith("copied again if it was cut short") and len(message) - len(str(bad)) < 300


@pytest.mark.skipif(importlib.util.find_spec("mmdet3d") is not None, reason="mmdet3d is installed here")
def test_mmdet3d_detector_without_mmdet3d_says_how_to_install_it(tmp_path: Path) -> None:
    path = _save(tmp_path, "pointpillars_small")
    options = {"checkpoint": path, "model_config": CONFIGS / "pointpillars_small.py"}
    with pytest.raises(DetectError, match="make mmdet3d-env"):
        build_detector("mmdet3d", learned_config(options))
