"""Calibration files: `load_calibration(path)` reads any of four formats, recognised by content.

For logs that carry no calibration (no CameraInfo, no /tf_static) or carry it wrong. The result
is a `calib.calibration.Calibration`; ``--calibration FILE`` merges it over the bag's, per sensor
(a camera replaces the bag's camera in the same frame, a transform the bag's transform of the same
child frame).

Formats
-------

1. **fusion calibration (YAML or JSON)**, our own. Both lists are optional; unknown keys are errors::

       cameras:
         - name: front                        # unique; how the pipeline names this camera
           frame_id: camera_front_optical     # the optical frame (x right, y down, z forward)
           topic: /camera_front/image_raw     # optional: the image topic this camera applies to
           width: 1920                        # image size in pixels
           height: 1080
           model: plumb_bob                   # plumb_bob | rational_polynomial | equidistant
           K: [1000, 0, 960, 0, 1000, 540, 0, 0, 1]   # 3x3 row-major, of the raw (distorted) image
           D: [-0.1, 0.01, 0, 0, 0]           # the model's coefficients (see calib.camera); [] = none
       transforms:                            # static extrinsics, each parent_from_child
         - parent: base_link                  # ego_from_sensor ...
           child: lidar_top
           matrix: [1, 0, 0, 1.2,  0, 1, 0, 0,  0, 0, 1, 1.8,  0, 0, 0, 1]   # 4x4 row-major
         - parent: lidar_top                  # ... or lidar_from_camera
           child: camera_front_optical
           translation: [0.1, 0.0, -0.2]      # metres
           rotation_xyzw: [-0.5, 0.5, -0.5, 0.5]   # unit quaternion x, y, z, w

   A transform maps points of ``child`` into ``parent`` (``p_parent = R p_child + t``): it is the
   pose of the child sensor in the parent frame, as a TF message from ``parent`` to ``child``.
   Every child frame appears once (a tree). JSON files use the same keys.

2. **ROS camera_calibration YAML** (what ``cameracalibrator`` writes and ``camera_info_manager``
   reads): ``image_width``, ``image_height``, ``camera_name``, ``camera_matrix``,
   ``distortion_model``, ``distortion_coefficients`` (each matrix as ``{rows, cols, data}``);
   ``rectification_matrix`` and ``projection_matrix`` are read but not used. One camera, of the
   raw image (K, D). Its name is ``camera_name`` (else the file stem) and its frame_id is the
   ``frame_id`` argument, else ``camera_name``: pass the frame of the camera's Image messages.
   No transforms.

3. **KITTI object / tracking ``calib.txt``**: lines ``KEY: 12 or 9 numbers``: ``P0``..``P3``
   (3x4), ``R0_rect`` (3x3), ``Tr_velo_to_cam`` (3x4), ``Tr_imu_to_velo`` (3x4, optional). The
   tracking spellings ``R_rect``, ``Tr_velo_cam``, ``Tr_imu_velo``, with or without the colon, are
   accepted. At least one ``P``, ``R0_rect`` and ``Tr_velo_to_cam`` are required. Each ``Pi``
   gives a rectified pinhole camera ``image_0i`` (no distortion, ``K = Pi[:, :3]``) in frame
   ``cami_rect``, whose offset from the reference frame is ``K^-1 Pi[:, 3]`` (the stereo
   baseline). The file has no image size: ``image_size=(w, h)`` sets it; else the size of the
   PNG beside the calib file in the KITTI layout is read (``../image_<i>/<stem>.png`` for object,
   ``../image_0<i>/<stem>/`` for tracking); else 1242x375 is assumed.

4. **KITTI raw** ``calib_cam_to_cam.txt`` + ``calib_velo_to_cam.txt`` (+ ``calib_imu_to_velo.txt``):
   pass the date folder or any of the files; the others are found beside it (velo and imu are
   optional). By default the cameras are the rectified ones (``P_rect_0i``, ``S_rect_0i``, frame
   ``cami_rect``), because the "synced+rectified" images of KITTI raw are rectified;
   ``unrectified=True`` gives the raw cameras instead (``K_0i``, ``D_0i`` as plumb_bob,
   ``S_0i``, frame ``cami``), for the "unsynced+unrectified" images. Camera names are
   ``image_00``..``image_03`` either way, like the dataset's folders.

KITTI frames
------------

A velodyne point reaches an image through the files' matrices, each ``p_to = M p_from``::

    imu --Tr_imu_to_velo--> velodyne --Tr_velo_to_cam--> cam0 --R0_rect--> rect --Pi baseline--> cami_rect

They are stored as static ``parent <- child`` transforms, one parent per frame, ``rect`` the root:
``velodyne <- imu``, ``cam0 <- velodyne``, ``rect <- cam0``, ``rect <- cami_rect`` (a pure
translation, whose inverse is exact), and for KITTI raw also ``cam0 <- cami`` (``[R_0i | T_0i]``
inverted). ``calibration.lookup("cam2_rect", "velodyne")`` with camera ``image_02`` projects
exactly as ``P2 @ R0_rect @ Tr_velo_to_cam`` does (the tests hold it to 1e-4 px on real frames).

    velodyne    the Velodyne HDL-64E; body axes              z (up)
    imu         the OXTS unit (KITTI's ego pose); body axes  |  x (forward)
                                                             | /
                                                     y ------o
                                                     (left)

    cam0        the left grey camera, unrectified: the frame Tr_velo_to_cam maps into
    rect        KITTI's rectified camera coordinates, where label_2 boxes live (bottom centre;
                a box's ry turns about y)
    cami_rect   the optical frame of rectified camera i, rect shifted by its baseline
                (cam2_rect: the left colour camera, the object dataset's image_2)
    cami        (KITTI raw) camera i's own unrectified optical frame
                all of them optical axes:          z (forward)
                                                  /
                                                 o------> x (right)
                                                 |
                                                 v y (down)

Errors: a file that does not parse raises CalibrationError ``FILE:LINE: what is wrong; the fix``
on one line (a missing key names the line where the file, or the mapping lacking it, ends or
starts); a file in none of the formats names the formats accepted.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from calib.calibration import Calibration
from calib.camera import DISTORTION_MODELS, Camera
from calib.errors import CalibrationError
from calib.transform import Transform

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

FORMATS: Final = (
    "fusion calibration YAML/JSON (cameras:, transforms:)",
    "ROS camera_calibration YAML (image_width, camera_matrix, ...)",
    "KITTI object/tracking calib.txt (P0..P3, R0_rect, Tr_velo_to_cam)",
    "KITTI raw calib_cam_to_cam.txt + calib_velo_to_cam.txt (or their folder)",
)
"""The formats `load_calibration` accepts, for messages."""

KITTI_DEFAULT_IMAGE_SIZE: Final = (1242, 375)
"""(width, height) assumed for KITTI object/tracking cameras when no image gives the size."""

# KITTI frame names (see the module docstring).
VELODYNE: Final = "velodyne"
IMU: Final = "imu"
CAM0: Final = "cam0"
RECT: Final = "rect"


def kitti_camera_name(index: int) -> str:
    """The camera name of KITTI camera `index` (0..3): "image_0<index>"."""
    return f"image_0{index}"


def kitti_rect_frame(index: int) -> str:
    """The optical frame of rectified KITTI camera `index`: "cam<index>_rect"."""
    return f"cam{index}_rect"


def kitti_raw_frame(index: int) -> str:
    """The optical frame of unrectified KITTI camera `index`: "cam<index>"."""
    return f"cam{index}"


# ---- entry point -------------------------------------------------------------------------------


def load_calibration(
    path: str | Path,
    *,
    frame_id: str | None = None,
    image_size: tuple[int, int] | None = None,
    unrectified: bool = False,
) -> Calibration:
    """The calibration in `path`, in any of the formats of the module docstring (by content).

    frame_id: ROS camera_calibration YAML only: the camera's frame (default: its camera_name).
    image_size: KITTI object/tracking only: (width, height) of every camera (default: read from
        the images beside the file, else KITTI_DEFAULT_IMAGE_SIZE).
    unrectified: KITTI raw only: the raw cameras (K, D) instead of the rectified ones.
    Raises CalibrationError "FILE:LINE: what; fix" for a file that does not parse, and one naming
    the accepted formats for a file in none of them.
    """
    p = Path(path)
    options = {
        "frame_id": frame_id is not None,
        "image_size": image_size is not None,
        "unrectified": unrectified,
    }

    def only(kind: str, *allowed: str) -> None:
        wrong = [name for name, given in options.items() if given and name not in allowed]
        if wrong:
            raise CalibrationError(
                f"{p}: {', '.join(wrong)} does not apply to a {kind}; leave it out for this file"
            )

    if p.is_dir():
        only("KITTI raw calibration", "unrectified")
        return _load_kitti_raw(p, p / _CAM_TO_CAM, unrectified=unrectified)
    text = _read_text(p)
    lines = text.splitlines()
    keys = _kitti_keys(lines)
    if keys & _KITTI_OBJECT_KEYS:
        only("KITTI object/tracking calib.txt", "image_size")
        return _load_kitti_object(p, lines, image_size)
    if any(_RAW_CAMERA_KEY.match(k) for k in keys):
        only("KITTI raw calibration", "unrectified")
        return _load_kitti_raw(p.parent, p, unrectified=unrectified)
    if {"R", "T"} <= keys and "calib_time" in keys:  # calib_velo_to_cam.txt or calib_imu_to_velo.txt
        if not (p.parent / _CAM_TO_CAM).is_file():
            raise CalibrationError(
                f"{p}:1: a KITTI raw R/T file without {_CAM_TO_CAM} beside it; put the date folder's "
                f"three calib_*.txt files together and pass the folder"
            )
        only("KITTI raw calibration", "unrectified")
        return _load_kitti_raw(p.parent, p.parent / _CAM_TO_CAM, unrectified=unrectified)
    data = _parse_yaml(p, text)
    if isinstance(data, Mapping) and ("camera_matrix" in data or "image_width" in data):
        only("ROS camera_calibration YAML", "frame_id")
        return _load_ros_yaml(p, data, frame_id)
    if isinstance(data, Mapping) and ("cameras" in data or "transforms" in data):
        only("fusion calibration")
        return _load_fusion(p, data)
    raise CalibrationError(
        f"{p}:1: not a calibration format fusion reads; write one of: {'; '.join(FORMATS)}"
    )


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise CalibrationError(
            f"{path}: no such file or folder; pass a calibration file or a KITTI raw folder"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CalibrationError(
            f"{path}: not a text file ({err.reason} at byte {err.start}); write one of: {'; '.join(FORMATS)}"
        ) from err
    if not text.strip():
        raise CalibrationError(f"{path}:1: the file is empty; write one of: {'; '.join(FORMATS)}")
    return text


def _at(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


# ---- KITTI text files --------------------------------------------------------------------------

_CAM_TO_CAM: Final = "calib_cam_to_cam.txt"
_VELO_TO_CAM: Final = "calib_velo_to_cam.txt"
_IMU_TO_VELO: Final = "calib_imu_to_velo.txt"

_KITTI_LINE: Final = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(?::|(?=\s)|$)(.*)$")
_KITTI_OBJECT_KEYS: Final = frozenset(
    {"P0", "P1", "P2", "P3", "R0_rect", "R_rect", "Tr_velo_to_cam", "Tr_velo_cam"}
)
_RAW_CAMERA_KEY: Final = re.compile(r"^(?:S|K|D|R|T|S_rect|R_rect|P_rect)_0[0-3]$")
_KITTI_SPELLINGS: Final = {
    "R0_rect": ("R0_rect", "R_rect"),
    "Tr_velo_to_cam": ("Tr_velo_to_cam", "Tr_velo_cam"),
    "Tr_imu_to_velo": ("Tr_imu_to_velo", "Tr_imu_velo"),
}


def _kitti_keys(lines: Sequence[str]) -> set[str]:
    """The leading keys of the lines that look like 'KEY: values' or 'KEY values'."""
    keys = set()
    for line in lines:
        m = _KITTI_LINE.match(line)
        if m:
            keys.add(m.group(1))
    return keys


class _KittiFile:
    """The 'KEY: values' lines of one KITTI calibration text file, values kept as text until used."""

    def __init__(self, path: Path, lines: Sequence[str]) -> None:
        self.path = path
        self.last_line = max(len(lines), 1)
        self.entries: dict[str, tuple[int, list[str]]] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = _KITTI_LINE.match(line)
            if m is None:
                raise CalibrationError(
                    f"{path}:{number}: expected 'KEY: numbers', got {line.strip()[:40]!r}; "
                    "fix or delete the line"
                )
            key = m.group(1)
            if key in self.entries:
                raise CalibrationError(
                    f"{path}:{number}: {key} appears again (first on line {self.entries[key][0]}); "
                    "keep one of them"
                )
            self.entries[key] = (number, m.group(2).split())

    def find(self, key: str) -> str | None:
        """The spelling of `key` (or of one of its KITTI aliases) this file uses, or None."""
        return next((k for k in _KITTI_SPELLINGS.get(key, (key,)) if k in self.entries), None)

    def has(self, key: str) -> bool:
        return self.find(key) is not None

    def numbers(self, key: str, count: int, shape: str) -> F64:
        """The `count` numbers of `key` (or an alias) as float64 (count,); raises when absent or bad."""
        spelling = self.find(key)
        if spelling is None:
            aliases = " or ".join(_KITTI_SPELLINGS.get(key, (key,)))
            raise CalibrationError(
                f"{self.path}:{self.last_line}: reached the end of the file without a {aliases} line; "
                f"add '{key}: ' and its {count} numbers ({shape})"
            )
        line, tokens = self.entries[spelling]
        values = []
        for token in tokens:
            try:
                value = float(token)
            except ValueError:
                raise CalibrationError(
                    f"{self.path}:{line}: {spelling}: {token[:30]!r} is not a number; write the {count} "
                    f"values ({shape}) as decimal numbers"
                ) from None
            if not math.isfinite(value):
                raise CalibrationError(
                    f"{self.path}:{line}: {spelling} holds {token!r}; every value must be finite"
                )
            values.append(value)
        if len(values) != count:
            raise CalibrationError(
                f"{self.path}:{line}: {spelling} has {len(values)} numbers, expected {count} ({shape}); "
                "the line is cut short or joined with another: restore it from the dataset"
            )
        return np.asarray(values, dtype=np.float64)

    def line_of(self, key: str) -> int:
        spelling = self.find(key)
        return self.entries[spelling][0] if spelling is not None else self.last_line

    def at(self, key: str) -> str:
        """ "FILE:LINE" of `key`, for messages."""
        return f"{self.path}:{self.line_of(key)}"


def _rigid(where: str, key: str, matrix: npt.ArrayLike, *, parent: str, child: str) -> Transform:
    """A Transform of a KITTI [R | t] (3, 4) or (4, 4), or R (3, 3); errors start with `where`."""
    given = np.asarray(matrix, dtype=np.float64)
    m = np.eye(4)
    m[:3, : min(given.shape[1], 4)] = given[:3, :4]
    try:
        return Transform.from_matrix(m, parent=parent, child=child)
    except CalibrationError as err:
        raise CalibrationError(f"{where}: {key}: {err}") from err


def _rectified_camera(
    where: str, key: str, index: int, projection: F64, size: tuple[int, int]
) -> tuple[Camera, Transform]:
    """Camera image_0i and `rect_from_cami_rect` of a rectified projection matrix P (3, 4) = K [I | t]."""
    k = projection[:, :3]
    if k[1, 0] != 0.0 or k[2, 0] != 0.0 or k[2, 1] != 0.0 or k[2, 2] != 1.0 or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise CalibrationError(
            f"{where}: {key} is not K [I | t] with K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
            f"(its left 3x3 is {k.tolist()}); a rectified KITTI projection has that form"
        )
    try:
        camera = Camera(
            name=kitti_camera_name(index),
            frame_id=kitti_rect_frame(index),
            width=size[0],
            height=size[1],
            model="plumb_bob",
            K=k.copy(),
            D=(),
        )
    except CalibrationError as err:
        raise CalibrationError(f"{where}: {key}: {err}") from err
    offset = np.asarray(np.linalg.solve(k, projection[:, 3]), dtype=np.float64)  # the stereo baseline
    rect_from_cam = Transform(RECT, kitti_rect_frame(index), np.eye(3), np.subtract(0.0, offset))
    return camera, rect_from_cam


def kitti_object_calibration(
    projections: Mapping[int, npt.ArrayLike],
    r0_rect: npt.ArrayLike,
    velo_to_cam: npt.ArrayLike,
    imu_to_velo: npt.ArrayLike | None = None,
    *,
    image_sizes: Mapping[int, tuple[int, int]] | None = None,
    source: str = "KITTI calibration",
) -> Calibration:
    """The calibration of KITTI object/tracking matrices (frames and names of the module docstring).

    For matrices read from elsewhere (e.g. an mmdetection3d info pkl).
    projections: camera index (0..3) -> P (3, 4) (or (4, 4) with last row 0 0 0 1);
    r0_rect: (3, 3) or (4, 4); velo_to_cam, imu_to_velo: (3, 4) or (4, 4), i.e.
    `cam0_from_velodyne`, `velodyne_from_imu`. image_sizes: index -> (width, height), default
    KITTI_DEFAULT_IMAGE_SIZE. Raises CalibrationError naming `source` for an unusable matrix.
    """
    sizes = dict(image_sizes or {})
    return _kitti_object(
        source,
        {i: np.asarray(p, dtype=np.float64)[:3, :4] for i, p in projections.items()},
        r0_rect,
        velo_to_cam,
        imu_to_velo,
        lambda index: sizes.get(index, KITTI_DEFAULT_IMAGE_SIZE),
        lambda key: source,
    )


def _kitti_object(
    source: str,
    projections: Mapping[int, F64],
    r0_rect: npt.ArrayLike,
    velo_to_cam: npt.ArrayLike,
    imu_to_velo: npt.ArrayLike | None,
    size_of: Callable[[int], tuple[int, int]],
    where: Callable[[str], str],
) -> Calibration:
    """The KITTI object/tracking tree; `where(key)` locates a matrix for messages."""
    cameras: dict[str, Camera] = {}
    transforms: list[Transform] = []
    for index, projection in sorted(projections.items()):
        key = f"P{index}"
        camera, rect_from_cam = _rectified_camera(where(key), key, index, projection, size_of(index))
        cameras[camera.name] = camera
        transforms.append(rect_from_cam)
    transforms.append(_rigid(where("R0_rect"), "R0_rect", r0_rect, parent=RECT, child=CAM0))
    transforms.append(
        _rigid(where("Tr_velo_to_cam"), "Tr_velo_to_cam", velo_to_cam, parent=CAM0, child=VELODYNE)
    )
    if imu_to_velo is not None:
        key = "Tr_imu_to_velo"
        transforms.append(_rigid(where(key), key, imu_to_velo, parent=VELODYNE, child=IMU))
    return Calibration(cameras=cameras, transforms=tuple(transforms), source=source)


def _load_kitti_object(path: Path, lines: Sequence[str], image_size: tuple[int, int] | None) -> Calibration:
    kitti = _KittiFile(path, lines)
    indices = [i for i in range(4) if kitti.has(f"P{i}")]
    if not indices:
        raise CalibrationError(
            f"{path}:{kitti.last_line}: reached the end of the file without a P0..P3 line; "
            "a KITTI calib.txt needs at least 'P2: ' and its 12 numbers (3x4 row-major)"
        )
    projections = {i: kitti.numbers(f"P{i}", 12, "3x4 row-major").reshape(3, 4) for i in indices}
    r0 = kitti.numbers("R0_rect", 9, "3x3 row-major").reshape(3, 3)
    velo = kitti.numbers("Tr_velo_to_cam", 12, "3x4 row-major").reshape(3, 4)
    imu = None
    if kitti.has("Tr_imu_to_velo"):
        imu = kitti.numbers("Tr_imu_to_velo", 12, "3x4 row-major").reshape(3, 4)
    return _kitti_object(
        str(path),
        projections,
        r0,
        velo,
        imu,
        lambda index: image_size or _kitti_image_size(path, index),
        lambda key: f"{path}:{kitti.line_of(key)}",
    )


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when `path` is not a readable PNG."""
    try:
        with path.open("rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _kitti_image_size(calib_path: Path, index: int) -> tuple[int, int]:
    """The size of camera `index`'s image beside a KITTI calib file, else the default."""
    root = calib_path.parent.parent
    stem = calib_path.stem
    candidates = [root / f"image_{index}" / f"{stem}.png"]  # object: training/image_2/000000.png
    sequence = root / f"image_0{index}" / stem  # tracking: training/image_02/0000/000000.png
    if sequence.is_dir():
        candidates.extend(sorted(sequence.glob("*.png"))[:1])
    for candidate in candidates:
        size = _png_size(candidate)
        if size is not None:
            return size
    logger.info(
        "%s: no image beside the calib file gives camera %d's size; assuming %dx%d (pass image_size)",
        calib_path,
        index,
        *KITTI_DEFAULT_IMAGE_SIZE,
    )
    return KITTI_DEFAULT_IMAGE_SIZE


def _load_kitti_raw(folder: Path, cam_to_cam: Path, *, unrectified: bool) -> Calibration:
    if not cam_to_cam.is_file():
        raise CalibrationError(
            f"{folder}: no {_CAM_TO_CAM} here; pass a KITTI raw date folder (with calib_cam_to_cam.txt, "
            f"calib_velo_to_cam.txt) or a calibration file: {'; '.join(FORMATS)}"
        )
    cams = _KittiFile(cam_to_cam, _read_text(cam_to_cam).splitlines())
    indices = [i for i in range(4) if cams.has(f"P_rect_0{i}") or cams.has(f"K_0{i}")]
    if not indices:
        raise CalibrationError(
            f"{cam_to_cam}:{cams.last_line}: reached the end of the file without any camera "
            "(P_rect_00..P_rect_03); restore the file from the KITTI raw calibration zip"
        )
    cameras: dict[str, Camera] = {}
    transforms: list[Transform] = []
    r_rect = cams.numbers("R_rect_00", 9, "3x3 row-major").reshape(3, 3)
    transforms.append(_rigid(cams.at("R_rect_00"), "R_rect_00", r_rect, parent=RECT, child=CAM0))
    for i in indices:
        rect_size = _size(cams, f"S_rect_0{i}")
        projection = cams.numbers(f"P_rect_0{i}", 12, "3x4 row-major").reshape(3, 4)
        key = f"P_rect_0{i}"
        camera, rect_from_cam = _rectified_camera(cams.at(key), key, i, projection, rect_size)
        transforms.append(rect_from_cam)
        if i != 0 and (unrectified or (cams.has(f"R_0{i}") and cams.has(f"T_0{i}"))):
            # cami_from_cam0 = [R_0i | T_0i]; stored as cam0 <- cami (one parent per frame)
            rotation = cams.numbers(f"R_0{i}", 9, "3x3 row-major").reshape(3, 3)
            translation = cams.numbers(f"T_0{i}", 3, "x y z metres")
            rt = np.hstack([rotation, translation[:, None]])
            cami_from_cam0 = _rigid(cams.at(f"R_0{i}"), f"R_0{i}", rt, parent=kitti_raw_frame(i), child=CAM0)
            transforms.append(cami_from_cam0.inverse())
        if unrectified:
            k = cams.numbers(f"K_0{i}", 9, "3x3 row-major").reshape(3, 3)
            d = cams.numbers(f"D_0{i}", 5, "k1 k2 p1 p2 k3")
            width, height = _size(cams, f"S_0{i}")
            try:
                camera = Camera(
                    name=kitti_camera_name(i),
                    frame_id=kitti_raw_frame(i),
                    width=width,
                    height=height,
                    model="plumb_bob",
                    K=k,
                    D=tuple(d.tolist()),
                )
            except CalibrationError as err:
                raise CalibrationError(f"{cams.at(f'K_0{i}')}: K_0{i}: {err}") from err
        cameras[camera.name] = camera
    velo_path = folder / _VELO_TO_CAM
    if velo_path.is_file():
        velo = _KittiFile(velo_path, _read_text(velo_path).splitlines())
        rt = np.hstack(
            [velo.numbers("R", 9, "3x3 row-major").reshape(3, 3), velo.numbers("T", 3, "x y z")[:, None]]
        )
        transforms.append(_rigid(velo.at("R"), "R", rt, parent=CAM0, child=VELODYNE))
    else:
        logger.warning(
            "%s: no %s beside it; the calibration has no velodyne transform", cam_to_cam, _VELO_TO_CAM
        )
    imu_path = folder / _IMU_TO_VELO
    if imu_path.is_file():
        imu = _KittiFile(imu_path, _read_text(imu_path).splitlines())
        rt = np.hstack(
            [imu.numbers("R", 9, "3x3 row-major").reshape(3, 3), imu.numbers("T", 3, "x y z")[:, None]]
        )
        transforms.append(_rigid(imu.at("R"), "R", rt, parent=VELODYNE, child=IMU))
    return Calibration(cameras=cameras, transforms=tuple(transforms), source=str(cam_to_cam))


def _size(kitti: _KittiFile, key: str) -> tuple[int, int]:
    w, h = kitti.numbers(key, 2, "width height").tolist()
    if w != round(w) or h != round(h) or w < 1 or h < 1:
        raise CalibrationError(
            f"{kitti.at(key)}: {key} is {w:g} x {h:g}; an image size is two positive integers"
        )
    return round(w), round(h)


# ---- YAML / JSON -------------------------------------------------------------------------------


def _parse_yaml(path: Path, text: str) -> Any:
    """The document in `text` (YAML 1.2, which JSON is); line info kept on mappings and sequences."""
    if text.lstrip().startswith("%YAML:1.0"):
        raise CalibrationError(
            f"{path}:1: OpenCV FileStorage YAML (%YAML:1.0) is not read; write one of: {'; '.join(FORMATS)}"
        )
    try:
        return YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(err.problem or err.context or "syntax error").split())
        if text.lstrip().startswith(("{", "[")):
            try:  # ruamel is stricter than JSON in corners; a valid JSON file must load
                return json.loads(text)
            except json.JSONDecodeError as jerr:
                raise CalibrationError(
                    f"{path}:{jerr.lineno}: not valid JSON ({jerr.msg}); fix the syntax there"
                ) from jerr
        raise CalibrationError(
            f"{_at(path, line)}: not valid YAML ({problem}), nor a KITTI calib file; fix the syntax there "
            f"or write one of: {'; '.join(FORMATS)}"
        ) from err
    except YAMLError as err:
        raise CalibrationError(
            f"{path}: not valid YAML ({' '.join(str(err).split())[:120]}); write one of: {'; '.join(FORMATS)}"
        ) from err


def _line(node: Any, key: str | int | None = None) -> int | None:
    """1-based line of `key` in mapping/sequence `node` (or of `node` itself), when known."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return int(lc.line) + 1
        if isinstance(key, int):
            return int(lc.item(key)[0]) + 1
        return int(lc.key(key)[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


class _Node:
    """A YAML/JSON mapping with the file and line helpers that errors need."""

    def __init__(self, path: Path, data: Any, what: str, line: int | None) -> None:
        self.path = path
        self.what = what
        self.line = line
        if not isinstance(data, Mapping):
            raise CalibrationError(
                f"{_at(path, line)}: {what} must be a mapping of keys to values, got {_kind(data)}; "
                "see the format in calib/loaders.py"
            )
        self.data = data

    def at(self, key: str | None = None) -> str:
        line = _line(self.data, key) if key is not None else None
        return _at(self.path, line or _line(self.data) or self.line)

    def require(self, key: str, example: str) -> Any:
        if key not in self.data:
            raise CalibrationError(f"{self.at()}: {self.what} has no '{key}'; add {key}: {example}")
        return self.data[key]

    def only(self, allowed: Sequence[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise CalibrationError(
                    f"{self.at(str(key))}: {self.what} has an unknown key {str(key)!r}; "
                    f"the keys are {', '.join(allowed)}"
                )

    def text(self, key: str, example: str) -> str:
        value = self.require(key, example)
        if not isinstance(value, str) or not value.strip():
            raise CalibrationError(
                f"{self.at(key)}: {self.what}: '{key}' must be a non-empty string, got {_kind(value)}; "
                f"write {key}: {example}"
            )
        return value.strip()

    def integer(self, key: str, example: str, *, minimum: int = 1) -> int:
        value = self.require(key, example)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CalibrationError(
                f"{self.at(key)}: {self.what}: '{key}' must be an integer >= {minimum}, got {value!r}; "
                f"write {key}: {example}"
            )
        return int(value)

    def numbers(self, key: str, count: int | None, example: str) -> F64:
        """The numbers under `key`: a list (nested lists are flattened), `count` of them if given."""
        raw = self.require(key, example)
        flat: list[float] = []
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise CalibrationError(
                f"{self.at(key)}: {self.what}: '{key}' must be a list of numbers, got {_kind(raw)}; "
                f"write {key}: {example}"
            )
        rows = [(raw, i, item) for i, item in enumerate(raw)]
        for parent, i, item in rows:
            items = (
                [(item, j, x) for j, x in enumerate(item)]
                if isinstance(item, Sequence) and not isinstance(item, str)
                else [(parent, i, item)]
            )
            for holder, j, x in items:
                if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(float(x)):
                    line = _line(holder, j) or _line(self.data, key) or _line(self.data) or self.line
                    raise CalibrationError(
                        f"{_at(self.path, line)}: {self.what}: '{key}' holds {x!r}, not a finite number; "
                        f"write {key}: {example}"
                    )
                flat.append(float(x))
        if count is not None and len(flat) != count:
            raise CalibrationError(
                f"{self.at(key)}: {self.what}: '{key}' has {len(flat)} numbers, expected {count}; "
                f"write {key}: {example}"
            )
        return np.asarray(flat, dtype=np.float64)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, str):
        return f"the text {value[:30]!r}"
    if isinstance(value, Sequence):
        return "a list"
    return f"{value!r}"


def _camera(node: _Node, model_key: str, where: str, **fields: Any) -> Camera:
    """A Camera of `fields`; errors name the model's line, or `where` for the others."""
    if fields["model"] not in DISTORTION_MODELS:
        raise CalibrationError(
            f"{node.at(model_key)}: {node.what}: distortion model {fields['model']!r} is not supported; "
            f"write {model_key}: one of {', '.join(DISTORTION_MODELS)}"
        )
    try:
        return Camera(**fields)
    except CalibrationError as err:
        raise CalibrationError(f"{where}: {err}") from err


_K_EXAMPLE: Final = "[fx, 0, cx, 0, fy, cy, 0, 0, 1]"


def _load_fusion(path: Path, data: Mapping[str, Any]) -> Calibration:
    root = _Node(path, data, "the calibration", 1)
    root.only(("cameras", "transforms"))
    cameras: dict[str, Camera] = {}
    frames: dict[str, str] = {}
    topics: dict[str, str] = {}
    for i, item in enumerate(_list(root, "cameras")):
        node = _Node(path, item, f"camera #{i + 1}", _line(data.get("cameras"), i))
        name = node.text("name", "front")
        node.what = f"camera {name!r}"
        node.only(("name", "frame_id", "topic", "width", "height", "model", "K", "D"))
        if name in cameras:
            raise CalibrationError(
                f"{node.at('name')}: a second camera named {name!r}; give each camera its own name"
            )
        model = node.text("model", "|".join(DISTORTION_MODELS))
        frame = node.text("frame_id", "camera_front_optical").lstrip("/")
        if frame in frames:
            raise CalibrationError(
                f"{node.at('frame_id')}: cameras {frames[frame]!r} and {name!r} share the frame '{frame}'; "
                "give each camera its own frame_id"
            )
        frames[frame] = name
        k = node.numbers("K", 9, _K_EXAMPLE).reshape(3, 3)
        d = node.numbers("D", None, "[k1, k2, p1, p2, k3]") if "D" in node.data else np.zeros(0)
        cameras[name] = _camera(
            node,
            "model",
            node.at(),
            name=name,
            frame_id=frame,
            width=node.integer("width", "1920"),
            height=node.integer("height", "1080"),
            model=model,
            K=k,
            D=tuple(d.tolist()),
        )
        if "topic" in node.data:
            topics[name] = node.text("topic", "/camera_front/image_raw")
    transforms: list[Transform] = []
    children: dict[str, str] = {}
    for i, item in enumerate(_list(root, "transforms")):
        node = _Node(path, item, f"transform #{i + 1}", _line(data.get("transforms"), i))
        parent = node.text("parent", "base_link")
        child = node.text("child", "lidar_top")
        node.what = f"transform '{parent}' <- '{child}'"
        node.only(("parent", "child", "matrix", "translation", "rotation_xyzw"))
        if "matrix" in node.data and ("translation" in node.data or "rotation_xyzw" in node.data):
            raise CalibrationError(
                f"{node.at('matrix')}: {node.what}: give either matrix or translation + rotation_xyzw, "
                "not both"
            )
        try:
            if "matrix" in node.data:
                m = node.numbers("matrix", 16, "[16 numbers, 4x4 row-major]").reshape(4, 4)
                where = node.at("matrix")
                transform = Transform.from_matrix(m, parent=parent, child=child)
            else:
                t = node.numbers("translation", 3, "[x, y, z]")
                q = node.numbers("rotation_xyzw", 4, "[qx, qy, qz, qw]")
                where = node.at("rotation_xyzw")
                transform = Transform.from_quaternion(t, q, parent=parent, child=child)
        except CalibrationError as err:
            if str(err).startswith(f"{path}:"):
                raise  # already names the file and line
            raise CalibrationError(f"{where}: {err}") from err
        if transform.child in children:
            raise CalibrationError(
                f"{node.at('child')}: frame '{transform.child}' already has the parent "
                f"'{children[transform.child]}'; a calibration is a tree: keep one transform per child frame"
            )
        children[transform.child] = transform.parent
        transforms.append(transform)
    if not cameras and not transforms:
        raise CalibrationError(
            f"{root.at()}: the calibration has no cameras and no transforms; add at least one"
        )
    return Calibration(cameras=cameras, transforms=tuple(transforms), source=str(path), camera_topics=topics)


def _list(root: _Node, key: str) -> Sequence[Any]:
    value = root.data.get(key)
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise CalibrationError(
            f"{root.at(key)}: '{key}' must be a list (each item starting with '- '), got {_kind(value)}"
        )
    return value


def _load_ros_yaml(path: Path, data: Mapping[str, Any], frame_id: str | None) -> Calibration:
    root = _Node(path, data, "the camera_calibration file", 1)
    name = root.text("camera_name", "narrow_stereo") if "camera_name" in data else path.stem
    width = root.integer("image_width", "640")
    height = root.integer("image_height", "480")
    k = _ros_matrix(root, "camera_matrix", 3, 3).reshape(3, 3)
    model = root.text("distortion_model", "plumb_bob")
    d = _ros_matrix(root, "distortion_coefficients", 1, None)
    for key, rows, cols in (("rectification_matrix", 3, 3), ("projection_matrix", 3, 4)):
        if key in data:
            _ros_matrix(root, key, rows, cols)
    camera = _camera(
        root,
        "distortion_model",
        root.at("camera_matrix"),
        name=name,
        frame_id=frame_id if frame_id is not None else name,
        width=width,
        height=height,
        model=model,
        K=k,
        D=tuple(d.tolist()),
    )
    return Calibration(cameras={name: camera}, transforms=(), source=str(path))


def _ros_matrix(root: _Node, key: str, rows: int, cols: int | None) -> F64:
    """`key: {rows, cols, data}` of a camera_calibration file, checked; data (rows*cols,)."""
    example = f"{{rows: {rows}, cols: {cols if cols is not None else 5}, data: [...]}}"
    node = _Node(root.path, root.require(key, example), f"'{key}'", _line(root.data, key))
    n_rows = node.integer("rows", str(rows))
    n_cols = node.integer("cols", str(cols if cols is not None else 5), minimum=0 if cols is None else 1)
    values = node.numbers("data", n_rows * n_cols, f"[{n_rows * n_cols} numbers, row-major]")
    if n_rows != rows or (cols is not None and n_cols != cols):
        raise CalibrationError(
            f"{node.at('rows')}: '{key}' is {n_rows}x{n_cols}, "
            f"expected {rows}x{cols if cols is not None else 'N'}; write {key}: {example}"
        )
    return values
