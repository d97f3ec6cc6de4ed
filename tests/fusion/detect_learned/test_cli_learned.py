"""`fusion detect` / `fusion run` with the learned detectors: the shipped checkpoint on the sample log."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exporters.reader import open_dataset
from fusion.cli import main

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"
CHECKPOINT = REPO / "data_samples" / "pointpillars_sim.pth"
CONFIGS = Path(__file__).parent / "configs"


def test_shipped_checkpoint_is_small_and_carries_its_config() -> None:
    import torch

    assert CHECKPOINT.stat().st_size <= 10 * 1024 * 1024
    ckpt = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert ckpt["meta"]["fusion_model_config"]["model"]["bbox_head"]["type"] == "Anchor3DHead"
    assert ckpt["meta"]["fusion_training"]["complete"] is True
    assert "voxel_encoder.pfn_layers.0.linear.weight" in ckpt["state_dict"]  # mmdet3d key names


def test_detect_with_the_shipped_pointpillars_writes_a_valid_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["detect", str(SAMPLE), "--out", str(out), "--quiet", "--no-images", "--no-points"]
    assert (
        main([*args, "--detector", "pointpillars", "--checkpoint", str(CHECKPOINT), "--device", "cpu"]) == 0
    )
    assert "sim_drive: 30 sweeps" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0
    ds = open_dataset(out)
    assert ds.pipeline["detector"] == "pointpillars"
    labels = pq.read_table(out / "labels" / "sim_drive.parquet").to_pandas()
    assert len(labels) > 0
    assert set(labels["category"]) <= {"car", "truck", "pedestrian", "cyclist"}
    # the drive passes rows of cars: most boxes the trained model keeps are cars
    assert (labels["category"] == "car").mean() > 0.5


def test_run_on_dask_with_pointpillars_writes_a_valid_dataset(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", str(SAMPLE), "--out", str(out), "--workers", "1", "--quiet", "--no-images", "--no-points"]
    assert (
        main([*args, "--detector", "pointpillars", "--checkpoint", str(CHECKPOINT), "--batch-size", "4"]) == 0
    )
    assert main(["validate", str(out)]) == 0
    ds = open_dataset(out)
    assert ds.pipeline["detector"] == "pointpillars"
    detector = ds.pipeline["config"]["detector"]
    assert detector["name"] == "pointpillars"
    assert detector["options"]["batch_size"] == 4
    assert detector["options"]["checkpoint"] == str(CHECKPOINT.resolve())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--detector", "pointpillars"], "--detector pointpillars needs --checkpoint CKPT"),
        (["--checkpoint", "x.pth"], "--checkpoint only apply to --detector pointpillars|centerpoint|mmdet3d"),
        (
            ["--detector", "centerpoint", "--checkpoint", "missing.pth"],
            "missing.pth: no such file (--checkpoint)",
        ),
        (
            ["--detector", "centerpoint", "--checkpoint", str(CHECKPOINT)],
            "describes a pointpillars model, not centerpoint; use --detector pointpillars",
        ),
        (
            ["--score-calibration", "raw"],
            "--score-calibration only apply to --detector pointpillars|centerpoint|mmdet3d",
        ),
        (
            ["--detector", "mmdet3d", "--checkpoint", str(CHECKPOINT), "--score-calibration", "raw"],
            "--score-calibration applies to --detector pointpillars|centerpoint",
        ),
    ],
)
def test_learned_detector_options_that_cannot_work_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["detect", str(SAMPLE), "--out", str(tmp_path / "out"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_run_on_a_local_cluster_refuses_cuda_this_machine_lacks_before_any_worker_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import fusion.pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this machine, GPU or not

    def no_cluster(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(fusion.pipeline, "run", no_cluster)
    argv = ["run", str(SAMPLE), "--out", str(tmp_path / "out"), "--quiet", "--detector", "pointpillars"]
    # it was every log failing in its worker, exit 1, after the cluster started
    assert main([*argv, "--checkpoint", str(CHECKPOINT), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device 'cuda': this torch has no CUDA device; use --device cpu" in err[0]
    assert not (tmp_path / "out").exists()
