"""Score calibration: per-category logistic models, so that a box's score is P(the box is right).

"Right" is the simulator's ground truth matched as `match_labels` matches it (BEV IoU of at least
`LOOSE_IOU` of its category, the evaluation's loose threshold). The fitting is shared by both
detectors' calibration scripts:

    bench/calibrate_detect.py   geometric detector: features of the cluster -> classify.SCORE_WEIGHTS
    bench/calibrate_learned.py  learned detectors: [1, logit(raw score)] (Platt scaling) -> the
                                checkpoint's meta["fusion_score_calibration"] (`ScoreCalibration`)

A learned detector's calibration maps its raw score s of a category to
sigmoid(bias + slope * logit(s)) with slope >= 0: monotone, so the ranking of a category's boxes
(and its untracked AP) is unchanged, while the values become comparable across categories and
detectors (the tracker's per-category thresholds assume calibrated scores).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fusion.detect.errors import DetectError

F64 = npt.NDArray[np.float64]
LOOSE_IOU: Final = {
    "car": 0.5,
    "truck": 0.5,
    "bus": 0.5,
    "pedestrian": 0.25,
    "cyclist": 0.25,
    "motorcycle": 0.25,
}
UNKNOWN_IOU: Final = 0.25
META_KEY: Final = "fusion_score_calibration"  # where a checkpoint carries its ScoreCalibration
_EPS: Final = 1e-6


def match_labels(
    iou: F64 | None, category: npt.NDArray[np.str_], order: F64, gt_category: npt.NDArray[np.str_]
) -> F64:
    """(K,) 1.0 for each detected box that matches a ground-truth box, else 0.0.

    iou: (K, G) BEV IoU of detections and ground truth (None: no ground truth or no detection).
    category: (K,) detected categories; order: (K,) priority (higher first); gt_category: (G,).
    Boxes in descending `order` each take the unmatched ground-truth box of their category with
    the highest IoU of at least LOOSE_IOU[category]; `unknown` boxes take any category at UNKNOWN_IOU.
    """
    label = np.zeros(len(category))
    if iou is None:
        return label
    taken = np.zeros(len(gt_category), dtype=np.bool_)
    for k in np.argsort(-order, kind="stable"):
        cat = str(category[k])
        if cat == "unknown":
            ok = ~taken & (iou[k] >= UNKNOWN_IOU)
        else:
            ok = ~taken & (gt_category == cat) & (iou[k] >= LOOSE_IOU[cat])
        if ok.any():
            j = int(np.flatnonzero(ok)[np.argmax(iou[k][ok])])
            taken[j] = True
            label[k] = 1.0
    return label


def fit_logistic(x: F64, y: F64, l2: float, iterations: int = 50) -> F64:
    """Weights w (F,) of P(y=1) = sigmoid(x w); x's first column is the bias (not penalised)."""
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_per_category(
    x: F64, category: npt.NDArray[np.str_], y: F64, l2: float, min_samples: int, categories: Iterable[str]
) -> dict[str, F64]:
    """A logistic model (weights (F,)) per category of `categories`.

    x: (K, F) features, first column 1; category: (K,); y: (K,) 0/1. A category with fewer than
    `min_samples` boxes or only one label gets its positive rate (clipped to [0.01, 0.99]) as a
    constant; one with no box at all gets zeros (0.5).
    """
    weights = {}
    for name in categories:
        sel = category == name
        w = np.zeros(x.shape[1])
        if sel.sum() >= min_samples and 0.0 < y[sel].mean() < 1.0:
            w = fit_logistic(x[sel], y[sel], l2)
        elif sel.any():
            rate = float(np.clip(y[sel].mean(), 0.01, 0.99))
            w[0] = float(np.log(rate / (1.0 - rate)))
        weights[name] = w
    return weights


def reliability(x: F64, category: npt.NDArray[np.str_], y: F64, weights: Mapping[str, F64]) -> str:
    """A markdown table: per category, boxes, true positives, mean score, Brier score, score bins."""
    lines = [
        "| category | boxes | true positives | mean score | Brier | score bins (mean score / TP rate / n) |",
        "|---|---|---|---|---|---|",
    ]
    for name, w in weights.items():
        sel = category == name
        if not sel.any():
            continue
        p = 1.0 / (1.0 + np.exp(-(x[sel] @ w)))
        bins = []
        for lo in (0.0, 0.25, 0.5, 0.75):
            b = (p >= lo) & (p < lo + 0.25 + (1e-9 if lo == 0.75 else 0.0))
            if b.any():
                bins.append(f"{p[b].mean():.2f}/{y[sel][b].mean():.2f}/{int(b.sum())}")
        brier = float(np.mean((p - y[sel]) ** 2))
        lines.append(
            f"| {name} | {int(sel.sum())} | {int(y[sel].sum())} | {p.mean():.3f} | {brier:.3f} | "
            f"{'; '.join(bins)} |"
        )
    return "\n".join(lines)


def logit_features(score: npt.ArrayLike) -> F64:
    """(K, 2) [1, logit(score)] of raw scores (K,) in [0, 1] (clipped to [1e-6, 1 - 1e-6])."""
    s = np.clip(np.asarray(score, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.stack([np.ones_like(s), np.log(s / (1.0 - s))], axis=1)


@dataclass(frozen=True)
class ScoreCalibration:
    """A learned detector's score calibration: per category, P(right) = sigmoid(bias + slope * logit(raw))."""

    weights: Mapping[str, tuple[float, float]]  # category -> (bias, slope), slope >= 0
    fitted_on: str = ""  # what it was fitted on (data, script), for the record

    def __post_init__(self) -> None:
        for name, (bias, slope) in self.weights.items():
            if not (np.isfinite(bias) and np.isfinite(slope)):
                raise DetectError(f"score calibration of {name!r}: weights ({bias}, {slope}) are not finite")
            if slope < 0:
                raise DetectError(
                    f"score calibration of {name!r}: slope {slope} < 0 would invert the ranking; refit it"
                )

    def apply(self, score: npt.ArrayLike, category: npt.NDArray[np.str_]) -> npt.NDArray[np.float32]:
        """(K,) float32 calibrated scores of raw scores (K,) of the given categories (K,).

        Raises DetectError for a category the calibration has no weights for."""
        raw = np.asarray(score, dtype=np.float64)
        bias = np.empty(len(raw))
        slope = np.empty(len(raw))
        for name in np.unique(category):
            if str(name) not in self.weights:
                raise DetectError(
                    f"the score calibration has no weights for category {str(name)!r} "
                    f"(it has {sorted(self.weights)}); refit it or use raw scores"
                )
            sel = category == name
            bias[sel], slope[sel] = self.weights[str(name)]
        z = bias + slope * logit_features(raw)[:, 1]
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def to_meta(self) -> dict[str, Any]:
        """Plain values for a checkpoint's meta[META_KEY]."""
        return {
            "method": "platt: sigmoid(bias + slope * logit(raw score)) per category",
            "weights": {k: [float(v[0]), float(v[1])] for k, v in self.weights.items()},
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_meta(cls, value: object, source: str) -> ScoreCalibration:
        """The calibration of a checkpoint's meta[META_KEY]. Raises DetectError naming `source`."""
        weights = value.get("weights") if isinstance(value, Mapping) else None
        if not isinstance(weights, Mapping):
            raise DetectError(f"{source}: meta[{META_KEY!r}] has no 'weights' mapping; refit the calibration")
        try:
            parsed = {str(k): (float(v[0]), float(v[1])) for k, v in weights.items() if len(v) == 2}
        except (TypeError, ValueError, IndexError) as err:
            raise DetectError(f"{source}: meta[{META_KEY!r}] weights are not (bias, slope) pairs") from err
        if len(parsed) != len(weights):
            raise DetectError(f"{source}: meta[{META_KEY!r}] weights are not (bias, slope) pairs")
        fitted_on = value.get("fitted_on", "") if isinstance(value, Mapping) else ""
        return cls(parsed, str(fitted_on))
