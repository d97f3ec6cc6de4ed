"""bench/tracking.py runs every configuration, online and offline (both passes + refine), and its
table says how fast each is and that none switches ids on its smooth synthetic scene."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_tracking_bench_times_online_and_offline_tracking() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "tracking.py"),
            "--frames",
            "80",
            "--objects",
            "12",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    rows = [
        line.split("|")[1:-1]
        for line in run.stdout.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    names = [r[0].strip() for r in rows[1:]]
    assert names == [
        "cv + hungarian",
        "cv + greedy",
        "ctrv + hungarian",
        "baseline: cv, one track at a time",
        "offline: both passes + refine",
    ]
    for row in rows[1:]:
        assert float(row[1].replace(",", "")) > 0  # frames/s
        assert int(row[4]) == 0  # id switches
    assert int(rows[-1][3].split()[0]) >= 10  # the offline row's tracks: the 12 objects, a few missed at most
