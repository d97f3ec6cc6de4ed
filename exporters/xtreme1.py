"""Xtreme1's dataset upload layout (a LiDAR-fusion dataset with pre-label results), written and read back.

Sources for the layout (Xtreme1, github.com/xtreme1-io/xtreme1, Apache-2.0):

- the upload parser, backend/src/main/java/ai/basic/x1/usecase/UploadDataUseCase.java
  (`commonParseUploadFile`, `getSingleDataFiles`, `saveScene`, `handleDataResult`) and the folder
  names in backend/src/main/java/ai/basic/x1/util/Constants.java: a folder holding
  `lidar_point_cloud_<i>/`, `camera_image_<i>/` and `camera_config/` is a group of frames, and a
  group whose folder name starts with `scene_` becomes one Scene (continuous frames); one frame
  ("data") is the set of files with the same name stem across those folders; its pre-labels are
  `result/<data name>.json` in the same group (a JSON object with `objects`, or an array of such);
- Xtreme1's documentation, "Data annotation result"
  (https://docs.xtreme1.io/xtreme1-docs/export-data/data-annotation-result), for an object:
  `type` "3D_BOX", `className`, `trackId`, `trackName`, `contour` {`center3D`, `rotation3D`,
  `size3D`, `pointN`}, `modelConfidence`, `modelClass`; and its upload-format page for
  `camera_config/<data name>.json`: a list, one entry per `camera_image_<i>` in order, of
  {`camera_internal`: {fx, fy, cx, cy}, `camera_external`: 16 numbers, the 4x4 transform from
  the LiDAR frame into the camera frame, `rowMajor`: true, `width`, `height`}.

Written under `--dest`::

    scene_<sid>/lidar_point_cloud_0/<name>.pcd     lidar frame, fields x y z intensity (binary, open3d)
    scene_<sid>/camera_image_<i>/<name>.jpg        camera i's image of that sweep, undistorted
    scene_<sid>/camera_config/<name>.json          entry i: camera_image_<i> (cameras with images)
    scene_<sid>/result/<name>.json                 {"objects": [3D_BOX, ...]} the pre-labels

`<name>` is "<frame_index:06d>_<timestamp_ns>" (Xtreme1 orders a scene's frames by natural sort
of the names, so the frame order is kept and the stamp travels in the name).

Xtreme1's camera model is a pinhole without distortion, so each image is undistorted with OpenCV
onto the camera's own K (`cv2.undistort`, `cv2.fisheye.undistortImage` for equidistant) and the
config gives that K: Xtreme1's projection of a box then lands where the object is in the image.

A box is `center3D` = (x, y, z) in the lidar frame, `rotation3D` = (0, 0, yaw), `size3D` =
(length, width, height), `trackId` = `trackName` = the track id, `modelConfidence` = the score,
`className` = `modelClass` = the category, `contour.pointN` = num_points.

What a round trip (write -> `read_xtreme1`) loses: world coordinates, poses and velocities (the
upload format has no poses), `origin`, the camera projections (Xtreme1 projects the 3D boxes
itself), lens distortion (images are undistorted), the per-point time offsets, and images of frames
where a camera had no synchronised image (that frame has no file in `camera_image_<i>`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from calib.camera import Camera
from exporters.dataset import SequenceCamera
from exporters.errors import ExportError
from exporters.labels import labels_from_rows
from exporters.reader import Sequence

POINT_CLOUD_DIR: Final = "lidar_point_cloud_0"
CONFIG_DIR: Final = "camera_config"
RESULT_DIR: Final = "result"
SCENE_PREFIX: Final = "scene_"


def image_dir(index: int) -> str:
    return f"camera_image_{index}"


def data_name(frame_index: int, timestamp_ns: int) -> str:
    return f"{frame_index:06d}_{timestamp_ns}"


class Xtreme1Exporter:
    """`fusion export --format xtreme1`: `<dest>/scene_<sid>/` per sequence."""

    name = "xtreme1"

    def export(self, sequence: Sequence, dest: Path) -> list[Path]:
        scene = dest / f"{SCENE_PREFIX}{sequence.sequence_id}"
        write_scene(sequence, scene)
        return [scene]


def write_scene(sequence: Sequence, scene: Path) -> None:
    """Write one sequence as an Xtreme1 scene folder at `scene` (which must not exist)."""
    import cv2

    if not sequence.has_points:
        raise ExportError(
            f"{sequence.paths['points']}: sequence {sequence.sequence_id!r} has no points stored; "
            "Xtreme1 needs a point cloud per frame: re-run fusion without --no-points"
        )
    stored = set(sequence.image_cameras())  # cameras without stored images are left out
    cameras = [SequenceCamera.from_json(c) for c in sequence.cameras if c["name"] in stored]
    frames = sequence.frames().to_pylist()
    labels = sequence.labels().to_pylist()
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for label in labels:
        by_frame.setdefault(int(label["frame_index"]), []).append(label)
    for folder in (POINT_CLOUD_DIR, CONFIG_DIR, RESULT_DIR):
        (scene / folder).mkdir(parents=True, exist_ok=True)
    for i in range(len(cameras)):
        (scene / image_dir(i)).mkdir(exist_ok=True)
    config = [camera_config(cam) for cam in cameras]
    for frame in frames:
        index = int(frame["frame_index"])
        name = data_name(index, int(frame["timestamp_ns"]))
        xyz, intensity, _ = sequence.points(index)
        write_pcd(scene / POINT_CLOUD_DIR / f"{name}.pcd", xyz, intensity)
        (scene / CONFIG_DIR / f"{name}.json").write_text(json.dumps(config), encoding="utf-8")
        chosen = {c["name"] for c in frame["cameras"]}
        for i, cam in enumerate(cameras):
            if cam.camera.name not in chosen:
                continue
            rgb = undistort(cam.camera, sequence.image(cam.camera.name, index))
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ExportError(
                    f"cannot encode the image of camera {cam.camera.name} frame {index} as JPEG"
                )
            (scene / image_dir(i) / f"{name}.jpg").write_bytes(jpeg.tobytes())
        objects = [_object(label) for label in by_frame.get(index, [])]
        (scene / RESULT_DIR / f"{name}.json").write_text(json.dumps({"objects": objects}), encoding="utf-8")


def camera_config(camera: SequenceCamera) -> dict[str, Any]:
    """One entry of `camera_config/<name>.json` (the undistorted image's pinhole camera)."""
    k = np.asarray(camera.camera.K, dtype=np.float64)
    camera_from_lidar = camera.lidar_from_camera.inverse().matrix
    return {
        "camera_internal": {
            "fx": float(k[0, 0]),
            "fy": float(k[1, 1]),
            "cx": float(k[0, 2]),
            "cy": float(k[1, 2]),
        },
        "camera_external": [float(v) for v in camera_from_lidar.reshape(16)],
        "rowMajor": True,
        "width": int(camera.camera.width),
        "height": int(camera.camera.height),
    }


def undistort(camera: Camera, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """`rgb` (H, W, 3) uint8 of `camera`'s raw image, undistorted onto the same K: (H, W, 3) uint8."""
    import cv2

    k = np.asarray(camera.K, dtype=np.float64)
    d = np.asarray(camera.D, dtype=np.float64)
    if not d.any():
        return rgb
    if camera.model == "equidistant":
        out = cv2.fisheye.undistortImage(rgb, k, d.reshape(4, 1), Knew=k)
    else:
        out = cv2.undistort(rgb, k, d)
    return np.asarray(out, dtype=np.uint8)


def write_pcd(path: Path, xyz: npt.NDArray[np.float32], intensity: npt.NDArray[np.float32]) -> None:
    """A binary PCD with fields x y z intensity (float32) via open3d's tensor point cloud.

    xyz: (N, 3) float32, intensity: (N,) float32.
    """
    import open3d as o3d

    cloud = o3d.t.geometry.PointCloud()
    cloud.point.positions = o3d.core.Tensor.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32))
    cloud.point.intensity = o3d.core.Tensor.from_numpy(
        np.ascontiguousarray(intensity, dtype=np.float32).reshape(-1, 1)
    )
    if not o3d.t.io.write_point_cloud(path, cloud, write_ascii=False):
        raise ExportError(f"cannot write {path}: open3d could not write the PCD file")


def read_pcd(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """xyz (N, 3) float32 and intensity (N,) float32 of a PCD file `write_pcd` wrote."""
    import open3d as o3d

    cloud = o3d.t.io.read_point_cloud(path)
    xyz = np.asarray(cloud.point.positions.numpy(), dtype=np.float32)
    if "intensity" not in cloud.point:
        raise ExportError(f"{path}: has no intensity field")
    return xyz, np.asarray(cloud.point.intensity.numpy(), dtype=np.float32).reshape(-1)


def _object(label: dict[str, Any]) -> dict[str, Any]:
    track = str(int(label["track_id"]))
    return {
        "type": "3D_BOX",
        "className": str(label["category"]),
        "trackId": track,
        "trackName": track,
        "contour": {
            "center3D": {"x": float(label["x"]), "y": float(label["y"]), "z": float(label["z"])},
            "rotation3D": {"x": 0.0, "y": 0.0, "z": float(label["yaw"])},
            "size3D": {"x": float(label["length"]), "y": float(label["width"]), "z": float(label["height"])},
            "pointN": int(label["num_points"]),
            "points": [],
        },
        "modelConfidence": float(label["score"]),
        "modelClass": str(label["category"]),
    }


def read_xtreme1(scene: Path | str) -> pa.Table:
    """The pre-labels of a scene folder `write_scene` wrote, as a labels table (lidar frame).

    The sequence id is the folder name without `scene_`; frame index and stamp come from the data
    names. Raises `ExportError` naming the file for a malformed result.
    """
    folder = Path(scene)
    sid = folder.name[len(SCENE_PREFIX) :] if folder.name.lower().startswith(SCENE_PREFIX) else folder.name
    rows: dict[str, list[Any]] = {k: [] for k in ("frame", "stamp", "track", "category", "score", "points")}
    boxes = []
    for path in sorted((folder / RESULT_DIR).glob("*.json")):
        try:
            index_text, stamp_text = path.stem.split("_")
            index, stamp = int(index_text), int(stamp_text)
            objects = json.loads(path.read_text(encoding="utf-8"))["objects"]
            for obj in objects:
                contour = obj["contour"]
                c, r, s = contour["center3D"], contour["rotation3D"], contour["size3D"]
                boxes.append([c["x"], c["y"], c["z"], s["x"], s["y"], s["z"], r["z"]])
                rows["frame"].append(index)
                rows["stamp"].append(stamp)
                rows["track"].append(int(obj["trackId"]))
                rows["category"].append(str(obj.get("modelClass") or obj["className"]))
                rows["score"].append(float(obj["modelConfidence"]))
                rows["points"].append(int(contour.get("pointN", 0)))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ExportError(f"{path}: not a result file fusion wrote ({err!r})") from err
    return labels_from_rows(sid, rows, boxes)
