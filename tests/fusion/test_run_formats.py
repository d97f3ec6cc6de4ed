"""`fusion run` end to end on simulated logs of every bag format, and the dataset read back by
plain pyarrow, pandas, DuckDB and Dask (no fusion code): the same rows everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from exporters.reader import open_dataset
from fusion.cli import main
from fusion.simulate import simulate_log
from tests.bagutil import FORMATS, bag_path

COLUMNS = {  # the first few columns are the sort keys
    "labels": ["sequence_id", "frame_index", "track_id", "category", "score", "x", "y", "yaw", "origin"],
    "frames": ["sequence_id", "frame_index", "timestamp_ns", "num_points", "deskewed"],
    "points": ["frame_index", "x", "y", "z", "intensity", "time_offset_ns"],  # no sequence_id column
}


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 0.8-s simulated drives (same seed: the same sensor data) as ros1, sqlite3 and mcap,
    pre-labelled by one `fusion run` in several time chunks each."""
    tmp = tmp_path_factory.mktemp("formats")
    logs = []
    for fmt in FORMATS:
        log = bag_path(tmp, fmt, f"drive_{fmt}")
        simulate_log(log, fmt=fmt, seconds=0.8, seed=3, lidar_columns=256, image_width=160, image_height=100)
        logs.append(str(log))
    out = tmp / "out"
    args = ["run", *logs, "--out", str(out), "--workers", "2", "--chunk-s", "0.3", "--quiet"]
    assert main(args) == 0
    return out


def test_run_on_every_format_passes_validate(run_out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(run_out)]) == 0
    ds = open_dataset(run_out)
    assert ds.sequence_ids == [f"drive_{fmt}" for fmt in FORMATS]
    for sid in ds.sequence_ids:
        seq = ds.sequence(sid)
        assert seq.num_frames == 8
        assert seq.config["topics"]["lidar"] == "/lidar/points"  # auto-detected
        assert len(seq.config["topics"]["cameras"]) == 3 == len(seq.image_cameras())
    assert not (run_out / ".parts").exists()


def test_every_format_gives_the_same_labels(run_out: Path) -> None:
    tables = [
        pd.read_parquet(run_out / "labels" / f"drive_{fmt}.parquet").drop(columns="sequence_id")
        for fmt in FORMATS
    ]
    assert len(tables[0]) > 0
    for other in tables[1:]:
        pd.testing.assert_frame_equal(tables[0], other)


def _sorted(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    columns = COLUMNS[kind]
    return df[columns].sort_values(columns, kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("kind", ["labels", "frames", "points"])
def test_pyarrow_pandas_duckdb_and_dask_read_the_same_rows(run_out: Path, kind: str) -> None:
    import dask.dataframe as dd
    import duckdb

    folder = run_out / kind
    by_pyarrow = pq.read_table(folder).to_pandas()
    by_pandas = pd.read_parquet(folder)
    by_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{folder}/*.parquet')").df()
    by_dask = dd.read_parquet(str(folder)).compute()
    expected = _sorted(by_pyarrow, kind)
    assert len(expected) > 0
    for other in (by_pandas, by_duckdb, by_dask):
        got = _sorted(other, kind)
        assert len(got) == len(expected)
        for column in expected.columns:
            if pd.api.types.is_numeric_dtype(expected[column]) and not pd.api.types.is_bool_dtype(
                expected[column]
            ):
                want = expected[column].to_numpy(np.float64)
                np.testing.assert_array_equal(got[column].to_numpy(np.float64), want, err_msg=column)
            else:
                assert got[column].astype(str).tolist() == expected[column].astype(str).tolist(), column
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet"))
    assert len(expected) == rows
