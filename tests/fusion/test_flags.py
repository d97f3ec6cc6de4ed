"""The review queue (`fusion.flags`): injected defects in the simulator's exact tracks are flagged
with the right flag, where they are; the clean tracks are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exporters.schema import FLAGS
from fusion.evaluation import load_labels
from fusion.flags import FlagConfig, FlagError, format_queue, queue_to_json, review_flags

REPO = Path(__file__).resolve().parents[2]
TRUTH = REPO / "data_samples" / "sim_drive.labels.parquet"
DEFECTS = ("impossible_motion", "id_switch", "implausible_size", "overlap")


@pytest.fixture(scope="module")
def truth() -> pa.Table:
    return load_labels(TRUTH)


def _flags(labels: pa.Table, config: FlagConfig | None = None) -> list[tuple[int | None, int, str]]:
    table = review_flags(labels, config)
    assert table.schema.equals(FLAGS.remove_metadata())
    return [(r["frame_index"], r["track_id"], r["flag"]) for r in table.to_pylist()]


def _edit(labels: pa.Table, mask: np.ndarray, **changes: np.ndarray) -> pa.Table:
    """`labels` with the rows in `mask` given new column values."""
    for name, values in changes.items():
        column = labels.column(name).to_numpy().copy()
        column[mask] = values
        index = labels.schema.get_field_index(name)
        field = labels.schema.field(index)
        labels = labels.set_column(index, field, pa.array(column, type=field.type))
    return labels


def _rows(labels: pa.Table, track: int, frame: int | None = None) -> np.ndarray:
    mask = labels.column("track_id").to_numpy() == track
    if frame is not None:
        mask &= labels.column("frame_index").to_numpy() == frame
    return mask


def _moving_car(labels: pa.Table) -> int:
    """A car of the sample seen in all 30 frames and moving (> 3 m/s)."""
    df = labels.to_pandas()
    df["speed"] = np.hypot(df.velocity_x, df.velocity_y)
    cars = df[df.category == "car"].groupby("track_id").agg(n=("frame_index", "size"), speed=("speed", "min"))
    return int(cars[(cars.n == 30) & (cars.speed > 3.0)].index[0])


def test_clean_ground_truth_tracks_raise_no_defect_flag(truth: pa.Table) -> None:
    flagged = {flag for _, _, flag in _flags(truth)}
    assert not flagged & set(DEFECTS)


def test_a_box_with_its_size_doubled_is_flagged_implausible_size(truth: pa.Table) -> None:
    track = _moving_car(truth)
    mask = _rows(truth, track, 12)
    doubled = _edit(
        truth,
        mask,
        **{name: truth.column(name).to_numpy()[mask] * 2 for name in ("length", "width", "height")},
    )
    defects = [f for f in _flags(doubled) if f[2] in DEFECTS]
    assert defects == [(12, track, "implausible_size")]


def test_a_track_teleported_10_m_for_one_frame_is_flagged_impossible_motion(truth: pa.Table) -> None:
    track = _moving_car(truth)
    mask = _rows(truth, track, 15)
    moved = _edit(
        truth,
        mask,
        x=truth.column("x").to_numpy()[mask] + 10.0,
        world_x=truth.column("world_x").to_numpy()[mask] + 10.0,
    )
    defects = [f for f in _flags(moved) if f[2] in DEFECTS]
    assert defects == [(15, track, "impossible_motion")]


def test_a_heading_flipped_for_one_frame_is_flagged_impossible_motion(truth: pa.Table) -> None:
    track = _moving_car(truth)
    mask = _rows(truth, track, 8)
    flipped = _edit(
        truth,
        mask,
        yaw=truth.column("yaw").to_numpy()[mask] + np.pi,
        world_yaw=truth.column("world_yaw").to_numpy()[mask] + np.pi,
    )
    flags = review_flags(flipped).to_pylist()
    defects = [(f["frame_index"], f["track_id"], f["flag"]) for f in flags if f["flag"] in DEFECTS]
    assert defects == [(8, track, "impossible_motion")]
    assert "180 deg and back" in next(f["detail"] for f in flags if f["flag"] == "impossible_motion")


def test_an_id_swap_is_flagged_id_switch_on_both_tracks(truth: pa.Table) -> None:
    df = truth.to_pandas()
    at = df[df.frame_index == 10].set_index("track_id")
    a = _moving_car(truth)
    others = at[(at.index != a) & (at.category == "car")]
    gap = np.hypot(others.world_x - at.loc[a, "world_x"], others.world_y - at.loc[a, "world_y"])
    b = int(gap.idxmin())  # the nearest other car: a swap a tracker could make
    assert gap.min() < 30.0
    from_10 = truth.column("frame_index").to_numpy() >= 10
    ids = truth.column("track_id").to_numpy()
    swapped_ids = np.where(from_10 & (ids == a), b, np.where(from_10 & (ids == b), a, ids))
    both_seen = set(df[df.track_id == b].frame_index) >= {9, 10, 11}
    assert both_seen
    swapped = _edit(truth, np.ones(truth.num_rows, dtype=bool), track_id=swapped_ids)
    defects = sorted(f for f in _flags(swapped) if f[2] in DEFECTS)
    assert defects == sorted([(10, a, "id_switch"), (10, b, "id_switch")])


def test_a_duplicate_box_of_another_track_is_flagged_overlap_on_the_weaker_one(truth: pa.Table) -> None:
    track = _moving_car(truth)
    mask = _rows(truth, track, 5)
    copy = truth.filter(pa.array(mask))
    copy = _edit(copy, np.ones(1, bool), track_id=np.array([9999]), score=np.array([0.3], np.float32))
    copy = _edit(copy, np.ones(1, bool), x=copy.column("x").to_numpy() + 0.3)
    flags = _flags(pa.concat_tables([truth, copy]))
    assert (5, 9999, "overlap") in flags
    assert (5, track, "overlap") not in flags
    assert (None, 9999, "low_confidence") in flags and (
        None,
        9999,
        "short_track",
    ) in flags  # score 0.3, 1 frame


def test_interpolated_stretches_of_a_moving_track_are_flagged(truth: pa.Table) -> None:
    track = _moving_car(truth)
    frames = truth.column("frame_index").to_numpy()
    mask = _rows(truth, track) & (frames >= 20) & (frames <= 22)
    filled = _edit(truth, mask, origin=np.array(["interpolated"] * 3, dtype=object))
    flags = _flags(filled)
    assert [f for f in flags if f[2] == "interpolated"] == [
        (20, track, "interpolated"),
        (21, track, "interpolated"),
        (22, track, "interpolated"),
    ]
    short = _edit(truth, mask & (frames == 21), origin=np.array(["interpolated"], dtype=object))
    assert not [
        f for f in _flags(short) if f[2] == "interpolated"
    ]  # one frame: below min_interpolated_frames


def test_few_points_flags_detected_boxes_below_the_category_minimum(truth: pa.Table) -> None:
    flags = review_flags(truth, FlagConfig(enabled=("few_points",)))
    points = truth.column("num_points").to_numpy()
    categories = np.asarray(truth.column("category").to_pylist())
    need = np.where(np.isin(categories, ["car", "truck", "bus"]), 3, 2)
    per_box = flags.filter(pc.is_valid(flags.column("frame_index"))).num_rows
    whole_track_boxes = sum(
        int(np.count_nonzero(truth.column("track_id").to_numpy() == r["track_id"]))
        for r in flags.to_pylist()
        if r["frame_index"] is None
    )
    assert per_box + whole_track_boxes == int(np.count_nonzero(points < need))


def test_queue_is_ranked_by_severity_and_prints(truth: pa.Table) -> None:
    track = _moving_car(truth)
    mask = _rows(truth, track, 15)
    moved = _edit(truth, mask, world_x=truth.column("world_x").to_numpy()[mask] + 10.0)
    flags = review_flags(moved)
    severity = flags.column("severity").to_numpy()
    assert (np.diff(severity) <= 0).all() and ((severity >= 0) & (severity <= 1)).all()
    assert flags.column("flag")[0].as_py() == "impossible_motion"
    text = format_queue(flags, top=3)
    assert "impossible_motion" in text.splitlines()[2]
    assert f"... {flags.num_rows - 3} more" in text
    assert queue_to_json(flags, 2)[0]["flag"] == "impossible_motion"


def test_untracked_labels_get_only_per_box_flags(truth: pa.Table) -> None:
    ids = np.arange(truth.num_rows)
    untracked = _edit(truth, np.ones(truth.num_rows, bool), track_id=ids)
    flags = review_flags(untracked, tracked=False)
    assert set(flags.column("flag").to_pylist()) <= {
        "few_points",
        "implausible_size",
        "overlap",
        "low_confidence",
    }
    assert flags.column("frame_index").null_count == 0


def test_bad_config_and_missing_columns_are_one_line_errors(truth: pa.Table) -> None:
    with pytest.raises(FlagError, match="unknown flags"):
        FlagConfig(enabled=("teleport",))
    with pytest.raises(FlagError, match="unknown key"):
        FlagConfig.from_json({"low_scor": 0.3})
    config = FlagConfig.from_json({"limits": {"car": {"max_speed_mps": 30}}, "low_score": 0.3})
    assert config.limits["car"].max_speed_mps == 30.0 and config.limits["car"].jump_m == 1.0
    assert FlagConfig.from_json(FlagConfig().to_json()) == FlagConfig()
    with pytest.raises(FlagError, match="'score' is missing"):
        review_flags(truth.drop_columns(["score"]))


def test_flags_computed_in_small_blocks_equal_the_whole_log_at_once(
    truth: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fusion.flags

    track = _moving_car(truth)
    copy = truth.filter(pa.array(_rows(truth, track, 5)))
    copy = _edit(copy, np.ones(1, bool), track_id=np.array([9999]), score=np.array([0.3], np.float32))
    jumped = _edit(
        truth,
        _rows(truth, track, 12),
        world_x=truth.column("world_x").to_numpy()[_rows(truth, track, 12)] + 10.0,
    )
    grown = _rows(jumped, track, 20)
    jumped = _edit(jumped, grown, length=jumped.column("length").to_numpy()[grown] * 2.0)
    labels = pa.concat_tables([jumped, copy])
    whole = review_flags(labels)
    assert {"overlap", "impossible_motion", "implausible_size"} <= set(whole.column("flag").to_pylist())
    monkeypatch.setattr(fusion.flags, "MEDIAN_BLOCK", 7)
    monkeypatch.setattr(fusion.flags, "OVERLAP_FRAMES", 3)
    monkeypatch.setattr(fusion.flags, "SIZE_BLOCK", 7)  # several tracks' rows, and tracks longer than it
    assert review_flags(labels).equals(whole)


def test_flags_of_several_sequences_are_each_sequences_own_and_name_it(truth: pa.Table) -> None:
    """Labels of two sequences (given out of name order, with the same track ids) get each
    sequence's own flags, each naming its sequence."""
    track = _moving_car(truth)
    mask = _rows(truth, track, 12)
    doubled = _edit(
        truth,
        mask,
        **{name: truth.column(name).to_numpy()[mask] * 2 for name in ("length", "width", "height")},
    )
    index = truth.schema.get_field_index("sequence_id")
    renamed = truth.set_column(
        index, truth.schema.field(index), pa.array(["a_first"] * truth.num_rows, type=pa.string())
    )
    both = review_flags(pa.concat_tables([doubled, renamed]))
    own = {str(doubled.column("sequence_id")[0]): review_flags(doubled), "a_first": review_flags(renamed)}
    assert set(both.column("sequence_id").to_pylist()) == set(own)
    for sid, alone in own.items():
        mine = both.filter(pc.equal(both.column("sequence_id"), sid))
        assert sorted(mine.to_pylist(), key=str) == sorted(alone.to_pylist(), key=str)
    assert ("implausible_size", track) in {
        (r["flag"], r["track_id"]) for r in both.to_pylist() if r["sequence_id"] != "a_first"
    }
