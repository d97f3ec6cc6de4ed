"""Decode throughput and streaming memory, against the obvious baselines, in one run.

    .venv/bin/python bench/decode.py [--log data_samples/sim_drive.mcap] [--seconds 20] [--long-seconds 300]

Throughput, on one log made by repeating the sample log's messages for `--seconds` (every format):
  raw read     the file's bytes read in 16 MiB blocks (the disk / page-cache ceiling)
  rosbags      rosbags' AnyReader: read + deserialise every PointCloud2 message
  fusion       fusion.bags + fusion.decode: bag -> PointCloud arrays (xyz, intensity, ring, time)
MB/s is the log's size over the wall time, opening included (fusion caches the generated type store
per set of message definitions, as a re-opened log in a Dask chunk task would use; rosbags regenerates
it at every open); ratios are against rosbags. A second table times streaming only, the log already open.

Memory: peak RSS of a fresh process streaming every sweep of a 20-second log and of a 5-minute log
(each in its own subprocess); the 5-minute one must stay within 1.3x of the 20-second one.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.rosbag1 import Writer as Writer1  # noqa: E402
from rosbags.rosbag2 import StoragePlugin  # noqa: E402
from rosbags.rosbag2 import Writer as Writer2  # noqa: E402

from fusion.bags import open_bag, typestore_for  # noqa: E402
from fusion.decode import decode_pointcloud2  # noqa: E402

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
Fmt = Literal["ros1", "sqlite3", "mcap"]


def lidar_topic(path: Path) -> str:
    with open_bag(path) as bag:
        clouds = [t for t in bag.topics.values() if t.msgtype == POINTCLOUD2]
        return max(clouds, key=lambda t: t.count).name


def make_long_log(sample: Path, out: Path, fmt: Fmt, seconds: float) -> Path:
    """Repeat the sample's messages (all topics), shifting record times, until `seconds` of log."""
    with open_bag(sample) as bag:
        src = bag.distro
        msgs = [(r.topic, r.msgtype, r.log_time_ns, bytes(r.data)) for r in bag.messages()]
    t0, t1 = msgs[0][2], msgs[-1][2]
    span = t1 - t0 + 100_000_000
    reps = max(1, int(seconds * 1e9 // span))
    dst = "ros1" if fmt == "ros1" else "ros2"
    ts = typestore_for(dst)
    if src == dst:
        blobs = [(topic, mt, t - t0, data) for topic, mt, t, data in msgs]
    elif src == "ros2":
        conv = typestore_for("ros2").cdr_to_ros1
        blobs = [(topic, mt, t - t0, bytes(conv(data, mt))) for topic, mt, t, data in msgs]
    else:
        conv = typestore_for("ros1").ros1_to_cdr
        blobs = [(topic, mt, t - t0, bytes(conv(data, mt))) for topic, mt, t, data in msgs]
    conns: dict[str, Any] = {}
    writer: Any
    if fmt == "ros1":
        writer = Writer1(out)
    else:
        plugin = StoragePlugin.SQLITE3 if fmt == "sqlite3" else StoragePlugin.MCAP
        writer = Writer2(out, version=9, storage_plugin=plugin)
    with writer as w:
        for k in range(reps):
            for topic, mt, dt, blob in blobs:
                if topic not in conns:
                    conns[topic] = w.add_connection(topic, mt, typestore=ts)
                w.write(conns[topic], t0 + k * span + dt, blob)
    return out


def size_of(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def raw_read(path: Path, _topic: str) -> int:
    n = 0
    for f in [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]:
        with f.open("rb") as fh:
            while chunk := fh.read(16 << 20):
                n += len(chunk)
    return n


def rosbags_deserialise(path: Path, topic: str) -> int:
    n = 0
    ts = typestore_for("ros1" if path.suffix == ".bag" else "ros2")
    with AnyReader([path], default_typestore=ts) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=conns):
            msg: Any = reader.deserialize(raw, conn.msgtype)
            n += len(msg.data)
    return n


def fusion_decode(path: Path, topic: str) -> int:
    n = 0
    with open_bag(path) as bag:
        for raw in bag.messages([topic]):
            n += len(decode_pointcloud2(bag.deserialize(raw)))
    return n


def steady_state(path: Path, topic: str, repeats: int) -> tuple[float, float, int]:
    """Seconds to stream every sweep with the log already open (rosbags, fusion), and the sweeps."""
    ts = typestore_for("ros1" if path.suffix == ".bag" else "ros2")
    best_rb = best_us = float("inf")
    sweeps = 0
    with AnyReader([path], default_typestore=ts) as reader, open_bag(path) as bag:
        conns = [c for c in reader.connections if c.topic == topic]
        for _ in range(repeats + 1):
            t = time.perf_counter()
            for conn, _, raw in reader.messages(connections=conns):
                reader.deserialize(raw, conn.msgtype)
            best_rb = min(best_rb, time.perf_counter() - t)
            t = time.perf_counter()
            sweeps = 0
            for msg in bag.messages([topic]):
                decode_pointcloud2(bag.deserialize(msg))
                sweeps += 1
            best_us = min(best_us, time.perf_counter() - t)
    return best_rb, best_us, sweeps


def best_of(fn: Callable[[Path, str], int], path: Path, topic: str, repeats: int) -> float:
    fn(path, topic)  # warm the page cache and numba/jit caches
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(path, topic)
        best = min(best, time.perf_counter() - t)
    return best


def stream_peak_rss(path: Path) -> tuple[int, int]:
    """Peak RSS (KiB) and sweeps of a fresh process that streams and decodes every sweep."""
    code = (
        "import resource,sys; sys.path.insert(0, sys.argv[2]);"
        "from bench.decode import fusion_decode, lidar_topic; from pathlib import Path;"
        "p=Path(sys.argv[1]); n=fusion_decode(p, lidar_topic(p));"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, n)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(REPO)], check=True, capture_output=True, text=True
    ).stdout.split()
    return int(out[0]), int(out[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=REPO / "data_samples" / "sim_drive.mcap")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--long-seconds", type=float, default=300.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--formats", default="ros1,sqlite3,mcap")
    args = ap.parse_args()
    topic = lidar_topic(args.log)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fusion-bench-") as tmp:
        for fmt in args.formats.split(","):
            suffix = {"ros1": ".bag", "sqlite3": "", "mcap": ""}[fmt]
            log = make_long_log(args.log, Path(tmp) / f"{fmt}_{args.seconds:g}s{suffix}", fmt, args.seconds)  # type: ignore[arg-type]
            if fmt == "mcap":
                log = next(log.glob("*.mcap"))
            mb = size_of(log) / 1e6
            t_raw = best_of(raw_read, log, topic, args.repeats)
            t_rb = best_of(rosbags_deserialise, log, topic, args.repeats)
            t_us = best_of(fusion_decode, log, topic, args.repeats)
            s_rb, s_us, sweeps = steady_state(log, topic, args.repeats)
            rows.append((fmt, mb, mb / t_raw, mb / t_rb, mb / t_us, t_rb / t_us, s_rb, s_us, sweeps))
        print(
            f"\nDecode throughput: {args.seconds:g} s log repeated from {args.log.name}, lidar topic {topic}"
        )
        print(
            "| format | log MB | raw read MB/s | rosbags read+deserialise MB/s "
            "| fusion bag->PointCloud MB/s | fusion / rosbags |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for fmt, mb, raw, rb, us, ratio, *_ in rows:
            print(f"| {fmt} | {mb:.0f} | {raw:.0f} | {rb:.0f} | {us:.0f} | {ratio:.2f}x |")
        print("\nSteady state (log already open; per sweep, so fixed open costs do not count):")
        print(
            "| format | sweeps | rosbags read+deserialise ms/sweep "
            "| fusion bag->PointCloud ms/sweep | fusion / rosbags |"
        )
        print("|---|---:|---:|---:|---:|")
        for fmt, *_, s_rb, s_us, sweeps in rows:
            rb_ms, us_ms = s_rb / sweeps * 1e3, s_us / sweeps * 1e3
            print(f"| {fmt} | {sweeps} | {rb_ms:.3f} | {us_ms:.3f} | {s_rb / s_us:.2f}x |")

        print("\nStreaming memory (every sweep decoded, a fresh process per log):")
        print("| format | log | size MB | points decoded | peak RSS MiB | long / short |")
        print("|---|---|---:|---:|---:|---:|")
        for fmt in args.formats.split(","):
            rss = []
            for label, secs in (("short", args.seconds), ("long", args.long_seconds)):
                suffix = ".bag" if fmt == "ros1" else ""
                log = make_long_log(args.log, Path(tmp) / f"mem_{fmt}_{label}{suffix}", fmt, secs)  # type: ignore[arg-type]
                peak, n = stream_peak_rss(log)
                rss.append(peak)
                ratio = f"{rss[1] / rss[0]:.2f}" if len(rss) == 2 else ""
                print(
                    f"| {fmt} | {secs:g} s | {size_of(log) / 1e6:.0f} | {n} | {peak / 1024:.0f} | {ratio} |"
                )
                shutil.rmtree(log) if log.is_dir() else log.unlink()
        print("target: long / short <= 1.30")
    return 0


if __name__ == "__main__":
    sys.exit(main())
