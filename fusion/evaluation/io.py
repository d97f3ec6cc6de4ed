"""`load_labels(path)`: one labels table from a file, a folder of files, or a dataset folder."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from exporters.labels import read_labels
from exporters.reader import read_dataset_json
from exporters.schema import LABELS
from fusion.evaluation.errors import EvaluationError


def load_labels(path: Path | str) -> pa.Table:
    """Every labels row under `path`, concatenated, with the LABELS schema.

    `path` is one of
    - a labels Parquet file (`labels/<sequence_id>.parquet`, or a `<stem>.labels.parquet` that
      `fusion simulate` writes beside a log);
    - a dataset folder (it has a `labels/` subfolder): every `labels/*.parquet`, once its
      `dataset.json` says the dataset is complete and of a schema version this fusion reads;
    - a folder of labels files: every `*.parquet` directly in it.
    Files are read in sorted name order, each checked by `exporters.labels.read_labels` (schema
    version and columns). Raises EvaluationError when `path` does not exist or a folder holds no
    Parquet file, and ExportError for a file that is not a labels file or a dataset folder that is
    unfinished (no `dataset.json`) or of an unknown schema version.
    """
    p = Path(path)
    if p.is_file():
        return read_labels(p)
    if not p.is_dir():
        raise EvaluationError(f"{p}: no such file or folder; pass a labels .parquet file or a dataset folder")
    folder = p / "labels" if (p / "labels").is_dir() else p
    if folder != p:
        read_dataset_json(p)  # an unfinished run's labels, or a newer schema's, are refused here
    files = sorted(f for f in folder.glob("*.parquet") if f.is_file())
    if not files:
        raise EvaluationError(
            f"{folder}: holds no .parquet file; pass a dataset folder (with labels/) or a labels file"
        )
    tables = [read_labels(f) for f in files]
    return pa.concat_tables([t.cast(LABELS) for t in tables])
