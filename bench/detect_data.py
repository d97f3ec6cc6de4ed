"""Sweeps with ground truth for the detector's benches: simulated logs and the real KITTI/AV2 frames.

Used by `bench/detect.py` (speed), `bench/detect_eval.py` (AP and recall) and
`bench/calibrate_detect.py` (the score's weights). Simulated logs are written once into a cache
folder (default: the system temp folder) and read back through `fusion.bags` and `fusion.sync`,
so the detector sees what the pipeline gives it: deskewed sweeps, indexed as the ground truth.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq
from pyarrow import feather

from fusion.bags import open_bag
from fusion.decode.types import PointCloud
from fusion.simulate import simulate_log
from fusion.sync import prepare, synchronize

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("FUSION_DATASETS", REPO.parent / "shared" / "datasets"))
KITTI_FRAMES = {
    "kitti/000000": DATASETS / "kitti_object_vis/data/object/training",
    "kitti/000008": DATASETS / "mmdetection3d/demo/data/kitti",
}
AV2_LOG = DATASETS / "av2_api_test_data/tests/unit/test_data/sensor/val/7fab2350-7eaf-3b7e-a39d-6937a4c1bede"

LIDARS = {"vlp32c": 512, "hdl64e": 2048}  # simulated LiDAR model -> columns per revolution


@dataclass(frozen=True, eq=False)
class Frame:
    """One sweep and its ground truth (a labels-table slice: category, x..yaw, num_points)."""

    name: str  # "sim-hdl64e-s3/17", "kitti/000008", "av2/<stamp>"
    cloud: PointCloud
    truth: pd.DataFrame


def cache_dir() -> Path:
    path = Path(os.environ.get("FUSION_BENCH_CACHE", Path(tempfile.gettempdir()) / "fusion-bench-detect"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sim_frames(seed: int, lidar: str, *, seconds: float = 10.0, every: int = 5) -> list[Frame]:
    """Every `every`-th sweep of a simulated log (seed, LiDAR model), deskewed by fusion.sync."""
    stem = cache_dir() / f"sim-{lidar}-s{seed}-{seconds:g}s"
    log = stem.with_suffix(".mcap")
    gt_path = stem.with_name(stem.name + ".labels.parquet")
    if not (log.exists() and gt_path.exists()):
        log.unlink(missing_ok=True)
        gt_path.unlink(missing_ok=True)
        simulate_log(
            log,
            seconds=seconds,
            seed=seed,
            lidar=lidar,
            lidar_columns=LIDARS[lidar],
            image_width=64,
            image_height=40,
        )
    truth = pq.read_table(gt_path).to_pandas()
    frames = []
    with open_bag(log) as bag:
        ctx = prepare(bag)
        for fused in synchronize(bag, ctx):
            if fused.index % every:
                continue
            gt = truth[truth["frame_index"] == fused.index]
            frames.append(Frame(f"sim-{lidar}-s{seed}/{fused.index}", fused.cloud, gt.reset_index(drop=True)))
    return frames


def _cloud(xyz: npt.NDArray[np.float32], frame_id: str, stamp_ns: int = 0) -> PointCloud:
    return PointCloud(np.ascontiguousarray(xyz, dtype=np.float32), None, None, None, frame_id, stamp_ns)


def kitti_frames() -> list[Frame]:
    """The two real KITTI object frames (velodyne frame; ground ~1.73 m below the sensor)."""
    from fusion.evaluation.converters import kitti_object_labels

    out = []
    for name, root in KITTI_FRAMES.items():
        stem = name.split("/")[1]
        bin_path = root / "velodyne" / f"{stem}.bin" if (root / "velodyne").is_dir() else root / f"{stem}.bin"
        xyz = np.fromfile(bin_path, dtype=np.float32).reshape(-1, 4)[:, :3]
        truth = _kitti_truth(root, stem, xyz, kitti_object_labels)
        out.append(Frame(name, _cloud(xyz, "velodyne"), truth))
    return out


def _kitti_truth(root: Path, stem: str, xyz: npt.NDArray[np.float32], convert: object) -> pd.DataFrame:
    label = root / "label_2" / f"{stem}.txt"
    calib = root / "calib" / f"{stem}.txt"
    if label.is_file() and calib.is_file():
        table = convert(label, calib, points=xyz)  # type: ignore[operator]
        return table.to_pandas()
    return _mmdet_truth(root / f"{stem}.pkl")


def _mmdet_truth(pkl: Path) -> pd.DataFrame:
    """mmdetection3d's KITTI info: camera-rect boxes (x y z l h w ry, bottom centre) -> velodyne."""
    import pickle

    from fusion.evaluation.converters import kitti_rect_to_velodyne

    with pkl.open("rb") as f:
        info = pickle.load(f)["data_list"][0]
    rect_from_velo = np.asarray(info["images"]["R0_rect"], dtype=np.float64) @ np.asarray(
        info["lidar_points"]["Tr_velo_to_cam"], dtype=np.float64
    )
    names = {0: "pedestrian", 1: "cyclist", 2: "car"}
    rows = [i for i in info["instances"] if i["bbox_label_3d"] >= 0]
    cam = np.array([i["bbox_3d"] for i in rows], dtype=np.float64).reshape(-1, 7)
    # mmdet3d camera boxes: x y z (bottom centre) l h w ry -> the converter's h w l x y z ry
    ordered = np.stack([cam[:, 4], cam[:, 5], cam[:, 3], cam[:, 0], cam[:, 1], cam[:, 2], cam[:, 6]], axis=1)
    boxes = kitti_rect_to_velodyne(ordered, np.linalg.inv(rect_from_velo))
    df = pd.DataFrame(boxes, columns=["x", "y", "z", "length", "width", "height", "yaw"])
    df.insert(0, "category", [names[i["bbox_label_3d"]] for i in rows])
    df["num_points"] = [i["num_lidar_pts"] for i in rows]
    return df


def av2_frames() -> list[Frame]:
    """The Argoverse 2 sweeps present (ego frame, ground at z ~ 0) with their annotations."""
    from fusion.evaluation.converters import av2_annotations_labels

    table = av2_annotations_labels(AV2_LOG / "annotations.feather").to_pandas()
    out = []
    for path in sorted((AV2_LOG / "sensors" / "lidar").glob("*.feather")):
        stamp = int(path.stem)
        pts = feather.read_table(path).to_pandas()
        xyz = pts[["x", "y", "z"]].to_numpy(dtype=np.float32)
        ring = pts["laser_number"].to_numpy(dtype=np.uint16)
        truth = table[table["timestamp_ns"] == stamp].reset_index(drop=True)
        cloud = PointCloud(np.ascontiguousarray(xyz), None, None, ring, "ego", stamp)
        out.append(Frame(f"av2/{stamp}", cloud, truth))
    return out
