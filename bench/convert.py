"""`fusion convert` speed on the real fragments of the shared datasets, against reading them.

    .venv/bin/python bench/convert.py [--datasets ../shared/datasets] [--repeat 3]

Sources: the KITTI raw fragment (sfnd: 19 sweeps of ~113k points and 19 PNGs of 1242x375, with the
2011_09_26 calibration, --hz 10) and the Argoverse 2 log (2 sweeps of ~99k points, 358 poses kept).
For each, and each output format, the best of `--repeat` runs of `fusion.convert.convert`, in
sweeps per second, beside the baseline: reading the same inputs the converter must read (the .bin
bytes and every PNG decoded by OpenCV, as convert checks them; the AV2 feathers), best of as many.
The ratio is convert's time over the baseline's (what writing the bag adds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, get_args

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from pyarrow import feather  # noqa: E402

from fusion.convert import convert  # noqa: E402
from fusion.simulate.writer import Format  # noqa: E402

SFND = "sfnd_3d_object_tracking_kitti/images/KITTI/2011_09_26"
CALIB = "kitti_raw_2011_09_26_calib_timestamps/test_data/kitti/2011_09_26_calib/2011_09_26"
AV2 = "av2_api_test_data/tests/unit/test_data/sensor/val/7fab2350-7eaf-3b7e-a39d-6937a4c1bede"


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _read_kitti(root: Path) -> None:
    for path in sorted((root / "velodyne_points" / "data").glob("*.bin")):
        np.fromfile(path, dtype=np.float32)
    for path in sorted((root / "image_02" / "data").glob("*.png")):
        cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)


def _read_av2(root: Path) -> None:
    for path in sorted((root / "sensors" / "lidar").glob("*.feather")):
        feather.read_table(path)
    feather.read_table(root / "city_SE3_egovehicle.feather")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    kitti, av2, calib = args.datasets / SFND, args.datasets / AV2, args.datasets / CALIB
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, src, source, sweeps, kwargs, baseline in (
            ("KITTI raw (sfnd)", kitti, "kitti-raw", 19, {"hz": 10.0, "calibration": calib}, _read_kitti),
            ("AV2 log", av2, "av2", 2, {}, _read_av2),
        ):
            base = _best(partial(baseline, src), args.repeat)
            for fmt in get_args(Format):
                out = Path(tmp) / f"{source}-{fmt}"

                def run(
                    s: Path = src, src_kind: str = source, f: Format = fmt, o: Path = out, kw: Any = kwargs
                ) -> None:
                    convert(s, src_kind, o, fmt=f, overwrite=True, **kw)

                took = _best(run, args.repeat)
                rows.append((name, fmt, sweeps, took, base))
    head = f"{'source':18} {'format':8} {'sweeps':>6} {'convert s':>9} {'sweeps/s':>9}"
    print(f"{head} {'read-only s':>11} {'ratio':>6}")
    for name, fmt, sweeps, took, base in rows:
        print(
            f"{name:18} {fmt:8} {sweeps:6d} {took:9.3f} {sweeps / took:9.1f} {base:11.3f} {took / base:6.2f}"
        )


if __name__ == "__main__":
    main()
