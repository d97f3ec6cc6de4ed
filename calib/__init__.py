"""Geometry and time of sensors: cameras, transforms, TF buffer, projection, deskew.

Knows nothing of bags, Dask or Parquet: takes arrays and dataclasses. The coordinate frames
(lidar, ego/base_link, odom/map, camera optical) and the ``<to>_from_<from>`` naming rule are
documented, with axis diagrams, in `calib.frames`.
"""

from calib.deskew import deskew
from calib.frames import normalize_frame
from calib.tf_buffer import TransformBuffer
from calib.transform import Transform, interpolate

__all__ = ["Transform", "TransformBuffer", "deskew", "interpolate", "normalize_frame"]
