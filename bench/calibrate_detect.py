"""Fit the geometric detector's score: a logistic model per category, on simulated logs.

    .venv/bin/python bench/calibrate_detect.py [--seeds 1 2 3 4 5 6] [--check-seeds 7 8] [--seconds 10]

This is the script that produced `fusion.detect.classify.SCORE_WEIGHTS`; paste its output there.

Data: every 5th sweep of a `--seconds` log per seed, for both simulated LiDARs (vlp32c at 512
columns, hdl64e at 2048), deskewed by fusion.sync (never seed 0: the committed sample). Each box
the detector keeps is labelled a true positive when it matches a ground-truth box: boxes taken by
descending point count (the suppression's order), each takes the unmatched ground-truth box of
its category with the highest BEV IoU of at least 0.5 (car, truck, bus) or 0.25 (pedestrian,
cyclist, motorcycle); `unknown` boxes match a box of any category at 0.25. A logistic regression
of that label on `SCORE_FEATURES` (Newton's method, L2 penalty `--l2` on all weights but the bias)
is fitted per category; a category with fewer than `--min-samples` boxes or only one label gets
its positive rate as a constant (`fusion.detect.calibration`, shared with bench/calibrate_learned.py).
The reliability of the fit on `--check-seeds` is printed too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.detect_data import Frame, sim_frames
from fusion.boxes import BOX_FIELDS, CATEGORIES
from fusion.detect import GeometricConfig, GeometricDetector
from fusion.detect.calibration import fit_per_category, match_labels, reliability
from fusion.detect.classify import SCORE_FEATURES
from fusion.detect.geometric import points_of
from fusion.evaluation import bev_iou

F64 = npt.NDArray[np.float64]


def labelled(frames: Sequence[Frame], config: GeometricConfig) -> tuple[F64, npt.NDArray[np.str_], F64]:
    """(features (K, F), category (K,), label (K,) 0/1) of every box the detector keeps."""
    feats, cats, labels = [], [], []
    detector = GeometricDetector(config)
    for frame in frames:
        _, result = detector.classified(points_of(frame.cloud), frame.cloud.ring)
        truth = frame.truth
        gt_boxes = truth[list(BOX_FIELDS)].to_numpy(dtype=np.float64)
        gt_cat = truth["category"].to_numpy(dtype=str)
        iou = bev_iou(result.boxes, gt_boxes) if len(gt_boxes) and len(result.boxes) else None
        # boxes taken by descending point count: the suppression's order
        label = match_labels(iou, result.category, result.features[:, 1], gt_cat)
        feats.append(result.features)
        cats.append(result.category)
        labels.append(label)
    return np.concatenate(feats), np.concatenate(cats), np.concatenate(labels)


def frames_of(seeds: Sequence[int], seconds: float) -> list[Frame]:
    return [f for lidar in ("vlp32c", "hdl64e") for s in seeds for f in sim_frames(s, lidar, seconds=seconds)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--check-seeds", type=int, nargs="*", default=[7, 8])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--min-samples", type=int, default=40)
    args = parser.parse_args(argv)
    if 0 in args.seeds or 0 in args.check_seeds:
        parser.error("seed 0 is the committed sample; calibrate on other seeds")
    config = GeometricConfig()
    x, cat, y = labelled(frames_of(args.seeds, args.seconds), config)
    weights = fit_per_category(x, cat, y, args.l2, args.min_samples, CATEGORIES)
    print(f"# features: {', '.join(SCORE_FEATURES)}")
    print("# fitted by bench/calibrate_detect.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print("SCORE_WEIGHTS = {")
    for name, w in weights.items():
        print(f'    "{name}": ({", ".join(f"{v:.4f}" for v in w)}),')
    print("}")
    print()
    print("Training seeds:")
    print(reliability(x, cat, y, weights))
    if args.check_seeds:
        xc, cc, yc = labelled(frames_of(args.check_seeds, args.seconds), config)
        print()
        print("Held-out seeds:")
        print(reliability(xc, cc, yc, weights))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
