"""bench/kitti_tracking.py on a val folder of one's own (as the held-back val data will be run): empty
detection files, a class without ground truth, frames past the last detection, and the data errors
that must be one line naming the file, never a traceback nor a silent zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.kitti_tracking import main
from fusion.evaluation.kitti_mot import read_kitti_tracking

CLASSES = ("Car", "Pedestrian", "Cyclist")


def _val_folder(datasets: Path, tmp_path: Path, seqmap: str, sequences: tuple[str, ...] = ("0017",)) -> Path:
    """A folder laid out as ../shared/datasets/ab3dmot, its files linked, with our own seqmap.val."""
    source = datasets / "ab3dmot"
    data = tmp_path / "ab3dmot"
    kitti = data / "scripts" / "KITTI"
    kitti.mkdir(parents=True)
    (kitti / "label").symlink_to(source / "scripts" / "KITTI" / "label")
    calib = data / "data" / "KITTI" / "mini" / "training"
    calib.mkdir(parents=True)
    (calib / "calib").symlink_to(source / "data" / "KITTI" / "mini" / "training" / "calib")
    for kitti_class in CLASSES:
        folder = data / "data" / "KITTI" / "detection" / f"pointrcnn_{kitti_class}_val"
        folder.mkdir(parents=True)
        for seq in sequences:
            (folder / f"{seq}.txt").symlink_to(
                source / "data" / "KITTI" / "detection" / folder.name / f"{seq}.txt"
            )
    (kitti / "evaluate_tracking.seqmap.val").write_text(seqmap)
    return data


def _detections(data: Path, kitti_class: str, seq: str) -> Path:
    return data / "data" / "KITTI" / "detection" / f"pointrcnn_{kitti_class}_val" / f"{seq}.txt"


def test_empty_detections_a_class_without_truth_and_frames_past_the_last_detection(
    datasets: Path, tmp_path: Path
) -> None:
    # 0017 has no Car ground truth; its Cyclist detections are emptied; the seqmap runs 40 frames past
    # the last Pedestrian detection kept
    data = _val_folder(datasets, tmp_path, "0017 empty 000000 000060\n")
    _detections(data, "Cyclist", "0017").unlink()
    _detections(data, "Cyclist", "0017").write_text("")
    pedestrians = _detections(data, "Pedestrian", "0017")
    kept = [line for line in pedestrians.read_text().splitlines() if int(line.split(",")[0]) <= 20]
    pedestrians.unlink()
    pedestrians.write_text("\n".join(kept) + "\n")
    out = tmp_path / "trk"
    assert main(["--data", str(data), "--split", "val", "--out", str(out)]) == 0
    for kitti_class in CLASSES:
        assert sorted(p.name for p in (out / kitti_class).iterdir()) == ["0017.txt"]
    assert (out / "Cyclist" / "0017.txt").read_text() == ""  # nothing detected: an empty result
    walkers = read_kitti_tracking(out / "Pedestrian" / "0017.txt", with_score=True)
    assert len(walkers.frame) and walkers.frame.max() <= 25  # no track runs on far past its detections
    report = json.loads((out / "tracking_eval.json").read_text())["results"]["refined"]
    car, cyclist = report["Car"]["best"], report["Cyclist"]["best"]
    assert car["n_gt"] == 0 and car["fn"] == 0  # no Car truth in 0017: no miss counted
    assert cyclist["n_gt"] > 0 and cyclist["tp"] == cyclist["fp"] == 0 and cyclist["fn"] == cyclist["n_gt"]


@pytest.mark.parametrize(
    ("seqmap", "message"),
    [
        ("", r"seqmap\.val: lists no sequence"),
        ("00x7 empty 000000 000100\n", r"seqmap\.val:1: '00x7 empty 000000 000100' is not a seqmap line"),
        ("0017 000000 000100\n", r"seqmap\.val:1: .* is not a seqmap line"),
        (
            "0017 empty 000000 000100\n0017 empty 000000 000050\n",
            r"seqmap\.val:2: sequence 0017 is listed twice",
        ),
    ],
)
def test_a_malformed_seqmap_is_one_line_naming_it(
    datasets: Path, tmp_path: Path, seqmap: str, message: str
) -> None:
    data = _val_folder(datasets, tmp_path, seqmap)
    with pytest.raises(SystemExit, match=message):
        main(["--data", str(data), "--split", "val", "--out", str(tmp_path / "trk")])
    assert not (tmp_path / "trk").exists()


def test_a_sequence_missing_from_the_detections_is_an_error_not_zero_detections(
    datasets: Path, tmp_path: Path
) -> None:
    data = _val_folder(datasets, tmp_path, "0017 empty 000000 000100\n0004 empty 000000 000100\n")
    with pytest.raises(SystemExit, match=r"pointrcnn_Car_val/0004\.txt: no such detection file and 2 more"):
        main(["--data", str(data), "--split", "val", "--out", str(tmp_path / "trk")])
    assert not (tmp_path / "trk").exists()


def test_a_malformed_detection_or_label_line_is_one_line_naming_the_file(
    datasets: Path, tmp_path: Path
) -> None:
    data = _val_folder(datasets, tmp_path, "0017 empty 000000 000100\n")
    cars = _detections(data, "Car", "0017")
    cars.unlink()
    cars.write_text("0,2,1,2,3,4,0.9,1.5,1.6,3.9,1,1,10,0,0\n1,2,3\n")
    with pytest.raises(SystemExit, match=r"pointrcnn_Car_val/0017\.txt:2: not a PointRCNN detection row"):
        main(["--data", str(data), "--split", "val", "--out", str(tmp_path / "trk")])
    cars.write_text("")
    labels = data / "scripts" / "KITTI" / "label"
    labels.unlink()
    labels.mkdir()
    (labels / "0017.txt").write_text("0 1 Pedestrian 0 0 -1 1 2 3 4 1.7 0.6 0.8 1 1 x 0\n")
    with pytest.raises(SystemExit, match=r"kitti_tracking: error: .*label/0017\.txt"):
        main(["--data", str(data), "--split", "val", "--out", str(tmp_path / "trk")])
