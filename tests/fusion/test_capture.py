"""fusion.capture: when the LiDAR caught each box, from the points' times or the sweep's phase."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fusion.bags import open_bag
from fusion.boxes import Boxes
from fusion.capture import capture_offsets_ns, phase_offsets_ns, with_capture_offsets
from fusion.decode import PointCloud
from fusion.detect import GeometricDetector
from fusion.prelabel import detect_in_batches
from fusion.sync import SweepPhase, SyncConfig, prepare, sweep_phase, synchronize

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"
PERIOD_NS = 100_000_000
# fusion.sync's fallback: clockwise from above, the beam behind (azimuth pi) at the stamp, 100 ms a turn
PHASE = SweepPhase(math.pi, -math.tau / PERIOD_NS, 0, False)


def car(x: float, y: float, yaw: float = 0.0) -> list[float]:
    return [x, y, 0.0, 4.5, 1.8, 1.5, yaw]


def surface(box: list[float], rng: np.random.Generator, n: int = 200) -> np.ndarray:
    """(n, 3) points on the box's outline (all four sides), within its height."""
    x, y, z, length, width, height, yaw = box
    u = rng.uniform(-0.5, 0.5, n)
    side = rng.integers(0, 4, n)
    lx = np.where(side < 2, u * length, np.where(side == 2, 0.49, -0.49) * length)
    ly = np.where(side < 2, np.where(side == 0, 0.49, -0.49) * width, u * width)
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([x + c * lx - s * ly, y + s * lx + c * ly, z + rng.uniform(-0.4, 0.4, n) * height], 1)


def cloud(xyz: np.ndarray, times_ns: np.ndarray | None) -> PointCloud:
    t = None if times_ns is None else np.asarray(times_ns, np.int32)
    return PointCloud(np.asarray(xyz, np.float32), None, t, None, "lidar", 0)


def beam_times(xyz: np.ndarray) -> np.ndarray:
    """When `PHASE`'s beam passes each point's azimuth (ns after the stamp)."""
    return np.asarray(((math.pi - np.arctan2(xyz[:, 1], xyz[:, 0])) % math.tau) / math.tau * PERIOD_NS)


def test_a_box_is_caught_when_the_beam_passes_its_azimuth() -> None:
    # ahead: half a turn after the beam pointed behind; on the left a quarter; on the right three
    boxes = np.array([car(20.0, 0.0), car(0.0, 20.0, math.pi / 2), car(0.0, -20.0, math.pi / 2)])
    offsets = phase_offsets_ns(boxes, PHASE)
    assert offsets == pytest.approx([50e6, 25e6, 75e6], abs=0.01e6)
    # the same from the box's points, whose times say it directly
    rng = np.random.default_rng(0)
    xyz = np.concatenate([surface(list(b), rng) for b in boxes])
    from_points = capture_offsets_ns(boxes, cloud(xyz, beam_times(xyz)), None)
    assert from_points == pytest.approx([50e6, 25e6, 75e6], abs=0.5e6)
    # sweep_phase fitted to such a sweep (a wall all round, 40 m off) gives the same line as the fallback
    az = np.linspace(-math.pi, math.pi, 2000, endpoint=False)
    wall = np.stack([40.0 * np.cos(az), 40.0 * np.sin(az), np.zeros_like(az)], axis=1)
    sweep = np.concatenate([wall, xyz])
    fitted = sweep_phase(cloud(sweep, beam_times(sweep)), SyncConfig())
    assert fitted.fitted
    assert phase_offsets_ns(boxes, fitted) == pytest.approx([50e6, 25e6, 75e6], abs=0.5e6)


def test_a_box_across_the_sweeps_seam_is_caught_in_the_middle_of_the_sweep() -> None:
    """A car behind the sensor straddles the azimuth where the sweep starts and ends: its left half
    is caught first, its right half a whole turn later, and its box's centre is between the two
    halves; the crossing time of its centre's azimuth would be either end of the sweep."""
    behind = np.array([car(-15.0, 0.3)])
    assert phase_offsets_ns(behind, PHASE) == pytest.approx([50e6], abs=2e6)
    xyz = surface(behind[0].tolist(), np.random.default_rng(1))
    times = beam_times(xyz)
    assert times.min() < 5e6 and times.max() > 95e6  # the halves, 0 and 100 ms in
    assert capture_offsets_ns(behind, cloud(xyz, times), PHASE) == pytest.approx([50e6], abs=3e6)
    # points on one side of the seam only (the box reaches across it, the points do not): their time
    visible = xyz[xyz[:, 1] > 0.05]
    one_side = capture_offsets_ns(behind, cloud(visible, beam_times(visible)), PHASE)
    assert one_side[0] < 5e6


def test_per_point_times_are_used_where_a_box_has_points_else_the_phase() -> None:
    boxes = np.array([car(20.0, 0.0), car(-2.0, 25.0)])
    xyz = surface(boxes[0].tolist(), np.random.default_rng(2))
    times = np.full(len(xyz), 12_000_000)  # a sensor whose timing the phase does not describe
    xyz = np.concatenate([xyz, [[-2.0, 25.0, 0.0]] * 2])  # 2 points (< MIN_POINTS) in the second
    times = np.concatenate([times, [99_000_000] * 2])
    offsets = capture_offsets_ns(boxes, cloud(xyz, times), PHASE)
    assert offsets[0] == 12_000_000
    assert offsets[1] == pytest.approx(phase_offsets_ns(boxes[1:], PHASE)[0])
    # no per-point times: the phase; no phase either: unknown
    assert capture_offsets_ns(boxes, cloud(xyz, None), PHASE) == pytest.approx(phase_offsets_ns(boxes, PHASE))
    assert np.isnan(capture_offsets_ns(boxes, cloud(xyz, None), None)).all()


def test_offsets_a_detector_set_are_kept_and_unknown_ones_filled() -> None:
    boxes = Boxes.build([car(20.0, 0.0), car(0.0, 20.0)], ["car", "car"], [0.9, 0.9], [50, 50],
                        frame_id="lidar", stamp_ns=0, capture_offset_ns=[0.0, np.nan])  # fmt: skip

    class Frame:  # what with_capture_offsets reads of a FusedFrame
        cloud = PointCloud(np.zeros((0, 3), np.float32), None, None, None, "lidar", 0)
        phase = PHASE

    filled = with_capture_offsets(boxes, Frame())  # type: ignore[arg-type]
    assert filled.capture_offset_ns == pytest.approx([0.0, 25e6])
    assert np.array_equal(filled.boxes, boxes.boxes)
    assert np.isnan(Boxes.build([car(1.0, 1.0)], ["car"], [0.5], [9], frame_id="l", stamp_ns=0)
                    .capture_offset_ns).all()  # fmt: skip


def test_detections_of_the_pipeline_carry_their_capture_offsets() -> None:
    """`detect_in_batches` (every detector's way into the pipeline) gives each box its offset: within
    the sweep, and matching the beam's crossing of its azimuth where it is not across the seam."""
    with open_bag(SAMPLE) as bag:
        ctx = prepare(bag, SyncConfig())
        frames = synchronize(bag, ctx, SyncConfig())
        found = [fb for _, fb in zip(range(3), detect_in_batches(GeometricDetector(), frames), strict=False)]
    assert sum(len(b) for _, b in found) > 20
    for frame, boxes in found:
        assert frame.phase is not None and frame.phase.fitted
        offsets = boxes.capture_offset_ns
        assert np.isfinite(offsets).all()
        assert ((offsets >= -1e6) & (offsets <= PERIOD_NS + 1e6)).all()
        centre = np.array([frame.phase.crossing_offset_ns(math.atan2(y, x)) for x, y in boxes.boxes[:, :2]])
        clear = np.abs(centre - 0.5 * PERIOD_NS) < 0.4 * PERIOD_NS  # away from the seam
        assert np.abs(offsets - centre)[clear].max() < 6e6  # a box spans a few ms of the sweep


def test_each_box_gets_the_times_of_exactly_the_points_inside_it() -> None:
    """Boxes spread over 240 m (the grid that finds a point's boxes grows its cells) and boxes that
    overlap: every box's earliest and latest point time as testing every point against every box."""
    rng = np.random.default_rng(5)
    n = 150
    boxes = np.c_[rng.uniform(-120, 120, (n, 2)), np.zeros(n), rng.uniform(0.5, 12, (n, 2)), np.full(n, 1.5),
                  rng.uniform(-3, 3, n)]  # fmt: skip
    boxes[1, :2] = boxes[0, :2] + 0.5  # two boxes sharing points
    xyz = np.concatenate([surface(list(b), rng, 20) for b in boxes] + [rng.uniform(-130, 130, (5000, 3))])
    times = rng.integers(0, PERIOD_NS, len(xyz))
    got = capture_offsets_ns(boxes, cloud(xyz, times), None)
    xyz32 = xyz.astype(np.float32).astype(np.float64)
    expected = np.full(n, np.nan)
    for k, (x, y, z, length, width, height, yaw) in enumerate(boxes):
        dx, dy = xyz32[:, 0] - x, xyz32[:, 1] - y
        inside = (
            (np.abs(dx * math.cos(yaw) + dy * math.sin(yaw)) <= length / 2)
            & (np.abs(-dx * math.sin(yaw) + dy * math.cos(yaw)) <= width / 2)
            & (np.abs(xyz32[:, 2] - z) <= height / 2)
        )
        if inside.sum() >= 3:
            expected[k] = 0.5 * (times[inside].min() + times[inside].max())
    assert np.isfinite(expected).sum() > 100
    assert np.array_equal(got, expected, equal_nan=True)
