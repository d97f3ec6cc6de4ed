"""fusion.sync on simulated logs: every camera paired with the image triggered for its sweep."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from fusion.bags import open_bag, typestore_for
from fusion.decode import PointCloud
from fusion.sync import FusedFrame, SyncConfig, prepare, sweep_phase, synchronize
from tests.bagutil import write_bag

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"
GROUND_TRUTH = REPO / "data_samples" / "sim_drive.labels.parquet"
CAMERAS = {"camera_front", "camera_left", "camera_rear"}


def run(path: Path, config: SyncConfig | None = None) -> tuple[list[FusedFrame], dict[str, Any], list[str]]:
    config = config or SyncConfig()
    stats: dict[str, Any] = {}
    with open_bag(path) as bag:
        ctx = prepare(bag, config)
        frames = list(synchronize(bag, ctx, config, stats=stats))
    return frames, {k: v.summary() for k, v in stats.items()}, ctx.warnings


def rewrite(tmp_path: Path, edit: Callable[[str, int, Any], int | None]) -> Path:
    """The sample with each message passed through edit(topic, index on its topic, msg), which
    returns a new header stamp (ns), or None to drop the message; -1 keeps it as it is."""
    counters: dict[str, int] = {}
    out: list[tuple[str, str, int, Any]] = []
    with open_bag(SAMPLE) as bag:
        for raw in bag.messages():
            msg = bag.deserialize(raw)
            i = counters.get(raw.topic, 0)
            counters[raw.topic] = i + 1
            stamp = edit(raw.topic, i, msg)
            if stamp is None:
                continue
            if stamp >= 0:
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            out.append((raw.topic, raw.msgtype, raw.log_time_ns, msg))
    assert typestore_for("ros2") is not None
    return write_bag(tmp_path / "edited.mcap", "mcap", out)


def stamp_of(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def test_sample_pairs_every_camera_with_the_image_triggered_for_its_sweep() -> None:
    frames, stats, warnings = run(SAMPLE)
    assert warnings == []
    assert len(frames) == 30
    for f in frames:
        assert set(f.images) == CAMERAS and f.unpaired == ()
        for name, img in f.images.items():
            assert abs(img.offset_ns) <= 1_000  # the simulator fires at the crossing instant
            assert img.stamp_ns - f.stamp_ns == pytest.approx(f.crossings_ns[name] - f.stamp_ns, abs=1_000)
        assert f.world_from_lidar is not None and f.deskewed
    assert all(s["pairing_rate"] == 1.0 for s in stats.values())
    # front camera looks forward: the sweep (starting behind, spinning clockwise) crosses it mid-sweep
    offsets = {n: frames[0].crossings_ns[n] - frames[0].stamp_ns for n in CAMERAS}
    assert offsets["camera_rear"] < offsets["camera_left"] < offsets["camera_front"] < 100_000_000


def test_paired_images_decode_on_demand_to_their_camera_resolution() -> None:
    frames, _, _ = run(SAMPLE)
    img = frames[3].images["camera_left"].decoded
    assert img.pixels.shape == (400, 640, 3)


def test_dropped_images_leave_that_camera_unpaired_for_that_sweep(tmp_path: Path) -> None:
    def drop(topic: str, i: int, msg: Any) -> int | None:
        return None if topic == "/camera_front/image/compressed" and i % 5 == 2 else -1

    frames, stats, _ = run(rewrite(tmp_path, drop))
    unpaired = [f.index for f in frames if "camera_front" in f.unpaired]
    assert unpaired == [2, 7, 12, 17, 22, 27]
    assert all("camera_front" not in f.images for f in frames if f.index in unpaired)
    assert stats["camera_front"]["unpaired_sweeps"] == 6
    assert stats["camera_left"]["pairing_rate"] == 1.0


def test_jittered_stamps_pair_within_tolerance_and_record_the_offset(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    jitter = rng.integers(-20_000_000, 20_000_000, size=30)

    def shift(topic: str, i: int, msg: Any) -> int | None:
        if topic == "/camera_left/image/compressed":
            return stamp_of(msg) + int(jitter[i])
        if topic == "/camera_rear/image/compressed" and i == 4:
            return stamp_of(msg) + 70_000_000  # beyond half the 100 ms period
        return -1

    frames, stats, _ = run(rewrite(tmp_path, shift))
    got = [f.images["camera_left"].offset_ns for f in frames]
    assert np.allclose(got, jitter, atol=1_000)
    assert "camera_rear" in frames[4].unpaired
    assert stats["camera_rear"]["paired"] == 29
    assert stats["camera_left"]["offset_max_ms"] == pytest.approx(np.abs(jitter).max() * 1e-6, abs=1e-2)


def test_camera_without_camera_info_is_left_out_with_one_warning_naming_the_fix(tmp_path: Path) -> None:
    def drop_info(topic: str, i: int, msg: Any) -> int | None:
        return None if topic == "/camera_rear/camera_info" else -1

    frames, _, warnings = run(rewrite(tmp_path, drop_info))
    assert len(warnings) == 1
    assert "camera_rear" in warnings[0] and "--calibration" in warnings[0]
    assert set(frames[0].images) == {"camera_front", "camera_left"}


def test_deskew_moves_points_onto_static_objects_ground_truth_surfaces() -> None:
    """Ego motion over a 100 ms sweep smears static objects; deskewing removes it. (Moving objects
    keep their own motion: that is the tracker's to compensate, measured and left out here.)"""
    gt = pq.read_table(GROUND_TRUTH).to_pandas()
    errors = {}
    for dsk in (False, True):
        frames, _, _ = run(SAMPLE, SyncConfig(deskew=dsk))
        dist: list[np.ndarray] = []
        for f in frames:
            rows = gt[(gt.frame_index == f.index) & (np.hypot(gt.velocity_x, gt.velocity_y) < 0.1)]
            xyz = np.asarray(f.cloud.xyz, dtype=np.float64)
            for box in rows[["x", "y", "z", "length", "width", "height", "yaw"]].to_numpy(float):
                local = box_local(xyz, box)
                near = np.all(np.abs(local) <= box[3:6] / 2 + 0.5, axis=1)
                dist.append(surface_distance(local[near], box[3:6]))
        errors[dsk] = float(np.mean(np.concatenate(dist)))
    assert errors[True] < errors[False] / 3
    assert errors[True] < 0.03


def test_sweeps_without_per_point_time_are_deskewed_by_azimuth_when_asked(tmp_path: Path) -> None:
    """A driver that leaves the per-point time out (KITTI's .bin, velodyne_pointcloud's XYZIR): kept
    as recorded by default; with `time_from_azimuth` each point gets the instant the fallback spin
    model has the beam at its azimuth, and the sweep is deskewed as the one with real times is."""

    def drop_time(topic: str, index: int, msg: Any) -> int:
        if hasattr(msg, "fields"):
            msg.fields = [f for f in msg.fields if f.name != "time"]  # the bytes stay: unread padding
        return -1

    bare = rewrite(tmp_path, drop_time)
    timed, _, _ = run(SAMPLE)
    kept, _, _ = run(bare)
    derived, _, warnings = run(bare, SyncConfig(time_from_azimuth=True))
    assert warnings == [] and len(timed) == len(kept) == len(derived) == 30
    for real, plain, mine in zip(timed, kept, derived, strict=True):
        assert plain.cloud.time_offset_ns is None and not plain.deskewed
        assert real.deskewed and mine.deskewed
        offsets = mine.cloud.time_offset_ns
        assert offsets is not None and offsets.dtype == np.int32
        # the simulator stamps each point with its beam's instant: the azimuth gives it back
        assert np.abs(offsets.astype(np.int64) - real.cloud.time_offset_ns).max() <= 1_000  # 1 us
        np.testing.assert_allclose(mine.cloud.xyz, real.cloud.xyz, atol=1e-4)
        assert np.abs(np.asarray(plain.cloud.xyz) - np.asarray(real.cloud.xyz)).max() > 0.05  # smeared


def box_local(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    c, s = math.cos(box[6]), math.sin(box[6])
    d = xyz - box[:3]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)


def surface_distance(local: np.ndarray, size: np.ndarray) -> np.ndarray:
    q = np.abs(local) - size / 2
    return np.abs(np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0))


def test_sweep_phase_falls_back_to_config_without_per_point_times() -> None:
    cloud = PointCloud(
        xyz=np.ones((100, 3), np.float32),
        intensity=None,
        time_offset_ns=None,
        ring=None,
        frame_id="lidar",
        stamp_ns=0,
    )
    phase = sweep_phase(cloud, SyncConfig(spin="cw", stamp_azimuth_rad=math.pi, sweep_period_ns=100_000_000))
    assert not phase.fitted
    assert phase.crossing_offset_ns(math.pi / 2) == 25_000_000  # clockwise from the rear to the left
    assert phase.crossing_offset_ns(0.0) == 50_000_000


def test_sweep_phase_is_fitted_from_per_point_times() -> None:
    """A counter-clockwise sweep starting at azimuth 0: it crosses +90 degrees a quarter in."""
    t = np.linspace(0, 99_000_000, 2000).astype(np.int32)
    az = t / 100_000_000 * 2 * np.pi
    xyz = np.stack([10 * np.cos(az), 10 * np.sin(az), np.zeros_like(az)], 1).astype(np.float32)
    cloud = PointCloud(xyz=xyz, intensity=None, time_offset_ns=t, ring=None, frame_id="lidar", stamp_ns=0)
    phase = sweep_phase(cloud, SyncConfig())
    assert phase.fitted and phase.omega_rad_per_ns > 0
    assert phase.crossing_offset_ns(math.pi / 2) == pytest.approx(25_000_000, abs=20_000)


def test_object_motion_compensation_moves_points_onto_moving_objects_surfaces() -> None:
    """Ego deskewing leaves a moving object's own motion in the sweep (points on traffic that moves
    with the ego even end up further from the box than raw ones); compensating each object's motion
    with its velocity (here the ground truth's; in the pipeline a refined track's) removes it."""
    from calib.deskew import compensate_object_motion

    gt = pq.read_table(GROUND_TRUTH).to_pandas()
    moving = gt[np.hypot(gt.velocity_x, gt.velocity_y) > 1.0]
    errors: dict[str, list[np.ndarray]] = {"raw": [], "ego": [], "ego+objects": []}
    raw_frames, _, _ = run(SAMPLE, SyncConfig(deskew=False))
    ego_frames, _, _ = run(SAMPLE, SyncConfig(deskew=True))
    for raw, ego in zip(raw_frames, ego_frames, strict=True):
        rows = moving[moving.frame_index == ego.index]
        if rows.empty or ego.world_from_lidar is None or ego.cloud.time_offset_ns is None:
            continue
        boxes = rows[["x", "y", "z", "length", "width", "height", "yaw"]].to_numpy(float)
        v_world = np.c_[rows.velocity_x, rows.velocity_y, np.zeros(len(rows))]
        v_lidar = v_world @ ego.world_from_lidar.rotation  # rows: R^T v
        both = compensate_object_motion(ego.cloud.xyz, ego.cloud.time_offset_ns, boxes, v_lidar)
        clouds = {"raw": raw.cloud.xyz, "ego": ego.cloud.xyz, "ego+objects": both}
        for box in boxes:
            for name, xyz in clouds.items():
                local = box_local(np.asarray(xyz, dtype=np.float64), box)
                near = np.all(np.abs(local) <= box[3:6] / 2 + 0.3, axis=1)
                errors[name].append(surface_distance(local[near], box[3:6]))
    mean = {name: float(np.mean(np.concatenate(d))) for name, d in errors.items()}
    assert mean["ego+objects"] < mean["raw"] / 2
    assert mean["ego+objects"] < mean["ego"] / 2
    assert mean["ego+objects"] < 0.03
