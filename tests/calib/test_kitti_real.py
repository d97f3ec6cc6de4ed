"""Real KITTI data: our Transform + Camera project exactly as KITTI's matrices do, and label boxes match.

The datasets are read in place from FUSION_DATASETS (see tests/conftest.py and its MANIFEST.md).
The reference projection ``P2 @ R0_rect @ Tr_velo_to_cam`` is computed here straight from the
files, with a parser independent of calib.loaders.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from calib.calibration import Calibration
from calib.loaders import kitti_object_calibration, load_calibration
from calib.projection import box_to_image, project_points

OBJECT = Path("kitti_object_vis/data/object/training")
MMDET = Path("mmdetection3d/demo/data/kitti")
RAW_FRAMES = Path("sfnd_3d_object_tracking_kitti/images/KITTI/2011_09_26/velodyne_points/data")
RAW_CALIB = Path("kitti_raw_2011_09_26_calib_timestamps/test_data/kitti/2011_09_26_calib/2011_09_26")
TRACKING_CALIB = Path("ab3dmot/data/KITTI/mini/training/calib")
PIXEL_TOLERANCE = 1e-4
MIN_IOU = 0.7


def _matrices(path: Path) -> dict[str, np.ndarray]:
    """'KEY: numbers' lines of a KITTI file as flat float64 arrays (non-numeric lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        try:
            out[key.strip()] = np.array([float(v) for v in rest.split()])
        except ValueError:
            continue
    return out


def _homogeneous(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def _velodyne(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32).reshape(-1, 4)[:, :3]


def _assert_projects_like(
    calibration: Calibration, camera_name: str, points: np.ndarray, p_velo: np.ndarray
) -> np.ndarray:
    """Check our projection of velodyne points against the 3x4 matrix p_velo; returns `valid`."""
    camera = calibration.cameras[camera_name]
    uv, depth, valid = project_points(points, camera, calibration.lookup(camera.frame_id, "velodyne"))
    h = np.column_stack([points.astype(np.float64), np.ones(len(points))]) @ p_velo.T
    in_front = h[:, 2] > 0.5
    assert in_front.sum() > 1000
    error = np.abs(uv[in_front] - h[in_front, :2] / h[in_front, 2:3]).max()
    assert error < PIXEL_TOLERANCE, f"{camera_name}: max error {error:.3g} px"
    np.testing.assert_allclose(depth[in_front], h[in_front, 2], rtol=0, atol=1e-9)
    return valid


def _box_from_label(
    calibration: Calibration, dims_hwl: np.ndarray, bottom: np.ndarray, ry: float
) -> np.ndarray:
    """A KITTI label box (camera-rect bottom centre, h w l, ry about y) as x y z l w h yaw in velodyne."""
    height, width, length = dims_hwl
    centre_rect = bottom - np.array([0.0, height / 2.0, 0.0])  # y points down in the rect frame
    centre = calibration.lookup("velodyne", "rect").apply(centre_rect[None])[0]
    return np.array([*centre, length, width, height, -ry - math.pi / 2.0])


def _iou(a: tuple[float, float, float, float] | np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


# ---- kitti_object_vis: KITTI object calib.txt, velodyne, label_2 ------------------------------------


def _object_frames(datasets: Path) -> list[str]:
    root = datasets / OBJECT
    frames = sorted(
        p.stem
        for p in (root / "calib").glob("*.txt")
        if all(
            (root / sub / f"{p.stem}{ext}").is_file()
            for sub, ext in (("velodyne", ".bin"), ("label_2", ".txt"))
        )
    )
    assert frames, f"no complete KITTI object frame under {root}"
    return frames


def test_kitti_object_velodyne_projects_as_p2_r0_tr(datasets: Path) -> None:
    root = datasets / OBJECT
    for frame in _object_frames(datasets):
        calibration = load_calibration(root / "calib" / f"{frame}.txt")
        m = _matrices(root / "calib" / f"{frame}.txt")
        points = _velodyne(root / "velodyne" / f"{frame}.bin")
        r0_tr = _homogeneous(m["R0_rect"].reshape(3, 3)) @ _homogeneous(m["Tr_velo_to_cam"].reshape(3, 4))
        for i in range(4):
            valid = _assert_projects_like(
                calibration, f"image_0{i}", points, m[f"P{i}"].reshape(3, 4) @ r0_tr
            )
            assert valid.sum() > 10_000
        image = cv2.imread(str(root / "image_2" / f"{frame}.png"), cv2.IMREAD_UNCHANGED)
        assert image is not None
        camera = calibration.cameras["image_02"]
        assert (camera.height, camera.width) == image.shape[:2]  # read from the image beside the calib


def test_kitti_object_label_boxes_project_onto_their_2d_boxes(datasets: Path) -> None:
    root = datasets / OBJECT
    checked = 0
    for frame in _object_frames(datasets):
        calibration = load_calibration(root / "calib" / f"{frame}.txt")
        camera = calibration.cameras["image_02"]
        camera_from_velodyne = calibration.lookup(camera.frame_id, "velodyne")
        for line in (root / "label_2" / f"{frame}.txt").read_text().splitlines():
            fields = line.split()
            kind, truncated, occluded = fields[0], float(fields[1]), int(fields[2])
            if kind == "DontCare" or truncated != 0.0 or occluded != 0:
                continue
            values = np.array([float(v) for v in fields[4:15]])
            box = _box_from_label(calibration, values[4:7], values[7:10], float(values[10]))
            extent = box_to_image(box, camera, camera_from_velodyne)
            assert extent is not None
            iou = _iou(extent, values[:4])
            assert iou >= MIN_IOU, f"{frame} {kind}: IoU {iou:.3f}, ours {extent}, label {values[:4]}"
            checked += 1
    assert checked >= 1


# ---- mmdetection3d demo: frame 000008 with its info pkl and P2 ----------------------------------


def _mmdet_info(datasets: Path) -> dict[str, object]:
    with (datasets / MMDET / "000008.pkl").open("rb") as f:
        info: dict[str, object] = pickle.load(f)["data_list"][0]
    return info


def test_mmdet3d_kitti_frame_projects_as_p2_r0_tr(datasets: Path) -> None:
    info = _mmdet_info(datasets)
    images, lidar = info["images"], info["lidar_points"]
    assert isinstance(images, dict) and isinstance(lidar, dict)
    p2 = np.loadtxt(datasets / MMDET / "000008.txt").reshape(4, 4)
    np.testing.assert_array_equal(p2, np.array(images["CAM2"]["cam2img"]))
    calibration = kitti_object_calibration(
        {i: np.array(images[f"CAM{i}"]["cam2img"]) for i in range(4)},
        np.array(images["R0_rect"]),
        np.array(lidar["Tr_velo_to_cam"]),
        np.array(lidar["Tr_imu_to_velo"]),
        image_sizes={2: (int(images["CAM2"]["width"]), int(images["CAM2"]["height"]))},
        source=str(datasets / MMDET / "000008.pkl"),
    )
    points = _velodyne(datasets / MMDET / "000008.bin")
    p_velo = p2[:3] @ np.array(images["R0_rect"]) @ np.array(lidar["Tr_velo_to_cam"])
    _assert_projects_like(calibration, "image_02", points, p_velo)
    # the pkl's own lidar2img agrees too (it was stored as float32)
    np.testing.assert_allclose(p_velo, np.array(images["CAM2"]["lidar2img"])[:3], rtol=1e-5, atol=1e-3)

    camera = calibration.cameras["image_02"]
    camera_from_velodyne = calibration.lookup(camera.frame_id, "velodyne")
    instances = info["instances"]
    assert isinstance(instances, list)
    checked = 0
    for inst in instances:
        if inst["truncated"] != 0.0 or inst["occluded"] != 0:
            continue
        x, y, z, length, height, width, ry = inst["bbox_3d"]  # mmdet3d camera boxes: bottom centre, l h w
        box = _box_from_label(calibration, np.array([height, width, length]), np.array([x, y, z]), ry)
        extent = box_to_image(box, camera, camera_from_velodyne)
        assert extent is not None
        assert _iou(extent, np.array(inst["bbox"])) >= MIN_IOU
        checked += 1
    assert checked >= 2


# ---- KITTI raw: 19 frames of 2011_09_26 with the date's calibration -----------------------------


def test_kitti_raw_frames_project_as_p_rect_02_r_rect_00_velo_to_cam(datasets: Path) -> None:
    frames = sorted((datasets / RAW_FRAMES).glob("*.bin"))
    assert len(frames) == 19
    calibration = load_calibration(datasets / RAW_CALIB)
    cams = _matrices(datasets / RAW_CALIB / "calib_cam_to_cam.txt")
    velo = _matrices(datasets / RAW_CALIB / "calib_velo_to_cam.txt")
    velo_to_cam = np.column_stack([velo["R"].reshape(3, 3), velo["T"]])
    p_velo = (
        cams["P_rect_02"].reshape(3, 4)
        @ _homogeneous(cams["R_rect_00"].reshape(3, 3))
        @ _homogeneous(velo_to_cam)
    )
    camera = calibration.cameras["image_02"]
    assert (camera.width, camera.height, camera.frame_id) == (1242, 375, "cam2_rect")
    for path in frames:
        valid = _assert_projects_like(calibration, "image_02", _velodyne(path), p_velo)
        assert 14_000 < valid.sum() < 17_000  # the manifest: about 15k-16k points land in the image


def test_kitti_raw_unrectified_cameras_carry_the_lens_distortion(datasets: Path) -> None:
    calibration = load_calibration(datasets / RAW_CALIB / "calib_cam_to_cam.txt", unrectified=True)
    cams = _matrices(datasets / RAW_CALIB / "calib_cam_to_cam.txt")
    camera = calibration.cameras["image_02"]
    assert (camera.width, camera.height, camera.frame_id) == (1392, 512, "cam2")
    np.testing.assert_array_equal(camera.K.reshape(-1), cams["K_02"])
    np.testing.assert_array_equal(camera.D, cams["D_02"])
    assert calibration.lookup("velodyne", "imu") is not None


# ---- KITTI tracking calib (AB3DMOT's copy), and the tracking spellings ---------------------------


def test_kitti_tracking_calibs_load_and_project_as_p2_r0_tr(datasets: Path) -> None:
    paths = sorted((datasets / TRACKING_CALIB).glob("*.txt"))
    assert len(paths) >= 10
    points = _velodyne(datasets / OBJECT / "velodyne" / f"{_object_frames(datasets)[0]}.bin")[::20]
    for path in paths:
        calibration = load_calibration(path)
        m = _matrices(path)
        r0 = m.get("R0_rect", m.get("R_rect"))
        tr = m.get("Tr_velo_to_cam", m.get("Tr_velo_cam"))
        assert r0 is not None and tr is not None
        p_velo = m["P2"].reshape(3, 4) @ _homogeneous(r0.reshape(3, 3)) @ _homogeneous(tr.reshape(3, 4))
        _assert_projects_like(calibration, "image_02", points, p_velo)


def test_kitti_tracking_spellings_without_colons_load_like_the_object_ones(
    datasets: Path, tmp_path: Path
) -> None:
    original = datasets / TRACKING_CALIB / "0000.txt"
    spelled = tmp_path / "0000.txt"
    text = original.read_text()
    for old, new in (
        ("R0_rect:", "R_rect"),
        ("Tr_velo_to_cam:", "Tr_velo_cam"),
        ("Tr_imu_to_velo:", "Tr_imu_velo"),
    ):
        assert old in text
        text = text.replace(old, new)
    spelled.write_text(text)
    a, b = load_calibration(original), load_calibration(spelled)
    assert sorted(a.cameras) == sorted(b.cameras)
    for ta, tb in zip(a.transforms, b.transforms, strict=True):
        assert ta.isclose(tb, atol=0.0)
    for name, camera in a.cameras.items():
        np.testing.assert_array_equal(camera.K, b.cameras[name].K)


@pytest.mark.parametrize("name", ["calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"])
def test_kitti_raw_loads_from_any_of_its_files(datasets: Path, name: str) -> None:
    calibration = load_calibration(datasets / RAW_CALIB / name)
    assert calibration.source == str(datasets / RAW_CALIB / "calib_cam_to_cam.txt")
    assert sorted(calibration.cameras) == ["image_00", "image_01", "image_02", "image_03"]
