"""`fusion run` on Dask: a local cluster by default, or an existing scheduler by address."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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
    assert "2 log(s) done, 60 sweeps" in printed and f"-> dataset {out}" in printed
    assert printed.count(": 30 sweeps, ") == 2 and " tracks (" in printed and " warning(s), " in printed
    assert f'pandas.read_parquet("{out / "labels"}")' in printed
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


def test_a_corrupt_log_is_reported_and_skipped_while_the_others_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    bad = tmp_path / "broken.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 40)  # the magic, then garbage
    out = tmp_path / "out"
    args = ["run", str(bad), str(SAMPLE), "--out", str(out), "--workers", "2", "--quiet", "--no-images"]
    assert main(args) == 1  # some logs failed, the others are written
    captured = capsys.readouterr()
    failed = [line for line in captured.out.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 1 and failed[0].startswith(f"FAILED {bad}: ") and "broken.mcap" in failed[0]
    assert "1 log(s) done, 1 FAILED, 30 sweeps" in captured.out
    assert "1 of 2 log(s) failed" in captured.err
    assert main(["validate", str(out)]) == 0
    assert json.loads((out / "dataset.json").read_text())["sequences"] == ["sim_drive"]
    assert open_dataset(out).sequence_ids == ["sim_drive"]
    assert list(out.rglob("*broken*")) == [] and not (out / ".parts").exists()


def test_run_writes_no_dataset_when_every_log_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.bag"
    bad.write_bytes(b"not a bag at all")
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out), "--workers", "1", "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert f"FAILED {bad}: " in printed and "no dataset was written" in printed
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_detect_skips_a_corrupt_log_and_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.bag"
    bad.write_bytes(b"not a bag at all")
    out = tmp_path / "out"
    assert main(["detect", str(SAMPLE), str(bad), "--out", str(out), "--quiet", "--no-images"]) == 1
    printed = capsys.readouterr().out
    assert f"FAILED {bad}: " in printed and "1 log(s) done, 1 FAILED" in printed
    assert main(["validate", str(out)]) == 0
    assert open_dataset(out).sequence_ids == ["sim_drive"]
    assert list(out.rglob("*broken*")) == []


def test_a_rerun_does_only_the_missing_logs_and_overwrite_redoes_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from exporters.validate import validate_dataset

    second = tmp_path / "second.mcap"
    second.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 40)  # corrupt on the first run
    out = tmp_path / "out"
    args = ["run", str(SAMPLE), str(second), "--out", str(out), "--workers", "1", "--quiet"]
    args += ["--no-images", "--no-points"]
    assert main(args) == 1
    first = (out / "labels" / "sim_drive.parquet").stat()
    listed = lambda: json.loads((out / "dataset.json").read_text())["sequences"]  # noqa: E731
    assert listed() == ["sim_drive"]

    shutil.copy(SAMPLE, second)  # the log is fixed: the same command adds it, the other is skipped
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 sequence(s) already complete" in printed and "skipped: sim_drive" in printed
    assert "1 log(s) done, 30 sweeps" in printed
    assert (out / "labels" / "sim_drive.parquet").stat().st_mtime_ns == first.st_mtime_ns  # untouched
    assert listed() == ["sim_drive", "second"] and validate_dataset(out) == []

    assert main([*args, "--no-track"]) == 2  # another configuration: refused, nothing touched
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "another configuration (config.tracker.enabled" in err[0]
        and "--overwrite" in err[0]
    )
    assert listed() == ["sim_drive", "second"] and validate_dataset(out) == []

    (out / "frames" / "second.parquet").unlink()  # listed but incomplete: done again
    assert main(args) == 0
    assert "skipped: sim_drive" in capsys.readouterr().out
    assert listed() == ["sim_drive", "second"] and validate_dataset(out) == []

    assert main([*args, "--no-track", "--overwrite"]) == 0  # everything redone with the new config
    assert "skipped" not in capsys.readouterr().out
    assert (out / "labels" / "sim_drive.parquet").stat().st_mtime_ns != first.st_mtime_ns
    assert listed() == ["sim_drive", "second"] and validate_dataset(out) == []
    assert open_dataset(out).pipeline["tracker"] == "none"


def test_an_interrupted_rerun_keeps_the_dataset_it_was_adding_to(tmp_path: Path) -> None:
    import json

    from exporters.validate import validate_dataset
    from fusion.config import RunConfig
    from fusion.pipeline import run

    out = tmp_path / "out"
    config = RunConfig().with_overrides(points=False, images=False)
    assert main(["detect", str(SAMPLE), "--out", str(out), "--quiet", "--no-points", "--no-images"]) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    second = tmp_path / "second.mcap"
    shutil.copy(SAMPLE, second)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C once the new log is finished, before dataset.json

    skipped: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run([SAMPLE, second], out, config=config, workers=1, on_done=interrupt, on_skip=skipped.append)
    assert skipped == ["sim_drive"]
    assert list(out.rglob("*second*")) == []  # the interrupted run's own sequence is gone
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before  # the old ones untouched
    assert json.loads((out / "dataset.json").read_text())["sequences"] == ["sim_drive"]
    assert validate_dataset(out) == []


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("run", "detect"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "exit status: 0" in text and "1 some logs failed" in text and "2 bad usage" in text


def test_a_worker_killed_mid_chunk_is_replaced_and_the_dataset_is_complete(tmp_path: Path) -> None:
    import os
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq
    from dask.distributed import Client, LocalCluster

    from exporters.validate import validate_dataset
    from fusion.config import RunConfig
    from fusion.pipeline import Progress, run

    out = tmp_path / "out"
    config = RunConfig().with_overrides(chunk_s=0.5)  # the 3-s sample in 6 chunk tasks
    started = threading.Event()
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.done >= 2:
            started.set()

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        pids = client.run(os.getpid)
        job = pool.submit(
            run, [SAMPLE], out, config=config, scheduler=cluster.scheduler_address, progress=progress
        )
        assert started.wait(180)
        busy = {w: keys for w, keys in client.processing().items() if any("chunk-" in str(k) for k in keys)}
        victim = next(iter(busy))
        os.kill(pids[victim], signal.SIGKILL)  # a real kill, mid-chunk
        summaries = job.result(timeout=300)
        assert victim not in client.scheduler_info()["workers"]
    assert summaries[0].sweeps == 30
    assert (seen[-1].done, seen[-1].total) == (30, 30)  # the killed chunk's sweeps counted once
    assert validate_dataset(out) == []
    frames = pq.read_table(out / "frames" / "sim_drive.parquet")
    assert frames.column("frame_index").to_pylist() == list(range(30))
    assert len(set(frames.column("timestamp_ns").to_pylist())) == 30  # no sweep twice, none lost
    assert pq.ParquetFile(out / "points" / "sim_drive.parquet").num_row_groups == 30
    assert not (out / ".parts").exists()
    assert [p.name for p in out.rglob(".*")] == []  # no temporary file is left


def test_progress_counts_each_sweep_once_when_a_chunk_is_retried() -> None:
    from fusion.pipeline import Progress, _ProgressTracker

    seen: list[Progress] = []
    tracker = _ProgressTracker(2, seen.append)
    for sid, chunk, done in [("a", 0, 1), ("a", 0, 2), ("b", 0, 1), ("a", 0, 1), ("a", 0, 2), ("a", 0, 3)]:
        tracker.on_event((0.0, (sid, chunk, done)))  # ("a", 0) was retried after 2 sweeps
    assert [p.done for p in seen] == [1, 2, 3, 4]


def test_progress_events_are_throttled_and_the_last_count_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    import fusion.pipeline as fp

    clock = [100.0]
    monkeypatch.setattr(fp.time, "monotonic", lambda: clock[0])
    sent: list[int] = []
    report = fp._Throttled(sent.append)
    for done in range(1, 8):  # 7 sweeps 0.1 s apart
        report(done)
        clock[0] += 0.1
    report.flush()
    report.flush()  # nothing new: nothing sent
    assert sent == [1, 4, 7]  # the first at once, then one per PROGRESS_EVERY_S (0.25 s), the last on flush


def _worker_address(value: int) -> tuple[str, int]:
    from distributed import get_worker

    return get_worker().address, value


def _submit_beside(value: int) -> tuple[str, tuple[str, int] | None]:
    """A task that, like the finishing task, leaves the pool and hands work to an idle other worker."""
    from distributed import get_client, get_worker, secede

    from fusion.pipeline import _OtherWorkers

    secede()
    beside = _OtherWorkers.of(get_client())
    return get_worker().address, None if beside is None else beside.submit(_worker_address, value).result()


def test_on_two_workers_the_backward_pass_runs_beside_and_labels_equal_one_pass(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from dask.distributed import Client, LocalCluster

    from fusion.config import RunConfig
    from fusion.pipeline import run
    from fusion.prelabel import prelabel_logs

    config = RunConfig().with_overrides(chunk_s=1.0)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        here, beside = client.submit(_submit_beside, 7, pure=False).result()
        assert beside is not None and beside[0] != here and beside[1] == 7  # ran on the other worker
        run([SAMPLE], tmp_path / "dask", config=config, scheduler=cluster.scheduler_address)
    prelabel_logs([SAMPLE], tmp_path / "one", detector=config.detector.build(), config=config)
    for kind in ("labels", "frames"):
        a, b = (pq.read_table(tmp_path / d / kind / "sim_drive.parquet") for d in ("dask", "one"))
        assert a.equals(b), kind


def _worker_settings(dask_worker: object) -> tuple[bool, str | None, float]:
    import os

    callbacks = getattr(dask_worker, "periodic_callbacks", {})
    return "profile" in callbacks, os.environ.get("MALLOC_TRIM_THRESHOLD_"), callbacks["tick"].callback_time


def _tick_ms(dask_scheduler: Any) -> float:
    return float(dask_scheduler.periodic_callbacks["tick"].callback_time)


def test_local_workers_run_without_the_profiler_dasks_malloc_trim_threshold_or_busy_timers() -> None:
    """Dask's statistical profiler keeps a call tree per second of a worker's life (a 5-minute log
    left 14,000 tree nodes); Dask's MALLOC_TRIM_THRESHOLD_ doubles the CPU time per sweep; its 20-ms
    event-loop check woke scheduler and workers 50 times a second (13 % of a core for an idle
    two-worker cluster)."""
    from dask.distributed import Client

    from fusion.pipeline import local_cluster

    with local_cluster(1) as cluster, Client(cluster) as client:
        assert list(client.run(_worker_settings).values()) == [(False, None, 1000)]
        assert client.run_on_scheduler(_tick_ms) == 1000


def _readme_dask_yaml() -> str:
    """The Dask configuration README.md gives for a real cluster (its `fusion.yaml` heredoc)."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("cat > ~/.config/dask/fusion.yaml <<'YAML'")
    )
    end = lines.index("YAML", start)
    return "\n".join(lines[start + 1 : end]) + "\n"


def test_run_on_a_cluster_started_as_the_readme_says(tmp_path: Path) -> None:
    """`dask scheduler` and `dask worker` processes given README.md's configuration, then
    `fusion run --scheduler`: the documented path for a real cluster, the settings included."""
    import os
    import subprocess
    import sys
    import time

    from dask.distributed import Client

    from exporters.validate import validate_dataset

    config_dir = tmp_path / "dask-config"
    config_dir.mkdir()
    (config_dir / "fusion.yaml").write_text(_readme_dask_yaml())
    env = {**os.environ, "DASK_CONFIG": str(config_dir), "DASK_LOGGING__DISTRIBUTED": "error"}
    env["PYTHONPATH"] = str(REPO)  # for this module's checks run on the workers (fusion is installed)
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    dask_cli = Path(sys.executable).parent / "dask"
    address_file = tmp_path / "scheduler.json"
    common = ["--dashboard-address", ":0"]
    scheduler = subprocess.Popen(
        [dask_cli, "scheduler", "--port", "0", "--scheduler-file", address_file, *common], env=env, cwd=REPO
    )
    workers = None
    try:
        deadline = time.monotonic() + 60
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = subprocess.Popen(
            [
                dask_cli,
                "worker",
                "--scheduler-file",
                address_file,
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                *common,
            ],
            env=env,
            cwd=REPO,
        )
        with Client(scheduler_file=str(address_file), timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
            assert set(client.run(_worker_settings).values()) == {(False, None, 1000)}
            assert client.run_on_scheduler(_tick_ms) == 1000
            address = client.scheduler.address
        out = tmp_path / "out"
        assert (
            main(["run", str(SAMPLE), "--out", str(out), "--scheduler", address, "--quiet", "--no-images"])
            == 0
        )
    finally:
        for proc in (workers, scheduler):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    assert validate_dataset(out) == []
    assert open_dataset(out).sequence("sim_drive").num_frames == 30
