"""Ground truth put on the predictions' frames by timestamp (Argoverse 2 annotations against a bag).

`evaluate` pairs boxes by `(sequence_id, frame_index)`. An AV2 `annotations.feather` numbers the
frames of the whole log (`frame_index` = rank of the LiDAR timestamp among the annotated ones) and
names the sequence after the log folder, while a dataset made from a bag of some of that log's
sweeps numbers its own sweeps from 0 under the bag's stem. Both carry the sweep's real
`timestamp_ns`, so `align_truth_by_timestamp` moves each annotated sweep onto the predicted frame
with the same stamp, and leaves out annotated sweeps the predictions do not have (they were not in
the bag: counting their boxes as missed would score the bag's length, not the detector).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusion.evaluation.errors import EvaluationError


def prediction_frames(path: Path | str, labels: pa.Table) -> pa.Table:
    """`sequence_id, frame_index, timestamp_ns` of every predicted sweep.

    From a dataset folder's `frames/*.parquet` (every sweep, boxes or none); for a labels file, from
    its rows (a sweep without a box is then unknown, and its annotated boxes are left out too).
    """
    folder = Path(path) / "frames"
    if folder.is_dir():
        files = sorted(f for f in folder.glob("*.parquet") if f.is_file())
        if files:
            tables = [
                pq.read_table(
                    f, columns=["sequence_id", "frame_index", "timestamp_ns"], page_checksum_verification=True
                )
                for f in files
            ]
            return pa.concat_tables(tables)
    return labels.select(["sequence_id", "frame_index", "timestamp_ns"])


def align_truth_by_timestamp(truth: pa.Table, frames: pa.Table) -> tuple[pa.Table, int, int]:
    """`truth` rows whose `timestamp_ns` is a predicted sweep's, moved onto that sweep's
    `(sequence_id, frame_index)`; and (annotated sweeps kept, annotated sweeps in all).

    Raises EvaluationError when a stamp names two predicted sweeps (two sequences of one log) or
    when no annotated sweep is among the predictions.
    """
    pred_stamp = np.asarray(frames.column("timestamp_ns").to_numpy(), dtype=np.int64)
    pred_seq = np.asarray(frames.column("sequence_id").to_pylist(), dtype=object)
    pred_index = np.asarray(frames.column("frame_index").to_numpy(), dtype=np.int64)
    keys: dict[int, tuple[str, int]] = {}
    for stamp, seq, index in zip(pred_stamp.tolist(), pred_seq.tolist(), pred_index.tolist(), strict=True):
        if keys.setdefault(stamp, (seq, index)) != (seq, index):
            raise EvaluationError(
                f"two predicted sweeps are stamped {stamp} ns ({keys[stamp]} and {(seq, index)}); evaluate "
                "one sequence of the log at a time"
            )
    truth_stamp = np.asarray(truth.column("timestamp_ns").to_numpy(), dtype=np.int64)
    annotated = np.unique(truth_stamp)
    keep = np.isin(truth_stamp, np.fromiter(keys, dtype=np.int64, count=len(keys)))
    kept_sweeps = int(np.isin(annotated, truth_stamp[keep]).sum())
    if not keep.any():
        raise EvaluationError(
            f"none of the {len(annotated)} annotated sweeps has the timestamp of a predicted sweep; "
            "give the annotations of the log the predictions were made from"
        )
    rows = truth.filter(pa.array(keep))
    stamps = rows.column("timestamp_ns").to_numpy()
    seq = pa.array([keys[int(s)][0] for s in stamps], type=pa.string())
    index = pa.array([keys[int(s)][1] for s in stamps], type=rows.schema.field("frame_index").type)
    for name, values in (("sequence_id", seq), ("frame_index", index)):
        where = rows.schema.get_field_index(name)
        rows = rows.set_column(where, rows.schema.field(name), values.cast(rows.schema.field(name).type))
    return rows, kept_sweeps, len(annotated)
