"""sensor_msgs/Image and sensor_msgs/CompressedImage -> DecodedImage.

Colour images come out as (H, W, 3) uint8 RGB; mono images stay (H, W) uint8 or
uint16. Raw images are viewed in place (row padding in `step` and big-endian mono16
handled by strides and dtype) and copied once into the output.

Raw encodings (`RAW_ENCODINGS`): rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8,
mono16, bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8 (bilinear demosaicing by
OpenCV), and the OpenCV-style aliases 8UC1 = mono8, 16UC1 = mono16, 8UC3 = bgr8,
8UC4 = bgra8 (OpenCV's own channel order, as cv_bridge writes them).

Compressed formats follow image_transport: "jpeg", "png", or "<original encoding>;
<codec> compressed <encoding>" such as "rgb8; jpeg compressed bgr8". JPEG/PNG files hold
true colours whatever the message's channel order, so colour results are always RGB.
The original encoding decides the output kind: mono stays (H, W), a bayer mosaic
compressed as mono is demosaiced. compressedDepth is not supported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from fusion.decode.records import check_msgtype, frame_id, stamp_ns
from fusion.decode.types import DecodedImage
from fusion.errors import DecodeError

logger = logging.getLogger(__name__)

IMAGE_TYPES: Final = ("sensor_msgs/msg/Image",)
COMPRESSED_IMAGE_TYPES: Final = ("sensor_msgs/msg/CompressedImage",)


def _cv_code(name: str, fallback: str) -> int:
    """An OpenCV conversion code; the unambiguous Bayer<RGGB> names exist from OpenCV 4.x on."""
    return int(getattr(cv2, name, getattr(cv2, fallback)))


@dataclass(frozen=True)
class _RawLayout:
    channels: int
    type_code: str  # numpy type code without byte order: "u1" or "u2"
    kind: str  # "rgb", "bgr", "rgba", "bgra", "mono", "bayer"
    bayer_code: int | None = None  # cv2.cvtColor code mosaic -> RGB


# The ROS pattern name lists the 2x2 tile's colours row by row from the top-left pixel:
# bayer_rggb8 = R G / G B. OpenCV's COLOR_BayerRGGB2RGB uses the same naming (its older
# alias COLOR_BayerBG2RGB names the pattern from the second row, second column).
RAW_ENCODINGS: Final[dict[str, _RawLayout]] = {
    "rgb8": _RawLayout(3, "u1", "rgb"),
    "bgr8": _RawLayout(3, "u1", "bgr"),
    "rgba8": _RawLayout(4, "u1", "rgba"),
    "bgra8": _RawLayout(4, "u1", "bgra"),
    "mono8": _RawLayout(1, "u1", "mono"),
    "mono16": _RawLayout(1, "u2", "mono"),
    "8UC1": _RawLayout(1, "u1", "mono"),
    "16UC1": _RawLayout(1, "u2", "mono"),
    "8UC3": _RawLayout(3, "u1", "bgr"),
    "8UC4": _RawLayout(4, "u1", "bgra"),
    "bayer_rggb8": _RawLayout(1, "u1", "bayer", _cv_code("COLOR_BayerRGGB2RGB", "COLOR_BayerBG2RGB")),
    "bayer_bggr8": _RawLayout(1, "u1", "bayer", _cv_code("COLOR_BayerBGGR2RGB", "COLOR_BayerRG2RGB")),
    "bayer_gbrg8": _RawLayout(1, "u1", "bayer", _cv_code("COLOR_BayerGBRG2RGB", "COLOR_BayerGR2RGB")),
    "bayer_grbg8": _RawLayout(1, "u1", "bayer", _cv_code("COLOR_BayerGRBG2RGB", "COLOR_BayerGB2RGB")),
}

COMPRESSED_CODECS: Final = ("jpeg", "jpg", "png")

_MONO_ENCODINGS: Final = frozenset(k for k, v in RAW_ENCODINGS.items() if v.kind == "mono")


def decode_image(msg: Any) -> DecodedImage:
    """sensor_msgs/Image or sensor_msgs/CompressedImage (rosbags, ROS1 or ROS2) -> DecodedImage.

    pixels: (H, W, 3) uint8 RGB for colour and bayer images, (H, W) uint8 or uint16 for mono.
    Raises DecodeError for an unknown encoding or format (naming the supported ones), a
    `step` or data length inconsistent with width and height, or undecodable JPEG/PNG bytes.
    """
    msgtype = getattr(msg, "__msgtype__", None)
    if msgtype in COMPRESSED_IMAGE_TYPES or (msgtype is None and hasattr(msg, "format")):
        return _decode_compressed(msg)
    check_msgtype(msg, IMAGE_TYPES + COMPRESSED_IMAGE_TYPES, "decode_image")
    return _decode_raw(msg)


def _byte_buffer(data: Any) -> npt.NDArray[np.uint8]:
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=np.uint8)
    return np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1))


def _demosaic(mosaic: npt.NDArray[np.uint8], code: int, where: str) -> npt.NDArray[np.uint8]:
    try:
        rgb: npt.NDArray[np.uint8] = np.asarray(cv2.cvtColor(mosaic, code), dtype=np.uint8)
    except cv2.error as err:
        raise DecodeError(f"{where}: OpenCV could not demosaic the {mosaic.shape} mosaic: {err}") from err
    return rgb


def _output(pixels: npt.NDArray[Any]) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint16]:
    """Own, C-contiguous output pixels: (H, W, 3) uint8 or (H, W) uint8/uint16."""
    if pixels.ndim == 2 and pixels.dtype == np.uint16:
        return np.ascontiguousarray(pixels, dtype=np.uint16)
    if pixels.dtype == np.uint16:
        # 16-bit colour (a 16-bit PNG): keep the top 8 bits, colour output is uint8 RGB.
        return np.ascontiguousarray(np.asarray(pixels, dtype=np.uint16) >> 8, dtype=np.uint8)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _decode_raw(msg: Any) -> DecodedImage:
    frame = frame_id(msg.header.frame_id)
    t_ns = stamp_ns(msg.header)
    encoding = str(msg.encoding).strip()
    where = f"Image '{encoding}' in frame '{frame}' at {t_ns} ns"
    layout = RAW_ENCODINGS.get(encoding)
    if layout is None:
        raise DecodeError(
            f"Image in frame '{frame}' has encoding '{encoding}', which fusion cannot decode; "
            f"supported encodings: {', '.join(RAW_ENCODINGS)}"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = int(layout.type_code[1])
    pixel_bytes = layout.channels * itemsize
    out_dtype = np.uint16 if itemsize == 2 else np.uint8
    if height * width == 0:
        shape = (height, width) if layout.kind == "mono" else (height, width, 3)
        return DecodedImage(_output(np.zeros(shape, dtype=out_dtype)), frame, t_ns, encoding)
    if step < width * pixel_bytes:
        raise DecodeError(
            f"{where}: step {step} is smaller than width * bytes per pixel = {width} * {pixel_bytes}"
        )
    data = _byte_buffer(msg.data)
    if data.size < step * height:
        raise DecodeError(
            f"{where}: data has {data.size} bytes, fewer than step * height = {step} * {height} "
            f"= {step * height}; the message is truncated"
        )
    byteorder = ">" if bool(msg.is_bigendian) and itemsize > 1 else "<"
    # Zero-copy view: (H, W, C), rows `step` bytes apart.
    view: npt.NDArray[Any] = np.ndarray(
        shape=(height, width, layout.channels),
        dtype=np.dtype(byteorder + layout.type_code),
        buffer=data,
        strides=(step, pixel_bytes, itemsize),
    )
    pixels: npt.NDArray[Any]
    if layout.kind == "mono":
        pixels = np.ascontiguousarray(view[..., 0], dtype=out_dtype)
    elif layout.kind == "bayer":
        if layout.bayer_code is None:  # pragma: no cover - every bayer layout has a code
            raise DecodeError(f"{where}: no demosaicing code")
        pixels = _demosaic(np.ascontiguousarray(view[..., 0]), layout.bayer_code, where)
    elif layout.kind in ("rgb", "rgba"):
        pixels = np.ascontiguousarray(view[..., :3])
    else:  # bgr, bgra
        pixels = np.ascontiguousarray(view[..., 2::-1])
    return DecodedImage(_output(pixels), frame, t_ns, encoding)


def _parse_format(fmt: str) -> tuple[str | None, str]:
    """image_transport format -> (original encoding or None, codec in lower case).

    "jpeg" -> (None, "jpeg"); "rgb8; jpeg compressed bgr8" -> ("rgb8", "jpeg").
    """
    text = fmt.strip()
    if ";" in text:
        original, rest = (part.strip() for part in text.split(";", 1))
        words = rest.split()
        return (original or None), (words[0].lower() if words else "")
    return None, text.lower()


def _decode_compressed(msg: Any) -> DecodedImage:
    frame = frame_id(msg.header.frame_id)
    t_ns = stamp_ns(msg.header)
    fmt = str(msg.format).strip()
    original, codec = _parse_format(fmt)
    where = f"CompressedImage '{fmt}' in frame '{frame}' at {t_ns} ns"
    if codec not in COMPRESSED_CODECS:
        raise DecodeError(
            f"CompressedImage in frame '{frame}' has format '{fmt}', which fusion cannot decode; "
            f"supported codecs: {', '.join(COMPRESSED_CODECS)} (as 'jpeg' or "
            "'<encoding>; jpeg compressed <encoding>')"
        )
    data = _byte_buffer(msg.data)
    if data.size == 0:
        raise DecodeError(f"{where}: the message holds no image data")
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise DecodeError(f"{where}: OpenCV could not decode the {data.size} bytes as {codec}; corrupt image")
    img: npt.NDArray[Any] = np.asarray(decoded)
    if img.dtype not in (np.uint8, np.uint16):
        raise DecodeError(f"{where}: decoded to {img.dtype} pixels; only 8- and 16-bit images are supported")

    orig_layout = RAW_ENCODINGS.get(original) if original else None
    pixels: npt.NDArray[Any]
    if img.ndim == 2 or img.shape[2] == 1:
        mono = img.reshape(img.shape[0], img.shape[1])
        if orig_layout is not None and orig_layout.bayer_code is not None and mono.dtype == np.uint8:
            pixels = _demosaic(np.ascontiguousarray(mono), orig_layout.bayer_code, where)
        else:
            pixels = np.ascontiguousarray(mono)
    elif original in _MONO_ENCODINGS:
        pixels = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    elif img.shape[2] == 4:
        pixels = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        pixels = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return DecodedImage(_output(pixels), frame, t_ns, fmt)
