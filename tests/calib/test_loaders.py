"""calib.loaders and calib.calibration: every calibration format round-trips; bad files name file:line."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from ruamel.yaml import YAML

from calib.calibration import Calibration
from calib.camera import Camera
from calib.errors import CalibrationError
from calib.loaders import FORMATS, load_calibration
from calib.projection import project_points
from calib.transform import Transform, quaternion_to_rotation

# ---- fixtures: a rig, and the same rig written in each format -----------------------------------

FRONT = Camera(
    "front",
    "camera_front_optical",
    1920,
    1080,
    "plumb_bob",
    np.array([[1000.0, 0.5, 960.0], [0.0, 1002.0, 540.0], [0.0, 0.0, 1.0]]),
    (-0.1, 0.01, 0.001, -0.002, 0.0005),
)
FISHEYE = Camera(
    "rear",
    "camera_rear_optical",
    1280,
    960,
    "equidistant",
    np.array([[400.0, 0.0, 640.0], [0.0, 400.0, 480.0], [0.0, 0.0, 1.0]]),
    (0.03, -0.006, 0.001, -0.0002),
)
EGO_FROM_LIDAR = Transform.from_quaternion(
    [1.2, 0.0, 1.8], [0.0, 0.0, math.sin(0.01), math.cos(0.01)], parent="base_link", child="lidar_top"
)
LIDAR_FROM_FRONT = Transform.from_quaternion(
    [0.1, 0.02, -0.2], [-0.5, 0.5, -0.5, 0.5], parent="lidar_top", child="camera_front_optical"
)
EGO_FROM_REAR = Transform.from_quaternion(
    [-1.0, 0.0, 1.5], [0.5, 0.5, -0.5, -0.5], parent="base_link", child="camera_rear_optical"
)


def _camera_entry(camera: Camera, topic: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": camera.name,
        "frame_id": camera.frame_id,
        "width": camera.width,
        "height": camera.height,
        "model": camera.model,
        "K": camera.K.reshape(-1).tolist(),
        "D": list(camera.D),
    }
    if topic is not None:
        entry["topic"] = topic
    return entry


def _fusion_document() -> dict[str, Any]:
    return {
        "cameras": [_camera_entry(FRONT, "/camera_front/image_raw"), _camera_entry(FISHEYE)],
        "transforms": [
            {
                "parent": "base_link",
                "child": "lidar_top",
                "matrix": EGO_FROM_LIDAR.matrix.reshape(-1).tolist(),
            },
            {
                "parent": "lidar_top",
                "child": "camera_front_optical",
                "translation": LIDAR_FROM_FRONT.translation.tolist(),
                "rotation_xyzw": list(LIDAR_FROM_FRONT.quaternion_xyzw),
            },
            {
                "parent": "base_link",
                "child": "camera_rear_optical",
                "translation": EGO_FROM_REAR.translation.tolist(),
                "rotation_xyzw": list(EGO_FROM_REAR.quaternion_xyzw),
            },
        ],
    }


def _yaml_text(document: dict[str, Any]) -> str:
    out = io.StringIO()
    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False  # one value a line, keys in the order written
    yaml.dump(document, out)
    return out.getvalue()


def _same_camera(a: Camera, b: Camera) -> None:
    assert (a.name, a.frame_id, a.width, a.height, a.model) == (
        b.name,
        b.frame_id,
        b.width,
        b.height,
        b.model,
    )
    np.testing.assert_array_equal(a.K, b.K)
    assert a.D == b.D


def _check_rig(calibration: Calibration, path: Path) -> None:
    assert calibration.source == str(path)
    assert sorted(calibration.cameras) == ["front", "rear"]
    _same_camera(calibration.cameras["front"], FRONT)
    _same_camera(calibration.cameras["rear"], FISHEYE)
    assert dict(calibration.camera_topics) == {"front": "/camera_front/image_raw"}
    for expected in (EGO_FROM_LIDAR, LIDAR_FROM_FRONT, EGO_FROM_REAR):
        got = calibration.transform_for(expected.child)
        assert got is not None and got.isclose(expected, atol=1e-12)


def test_fusion_yaml_round_trips_cameras_topics_and_both_transform_spellings(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(_yaml_text(_fusion_document()))
    _check_rig(load_calibration(path), path)


def test_fusion_json_round_trips_and_accepts_a_nested_k(tmp_path: Path) -> None:
    document = _fusion_document()
    document["cameras"][1]["K"] = FISHEYE.K.tolist()  # [[...], [...], [...]]
    path = tmp_path / "rig.json"
    path.write_text(json.dumps(document, indent="\t"))
    _check_rig(load_calibration(path), path)


def test_fusion_calibration_lookup_composes_either_way_round() -> None:
    calibration = Calibration(
        cameras={"front": FRONT},
        transforms=(EGO_FROM_LIDAR, LIDAR_FROM_FRONT, EGO_FROM_REAR),
        source="test",
    )
    front_from_rear = calibration.lookup("camera_front_optical", "/camera_rear_optical")
    expected = LIDAR_FROM_FRONT.inverse() @ EGO_FROM_LIDAR.inverse() @ EGO_FROM_REAR
    assert front_from_rear.isclose(expected, atol=1e-12)
    assert calibration.lookup("lidar_top", "lidar_top").isclose(Transform.identity("lidar_top"))
    assert calibration.camera_for_frame("/camera_front_optical") is FRONT
    assert calibration.camera_for_frame("camera_rear_optical") is None
    assert calibration.transform_for("base_link") is None
    assert calibration.frames == ("base_link", "camera_front_optical", "camera_rear_optical", "lidar_top")
    with pytest.raises(CalibrationError, match="no transform mentions frame 'velodyne'"):
        calibration.lookup("velodyne", "lidar_top")
    x_from_y = Transform("x", "y", np.eye(3), np.zeros(3))
    apart = Calibration(cameras={}, transforms=(EGO_FROM_LIDAR, x_from_y), source="test")
    with pytest.raises(CalibrationError, match="test: no chain of transforms from 'x' to 'lidar_top'"):
        apart.lookup("lidar_top", "x")


def test_merged_over_replaces_the_other_calibration_sensor_by_sensor() -> None:
    bag_front = Camera("front_cam", "camera_front_optical", 640, 480, "plumb_bob", np.eye(3), ())
    bag_side = Camera("side", "camera_side_optical", 640, 480, "plumb_bob", np.eye(3), ())
    front_from_lidar = LIDAR_FROM_FRONT.inverse()  # the bag has the file's edge the other way round
    ego_from_side = Transform("base_link", "camera_side_optical", np.eye(3), np.ones(3))
    bag = Calibration(
        cameras={"front_cam": bag_front, "side": bag_side},
        transforms=(front_from_lidar, ego_from_side),
        source="bag drive.mcap",
        camera_topics={"front_cam": "/front", "side": "/side"},
    )
    file = Calibration(cameras={"front": FRONT}, transforms=(LIDAR_FROM_FRONT,), source="rig.yaml")
    merged = file.merged_over(bag)
    assert merged.source == "rig.yaml over bag drive.mcap"
    assert dict(merged.cameras) == {"side": bag_side, "front": FRONT}
    assert dict(merged.camera_topics) == {"side": "/side"}
    assert merged.transforms == (ego_from_side, LIDAR_FROM_FRONT)
    more = Calibration(cameras={}, transforms=(EGO_FROM_LIDAR, EGO_FROM_REAR), source="rear.yaml")
    kept = more.merged_over(merged)
    assert kept.transforms == (ego_from_side, LIDAR_FROM_FRONT, EGO_FROM_LIDAR, EGO_FROM_REAR)
    assert kept.lookup("camera_rear_optical", "camera_front_optical").isclose(
        EGO_FROM_REAR.inverse() @ EGO_FROM_LIDAR @ LIDAR_FROM_FRONT, atol=1e-12
    )


def test_a_calibration_must_be_a_tree() -> None:
    other_parent = Transform("map", "lidar_top", np.eye(3), np.zeros(3))
    with pytest.raises(CalibrationError, match="frame 'lidar_top' has two parents, 'base_link' and 'map'"):
        Calibration(cameras={}, transforms=(EGO_FROM_LIDAR, other_parent), source="x")
    loop = Transform("lidar_top", "base_link", np.eye(3), np.zeros(3))
    with pytest.raises(CalibrationError, match="closes a loop"):
        Calibration(cameras={}, transforms=(EGO_FROM_LIDAR, loop), source="x")
    twin = Camera("twin", FRONT.frame_id, 10, 10, "plumb_bob", np.eye(3), ())
    with pytest.raises(CalibrationError, match="share the frame 'camera_front_optical'"):
        Calibration(cameras={"front": FRONT, "twin": twin}, transforms=(), source="x")
    with pytest.raises(CalibrationError, match="filed under the name 'back'"):
        Calibration(cameras={"back": FRONT}, transforms=(), source="x")


# ---- ROS camera_calibration YAML -----------------------------------------------------------------

ROS_YAML = """image_width: 1920
image_height: 1080
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [1000.0, 0.5, 960.0, 0.0, 1002.0, 540.0, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.1, 0.01, 0.001, -0.002, 0.0005]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [990.0, 0, 960.0, 0, 0, 995.0, 540.0, 0, 0, 0, 1, 0]
"""


def test_ros_camera_calibration_yaml_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "narrow.yaml"
    path.write_text(ROS_YAML)
    calibration = load_calibration(path)
    assert calibration.transforms == ()
    camera = calibration.cameras["narrow_stereo"]
    _same_camera(camera, Camera("narrow_stereo", "narrow_stereo", 1920, 1080, "plumb_bob", FRONT.K, FRONT.D))
    in_frame = load_calibration(path, frame_id="/camera_front_optical").cameras["narrow_stereo"]
    assert in_frame.frame_id == "/camera_front_optical"
    assert load_calibration(path, frame_id="camera_front_optical").camera_for_frame("camera_front_optical")


def test_ros_yaml_without_distortion_loads_a_pinhole(tmp_path: Path) -> None:
    path = tmp_path / "pinhole.yaml"
    text = ROS_YAML.replace("cols: 5\n  data: [-0.1, 0.01, 0.001, -0.002, 0.0005]", "cols: 0\n  data: []")
    path.write_text(text.replace("camera_name: narrow_stereo\n", ""))
    camera = load_calibration(path).cameras["pinhole"]  # no camera_name: the file's stem
    assert camera.D == (0.0,) * 5


# ---- KITTI object / tracking ---------------------------------------------------------------------


def _kitti_matrices() -> dict[str, np.ndarray]:
    """KITTI-like matrices: P0..P3 with baselines, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo."""
    k = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
    baselines = [(0.0, 0.0, 0.0), (-0.537, 0.0, 0.0), (0.06, -0.0003, 0.0027), (-0.47, 0.0024, 0.0027)]
    out = {f"P{i}": k @ np.column_stack([np.eye(3), b]) for i, b in enumerate(baselines)}
    out["R0_rect"] = quaternion_to_rotation([0.002, -0.004, -0.005, 1.0])
    cam_from_velo = quaternion_to_rotation([0.5013, -0.4992, 0.4973, 0.5021])
    out["Tr_velo_to_cam"] = np.column_stack([cam_from_velo, [-0.0041, -0.0763, -0.2718]])
    out["Tr_imu_to_velo"] = np.column_stack(
        [quaternion_to_rotation([0.0074, -0.001, -0.0004, 1.0]), [-0.81, 0.32, -0.8]]
    )
    return out


def _kitti_text(matrices: dict[str, np.ndarray], *, tracking: bool = False) -> str:
    names = {"R0_rect": "R_rect", "Tr_velo_to_cam": "Tr_velo_cam", "Tr_imu_to_velo": "Tr_imu_velo"}
    lines = []
    for key, m in matrices.items():
        values = " ".join(f"{v:.12e}" for v in m.reshape(-1))
        lines.append(f"{names[key]} {values}" if tracking and key in names else f"{key}: {values}")
    return "\n".join(lines) + "\n"


def _homogeneous(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def _velodyne_points(n: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.column_stack([rng.uniform(3, 70, n), rng.uniform(-30, 30, n), rng.uniform(-2, 3, n)])


def _check_kitti(calibration: Calibration, matrices: dict[str, np.ndarray]) -> None:
    assert sorted(calibration.cameras) == ["image_00", "image_01", "image_02", "image_03"]
    points = _velodyne_points()
    for i in range(4):
        camera = calibration.cameras[f"image_0{i}"]
        assert camera.frame_id == f"cam{i}_rect" and camera.D == (0.0,) * 5
        p = matrices[f"P{i}"] @ _homogeneous(matrices["R0_rect"]) @ _homogeneous(matrices["Tr_velo_to_cam"])
        h = np.column_stack([points, np.ones(len(points))]) @ p.T
        uv, depth, _ = project_points(points, camera, calibration.lookup(camera.frame_id, "velodyne"))
        np.testing.assert_allclose(uv, h[:, :2] / h[:, 2:3], rtol=0, atol=1e-6)
        np.testing.assert_allclose(depth, h[:, 2], rtol=0, atol=1e-9)
    velodyne_from_imu = calibration.lookup("velodyne", "imu")
    np.testing.assert_allclose(velodyne_from_imu.matrix[:3], matrices["Tr_imu_to_velo"], atol=1e-12)


def test_kitti_object_calib_projects_as_p_r0_tr(tmp_path: Path) -> None:
    matrices = _kitti_matrices()
    path = tmp_path / "calib.txt"
    path.write_text(_kitti_text(matrices))
    calibration = load_calibration(path, image_size=(1224, 370))
    _check_kitti(calibration, matrices)
    assert {(c.width, c.height) for c in calibration.cameras.values()} == {(1224, 370)}
    assert {(t.parent, t.child) for t in calibration.transforms} == {
        ("rect", "cam0_rect"),
        ("rect", "cam1_rect"),
        ("rect", "cam2_rect"),
        ("rect", "cam3_rect"),
        ("rect", "cam0"),
        ("cam0", "velodyne"),
        ("velodyne", "imu"),
    }


def test_kitti_tracking_spellings_without_colons_load_the_same(tmp_path: Path) -> None:
    matrices = _kitti_matrices()
    path = tmp_path / "0000.txt"
    path.write_text(_kitti_text(matrices, tracking=True))
    assert "R_rect 9" in path.read_text() and "Tr_velo_cam " in path.read_text()
    _check_kitti(load_calibration(path), matrices)


def test_kitti_image_size_comes_from_the_image_beside_the_calib(tmp_path: Path) -> None:
    (tmp_path / "calib").mkdir()
    (tmp_path / "image_2").mkdir()
    path = tmp_path / "calib" / "000007.txt"
    path.write_text(_kitti_text(_kitti_matrices()))
    assert cv2.imwrite(str(tmp_path / "image_2" / "000007.png"), np.zeros((370, 1224, 3), np.uint8))
    cameras = load_calibration(path).cameras
    assert (cameras["image_02"].width, cameras["image_02"].height) == (1224, 370)
    assert (cameras["image_03"].width, cameras["image_03"].height) == (1242, 375)  # the default


# ---- KITTI raw -----------------------------------------------------------------------------------


def _write_kitti_raw(folder: Path) -> dict[str, np.ndarray]:
    """calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt as KITTI writes them."""
    m = _kitti_matrices()
    d = np.array([-0.37, 0.2, 0.0022, 0.0014, -0.072])
    k_raw = np.array([[984.2, 0.0, 690.0], [0.0, 980.8, 233.2], [0.0, 0.0, 1.0]])
    lines = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    rows = {}
    for i in range(4):
        r_i = quaternion_to_rotation([0.001 * i, -0.002 * i, 0.0005, 1.0])
        t_i = np.array([-0.537 * (i % 2), 0.004 * i, -0.01 * i])
        rows[f"R_0{i}"], rows[f"T_0{i}"] = r_i, t_i
        for key, value in (
            (f"S_0{i}", np.array([1392.0, 512.0])),
            (f"K_0{i}", k_raw),
            (f"D_0{i}", d),
            (f"R_0{i}", r_i),
            (f"T_0{i}", t_i),
            (f"S_rect_0{i}", np.array([1242.0, 375.0])),
            (f"R_rect_0{i}", m["R0_rect"]),
            (f"P_rect_0{i}", m[f"P{i}"]),
        ):
            lines.append(f"{key}: " + " ".join(f"{v:.12e}" for v in value.reshape(-1)))
    (folder / "calib_cam_to_cam.txt").write_text("\n".join(lines) + "\n")
    for name, rt in (
        ("calib_velo_to_cam.txt", m["Tr_velo_to_cam"]),
        ("calib_imu_to_velo.txt", m["Tr_imu_to_velo"]),
    ):
        r = " ".join(f"{v:.12e}" for v in rt[:, :3].reshape(-1))
        t = " ".join(f"{v:.12e}" for v in rt[:, 3])
        (folder / name).write_text(f"calib_time: 15-Mar-2012 11:37:16\nR: {r}\nT: {t}\n")
    return {**m, **rows}


def test_kitti_raw_folder_or_any_of_its_files_gives_the_rectified_cameras(tmp_path: Path) -> None:
    matrices = _write_kitti_raw(tmp_path)
    for path in (tmp_path, tmp_path / "calib_cam_to_cam.txt", tmp_path / "calib_velo_to_cam.txt"):
        calibration = load_calibration(path)
        assert calibration.source == str(tmp_path / "calib_cam_to_cam.txt")
        _check_kitti(calibration, matrices)
        assert {(c.width, c.height) for c in calibration.cameras.values()} == {(1242, 375)}


def test_kitti_raw_unrectified_gives_the_raw_cameras(tmp_path: Path) -> None:
    matrices = _write_kitti_raw(tmp_path)
    calibration = load_calibration(tmp_path, unrectified=True)
    camera = calibration.cameras["image_02"]
    assert (camera.frame_id, camera.width, camera.height, camera.model) == ("cam2", 1392, 512, "plumb_bob")
    np.testing.assert_allclose(camera.D, [-0.37, 0.2, 0.0022, 0.0014, -0.072])
    cam2_from_cam0 = calibration.lookup("cam2", "cam0")
    np.testing.assert_allclose(cam2_from_cam0.rotation, matrices["R_02"], atol=1e-12)
    np.testing.assert_allclose(cam2_from_cam0.translation, matrices["T_02"], atol=1e-12)


# ---- bad files -----------------------------------------------------------------------------------


def _error(path: Path, **kwargs: Any) -> str:
    with pytest.raises(CalibrationError) as info:
        load_calibration(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _kitti_file(tmp_path: Path, edit: dict[int, str | None]) -> Path:
    """The KITTI calib with line i (1-based) replaced (None: removed)."""
    lines = _kitti_text(_kitti_matrices()).splitlines()
    for number, text in edit.items():
        lines[number - 1] = text if text is not None else ""
    path = tmp_path / "calib.txt"
    path.write_text("\n".join(line for line in lines if line) + "\n")
    return path


def test_kitti_truncated_line_names_file_line_and_count(tmp_path: Path) -> None:
    path = _kitti_file(tmp_path, {3: "P2: 7.215377e+02 0.0 6.095593e+02"})
    message = _error(path)
    assert re.match(rf"{re.escape(str(path))}:3: P2 has 3 numbers, expected 12 \(3x4 row-major\); ", message)


def test_kitti_non_numeric_value_names_file_line_and_token(tmp_path: Path) -> None:
    values = " ".join(["1.0"] * 8 + ["abc"])
    message = _error(_kitti_file(tmp_path, {5: f"R0_rect: {values}"}))
    assert re.match(rf"{re.escape(str(tmp_path / 'calib.txt'))}:5: R0_rect: 'abc' is not a number;", message)


def test_kitti_missing_key_names_the_key_and_its_spellings(tmp_path: Path) -> None:
    message = _error(_kitti_file(tmp_path, {6: None}))  # no Tr_velo_to_cam
    assert re.match(
        rf"{re.escape(str(tmp_path / 'calib.txt'))}:6: reached the end of the file without a "
        r"Tr_velo_to_cam or Tr_velo_cam line; add 'Tr_velo_to_cam: '",
        message,
    )


def test_kitti_stray_and_duplicate_lines_name_their_line(tmp_path: Path) -> None:
    assert ":4: expected 'KEY: numbers', got '%%% 1 2'" in _error(_kitti_file(tmp_path, {4: "%%% 1 2"}))
    p1 = _kitti_text(_kitti_matrices()).splitlines()[1]
    assert ":4: P1 appears again (first on line 2)" in _error(_kitti_file(tmp_path, {4: p1}))


def test_kitti_non_rigid_transform_names_its_line(tmp_path: Path) -> None:
    values = " ".join(["2.0", "0", "0", "0", "0", "1", "0", "0", "0", "0", "1", "0"])
    message = _error(_kitti_file(tmp_path, {6: f"Tr_velo_to_cam: {values}"}))
    assert re.match(rf"{re.escape(str(tmp_path / 'calib.txt'))}:6: Tr_velo_to_cam: .* is not rigid", message)


def test_kitti_raw_errors_name_the_file_they_are_in(tmp_path: Path) -> None:
    _write_kitti_raw(tmp_path)
    velo = tmp_path / "calib_velo_to_cam.txt"
    velo.write_text(velo.read_text().rstrip().rsplit(" ", 1)[0] + "\n")  # T loses its z
    assert re.match(rf"{re.escape(str(velo))}:3: T has 2 numbers, expected 3 \(x y z\)", _error(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no calib_cam_to_cam.txt here; pass a KITTI raw date folder" in _error(empty)
    alone = empty / "calib_velo_to_cam.txt"
    alone.write_text(velo.read_text())
    assert f"{alone}:1: a KITTI raw R/T file without calib_cam_to_cam.txt beside it" in _error(alone)


def _yaml_file(tmp_path: Path, text: str, name: str = "rig.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    text = "cameras:\n  - name: front\n    K: [1, 2, 3\n    width: 10\n"
    message = _error(_yaml_file(tmp_path, text))
    assert re.match(rf"{re.escape(str(tmp_path / 'rig.yaml'))}:4: not valid YAML \(", message)


def test_json_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    text = '{\n  "cameras": [\n    {"name": "front" "width": 3}\n  ]\n}\n'
    message = _error(_yaml_file(tmp_path, text, "rig.json"))
    assert re.match(rf"{re.escape(str(tmp_path / 'rig.json'))}:3: not valid JSON \(", message)


def _rig_lines() -> list[str]:
    return _yaml_text(_fusion_document()).splitlines()


def _line_number(lines: list[str], start: str) -> int:
    return next(i for i, line in enumerate(lines, start=1) if line.strip().startswith(start))


def test_missing_key_names_the_key_and_the_line_of_its_mapping(tmp_path: Path) -> None:
    lines = _rig_lines()
    height = _line_number(lines, "height: 1080")
    del lines[height - 1]
    message = _error(_yaml_file(tmp_path, "\n".join(lines) + "\n"))
    first_camera = _line_number(lines, "- name: front")
    assert re.match(
        rf".*rig\.yaml:{first_camera}: camera 'front' has no 'height'; add height: 1080$", message
    )


def test_non_numeric_value_names_the_line_of_the_value(tmp_path: Path) -> None:
    text = _yaml_text(_fusion_document()).replace("- 1002.0", "- fast", 1)
    lines = text.splitlines()
    message = _error(_yaml_file(tmp_path, text))
    line = _line_number(lines, "- fast")
    assert re.match(rf".*rig\.yaml:{line}: camera 'front': 'K' holds 'fast', not a finite number", message)


def test_unknown_keys_models_and_formats_are_named(tmp_path: Path) -> None:
    doc = _fusion_document()
    doc["cameras"][0]["focal"] = 3
    assert "camera 'front' has an unknown key 'focal'; the keys are name, frame_id" in _error(
        _yaml_file(tmp_path, _yaml_text(doc))
    )
    doc = _fusion_document()
    doc["cameras"][0]["model"] = "fisheye"
    message = _error(_yaml_file(tmp_path, _yaml_text(doc)))
    assert (
        "camera 'front': distortion model 'fisheye' is not supported; write model: one of plumb_bob"
        in message
    )
    doc = _fusion_document()
    doc["transforms"][1]["child"] = "lidar_top"
    assert "frame 'lidar_top' already has the parent 'base_link'" in _error(
        _yaml_file(tmp_path, _yaml_text(doc))
    )
    for text in ("hello: world\n", "- 1\n- 2\n", "just words\n"):
        message = _error(_yaml_file(tmp_path, text))
        assert message.startswith(
            f"{tmp_path / 'rig.yaml'}:1: not a calibration format fusion reads; write one of:"
        )
        assert all(f in message for f in FORMATS)
    assert ":1: the file is empty" in _error(_yaml_file(tmp_path, "\n\n"))
    assert "no such file or folder" in _error(tmp_path / "missing.yaml")


def test_ros_yaml_errors_name_the_key_and_line(tmp_path: Path) -> None:
    text = ROS_YAML.replace(
        "  rows: 3\n  cols: 3\n  data: [1000.0", "  rows: 3\n  cols: 3\n  data: [1000.0, 7", 1
    )
    message = _error(_yaml_file(tmp_path, text, "cam.yaml"))
    assert re.match(r".*cam\.yaml:7: 'camera_matrix': 'data' has 10 numbers, expected 9", message)
    message = _error(_yaml_file(tmp_path, ROS_YAML.replace("image_height: 1080\n", ""), "cam.yaml"))
    assert re.match(
        r".*cam\.yaml:1: the camera_calibration file has no 'image_height'; add image_height: 480$", message
    )


def test_options_for_another_format_are_refused(tmp_path: Path) -> None:
    kitti = tmp_path / "calib.txt"
    kitti.write_text(_kitti_text(_kitti_matrices()))
    assert f"{kitti}: frame_id does not apply to a KITTI object/tracking calib.txt" in _error(
        kitti, frame_id="cam"
    )
    ros = _yaml_file(tmp_path, ROS_YAML, "cam.yaml")
    assert "image_size, unrectified does not apply to a ROS camera_calibration YAML" in _error(
        ros, image_size=(10, 10), unrectified=True
    )
