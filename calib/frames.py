"""The coordinate frames fusion works in, documented once, and how frame names are spelled.

Every frame is right-handed, lengths are metres, angles radians. A transform named
``<to>_from_<from>`` (a `calib.Transform` with ``parent=<to>``, ``child=<from>``) maps the
coordinates of a point in ``<from>`` to its coordinates in ``<to>``; it is also the pose of
``<from>`` in ``<to>``. Transforms compose right to left::

    world_from_lidar = world_from_ego @ ego_from_lidar

A TF message's ``header.frame_id`` is the parent and ``child_frame_id`` the child, so each
geometry_msgs/TransformStamped is a ``parent_from_child``.

The usual tree (REP 105)::

    map ---> odom ---> base_link ---> lidar
                              |
                              +---> camera_link ---> camera_optical_frame

lidar (the ``frame_id`` of the PointCloud2, e.g. ``velodyne``, ``os_sensor``, ``lidar_top``)
    The sensor's own frame, REP 103 body axes: x forward, y left, z up. Each point is expressed
    in this frame *at its own capture time* ``stamp_ns + time_offset_ns``; `calib.deskew` moves
    all points of a sweep into the frame at ``stamp_ns``::

              z (up)
              |   x (forward)
              |  /
              | /
     y <------o
     (left)

ego / base_link
    The vehicle body, same axes as above (x forward, y left, z up). Its origin is wherever the
    robot description puts it (commonly the rear-axle centre on the ground). Poses of the ego
    in the world are ``world_from_ego``.

world: odom and map
    Fixed to the ground, z up (x east, y north when the stack uses ENU). ``odom`` is
    continuous but drifts; ``map`` is globally consistent but may jump. The pipeline's
    ``fixed_frame`` is one of them (the root of the TF tree, usually)::

              z (up)
              |   y (north)
              |  /
              | /
              o------> x (east)

camera optical (``*_optical_frame``; the frame_id of Image and CameraInfo)
    x right, y down, z forward along the optical axis, as OpenCV and `calib.camera` use it::

                z (forward, optical axis)
               /
              /
             o------> x (right)
             |
             |
             v y (down)

    It differs from its body-axes ``camera_link`` by the fixed rotation
    ``link_from_optical = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]``.

Frame names: ROS1 tf allowed a leading '/', tf2 does not. Everywhere in calib a name is
normalised by `normalize_frame` (surrounding whitespace and leading '/' removed), so
``"/base_link"`` and ``"base_link"`` are the same frame.
"""

from __future__ import annotations

from calib.errors import CalibrationError


def normalize_frame(name: str) -> str:
    """A frame name as calib stores it: surrounding whitespace and leading '/' removed.

    Raises CalibrationError for a name that is empty after normalisation.
    """
    frame = str(name).strip().lstrip("/")
    if not frame:
        raise CalibrationError(f"empty frame name {name!r}; every transform needs a parent and a child frame")
    return frame
