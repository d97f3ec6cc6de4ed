"""`fusion` command line: thin verbs over the library. Logging and progress output live here only."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fusion import __version__
from fusion.errors import FusionError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa

    from calib.calibration import Calibration
    from fusion.config import RunConfig
    from fusion.prelabel import DetectSummary

log = logging.getLogger("fusion")

EXIT_USAGE = 2  # bad input: a missing path, a corrupt bag, a wrong option


def _cmd_inspect(args: argparse.Namespace) -> int:
    from fusion.inspect import format_report, inspect_log

    report = inspect_log(args.log, calibration=_calibration(args))
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 0


def _calibration(args: argparse.Namespace) -> Calibration | None:
    """The --calibration file, loaded (it overrides the bag's sensors one by one)."""
    if not getattr(args, "calibration", None):
        return None
    from calib.loaders import load_calibration

    return load_calibration(args.calibration)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from fusion.simulate import simulate_log

    columns = args.columns or {"vlp32c": 512, "hdl64e": 2048}[args.lidar]
    result = simulate_log(
        Path(args.out),
        fmt=args.format,
        seconds=args.seconds,
        seed=args.seed,
        lidar=args.lidar,
        lidar_columns=columns,
    )
    print(
        f"wrote {result.log_path} ({result.num_sweeps} sweeps, {result.num_images} images)\n"
        f"ground truth: {result.ground_truth_path} ({result.num_boxes} boxes, {result.num_tracks} tracks)"
    )
    return 0


def _run_config(args: argparse.Namespace) -> RunConfig:
    """The run's configuration: --config FILE (or the defaults), then each flag given on top."""
    from fusion.config import RunConfig, load_config

    config = load_config(args.config) if args.config else RunConfig()
    return config.with_overrides(
        lidar_topic=args.lidar_topic,
        camera_topics=tuple(args.camera_topic) if args.camera_topic else None,
        detector=args.detector,
        track=False if args.no_track else None,
        points=False if args.no_points else None,
        images=False if args.no_images else None,
        image_format=args.image_format,
        chunk_s=getattr(args, "chunk_s", None),
    )


def _cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fusion.prelabel import prelabel_logs

    config = _run_config(args)
    out = Path(args.out)
    bars: dict[str, tqdm] = {}

    def progress(sid: str, done: int, total: int) -> None:
        bar = bars.get(sid)
        if bar is None:
            bar = bars[sid] = tqdm(desc=sid, total=total, unit="sweep", disable=args.quiet, leave=False)
        bar.update(done - bar.n)

    t0 = time.perf_counter()
    try:
        summaries = prelabel_logs(
            [Path(p) for p in args.logs],
            out,
            detector=config.detector.build(),
            calibration=_calibration(args),
            config=config,
            overwrite=args.overwrite,
            progress=progress,
        )
    finally:
        for bar in bars.values():
            bar.close()
    _print_summary(summaries, out, time.perf_counter() - t0)
    return 0


def _print_summary(summaries: Sequence[DetectSummary], out: Path, wall_s: float) -> None:
    for s in summaries:
        cats = ", ".join(f"{n} {c}" for c, n in sorted(s.by_category.items(), key=lambda x: -x[1]))
        print(
            f"{s.sequence_id}: {s.sweeps} sweeps, {s.boxes} boxes in {s.tracks} tracks ({cats or 'none'}), "
            f"{len(s.warnings)} warning(s), {s.seconds:.1f} s"
        )
        for w in s.warnings:
            print(f"  warning: {w}")
    total_sweeps = sum(s.sweeps for s in summaries)
    total_boxes = sum(s.boxes for s in summaries)
    total_tracks = sum(s.tracks for s in summaries)
    warnings = sum(len(s.warnings) for s in summaries)
    print(
        f"{len(summaries)} log(s), {total_sweeps} sweeps, {total_boxes} boxes in {total_tracks} tracks, "
        f"{warnings} warning(s), {wall_s:.1f} s ({total_sweeps / max(wall_s, 1e-9):.1f} sweeps/s) "
        f"-> dataset {out}"
    )
    print(f'load the labels: pandas.read_parquet("{out / "labels"}")')


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fusion.pipeline import Progress, run

    config = _run_config(args)
    if args.calibration:
        _calibration(args)  # a file that does not parse fails here, before any worker starts
    out = Path(args.out)
    t0 = time.perf_counter()
    with tqdm(total=0, unit="sweep", disable=args.quiet, leave=False, desc="pre-labelling") as bar:

        def progress(p: Progress) -> None:  # from Dask's event-loop thread
            if bar.total != p.total:
                bar.total = p.total
            bar.update(p.done - bar.n)

        def on_done(summary: DetectSummary, done: int, total: int) -> None:
            bar.set_postfix_str(f"{done}/{total} logs")

        summaries = run(
            [Path(p) for p in args.logs],
            out,
            config=config,
            calibration=Path(args.calibration) if args.calibration else None,
            overwrite=args.overwrite,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=progress,
            on_done=on_done,
        )
    _print_summary(summaries, out, time.perf_counter() - t0)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from exporters.validate import validate_dataset

    problems = validate_dataset(Path(args.out))
    for problem in problems:
        print(problem)
    if problems:
        print(f"fusion: {args.out}: {len(problems)} problem(s) against the contract", file=sys.stderr)
        return 1
    print(f"{args.out}: a valid fusion dataset")
    return 0


def _load_truth(path: Path, calibration: str | None) -> pa.Table:
    """Ground truth as a labels table: a labels parquet (or folder of them, or a dataset), an
    Argoverse 2 annotations.feather, or a KITTI label_2 file / tracking label file (with --gt-calib)."""
    from fusion.evaluation import (
        av2_annotations_labels,
        kitti_object_labels,
        kitti_tracking_labels,
        load_labels,
    )

    if path.suffix == ".feather":
        return av2_annotations_labels(path)
    if path.suffix == ".txt":
        if calibration is None:
            raise UsageError(f"{path}: a KITTI label file needs --gt-calib (its calib/<frame>.txt)")
        first = path.read_text().split("\n", 1)[0].split()
        is_tracking = len(first) >= 17 and first[0].lstrip("-").isdigit()
        reader = kitti_tracking_labels if is_tracking else kitti_object_labels
        return reader(path, calibration)
    return load_labels(path)


def _cmd_eval(args: argparse.Namespace) -> int:
    import tomllib

    from fusion.evaluation import EvalConfig, evaluate, format_table, load_labels

    config = EvalConfig()
    if args.config:
        try:
            doc = tomllib.loads(Path(args.config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise UsageError(f"{args.config}: cannot read the evaluation config: {err}") from err
        config = EvalConfig.from_json(doc.get("eval", doc))
    if args.max_range is not None or args.score is not None:
        data = config.to_json()
        if args.max_range is not None:
            data["max_range_m"] = args.max_range
        if args.score is not None:
            data["operating_score"] = args.score
        config = EvalConfig.from_json(data)
    pred = load_labels(Path(args.pred))
    truth = _load_truth(Path(args.gt), args.gt_calib)
    if args.tracking:
        from fusion.evaluation import TrackingConfig, evaluate_tracking, format_tracking_table

        tconfig = TrackingConfig.from_json({"match": args.match}) if args.match else TrackingConfig()
        tracking = evaluate_tracking(pred, truth, tconfig)
        if args.json:
            json.dump(tracking.to_json(), sys.stdout, indent=2, sort_keys=True, allow_nan=False)
            sys.stdout.write("\n")
        else:
            print(format_tracking_table(tracking))
        return 0
    result = evaluate(pred, truth, config)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2, sort_keys=True, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(format_table(result))
    return 0


class UsageError(FusionError):
    """A command-line option that cannot work (an unknown name, a bad combination)."""


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """--config FILE and the flags that override it (shared by detect and run)."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML run configuration: [topics] [sync] [detector] [tracker] [output] (see fusion.config)",
    )
    p.add_argument("--detector", help="detector name (default: geometric)")
    p.add_argument(
        "--lidar-topic", metavar="TOPIC", help="PointCloud2 topic (default: the one with most messages)"
    )
    p.add_argument(
        "--camera-topic",
        action="append",
        metavar="TOPIC",
        help="image topic to use; repeat for more (default: every image topic with a CameraInfo)",
    )
    p.add_argument(
        "--no-track", action="store_true", help="skip tracking and 4D refinement (each box its own track)"
    )
    p.add_argument("--no-points", action="store_true", help="leave the points table out")
    p.add_argument("--no-images", action="store_true", help="leave the synchronised images out")
    p.add_argument(
        "--image-format",
        choices=["jpeg", "png"],
        help="re-encode every image to this format with OpenCV (default: store them as recorded)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusion", description="Drive logs (ROS bags) in, 4D pre-labels out."
    )
    parser.add_argument("--version", action="version", version=f"fusion {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="what is in a log: topics, rates, clouds, cameras, TF, problems")
    p.add_argument("log", help="a ROS1 .bag, a ROS2 bag directory, or a .db3/.mcap file")
    p.add_argument("--json", action="store_true", help="print stable JSON on standard output")
    p.add_argument(
        "--calibration",
        metavar="FILE",
        help="camera models and extrinsics that override the bag's, sensor by sensor "
        "(KITTI calib.txt or raw calib folder, ROS camera YAML, or fusion YAML/JSON; see README)",
    )
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser(
        "detect", help="pre-label logs: boxes in every sweep, tracked and refined, as the contract's dataset"
    )
    p.add_argument("logs", nargs="+", metavar="LOG", help="bag(s) to run on")
    p.add_argument(
        "--out", required=True, help="output directory; labels go to OUT/labels/<sequence>.parquet"
    )
    p.add_argument("--calibration", metavar="FILE", help="calibration overriding the bag's (see inspect)")
    p.add_argument("--overwrite", action="store_true", help="replace existing labels files")
    _add_config_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("run", help="pre-label many logs on Dask (a local cluster, or --scheduler tcp://...)")
    p.add_argument("logs", nargs="+", metavar="LOG", help="bag(s) to run on")
    p.add_argument("--out", required=True, help="output dataset directory (shared/CONTRACT.md layout)")
    p.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler (default: local)"
    )
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    p.add_argument("--calibration", metavar="FILE", help="calibration overriding the bag's (see inspect)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    _add_config_flags(p)
    p.add_argument("--chunk-s", type=float, metavar="S", help="seconds of log per parallel task (default 10)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check a dataset against the contract; non-zero exit on a violation")
    p.add_argument("out", help="the dataset directory")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("eval", help="compare predicted labels with ground truth (AP, accuracy, by range)")
    p.add_argument(
        "--pred", required=True, help="predicted labels: a labels parquet, a folder of them, or OUT"
    )
    p.add_argument(
        "--gt",
        required=True,
        help="ground truth: labels parquet/folder (fusion simulate writes one), an Argoverse 2 "
        "annotations.feather, or a KITTI label_2 / tracking label .txt (with --gt-calib)",
    )
    p.add_argument("--gt-calib", metavar="FILE", help="KITTI calib.txt for a KITTI --gt")
    p.add_argument("--max-range", type=float, metavar="M", help="evaluate only boxes within M metres")
    p.add_argument("--score", type=float, metavar="S", help="operating score for precision/recall/accuracy")
    p.add_argument("--config", metavar="TOML", help="evaluation config (see fusion.evaluation.EvalConfig)")
    p.add_argument(
        "--tracking",
        action="store_true",
        help="tracking metrics instead (MOTA, MOTP, IDF1, IDS, FRAG, HOTA, sAMOTA/AMOTA)",
    )
    p.add_argument(
        "--match",
        choices=["iou_3d", "bev_iou", "distance"],
        help="tracking: match by 3D IoU >= 0.25 (default, AB3DMOT's KITTI protocol), BEV IoU, or 2 m",
    )
    p.add_argument("--json", action="store_true", help="print stable JSON on standard output")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("simulate", help="write a synthetic drive log with exact ground truth")
    p.add_argument("out", help="output log path (.bag for ros1, .mcap, or a directory for sqlite3)")
    p.add_argument("--format", choices=["ros1", "mcap", "sqlite3"], default="mcap")
    p.add_argument("--seconds", type=float, default=3.0, help="length of the drive (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same log")
    p.add_argument(
        "--lidar",
        choices=["vlp32c", "hdl64e"],
        default="vlp32c",
        help="32-beam VLP-32C-like (default; 512 columns) or 64-beam HDL-64E-like (2048 columns, ~120k pts)",
    )
    p.add_argument("--columns", type=int, metavar="N", help="firings per revolution (default: per --lidar)")
    p.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="fusion: %(levelname)s: %(message)s",
    )
    if not args.debug:  # Dask's cluster chatter (and its copy of a task's error) is for --debug
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FusionError as err:
        if args.debug:
            traceback.print_exc()
        print(f"fusion: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fusion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
