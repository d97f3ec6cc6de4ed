"""A deterministic synthetic drive log with exact ground truth (`fusion simulate`).

An ego vehicle drives a curving road among moving and parked cars, trucks, a bus, cyclists,
a motorcycle and pedestrians; a spinning LiDAR (32 beams, or 64 with `lidar="hdl64e"`;
per-point times, not motion compensated) and three distorted cameras record it, with
/tf_static, /tf and /odom. The ground truth is written beside the log as a labels table of
shared/CONTRACT.md. See `drive` for the log's layout and naming, `groundtruth` for what the
labels mean, `scene` and `rig` for the world and the sensors.
"""

from fusion.simulate.drive import SimulationResult, output_paths, simulate_log

__all__ = ["SimulationResult", "output_paths", "simulate_log"]
