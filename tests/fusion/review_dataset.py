"""A small real dataset for the reviewer-side tests (`fusion view`, `fusion render`), built in seconds.

The committed sample log (data_samples/sim_drive.mcap: 30 sweeps, three cameras, poses) is
pre-labelled by the real pipeline (`fusion.prelabel.prelabel_logs`: sync, points, images,
tracking and 4D refinement), with the log's own ground truth replayed as the detector's output
instead of the geometric detector (which takes tens of seconds on a busy machine). The result is
a complete dataset of the contract with points, images, world poses, velocities and trails.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fusion.boxes import BOX_FIELDS, Boxes
from fusion.config import RunConfig
from fusion.decode import PointCloud
from fusion.prelabel import prelabel_logs

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_samples" / "sim_drive.mcap"
TRUTH = REPO / "data_samples" / "sim_drive.labels.parquet"
SEQUENCE = "sim_drive"


class TruthReplay:
    """A `Detector` that returns the ground-truth boxes of the sweep with the cloud's stamp."""

    name = "truth-replay"

    def __init__(self, truth: Path = TRUTH) -> None:
        self.truth = pq.read_table(truth)

    def detect(self, cloud: PointCloud) -> Boxes:
        rows = self.truth.filter(pc.equal(self.truth["timestamp_ns"], cloud.stamp_ns))
        return Boxes(
            np.stack([rows.column(n).to_numpy() for n in BOX_FIELDS], axis=1)
            .astype(np.float64)
            .reshape(-1, 7),
            np.asarray(rows.column("category").to_pylist(), dtype=str),
            rows.column("score").to_numpy().astype(np.float32),
            rows.column("num_points").to_numpy().astype(np.int32),
            cloud.frame_id,
            cloud.stamp_ns,
            capture_offset_ns=np.zeros(rows.num_rows),  # the truth is at the stamp: no capture delay
        )

    def detect_batch(self, clouds: Sequence[PointCloud]) -> list[Boxes]:
        return [self.detect(c) for c in clouds]


def build_review_dataset(out: Path, *, points: bool = True, images: bool = True) -> Path:
    """Pre-label the sample log into dataset `out` with its ground truth as detections."""
    config = RunConfig().with_overrides(points=points, images=images)
    prelabel_logs([SAMPLE], out, detector=TruthReplay(), config=config)
    return out


_BUILT: dict[str, Path] = {}


def review_dataset(factory: pytest.TempPathFactory) -> Path:
    """The dataset, built once per test session."""
    if "out" not in _BUILT:
        _BUILT["out"] = build_review_dataset(factory.mktemp("review") / "out")
    return _BUILT["out"]
