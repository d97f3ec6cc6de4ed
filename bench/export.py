"""Time and size of each `fusion export` format, and of importing OpenLABEL and KITTI back.

    .venv/bin/python bench/export.py [--out OUT] [--repeat 3]

The dataset is `--out` (default: `fusion detect` of the sample log into a temporary folder; 30
sweeps, ~14k points each, 3 cameras). Each format is exported `--repeat` times into fresh folders;
the median wall time, the time per sweep and the bytes written are printed as a markdown table,
with the OpenLABEL export as the baseline of the ratio column.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporters.formats import EXPORTERS, export_dataset, import_labels  # noqa: E402
from exporters.reader import open_dataset  # noqa: E402
from fusion.cli import main as fusion  # noqa: E402


def _size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="an existing dataset (default: the sample log, pre-labelled)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fusion-bench-export-") as tmp:
        out = args.out
        if out is None:
            out = Path(tmp) / "dataset"
            sample = REPO / "data_samples" / "sim_drive.mcap"
            if fusion(["detect", str(sample), "--out", str(out), "--quiet"]) != 0:
                return 1
        dataset = open_dataset(out)
        sweeps = sum(seq.num_frames for seq in dataset)
        rows = []
        exported: dict[str, list[Path]] = {}
        for fmt in EXPORTERS:
            times = []
            for k in range(args.repeat):
                start = time.perf_counter()
                written = export_dataset(out, fmt, Path(tmp) / f"{fmt}-{k}")
                times.append(time.perf_counter() - start)
            exported[fmt] = written
            rows.append((f"export {fmt}", statistics.median(times), _size(written)))
        imports = {
            "openlabel": exported["openlabel"][0],
            "kitti": next(p for p in exported["kitti"] if p.is_dir()),
        }
        for fmt, src in imports.items():
            times = []
            for k in range(args.repeat):
                start = time.perf_counter()
                import_labels(fmt, src, Path(tmp) / f"import-{fmt}-{k}")
                times.append(time.perf_counter() - start)
            rows.append((f"import {fmt}", statistics.median(times), 0))
        base = rows[0][1]
        print(f"{sweeps} sweeps, median of {args.repeat} runs (first run of a format includes its imports)\n")
        print("| step | seconds | ms/sweep | vs export openlabel | MB written |")
        print("|---|---:|---:|---:|---:|")
        for name, seconds, size in rows:
            mb = f"{size / 1e6:.1f}" if size else ""
            print(
                f"| {name} | {seconds:.2f} | {1000 * seconds / sweeps:.1f} | {seconds / base:.1f}x | {mb} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
