"""Which topics of a log are which sensor: message type names, camera/CameraInfo pairing, camera names."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from fusion.bags import TopicInfo

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF = "tf2_msgs/msg/TFMessage"
ODOMETRY = "nav_msgs/msg/Odometry"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
POSE_TYPES = (TF, ODOMETRY)

# Path components that name an image stream rather than a camera.
_IMAGE_WORDS = {"image", "image_raw", "image_rect", "image_rect_color", "image_color", "compressed", "raw"}


def camera_info_for(image_topic: str, info_topics: Iterable[str]) -> str | None:
    """The CameraInfo topic of an image topic: the one in the deepest common namespace.

    `/cam_front/image_raw` and `/cam_front/image/compressed` both pair with `/cam_front/camera_info`.
    """
    parts = image_topic.strip("/").split("/")
    best: tuple[int, str] | None = None
    for info in info_topics:
        ns = info.strip("/").split("/")[:-1]
        if parts[: len(ns)] == ns and (best is None or len(ns) > best[0]):
            best = (len(ns), info)
    return best[1] if best and best[0] > 0 else None


def lidar_topic(topics: Mapping[str, TopicInfo]) -> str | None:
    """The PointCloud2 topic with the most messages (the main LiDAR), or None."""
    clouds = [t for t in topics.values() if t.msgtype == POINTCLOUD2 and t.decodable]
    return max(clouds, key=lambda t: (t.count, t.name)).name if clouds else None


def camera_name(image_topic: str) -> str:
    """A camera's name from its image topic: the namespace, '/' replaced by '_'.

    `/camera_front/image/compressed` -> `camera_front`; `/kitti/camera_color_left/image_raw` ->
    `kitti_camera_color_left`. Only `[A-Za-z0-9._-]` survive, so the name is safe in paths.
    """
    parts = [p for p in image_topic.strip("/").split("/") if p]
    while len(parts) > 1 and parts[-1] in _IMAGE_WORDS:
        parts.pop()
    return re.sub(r"[^A-Za-z0-9._-]", "_", "_".join(parts)) or "camera"


def image_topics_by_camera(topics: Mapping[str, TopicInfo]) -> dict[str, str]:
    """camera name -> image topic; where a camera has both, the raw Image beats the CompressedImage."""
    out: dict[str, str] = {}
    for info in sorted(topics.values(), key=lambda t: (t.msgtype != IMAGE, t.name)):
        if info.msgtype in IMAGE_TYPES and info.decodable:
            out.setdefault(camera_name(info.name), info.name)
    return out


def topics_of(topics: Mapping[str, TopicInfo], types: Iterable[str]) -> list[str]:
    wanted = set(types)
    return [t.name for t in topics.values() if t.msgtype in wanted and t.decodable]
