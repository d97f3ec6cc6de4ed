"""Write tiny bags of every format in a test's tmp_path with rosbags' own writers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Writer2

from fusion.bags import typestore_for

Fmt = Literal["ros1", "sqlite3", "mcap"]
FORMATS: tuple[Fmt, ...] = ("ros1", "sqlite3", "mcap")


def bag_path(tmp_path: Path, fmt: Fmt, name: str = "log") -> Path:
    """Where a bag of `fmt` goes: a .bag file, a ROS2 directory (sqlite3), or a lone .mcap."""
    return tmp_path / {"ros1": f"{name}.bag", "sqlite3": name, "mcap": f"{name}.mcap"}[fmt]


def write_bag(path: Path, fmt: Fmt, messages: Iterable[tuple[str, str, int, Any]]) -> Path:
    """Write (topic, msgtype, log_time_ns, message object) tuples; returns the path to open."""
    distro: Literal["ros1", "ros2"] = "ros1" if fmt == "ros1" else "ros2"
    ts = typestore_for(distro)
    conns: dict[tuple[str, str], Any] = {}
    if fmt == "ros1":
        with Writer1(path) as w:
            for topic, msgtype, t, msg in messages:
                if (topic, msgtype) not in conns:
                    conns[topic, msgtype] = w.add_connection(topic, msgtype, typestore=ts)
                w.write(conns[topic, msgtype], t, ts.serialize_ros1(msg, msgtype))
        return path
    plugin = StoragePlugin.SQLITE3 if fmt == "sqlite3" else StoragePlugin.MCAP
    target = path.with_suffix("") if fmt == "mcap" else path
    with Writer2(target, version=9, storage_plugin=plugin) as w:
        for topic, msgtype, t, msg in messages:
            if (topic, msgtype) not in conns:
                conns[topic, msgtype] = w.add_connection(topic, msgtype, typestore=ts)
            w.write(conns[topic, msgtype], t, ts.serialize_cdr(msg, msgtype))
    if fmt == "mcap":  # a lone .mcap file, as most ROS2 tools record one
        inner = next(target.glob("*.mcap"))
        inner.rename(path)
        for p in target.iterdir():
            p.unlink()
        target.rmdir()
    return path


def header(ts: Any, stamp_ns: int, frame_id: str) -> Any:
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    try:
        return Header(stamp=stamp, frame_id=frame_id)
    except TypeError:  # ROS1 headers carry a sequence number
        return Header(seq=0, stamp=stamp, frame_id=frame_id)


def add_undecodable_topic(bagdir: Path, topic: str, msgtype: str, times_ns: list[int]) -> None:
    """Add a topic of a custom type with no stored definition to a ROS2 sqlite3 bag directory, the
    way a driver's packet topic (velodyne_msgs/VelodyneScan, pandar_msgs/PandarScan) arrives."""
    import sqlite3

    from ruamel.yaml import YAML

    db = next(bagdir.glob("*.db3"))
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO topics (id, name, type, serialization_format, offered_qos_profiles, "
        "type_description_hash) VALUES (99, ?, ?, 'cdr', '', '')",
        (topic, msgtype),
    )
    con.executemany(
        "INSERT INTO messages (topic_id, timestamp, data) VALUES (99, ?, x'00010000')",
        [(t,) for t in times_ns],
    )
    con.commit()
    con.close()
    meta = bagdir / "metadata.yaml"
    yaml = YAML()
    doc = yaml.load(meta.read_text())
    doc["rosbag2_bagfile_information"]["topics_with_message_count"].append(
        {
            "message_count": len(times_ns),
            "topic_metadata": {
                "name": topic,
                "offered_qos_profiles": [],
                "serialization_format": "cdr",
                "type": msgtype,
                "type_description_hash": "",
            },
        }
    )
    with meta.open("w") as f:
        yaml.dump(doc, f)
