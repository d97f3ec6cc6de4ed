"""fusion.simulate: a deterministic synthetic log whose ground truth is exact."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from exporters.labels import read_labels
from fusion.bags import open_bag
from fusion.errors import FusionError
from fusion.simulate import SimulationResult, output_paths, simulate_log
from fusion.simulate.drive import FIRST_SWEEP_OFFSET_NS
from fusion.simulate.geometry import apply, inverse
from fusion.simulate.groundtruth import box_corners, frame_truth
from fusion.simulate.lidar import Sweep, simulate_sweep
from fusion.simulate.raycast import Material
from fusion.simulate.rig import Rig, default_rig
from fusion.simulate.scene import Scene, build_scene

SMALL_COLUMNS = 256


def _small(out: Path, *, seconds: float = 0.3, seed: int = 0) -> SimulationResult:
    """A short MCAP log with small images: fast to write."""
    return simulate_log(
        out,
        fmt="mcap",
        seconds=seconds,
        seed=seed,
        lidar_columns=SMALL_COLUMNS,
        image_width=160,
        image_height=100,
    )


CAMERA_TOPICS = ("camera_front", "camera_left", "camera_rear")


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    return _small(tmp_path_factory.mktemp("sim") / "drive")


@pytest.fixture(scope="module")
def scene() -> Scene:
    return build_scene(0)


@pytest.fixture(scope="module")
def rig() -> Rig:
    return default_rig()


def _sweep(scene: Scene, rig: Rig, index: int) -> Sweep:
    stamp = scene.start_ns + FIRST_SWEEP_OFFSET_NS + index * rig.lidar.period_ns
    return simulate_sweep(scene, rig.lidar, stamp, index=index, noise_seed=0)


def _world_from_lidar(scene: Scene, rig: Rig, t_ns: np.ndarray) -> np.ndarray:
    return scene.world_from_base(t_ns) @ rig.lidar.base_from_lidar()


def _box_surface_distance(points: np.ndarray, states: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Signed distance (N,) of world points to boxes (states (N, >=4), half sizes (3,)); 0 on a face."""
    d = points[:, :2] - states[:, :2]
    c, s = np.cos(states[:, 3]), np.sin(states[:, 3])
    local = np.column_stack(
        [c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], points[:, 2] - states[:, 2]]
    )
    dist: np.ndarray = np.max(np.abs(local) - half, axis=1)
    return dist


def _quat_matrix(q: Any) -> np.ndarray:
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _stamp(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# -- the log -------------------------------------------------------------------------------------


def test_same_seed_gives_a_byte_identical_log_and_ground_truth(
    tmp_path: Path, small_log: SimulationResult
) -> None:
    again = _small(tmp_path / "drive")
    assert again.log_path.read_bytes() == small_log.log_path.read_bytes()
    assert again.ground_truth_path.read_bytes() == small_log.ground_truth_path.read_bytes()
    other = _small(tmp_path / "other", seed=1)
    assert other.ground_truth_path.read_bytes() != small_log.ground_truth_path.read_bytes()


def test_same_seed_gives_identical_points(scene: Scene, rig: Rig) -> None:
    a = _sweep(scene, rig, 3)
    b = _sweep(build_scene(0), rig, 3)
    for name in ("xyz", "intensity", "ring", "time_offset_ns", "actor", "material"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_a_shorter_log_is_a_prefix_of_a_longer_one(tmp_path: Path, small_log: SimulationResult) -> None:
    short = _small(tmp_path / "short", seconds=0.1)
    a = read_labels(short.ground_truth_path).drop(["sequence_id"])
    b = read_labels(small_log.ground_truth_path).drop(["sequence_id"])
    assert short.num_sweeps == 1 and a.num_rows > 10
    assert a.equals(b.slice(0, a.num_rows))


def test_result_counts_what_was_written(small_log: SimulationResult) -> None:
    table = read_labels(small_log.ground_truth_path)
    assert small_log.num_sweeps == 3
    assert small_log.num_images == 9
    assert small_log.num_boxes == table.num_rows > 50
    assert small_log.num_tracks == len(set(table["track_id"].to_pylist()))
    assert set(table["origin"].to_pylist()) == {"detected"}
    assert set(table["score"].to_pylist()) == {1.0}
    assert min(table["num_points"].to_pylist()) >= 1
    assert pq.read_metadata(small_log.ground_truth_path).metadata[b"fusion.sequence_id"] == b"drive"


@pytest.mark.parametrize("fmt", ["ros1", "sqlite3", "mcap"])
def test_every_format_writes_a_log_with_the_expected_topics(tmp_path: Path, fmt: Any) -> None:
    result = simulate_log(
        tmp_path / "log", fmt=fmt, seconds=0.2, seed=3, lidar_columns=64, image_width=64, image_height=40
    )
    assert result.log_path == tmp_path / {"ros1": "log.bag", "mcap": "log.mcap", "sqlite3": "log"}[fmt]
    assert result.ground_truth_path == tmp_path / "log.labels.parquet"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([result.log_path.name, "log.labels.parquet"])
    with open_bag(result.log_path) as bag:
        counts = {name: info.count for name, info in bag.topics.items()}
        types = {name: info.msgtype for name, info in bag.topics.items()}
        poses = (FIRST_SWEEP_OFFSET_NS * 2 + 2 * 100_000_000) // 20_000_000 + 1
        expected = {"/tf_static": 1, "/tf": poses, "/odom": poses, "/lidar/points": 2}
        for cam in CAMERA_TOPICS:
            expected[f"/{cam}/image/compressed"] = 2
            expected[f"/{cam}/camera_info"] = 2
        assert counts == expected
        assert types["/lidar/points"] == "sensor_msgs/msg/PointCloud2"
        assert types["/tf_static"] == types["/tf"] == "tf2_msgs/msg/TFMessage"
        log_times = []
        for raw in bag.messages():
            log_times.append(raw.log_time_ns)
            msg = bag.deserialize(raw)
            if raw.topic == "/lidar/points":  # published once the sweep is complete
                assert raw.log_time_ns - _stamp(msg.header) >= 100_000_000
            elif raw.topic == "/tf":
                assert 0 < raw.log_time_ns - _stamp(msg.transforms[0].header) < 2_000_000
        assert log_times == sorted(log_times)


def test_output_names_follow_the_format(tmp_path: Path) -> None:
    assert output_paths(tmp_path / "drive", "mcap") == (
        tmp_path / "drive.mcap",
        tmp_path / "drive.labels.parquet",
    )
    assert output_paths(tmp_path / "d.v2", "ros1") == (
        tmp_path / "d.v2.bag",
        tmp_path / "d.v2.labels.parquet",
    )
    assert output_paths(tmp_path / "drive", "sqlite3") == (
        tmp_path / "drive",
        tmp_path / "drive.labels.parquet",
    )
    assert output_paths(tmp_path / "drive.db3", "sqlite3")[0] == tmp_path / "drive.db3"
    with pytest.raises(FusionError, match=r"\.mcap name does not fit --format ros1"):
        output_paths(tmp_path / "drive.mcap", "ros1")
    (tmp_path / "logs").mkdir()
    for fmt, name in (("mcap", "drive.mcap"), ("ros1", "drive.bag")):  # was: logs.mcap beside the folder
        with pytest.raises(
            FusionError, match=rf"logs: is a directory; give a file name in it, e\.g\. .*logs/{name}"
        ):
            output_paths(tmp_path / "logs", fmt)  # type: ignore[arg-type]


def test_rejects_arguments_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(FusionError, match="--seconds must be in"):
        simulate_log(tmp_path / "a", seconds=0.0)
    with pytest.raises(FusionError, match="--seed must be a non-negative integer"):
        simulate_log(tmp_path / "a", seed=-1)
    with pytest.raises(FusionError, match="unknown log format 'bag'"):
        simulate_log(tmp_path / "a", fmt="bag")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_an_existing_output(tmp_path: Path) -> None:
    (tmp_path / "drive.mcap").write_bytes(b"mine")
    with pytest.raises(FusionError, match=r"drive\.mcap exists; remove it or choose another OUT"):
        _small(tmp_path / "drive.mcap", seconds=0.1)
    (tmp_path / "other.labels.parquet").write_bytes(b"mine")
    with pytest.raises(FusionError, match=r"other\.labels\.parquet exists; remove it or choose another OUT"):
        _small(tmp_path / "other", seconds=0.1)
    assert (tmp_path / "drive.mcap").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive.mcap", "other.labels.parquet"]


def test_a_failure_leaves_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusion.simulate import drive

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(drive, "frame_truth", broken)
    with pytest.raises(FusionError, match=r"cannot write .*drive\.mcap: No space left on device"):
        _small(tmp_path / "drive", seconds=0.1)
    assert list(tmp_path.iterdir()) == []


def test_point_cloud_message_holds_the_sweep_in_the_velodyne_layout(small_log: SimulationResult) -> None:
    with open_bag(small_log.log_path) as bag:
        raw = next(iter(bag.messages(topics=["/lidar/points"])))
        msg = bag.deserialize(raw)
    assert msg.header.frame_id == "lidar"
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ("x", 0, 7),
        ("y", 4, 7),
        ("z", 8, 7),
        ("intensity", 12, 7),
        ("ring", 16, 4),
        ("time", 18, 7),
    ]
    assert msg.point_step == 22 and msg.height == 1
    dtype = np.dtype(
        {
            "names": ["x", "y", "z", "i", "ring", "time"],
            "formats": ["<f4"] * 4 + ["<u2", "<f4"],
            "offsets": [0, 4, 8, 12, 16, 18],
            "itemsize": 22,
        }
    )
    points = np.frombuffer(bytes(msg.data), dtype=dtype)
    rig = default_rig(columns=SMALL_COLUMNS)
    sweep = _sweep(build_scene(0), rig, 0)
    assert _stamp(msg.header) == sweep.stamp_ns
    np.testing.assert_array_equal(np.column_stack([points["x"], points["y"], points["z"]]), sweep.xyz)
    np.testing.assert_array_equal(points["ring"], sweep.ring)
    assert points["ring"].max() == 31
    assert points["time"].min() >= 0.0
    assert points["time"].max() < 0.1
    assert len(np.unique(points["time"])) == SMALL_COLUMNS  # one capture time per column


def test_camera_images_are_stamped_when_the_sweep_crosses_their_axis(small_log: SimulationResult) -> None:
    with open_bag(small_log.log_path) as bag:
        stamps: dict[str, list[int]] = {}
        static: dict[str, np.ndarray] = {}
        for raw in bag.messages():
            msg = bag.deserialize(raw)
            if raw.topic == "/tf_static":
                for tf in msg.transforms:
                    m = np.eye(4)
                    m[:3, :3] = _quat_matrix(tf.transform.rotation)
                    t = tf.transform.translation
                    m[:3, 3] = (t.x, t.y, t.z)
                    static[tf.child_frame_id] = m
            elif raw.topic not in {"/tf", "/odom"}:
                stamps.setdefault(raw.topic, []).append(_stamp(msg.header))
                if raw.topic.endswith("/image/compressed"):
                    assert msg.format == "jpeg" and bytes(msg.data[:2]) == b"\xff\xd8"
    sweeps = np.array(stamps["/lidar/points"])
    for cam in CAMERA_TOPICS:
        lidar_from_camera = inverse(static["lidar"]) @ static[cam]
        axis = lidar_from_camera[:3, 2]
        azimuth = math.atan2(axis[1], axis[0])
        swept = (math.pi - azimuth) % (2.0 * math.pi)  # clockwise from the rear, where sweeps start
        offset = round(swept / (2.0 * math.pi) * 100_000_000)
        np.testing.assert_array_equal(np.array(stamps[f"/{cam}/image/compressed"]) - sweeps, offset)
        assert stamps[f"/{cam}/camera_info"] == stamps[f"/{cam}/image/compressed"]
    front = np.array(stamps["/camera_front/image/compressed"]) - sweeps
    assert abs(front[0] - 50_000_000) < 1_000_000  # the front camera fires half a turn in


# -- exact geometry --------------------------------------------------------------------------------


def test_points_lie_on_the_box_of_the_object_they_hit_at_their_capture_time(scene: Scene, rig: Rig) -> None:
    sweep = _sweep(scene, rig, 5)
    hit = sweep.actor >= 0
    t_ns = sweep.stamp_ns + sweep.time_offset_ns[hit]
    world = apply(_world_from_lidar(scene, rig, t_ns), sweep.xyz[hit].astype(np.float64))
    actors = sweep.actor[hit]
    checked = 0
    for a in np.unique(actors):  # a loop over objects; each check is vectorised over its points
        mine = actors == a
        states = scene.actor_states(t_ns[mine], [int(a)])[:, 0]
        dist = _box_surface_distance(world[mine], states, scene.actor_half_sizes()[a])
        assert np.abs(dist).max() < 6 * rig.lidar.range_noise, scene.actors[a]
        checked += int(mine.sum())
    assert checked > 1000


def test_ground_truth_counts_exactly_the_points_that_hit_each_object(scene: Scene, rig: Rig) -> None:
    sweep = _sweep(scene, rig, 2)
    truth = frame_truth(scene, rig, sweep)
    counts = np.bincount(sweep.actor[sweep.actor >= 0], minlength=len(scene.actors))
    np.testing.assert_array_equal(truth.actor, np.flatnonzero(counts))
    np.testing.assert_array_equal(truth.num_points, counts[truth.actor])
    assert [scene.actors[a].track_id for a in truth.actor] == truth.track_id.tolist()


def test_written_ground_truth_is_the_box_at_the_sweep_stamp_in_the_lidar_frame(
    small_log: SimulationResult,
) -> None:
    table = read_labels(small_log.ground_truth_path).to_pandas()
    scene = build_scene(0)
    rig = default_rig(columns=SMALL_COLUMNS)
    frame = table[table.frame_index == 1]
    stamp = int(frame.timestamp_ns.iloc[0])
    assert stamp == scene.start_ns + FIRST_SWEEP_OFFSET_NS + rig.lidar.period_ns
    sweep = _sweep(scene, rig, 1)
    counts = np.bincount(sweep.actor[sweep.actor >= 0], minlength=len(scene.actors))
    track_to_actor = {a.track_id: i for i, a in enumerate(scene.actors)}
    assert sorted(frame.track_id) == sorted(scene.actors[a].track_id for a in np.flatnonzero(counts))
    actors = [track_to_actor[t] for t in frame.track_id]
    np.testing.assert_array_equal(frame.num_points.to_numpy(), counts[actors])
    states = scene.actor_states(np.array([stamp]), actors)[0]
    lidar_from_world = inverse(_world_from_lidar(scene, rig, np.array([stamp]))[0])
    np.testing.assert_allclose(
        frame[["x", "y", "z"]].to_numpy(), apply(lidar_from_world, states[:, :3]), atol=1e-9
    )
    np.testing.assert_allclose(frame[["world_x", "world_y", "world_z"]].to_numpy(), states[:, :3], atol=1e-12)
    np.testing.assert_allclose(frame[["velocity_x", "velocity_y"]].to_numpy(), states[:, 4:6], atol=1e-12)
    sizes = 2 * scene.actor_half_sizes()[actors]
    np.testing.assert_allclose(frame[["length", "width", "height"]].to_numpy(), sizes, atol=1e-12)
    heading = np.arctan2(lidar_from_world[1, 0], lidar_from_world[0, 0])
    yaw_err = np.angle(np.exp(1j * (frame.yaw.to_numpy() - (states[:, 3] + heading))))
    assert np.abs(yaw_err).max() < 1e-9
    assert ((frame.yaw >= -math.pi) & (frame.yaw < math.pi)).all()


def test_camera_boxes_contain_the_projected_centre(scene: Scene, rig: Rig) -> None:
    sweep = _sweep(scene, rig, 4)
    truth = frame_truth(scene, rig, sweep)
    half = scene.actor_half_sizes()[truth.actor]
    checked = 0
    for mount in rig.cameras:
        t_cam = sweep.stamp_ns + rig.trigger_offset_ns(mount)
        states = scene.actor_states(np.array([t_cam]), truth.actor)[0]
        camera_from_world = inverse(scene.world_from_base(np.array([t_cam]))[0] @ mount.base_from_camera())
        uv, _, valid = mount.camera.project(apply(camera_from_world, states[:, :3]))
        mine = np.array(truth.box_camera) == mount.name
        rows = truth.box_row[mine]
        ext = truth.box_extent[mine]
        has_box = np.zeros(len(truth.actor), dtype=bool)
        has_box[rows] = True
        assert has_box[valid].all()  # a visible centre means a box
        inside = valid[rows]
        u, v = uv[rows[inside], 0], uv[rows[inside], 1]
        box = ext[inside]
        assert ((box[:, 0] <= u) & (u <= box[:, 2]) & (box[:, 1] <= v) & (v <= box[:, 3])).all()
        assert (box[:, 0] >= -0.5).all() and (box[:, 2] <= mount.camera.width - 0.5).all()
        # every corner the camera sees lies in the box as well
        corners = apply(camera_from_world[None, None], box_corners(states, half))[rows]
        cuv, _, cvalid = mount.camera.project(corners.reshape(-1, 3))
        cuv = cuv.reshape(-1, 8, 2)
        cvalid = cvalid.reshape(-1, 8)
        lo = np.where(cvalid[..., None], cuv, np.inf).min(axis=1)
        hi = np.where(cvalid[..., None], cuv, -np.inf).max(axis=1)
        seen = cvalid.any(axis=1)
        assert (ext[seen, :2] <= lo[seen] + 1e-6).all() and (hi[seen] <= ext[seen, 2:] + 1e-6).all()
        checked += int(inside.sum())
    assert checked > 20


def test_points_are_not_motion_compensated(scene: Scene, rig: Rig) -> None:
    """A static wall's points, mapped with one pose for the whole sweep, miss the wall by ~ speed x dt."""
    sweep = _sweep(scene, rig, 1)
    wall = sweep.material == Material.BUILDING
    late = wall & (sweep.time_offset_ns > 90_000_000)
    early = wall & (sweep.time_offset_ns < 10_000_000)
    assert late.sum() > 50 and early.sum() > 50
    t_ns = sweep.stamp_ns + sweep.time_offset_ns
    exact = apply(_world_from_lidar(scene, rig, t_ns[wall]), sweep.xyz[wall].astype(np.float64))
    single = apply(
        _world_from_lidar(scene, rig, np.array([sweep.stamp_ns]))[0], sweep.xyz[wall].astype(np.float64)
    )
    boxes = scene.static.boxes[scene.static.box_material == Material.BUILDING]
    dist = np.min(
        [_box_surface_distance(exact, np.tile(b[[0, 1, 2, 6]], (len(exact), 1)), b[3:6]) for b in boxes],
        axis=0,
    )
    assert np.abs(dist).max() < 6 * rig.lidar.range_noise  # with each point's own pose: on a wall
    shift = np.linalg.norm(single - exact, axis=1)
    velocity, _ = scene.ego_velocity(np.array([sweep.stamp_ns]))
    speed = float(np.linalg.norm(velocity[0]))
    assert speed * 0.1 > 1.0  # the ego moves metres per sweep
    late_shift = shift[late[wall]]
    dt = (sweep.time_offset_ns[late] * 1e-9).mean()
    assert abs(np.median(late_shift) - speed * dt) < 0.25 * speed * dt
    assert np.median(shift[early[wall]]) < 0.15


def test_objects_leave_and_enter_range_and_hide_behind_others(scene: Scene, rig: Rig) -> None:
    seen = {k: set(frame_truth(scene, rig, _sweep(scene, rig, k)).track_id.tolist()) for k in (0, 5, 10, 25)}
    leaving, entering, hidden = 3, 5, 11  # scripted: a fast car ahead, an oncoming car, a pedestrian
    assert scene.actors[leaving - 1].category == "car" and scene.actors[hidden - 1].category == "pedestrian"
    assert leaving in seen[5] and leaving not in seen[25]
    assert entering not in seen[0] and entering in seen[25]
    assert hidden in seen[0] and hidden not in seen[10] and hidden in seen[25]


def test_committed_sample_is_what_the_readme_command_regenerates(tmp_path: Path) -> None:
    """data_samples/ holds `fusion simulate data_samples/sim_drive.mcap --seconds 3 --seed 0`."""
    from fusion.cli import main

    repo = Path(__file__).resolve().parents[2]
    assert (
        main(
            [
                "simulate",
                str(tmp_path / "sim_drive.mcap"),
                "--format",
                "mcap",
                "--seconds",
                "3",
                "--seed",
                "0",
            ]
        )
        == 0
    )
    ours = pq.read_table(tmp_path / "sim_drive.labels.parquet").to_pandas()
    committed = pq.read_table(repo / "data_samples" / "sim_drive.labels.parquet").to_pandas()
    assert list(ours["track_id"]) == list(committed["track_id"])
    assert list(ours["category"]) == list(committed["category"])
    assert list(ours["num_points"]) == list(committed["num_points"])
    for col in ("x", "y", "z", "length", "width", "height", "yaw"):
        assert np.allclose(ours[col], committed[col], atol=1e-6), col
    assert (tmp_path / "sim_drive.mcap").stat().st_size == (
        repo / "data_samples" / "sim_drive.mcap"
    ).stat().st_size


def test_cli_hdl64e_simulates_about_120k_points_a_sweep(tmp_path: Path) -> None:
    from fusion.cli import main

    assert (
        main(["simulate", str(tmp_path / "s.mcap"), "--seconds", "0.1", "--lidar", "hdl64e", "--seed", "3"])
        == 0
    )
    with open_bag(tmp_path / "s.mcap") as bag:
        raw = next(iter(bag.messages(["/lidar/points"])))
        cloud = bag.deserialize(raw)
    assert 100_000 < cloud.width * cloud.height < 140_000
