"""`bench/kitti_tracking.py`'s refined results scored per fold of the training split, with refinement
settings changed on top of the bench's: what a change does on each fold on its own and on the whole split.

    .venv/bin/python bench/kitti_folds.py [--refine JSON] [--out DIR] [--data DIR]

--params: per-category tracker `Params` fields laid over the bench's, e.g. '{"pedestrian": {"gate_m": 3}}'.
--refine: a JSON object of `RefineConfig` fields laid over the bench's (`SENSOR_FRAME_AMODAL_REFINE`,
`RANKED_REFINE_SCORE`, `JOIN_ACROSS_GAPS`), e.g. '{"join_frames": {}}' (no joining: the bench before
session 8). Folds (as session 5 chose them,
balanced by ground-truth boxes): A = 0000, 0002, 0004, 0007, 0009, 0011; B = 0003, 0005, 0017, 0020.
Each fold is scored on its own (its own score sweep and best-MOTA threshold). --out keeps the result
files (OUT/<Class>/<seq>.txt, as bench/kitti_tracking.py writes them); else a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.kitti_tracking import (  # noqa: E402
    CLASSES,
    JOIN_ACROSS_GAPS,
    ONE_CATEGORY_PER_OBJECT,
    RANKED_REFINE_SCORE,
    SENSOR_FRAME_AMODAL_REFINE,
    SENSOR_FRAME_Q_ACCEL,
    concat_tables,
    detections_path,
    load_split,
    read_detections,
    refined_table,
    table_tracks,
    write_kitti,
)
from fusion.evaluation.kitti_mot import evaluate_kitti_mot, read_kitti_tracking  # noqa: E402
from trackers import RefineConfig, TrackerConfig, one_category_per_object  # noqa: E402
from trackers.config import RANKED_PARAMS  # noqa: E402

FOLDS = {
    "A": ("0000", "0002", "0004", "0007", "0009", "0011"),
    "B": ("0003", "0005", "0017", "0020"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "ab3dmot")
    parser.add_argument("--refine", default="{}", help="RefineConfig fields (JSON) over the bench's")
    parser.add_argument(
        "--params", default="{}", help="per-category tracker Params fields (JSON) over the bench's"
    )
    parser.add_argument("--out", type=Path, help="keep the result files here")
    args = parser.parse_args(argv)
    overrides = json.loads(args.refine)
    params = dict(RANKED_PARAMS)
    for category, q_accel in SENSOR_FRAME_Q_ACCEL.items():
        params[category] = replace(params[category], q_accel=q_accel)
    for category, fields_ in json.loads(args.params).items():
        params[category] = replace(params[category], **fields_)
    tracker_config = TrackerConfig(params=MappingProxyType(params))
    mapping = {**SENSOR_FRAME_AMODAL_REFINE, **RANKED_REFINE_SCORE, **JOIN_ACROSS_GAPS, **overrides}
    refine_config = replace(RefineConfig.from_mapping(mapping), params=tracker_config.params)
    sequences = load_split(args.data, "train")
    labels = {
        s.name: read_kitti_tracking(args.data / "scripts" / "KITTI" / "label" / f"{s.name}.txt")
        for s in sequences
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for seq in sequences:
            tables = [
                refined_table(
                    read_detections(detections_path(args.data, c, seq)),
                    seq,
                    cat,
                    tracker_config,
                    refine_config,
                )
                for c, cat in CLASSES.items()
            ]
            resolved = one_category_per_object(concat_tables(tables), **ONE_CATEGORY_PER_OBJECT)
            for kitti_class, category in CLASSES.items():
                (out / kitti_class).mkdir(parents=True, exist_ok=True)
                tracks = table_tracks(resolved.select(resolved.category == category), seq)
                write_kitti(out / kitti_class / f"{seq.name}.txt", tracks, kitti_class)
        print(f"refine overrides: {json.dumps(overrides)}; tracker params: {args.params}")
        print("| class | fold | sAMOTA | AMOTA | MOTA | IDS | FP | FN | recall reached |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for kitti_class in CLASSES:
            for fold, names in (*FOLDS.items(), ("all", tuple(s.name for s in sequences))):
                n_frames = {s.name: s.n_frames for s in sequences if s.name in names}
                written = {
                    n: read_kitti_tracking(out / kitti_class / f"{n}.txt", with_score=True) for n in n_frames
                }
                r = evaluate_kitti_mot(written, {n: labels[n] for n in n_frames}, n_frames, kitti_class)
                b = r.best
                reached = max((p.recall_point for p in r.points), default=0.0)
                mota = "-" if b.mota is None else f"{100 * b.mota:.2f}"
                print(
                    f"| {kitti_class} | {fold} | {100 * r.samota:.2f} | {100 * r.amota:.2f} | {mota} | "
                    f"{b.id_switches} | {b.fp} | {b.fn} | {reached:.3f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
