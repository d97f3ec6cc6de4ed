"""Score calibration shared by the geometric and learned detectors: matching, fitting, applying."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fusion.detect import DetectError
from fusion.detect.calibration import (
    ScoreCalibration,
    fit_per_category,
    logit_features,
    match_labels,
)


def test_match_labels_takes_ground_truth_greedily_in_priority_order() -> None:
    # two cars over one ground-truth car: the higher-priority one takes it; a pedestrian at IoU 0.3
    # matches (loose threshold 0.25), a car at 0.4 does not (0.5); unknown matches any category at 0.25
    iou = np.array(
        [
            [0.6, 0.0, 0.0],
            [0.9, 0.0, 0.0],
            [0.0, 0.3, 0.0],
            [0.0, 0.0, 0.4],
            [0.0, 0.0, 0.3],
        ]
    )
    category = np.array(["car", "car", "pedestrian", "car", "unknown"])
    order = np.array([1.0, 2.0, 0.5, 0.4, 0.1])
    gt = np.array(["car", "pedestrian", "truck"])
    np.testing.assert_array_equal(match_labels(iou, category, order, gt), [0, 1, 1, 0, 1])
    np.testing.assert_array_equal(match_labels(None, category, order, gt), [0, 0, 0, 0, 0])


def test_per_category_fit_recovers_a_known_platt_map() -> None:
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.02, 0.98, 20000)
    x = logit_features(raw)
    truth = {"pedestrian": (1.5, 0.8), "car": (-0.5, 2.0)}
    cat = np.where(rng.random(len(raw)) < 0.5, "pedestrian", "car")
    z = np.array([truth[c][0] for c in cat]) + np.array([truth[c][1] for c in cat]) * x[:, 1]
    y = (rng.random(len(raw)) < 1 / (1 + np.exp(-z))).astype(np.float64)
    fitted = fit_per_category(x, cat, y, l2=1.0, min_samples=40, categories=["car", "pedestrian", "bus"])
    for name, (bias, slope) in truth.items():
        np.testing.assert_allclose(fitted[name], [bias, slope], atol=0.1)
    np.testing.assert_array_equal(fitted["bus"], [0.0, 0.0])  # no box: a constant 0.5


def test_calibration_is_monotone_per_category_and_refuses_an_inverting_slope() -> None:
    cal = ScoreCalibration({"pedestrian": (1.2, 0.9), "car": (-0.3, 1.4)})
    raw = np.linspace(0.01, 0.99, 50)
    for name, (bias, slope) in cal.weights.items():
        out = cal.apply(raw, np.full(len(raw), name))
        assert out.dtype == np.float32
        assert (np.diff(out) > 0).all()
        by_hand = 1 / (1 + np.exp(-(bias + slope * np.log(raw / (1 - raw)))))
        np.testing.assert_allclose(out, by_hand, rtol=1e-6)
    with pytest.raises(DetectError, match=re.escape("slope -0.1 < 0 would invert the ranking")):
        ScoreCalibration({"car": (0.0, -0.1)})
    with pytest.raises(DetectError, match="no weights for category 'bus'"):
        cal.apply(np.array([0.5]), np.array(["bus"]))


def test_calibration_round_trips_through_checkpoint_meta_and_bad_meta_is_an_error() -> None:
    cal = ScoreCalibration({"car": (0.25, 1.5)}, "seeds 101-106")
    assert ScoreCalibration.from_meta(cal.to_meta(), "x.pth") == cal
    with pytest.raises(DetectError, match=re.escape("meta['fusion_score_calibration'] has no 'weights'")):
        ScoreCalibration.from_meta({"method": "platt"}, "x.pth")
    with pytest.raises(DetectError, match=r"x\.pth: .* not \(bias, slope\) pairs"):
        ScoreCalibration.from_meta({"weights": {"car": [1.0]}}, "x.pth")
