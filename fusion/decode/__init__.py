"""Decoding: rosbags-deserialised ROS messages -> typed records (PointCloud, DecodedImage, ...).

Reading is separate (fusion.bags yields raw bytes and deserialises on request); each
decoder here takes one deserialised message, from the ROS1 or the ROS2 store, and
raises fusion.errors.DecodeError with a message saying what is wrong with it.
"""

from fusion.decode.image import COMPRESSED_CODECS, RAW_ENCODINGS, decode_image
from fusion.decode.pointcloud import (
    INTENSITY_FIELDS,
    POINTFIELD_DTYPES,
    RING_FIELDS,
    TIME_CONVENTIONS,
    TimeConvention,
    decode_pointcloud2,
)
from fusion.decode.records import (
    decode_camera_info,
    decode_odometry,
    decode_tf,
    frame_id,
    stamp_ns,
    time_ns,
)
from fusion.decode.types import (
    CameraInfoRecord,
    DecodedImage,
    OdometryRecord,
    PointCloud,
    TransformRecord,
)

__all__ = [
    "COMPRESSED_CODECS",
    "INTENSITY_FIELDS",
    "POINTFIELD_DTYPES",
    "RAW_ENCODINGS",
    "RING_FIELDS",
    "TIME_CONVENTIONS",
    "CameraInfoRecord",
    "DecodedImage",
    "OdometryRecord",
    "PointCloud",
    "TimeConvention",
    "TransformRecord",
    "decode_camera_info",
    "decode_image",
    "decode_odometry",
    "decode_pointcloud2",
    "decode_tf",
    "frame_id",
    "stamp_ns",
    "time_ns",
]
