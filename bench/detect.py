"""Speed of the geometric detector, per core, stage by stage, against a classic Open3D pipeline.

    .venv/bin/python bench/detect.py [--repeats 5] [--sweeps 10] [--no-baseline] [--no-learned]

Sweeps (point counts are printed):
  sim hdl64e     simulated HDL-64E-like sweeps, 64 beams x 2048 columns (~128k points)
  sim vlp32c     simulated VLP-32C-like sweeps at the simulator's default 512 columns (~15k points)
  KITTI 000000   a real HDL-64E sweep (115k points, the full 360 degrees)
  KITTI 000008   a real sweep cropped to the camera's field of view (17k points)
  AV2            the Argoverse 2 sweeps present (two stacked 32-beam sensors, ~99k points)
Each sweep is run once to compile and warm up, then `--repeats` times; the table gives the median
per stage (ground, cluster, fit, split, classify: the public stage functions `GeometricDetector.detect`
composes, called one after the other as it does) and sweeps per second on one core.

Threads: numba, OpenMP and BLAS are pinned to one thread before anything loads, so the numbers are
per core. The baseline is what one would write with Open3D: a RANSAC ground plane
(`segment_plane`, 0.2 m, 100 iterations) then DBSCAN (`cluster_dbscan`, eps 0.5 m, 5 points) on
the rest, no boxes at all, on the first three sweeps of each set; its ratio is its time over ours
on those sweeps.

Learned detectors (a second table; torch with 2 CPU threads, and on the GPU with batches of 1 and 8
sweeps when CUDA is there): the PointPillars shipped in data_samples/ (trained on simulated drives),
and mmdet3d's full-size KITTI PointPillars and nuScenes CenterPoint-pillar configs (bench/configs/)
with seeded random weights: their network cost is a trained model's (the boxes they keep differ).
Time per sweep: voxelisation, the network, decoding and NMS, boxes in our convention (`detect`).
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy, numba and open3d load: a per-core number

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.detect_data import av2_frames, kitti_frames  # noqa: E402
from fusion.boxes import Boxes  # noqa: E402
from fusion.decode.types import PointCloud  # noqa: E402
from fusion.detect import GeometricDetector  # noqa: E402
from fusion.detect.classify import classify, to_boxes  # noqa: E402
from fusion.detect.cluster import azimuth_step, cluster_points  # noqa: E402
from fusion.detect.fit import S_COUNT, fit_clusters  # noqa: E402
from fusion.detect.geometric import points_of  # noqa: E402
from fusion.detect.ground import estimate_ground  # noqa: E402
from fusion.detect.split import split_rows  # noqa: E402
from fusion.simulate.lidar import simulate_sweep  # noqa: E402
from fusion.simulate.rig import default_rig  # noqa: E402
from fusion.simulate.scene import build_scene  # noqa: E402

STAGES = ("ground", "cluster", "fit", "split", "classify")


def sim_clouds(lidar: str, columns: int, count: int, seed: int = 1) -> list[PointCloud]:
    """`count` sweeps, one every 0.5 s, of the simulated drive (seed 1; lidar frame, as recorded)."""
    scene = build_scene(seed)
    rig = default_rig(columns=columns, lidar=lidar)
    out = []
    for k in range(count):
        stamp = scene.start_ns + 50_000_000 + k * 500_000_000
        sweep = simulate_sweep(scene, rig.lidar, stamp, index=k, noise_seed=seed)
        out.append(PointCloud(sweep.xyz, sweep.intensity, None, sweep.ring, rig.lidar.frame_id, stamp))
    return out


def staged(detector: GeometricDetector, cloud: PointCloud) -> tuple[Boxes, npt.NDArray[np.float64]]:
    """`detector.detect(cloud)` stage by stage: (boxes, seconds per stage)."""
    cfg = detector.config
    t = [time.perf_counter()]
    xyz = points_of(cloud)
    ground = estimate_ground(xyz, cfg.ground)
    t.append(time.perf_counter())
    clusters = cluster_points(xyz, ground.height, cfg.cluster, azimuth_step=azimuth_step(xyz, cloud.ring))
    t.append(time.perf_counter())
    shapes = fit_clusters(xyz, ground.height, clusters, cfg.fit)
    t.append(time.perf_counter())
    clusters, shapes = split_rows(
        xyz, ground.height, clusters, shapes, cfg.split, cfg.fit, min_points=cfg.cluster.min_points
    )
    t.append(time.perf_counter())
    result = classify(shapes, cfg.classify)
    boxes = to_boxes(result, shapes.values[result.cluster, S_COUNT].astype(np.int64), cloud.frame_id, 0)
    t.append(time.perf_counter())
    return boxes, np.diff(t)


def open3d_baseline() -> Callable[[PointCloud], int] | None:
    try:
        import open3d as o3d
    except (ImportError, OSError):  # open3d needs libusb at import time (see the README)
        return None

    def run(cloud: PointCloud) -> int:
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.xyz.astype(np.float64)))
        _, inliers = pcd.segment_plane(distance_threshold=0.2, ransac_n=3, num_iterations=100)
        rest = pcd.select_by_index(inliers, invert=True)
        labels = np.asarray(rest.cluster_dbscan(eps=0.5, min_points=5))
        return int(labels.max() + 1)

    return run


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=10, help="simulated sweeps per LiDAR model")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Open3D baseline")
    parser.add_argument("--no-learned", action="store_true", help="skip the learned detectors' table")
    parser.add_argument("--learned-only", action="store_true", help="only the learned detectors' table")
    args = parser.parse_args(argv)

    sets: dict[str, list[PointCloud]] = {
        "sim hdl64e (64 x 2048)": sim_clouds("hdl64e", 2048, args.sweeps),
        "sim vlp32c (32 x 512)": sim_clouds("vlp32c", 512, args.sweeps),
    }
    for frame in kitti_frames():
        sets[f"KITTI {frame.name.split('/')[1]}"] = [frame.cloud]
    av2 = av2_frames()
    if av2:
        sets["AV2 (2 x 32 beams)"] = [f.cloud for f in av2]
    if not args.no_learned:
        learned_table({k: v[:3] for k, v in sets.items() if "AV2" not in k}, args.repeats)
    if args.learned_only:
        return 0
    detector = GeometricDetector()
    baseline = None if args.no_baseline else open3d_baseline()

    print(
        "| sweeps | points/sweep | boxes/sweep | "
        + " | ".join(f"{stage} ms" for stage in STAGES)
        + " | total ms | sweeps/s/core |"
        + (" Open3D RANSAC+DBSCAN ms | ratio |" if baseline else "")
    )
    print("|---" * (5 + len(STAGES) + (2 if baseline else 0)) + "|")
    for name, clouds in sets.items():
        stages = np.zeros((len(clouds), len(STAGES)))
        boxes = 0
        for k, cloud in enumerate(clouds):
            staged(detector, cloud)  # compile, warm the caches
            if len(detector.detect(cloud)) != len(staged(detector, cloud)[0]):
                raise SystemExit("the staged run does not give detect()'s boxes; fix bench/detect.py")
            runs = np.array([staged(detector, cloud)[1] for _ in range(args.repeats)])
            stages[k] = np.median(runs, axis=0)
            boxes += len(staged(detector, cloud)[0])
        per = stages.mean(axis=0) * 1e3
        total = float(per.sum())
        points = np.mean([len(c) for c in clouds])
        row = (
            f"| {name} | {points:,.0f} | {boxes / len(clouds):.0f} | "
            + " | ".join(f"{v:.1f}" for v in per)
            + f" | {total:.1f} | {1e3 / total:.0f} |"
        )
        if baseline:
            base = np.mean(
                [median_seconds(partial(baseline, c), max(1, args.repeats // 2)) for c in clouds[:3]]
            )
            ours = float(stages[:3].sum(axis=1).mean())  # on the same sweeps as the baseline
            row += f" {base * 1e3:.0f} | {base / ours:.0f}x |"
        print(row)
    return 0


def learned_detectors(tmp: Path) -> dict[str, Path]:
    """Checkpoints to time: the shipped PointPillars, and full-size mmdet3d models with random weights."""
    import torch

    from fusion.detect.learned import load_config_file, model_config_from_mmdet3d
    from fusion.detect.learned.checkpoint import mmdet3d_state
    from fusion.detect.learned.networks import PillarNet

    out = {"pointpillars, shipped (sim, small)": REPO / "data_samples" / "pointpillars_sim.pth"}
    for label, name in (
        ("pointpillars, mmdet3d KITTI full size", "pointpillars_kitti.py"),
        ("centerpoint pillar, mmdet3d nuScenes full size", "centerpoint_pillar02_nus.py"),
    ):
        variables = load_config_file(REPO / "bench" / "configs" / name)
        cfg = model_config_from_mmdet3d(variables)
        torch.manual_seed(0)
        path = tmp / name.replace(".py", ".pth")
        state = mmdet3d_state(PillarNet(cfg), cfg.key_prefix)
        torch.save({"meta": {"fusion_model_config": variables}, "state_dict": state}, path)
        out[label] = path
    return out


def learned_table(sets: dict[str, list[PointCloud]], repeats: int) -> None:
    """ms per sweep of each learned detector on each sweep set: CPU (2 threads), and CUDA if present."""
    import tempfile

    import torch

    from fusion.detect.learned import LearnedConfig, PillarDetector

    cuda = torch.cuda.is_available()
    head = "| detector | sweeps | points/sweep | CPU 2 threads ms/sweep | CPU sweeps/s |"
    if cuda:
        head += f" {torch.cuda.get_device_name(0)} batch 1 sweeps/s | batch 8 sweeps/s |"
    print(head)
    print("|---" * (5 + (2 if cuda else 0)) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, ckpt in learned_detectors(Path(tmp)).items():
            for name, clouds in sets.items():
                det = PillarDetector(LearnedConfig(checkpoint=ckpt, device="cpu", threads=2, batch_size=1))
                det.detect(clouds[0])  # compile the numba kernels, warm up
                times = [median_seconds(partial(det.detect, c), repeats) for c in clouds]
                ms = float(np.mean(times)) * 1e3
                points = np.mean([len(c) for c in clouds])
                row = f"| {label} | {name} | {points:,.0f} | {ms:.0f} | {1e3 / ms:.2f} |"
                if cuda:
                    for batch in (1, 8):
                        gpu = PillarDetector(LearnedConfig(checkpoint=ckpt, device="cuda", batch_size=batch))
                        many = (clouds * 8)[: max(8, batch)]
                        gpu.detect_batch(many)
                        torch.cuda.synchronize()
                        t = median_seconds(lambda g=gpu, m=many: g.detect_batch(m), repeats)
                        row += f" {len(many) / t:.1f} |"
                print(row, flush=True)
    torch.set_num_threads(1)


if __name__ == "__main__":
    raise SystemExit(main())
