"""fusion.evaluation.align: ground truth of a whole log put on the predicted sweeps by timestamp."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from exporters.labels import labels_table
from fusion.evaluation import EvaluationError
from fusion.evaluation.align import align_truth_by_timestamp


def _truth(stamps: list[int]) -> pa.Table:
    """One car per annotated sweep, frame_index = the sweep's rank in the log (AV2's numbering)."""
    n = len(stamps)
    boxes = np.tile([10.0, 0.0, 0.8, 4.5, 1.9, 1.6, 0.0], (n, 1))
    boxes[:, 1] = np.arange(n)  # y tells the rows apart
    return labels_table(
        sequence_id="log-id",
        frame_index=np.arange(n),
        timestamp_ns=np.asarray(stamps, dtype=np.int64),
        track_id=np.zeros(n, dtype=np.int64),
        category=np.full(n, "car"),
        score=np.ones(n),
        boxes=boxes,
        num_points=np.full(n, 50),
        origin="detected",
    )


def test_annotated_sweeps_move_onto_the_predicted_sweeps_and_the_others_are_left_out() -> None:
    truth = _truth([100, 200, 300, 400])
    frames = pa.table(
        {
            "sequence_id": ["bag", "bag"],
            "frame_index": pa.array([0, 1], pa.int32()),
            "timestamp_ns": [300, 400],
        }
    )
    aligned, kept, total = align_truth_by_timestamp(truth, frames)
    assert (kept, total) == (2, 4)
    assert aligned.column("sequence_id").to_pylist() == ["bag", "bag"]
    assert aligned.column("frame_index").to_pylist() == [0, 1]
    assert aligned.column("y").to_pylist() == [2.0, 3.0]  # the rows of stamps 300 and 400
    assert aligned.schema == truth.schema


def test_no_shared_stamp_or_one_stamp_twice_is_refused() -> None:
    truth = _truth([100, 200])
    with pytest.raises(EvaluationError, match="none of the 2 annotated sweeps has the timestamp"):
        align_truth_by_timestamp(
            truth, pa.table({"sequence_id": ["b"], "frame_index": [0], "timestamp_ns": [5]})
        )
    twice = pa.table({"sequence_id": ["a", "b"], "frame_index": [0, 0], "timestamp_ns": [100, 100]})
    with pytest.raises(EvaluationError, match="two predicted sweeps are stamped 100 ns"):
        align_truth_by_timestamp(truth, twice)
