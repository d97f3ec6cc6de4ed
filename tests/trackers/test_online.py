"""Scenario tests of the online tracker: seeded synthetic scenes, exact outcomes."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fusion.boxes import Boxes
from tests.trackers.scenarios import FRAME_NS, car, frame, id_of, id_switches, noisy
from trackers.config import DEFAULT_PARAMS, TrackerConfig
from trackers.errors import TrackingError
from trackers.online import Tracker
from trackers.types import TrackState


def _run_straight(tracker: Tracker, n: int, skip: set[int], rng: np.random.Generator) -> list[int | None]:
    """A car at 10 m/s along +x, detected every frame except `skip`; the id seen at each frame."""
    ids = []
    for k in range(n):
        t = k * FRAME_NS
        xy = (10.0 * k * 0.1, 0.0)
        dets = [] if k in skip else [noisy(rng, car(*xy, 0.0))]
        out = tracker.step(frame(dets, ["car"] * len(dets), [0.9] * len(dets), t), t)
        ids.append(id_of(out, xy))
    return ids


def test_two_cars_crossing_keep_their_ids() -> None:
    rng = np.random.default_rng(1)
    tracker = Tracker()
    ids_a, ids_b = [], []
    v = 10.0 / math.sqrt(2.0)
    for k in range(50):
        t, s = k * FRAME_NS, k * 0.1
        a, b = (-20 + v * s, -20 + v * s), (-20 + v * s, 20 - v * s)  # they meet at frame 28
        dets = [noisy(rng, car(*a, math.pi / 4)), noisy(rng, car(*b, -math.pi / 4))]
        out = tracker.step(frame(dets, ["car", "car"], [0.9, 0.9], t), t)
        if k not in (28, 29):  # centres within a box of each other: nearest-id lookup is ambiguous
            ids_a.append(id_of(out, a))
            ids_b.append(id_of(out, b))
    assert id_switches(ids_a) == 0 and id_switches(ids_b) == 0
    assert ids_a[2:] == [0] * 46 and ids_b[2:] == [1] * 46
    assert ids_a[:2] == [None, None]  # tentative for min_hits - 1 frames
    assert tracker.num_tracks == 2


def test_occluded_for_five_frames_keeps_its_id() -> None:
    tracker = Tracker()
    ids = _run_straight(tracker, 40, skip=set(range(15, 20)), rng=np.random.default_rng(2))
    assert ids[15:20] == [None] * 5  # LOST tracks are not output by default
    assert ids[2:15] == [0] * 13 and ids[20:] == [0] * 20
    assert tracker.num_tracks == 1


def test_lost_track_is_output_with_decayed_score_when_asked() -> None:
    tracker = Tracker(TrackerConfig(output_lost=True))
    rng = np.random.default_rng(3)
    _run_straight(tracker, 10, skip=set(), rng=rng)
    out = tracker.step(frame([], [], [], 10 * FRAME_NS), 10 * FRAME_NS)
    assert out.track_id.tolist() == [0]
    assert out.state.tolist() == [int(TrackState.LOST)]
    assert out.matched.tolist() == [False]
    assert out.score[0] == pytest.approx(0.9 * 0.9, rel=1e-6)
    assert out.boxes_world[0, 0] == pytest.approx(10.0, abs=0.2)  # predicted on, not frozen


def test_dropped_frame_does_not_break_the_track() -> None:
    tracker = Tracker()
    rng = np.random.default_rng(4)
    ids, matched = [], []
    stamps = [k * FRAME_NS for k in range(15)] + [k * FRAME_NS for k in range(16, 40)]  # frame 15 lost
    for t in stamps:
        xy = (-30.0 + 15.0 * t * 1e-9, 5.0)
        out = tracker.step(frame([noisy(rng, car(*xy, 0.0))], ["car"], [0.9], t), t)
        ids.append(id_of(out, xy, radius=0.5))
        matched.append(bool(out.matched.all()) if len(out) else None)
    assert ids[2:] == [0] * (len(stamps) - 2)
    assert matched[2:] == [True] * (len(stamps) - 2)
    assert tracker.tracks()[0].velocity[0] == pytest.approx(15.0, abs=0.5)


def test_empty_frame_keeps_confirmed_tracks() -> None:
    tracker = Tracker()
    ids = _run_straight(tracker, 30, skip={10}, rng=np.random.default_rng(5))
    assert ids[10] is None
    assert ids[2:10] == [0] * 8 and ids[11:] == [0] * 19
    empty = tracker.step(Boxes.empty("lidar", 30 * FRAME_NS), 30 * FRAME_NS)
    assert len(empty) == 0 and empty.boxes.shape == (0, 7)
    assert [t.state for t in tracker.tracks()] == [TrackState.LOST]


def test_single_frame_false_positives_never_confirmed() -> None:
    """Up to 5 false positives a frame, each > 10 m from every one of the frame before (so no two of
    them could be one moving object): none is ever output, and only the real car is."""
    rng = np.random.default_rng(6)
    tracker = Tracker()
    output_ids: set[int] = set()
    previous = np.zeros((0, 2))
    n_fp_total = 0
    for k in range(60):
        t = k * FRAME_NS
        xy = (10.0 * k * 0.1, 0.0)
        candidates = rng.uniform([-50, 10], [50, 50], (int(rng.integers(0, 6)), 2))
        far = np.all(
            np.hypot(*(candidates[:, None, :] - previous[None, :, :]).transpose(2, 0, 1)) > 10, axis=1
        )
        previous = candidates[far]
        n_fp_total += len(previous)
        fp = [
            car(float(x), float(y), float(r))
            for (x, y), r in zip(previous, rng.uniform(-3, 3, len(previous)), strict=True)
        ]
        dets = [noisy(rng, car(*xy, 0.0)), *fp]
        out = tracker.step(frame(dets, ["car"] * len(dets), rng.uniform(0.5, 1.0, len(dets)).tolist(), t), t)
        output_ids.update(out.track_id.tolist())
    assert n_fp_total > 100
    assert output_ids == {0}


def test_low_score_detections_extend_tracks_but_never_start_them() -> None:
    rng = np.random.default_rng(7)
    tracker = Tracker()
    ids = []
    for k in range(30):
        t = k * FRAME_NS
        xy = (10.0 * k * 0.1, 0.0)
        score = 0.9 if k < 10 else 0.3  # the real car fades to a low score (occlusion)
        ghost = car(0.0, 30.0, 0.0)  # a persistent low-score ghost elsewhere
        out = tracker.step(frame([noisy(rng, car(*xy, 0.0)), ghost], ["car", "car"], [score, 0.3], t), t)
        ids.append(id_of(out, xy))
        assert id_of(out, (0.0, 30.0)) is None
    assert ids[2:] == [0] * 28
    assert tracker.num_tracks == 1


def test_detections_only_update_tracks_of_their_category() -> None:
    tracker = Tracker()
    ped = [0.0, 0.0, 0.9, 0.6, 0.6, 1.7, 0.0]
    for k in range(5):
        tracker.step(frame([car(0.0, 0.0, 0.0)], ["car"], [0.9], k * FRAME_NS), k * FRAME_NS)
    out = tracker.step(frame([ped], ["pedestrian"], [0.9], 5 * FRAME_NS), 5 * FRAME_NS)
    assert len(out) == 0  # the car is LOST, the pedestrian TENTATIVE
    assert [(t.category, t.state) for t in tracker.tracks()] == [
        ("car", TrackState.LOST),
        ("pedestrian", TrackState.TENTATIVE),
    ]
    across = Tracker(TrackerConfig(match_across_categories=True))
    for k in range(5):
        across.step(frame([car(0.0, 0.0, 0.0)], ["car"], [0.9], k * FRAME_NS), k * FRAME_NS)
    out = across.step(
        frame([[0.0, 0.0, 0.8, 4.5, 1.9, 1.6, 0.0]], ["pedestrian"], [0.9], 5 * FRAME_NS),
        5 * FRAME_NS,
    )
    assert out.track_id.tolist() == [0] and out.category.tolist() == ["car"]


def test_world_frame_tracking_with_a_moving_ego() -> None:
    """A parked car seen from an ego driving at 10 m/s: zero velocity in the world, sensor boxes match."""
    rng = np.random.default_rng(8)
    tracker = Tracker()
    parked = np.array(car(30.0, 4.0, 0.5))
    for k in range(20):
        t = k * FRAME_NS
        yaw = 0.02 * k
        world_from_sensor = np.eye(4)
        world_from_sensor[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
        world_from_sensor[:3, 3] = [1.0 * k, 0.1 * k, 0.0]
        sensor_from_world = np.linalg.inv(world_from_sensor)
        det = parked.copy()
        det[:3] = sensor_from_world[:3, :3] @ parked[:3] + sensor_from_world[:3, 3]
        det[6] = parked[6] - yaw
        out = tracker.step(frame([noisy(rng, det, 0.02)], ["car"], [0.9], t), t, world_from_sensor)
    assert out.track_id.tolist() == [0]
    np.testing.assert_allclose(out.velocity[0], [0.0, 0.0, 0.0], atol=0.1)
    np.testing.assert_allclose(out.boxes_world[0, :3], parked[:3], atol=0.05)
    np.testing.assert_allclose(out.boxes[0, :3], det[:3], atol=0.05)
    assert out.boxes[0, 6] == pytest.approx(det[6], abs=0.03)


def test_ctrv_tracker_runs_and_ids_are_stable() -> None:
    params = {c: replace(p, motion="ctrv") for c, p in DEFAULT_PARAMS.items()}
    tracker = Tracker(TrackerConfig(params=params))
    ids = _run_straight(tracker, 30, skip={12, 13}, rng=np.random.default_rng(9))
    assert ids[2:12] == [0] * 10 and ids[14:] == [0] * 16
    assert tracker.tracks()[0].velocity[0] == pytest.approx(10.0, abs=0.5)


def test_min_hits_one_confirms_at_birth() -> None:
    params = {c: replace(p, min_hits=1) for c, p in DEFAULT_PARAMS.items()}
    out = Tracker(TrackerConfig(params=params)).step(frame([car(0, 0, 0)], ["car"], [0.9], 0), 0)
    assert out.track_id.tolist() == [0] and out.state.tolist() == [int(TrackState.CONFIRMED)]


def test_tentative_tracks_output_when_asked() -> None:
    out = Tracker(TrackerConfig(output_tentative=True)).step(frame([car(0, 0, 0)], ["car"], [0.9], 0), 0)
    assert out.state.tolist() == [int(TrackState.TENTATIVE)]


def test_time_going_backwards_is_rejected() -> None:
    tracker = Tracker()
    tracker.step(Boxes.empty("lidar", 10), 10)
    with pytest.raises(TrackingError, match="older than the previous"):
        tracker.step(Boxes.empty("lidar", 5), 5)


def test_switching_between_world_and_sensor_frame_is_rejected() -> None:
    tracker = Tracker()
    tracker.step(Boxes.empty("lidar", 0), 0, np.eye(4))
    with pytest.raises(TrackingError, match="every frame or for none"):
        tracker.step(Boxes.empty("lidar", 1), 1)


def test_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "tracker.toml"
    path.write_text(
        '[tracker]\nmatcher = "greedy"\n[tracker.params.default]\nmin_hits = 2\n'
        '[tracker.params.pedestrian]\nmotion = "ctrv"\ncost = "bev_iou"\n'
    )
    config = TrackerConfig.from_toml(path)
    assert config.matcher == "greedy"
    assert config.params["car"].min_hits == 2 and config.params["car"].cost == "giou_3d"
    assert config.params["pedestrian"].motion == "ctrv" and config.params["pedestrian"].cost == "bev_iou"
    Tracker(config)


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"matchr": "greedy"}, "unknown tracker config keys"),
        ({"params": {"car": {"min_hit": 2}}}, "unknown params"),
        ({"params": {"tram": {}}}, "unknown categories"),
        ({"params": {"car": {"cost": "iou"}}}, "cost 'iou'"),
        ({"matcher": "auction"}, "matcher 'auction'"),
        ({"params": {"car": {"gate_sigma": -1.0}}}, "gate_sigma must be >= 0"),
    ],
)
def test_config_rejects_bad_values(mapping: dict[str, object], match: str) -> None:
    with pytest.raises(TrackingError, match=match):
        TrackerConfig.from_mapping(mapping)


def test_unknown_motion_model_is_rejected() -> None:
    params = {c: replace(p, motion="bicycle") for c, p in DEFAULT_PARAMS.items()}
    with pytest.raises(TrackingError, match="motion models"):
        Tracker(TrackerConfig(params=params))


def test_config_round_trips_through_a_mapping() -> None:
    config = TrackerConfig.from_mapping({"matcher": "greedy", "params": {"bus": {"min_hits": 5}}})
    again = TrackerConfig.from_mapping(config.to_mapping())
    assert again.to_mapping() == config.to_mapping()
    assert again.params["bus"].min_hits == 5


def test_lost_track_dies_after_max_age_seconds_before_max_age_frames() -> None:
    """At 5 Hz, max_age_s = 1.5 s ends a LOST track after 8 missed frames, not max_age_frames = 10."""
    tracker = Tracker()
    period = 2 * FRAME_NS
    rng = np.random.default_rng(10)
    for k in range(5):
        tracker.step(frame([noisy(rng, car(2.0 * k, 0.0, 0.0))], ["car"], [0.9], k * period), k * period)
    alive = []
    for k in range(5, 16):
        tracker.step(Boxes.empty("lidar", k * period), k * period)
        alive.append(tracker.num_tracks)
    assert alive == [1] * 7 + [0] * 4  # last match at frame 4; 1.6 s later (frame 12) it is gone


def test_lost_track_dies_after_max_age_frames() -> None:
    tracker = Tracker()
    rng = np.random.default_rng(11)
    for k in range(5):
        tracker.step(frame([noisy(rng, car(1.0 * k, 0.0, 0.0))], ["car"], [0.9], k * FRAME_NS), k * FRAME_NS)
    alive = []
    for k in range(5, 18):
        tracker.step(Boxes.empty("lidar", k * FRAME_NS), k * FRAME_NS)
        alive.append(tracker.num_tracks)
    assert alive == [1] * 10 + [0] * 3  # 10 misses allowed (max_age_frames), the 11th ends it


def test_detection_index_names_the_input_row_that_updated_each_track() -> None:
    """Rows below score_low are dropped before association, and the rows shuffle from frame to frame:
    each output track still names its own detection's row in that frame's input; a coasting track -1."""
    rng = np.random.default_rng(21)
    tracker = Tracker(TrackerConfig(output_lost=True, output_tentative=True))
    for k in range(6):
        a, b = car(10.0 + k, 3.0, 0.0), car(20.0, -4.0 + 0.5 * k, 1.57)
        rows = [noisy(rng, a), noisy(rng, b), car(-30.0, 0.0, 0.0)]
        scores = [0.9, 0.8, 0.01]  # the third is below score_low
        order = rng.permutation(3) if k < 5 else np.array([2, 0])  # frame 5: car b is missed
        out = tracker.step(frame([rows[i] for i in order], ["car"] * len(order),
                                 [scores[i] for i in order], k * FRAME_NS), k * FRAME_NS)  # fmt: skip
        for t in range(len(out)):
            d = int(out.detection_index[t])
            if not out.matched[t]:
                assert d == -1
                continue
            source = int(order[d])
            assert source != 2
            expected = rows[source][:2]
            assert np.hypot(*(out.boxes_world[t, :2] - expected)) < 0.3
    assert sorted(out.detection_index.tolist()) == [-1, 1]


def test_step_matches_gives_each_detection_the_track_step_would_show_it_in() -> None:
    """`step_matches` (offline tracking's passes) skips building the output boxes; each detection's
    track id must be what `step`'s output says (its `detection_index`), with tentative tracks shown."""
    rng = np.random.default_rng(5)
    config = TrackerConfig(output_tentative=True)
    full, light = Tracker(config), Tracker(config)
    for k in range(60):
        t = k * FRAME_NS
        dets, cats, scores = [], [], []
        for j in range(8):  # cars along lanes, each missed now and then
            if rng.random() < 0.8:
                dets.append(noisy(rng, car(-30.0 + 8.0 * k * 0.1 + 3.0 * j, 4.0 * j - 14.0, 0.0)))
                cats.append("car" if j % 3 else "pedestrian")
                scores.append(float(rng.uniform(0.2, 0.95)))
        for _ in range(int(rng.integers(0, 4))):  # clutter, some of it weak
            dets.append(noisy(rng, car(*rng.uniform(-40.0, 40.0, 2), float(rng.uniform(-3.0, 3.0)))))
            cats.append("car")
            scores.append(float(rng.uniform(0.05, 0.9)))
        boxes = frame(dets, cats, scores, t)
        out = full.step(boxes, t)
        expected = np.full(len(boxes), -1, np.int64)
        shown = np.flatnonzero(out.detection_index >= 0)
        expected[out.detection_index[shown]] = out.track_id[shown]
        assert light.step_matches(boxes, t).tolist() == expected.tolist(), k
    assert (expected >= 0).sum() > 3  # tracks are being followed at the end


def _pass_parked_row(tracker: Tracker, rng: np.random.Generator) -> dict[int, set[int]]:
    """The sensor drives at 8 m/s past five cars parked nose to tail 5.6 m apart (1.1 m gaps); each is
    detected for 10 frames, then none is for 2 frames before the next one is (the last hidden, the next
    not yet seen). Per output track id: the cars (indices) its boxes lay on."""
    cars_x = 10.0 + 5.6 * np.arange(5)
    on: dict[int, set[int]] = {}
    for k in range(60):
        t = k * FRAME_NS
        pose = np.eye(4)
        pose[0, 3] = 0.8 * k  # sensor position in the world
        seen = [i for i in range(5) if 12 * i <= k < 12 * i + 10]
        dets = [noisy(rng, car(cars_x[i] - pose[0, 3], 4.0, 0.0), sigma=0.1) for i in seen]
        out = tracker.step(frame(dets, ["car"] * len(dets), [0.9] * len(dets), t), t, pose)
        for tid, x in zip(out.track_id.tolist(), out.boxes_world[:, 0].tolist(), strict=True):
            on.setdefault(tid, set()).add(int(np.argmin(np.abs(cars_x - x))))
    return on


def test_coasting_track_of_a_parked_car_does_not_slide_onto_the_next_one() -> None:
    # the next car's box touches the lost track's (GIoU -0.11, inside the cost threshold 1.2) but lies
    # 5.6 m off a still track's prediction, dozens of its standard deviations
    on = _pass_parked_row(Tracker(), np.random.default_rng(5))
    assert all(len(cars) == 1 for cars in on.values()), on
    assert sorted(next(iter(c)) for c in on.values()) == [0, 1, 2, 3, 4]


def test_without_the_innovation_gate_the_coasting_track_slides_along_the_row() -> None:
    params = {c: replace(p, gate_sigma=0.0) for c, p in DEFAULT_PARAMS.items()}
    on = _pass_parked_row(Tracker(TrackerConfig(params=params)), np.random.default_rng(5))
    assert any(len(cars) > 1 for cars in on.values()), on
