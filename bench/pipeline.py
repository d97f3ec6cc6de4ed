"""Throughput of `fusion run` on Dask against the same stages in one process (`fusion detect`).

    .venv/bin/python bench/pipeline.py [--logs 4] [--workers 2]

The sample log copied `--logs` times (distinct names), pre-labelled end to end (decode, sync,
deskew, detect, track, refine, write the dataset with points and images) once by
`fusion.prelabel.prelabel_logs` in this process, once by `fusion.pipeline.run` on a LocalCluster
of `--workers` single-threaded worker processes (cluster start-up included). Sweeps per second and
the ratio, as a markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusion.detect import DETECTORS  # noqa: E402
from fusion.pipeline import run  # noqa: E402
from fusion.prelabel import prelabel_logs  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=REPO / "data_samples" / "sim_drive.mcap")
    ap.add_argument("--logs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fusion-bench-pipeline-") as tmp:
        logs = []
        for i in range(args.logs):
            dst = Path(tmp) / f"drive_{i}.mcap"
            shutil.copy(args.log, dst)
            logs.append(dst)
        prelabel_logs(logs[:1], Path(tmp) / "warm", detector=DETECTORS["geometric"]())  # compile caches
        t = time.perf_counter()
        seq = prelabel_logs(logs, Path(tmp) / "one", detector=DETECTORS["geometric"]())
        t_one = time.perf_counter() - t
        t = time.perf_counter()
        dask = run(logs, Path(tmp) / "dask", workers=args.workers)
        t_dask = time.perf_counter() - t
        sweeps = sum(s.sweeps for s in seq)
        assert sweeps == sum(s.sweeps for s in dask)
    print(f"\n{args.logs} logs, {sweeps} sweeps, whole pipeline with points and images written")
    print("| runner | wall s | sweeps/s | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| one process (`fusion detect`) | {t_one:.1f} | {sweeps / t_one:.1f} | 1.00x |")
    print(
        f"| Dask LocalCluster, {args.workers} workers (`fusion run`, start-up included) "
        f"| {t_dask:.1f} | {sweeps / t_dask:.1f} | {t_one / t_dask:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
