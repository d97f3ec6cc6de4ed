"""The run configuration: TOML of frozen dataclasses, flags on top, written with the output."""

from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exporters.reader import open_dataset
from fusion.cli import main
from fusion.config import ConfigError, RunConfig, config_from_mapping, load_config

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"

FULL = """
[topics]
lidar = "/lidar/points"
cameras = ["/camera_front/image/compressed", "/camera_rear/image/compressed"]

[sync]
deskew = false
tolerance_ns = 20_000_000

[detector]
name = "geometric"
[detector.options.cluster]
min_points = 6

[tracker]
enabled = false
[tracker.online]
matcher = "greedy"
[tracker.refine]
min_track_frames = 4

[output]
points = false
images = true
image_format = "jpeg"
chunk_s = 2.5
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_a_full_file_sets_every_section(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL))
    assert config.topics.lidar == "/lidar/points"
    assert config.topics.cameras == ("/camera_front/image/compressed", "/camera_rear/image/compressed")
    sync = config.sync_config()
    assert (sync.lidar_topic, sync.deskew, sync.tolerance_ns) == ("/lidar/points", False, 20_000_000)
    assert config.detector.build_config().cluster.min_points == 6
    assert config.tracker.enabled is False
    assert config.tracker.online.matcher == "greedy" and config.tracker.refine.min_track_frames == 4
    assert (config.output.points, config.output.image_format, config.output.chunk_s) == (False, "jpeg", 2.5)
    with pytest.raises(FrozenInstanceError):
        config.output.chunk_s = 1.0  # type: ignore[misc]


def test_the_effective_config_reads_back_to_itself(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL))
    mapping = json.loads(json.dumps(config.to_mapping()))  # as written into the output
    assert config_from_mapping(mapping).to_mapping() == config.to_mapping()
    assert RunConfig().to_mapping()["topics"] == {"lidar": None, "cameras": None}  # auto-detected


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[sync]\ntolerence_ns = 1\n", "sync.tolerence_ns"),
        ("[outptu]\npoints = false\n", "outptu"),
        ("[output]\nchunks = 3\n", "output.chunks"),
        ("[topics]\nlidar_topic = '/x'\n", "topics.lidar_topic"),
        ("[sync]\nlidar_topic = '/x'\n", "sync.lidar_topic"),  # topics live in [topics]
        ("[tracker]\nenable = true\n", "tracker.enable"),
        ("[tracker.online]\nmatch = 'greedy'\n", "match"),
        ("[detector.options.clutser]\nmin_points = 3\n", "clutser"),
    ],
)
def test_an_unknown_key_is_an_error_naming_it_and_the_file(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}: .*{key}"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[output]\nimage_format = 'webp'\n", "image_format 'webp'"),
        ("[output]\nchunk_s = 0\n", "chunk_s = 0"),
        ("[detector]\nname = 'yolo'\n", "unknown detector 'yolo'"),
        ("[topics\n", "not valid TOML"),
        # the right type, out of range: a negative tolerance stored every camera's images empty
        ("[sync]\ntolerance_ns = -5\n", "sync.tolerance_ns = -5; use a non-negative number of ns"),
        ("[sync]\nmax_latency_ns = -1\n", "sync.max_latency_ns = -1; use a non-negative"),
        ("[sync]\nsweep_period_ns = 0\n", "sync.sweep_period_ns = 0; use a positive number of ns"),
        ("[sync]\nstamp_azimuth_rad = nan\n", "sync.stamp_azimuth_rad = nan; use a finite angle"),
        # a typo'd option of a learned detector is named (it said: needs --checkpoint)
        (
            "[detector]\nname = 'pointpillars'\n[detector.options]\nchekpoint = 'x.pth'\n",
            r"unknown learned-detector option\(s\) \['chekpoint'\]",
        ),
        (
            "[detector]\nname = 'pointpillars'\n[detector.options]\ndevice = 'cpu'\n",
            "needs --checkpoint CKPT",
        ),
    ],
)
def test_a_bad_value_is_an_error_naming_the_file(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}: .*{match}"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[sync]\ntolerance_ns = 'five'\n", "sync.tolerance_ns = 'five'; use an integer"),
        ("[sync]\nmax_latency_ns = 1.5\n", "sync.max_latency_ns = 1.5; use an integer"),
        ("[sync]\ndeskew = 'yes'\n", "sync.deskew = 'yes'; use true or false"),
        ("[sync]\nspin = 'up'\n", "sync.spin 'up'; use one of ccw, cw"),
        ("[sync]\nstamp_azimuth_rad = 'pi'\n", "sync.stamp_azimuth_rad = 'pi'; use a number"),
        ("[topics]\nlidar = 5\n", "topics.lidar = 5; use a string"),
        ("[topics]\ncameras = '/cam/image'\n", "topics.cameras = '/cam/image'; use a list"),
        ("[output]\npoints = 'no'\n", "output.points = 'no'; use true or false"),
        ("[output]\nchunk_s = true\n", "output.chunk_s = True; use a number"),
        ("[tracker.refine]\nmax_gap_frames = 'x'\n", "tracker.refine.max_gap_frames = 'x'; use an integer"),
        (
            "[tracker.online.params.pedestrian]\ncost_threshold = 'x'\n",
            "tracker.online.params.pedestrian.cost_threshold = 'x'; use a number",
        ),
        ("[detector.options.cluster]\nmin_points = 'x'\n", "detector.options.cluster.min_points = 'x'"),
        ("[detector]\nname = 5\n", "detector.name = 5; use a string"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_key_and_the_file(
    tmp_path: Path, text: str, match: str
) -> None:
    """Before: accepted, then each log failed mid-run with `TypeError: can only concatenate str...`
    (or `'<' not supported between 'str' and 'int'`), naming neither the key nor the file."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}: {re.escape(match)}"):
        load_config(path)


def test_a_wrong_type_in_the_config_stops_run_before_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "[sync]\ntolerance_ns = 'five'\n")
    out = tmp_path / "out"
    assert main(["run", str(SAMPLE), "--out", str(out), "--config", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"fusion: error: {path}: sync.tolerance_ns = 'five'; use an integer"
    assert not out.exists()


def test_flags_override_the_file() -> None:
    base = config_from_mapping(
        {"output": {"image_format": "jpeg", "chunk_s": 3.0}, "tracker": {"enabled": False}}
    )
    config = base.with_overrides(
        image_format="png", chunk_s=1.5, points=False, camera_topics=("/c",), track=True
    )
    assert (config.output.image_format, config.output.chunk_s, config.output.points) == ("png", 1.5, False)
    assert config.topics.cameras == ("/c",) and config.tracker.enabled is True
    assert base.with_overrides() == base  # no flag, no change


def test_detect_with_a_config_file_and_flags_writes_what_they_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        '[topics]\ncameras = ["/camera_front/image/compressed"]\n[output]\nimage_format = "jpeg"\n'
        "[tracker]\nenabled = false\n",
    )
    out = tmp_path / "out"
    args = ["detect", str(SAMPLE), "--out", str(out), "--config", str(path), "--quiet"]
    assert main([*args, "--image-format", "png", "--no-points"]) == 0
    ds = open_dataset(out)
    seq = ds.sequence("sim_drive")
    assert not (out / "points" / "sim_drive.parquet").exists()
    assert seq.image_cameras() == ["camera_front"]
    images = pq.read_table(out / "images" / "sim_drive" / "camera_front.parquet")
    assert set(images.column("encoding").to_pylist()) == {"png"}
    assert seq.image("camera_front", int(images.column("frame_index")[0].as_py())).ndim == 3
    recorded = ds.pipeline["config"]
    assert recorded["output"] == {"points": False, "images": True, "image_format": "png", "chunk_s": 10.0}
    assert recorded["tracker"]["enabled"] is False and ds.pipeline["tracker"] == "none"
    assert seq.config["topics"] == {"lidar": "/lidar/points", "cameras": ["/camera_front/image/compressed"]}
    labels = seq.labels(as_pandas=True)
    assert labels["track_id"].is_unique  # tracking off: each box its own track


def test_an_unknown_key_on_the_command_line_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "[output]\nimage_fromat = 'png'\n")
    assert main(["run", str(SAMPLE), "--out", str(tmp_path / "out"), "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    known = "chunk_s, image_format, images, points"
    assert err == [f"fusion: error: {path}: unknown key 'output.image_fromat'; use one of {known}"]
    assert not (tmp_path / "out").exists()
