"""`fusion convert --from pcd`: the real pjlab folder of PCD sweeps (read in place) and its poses into a
bag, then the pipeline on it; small PCDs written with open3d into tmp_path for the error cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from exporters.reader import open_dataset
from fusion.bags import open_bag
from fusion.cli import main
from fusion.convert import ConvertError, convert
from fusion.decode import decode_pointcloud2

PJLAB = "sensors_calibration_pjlab/lidar2imu/manual_calib/data"
STEMS = tuple(f"2021-10-26-16-21-29-{ms}" for ms in (468, 568, 668, 768, 868))


def _read(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    import open3d as o3d

    cloud = o3d.t.io.read_point_cloud(path)
    return {name: cloud.point[name].numpy() for name in cloud.point}


def _write_pcd(path: Path, **fields: np.ndarray[Any, Any]) -> None:
    """50 random points (x y z float32) and `fields`, each (50,), into a binary PCD."""
    import open3d as o3d

    n = 50
    cloud = o3d.t.geometry.PointCloud()
    rng = np.random.default_rng(len(path.name))
    cloud.point.positions = o3d.core.Tensor.from_numpy(rng.uniform(-20, 20, (n, 3)).astype(np.float32))
    for name, values in fields.items():
        cloud.point[name] = o3d.core.Tensor.from_numpy(np.ascontiguousarray(values.reshape(n, 1)))
    assert o3d.t.io.write_point_cloud(path, cloud)


def test_pjlab_sweeps_and_poses_convert_and_run_with_the_pcd_points(
    datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = datasets / PJLAB
    log = tmp_path / "pjlab.mcap"
    poses = data / "top_center_lidar-pose.txt"
    assert (
        main(
            [
                "convert",
                str(data / "top_center_lidar"),
                "--from",
                "pcd",
                "--poses",
                str(poses),
                "--out",
                str(log),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "converted pcd: 5 sweeps on /lidar/points, images: none, 5 poses, span 0.40 s" in out
    assert "1076 poses of top_center_lidar-pose.txt name no PCD in the folder" in out

    assert main(["inspect", str(log), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    cloud = next(t for t in report["topics"] if t["name"] == "/lidar/points")
    assert cloud["count"] == 5 and cloud["rate_hz"] == pytest.approx(10.0, abs=0.05)
    assert cloud["pointcloud"]["per_point_time"] and cloud["pointcloud"]["frame_id"] == "lidar"
    edges = {(e["parent"], e["child"]): e for e in report["tf"]}
    assert list(edges) == [("map", "lidar")] and not edges[("map", "lidar")]["static"]
    assert edges[("map", "lidar")]["count"] == 5

    ds = tmp_path / "ds"
    assert main(["run", str(log), "--out", str(ds), "--workers", "1", "--quiet", "--no-track"]) == 0
    assert main(["validate", str(ds)]) == 0
    frames = pd.read_parquet(ds / "frames")
    # the sweep stamp is its earliest point's time; the poses sit at the stamps, so the last sweep's
    # end is past TF's extrapolation: it is kept as recorded
    assert frames["deskewed"].tolist() == [True, True, True, True, False]
    seq = open_dataset(ds).sequence("pjlab")
    for k, stem in enumerate(STEMS):
        pcd = _read(data / "top_center_lidar" / f"{stem}.pcd")
        ts = pcd["timestamp"].reshape(-1)
        assert frames["timestamp_ns"].iloc[k] == round(float(ts.min()) * 1e9)
        xyz, intensity, offsets = seq.points(k)
        finite = np.isfinite(pcd["positions"]).all(axis=1)
        assert len(xyz) == finite.sum() == frames["num_points"].iloc[k]
        np.testing.assert_array_equal(intensity, pcd["intensity"].reshape(-1)[finite])
        expected_offsets = np.rint((ts[finite] - ts.min()) * 1e9)
        np.testing.assert_allclose(offsets, expected_offsets, atol=1000)  # float64 seconds: sub-us
        raw = pcd["positions"][finite]
        if frames["deskewed"].iloc[k]:
            # the rig barely moves (0.1 mm and 2e-5 rad a sweep): deskewing moves a point by well under
            # 1 mm plus that turn at its range, yet moves some
            moved = np.linalg.norm(xyz.astype(np.float64) - raw, axis=1)
            assert (moved <= 1e-3 + 3e-5 * np.linalg.norm(raw, axis=1)).all() and moved.max() > 1e-4
        else:
            np.testing.assert_array_equal(xyz, raw)


def _folder(tmp_path: Path, count: int = 3, **fields: np.ndarray[Any, Any]) -> Path:
    folder = tmp_path / "sweeps"
    folder.mkdir()
    for k in range(count):
        _write_pcd(folder / f"{k:06d}.pcd", **fields)
    return folder


def test_pcds_without_timestamps_need_hz_and_keep_their_relative_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    time = np.linspace(0.0, 0.099, 50, dtype=np.float32)  # seconds from the sweep start
    ring = np.arange(50, dtype=np.uint16) % 32
    folder = _folder(tmp_path, time=time, ring=ring)
    log = tmp_path / "odd.mcap"
    assert main(["convert", str(folder), "--from", "pcd", "--out", str(log)]) == 2
    err = capsys.readouterr().err
    assert "000000.pcd: no per-point timestamp (absolute seconds) to date the sweeps; pass --hz 10" in err
    assert not log.exists() and list(tmp_path.iterdir()) == [folder]

    result = convert(folder, "pcd", log, hz=10, frame_id="velo")
    assert (result.num_sweeps, result.num_poses) == (3, 0)
    assert (result.start_ns, result.end_ns) == (1_000_000_000, 1_200_000_000)
    assert "per-point time: time" in result.notes
    with open_bag(log) as bag:  # the bag reads back as fusion reads any bag
        clouds = [decode_pointcloud2(bag.deserialize(m)) for m in bag.messages(["/lidar/points"])]
    assert [c.stamp_ns for c in clouds] == [1_000_000_000, 1_100_000_000, 1_200_000_000]
    for k, cloud in enumerate(clouds):
        np.testing.assert_array_equal(cloud.xyz, _read(folder / f"{k:06d}.pcd")["positions"])
        assert cloud.ring is not None and cloud.time_offset_ns is not None and cloud.intensity is None
        np.testing.assert_array_equal(cloud.ring, ring)
        np.testing.assert_allclose(cloud.time_offset_ns, np.rint(time.astype(np.float64) * 1e9), atol=100)
        assert cloud.frame_id == "velo"


IDENTITY = "1 0 0 {x} 0 1 0 0 0 0 1 0"


def test_poses_named_or_in_order_become_map_to_frame_at_each_sweep(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    unnamed = tmp_path / "poses.txt"  # KITTI odometry: 12 numbers a line, the files' order
    unnamed.write_text("".join(IDENTITY.format(x=k) + "\n" for k in range(3)))
    result = convert(folder, "pcd", tmp_path / "a.mcap", hz=10, poses=unnamed)
    assert result.num_poses == 3 and "3 poses as map -> lidar at their sweeps' stamps" in result.notes
    with open_bag(result.log_path) as bag:
        tfs = [bag.deserialize(m).transforms[0] for m in bag.messages(["/tf"])]
    assert [(t.header.frame_id, t.child_frame_id, t.transform.translation.x) for t in tfs] == [
        ("map", "lidar", 0.0),
        ("map", "lidar", 1.0),
        ("map", "lidar", 2.0),
    ]
    assert [t.header.stamp.nanosec for t in tfs] == [0, 100_000_000, 200_000_000]

    named = tmp_path / "named.txt"  # poses for two of the three sweeps
    named.write_text(f"000002 {IDENTITY.format(x=2)}\n000000 {IDENTITY.format(x=0)}\n")
    result = convert(folder, "pcd", tmp_path / "b.mcap", hz=10, poses=named)
    assert result.num_poses == 2
    assert "named.txt has poses for 2 of the 3 sweeps: the others get none (no deskew, no world frame)" in (
        result.notes
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("000000 1 0 0 0 0 1 0 0 0 0 1\n", r"named\.txt:1: 12 values; every line is NAME and 12 numbers"),
        (f"000000 {IDENTITY.format(x='a')}\n", r"named\.txt:1: could not convert string to float: 'a'"),
        (f"000000 {IDENTITY.format(x=0)}\n000000 {IDENTITY.format(x=0)}\n", r"named\.txt:2: a second pose"),
        (
            f"000001 {IDENTITY.format(x=0)}\n000001x {IDENTITY.format(x=0)}\n",
            r"named\.txt:2: pose for "
            r"'000001x' but the folder has no 000001x\.pcd; restore the PCD or delete the line",
        ),
        ("000000 2 0 0 0 0 1 0 0 0 0 1 0\n", r"named\.txt:1: the 3x3 part is not a rotation"),
        (f"{IDENTITY.format(x=0)}\n" * 2, r"named\.txt:2: 2 unnamed poses for 3 PCD files; .* fix the count"),
        (f"{IDENTITY.format(x=0)}\n" * 4, r"named\.txt:4: 4 unnamed poses for 3 PCD files"),
        (f"zzz {IDENTITY.format(x=0)}\n", r"named\.txt: none of its 1 names is a PCD of the folder"),
        ("\n", r"named\.txt: no pose lines; give --poses a file of 3x4 poses or drop --poses"),
    ],
)
def test_bad_pose_lines_are_one_line_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    folder = _folder(tmp_path)
    poses = tmp_path / "named.txt"
    poses.write_text(text)
    with pytest.raises(ConvertError, match=message):
        convert(folder, "pcd", tmp_path / "out.mcap", hz=10, poses=poses)
    assert not (tmp_path / "out.mcap").exists()


def test_bad_pcd_folders_are_one_line_and_leave_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mcap"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConvertError, match=r"empty: no \*\.pcd files; give a folder of PCD sweeps"):
        convert(empty, "pcd", out, hz=10)
    folder = _folder(tmp_path)
    (folder / "000003.pcd").write_bytes(b"not a point cloud\n")
    with pytest.raises(ConvertError, match=r"000003\.pcd: open3d reads no x y z points from it"):
        convert(folder, "pcd", out, hz=10)
    (folder / "000003.pcd").write_text(
        "VERSION 0.7\nFIELDS intensity\nSIZE 4\nTYPE F\nCOUNT 1\nWIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        "POINTS 2\nDATA ascii\n1\n2\n"
    )
    with pytest.raises(ConvertError, match=r"000003\.pcd: open3d reads no x y z points from it"):
        convert(folder, "pcd", out, hz=10)
    (folder / "000003.pcd").unlink()
    _write_pcd(folder / "000003.pcd", timestamp=np.full(50, 1.6e9))
    with pytest.raises(
        ConvertError, match=r"000003\.pcd: has the per-point timestamp field that 000000\.pcd"
    ):
        convert(folder, "pcd", out, hz=10)
    relative = tmp_path / "relative"
    relative.mkdir()
    _write_pcd(relative / "a.pcd", timestamp=np.linspace(0.0, 0.1, 50))  # seconds from the start
    with pytest.raises(ConvertError, match=r"a\.pcd: field timestamp \(float64, from 0\.0\) is not absolute"):
        convert(relative, "pcd", out)
    (relative / "a.pcd").unlink()
    _write_pcd(relative / "a.pcd", timestamp=np.full(50, 1.6e9, dtype=np.float32))
    with pytest.raises(ConvertError, match=r"a\.pcd: field timestamp \(float32, .*float32 cannot hold it"):
        convert(relative, "pcd", out)
    assert not out.exists()
    # the options of other sources are refused, and theirs with pcd
    assert main(["convert", str(folder), "--from", "av2", "--poses", "p.txt", "--out", str(out)]) == 2
    assert "--poses and --frame-id apply to --from pcd" in capsys.readouterr().err
    with pytest.raises(ConvertError, match=r"--calibration does not apply to --from pcd"):
        convert(folder, "pcd", out, hz=10, calibration=folder)
