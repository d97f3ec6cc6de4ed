"""fusion.bags: format detection, topic index, windowed streaming, damaged bags, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fusion.bags import BagFormat, detect_format, open_bag, typestore_for
from fusion.errors import BagError
from tests.bagutil import FORMATS, Fmt, add_undecodable_topic, bag_path, header, write_bag

S = 1_000_000_000


def _odom_and_tf(fmt: Fmt, n: int = 40) -> list[tuple[str, str, int, Any]]:
    """n odometry messages at 20 Hz and n/2 TF messages at 10 Hz, record time = stamp + 3 ms."""
    ts = typestore_for("ros1" if fmt == "ros1" else "ros2")
    T = ts.types
    out: list[tuple[str, str, int, Any]] = []
    t0 = 1_700_000_000 * S
    for i in range(n):
        stamp = t0 + i * 50_000_000
        pose = T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=float(i), y=0.0, z=0.0),
                orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            ),
            covariance=np.zeros(36),
        )
        twist = T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](
                linear=T["geometry_msgs/msg/Vector3"](x=20.0, y=0.0, z=0.0),
                angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
            ),
            covariance=np.zeros(36),
        )
        odom = T["nav_msgs/msg/Odometry"](
            header=header(ts, stamp, "odom"), child_frame_id="base_link", pose=pose, twist=twist
        )
        out.append(("/odom", "nav_msgs/msg/Odometry", stamp + 3_000_000, odom))
        if i % 2 == 0:
            tf = T["geometry_msgs/msg/TransformStamped"](
                header=header(ts, stamp, "odom"),
                child_frame_id="base_link",
                transform=T["geometry_msgs/msg/Transform"](
                    translation=T["geometry_msgs/msg/Vector3"](x=float(i), y=0.0, z=0.0),
                    rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                ),
            )
            msg = T["tf2_msgs/msg/TFMessage"](transforms=[tf])
            out.append(("/tf", "tf2_msgs/msg/TFMessage", stamp + 3_000_000, msg))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_index_counts_types_and_record_times(tmp_path: Path, fmt: Fmt) -> None:
    msgs = _odom_and_tf(fmt)
    path = write_bag(bag_path(tmp_path, fmt), fmt, msgs)
    with open_bag(path) as bag:
        assert (
            bag.format
            is {"ros1": BagFormat.ROS1, "sqlite3": BagFormat.ROS2_SQLITE3, "mcap": BagFormat.ROS2_MCAP}[fmt]
        )
        assert set(bag.topics) == {"/odom", "/tf"}
        odom = bag.topics["/odom"]
        assert (odom.msgtype, odom.count, odom.decodable) == ("nav_msgs/msg/Odometry", 40, True)
        assert odom.first_log_ns == msgs[0][2]
        assert odom.last_log_ns == max(m[2] for m in msgs if m[0] == "/odom")
        assert bag.topics["/tf"].count == 20
        assert bag.warnings == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_messages_stream_in_time_order_within_window(tmp_path: Path, fmt: Fmt) -> None:
    msgs = _odom_and_tf(fmt)
    path = write_bag(bag_path(tmp_path, fmt), fmt, msgs)
    start, end = msgs[10][2], msgs[30][2]
    with open_bag(path) as bag:
        got = list(bag.messages(["/odom"], start_ns=start, end_ns=end))
        times = [m.log_time_ns for m in got]
        expected = sorted(m[2] for m in msgs if m[0] == "/odom" and start <= m[2] < end)
        assert times == expected
        first = bag.deserialize(got[0])
        assert first.pose.pose.position.x == pytest.approx((start - 3_000_000 - msgs[0][2] + 3_000_000) / 5e7)
        both = [m.topic for m in bag.messages()]
        assert len(both) == 60
        assert [m.log_time_ns for m in bag.messages()] == sorted(m[2] for m in msgs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_record_times_come_from_the_index_and_match_the_stream(tmp_path: Path, fmt: Fmt) -> None:
    msgs = _odom_and_tf(fmt)
    path = write_bag(bag_path(tmp_path, fmt), fmt, msgs)
    with open_bag(path) as bag:
        for topic in ("/odom", "/tf"):
            times = bag.record_times(topic)
            assert times is not None and times.dtype == np.int64
            assert times.tolist() == [m.log_time_ns for m in bag.messages([topic])]
        assert bag.record_times("/no_such_topic") is None


def test_record_times_of_a_damaged_bag_read_sequentially_are_unknown(tmp_path: Path) -> None:
    path = write_bag(bag_path(tmp_path, "mcap"), "mcap", _odom_and_tf("mcap", 400))
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with open_bag(path) as bag:
        assert bag.recovered and bag.record_times("/odom") is None


def _with_images(fmt: Fmt, n: int) -> list[tuple[str, str, int, Any]]:
    """`_odom_and_tf(n)` and a 300 kB image at 10 Hz (so an MCAP file has many chunks), some
    images recorded at the same time as a pose."""
    ts = typestore_for("ros2")
    image = ts.types["sensor_msgs/msg/Image"]
    msgs = _odom_and_tf(fmt, n)
    for i in range(0, n, 2):
        stamp = msgs[0][2] + i * 50_000_000
        pixels = np.full(300_000, i % 251, dtype=np.uint8)
        msg = image(header(ts, stamp, "cam"), 300, 1000, "mono8", 0, 1000, pixels)
        msgs.append(("/image", "sensor_msgs/msg/Image", stamp + (0 if i % 4 else 3_000_000), msg))
    return msgs


def _rosbags_stream(path: Path, topics: list[str], start: int | None, end: int | None) -> list[Any]:
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        return [(c.topic, c.msgtype, t, bytes(d)) for c, t, d in reader.messages(conns, start, end)]


def test_uncompressed_mcap_reads_only_the_wanted_records_and_matches_rosbags(tmp_path: Path) -> None:
    """An uncompressed MCAP file is read at the offsets its message indexes give (a window's poses
    without copying the point clouds and images around them): same messages, bytes and order as
    rosbags' own reader, ties in log time included."""
    msgs = _with_images("mcap", 60)
    path = write_bag(bag_path(tmp_path, "mcap"), "mcap", msgs)
    t0 = msgs[0][2]
    with open_bag(path) as bag:
        index = bag._mcap_index
        assert index is not None and index.direct
        for topics in (["/odom"], ["/tf", "/odom"], ["/image"], ["/image", "/odom", "/tf"]):
            for start, end in ((None, None), (t0 + 7 * 50_000_000, t0 + 31 * 50_000_000), (t0 + 1, None)):
                got = [
                    (m.topic, m.msgtype, m.log_time_ns, bytes(m.data))
                    for m in bag.messages(topics, start, end)
                ]
                assert got == _rosbags_stream(path, topics, start, end), (topics, start, end)
                assert got  # every case reads something


def test_opening_an_mcap_file_reads_a_few_chunk_indexes_not_all(tmp_path: Path) -> None:
    """Each chunk task opens the log: reading every chunk's message index made that cost grow
    with the log (3,000 chunks for 5 minutes of 64-beam sweeps). Counts come from the summary,
    first and last times from the chunks at either end, a window's rows from its own chunks."""
    msgs = _with_images("mcap", 240)
    path = write_bag(bag_path(tmp_path, "mcap"), "mcap", msgs)
    with open_bag(path) as bag:
        index = bag._mcap_index
        assert index is not None and len(index.chunks) >= 30
        assert index.blocks_read <= 4 * len(index.channels) < len(index.chunks) / 2
        for topic in ("/odom", "/tf", "/image"):
            stamps = sorted(m[2] for m in msgs if m[0] == topic)
            info = bag.topics[topic]
            assert (info.count, info.first_log_ns, info.last_log_ns) == (len(stamps), stamps[0], stamps[-1])
        before = index.blocks_read
        t0 = msgs[0][2]
        window = (t0 + 100 * 50_000_000, t0 + 104 * 50_000_000)
        got = [(m.topic, m.log_time_ns) for m in bag.messages(["/odom", "/image"], *window)]
        assert got == [(m[0], m[2]) for m in _rosbags_stream(path, ["/odom", "/image"], *window)] != []
        in_range = [
            c for c in index.chunks if c.message_end_time >= window[0] and c.message_start_time < window[1]
        ]
        assert index.blocks_read - before == len(in_range) < len(index.chunks) / 5


def test_a_process_parses_an_mcap_summary_once_and_again_when_the_file_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chunk task of a log opens it, and rosbags parses every chunk's summary record on each
    open (0.3 s for an hour of sweeps): a process parses a file's summary once, and again when the
    file at that path is another one."""
    from rosbags.rosbag2.storage_mcap import McapReader

    msgs = _with_images("mcap", 120)
    path = write_bag(bag_path(tmp_path, "mcap"), "mcap", msgs)
    t0 = msgs[0][2]
    window = (t0 + 40 * 50_000_000, t0 + 52 * 50_000_000)
    expected = [(m[0], m[2], bytes(m[3])) for m in _rosbags_stream(path, ["/odom", "/image"], *window)]
    parsed: list[Path] = []
    real = McapReader.read_index

    def counting(self: McapReader) -> None:
        parsed.append(Path(str(self.path)))
        real(self)

    monkeypatch.setattr(McapReader, "read_index", counting)

    def opened() -> tuple[Any, ...]:
        with open_bag(path) as bag:
            assert bag._mcap_index is not None
            topics = {name: (i.count, i.first_log_ns, i.last_log_ns) for name, i in bag.topics.items()}
            stream = bag.messages(["/odom", "/image"], *window)
            got = [(m.topic, m.log_time_ns, bytes(m.data)) for m in stream]
            in_range = [
                c
                for c in bag._mcap_index.chunks
                if c.message_end_time >= window[0] and c.message_start_time < window[1]
            ]
            return topics, got, bag._mcap_index.blocks_read - len(in_range)  # index reads for times

    topics, got, _ = opened()
    assert got == expected != []
    assert opened() == (topics, got, 0)  # the times are kept too: only the window's chunks read
    assert parsed == [path]
    fewer = write_bag(bag_path(tmp_path, "mcap", "other"), "mcap", [m for m in msgs if m[0] != "/tf"])
    fewer.replace(path)
    topics2, got2, _ = opened()
    assert parsed == [path, path] and "/tf" in topics and "/tf" not in topics2
    assert (topics2["/odom"], got2) == (topics["/odom"], got)


def test_mcap_bag_directory_is_read_at_its_index_offsets_too(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore_for("ros2")
    target = tmp_path / "bagdir"
    with Writer(target, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns: dict[str, Any] = {}
        for topic, msgtype, t, msg in _with_images("mcap", 20):
            conn = conns.get(topic) or conns.setdefault(topic, w.add_connection(topic, msgtype, typestore=ts))
            w.write(conn, t, ts.serialize_cdr(msg, msgtype))
    with open_bag(target) as bag:
        assert bag._mcap_index is not None and bag._mcap_index.direct
        got = [(m.topic, m.msgtype, m.log_time_ns, bytes(m.data)) for m in bag.messages(["/odom", "/image"])]
        assert got == _rosbags_stream(target, ["/odom", "/image"], None, None) and len(got) == 30


def test_compressed_mcap_is_read_by_rosbags(tmp_path: Path) -> None:
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    ts = typestore_for("ros2")
    target = tmp_path / "zstd"
    w = Writer(target, version=9, storage_plugin=StoragePlugin.MCAP)
    w.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with w:
        conns: dict[str, Any] = {}
        for topic, msgtype, t, msg in _with_images("mcap", 20):
            conn = conns.get(topic) or conns.setdefault(topic, w.add_connection(topic, msgtype, typestore=ts))
            w.write(conn, t, ts.serialize_cdr(msg, msgtype))
    path = next(target.glob("*.mcap"))
    with open_bag(path) as bag:
        assert bag._mcap_index is not None and not bag._mcap_index.direct
        got = [(m.topic, m.msgtype, m.log_time_ns, bytes(m.data)) for m in bag.messages(["/odom", "/image"])]
        assert got == _rosbags_stream(path, ["/odom", "/image"], None, None) and len(got) == 30


def test_mcap_record_not_where_its_index_says_stops_the_stream_with_a_warning(tmp_path: Path) -> None:
    msgs = _with_images("mcap", 60)
    path = write_bag(bag_path(tmp_path, "mcap"), "mcap", msgs)
    with open_bag(path) as bag:
        index = bag._mcap_index
        assert index is not None
        key = ("/odom", "nav_msgs/msg/Odometry")
        where = index.rows([key])[key]
        broken = int(where[20, 2])
    data = bytearray(path.read_bytes())
    assert data[broken] == 0x05  # a message record's opcode
    data[broken] = 0x07
    path.write_bytes(bytes(data))
    with open_bag(path) as bag:
        got = list(bag.messages(["/odom"]))
        assert [m.log_time_ns for m in got] == sorted(m[2] for m in msgs if m[0] == "/odom")[:20]
        assert any(f"index names a /odom message at byte {broken}" in w for w in bag.warnings)


def test_ros1_tf_message_is_registered_and_decodes(tmp_path: Path) -> None:
    path = write_bag(bag_path(tmp_path, "ros1"), "ros1", _odom_and_tf("ros1", 4))
    with open_bag(path) as bag:
        msg = bag.deserialize(next(iter(bag.messages(["/tf"]))))
        assert msg.transforms[0].child_frame_id == "base_link"


def test_unknown_custom_type_is_reported_and_skipped(tmp_path: Path) -> None:
    """A ROS2 sqlite3 bag written without definitions, with a custom packet type, like a driver's."""
    path = write_bag(bag_path(tmp_path, "sqlite3"), "sqlite3", _odom_and_tf("sqlite3", 6))
    add_undecodable_topic(path, "/velodyne_packets", "velodyne_msgs/msg/VelodyneScan", [1])
    with open_bag(path) as bag:
        info = bag.topics["/velodyne_packets"]
        assert not info.decodable
        assert "velodyne_msgs/msg/VelodyneScan" in (info.problem or "")
        assert any("/velodyne_packets skipped" in w for w in bag.warnings)
        assert len(list(bag.messages())) == 9  # the other topics still stream
        with pytest.raises(BagError, match="cannot be decoded"):
            list(bag.messages(["/velodyne_packets"]))


@pytest.mark.parametrize(
    ("fmt", "lone_file"),  # ROS1 bags are single files; ROS2 storage files stand alone or in a bag directory
    [("ros1", True), ("sqlite3", True), ("sqlite3", False), ("mcap", True), ("mcap", False)],
)
def test_truncated_bag_yields_messages_before_the_damage(tmp_path: Path, fmt: Fmt, lone_file: bool) -> None:
    msgs = _odom_and_tf(fmt, 400)
    path = write_bag(bag_path(tmp_path, fmt), fmt, msgs)
    if fmt == "sqlite3" and lone_file:
        path = next(path.glob("*.db3"))
    if fmt == "mcap" and not lone_file:  # a ROS2 directory holding an MCAP storage file
        ros2dir = tmp_path / "ros2dir"
        write_bag(ros2dir, "sqlite3", msgs)  # for a metadata.yaml to adapt
        meta = (
            (ros2dir / "metadata.yaml")
            .read_text()
            .replace("sqlite3", "mcap")
            .replace("ros2dir.db3", "log.mcap")
        )
        for p in ros2dir.iterdir():
            p.unlink()
        (ros2dir / "metadata.yaml").write_text(meta)
        path.rename(ros2dir / "log.mcap")
        path = ros2dir
    storage = path if path.is_file() else next(p for p in path.iterdir() if p.suffix in {".db3", ".mcap"})
    data = storage.read_bytes()
    storage.write_bytes(data[: int(len(data) * 0.6)])
    with open_bag(path) as bag:
        assert bag.recovered
        assert any("truncated" in w for w in bag.warnings)
        got = list(bag.messages(["/odom"]))
        assert 0 < len(got) < 400
        times = [m.log_time_ns for m in got]
        assert times == sorted(m[2] for m in msgs if m[0] == "/odom")[: len(got)]
        assert bag.deserialize(got[-1]).pose.pose.position.x == float(len(got) - 1)
        assert bag.topics["/odom"].count == len(got)


def test_detects_format_by_content_not_suffix(tmp_path: Path) -> None:
    path = write_bag(bag_path(tmp_path, "mcap"), "mcap", _odom_and_tf("mcap", 2))
    renamed = tmp_path / "log.bin"
    path.rename(renamed)
    assert detect_format(renamed) is BagFormat.ROS2_MCAP


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "missing.bag", "no such file"),
        (lambda p: (p / "empty.bag").write_bytes(b"") or p / "empty.bag", "empty"),
        (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", "unknown format"),
        (lambda p: (p / "dir").mkdir() or p / "dir", "not a ROS2 bag"),
        (
            lambda p: (p / "junk.bag").write_bytes(b"#ROSBAG V2.0\n" + b"\xff" * 50) and p / "junk.bag",
            "junk.bag",
        ),
    ],
)
def test_bad_input_gives_one_line_error_naming_the_file(tmp_path: Path, make: Any, match: str) -> None:
    path = make(tmp_path)
    with pytest.raises(BagError, match=match) as err:
        open_bag(path)
    assert "\n" not in str(err.value)
    assert str(path.name) in str(err.value)


def test_asking_for_a_missing_topic_names_what_exists(tmp_path: Path) -> None:
    path = write_bag(bag_path(tmp_path, "ros1"), "ros1", _odom_and_tf("ros1", 2))
    with open_bag(path) as bag, pytest.raises(BagError, match="no topic /points; the bag has /odom, /tf"):
        list(bag.messages(["/points"]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bag_cut_at_any_early_byte_opens_or_gives_one_line_error(tmp_path: Path, fmt: Fmt) -> None:
    """Cut just after the magic, inside the header or the first record: never a raw Python error.
    (An MCAP file holding only its 8-byte magic raised TypeError from rosbags' reader.)"""
    path = write_bag(bag_path(tmp_path, fmt), fmt, _odom_and_tf(fmt, 4))
    storage = path if path.is_file() else next(path.glob("*.db3"))
    data = storage.read_bytes()
    cut = tmp_path / f"cut{storage.suffix}"
    for n in [*range(1, 40), 64, 100, 200, 400, len(data) // 2]:
        cut.write_bytes(data[:n])
        try:
            with open_bag(cut) as bag:
                list(bag.messages())
        except BagError as err:
            assert str(cut) in str(err) and "\n" not in str(err), (n, err)
            assert "ord()" not in str(err) and "('" not in str(err), (n, err)  # no Python internals
