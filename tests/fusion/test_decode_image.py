"""decode_image: every raw encoding (row padding, endianness, bayer patterns) and JPEG/PNG."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from fusion.decode import RAW_ENCODINGS, decode_image
from fusion.errors import DecodeError

ROS2 = get_typestore(Stores.ROS2_HUMBLE)
ROS1 = get_typestore(Stores.ROS1_NOETIC)
STAMP_SEC, STAMP_NANOSEC = 1_700_000_123, 5
PAD_BYTE = 0xEE
H, W = 12, 20
# The four colours of the quadrants of `blocks_rgb`.
BLOCK_COLOURS = np.array([[200, 30, 90], [10, 250, 60], [70, 120, 5], [255, 0, 128]], dtype=np.uint8)


def header(ts: Typestore, frame: str = "cam_front") -> Any:
    hdr_cls = ts.types["std_msgs/msg/Header"]
    stamp = ts.types["builtin_interfaces/msg/Time"](sec=STAMP_SEC, nanosec=STAMP_NANOSEC)
    if any(name == "seq" for name, _ in ts.fielddefs["std_msgs/msg/Header"][1]):
        return hdr_cls(seq=0, stamp=stamp, frame_id=frame)
    return hdr_cls(stamp=stamp, frame_id=frame)


def random_rgb(seed: int = 0, height: int = H, width: int = W) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def blocks_rgb(height: int = 16, width: int = 24) -> npt.NDArray[np.uint8]:
    """Four constant-colour quadrants (even-sized, so the bayer tiles align with them)."""
    img = np.empty((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    img[:h2, :w2], img[:h2, w2:], img[h2:, :w2], img[h2:, w2:] = BLOCK_COLOURS
    return img


def raw_image(
    pixels: npt.NDArray[Any],
    encoding: str,
    *,
    row_pad: int = 0,
    bigendian: bool = False,
    ts: Typestore = ROS2,
) -> Any:
    """A sensor_msgs/Image holding `pixels` ((H, W), (H, W, C)) with `row_pad` garbage bytes per row."""
    height, width = pixels.shape[:2]
    dtype = pixels.dtype.newbyteorder(">" if bigendian else "<")
    row_bytes = width * int(np.prod(pixels.shape[2:])) * pixels.itemsize
    row = np.ascontiguousarray(pixels, dtype=dtype).view(np.uint8).reshape(height, row_bytes)
    step = row.shape[1] + row_pad
    data = np.full((height, step), PAD_BYTE, np.uint8)
    data[:, : row.shape[1]] = row
    return ts.types["sensor_msgs/msg/Image"](
        header=header(ts),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=step,
        data=data.reshape(-1),
    )


def compressed_image(data: bytes | npt.NDArray[np.uint8], fmt: str, ts: Typestore = ROS2) -> Any:
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=header(ts), format=fmt, data=np.frombuffer(bytes(data), np.uint8)
    )


def encode(ext: str, img: npt.NDArray[Any]) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return bytes(buf)


# -- raw colour --------------------------------------------------------------------------------


def with_alpha(img: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return np.concatenate([img, np.full((*img.shape[:2], 1), 7, np.uint8)], axis=2)


def bgr(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return rgb[..., ::-1]


# encoding: how to lay an RGB image out in that encoding
COLOUR_ENCODINGS: dict[str, Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]]] = {
    "rgb8": lambda rgb: rgb,
    "bgr8": bgr,
    "8UC3": bgr,
    "rgba8": with_alpha,
    "bgra8": lambda rgb: with_alpha(bgr(rgb)),
    "8UC4": lambda rgb: with_alpha(bgr(rgb)),
}


@pytest.mark.parametrize("encoding", sorted(COLOUR_ENCODINGS))
@pytest.mark.parametrize("row_pad", [0, 5])
def test_colour_encoding_decodes_to_exact_rgb(encoding: str, row_pad: int) -> None:
    rgb = random_rgb()

    img = decode_image(raw_image(COLOUR_ENCODINGS[encoding](rgb), encoding, row_pad=row_pad))

    assert img.pixels.dtype == np.uint8
    assert img.pixels.shape == (H, W, 3)
    assert img.pixels.flags.c_contiguous
    np.testing.assert_array_equal(img.pixels, rgb)
    assert img.encoding == encoding
    assert img.frame_id == "cam_front"
    assert img.stamp_ns == STAMP_SEC * 1_000_000_000 + STAMP_NANOSEC


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_stays_two_dimensional_uint8(encoding: str) -> None:
    mono = random_rgb()[..., 0].copy()

    img = decode_image(raw_image(mono, encoding, row_pad=3))

    assert img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, mono)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_stays_uint16_in_either_byte_order(encoding: str, bigendian: bool) -> None:
    mono = np.random.default_rng(1).integers(0, 65536, (H, W), dtype=np.uint16)
    mono[0, :3] = [1, 256, 0xABCD]  # byte-order-sensitive values

    img = decode_image(raw_image(mono, encoding, row_pad=2, bigendian=bigendian))

    assert img.pixels.dtype == np.uint16
    assert img.pixels.dtype.isnative
    np.testing.assert_array_equal(img.pixels, mono)


def test_ros1_store_image_decodes() -> None:
    rgb = random_rgb(3)
    img = decode_image(raw_image(rgb[..., ::-1], "bgr8", ts=ROS1))
    np.testing.assert_array_equal(img.pixels, rgb)


def test_empty_image_decodes_to_zero_size() -> None:
    img = decode_image(raw_image(np.zeros((0, 4, 3), np.uint8), "rgb8"))
    assert img.pixels.shape == (0, 4, 3)


# -- bayer -------------------------------------------------------------------------------------

CHANNEL = {"r": 0, "g": 1, "b": 2}


def mosaic(rgb: npt.NDArray[np.uint8], pattern: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.intp]]:
    """Sample `rgb` through the 2x2 bayer tile `pattern` (colours row by row from the top left).

    Returns the mosaic (H, W) uint8 and, per pixel, the channel index it sampled (H, W).
    """
    height, width = rgb.shape[:2]
    out = np.empty((height, width), np.uint8)
    channel = np.empty((height, width), np.intp)
    for dy in range(2):
        for dx in range(2):
            c = CHANNEL[pattern[2 * dy + dx]]
            out[dy::2, dx::2] = rgb[dy::2, dx::2, c]
            channel[dy::2, dx::2] = c
    return out, channel


BAYER_PATTERNS = ["rggb", "bggr", "gbrg", "grbg"]


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bayer_constant_colour_regions_demosaic_exactly(pattern: str) -> None:
    rgb = blocks_rgb()
    mosaic_img, _ = mosaic(rgb, pattern)

    img = decode_image(raw_image(mosaic_img, f"bayer_{pattern}8", row_pad=4))

    assert img.pixels.shape == (16, 24, 3)
    assert img.pixels.dtype == np.uint8
    # interior of each quadrant: 2 px from its edges, where bilinear sees one colour only
    for (r0, r1), (c0, c1), colour in [
        ((2, 6), (2, 10), BLOCK_COLOURS[0]),
        ((2, 6), (14, 22), BLOCK_COLOURS[1]),
        ((10, 14), (2, 10), BLOCK_COLOURS[2]),
        ((10, 14), (14, 22), BLOCK_COLOURS[3]),
    ]:
        np.testing.assert_array_equal(
            img.pixels[r0:r1, c0:c1], np.broadcast_to(colour, (r1 - r0, c1 - c0, 3))
        )


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bayer_keeps_each_sampled_channel_exactly(pattern: str) -> None:
    rgb = random_rgb(5, 14, 18)
    mosaic_img, channel = mosaic(rgb, pattern)

    img = decode_image(raw_image(mosaic_img, f"bayer_{pattern}8"))

    sampled = np.take_along_axis(img.pixels, channel[..., None], axis=2)[..., 0]
    # OpenCV replicates the border rows/columns; every interior site keeps its sample
    np.testing.assert_array_equal(sampled[1:-1, 1:-1], mosaic_img[1:-1, 1:-1])


def test_every_raw_encoding_is_covered_by_these_tests() -> None:
    tested = (
        set(COLOUR_ENCODINGS) | {"mono8", "8UC1", "mono16", "16UC1"} | {f"bayer_{p}8" for p in BAYER_PATTERNS}
    )
    assert tested == set(RAW_ENCODINGS)


# -- compressed --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", "rgb8; png compressed bgr8", "PNG"])
def test_png_colour_decodes_to_exact_rgb(fmt: str) -> None:
    rgb = random_rgb(7)

    img = decode_image(compressed_image(encode(".png", rgb[..., ::-1]), fmt))

    assert img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, rgb)
    assert img.encoding == fmt
    assert img.stamp_ns == STAMP_SEC * 1_000_000_000 + STAMP_NANOSEC


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"])
def test_jpeg_colour_decodes_to_rgb_in_the_right_channel_order(fmt: str) -> None:
    rgb = blocks_rgb(32, 48)

    img = decode_image(compressed_image(encode(".jpg", rgb[..., ::-1]), fmt))

    assert img.pixels.shape == (32, 48, 3)
    assert img.pixels.dtype == np.uint8
    # lossy: quadrant interiors within a few levels of their colour, channels not swapped
    for (rows, cols), colour in zip(
        [((4, 12), (4, 20)), ((4, 12), (28, 44)), ((20, 28), (4, 20)), ((20, 28), (28, 44))],
        BLOCK_COLOURS,
        strict=True,
    ):
        block = img.pixels[rows[0] : rows[1], cols[0] : cols[1]].astype(int)
        assert np.abs(block - colour.astype(int)).max() <= 8


def test_mono_png_stays_two_dimensional() -> None:
    mono = random_rgb(8)[..., 1].copy()
    img = decode_image(compressed_image(encode(".png", mono), "mono8; png compressed mono8"))
    assert img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, mono)


def test_mono16_png_stays_uint16() -> None:
    mono = np.random.default_rng(9).integers(0, 65536, (H, W), dtype=np.uint16)
    img = decode_image(compressed_image(encode(".png", mono), "mono16; png compressed mono16"))
    assert img.pixels.dtype == np.uint16
    np.testing.assert_array_equal(img.pixels, mono)


def test_mono_jpeg_stays_two_dimensional() -> None:
    mono = np.full((16, 16), 100, np.uint8)
    img = decode_image(compressed_image(encode(".jpg", mono), "mono8; jpeg compressed mono8"))
    assert img.pixels.shape == (16, 16)
    assert np.abs(img.pixels.astype(int) - 100).max() <= 2


def test_mono_original_compressed_as_colour_comes_out_mono() -> None:
    mono = random_rgb(10)[..., 0].copy()
    bgr = np.repeat(mono[..., None], 3, axis=2)
    img = decode_image(compressed_image(encode(".png", bgr), "mono8; png compressed bgr8"))
    np.testing.assert_array_equal(img.pixels, mono)


def test_bayer_mosaic_compressed_as_mono_png_is_demosaiced() -> None:
    rgb = blocks_rgb()
    mosaic_img, _ = mosaic(rgb, "grbg")
    img = decode_image(compressed_image(encode(".png", mosaic_img), "bayer_grbg8; png compressed mono8"))
    np.testing.assert_array_equal(img.pixels[2:6, 2:10], np.broadcast_to(BLOCK_COLOURS[0], (4, 8, 3)))


def test_ros1_store_compressed_image_decodes() -> None:
    rgb = random_rgb(11)
    img = decode_image(compressed_image(encode(".png", rgb[..., ::-1]), "png", ts=ROS1))
    np.testing.assert_array_equal(img.pixels, rgb)


# -- errors ------------------------------------------------------------------------------------


def test_unknown_encoding_raises_naming_it_and_the_supported_ones() -> None:
    msg = raw_image(np.zeros((2, 2, 2), np.uint8), "yuv422")
    with pytest.raises(
        DecodeError, match=r"encoding 'yuv422'.*supported encodings: rgb8, bgr8, .*bayer_rggb8"
    ):
        decode_image(msg)


def test_unknown_compressed_format_raises_naming_it_and_the_supported_codecs() -> None:
    msg = compressed_image(b"\x00" * 16, "16UC1; compressedDepth png")
    with pytest.raises(
        DecodeError, match=r"format '16UC1; compressedDepth png'.*supported codecs: jpeg, jpg, png"
    ):
        decode_image(msg)


def test_corrupt_jpeg_raises() -> None:
    data = encode(".jpg", blocks_rgb())[:20]
    with pytest.raises(DecodeError, match=r"could not decode the 20 bytes as jpeg"):
        decode_image(compressed_image(data, "jpeg"))


def test_empty_compressed_data_raises() -> None:
    with pytest.raises(DecodeError, match=r"holds no image data"):
        decode_image(compressed_image(b"", "jpeg"))


def test_truncated_raw_image_raises() -> None:
    msg = raw_image(random_rgb(), "rgb8", row_pad=1)
    object.__setattr__(msg, "data", msg.data[:-1])
    with pytest.raises(
        DecodeError, match=r"fewer than step \* height = 61 \* 12 = 732; the message is truncated"
    ):
        decode_image(msg)


def test_step_smaller_than_a_row_raises() -> None:
    msg = raw_image(random_rgb(), "rgba8", row_pad=0)
    object.__setattr__(msg, "step", W * 3)
    with pytest.raises(DecodeError, match=r"step 60 is smaller than width \* bytes per pixel = 20 \* 4"):
        decode_image(msg)


def test_message_of_another_type_raises() -> None:
    info = ROS2.types["sensor_msgs/msg/CameraInfo"]
    msg = info.__new__(info)  # fields do not matter: the type is checked first
    with pytest.raises(DecodeError, match=r"decode_image reads sensor_msgs/msg/Image or .*CompressedImage"):
        decode_image(msg)
