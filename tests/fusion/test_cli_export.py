"""`fusion export` and `fusion import` end to end: pre-labels out, reviewed labels back in, and
`fusion eval` reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusion.cli import main


def _eval(pred: Path, gt: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--score", "0", "--json", *extra]) == 0
    overall: dict[str, object] = json.loads(capsys.readouterr().out)["overall"]
    return overall


def test_openlabel_out_and_back_in_scores_perfectly_against_the_prelabels(
    sample_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(sample_dataset), "--format", "openlabel", "--dest", str(tmp_path / "ol")]) == 0
    out = capsys.readouterr().out
    assert "sim_drive.openlabel.json" in out
    src = tmp_path / "ol" / "sim_drive.openlabel.json"
    assert main(["import", str(src), "--format", "openlabel", "--dest", str(tmp_path / "reviewed")]) == 0
    assert "sim_drive: 30 frames" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "reviewed")]) == 0
    capsys.readouterr()
    overall = _eval(tmp_path / "reviewed", sample_dataset, capsys)
    assert overall["box_accuracy"] == 1.0 and overall["frame_accuracy"] == 1.0


def test_kitti_out_and_back_in_is_read_by_eval(
    sample_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(sample_dataset), "--format", "kitti", "--dest", str(tmp_path / "k")]) == 0
    capsys.readouterr()
    front = tmp_path / "k" / "camera_front"
    assert main(["import", str(front), "--format", "kitti", "--dest", str(tmp_path / "reviewed")]) == 0
    capsys.readouterr()
    label, calib = front / "label_02" / "sim_drive.txt", front / "calib" / "sim_drive.txt"
    overall = _eval(tmp_path / "reviewed", label, capsys, "--gt-calib", str(calib))
    assert overall["box_accuracy"] == 1.0  # the same KITTI boxes on both sides


def test_export_of_one_sequence_in_each_remaining_format(
    sample_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt, entry in (("nuscenes", "sim_drive.nuscenes.json"), ("xtreme1", "scene_sim_drive")):
        dest = tmp_path / fmt
        assert (
            main(
                [
                    "export",
                    str(sample_dataset),
                    "--format",
                    fmt,
                    "--dest",
                    str(dest),
                    "--sequence",
                    "sim_drive",
                ]
            )
            == 0
        )
        assert [p.name for p in dest.iterdir()] == [entry]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "{missing}", "--format", "openlabel", "--dest", "{tmp}/d"], "no such dataset directory"),
        (["export", "{ds}", "--format", "ply", "--dest", "{tmp}/d"], "unknown export format 'ply'"),
        (["export", "{ds}", "--format", "openlabel", "--dest", "{file}/d"], "choose a writable --dest"),
        (["import", "{bad}", "--format", "openlabel", "--dest", "{tmp}/r"], "not JSON"),
        (["import", "{tmp}", "--format", "kitti", "--dest", "{tmp}/r"], "no label_02/ folder"),
        (["import", "{bad}", "--format", "vcd", "--dest", "{tmp}/r"], "unknown import format 'vcd'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    sample_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    file = tmp_path / "file"
    file.write_text("")
    names = {"missing": tmp_path / "none", "ds": sample_dataset, "tmp": tmp_path, "file": file, "bad": bad}
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fusion: error:") and message in err and err.count("\n") == 1
