"""How often the review queue points at boxes that really are wrong (simulated ground truth).

    python -m bench.flags_precision                       # the committed sample and its GT
    python -m bench.flags_precision --seeds 3 4 --seconds 3   # plus freshly simulated drives

Each log is pre-labelled (`fusion detect`'s pipeline: detect, track, refine, flags), then every
pre-label is judged against the simulator's exact ground truth with `fusion eval`'s rule
(class-agnostic greedy matching at the category's loose 3D IoU: car/truck/bus 0.5, others 0.25;
every score): a box is *wrong* when it matches no GT box or one of another category. For an
`id_switch` flag the box is also wrong when the GT track it matches differs from the one its track
matched in the track's previous matched frame.

A flag is a *hit* when at least half of the boxes it points at are wrong (one box, or every box of
its track for a whole-track flag); "any" counts a flag whose boxes include one wrong box. The
table gives per flag kind: flags, hits, precision (hits / flags), and the same with "any".
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from exporters.schema import CATEGORIES
from fusion.config import RunConfig
from fusion.detect import DETECTORS
from fusion.evaluation import EvalConfig, load_labels, match_boxes
from fusion.flags import FLAG_NAMES, FlagConfig, review_flags
from fusion.prelabel import prelabel_logs

SAMPLE = Path(__file__).resolve().parent.parent / "data_samples" / "sim_drive.mcap"


def wrong_boxes(pre: pa.Table, gt: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Per pre-label row: wrong (unmatched or wrong category) and identity-wrong (N,) bool."""
    config = EvalConfig(categories=CATEGORIES, operating_score=0.0)
    m = match_boxes(pre, gt, config)
    wrong = np.ones(pre.num_rows, dtype=bool)
    wrong[m.pred_row[m.right]] = False
    gt_track = np.full(pre.num_rows, -1, dtype=np.int64)
    paired = m.matched >= 0
    gt_tracks = gt.column("track_id").to_numpy()
    gt_track[m.pred_row[paired]] = gt_tracks[m.gt_row[m.matched[paired]]]
    track = pre.column("track_id").to_numpy()
    frame = pre.column("frame_index").to_numpy()
    seq = np.asarray(pre.column("sequence_id").to_pylist(), dtype=str)
    identity = np.zeros(pre.num_rows, dtype=bool)
    last: dict[tuple[str, int], int] = {}
    for r in np.lexsort((frame, track, seq)):
        key = (str(seq[r]), int(track[r]))
        if gt_track[r] < 0:
            continue
        if key in last and last[key] != gt_track[r]:
            identity[r] = True
        last[key] = int(gt_track[r])
    return wrong, identity


def judge(pre: pa.Table, gt: pa.Table, flags: pa.Table) -> dict[str, list[tuple[bool, bool]]]:
    """Flag kind -> [(hit, any-hit)] per flag."""
    wrong, identity = wrong_boxes(pre, gt)
    seq = np.asarray(pre.column("sequence_id").to_pylist(), dtype=str)
    track = pre.column("track_id").to_numpy()
    frame = pre.column("frame_index").to_numpy()
    out: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for f in flags.to_pylist():
        rows = (seq == f["sequence_id"]) & (track == f["track_id"])
        if f["frame_index"] is not None:
            rows &= frame == f["frame_index"]
        bad = wrong[rows] | (identity[rows] if f["flag"] == "id_switch" else False)
        out[f["flag"]].append((bool(bad.mean() >= 0.5), bool(bad.any())))
    return out


def _list(pre: pa.Table, gt: pa.Table, flags: pa.Table) -> None:
    wrong, identity = wrong_boxes(pre, gt)
    seq = np.asarray(pre.column("sequence_id").to_pylist(), dtype=str)
    track = pre.column("track_id").to_numpy()
    frame = pre.column("frame_index").to_numpy()
    for f in flags.to_pylist():
        rows = (seq == f["sequence_id"]) & (track == f["track_id"])
        if f["frame_index"] is not None:
            rows &= frame == f["frame_index"]
        bad = wrong[rows] | (identity[rows] if f["flag"] == "id_switch" else False)
        verdict = "HIT " if bad.mean() >= 0.5 else "miss"
        print(f"  {verdict} frame {f['frame_index']} track {f['track_id']} {f['flag']}: {f['detail']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="also simulate these seeds")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each simulated drive")
    parser.add_argument("--no-sample", action="store_true", help="leave the committed sample out")
    parser.add_argument("--work", type=Path, help="keep logs and outputs here (reused when present)")
    parser.add_argument("--verbose", action="store_true", help="list every flag with its verdict")
    args = parser.parse_args()

    results: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    boxes = wrong_total = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        logs: list[tuple[Path, Path]] = []
        if not args.no_sample:
            logs.append((SAMPLE, SAMPLE.with_name("sim_drive.labels.parquet")))
        for seed in args.seeds:
            from fusion.simulate import simulate_log

            log = work / f"seed{seed}_{args.seconds:g}s.mcap"
            if not log.exists():
                simulate_log(log, fmt="mcap", seconds=args.seconds, seed=seed)
            logs.append((log, log.with_name(f"{log.stem}.labels.parquet")))
        for log, truth in logs:
            out = work / f"out_{log.stem}"
            if not (out / "dataset.json").exists():
                config = RunConfig().with_overrides(points=False, images=False)
                prelabel_logs([log], out, detector=DETECTORS["geometric"](), config=config, overwrite=True)
            pre = load_labels(out)
            gt = load_labels(truth)
            flags = review_flags(pre, FlagConfig())
            if args.verbose:
                _list(pre, gt, flags)
            wrong, _ = wrong_boxes(pre, gt)
            boxes += pre.num_rows
            wrong_total += int(wrong.sum())
            for name, judged in judge(pre, gt, flags).items():
                results[name] += judged
            print(f"{log.name}: {pre.num_rows} pre-labels, {int(wrong.sum())} wrong, {flags.num_rows} flags")

    print(
        f"\nbase rate: {wrong_total} of {boxes} pre-labels wrong ({100 * wrong_total / max(boxes, 1):.1f} %)"
    )
    print(f"{'flag':<18}{'flags':>6}{'hits':>6}{'precision':>11}{'any':>6}{'prec(any)':>11}")
    total = [0, 0, 0]
    for name in FLAG_NAMES:
        judged = results.get(name, [])
        n, hits, anyhits = len(judged), sum(h for h, _ in judged), sum(a for _, a in judged)
        total = [total[0] + n, total[1] + hits, total[2] + anyhits]
        prec = f"{100 * hits / n:.1f} %" if n else "-"
        prec_any = f"{100 * anyhits / n:.1f} %" if n else "-"
        print(f"{name:<18}{n:>6}{hits:>6}{prec:>11}{anyhits:>6}{prec_any:>11}")
    n, hits, anyhits = total
    print(f"{'all':<18}{n:>6}{hits:>6}{(100 * hits / n if n else 0):>9.1f} %{anyhits:>6}"
          f"{(100 * anyhits / n if n else 0):>9.1f} %")  # fmt: skip


if __name__ == "__main__":
    main()
