"""`fusion render`: one sweep as a PNG, opened and checked for its size and what is drawn in it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from PIL import Image

from exporters.reader import open_dataset
from fusion.cli import main
from fusion.scene import CATEGORY_COLORS
from tests.fusion.review_dataset import SEQUENCE, review_dataset

FRAME = 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return review_dataset(tmp_path_factory)


@pytest.fixture(scope="module")
def picture(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> npt.NDArray[np.uint8]:
    png = tmp_path_factory.mktemp("render") / "frame.png"
    args = ["render", str(dataset), "--sequence", SEQUENCE, "--frame", str(FRAME), "--out", str(png)]
    assert main(args) == 0
    with Image.open(png) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _near(pixels: npt.NDArray[np.uint8], rgb: tuple[int, int, int], tol: float = 12.0) -> int:
    """How many pixels are within `tol` (per channel) of colour `rgb`."""
    return int((np.abs(pixels.astype(np.int16) - np.asarray(rgb, np.int16)).max(axis=-1) <= tol).sum())


def test_render_draws_a_birds_eye_view_beside_three_cameras(picture: npt.NDArray[np.uint8]) -> None:
    height, width, _ = picture.shape
    # a square bird's-eye view two panels high beside two columns of 16:10 camera panels, at 100 dpi
    assert 640 <= height <= 760 and 2.2 < width / height < 2.5
    assert float(picture.std()) > 30.0  # not blank
    bev = picture[60:640, 60:640]
    cameras = picture[:, 690:]
    assert _near(bev, (247, 247, 245), 2) > 0.4 * bev.shape[0] * bev.shape[1]  # the BEV's light background
    packed = cameras.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    assert len(np.unique(packed)) > 5000  # photographs, not flat panels


def test_render_colours_boxes_by_category(dataset: Path, picture: npt.NDArray[np.uint8]) -> None:
    labels = open_dataset(dataset).sequence(SEQUENCE).labels().to_pandas()
    present = set(labels[labels.frame_index == FRAME].category)
    assert {"car", "pedestrian"} <= present
    for category, rgb in CATEGORY_COLORS.items():
        count = _near(picture, rgb)
        if category in present:
            assert count > 200, (category, count)  # outlines, fills and labels in its colour
        elif category in ("bus", "motorcycle", "truck"):  # colours no photograph pixel comes near
            assert count < 50, (category, count)


def test_pictures_of_two_sweeps_differ(dataset: Path, tmp_path: Path, picture: npt.NDArray[np.uint8]) -> None:
    png = tmp_path / "next.png"
    assert (
        main(["render", str(dataset), "--sequence", SEQUENCE, "--frame", str(FRAME + 5), "--out", str(png)])
        == 0
    )
    with Image.open(png) as image:
        other = np.asarray(image.convert("RGB"))
    assert other.shape == picture.shape
    assert float(np.abs(other.astype(np.int16) - picture).mean()) > 5.0


def test_render_refuses_a_missing_frame_or_an_existing_picture(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "x.png"
    assert main(["render", str(dataset), "--sequence", SEQUENCE, "--frame", "30", "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no frame 30; sequence 'sim_drive' has frames 0..29" in err[0]
    assert not png.exists()
    png.write_bytes(b"keep me")
    assert main(["render", str(dataset), "--sequence", SEQUENCE, "--frame", "0", "--out", str(png)]) == 2
    assert "exists; remove it or pass --overwrite" in capsys.readouterr().err
    assert png.read_bytes() == b"keep me"
    assert (
        main(
            ["render", str(dataset), "--sequence", SEQUENCE, "--frame", "0", "--out", str(tmp_path / "x.jpg")]
        )
        == 2
    )
    assert "give an --out ending in .png" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no temporary left behind


def test_render_tracks_draws_every_track_on_the_map_and_as_a_lifeline(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "tracks.png"
    assert main(["render", str(dataset), "--sequence", SEQUENCE, "--tracks", "--out", str(png)]) == 0
    labels = open_dataset(dataset).sequence(SEQUENCE).labels().to_pandas()
    tracks, interpolated = labels.track_id.nunique(), int((labels.origin == "interpolated").sum())
    assert interpolated > 0  # the sample has gaps refinement filled: pale lifeline runs and rings
    out = capsys.readouterr().out
    assert f"{tracks} tracks, {len(labels)} boxes ({interpolated} interpolated)" in out
    assert "map in the odom frame" in out
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    height, width, _ = pixels.shape
    assert width == 1350 and height >= 700  # the map's 7 inches, or a lifeline row per track if taller
    lifelines = pixels[:, 900:]
    for category in set(labels.category):
        rgb = CATEGORY_COLORS[category]
        pale = tuple(round(255 - 0.35 * (255 - c)) for c in rgb)  # alpha 0.35 over white
        assert _near(lifelines, rgb, 3) > 100, category  # solid runs where detected
        if (labels[labels.category == category].origin == "interpolated").any():
            assert _near(lifelines, pale, 3) > 20, category  # pale runs where interpolated


def test_render_tracks_lifelines_grow_with_the_tracks_drawn(dataset: Path, tmp_path: Path) -> None:
    from fusion.render import TracksConfig, render_tracks

    tall = render_tracks(dataset, SEQUENCE, tmp_path / "a.png", config=TracksConfig(row_height_in=0.5))
    few = render_tracks(
        dataset, SEQUENCE, tmp_path / "b.png", config=TracksConfig(row_height_in=0.5, max_tracks=5)
    )
    assert tall.tracks == few.tracks  # the map keeps every track; only the lifelines are cut
    assert tall.height > 100 * 0.5 * tall.tracks > few.height


def test_render_takes_one_of_frame_or_tracks(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "x.png"
    for extra in ([], ["--frame", "1", "--tracks"]):
        assert main(["render", str(dataset), "--sequence", SEQUENCE, *extra, "--out", str(png)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "give --frame N (one sweep) or --tracks (the whole sequence)" in err[0]
    # --range is the sweep's bird's-eye view: with --tracks it was silently ignored
    assert (
        main(["render", str(dataset), "--sequence", SEQUENCE, "--tracks", "--range", "20", "--out", str(png)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--range sets --frame's bird's-eye view" in err[0]
    assert not png.exists()


def test_render_tracks_marks_the_review_queue_in_a_colour_no_category_has(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporters.parquet_io import write_table_atomic
    from exporters.schema import FLAGS
    from fusion.render import QUEUE_ROW_COLOR

    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy, ignore=shutil.ignore_patterns("points", "images"))
    labels = open_dataset(copy).sequence(SEQUENCE).labels().to_pandas()
    walker = int(labels[labels.category == "pedestrian"].track_id.iloc[0])
    flags = pa.table(
        {
            "sequence_id": [SEQUENCE],
            "frame_index": [int(labels[labels.track_id == walker].frame_index.iloc[0])],
            "track_id": [walker],
            "flag": ["impossible_motion"],
            "severity": [0.9],
            "detail": ["injected"],
        }
    ).cast(FLAGS)
    (copy / "flags").mkdir(exist_ok=True)
    write_table_atomic(
        flags, copy / "flags" / f"{SEQUENCE}.parquet", sequence_id=SEQUENCE, schema=FLAGS, overwrite=True
    )
    png = tmp_path / "tracks.png"
    assert main(["render", str(copy), "--sequence", SEQUENCE, "--tracks", "--out", str(png)]) == 0
    assert "1 in the review queue" in capsys.readouterr().out
    with Image.open(png) as image:
        lifelines = np.asarray(image.convert("RGB"))[:, 700:]
    # the queue's mark was red, the pedestrians' colour: every pedestrian lifeline read as flagged
    queue = tuple(int(QUEUE_ROW_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    assert all(
        max(abs(a - b) for a, b in zip(queue, rgb, strict=True)) > 60 for rgb in CATEGORY_COLORS.values()
    )
    assert _near(lifelines, queue, 3) > 2000  # the flagged pedestrian's row, across the panel


def test_render_title_says_when_the_dataset_stores_no_points(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    titles: list[str] = []
    suptitle = Figure.suptitle

    def spy(self: Figure, t: str, **kwargs: object) -> object:
        titles.append(t)
        return suptitle(self, t, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "suptitle", spy)
    copy = tmp_path / "bare"
    shutil.copytree(dataset, copy, ignore=shutil.ignore_patterns("points"))  # a --no-points run
    for root, name in ((dataset, "a.png"), (copy, "b.png")):
        args = [
            "render",
            str(root),
            "--sequence",
            SEQUENCE,
            "--frame",
            str(FRAME),
            "--out",
            str(tmp_path / name),
        ]
        assert main(args) == 0
    full, bare = titles
    assert " points · " in full and "no points stored" not in full
    assert "no points stored" in bare and "0 points" not in bare  # was "0 points": an empty sweep?
