"""Bad input to the `fusion` CLI: one line naming the file (or argument) and the fix, a non-zero exit,
nothing written. Found in a new user's pass over every documented command; none starts a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fusion.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("garbage", "missing port number"),
        ("http://host:8786", "unknown address scheme 'http'"),
        ("tcp://host:port", "invalid literal"),
    ],
)
def test_a_malformed_scheduler_address_is_one_line_before_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str, why: str
) -> None:
    """Before: a ValueError traceback from dask.distributed, after `--out` had been created."""
    out = tmp_path / "out"
    assert main(["run", str(SAMPLE), "--out", str(out), "--scheduler", address, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fusion: error: --scheduler {address}: ")
    assert why in err and "tcp://HOST:PORT" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", str(SAMPLE), "--out", ""],
        ["detect", str(SAMPLE), "--out", ""],
        ["export", str(SAMPLE), "--format", "kitti", "--dest", ""],
        ["inspect", ""],
    ],
)
def test_an_empty_path_is_refused_not_taken_as_the_current_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """Before: `fusion run LOG --out ''` (an unset shell variable) wrote the dataset into the current
    directory, among whatever was there."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is empty ('')" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("flag", "topic", "said"),
    [
        (
            "--lidar-topic",
            "/camera_front/image/compressed",
            "is a sensor_msgs/msg/CompressedImage, not a PointCloud2",
        ),
        ("--lidar-topic", "/nope", "no topic /nope"),
        ("--camera-topic", "/lidar/points", "no image topic /lidar/points"),
    ],
)
def test_a_topic_of_the_wrong_type_fails_the_log_naming_it_and_the_topics_to_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, topic: str, said: str
) -> None:
    """Before (an image topic as the LiDAR): each chunk's decoder failed with `decode_pointcloud2 reads
    sensor_msgs/msg/PointCloud2, got ...; pick the decoder that matches`, naming neither the log nor the
    flag to change."""
    out = tmp_path / "out"
    assert main(["detect", str(SAMPLE), "--out", str(out), flag, topic, "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "-> nothing written" in printed and "-> dataset" not in printed  # before: "-> dataset OUT"
    failed = [line for line in printed.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and f"{SAMPLE}: " in failed[0] and said in failed[0], failed
    assert flag in failed[0]
    assert (
        "/lidar/points" in failed[0]
        if flag == "--lidar-topic"
        else "/camera_front/image/compressed" in failed[0]
    )
    assert not (out / "dataset.json").exists()
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_json_piped_into_a_reader_that_stops_early_is_no_traceback() -> None:
    """`fusion inspect LOG --json | head -2`: before, a BrokenPipeError traceback on stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "fusion.cli", "inspect", str(SAMPLE), "--json"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader has gone before the report is written (`| head -0`)
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    assert "Traceback" not in err and err == "", err
    assert code == 141


def _fusion(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "fusion.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)


def test_a_damaged_log_is_reported_once_not_by_every_process_that_opens_it(tmp_path: Path) -> None:
    """Before: `fusion run --quiet` on a truncated log printed its warning to stderr once per task
    that opened it (the plan and every chunk: 7 copies at --chunk-s 0.5 on a 3-s log) and one line per
    hidden part file renumbered ("frame numbers moved by 5"), 27 lines, besides the summary's one."""
    cut = tmp_path / "cut.mcap"
    data = SAMPLE.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.5)])
    out = tmp_path / "out"
    done = _fusion(
        "run", str(cut), "--out", str(out), "--workers", "1", "--chunk-s", "0.5", "--quiet", "--no-images"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    warned = [line for line in done.stdout.splitlines() if "bag is damaged or truncated" in line]
    assert len(warned) == 1 and warned[0].startswith(f"  warning: {cut}: "), done.stdout
    inspected = _fusion("inspect", str(cut))
    assert inspected.returncode == 0 and inspected.stderr == ""
    assert sum("bag is damaged or truncated" in line for line in inspected.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["run", str(SAMPLE), "--out", "OUT", "--workers", "-1"],  # before: hung, waiting for workers
        ["run", str(SAMPLE), "--out", "OUT", "--workers", "0"],  # before: silently one per core
        ["render", "OUT", "--sequence", "s", "--frame", "1", "--out", "OUT/x.png", "--dpi", "0"],  # traceback
        ["render", "OUT", "--sequence", "s", "--frame", "1", "--out", "OUT/x.png", "--range", "-3"],
        ["qa", "--flags", "OUT", "--top", "-1"],
        ["detect", str(SAMPLE), "--out", "OUT", "--batch-size", "nan"],
    ],
)
def test_a_count_or_size_that_is_not_positive_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main([str(out) if a == "OUT" else a.replace("OUT", str(out)) for a in argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"fusion {argv[0]}: error: argument --" in err and "--help" in err, err
    assert not out.exists()


@pytest.mark.parametrize("verb", ["run", "detect"])
def test_an_output_path_that_is_a_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    """Before: `cannot create out: File exists; choose a writable --out` (it exists, but is no directory)."""
    out = tmp_path / "out"
    out.write_text("notes")
    assert main([verb, str(SAMPLE), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fusion: error: cannot write the dataset into {out}: it is not a directory")
    assert err.count("\n") == 1 and "choose another --out" in err
    assert out.read_text() == "notes"


CALIBRATION = """cameras:
  - name: front
    frame_id: {frame}
    width: 640
    height: 400
    model: plumb_bob
    K: [360, 0, 320, 0, 360, 200, 0, 0, 1]
    D: []
"""


def test_a_calibration_camera_that_matches_no_camera_of_the_log_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `--calibration FILE` whose camera frame_id is not the log's (a typo, the README's example
    `camera_front_optical`) was silently not used: "Problems: none found", calibration "from bag"."""
    found = {}
    for frame in ("camera_front_optical", "camera_front"):
        calibration = tmp_path / f"{frame}.yaml"
        calibration.write_text(CALIBRATION.format(frame=frame))
        assert main(["inspect", str(SAMPLE), "--calibration", str(calibration), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        found[frame] = [p for p in doc["problems"] if "is the frame of an image topic" in p]
        sources = {s["camera"]: s["calibration"] for s in doc["sync"]}
        assert sources["camera_front"] == ("bag" if frame == "camera_front_optical" else str(calibration))
    assert found["camera_front"] == []
    (problem,) = found["camera_front_optical"]
    assert problem.startswith(f"{tmp_path / 'camera_front_optical.yaml'}: no camera's frame_id")
    assert "(camera_front_optical)" in problem and str(SAMPLE) in problem
    assert problem.endswith("set frame_id to the camera's: camera_front, camera_left, camera_rear")


def _with_nan_sweeps(path: Path, every: int) -> Path:
    """The sample log with every `every`-th sweep's x, y, z all NaN (a LiDAR driver's failure)."""
    import numpy as np
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from fusion.bags import typestore_for

    ts = typestore_for("ros2")
    target = path.with_suffix("")
    with Reader(SAMPLE) as reader, Writer(target, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=ts) for c in reader.connections}
        sweep = 0
        for conn, t, recorded in reader.messages():
            raw = recorded
            if conn.msgtype == "sensor_msgs/msg/PointCloud2":
                if sweep % every == 0:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                    rows = np.frombuffer(bytes(msg.data), np.uint8).copy().reshape(-1, msg.point_step)
                    rows[:, :12] = np.full((len(rows), 3), np.nan, np.float32).view(np.uint8)
                    msg.data = rows.reshape(-1)
                    raw = ts.serialize_cdr(msg, conn.msgtype)
                sweep += 1
            writer.write(conns[conn.id], t, raw)
    next(target.glob("*.mcap")).rename(path)
    for p in target.iterdir():
        p.unlink()
    target.rmdir()
    return path


def test_sweeps_without_a_finite_point_are_a_warning_in_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a log whose LiDAR sent all-NaN sweeps ran with "0 warning(s)", just fewer boxes."""
    log = _with_nan_sweeps(tmp_path / "nan.mcap", every=3)
    out = tmp_path / "out"
    assert main(["detect", str(log), "--out", str(out), "--quiet", "--no-images", "--no-points"]) == 0
    printed = capsys.readouterr().out
    warned = [line for line in printed.splitlines() if "had no finite point" in line]
    assert len(warned) == 1 and f"{log}: 10 sweep(s) of /lidar/points" in warned[0], printed
    assert "check the LiDAR driver" in warned[0]
    assert "nan: 30 sweeps" in printed and "1 warning(s)" in printed


def test_a_chunked_run_gives_one_warning_for_the_sweeps_without_a_finite_point(tmp_path: Path) -> None:
    """Each time chunk counts its own all-NaN sweeps; the log's summary says it once, summed."""
    from exporters.dataset import DatasetWriter
    from fusion.chunks import finish_log, plan_log, remove_parts, run_chunk
    from fusion.config import RunConfig
    from fusion.prelabel import pipeline_info

    log = _with_nan_sweeps(tmp_path / "nan.mcap", every=3)
    config = RunConfig().with_overrides(chunk_s=1.0, points=False, images=False)
    plan = plan_log(log, "nan", config)
    assert len(plan.windows) >= 3
    out = tmp_path / "out"
    results = [run_chunk(plan, k, out, config) for k in range(len(plan.windows))]
    assert sum(len(r.no_finite_ns) > 0 for r in results) >= 3  # each chunk counts its own
    with DatasetWriter(out, pipeline=pipeline_info(config, "geometric")) as ds:
        summary, info = finish_log(plan, results, out, config)
        ds.add_sequence(info)
    remove_parts(out, ["nan"])
    warned = [w for w in summary.warnings if "had no finite point" in w]
    assert warned == [w for w in summary.warnings if "no finite" in w] and len(warned) == 1
    assert f"{log}: 10 sweep(s) of /lidar/points" in warned[0]


def test_the_no_finite_warning_counts_the_sweeps_and_names_the_first() -> None:
    from fusion.sync import no_finite_warning

    assert no_finite_warning("/logs/a.mcap", "/lidar", []) == []
    (warning,) = no_finite_warning("/logs/a.mcap", "/lidar", [50, 20, 70])
    assert warning.startswith("/logs/a.mcap: 3 sweep(s) of /lidar had no finite point")
    assert "the first stamped 20 ns" in warning and warning.endswith("check the LiDAR driver")


def test_a_run_where_every_log_fails_leaves_no_output_folder_it_made(tmp_path: Path) -> None:
    """ "Nothing written": not even the empty folders of a dataset that never was; a folder the user
    made beforehand is left as it was."""
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(SAMPLE.read_bytes()[:100])
    made = tmp_path / "out"
    assert main(["detect", str(bad), "--out", str(made), "--quiet"]) == 1
    assert not made.exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    assert main(["detect", str(bad), "--out", str(theirs), "--quiet"]) == 1
    assert theirs.is_dir() and not any(theirs.iterdir())


def test_a_missing_log_is_one_line_before_any_progress_bar(tmp_path: Path) -> None:
    log, out = tmp_path / "nope.mcap", tmp_path / "o"
    argv = [sys.executable, "-m", "fusion.cli", "run", str(log), "--out", str(out)]
    run = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert run.returncode == 2 and not out.exists()
    assert run.stderr == f"fusion: error: {log}: no such file or directory; check the path\n"


def test_eval_max_range_must_be_positive_and_says_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--pred", "x", "--gt", "y", "--max-range", "-5"])
    assert stop.value.code == 2
    assert "argument --max-range: must be positive, got -5" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["detect", "run"])
def test_a_log_given_twice_is_one_line_before_any_output(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # run: a Dask KeyError traceback ("Dataset fusion-chunks-... already exists"); detect: "cannot
    # finish OUT: ... write its frames first"
    monkeypatch.chdir(SAMPLE.parent)
    out = tmp_path / "out"
    assert main([verb, str(SAMPLE), f"./{SAMPLE.name}", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fusion: error: ./{SAMPLE.name}: given twice (as {SAMPLE}); give each log once"]
    assert not out.exists()
