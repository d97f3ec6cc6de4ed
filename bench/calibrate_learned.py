"""Calibrate a learned detector's scores per category on simulated logs; store it in the checkpoint.

    nice -n 10 .venv/bin/python bench/calibrate_learned.py \
        [--checkpoint data_samples/pointpillars_sim.pth] [--seeds 101-106] [--check-seeds 7 8] [--write]

Focal-loss scores are not probabilities (the shipped PointPillars scores its right pedestrians
0.2-0.3), while the tracker's per-category thresholds expect calibrated scores (as the geometric
detector's are: `bench/calibrate_detect.py`). This fits, per category, P(right) =
sigmoid(bias + slope * logit(raw score)) (Platt scaling, monotone: the ranking within a category,
and so its untracked AP, is unchanged) with the same code as the geometric detector's fit
(`fusion.detect.calibration`: `match_labels`, `fit_per_category`, `reliability`).

Data: the checkpoint's own training seeds (101-106 for the shipped model; never the committed
sample's seed 0 nor the evaluation seeds 7 and 8), `fusion simulate` vlp32c (its default LiDAR),
`--seconds` each, deskewed by fusion.sync; sweeps with index % 4 == 1 (odd: the shipped model was
trained on the even sweeps, so none of these was a training input, though their scenes were).
The detector runs with raw scores; each kept box is labelled right when `match_labels` matches it
(boxes in descending raw score, the NMS order; BEV IoU >= 0.5 car/truck/bus, 0.25 others).
A category with no box keeps its raw scores (bias 0, slope 1). `--check-seeds` only report the
reliability on other seeds (nothing is fitted on them).

`--write` stores the result in the checkpoint's meta["fusion_score_calibration"] (the weights are
kept bit for bit; the file is replaced atomically); without it the calibration is only printed.
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
from fusion.boxes import BOX_FIELDS
from fusion.detect.calibration import (
    META_KEY,
    ScoreCalibration,
    fit_per_category,
    logit_features,
    match_labels,
    reliability,
)
from fusion.evaluation import bev_iou

F64 = npt.NDArray[np.float64]
EVAL_SEEDS = (0, 7, 8)  # the committed sample and the README's evaluation drives


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def frames_of(seeds: Sequence[int], seconds: float) -> list[Frame]:
    """The odd sweeps (index % 4 == 1) of each seed's vlp32c log."""
    out: list[Frame] = []
    for seed in seeds:
        out.extend(
            f
            for f in sim_frames(seed, "vlp32c", seconds=seconds, every=1)
            if int(f.name.split("/")[1]) % 4 == 1
        )
    return out


def labelled(detector: object, frames: Sequence[Frame]) -> tuple[F64, npt.NDArray[np.str_], F64]:
    """(raw scores (K,), category (K,), label (K,) 0/1) of every box the detector keeps."""
    from fusion.detect.learned import PillarDetector

    assert isinstance(detector, PillarDetector) and detector.score_calibration is None
    scores, cats, labels = [], [], []
    results = detector.detect_batch([f.cloud for f in frames])
    for frame, boxes in zip(frames, results, strict=True):
        gt_boxes = frame.truth[list(BOX_FIELDS)].to_numpy(dtype=np.float64)
        gt_cat = frame.truth["category"].to_numpy(dtype=str)
        iou = bev_iou(boxes.boxes, gt_boxes) if len(gt_boxes) and len(boxes) else None
        raw = boxes.score.astype(np.float64)
        labels.append(match_labels(iou, boxes.category, raw, gt_cat))
        scores.append(raw)
        cats.append(boxes.category)
    return np.concatenate(scores), np.concatenate(cats), np.concatenate(labels)


def write_calibration(checkpoint: Path, calibration: ScoreCalibration) -> None:
    """Put the calibration into the checkpoint's meta, keeping everything else as it is."""
    import torch

    from fusion.detect.learned.checkpoint import read_checkpoint

    state, meta = read_checkpoint(checkpoint)
    meta = {**meta, META_KEY: calibration.to_meta()}
    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    torch.save({"meta": meta, "state_dict": state}, tmp)
    tmp.replace(checkpoint)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=Path("data_samples/pointpillars_sim.pth"))
    parser.add_argument("--model-config", type=Path)
    parser.add_argument("--seeds", default="101-106", help="the model's training seeds: 101-106 or 101,102")
    parser.add_argument("--check-seeds", type=int, nargs="*", default=[7, 8])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--min-samples", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="store the calibration in the checkpoint")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if set(seeds) & set(EVAL_SEEDS):
        parser.error(f"seeds {EVAL_SEEDS} are the sample's and the evaluation's; fit on the training seeds")

    from fusion.detect.learned import LearnedConfig, PillarDetector

    config = LearnedConfig(
        checkpoint=args.checkpoint,
        model_config=args.model_config,
        device="cpu",
        threads=args.threads,
        score_calibration="raw",
    )
    detector = PillarDetector(config)
    categories = detector.categories
    raw, cat, y = labelled(detector, frames_of(seeds, args.seconds))
    x = logit_features(raw)
    fitted = fit_per_category(x, cat, y, args.l2, args.min_samples, categories)
    weights = {}
    for name, w in fitted.items():
        if not (cat == name).any():
            weights[name] = (0.0, 1.0)  # no box to fit on: raw scores
        else:
            weights[name] = (float(w[0]), max(float(w[1]), 0.0))  # never invert the ranking
    fitted_on = (
        f"bench/calibrate_learned.py: fusion simulate vlp32c seeds {seeds[0]}-{seeds[-1]}, "
        f"{args.seconds:g} s each, sweeps with index % 4 == 1; {len(y)} boxes, l2 {args.l2}"
    )
    calibration = ScoreCalibration(weights, fitted_on)
    used = {k: np.array(v) for k, v in weights.items()}
    identity = {k: np.array([0.0, 1.0]) for k in weights}
    print(f"# {fitted_on}")
    print("# category: bias, slope of sigmoid(bias + slope * logit(raw))")
    for name, (b, s) in weights.items():
        print(f"{name}: {b:.4f}, {s:.4f}")
    print("\nTraining seeds, raw scores:")
    print(reliability(x, cat, y, identity))
    print("\nTraining seeds, calibrated:")
    print(reliability(x, cat, y, used))
    if args.check_seeds:
        if 0 in args.check_seeds:
            parser.error("seed 0 is the committed sample")
        rc, cc, yc = labelled(detector, frames_of(args.check_seeds, args.seconds))
        xc = logit_features(rc)
        print("\nHeld-out seeds, raw scores:")
        print(reliability(xc, cc, yc, identity))
        print("\nHeld-out seeds, calibrated:")
        print(reliability(xc, cc, yc, used))
    if args.write:
        write_calibration(args.checkpoint, calibration)
        print(f"\nwrote meta[{META_KEY!r}] into {args.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
