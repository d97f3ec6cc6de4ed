"""`fusion run` end to end on Dask: throughput with 1 and 2 workers, real-time factor, peak memory.

    .venv/bin/python bench/pipeline.py                   # the issue's settings (64 beams, 20 s, 5 min)
    .venv/bin/python bench/pipeline.py --seconds 2 --loops 3 --columns 512     # a smoke run

A 64-beam log (`fusion simulate --lidar hdl64e`, `--columns` firings per turn, ~129k points at
2048) of `--seconds` is simulated; the long log is that drive repeated `--loops` times back to back
(stamps shifted; the car jumps back to its start at each seam), since simulating minutes of 64-beam
sweeps takes far longer than pre-labelling them; the short log is rewritten once the same way, so
both files have the same layout and compression. Each measurement starts its own `LocalCluster`
(`fusion.pipeline.local_cluster`) of single-threaded worker processes, warms every worker
(imports; the detector's, tracker's and camera projection's numba caches: once per worker process,
not per log), then times `fusion.pipeline.run` (decode, sync, deskew, detect, track,
refine, points and images written, `dataset.json` last). Worker start-up is reported apart.
Peak RSS per worker is each worker process's `ru_maxrss` after the run. The short-log runs are
repeated (`--repeat`, default 5), one and two workers taking turns, and the fastest is shown beside
all of them: on a shared 2-core machine a slow run measures its neighbours. One table, markdown.

Targets (issue 6, 2 cores, geometric detector): >= 2x real time for a 10 Hz log with 2 workers;
2 workers >= 1.7x one; peak worker RSS on the long log within 1.3x of the short one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusion.config import RunConfig  # noqa: E402
from fusion.pipeline import local_cluster, run  # noqa: E402


@dataclass
class Row:
    log: str
    sweeps: int
    duration_s: float
    workers: int
    startup_s: float
    walls_s: list[float]  # one per repetition; the table shows the fastest
    peak_rss_mib: list[float]

    @property
    def wall_s(self) -> float:
        return min(self.walls_s)


def loop_log(src: Path, dst: Path, loops: int) -> None:
    """Write `src` (a ROS 2 .mcap) `loops` times back to back into `dst`, every stamp shifted."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from fusion.bags import open_bag, typestore_for

    store = typestore_for("ros2")
    with open_bag(src) as bag:
        lidar = max(
            (t for t in bag.topics.values() if t.msgtype.endswith("PointCloud2")), key=lambda t: t.count
        )
        first, last = bag.topics[lidar.name].first_log_ns or 0, bag.topics[lidar.name].last_log_ns or 0
        period = (last - first) // max(lidar.count - 1, 1)
        span = (last - first) + period
        t_min = min(t.first_log_ns or 0 for t in bag.topics.values())
        t_max = max(t.last_log_ns or 0 for t in bag.topics.values())
        span = max(span, t_max - t_min + period)
        target = dst.with_suffix("")
        conns: dict[tuple[str, str], Any] = {}
        with Writer(target, version=9, storage_plugin=StoragePlugin.MCAP) as w:
            for k in range(loops):
                shift = k * span
                for raw in bag.messages():
                    if k and raw.topic.rstrip("/").endswith("tf_static"):
                        continue
                    msg = bag.deserialize(raw)
                    _shift_stamps(msg, shift, store)
                    key = (raw.topic, raw.msgtype)
                    if key not in conns:
                        conns[key] = w.add_connection(raw.topic, raw.msgtype, typestore=store)
                    w.write(conns[key], raw.log_time_ns + shift, store.serialize_cdr(msg, raw.msgtype))
    inner = next(target.glob("*.mcap"))
    inner.rename(dst)
    shutil.rmtree(target)


def _shift_stamps(msg: Any, shift_ns: int, store: Any) -> None:
    time_type = store.types["builtin_interfaces/msg/Time"]
    headers = [msg.header] if hasattr(msg, "header") else []
    headers += [t.header for t in getattr(msg, "transforms", [])]
    for h in headers:
        ns = h.stamp.sec * 1_000_000_000 + h.stamp.nanosec + shift_ns
        h.stamp = time_type(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _warm() -> int:
    """In a worker: import the pipeline (and pandas, which pyarrow imports on its first list
    conversion), run the detector once and load the finishing step's kernels (numba caches),
    before timing: what a worker pays once, before its first log."""
    import numpy as np
    import pandas  # noqa: F401

    from fusion.chunks import warm_finishing
    from fusion.decode import PointCloud
    from fusion.detect import DETECTORS

    warm_finishing()

    rng = np.random.default_rng(0)
    xyz = rng.uniform(-30, 30, (20000, 3)).astype(np.float32)
    xyz[:, 2] = rng.uniform(-1.8, 0.5, 20000)
    DETECTORS["geometric"]().detect(PointCloud(xyz, None, None, None, "lidar", 0))
    return 0


def _peak_rss_kib() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure(log: Path, label: str, workers: int, out: Path, config: RunConfig) -> Row:
    from dask.distributed import Client

    t = time.perf_counter()
    with local_cluster(workers) as cluster, Client(cluster) as client:
        client.run(_warm)
        startup = time.perf_counter() - t
        t = time.perf_counter()
        summaries = run([log], out, config=config, scheduler=cluster.scheduler_address)
        wall = time.perf_counter() - t
        peaks = client.run(_peak_rss_kib)
    from exporters.reader import open_dataset

    seq = open_dataset(out).sequence(summaries[0].sequence_id)
    frames = seq.frames()
    stamps = frames.column("timestamp_ns").to_numpy()
    duration = (int(stamps[-1]) - int(stamps[0])) * 1e-9 + 0.1
    return Row(
        label, summaries[0].sweeps, duration, workers, startup, [wall], [v / 1024 for v in peaks.values()]
    )


def measure_best(
    log: Path, label: str, workers: Sequence[int], out: Path, config: RunConfig, repeat: int
) -> list[Row]:
    """`measure` each worker count `repeat` times, the counts taking turns (1, 2, 1, 2, ...: a drift
    of the machine's speed then falls on both alike; a fresh cluster and output each time): every
    wall time kept, the fastest shown (on a shared 2-core machine the slower runs measure the
    neighbours), peak RSS the largest seen."""
    runs: dict[int, list[Row]] = {w: [] for w in workers}
    for k in range(repeat):
        for w in workers:
            runs[w].append(measure(log, label, w, out / f"w{w}-run{k}", config))
    best = []
    for w, rows in runs.items():
        peaks = [max(r.peak_rss_mib[i] for r in rows) for i in range(w)]
        walls = [t for r in rows for t in r.walls_s]
        best.append(Row(label, rows[0].sweeps, rows[0].duration_s, w, rows[0].startup_s, walls, peaks))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="short log length (default 20)")
    ap.add_argument(
        "--loops", type=int, default=15, help="long log = short log times this (default 15: 5 min)"
    )
    ap.add_argument("--columns", type=int, default=2048, help="firings per turn (default 2048, ~129k points)")
    ap.add_argument("--chunk-s", type=float, default=5.0, help="seconds of log per task (default 5)")
    ap.add_argument("--keep", type=Path, help="simulate into / reuse logs from this folder")
    ap.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs of each short-log measurement; the fastest shown (default 5)",
    )
    args = ap.parse_args()

    from fusion.simulate import simulate_log

    config = RunConfig().with_overrides(chunk_s=args.chunk_s)
    with tempfile.TemporaryDirectory(prefix="fusion-bench-pipeline-") as tmp:
        logs = args.keep or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        short = logs / f"drive_{args.seconds:g}s_{args.columns}.mcap"
        long = logs / f"drive_{args.seconds:g}s_{args.columns}_x{args.loops}.mcap"
        t = time.perf_counter()
        if not short.exists():
            simulate_log(short, seconds=args.seconds, seed=7, lidar="hdl64e", lidar_columns=args.columns)
        if not long.exists():
            loop_log(short, long, args.loops)
        same = logs / f"drive_{args.seconds:g}s_{args.columns}_x1.mcap"  # the long log's file layout
        if not same.exists():
            loop_log(short, same, 1)
        print(f"logs ready in {time.perf_counter() - t:.0f} s: {same.name}, {long.name}", file=sys.stderr)
        rows = [
            *measure_best(same, "short", (1, 2), Path(tmp) / "short", config, args.repeat),
            measure(long, "long", 2, Path(tmp) / "long", config),
        ]
    print(
        f"\n64-beam simulated logs ({args.columns} columns), chunks of {args.chunk_s:g} s, all tables written"
    )
    print(
        "| log | sweeps | log s | workers | start-up s | wall s (fastest) | all runs s | sweeps/s "
        "| real-time factor | peak RSS per worker MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for r in rows:
        rss = ", ".join(f"{v:.0f}" for v in r.peak_rss_mib)
        runs = ", ".join(f"{w:.1f}" for w in r.walls_s)
        print(
            f"| {r.log} | {r.sweeps} | {r.duration_s:.1f} | {r.workers} | {r.startup_s:.1f} | {r.wall_s:.1f} "
            f"| {runs} | {r.sweeps / r.wall_s:.2f} | {r.duration_s / r.wall_s:.2f}x | {rss} |"
        )
    one, two, long_row = rows
    speedup = one.wall_s / two.wall_s
    rss_ratio = max(long_row.peak_rss_mib) / max(two.peak_rss_mib)
    print(
        f"\n2 workers / 1 worker: {speedup:.2f}x (target >= 1.7x); real-time factor with 2 workers: "
        f"{two.duration_s / two.wall_s:.2f}x (target >= 2x); peak worker RSS long / short: "
        f"{rss_ratio:.2f}x (target <= 1.3x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
