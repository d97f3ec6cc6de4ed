"""Output policies of the online tracker: coasting LOST tracks, score ramp, and RANKED_PARAMS."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.trackers.scenarios import FRAME_NS, car, frame, id_of, id_switches, noisy
from trackers.config import DEFAULT_PARAMS, OUTPUT_POLICIES, RANKED_PARAMS, Params, TrackerConfig
from trackers.errors import TrackingError
from trackers.online import Tracker
from trackers.types import TrackState


def _config(**changes: object) -> TrackerConfig:
    return TrackerConfig(params={c: replace(p, **changes) for c, p in DEFAULT_PARAMS.items()})  # type: ignore[arg-type]


def _straight(
    tracker: Tracker, n: int, detected: set[int], seed: int
) -> tuple[list[int | None], list[float]]:
    """A car at 10 m/s along +x, detected (score 0.9) at the frames in `detected`: the id seen at each
    frame (None when no output track is near) and the output score of that track (nan when none)."""
    rng = np.random.default_rng(seed)
    ids, scores = [], []
    for k in range(n):
        t, xy = k * FRAME_NS, (1.0 * k, 0.0)
        dets = [noisy(rng, car(*xy, 0.0))] if k in detected else []
        out = tracker.step(frame(dets, ["car"] * len(dets), [0.9] * len(dets), t), t)
        i = id_of(out, xy)
        ids.append(i)
        scores.append(float(out.score[out.track_id == i][0]) if i is not None else float("nan"))
    return ids, scores


def test_lost_track_is_output_for_output_misses_frames_only() -> None:
    tracker = Tracker(_config(output_misses=2))
    ids, scores = _straight(tracker, 20, detected=set(range(10)), seed=1)
    assert ids[2:12] == [0] * 10 and ids[12:] == [None] * 8  # coasts frames 10 and 11, then hidden
    assert scores[10] == pytest.approx(0.9 * 0.9, rel=1e-6)
    assert scores[11] == pytest.approx(0.9 * 0.9**2, rel=1e-6)
    assert tracker.num_tracks == 1  # still LOST (alive), only not output


def test_output_misses_zero_hides_lost_tracks() -> None:
    ids, _ = _straight(Tracker(_config(output_misses=0)), 15, detected=set(range(10)), seed=2)
    assert ids[2:10] == [0] * 8 and ids[10:] == [None] * 5


def test_score_ramps_with_hits_up_to_score_ramp_hits() -> None:
    _, scores = _straight(Tracker(_config(min_hits=1, score_ramp_hits=4)), 6, detected=set(range(6)), seed=3)
    assert scores == pytest.approx([0.9 * 0.25, 0.9 * 0.5, 0.9 * 0.75, 0.9, 0.9, 0.9], rel=1e-6)


def test_ranked_params_keep_one_id_on_a_flickering_object() -> None:
    """Detected every other frame: with DEFAULT_PARAMS (min_hits 3) every TENTATIVE track dies at its
    first miss and nothing is ever output; RANKED_PARAMS output one track throughout, coasting the
    missed frames."""
    flicker = set(range(0, 30, 2))
    confirmed, _ = _straight(Tracker(), 30, detected=flicker, seed=4)
    assert confirmed == [None] * 30
    tracker = Tracker(TrackerConfig(params=RANKED_PARAMS))
    ids, scores = _straight(tracker, 30, detected=flicker, seed=4)
    assert ids == [0] * 30 and id_switches(ids) == 0
    assert scores[0] == pytest.approx(0.9 / 6, rel=1e-6)  # a young track ranks low
    assert scores[1] == pytest.approx(0.9 / 6 * 0.9, rel=1e-6)  # coasting: decayed
    assert scores[20] == pytest.approx(0.9, rel=1e-6)  # 11 hits: full score
    assert [t.state for t in tracker.tracks()] == [TrackState.LOST]


def test_ranked_params_differ_from_the_defaults_only_in_the_output_policy() -> None:
    assert set(OUTPUT_POLICIES) == {"confirmed", "ranked"} and OUTPUT_POLICIES["confirmed"] is DEFAULT_PARAMS
    for cat, p in RANKED_PARAMS.items():
        assert p == replace(DEFAULT_PARAMS[cat], min_hits=1, output_misses=1, score_ramp_hits=6)


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"output_misses": -1}, "output_misses >= 0"), ({"score_ramp_hits": 0}, "score_ramp_hits >= 1")],
)
def test_params_reject_bad_output_policy(changes: dict[str, int], match: str) -> None:
    with pytest.raises(TrackingError, match=match):
        Params(**changes)  # type: ignore[arg-type]
