"""`fusion run` on Dask: a local cluster by default, or an existing scheduler by address."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exporters.reader import open_dataset
from fusion.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"


def test_run_two_logs_on_a_local_cluster_writes_one_valid_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second = tmp_path / "logs" / "sim_drive.mcap"  # same stem: the ids must not collide
    second.parent.mkdir()
    shutil.copy(SAMPLE, second)
    out = tmp_path / "out"
    assert (
        main(["run", str(SAMPLE), str(second), "--out", str(out), "--workers", "2", "--quiet", "--no-images"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "2 log(s), 60 sweeps" in printed
    assert main(["validate", str(out)]) == 0
    ds = open_dataset(out)
    assert len(ds.sequence_ids) == 2 and ds.sequence_ids[0] != ds.sequence_ids[1]
    a, b = (ds.sequence(s).labels(as_pandas=True) for s in ds.sequence_ids)
    assert len(a) == len(b) > 0  # the same log gives the same labels on any worker
    assert all(ds.sequence(s).has_flags for s in ds.sequence_ids)  # each worker wrote its review queue
    assert ds.pipeline["detector"] == "geometric"


def test_run_uses_an_existing_scheduler(tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        out = tmp_path / "out"
        args = ["run", str(SAMPLE), "--out", str(out), "--scheduler", cluster.scheduler_address, "--quiet"]
        assert main([*args, "--no-points", "--no-images"]) == 0
    assert open_dataset(out).sequence_ids == ["sim_drive"]


def test_run_leaves_no_dataset_when_a_log_is_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.bag"
    bad.write_bytes(b"not a bag at all")
    out = tmp_path / "out"
    assert main(["run", str(SAMPLE), str(bad), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fusion: error: ") and "broken.bag" in err[0]
    assert [p for p in out.rglob("*") if p.is_file()] == []  # not even the good log's files
