"""sensor_msgs/PointCloud2 -> PointCloud, for any field layout a LiDAR driver writes.

The message's byte buffer is viewed, without copying, as a numpy structured array
whose dtype has the message's field offsets and `itemsize = point_step`, and whose
row stride is `row_step` (so row padding and organised clouds, `height > 1`, need no
special case). Points come out row by row.

Zero copy where the layout allows: when the rows are contiguous and a field is already
in the output type and the machine's byte order (float32 x, y, z side by side; float32
intensity; uint16 ring), the output array is a read-only strided view into the message
buffer and costs nothing; only when a point is non-finite, a type must be converted or
the time must be normalised is a copy made. A numba kernel checks finiteness in one pass.

Fields read (the first name present wins):

    x, y, z     required; any PointField datatype, converted to float32 metres.
                Points with a NaN or infinite coordinate are dropped and counted.
    intensity   `intensity`, then `i`, then `reflectivity` (used only when the cloud
                has no intensity, e.g. Livox) -> float32, raw driver values.
    ring        `ring`, then `channel`, `laser_number`, `line` (Livox) -> uint16.
    time        per-point capture time, normalised to int32 ns offsets from the
                header stamp. Conventions by field name, in order of preference:

        field         integer datatypes          float datatypes
        t             ns from header stamp       seconds from header stamp  (Ouster: uint32 ns)
        time          ns from header stamp       seconds from header stamp  (Velodyne: float32 s)
        time_offset   ns from header stamp       seconds from header stamp
        offset_ns     ns from header stamp       ns from header stamp
        timestamp     absolute ns                absolute seconds           (Hesai, Robosense: float64 s)

        A float `timestamp` whose offsets do not fit int32 as seconds but do as ns
        is read as absolute ns (livox_ros_driver2 writes float64 ns there).
        Absolute float seconds are subtracted from the stamp's integer seconds first,
        so float64 precision is not lost on epoch-sized values.

Fields with `count > 1` contribute their first element. Besides the eight PointField
datatypes, PCL's INT64 = 9 and UINT64 = 10 are accepted (e.g. a uint64 ns `timestamp`).
A cloud with no points decodes to an empty PointCloud whatever its fields.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numba
import numpy as np
import numpy.typing as npt

from fusion.decode.records import check_msgtype, frame_id, stamp_ns
from fusion.decode.types import PointCloud
from fusion.errors import DecodeError

logger = logging.getLogger(__name__)

POINTCLOUD2_TYPES: Final = ("sensor_msgs/msg/PointCloud2",)

# sensor_msgs/PointField datatype -> numpy type code (9, 10: PCL's 64-bit integers).
POINTFIELD_DTYPES: Final[Mapping[int, str]] = {
    1: "i1",  # INT8
    2: "u1",  # UINT8
    3: "i2",  # INT16
    4: "u2",  # UINT16
    5: "i4",  # INT32
    6: "u4",  # UINT32
    7: "f4",  # FLOAT32
    8: "f8",  # FLOAT64
    9: "i8",  # INT64 (PCL extension)
    10: "u8",  # UINT64 (PCL extension)
}

INTENSITY_FIELDS: Final = ("intensity", "i", "reflectivity")
RING_FIELDS: Final = ("ring", "channel", "laser_number", "line")

_NS_PER_S: Final = 1_000_000_000
_INT32 = np.iinfo(np.int32)
_UINT16 = np.iinfo(np.uint16)


_NATIVE = "<" if sys.byteorder == "little" else ">"


@numba.njit(cache=True, nogil=True)
def _count_nonfinite(xyz: npt.NDArray[Any]) -> int:  # pragma: no cover - compiled
    bad = 0
    for i in range(xyz.shape[0]):
        if not (np.isfinite(xyz[i, 0]) and np.isfinite(xyz[i, 1]) and np.isfinite(xyz[i, 2])):
            bad += 1
    return bad


@numba.njit(cache=True, nogil=True)
def _scan_xyz_and_time(
    xyz: npt.NDArray[Any], values: npt.NDArray[Any], scale: float, out: npt.NDArray[np.int32]
) -> tuple[int, bool]:  # pragma: no cover - compiled
    """One pass over the points: count non-finite xyz and convert relative float times to ns."""
    bad = 0
    ok = True
    lo, hi = -2147483648.0, 2147483647.0
    for i in range(xyz.shape[0]):
        if not (np.isfinite(xyz[i, 0]) and np.isfinite(xyz[i, 1]) and np.isfinite(xyz[i, 2])):
            bad += 1
        v = np.rint(np.float64(values[i]) * scale)
        if lo <= v <= hi:
            out[i] = np.int32(v)
        else:
            ok = False
    return bad, ok


@numba.njit(cache=True, nogil=True)
def _relative_float_to_ns(values: npt.NDArray[Any], scale: float, out: npt.NDArray[np.int32]) -> bool:
    """out[i] = rint(values[i] * scale); False (out unusable) on a non-finite or out-of-int32 value."""
    lo, hi = -2147483648.0, 2147483647.0
    for i in range(values.shape[0]):
        v = np.rint(np.float64(values[i]) * scale)
        if not (lo <= v <= hi):  # also false for NaN
            return False
        out[i] = np.int32(v)
    return True


@dataclass(frozen=True)
class TimeConvention:
    """How one per-point time field maps to ns offsets from the header stamp."""

    field: str
    absolute: bool  # values are times since the epoch, not offsets from the header stamp
    float_scale_to_ns: float  # multiplier for float datatypes (integers are always ns)


# In order of preference when a cloud has several.
TIME_CONVENTIONS: Final = (
    TimeConvention("t", absolute=False, float_scale_to_ns=1e9),
    TimeConvention("time", absolute=False, float_scale_to_ns=1e9),
    TimeConvention("time_offset", absolute=False, float_scale_to_ns=1e9),
    TimeConvention("offset_ns", absolute=False, float_scale_to_ns=1.0),
    TimeConvention("timestamp", absolute=True, float_scale_to_ns=1e9),
)


@dataclass(frozen=True)
class _Field:
    name: str
    offset: int
    datatype: int
    count: int


_DTYPES: dict[tuple[tuple[_Field, ...], str, int], np.dtype[np.void]] = {}


def _fields_by_name(msg: Any) -> dict[str, _Field]:
    fields: dict[str, _Field] = {}
    for f in msg.fields:
        name = str(f.name)
        if name not in fields:  # first definition wins, as in PCL
            fields[name] = _Field(name, int(f.offset), int(f.datatype), int(f.count))
    return fields


def _first_present(names: tuple[str, ...], fields: Mapping[str, _Field]) -> str | None:
    return next((n for n in names if n in fields), None)


def _byte_buffer(data: Any) -> npt.NDArray[np.uint8]:
    """The message's uint8[] data as a contiguous 1-D uint8 array (no copy when it already is one)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=np.uint8)
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        if arr.dtype.kind in "iu" and arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DecodeError(f"message data holds values outside 0..255 ({arr.dtype}); expected uint8 bytes")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr.reshape(-1))


def _struct_dtype(
    used: list[_Field], byteorder: str, point_step: int, where: str, all_names: list[str]
) -> np.dtype[np.void]:
    names: list[str] = []
    formats: list[str] = []
    offsets: list[int] = []
    for f in used:
        code = POINTFIELD_DTYPES.get(f.datatype)
        if code is None:
            raise DecodeError(
                f"{where}: field '{f.name}' has PointField datatype {f.datatype}, which is none of "
                f"{sorted(POINTFIELD_DTYPES)} (INT8=1 ... FLOAT64=8, PCL INT64=9, UINT64=10)"
            )
        size = int(code[1])
        end = f.offset + size * max(f.count, 1)
        if f.offset < 0 or end > point_step:
            raise DecodeError(
                f"{where}: field '{f.name}' spans bytes {f.offset}..{end} but point_step is {point_step}; "
                f"the field layout is inconsistent (fields: {all_names})"
            )
        names.append(f.name)
        formats.append(byteorder + code)
        offsets.append(f.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})


def _column(grid: npt.NDArray[np.void], name: str, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """One field of the (H, W) structured view as a dense (H*W,) array of `dtype` (one copy)."""
    height, width = grid.shape
    out = np.empty(height * width, dtype=dtype)
    out.reshape(height, width)[...] = grid[name]
    return out


def _empty_cloud(fields: Mapping[str, _Field], frame: str, t_ns: int) -> PointCloud:
    has_time = any(c.field in fields for c in TIME_CONVENTIONS)
    return PointCloud(
        xyz=np.empty((0, 3), dtype=np.float32),
        intensity=np.empty(0, np.float32) if _first_present(INTENSITY_FIELDS, fields) else None,
        time_offset_ns=np.empty(0, np.int32) if has_time else None,
        ring=np.empty(0, np.uint16) if _first_present(RING_FIELDS, fields) else None,
        frame_id=frame,
        stamp_ns=t_ns,
        num_dropped=0,
    )


def _offsets_from_float(
    values: npt.NDArray[np.floating[Any]], conv: TimeConvention, scale: float, t_ns: int
) -> npt.NDArray[np.float64]:
    """Float time values -> float64 ns offsets (integral) from the header stamp."""
    v = values.astype(np.float64, copy=False)
    if not conv.absolute:
        return np.rint(v * scale)
    sec, nanosec = divmod(t_ns, _NS_PER_S)
    if scale == 1.0:  # absolute ns: sec * 1e9 is exact in float64, so is the subtraction
        return np.rint(v - float(sec) * 1e9) - nanosec
    # absolute seconds: subtract the integer seconds first (exact), then scale.
    return np.rint((v - float(sec)) * scale) - nanosec


def _fits_int32(offsets: npt.NDArray[Any]) -> bool:
    if offsets.size == 0:
        return True
    return bool(offsets.min() >= _INT32.min and offsets.max() <= _INT32.max)


def _time_offsets(
    values: npt.NDArray[Any], conv: TimeConvention, t_ns: int, where: str
) -> npt.NDArray[np.int32]:
    """(N,) raw time field -> (N,) int32 ns offsets from the header stamp `t_ns`."""
    kind = values.dtype.kind
    if kind == "f" and not conv.absolute and values.size:
        out = np.empty(values.shape[0], dtype=np.int32)
        if _relative_float_to_ns(values, conv.float_scale_to_ns, out):
            return out
        # fall through: the numpy path below names what is wrong
    if kind in "iu":
        offsets: npt.NDArray[Any] = values.astype(np.int64)
        if conv.absolute:
            offsets = offsets - np.int64(t_ns)
        reading = "absolute ns" if conv.absolute else "ns from the header stamp"
    else:
        if not np.isfinite(values).all():
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise DecodeError(
                f"{where}: time field '{conv.field}' is NaN or infinite at {bad} points whose "
                "x, y, z are finite; the per-point times of this driver cannot be used"
            )
        unit = "seconds" if conv.float_scale_to_ns != 1.0 else "ns"
        reading = f"absolute {unit}" if conv.absolute else f"{unit} from the header stamp"
        offsets = _offsets_from_float(values, conv, conv.float_scale_to_ns, t_ns)
        if conv.absolute and conv.float_scale_to_ns != 1.0 and not _fits_int32(offsets):
            as_ns = _offsets_from_float(values, conv, 1.0, t_ns)
            if _fits_int32(as_ns):
                logger.debug("time field %r holds absolute ns, not seconds (%s)", conv.field, where)
                offsets, reading = as_ns, "absolute ns"
    if not _fits_int32(offsets):
        lo_s, hi_s = float(offsets.min()) * 1e-9, float(offsets.max()) * 1e-9
        raise DecodeError(
            f"{where}: time field '{conv.field}' ({values.dtype}, read as {reading}) gives offsets from "
            f"{lo_s:.6g} s to {hi_s:.6g} s relative to the header stamp, outside the int32 ns range "
            f"(about +-2.147 s); the driver's time convention differs from the ones "
            "fusion.decode.pointcloud.TIME_CONVENTIONS knows"
        )
    return offsets.astype(np.int32)


def _ring(values: npt.NDArray[Any], name: str, where: str) -> npt.NDArray[np.uint16]:
    if not np.can_cast(values.dtype, np.uint16) and values.size:
        lo, hi = values.min(), values.max()
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= _UINT16.min and hi <= _UINT16.max):
            raise DecodeError(f"{where}: ring field '{name}' has values {lo}..{hi}, outside uint16")
    return values.astype(np.uint16, copy=False)


def decode_pointcloud2(msg: Any) -> PointCloud:
    """sensor_msgs/PointCloud2 (as deserialised by rosbags, ROS1 or ROS2) -> PointCloud.

    Returns xyz: (N, 3) float32, intensity: (N,) float32 | None, ring: (N,) uint16 | None,
    time_offset_ns: (N,) int32 | None, where N is the number of points with finite x, y, z;
    `num_dropped` counts the others. See the module docstring for the field conventions.

    Raises DecodeError when x, y or z is missing, a used field has an unknown datatype or
    lies outside point_step, row_step < width * point_step, the data is shorter than
    row_step * height, or per-point times do not fit int32 ns offsets.
    """
    check_msgtype(msg, POINTCLOUD2_TYPES, "decode_pointcloud2")
    frame = frame_id(msg.header.frame_id)
    t_ns = stamp_ns(msg.header)
    where = f"PointCloud2 in frame '{frame}' at {t_ns} ns"
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    fields = _fields_by_name(msg)
    n = height * width
    if n == 0:
        return _empty_cloud(fields, frame, t_ns)

    missing = [c for c in ("x", "y", "z") if c not in fields]
    if missing:
        raise DecodeError(
            f"{where} has no field {', '.join(missing)}; its fields are {list(fields)}. "
            "decode_pointcloud2 needs x, y and z"
        )
    intensity_name = _first_present(INTENSITY_FIELDS, fields)
    ring_name = _first_present(RING_FIELDS, fields)
    time_conv = next((c for c in TIME_CONVENTIONS if c.field in fields), None)
    used_names = ["x", "y", "z"] + [
        name for name in (intensity_name, ring_name, time_conv.field if time_conv else None) if name
    ]

    if point_step <= 0:
        raise DecodeError(f"{where} has {n} points but point_step {point_step}")
    if row_step < width * point_step:
        raise DecodeError(
            f"{where}: row_step {row_step} is smaller than width * point_step = {width} * {point_step}; "
            "the message header is inconsistent"
        )
    data = _byte_buffer(msg.data)
    if data.size < row_step * height:
        raise DecodeError(
            f"{where}: data has {data.size} bytes, fewer than row_step * height = {row_step} * {height} "
            f"= {row_step * height}; the message is truncated"
        )
    byteorder = ">" if bool(msg.is_bigendian) else "<"
    used = tuple(fields[name] for name in used_names)
    dtype = _DTYPES.get((used, byteorder, point_step))
    if dtype is None:  # a driver's layout never changes within a log: build its dtype once
        dtype = _struct_dtype(list(used), byteorder, point_step, where, list(fields))
        if len(_DTYPES) < 256:
            _DTYPES[used, byteorder, point_step] = dtype
    # Zero-copy view: (H, W) records, rows `row_step` apart, points `point_step` apart.
    grid: npt.NDArray[np.void] = np.ndarray(
        shape=(height, width), dtype=dtype, buffer=data, offset=0, strides=(row_step, point_step)
    )

    contiguous_rows = height == 1 or row_step == width * point_step
    precomputed_time: npt.NDArray[np.int32] | None = None
    fx, fy, fz = fields["x"], fields["y"], fields["z"]
    if (
        contiguous_rows
        and byteorder == _NATIVE
        and fx.datatype == fy.datatype == fz.datatype == 7  # FLOAT32
        and (fy.offset, fz.offset) == (fx.offset + 4, fx.offset + 8)
    ):  # the common layout: x, y, z float32 side by side -> a strided view, no copy
        xyz_flat = np.ndarray(
            shape=(n, 3), dtype=np.float32, buffer=data, offset=fx.offset, strides=(point_step, 4)
        )
        tf = fields[time_conv.field] if time_conv is not None else None
        if (
            tf is not None
            and time_conv is not None
            and not time_conv.absolute
            and tf.datatype in (7, 8)  # FLOAT32, FLOAT64
        ):  # the Velodyne convention: finiteness and time in one pass over the buffer
            t_view: npt.NDArray[Any] = np.ndarray(
                shape=(n,), dtype=dtype[tf.name], buffer=data, offset=tf.offset, strides=(point_step,)
            )
            out = np.empty(n, dtype=np.int32)
            num_bad, time_ok = _scan_xyz_and_time(xyz_flat, t_view, time_conv.float_scale_to_ns, out)
            if time_ok and num_bad == 0:
                precomputed_time = out
        else:
            num_bad = _count_nonfinite(xyz_flat)
        finite = np.isfinite(xyz_flat).all(axis=1) if num_bad else np.ones(0, dtype=bool)
    else:
        xyz = np.empty((height, width, 3), dtype=np.float32)
        for axis, name in enumerate(("x", "y", "z")):
            xyz[..., axis] = grid[name]
        xyz_flat = xyz.reshape(n, 3)
        finite = np.isfinite(xyz_flat).all(axis=1)
        num_bad = n - int(np.count_nonzero(finite))
    num_kept = n - num_bad
    all_finite = num_bad == 0
    if not all_finite:
        xyz_flat = xyz_flat[finite]

    def kept(name: str, out_dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        f = fields[name]
        if contiguous_rows and dtype[name] == np.dtype(out_dtype) and byteorder == _NATIVE:
            col: npt.NDArray[Any] = np.ndarray(
                shape=(n,), dtype=out_dtype, buffer=data, offset=f.offset, strides=(point_step,)
            )
        else:
            col = _column(grid, name, out_dtype)
        return col if all_finite else col[finite]

    intensity = kept(intensity_name, np.float32) if intensity_name else None
    ring = None
    if ring_name:
        ring = _ring(kept(ring_name, dtype[ring_name].newbyteorder("=")), ring_name, where)
    time_offset_ns = precomputed_time
    if time_conv is not None and time_offset_ns is None:
        raw_time = kept(time_conv.field, dtype[time_conv.field].newbyteorder("="))
        time_offset_ns = _time_offsets(raw_time, time_conv, t_ns, where)

    return PointCloud(
        xyz=xyz_flat,
        intensity=intensity,
        time_offset_ns=time_offset_ns,
        ring=ring,
        frame_id=frame,
        stamp_ns=t_ns,
        num_dropped=n - num_kept,
    )
