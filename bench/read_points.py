"""Reading one sweep's points back from the dataset: `Sequence.points(i)` against pyarrow's filtered read.

    .venv/bin/python bench/read_points.py                 # a 2 s 64-beam drive (~129k points a sweep)
    .venv/bin/python bench/read_points.py --log LOG       # any log (pre-labelled without images first)

The log is pre-labelled with `fusion.prelabel.prelabel_logs` (geometric detector, no tracking, no
images) into a temporary dataset; then every sweep is read back, in a shuffled order, `--repeats`
times each way, from a cold `open_dataset` (the file's footer is read once per dataset, as a
reviewer tool would):

- ours: `open_dataset(out).sequence(sid).points(i)` (one row group, byte-stream-split + zstd);
- baseline: `pyarrow.parquet.read_table(points file, filters=[("frame_index", "==", i)])`, the
  obvious way to read one sweep of a Parquet file without knowing its row-group layout.

Target (issue 6): under 20 ms for a 120k-point sweep. One table, markdown; medians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporters.reader import open_dataset  # noqa: E402
from fusion.config import RunConfig  # noqa: E402
from fusion.detect import GeometricDetector  # noqa: E402
from fusion.prelabel import prelabel_logs  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, help="a log to pre-label (default: simulate a 64-beam drive)")
    ap.add_argument("--seconds", type=float, default=2.0, help="simulated drive length (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="reads of each sweep each way (default 3)")
    args = ap.parse_args()

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="fusion-bench-read-") as tmp:
        log = args.log
        if log is None:
            from fusion.simulate import simulate_log

            log = Path(tmp) / "drive.mcap"
            simulate_log(log, seconds=args.seconds, seed=7, lidar="hdl64e", lidar_columns=2048)
        out = Path(tmp) / "out"
        config = RunConfig().with_overrides(images=False, track=False)
        prelabel_logs([log], out, detector=GeometricDetector(), config=config)
        ds = open_dataset(out)
        sid = ds.sequence_ids[0]
        seq = ds.sequence(sid)
        path = out / "points" / f"{sid}.parquet"
        n = pq.ParquetFile(path).num_row_groups
        order = np.random.default_rng(0).permutation(n)
        counts = [len(seq.points(int(i))[0]) for i in range(n)]

        ours: list[float] = []
        base: list[float] = []
        for _ in range(args.repeats):
            seq = open_dataset(out).sequence(sid)
            for i in order:
                t = time.perf_counter()
                xyz, _, _ = seq.points(int(i))
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                table = pq.read_table(path, filters=[("frame_index", "==", int(i))])
                base.append(time.perf_counter() - t)
                if table.num_rows != len(xyz):
                    raise SystemExit(f"sweep {i}: {len(xyz)} points vs {table.num_rows} from pyarrow")
        size_mb = path.stat().st_size / 1e6

    ours_ms, base_ms = 1e3 * float(np.median(ours)), 1e3 * float(np.median(base))
    print(f"\n{n} sweeps, {np.mean(counts):,.0f} points a sweep, points file {size_mb:.1f} MB")
    print("| read one sweep | median ms | p90 ms | ratio |")
    print("|---|---:|---:|---:|")
    p90 = 1e3 * np.quantile(ours, 0.9)
    print(f"| ours: `seq.points(i)` (one row group) | {ours_ms:.2f} | {p90:.2f} | 1.00 |")
    print(
        f"| baseline: `pq.read_table(filters=frame_index == i)` | {base_ms:.2f} | "
        f"{1e3 * np.quantile(base, 0.9):.2f} | {base_ms / ours_ms:.2f}x slower |"
    )
    print(f"\ntarget: under 20 ms for a 120k-point sweep -> {'met' if ours_ms < 20 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
