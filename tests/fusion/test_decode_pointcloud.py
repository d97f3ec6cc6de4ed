"""decode_pointcloud2: every datatype, the drivers' layouts, padding, endianness, NaNs, errors.

Clouds are built with rosbags message classes; `pack_cloud` writes columns into a byte
buffer laid out as a driver would (garbage in padding bytes, so reading padding shows).
`LAYOUTS` and `pack_cloud` are shared with test_roundtrip_formats.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from fusion.decode import decode_pointcloud2
from fusion.errors import DecodeError

ROS2 = get_typestore(Stores.ROS2_HUMBLE)
ROS1 = get_typestore(Stores.ROS1_NOETIC)

INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64, INT64, UINT64 = range(1, 11)
NUMPY_CODE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8", 9: "i8", 10: "u8"}
PAD_BYTE = 0xEE  # written into every byte no field covers
STAMP_SEC, STAMP_NANOSEC = 1_700_000_000, 123_456_789
STAMP_NS = STAMP_SEC * 1_000_000_000 + STAMP_NANOSEC


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass(frozen=True)
class Layout:
    name: str
    fields: tuple[Field, ...]
    point_step: int


# Layouts as the drivers publish them (offsets, types, padding).
VELODYNE = Layout(
    "velodyne",
    (
        Field("x", 0, FLOAT32),
        Field("y", 4, FLOAT32),
        Field("z", 8, FLOAT32),
        Field("intensity", 12, FLOAT32),
        Field("ring", 16, UINT16),
        Field("time", 18, FLOAT32),
    ),
    22,
)
OUSTER = Layout(  # ouster-ros: 4 bytes padding after z, 48-byte points with trailing padding
    "ouster",
    (
        Field("x", 0, FLOAT32),
        Field("y", 4, FLOAT32),
        Field("z", 8, FLOAT32),
        Field("intensity", 16, FLOAT32),
        Field("t", 20, UINT32),
        Field("reflectivity", 24, UINT16),
        Field("ring", 26, UINT16),
        Field("ambient", 28, UINT16),
        Field("range", 32, UINT32),
    ),
    48,
)
HESAI = Layout(  # absolute float64 seconds in `timestamp`
    "hesai",
    (
        Field("x", 0, FLOAT32),
        Field("y", 4, FLOAT32),
        Field("z", 8, FLOAT32),
        Field("intensity", 12, FLOAT32),
        Field("timestamp", 16, FLOAT64),
        Field("ring", 24, UINT16),
    ),
    32,
)
LAYOUTS = (VELODYNE, OUSTER, HESAI)


def header(ts: Typestore, frame: str = "lidar", sec: int = STAMP_SEC, nanosec: int = STAMP_NANOSEC) -> Any:
    """std_msgs/Header for either store (ROS1's has `seq`)."""
    hdr_cls = ts.types["std_msgs/msg/Header"]
    stamp = ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    if any(name == "seq" for name, _ in ts.fielddefs["std_msgs/msg/Header"][1]):
        return hdr_cls(seq=0, stamp=stamp, frame_id=frame)
    return hdr_cls(stamp=stamp, frame_id=frame)


def pack_cloud(
    layout: Layout,
    columns: dict[str, npt.NDArray[Any]],
    *,
    height: int,
    width: int,
    row_pad: int = 0,
    bigendian: bool = False,
    ts: Typestore = ROS2,
    frame: str = "lidar",
) -> Any:
    """A PointCloud2 message holding `columns` ((H*W,) or (H*W, count) arrays, row-major)."""
    order = ">" if bigendian else "<"
    rec_dtype = np.dtype(
        {
            "names": [f.name for f in layout.fields],
            "formats": [(order + NUMPY_CODE[f.datatype], (f.count,)) for f in layout.fields],
            "offsets": [f.offset for f in layout.fields],
            "itemsize": layout.point_step,
        }
    )
    n = height * width
    raw = np.full(n * layout.point_step, PAD_BYTE, dtype=np.uint8)
    points = raw.view(rec_dtype)
    for f in layout.fields:
        if f.name in columns:
            points[f.name] = columns[f.name].reshape(n, f.count)
    row_step = width * layout.point_step + row_pad
    rows = np.full((height, row_step), PAD_BYTE, dtype=np.uint8)
    rows[:, : width * layout.point_step] = raw.reshape(height, width * layout.point_step)
    pf = ts.types["sensor_msgs/msg/PointField"]
    return ts.types["sensor_msgs/msg/PointCloud2"](
        header=header(ts, frame),
        height=height,
        width=width,
        fields=[pf(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in layout.fields],
        is_bigendian=bigendian,
        point_step=layout.point_step,
        row_step=row_step,
        data=rows.reshape(-1),
        is_dense=False,
    )


def driver_columns(layout: Layout, n: int, seed: int = 0) -> dict[str, npt.NDArray[Any]]:
    """Plausible values for every field of a layout: a 0.1 s sweep, 32 rings."""
    rng = np.random.default_rng(seed)
    sweep_s = np.sort(rng.uniform(0.0, 0.1, n))
    cols: dict[str, npt.NDArray[Any]] = {
        "x": rng.uniform(-80, 80, n).astype(np.float32),
        "y": rng.uniform(-80, 80, n).astype(np.float32),
        "z": rng.uniform(-3, 10, n).astype(np.float32),
        "intensity": rng.uniform(0, 255, n).astype(np.float32),
        "ring": rng.integers(0, 32, n).astype(np.uint16),
        "time": sweep_s.astype(np.float32),
        "t": np.rint(sweep_s * 1e9).astype(np.uint32),
        "reflectivity": rng.integers(0, 65535, n).astype(np.uint16),
        "ambient": rng.integers(0, 65535, n).astype(np.uint16),
        "range": rng.integers(0, 200_000, n).astype(np.uint32),
        "timestamp": STAMP_SEC + (STAMP_NANOSEC * 1e-9 + sweep_s),
    }
    return {f.name: cols[f.name] for f in layout.fields}


def expected_time_offsets(layout: Layout, cols: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.int32]:
    """The int32 ns offsets each driver convention means, computed independently (exact rationals)."""
    if "t" in cols:
        return cols["t"].astype(np.int32)
    if "time" in cols:
        return np.array([round(Fraction(float(v)) * 10**9) for v in cols["time"]], dtype=np.int32)
    stamp = Fraction(STAMP_NS, 10**9)
    return np.array([round((Fraction(float(v)) - stamp) * 10**9) for v in cols["timestamp"]], dtype=np.int32)


def xyz_of(cols: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
    return np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float32)


# -- datatypes ---------------------------------------------------------------------------------

DATATYPE_VALUES = {
    INT8: [-128, -1, 0, 127],
    UINT8: [0, 1, 200, 255],
    INT16: [-32768, -5, 7, 32767],
    UINT16: [0, 9, 40000, 65535],
    INT32: [-(2**31), -3, 11, 2**31 - 1],
    UINT32: [0, 13, 3_000_000_000, 2**32 - 1],
    FLOAT32: [-1.5, 0.0, 3.25, 1e30],
    FLOAT64: [-2.5, 0.125, 1e10, -1e-300],
    INT64: [-(2**40), -1, 0, 2**40],
    UINT64: [0, 1, 2**40, 2**50],
}


@pytest.mark.parametrize("datatype", sorted(DATATYPE_VALUES))
def test_every_pointfield_datatype_decodes_to_float32_xyz_and_intensity(datatype: int) -> None:
    size = int(NUMPY_CODE[datatype][1])
    layout = Layout(
        "one_type",
        tuple(Field(name, i * size, datatype) for i, name in enumerate(("x", "y", "z", "intensity"))),
        4 * size,
    )
    values = np.array(DATATYPE_VALUES[datatype], dtype=NUMPY_CODE[datatype])
    cols = {"x": values, "y": values[::-1].copy(), "z": np.roll(values, 1), "intensity": values}

    cloud = decode_pointcloud2(pack_cloud(layout, cols, height=1, width=4))

    assert cloud.xyz.dtype == np.float32
    assert cloud.xyz.shape == (4, 3)
    np.testing.assert_array_equal(cloud.xyz, xyz_of(cols))
    assert cloud.intensity is not None
    assert cloud.intensity.dtype == np.float32
    np.testing.assert_array_equal(cloud.intensity, values.astype(np.float32))
    assert cloud.ring is None
    assert cloud.time_offset_ns is None
    assert cloud.num_dropped == 0


@pytest.mark.parametrize("datatype", [INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64])
def test_ring_of_any_datatype_becomes_uint16(datatype: int) -> None:
    size = int(NUMPY_CODE[datatype][1])
    layout = Layout(
        "ring_type",
        (Field("x", 0, FLOAT32), Field("y", 4, FLOAT32), Field("z", 8, FLOAT32), Field("ring", 12, datatype)),
        12 + size,
    )
    rings = np.array([0, 1, 63, 127], dtype=NUMPY_CODE[datatype])
    cols = {"x": np.ones(4, np.float32), "y": np.zeros(4, np.float32), "z": np.zeros(4, np.float32)}

    cloud = decode_pointcloud2(pack_cloud(layout, {**cols, "ring": rings}, height=1, width=4))

    assert cloud.ring is not None
    assert cloud.ring.dtype == np.uint16
    np.testing.assert_array_equal(cloud.ring, [0, 1, 63, 127])


# -- driver layouts ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.name)
def test_driver_layout_decodes_every_field_exactly(layout: Layout) -> None:
    cols = driver_columns(layout, 500)

    cloud = decode_pointcloud2(pack_cloud(layout, cols, height=1, width=500))

    np.testing.assert_array_equal(cloud.xyz, xyz_of(cols))
    assert cloud.intensity is not None
    np.testing.assert_array_equal(cloud.intensity, cols["intensity"])  # not Ouster's reflectivity
    assert cloud.ring is not None
    assert cloud.ring.dtype == np.uint16
    np.testing.assert_array_equal(cloud.ring, cols["ring"])
    assert cloud.time_offset_ns is not None
    assert cloud.time_offset_ns.dtype == np.int32
    np.testing.assert_array_equal(cloud.time_offset_ns, expected_time_offsets(layout, cols))
    assert cloud.stamp_ns == STAMP_NS
    assert cloud.frame_id == "lidar"
    assert len(cloud) == 500


def test_velodyne_point_packed_by_hand_decodes() -> None:
    """One point written with struct.pack, independent of the numpy packing helper."""
    data = struct.pack("<ffff", 1.5, -2.0, 0.25, 99.0) + struct.pack("<Hf", 7, 0.0625)  # x y z i ring time
    pf = ROS2.types["sensor_msgs/msg/PointField"]
    fields = [pf(name=f.name, offset=f.offset, datatype=f.datatype, count=1) for f in VELODYNE.fields]
    msg = ROS2.types["sensor_msgs/msg/PointCloud2"](
        header=header(ROS2, "/velodyne"),
        height=1,
        width=1,
        fields=fields,
        is_bigendian=False,
        point_step=22,
        row_step=22,
        data=np.frombuffer(data, np.uint8),
        is_dense=True,
    )

    cloud = decode_pointcloud2(msg)

    np.testing.assert_array_equal(cloud.xyz, [[1.5, -2.0, 0.25]])
    assert cloud.intensity is not None and cloud.intensity.tolist() == [99.0]
    assert cloud.ring is not None and cloud.ring.tolist() == [7]
    assert cloud.time_offset_ns is not None and cloud.time_offset_ns.tolist() == [62_500_000]
    assert cloud.frame_id == "velodyne"  # leading '/' of ROS1-era frame ids stripped


def test_data_as_python_bytes_is_read_without_copying_into_numpy_first() -> None:
    cols = driver_columns(VELODYNE, 10)
    msg = pack_cloud(VELODYNE, cols, height=1, width=10)
    object.__setattr__(msg, "data", bytes(msg.data))

    cloud = decode_pointcloud2(msg)

    np.testing.assert_array_equal(cloud.xyz, xyz_of(cols))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.name)
def test_common_layouts_are_decoded_as_read_only_views_without_copying(layout: Layout) -> None:
    cols = driver_columns(layout, 300)
    msg = pack_cloud(layout, cols, height=1, width=300)

    cloud = decode_pointcloud2(msg)

    assert np.shares_memory(cloud.xyz, msg.data)  # float32 x, y, z side by side: a view
    assert cloud.intensity is not None
    assert np.shares_memory(cloud.intensity, msg.data) == (cols["intensity"].dtype == np.float32)
    assert cloud.ring is not None and np.shares_memory(cloud.ring, msg.data)
    np.testing.assert_array_equal(cloud.xyz, xyz_of(cols))


def test_a_cloud_with_nan_points_is_copied_and_compacted_not_viewed() -> None:
    cols = driver_columns(VELODYNE, 100)
    cols["y"][[3, 50]] = np.nan
    msg = pack_cloud(VELODYNE, cols, height=1, width=100)

    cloud = decode_pointcloud2(msg)

    assert not np.shares_memory(cloud.xyz, msg.data)
    assert (len(cloud), cloud.num_dropped) == (98, 2)
    keep = np.ones(100, bool)
    keep[[3, 50]] = False
    np.testing.assert_array_equal(cloud.xyz, xyz_of(cols)[keep])
    assert cloud.ring is not None
    np.testing.assert_array_equal(cloud.ring, cols["ring"][keep])


def test_ros1_store_message_decodes_like_ros2() -> None:
    cols = driver_columns(OUSTER, 50)

    ros1 = decode_pointcloud2(pack_cloud(OUSTER, cols, height=1, width=50, ts=ROS1))
    ros2 = decode_pointcloud2(pack_cloud(OUSTER, cols, height=1, width=50, ts=ROS2))

    np.testing.assert_array_equal(ros1.xyz, ros2.xyz)
    assert ros1.time_offset_ns is not None and ros2.time_offset_ns is not None
    np.testing.assert_array_equal(ros1.time_offset_ns, ros2.time_offset_ns)
    assert ros1.stamp_ns == ros2.stamp_ns == STAMP_NS


def test_big_endian_cloud_decodes_to_native_values() -> None:
    cols = driver_columns(VELODYNE, 64)

    cloud = decode_pointcloud2(pack_cloud(VELODYNE, cols, height=1, width=64, bigendian=True))

    np.testing.assert_array_equal(cloud.xyz, xyz_of(cols))
    assert cloud.ring is not None and cloud.ring.dtype == np.uint16
    np.testing.assert_array_equal(cloud.ring, cols["ring"])
    assert cloud.time_offset_ns is not None
    np.testing.assert_array_equal(cloud.time_offset_ns, expected_time_offsets(VELODYNE, cols))


def test_organised_cloud_with_row_padding_comes_out_row_major() -> None:
    height, width = 16, 32
    cols = driver_columns(OUSTER, height * width)

    msg = pack_cloud(OUSTER, cols, height=height, width=width, row_pad=13)
    cloud = decode_pointcloud2(msg)

    assert msg.row_step == width * 48 + 13
    np.testing.assert_array_equal(cloud.xyz, xyz_of(cols))
    assert cloud.ring is not None
    np.testing.assert_array_equal(cloud.ring, cols["ring"])
    assert cloud.time_offset_ns is not None
    np.testing.assert_array_equal(cloud.time_offset_ns, cols["t"].astype(np.int32))


def test_points_with_nan_or_inf_coordinate_are_dropped_and_counted() -> None:
    cols = driver_columns(VELODYNE, 10)
    cols["x"][1] = np.nan
    cols["y"][4] = np.inf
    cols["z"][7] = -np.inf
    cols["time"][1] = np.nan  # time of a dropped point does not matter
    keep = np.ones(10, bool)
    keep[[1, 4, 7]] = False

    cloud = decode_pointcloud2(pack_cloud(VELODYNE, cols, height=2, width=5, row_pad=3))

    assert cloud.num_dropped == 3
    assert len(cloud) == 7
    np.testing.assert_array_equal(cloud.xyz, xyz_of(cols)[keep])
    assert cloud.intensity is not None and cloud.ring is not None and cloud.time_offset_ns is not None
    np.testing.assert_array_equal(cloud.intensity, cols["intensity"][keep])
    np.testing.assert_array_equal(cloud.ring, cols["ring"][keep])
    kept_cols = {name: col[keep] for name, col in cols.items()}
    np.testing.assert_array_equal(cloud.time_offset_ns, expected_time_offsets(VELODYNE, kept_cols))


def test_fields_with_count_above_one_contribute_their_first_element() -> None:
    layout = Layout(
        "counts",
        (
            Field("x", 0, FLOAT32, count=2),
            Field("y", 8, FLOAT64, count=1),
            Field("z", 16, INT16, count=3),
            Field("ring", 22, UINT8, count=4),
            Field("t", 26, UINT32, count=2),
        ),
        34,
    )
    cols = {
        "x": np.array([[1.0, 9.0], [2.0, 9.0]], np.float32),
        "y": np.array([3.0, 4.0]),
        "z": np.array([[5, 99, 99], [6, 99, 99]], np.int16),
        "ring": np.array([[10, 0, 0, 0], [11, 0, 0, 0]], np.uint8),
        "t": np.array([[100, 7], [200, 7]], np.uint32),
    }

    cloud = decode_pointcloud2(pack_cloud(layout, cols, height=1, width=2))

    np.testing.assert_array_equal(cloud.xyz, [[1, 3, 5], [2, 4, 6]])
    assert cloud.ring is not None and cloud.ring.tolist() == [10, 11]
    assert cloud.time_offset_ns is not None and cloud.time_offset_ns.tolist() == [100, 200]


# -- per-point time conventions ----------------------------------------------------------------


def xyz_layout(extra: Field, point_step: int) -> Layout:
    return Layout(
        "time", (Field("x", 0, FLOAT32), Field("y", 4, FLOAT32), Field("z", 8, FLOAT32), extra), point_step
    )


def decode_time(field: Field, point_step: int, values: npt.NDArray[Any]) -> list[int]:
    n = len(values)
    cols = {"x": np.zeros(n, np.float32), "y": np.zeros(n, np.float32), "z": np.zeros(n, np.float32)}
    cloud = decode_pointcloud2(
        pack_cloud(xyz_layout(field, point_step), {**cols, field.name: values}, height=1, width=n)
    )
    assert cloud.time_offset_ns is not None
    assert cloud.time_offset_ns.dtype == np.int32
    return [int(v) for v in cloud.time_offset_ns]


def test_time_offset_float_is_seconds_and_integer_is_ns() -> None:
    assert decode_time(Field("time_offset", 12, FLOAT64), 20, np.array([0.0, 0.05, -0.001])) == [
        0,
        50_000_000,
        -1_000_000,
    ]
    assert decode_time(Field("time_offset", 12, INT32), 16, np.array([0, 7, -3], np.int32)) == [0, 7, -3]


def test_offset_ns_is_ns_whatever_the_datatype() -> None:
    assert decode_time(Field("offset_ns", 12, UINT32), 16, np.array([0, 99_999_999], np.uint32)) == [
        0,
        99_999_999,
    ]
    assert decode_time(Field("offset_ns", 12, FLOAT64), 20, np.array([12.0, 1e8])) == [12, 100_000_000]


def test_timestamp_as_uint64_absolute_ns_subtracts_the_header_stamp_exactly() -> None:
    values = np.array([STAMP_NS - 5, STAMP_NS, STAMP_NS + 99_999_999], np.uint64)
    assert decode_time(Field("timestamp", 12, UINT64), 20, values) == [-5, 0, 99_999_999]


def test_timestamp_as_float64_absolute_ns_is_recognised() -> None:
    """livox_ros_driver2 writes absolute ns into a float64 `timestamp`."""
    values = np.array([float(STAMP_NS), float(STAMP_NS + 50_000_000)])
    got = decode_time(Field("timestamp", 12, FLOAT64), 20, values)
    want = [round(Fraction(float(v)) - STAMP_NS) for v in values]  # float64 ns resolution is 256 ns here
    assert got == want
    assert abs(got[1] - 50_000_000) < 256


def test_float64_absolute_seconds_keep_sub_microsecond_precision() -> None:
    offsets_ns = np.array([0, 1, 333, 1_000_001, 99_999_999])
    values = np.array([float(Fraction(STAMP_NS + int(o), 10**9)) for o in offsets_ns])
    got = decode_time(Field("timestamp", 12, FLOAT64), 20, values)
    # float64 of an epoch time resolves about 240 ns; the decoder must not add error of its own
    want = [round((Fraction(float(v)) - Fraction(STAMP_NS, 10**9)) * 10**9) for v in values]
    assert got == want
    assert np.abs(np.array(got) - offsets_ns).max() <= 120


def test_relative_time_field_is_preferred_over_absolute_timestamp() -> None:
    layout = Layout(
        "both",
        (
            Field("x", 0, FLOAT32),
            Field("y", 4, FLOAT32),
            Field("z", 8, FLOAT32),
            Field("timestamp", 12, FLOAT64),
            Field("t", 20, UINT32),
        ),
        24,
    )
    cols = {k: np.zeros(2, np.float32) for k in "xyz"}
    cols["timestamp"] = np.array([1e9, 2e9])  # nonsense, must be ignored
    cols["t"] = np.array([5, 6], np.uint32)

    cloud = decode_pointcloud2(pack_cloud(layout, cols, height=1, width=2))

    assert cloud.time_offset_ns is not None and cloud.time_offset_ns.tolist() == [5, 6]


def test_time_offsets_beyond_int32_raise_naming_the_field() -> None:
    with pytest.raises(DecodeError, match=r"time field 'time'.*seconds from the header stamp.*int32"):
        decode_time(Field("time", 12, FLOAT32), 16, np.array([0.0, 3.0], np.float32))
    with pytest.raises(DecodeError, match=r"time field 'timestamp'.*absolute"):
        decode_time(Field("timestamp", 12, FLOAT64), 20, np.array([12.5, 13.0]))  # sim time, not epoch


def test_nan_time_of_a_finite_point_raises() -> None:
    with pytest.raises(DecodeError, match=r"time field 'time' is NaN or infinite at 1 points"):
        decode_time(Field("time", 12, FLOAT32), 16, np.array([0.0, np.nan], np.float32))


# -- fallbacks and empty clouds ----------------------------------------------------------------


def test_intensity_falls_back_to_i_then_reflectivity() -> None:
    cols = {k: np.zeros(2, np.float32) for k in "xyz"}
    for name in ("i", "reflectivity"):
        layout = xyz_layout(Field(name, 12, UINT16), 14)
        cloud = decode_pointcloud2(
            pack_cloud(layout, {**cols, name: np.array([3, 4], np.uint16)}, height=1, width=2)
        )
        assert cloud.intensity is not None and cloud.intensity.tolist() == [3.0, 4.0]


@pytest.mark.parametrize("name", ["channel", "laser_number", "line"])
def test_ring_falls_back_to_driver_specific_names(name: str) -> None:
    cols = {k: np.zeros(2, np.float32) for k in "xyz"}
    layout = xyz_layout(Field(name, 12, UINT8), 13)
    cloud = decode_pointcloud2(
        pack_cloud(layout, {**cols, name: np.array([3, 4], np.uint8)}, height=1, width=2)
    )
    assert cloud.ring is not None and cloud.ring.tolist() == [3, 4]


def test_empty_cloud_decodes_to_zero_points() -> None:
    cloud = decode_pointcloud2(pack_cloud(VELODYNE, {}, height=1, width=0))
    assert cloud.xyz.shape == (0, 3) and cloud.xyz.dtype == np.float32
    assert cloud.time_offset_ns is not None and cloud.time_offset_ns.shape == (0,)
    assert cloud.num_dropped == 0


def test_all_points_nan_gives_an_empty_cloud() -> None:
    cols = driver_columns(VELODYNE, 4)
    cols["x"][:] = np.nan
    cloud = decode_pointcloud2(pack_cloud(VELODYNE, cols, height=1, width=4))
    assert len(cloud) == 0 and cloud.num_dropped == 4
    assert cloud.ring is not None and cloud.ring.shape == (0,)


# -- errors ------------------------------------------------------------------------------------


def test_missing_coordinate_raises_naming_the_fields_found() -> None:
    layout = Layout(
        "no_z", (Field("x", 0, FLOAT32), Field("y", 4, FLOAT32), Field("intensity", 8, FLOAT32)), 12
    )
    msg = pack_cloud(layout, {}, height=1, width=3)
    with pytest.raises(DecodeError, match=r"no field z; its fields are \['x', 'y', 'intensity'\]"):
        decode_pointcloud2(msg)


def test_truncated_data_raises() -> None:
    msg = pack_cloud(VELODYNE, driver_columns(VELODYNE, 8), height=2, width=4, row_pad=2)
    object.__setattr__(msg, "data", msg.data[:-1])
    with pytest.raises(
        DecodeError, match=r"data has 179 bytes, fewer than row_step \* height = 90 \* 2 = 180.*truncated"
    ):
        decode_pointcloud2(msg)


def test_row_step_smaller_than_a_row_raises() -> None:
    msg = pack_cloud(VELODYNE, driver_columns(VELODYNE, 4), height=1, width=4)
    object.__setattr__(msg, "row_step", 80)
    with pytest.raises(DecodeError, match=r"row_step 80 is smaller than width \* point_step = 4 \* 22"):
        decode_pointcloud2(msg)


def test_field_reaching_past_point_step_raises() -> None:
    layout = xyz_layout(Field("intensity", 12, FLOAT64), 16)
    msg = pack_cloud(Layout("ok", layout.fields, 20), {}, height=1, width=2)
    object.__setattr__(msg, "point_step", 16)
    object.__setattr__(msg, "row_step", 32)
    with pytest.raises(DecodeError, match=r"field 'intensity' spans bytes 12..20 but point_step is 16"):
        decode_pointcloud2(msg)


def test_unknown_datatype_of_a_used_field_raises() -> None:
    msg = pack_cloud(VELODYNE, driver_columns(VELODYNE, 2), height=1, width=2)
    msg.fields[4].datatype = 42
    with pytest.raises(DecodeError, match=r"field 'ring' has PointField datatype 42"):
        decode_pointcloud2(msg)


def test_unknown_datatype_of_an_unused_field_is_ignored() -> None:
    msg = pack_cloud(OUSTER, driver_columns(OUSTER, 2), height=1, width=2)
    msg.fields[-1].datatype = 0  # `range`, which decode does not read
    assert len(decode_pointcloud2(msg)) == 2


def test_ring_values_outside_uint16_raise() -> None:
    cols = {k: np.zeros(2, np.float32) for k in "xyz"}
    layout = xyz_layout(Field("ring", 12, INT32), 16)
    msg = pack_cloud(layout, {**cols, "ring": np.array([-1, 3], np.int32)}, height=1, width=2)
    with pytest.raises(DecodeError, match=r"ring field 'ring' has values -1..3, outside uint16"):
        decode_pointcloud2(msg)


def test_message_of_another_type_raises() -> None:
    image = ROS2.types["sensor_msgs/msg/Image"](
        header=header(ROS2),
        height=0,
        width=0,
        encoding="rgb8",
        is_bigendian=0,
        step=0,
        data=np.zeros(0, np.uint8),
    )
    with pytest.raises(
        DecodeError,
        match=r"decode_pointcloud2 reads sensor_msgs/msg/PointCloud2, got a sensor_msgs/msg/Image",
    ):
        decode_pointcloud2(image)
