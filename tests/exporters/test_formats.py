"""The exporter plug-in point: name -> factory, one staging folder per export, nothing replaced or
left half-written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporters.errors import ExportError
from exporters.formats import EXPORTERS, IMPORTERS, Exporter, export_dataset, import_labels
from exporters.reader import Sequence, open_dataset


def test_every_registered_exporter_follows_the_protocol() -> None:
    assert set(EXPORTERS) == {"openlabel", "xtreme1", "kitti", "nuscenes"}
    assert set(IMPORTERS) == {"openlabel", "kitti"}
    for name, factory in EXPORTERS.items():
        exporter = factory()
        assert exporter.name == name and callable(exporter.export)


def test_unknown_format_is_refused_naming_the_known_ones(sample_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format 'vtk'; choose one of openlabel, xtreme1"):
        export_dataset(sample_dataset, "vtk", tmp_path)
    with pytest.raises(ExportError, match="unknown import format 'xtreme1'; choose one of openlabel, kitti"):
        import_labels("xtreme1", sample_dataset, tmp_path / "in")
    assert not any(tmp_path.iterdir())


def test_missing_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such dataset directory"):
        export_dataset(tmp_path / "nothing", "openlabel", tmp_path / "dest")


def test_unknown_sequence_is_refused_naming_the_known_ones(sample_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no sequence 'other'; it holds: sim_drive"):
        export_dataset(sample_dataset, "nuscenes", tmp_path, sequence_ids=["other"])
    assert not any(tmp_path.iterdir())


def test_export_never_replaces_what_is_in_dest(sample_dataset: Path, tmp_path: Path) -> None:
    existing = tmp_path / "sim_drive.openlabel.json"
    existing.write_text("keep me")
    with pytest.raises(ExportError, match="already exists and fusion never overwrites output"):
        export_dataset(sample_dataset, "openlabel", tmp_path)
    assert existing.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == [existing.name]  # the staging folder is gone


def test_unwritable_dest_is_refused(sample_dataset: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match=r"cannot write to .*choose a writable --dest"):
        export_dataset(sample_dataset, "openlabel", blocker / "dest")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ExportError, match="Permission denied"):
            export_dataset(sample_dataset, "openlabel", locked)


class _Failing:
    name = "failing"

    def export(self, sequence: Sequence, dest: Path) -> list[Path]:
        (dest / "half.txt").write_text("half")
        raise ExportError("stopped half-way")


def test_a_failed_export_leaves_nothing_behind(
    sample_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing: Exporter = _Failing()
    monkeypatch.setitem(EXPORTERS, "failing", lambda: failing)  # type: ignore[index]
    with pytest.raises(ExportError, match="stopped half-way"):
        export_dataset(sample_dataset, "failing", tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_failed_export_into_a_new_dest_leaves_no_empty_folder(
    sample_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing: Exporter = _Failing()
    monkeypatch.setitem(EXPORTERS, "failing", lambda: failing)  # type: ignore[index]
    with pytest.raises(ExportError, match="stopped half-way"):
        export_dataset(sample_dataset, "failing", tmp_path / "new" / "dest")
    assert not any(tmp_path.iterdir())  # was: new/dest/, empty, under the name given


def test_import_refuses_a_missing_source_and_an_existing_dataset(
    sample_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="no such file or folder"):
        import_labels("openlabel", tmp_path / "none.json", tmp_path / "ds")
    (path,) = export_dataset(sample_dataset, "openlabel", tmp_path / "ol")
    with pytest.raises(ExportError, match="already holds a dataset and an import never overwrites"):
        import_labels("openlabel", path, sample_dataset)


def test_imported_dataset_opens_with_the_contracts_reader(sample_dataset: Path, tmp_path: Path) -> None:
    (path,) = export_dataset(sample_dataset, "openlabel", tmp_path / "ol")
    dataset = import_labels("openlabel", path, tmp_path / "reviewed")
    original = open_dataset(sample_dataset).sequence("sim_drive")
    seq = dataset.sequence("sim_drive")
    assert seq.num_frames == original.num_frames and seq.row["world_frame"] == "odom"
    assert seq.labels().num_rows == original.labels().num_rows
    assert dataset.pipeline["detector"] == "import:openlabel"
    assert not seq.has_points and seq.image_cameras() == []
