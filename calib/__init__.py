"""Geometry and time of sensors: cameras, transforms, TF buffer, projection, deskew.

Knows nothing of bags, Dask or Parquet: takes arrays and dataclasses. The coordinate frames
(lidar, ego/base_link, odom/map, camera optical) and the ``<to>_from_<from>`` naming rule are
documented, with axis diagrams, in `calib.frames`.
"""

from calib.calibration import Calibration
from calib.camera import Camera
from calib.deskew import compensate_object_motion, deskew
from calib.frames import normalize_frame
from calib.loaders import load_calibration
from calib.projection import box_to_image, boxes_to_image, project_points, project_points_timed
from calib.tf_buffer import TransformBuffer
from calib.transform import Transform, interpolate

__all__ = [
    "Calibration",
    "Camera",
    "Transform",
    "TransformBuffer",
    "box_to_image",
    "boxes_to_image",
    "compensate_object_motion",
    "deskew",
    "interpolate",
    "load_calibration",
    "normalize_frame",
    "project_points",
    "project_points_timed",
]
