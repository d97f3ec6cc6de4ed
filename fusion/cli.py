"""`fusion` command line: thin verbs over the library. Logging and progress output live here only."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fusion import __version__
from fusion.errors import FusionError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa

    from calib.calibration import Calibration
    from fusion.config import RunConfig
    from fusion.evaluation import EvalConfig, TrackingConfig
    from fusion.prelabel import DetectSummary, LogFailure

log = logging.getLogger("fusion")

EXIT_USAGE = 2  # bad input: a missing path, a corrupt bag, a wrong option; or a fatal error
EXIT_LOGS_FAILED = 1  # detect/run: some logs failed (listed in the summary); the others are written


def _exit_epilog(retry: str) -> str:
    """The exit statuses of detect and run (their --help epilog)."""
    return (
        "exit status: 0 every log was pre-labelled; 1 some logs failed (the summary lists each with its "
        f"error; the others are in the dataset; {retry}); 2 bad usage or a fatal error (nothing "
        "written: a missing log, output in the way, the cluster lost); 130 interrupted (Ctrl-C: no "
        "sequence of this run is left)"
    )


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


def _cmd_convert(args: argparse.Namespace) -> int:
    from fusion.convert import convert

    result = convert(
        Path(args.src),
        args.source,
        Path(args.out),
        fmt=args.format,
        hz=args.hz,
        calibration=args.calibration,
        frames=args.frames,
        poses=args.poses,
        frame_id=args.frame_id,
        overwrite=args.overwrite,
    )
    print(result.summary())
    return 0


def _run_config(args: argparse.Namespace) -> RunConfig:
    """The run's configuration: --config FILE (or the defaults), then each flag given on top."""
    from fusion.config import RunConfig, load_config

    config = load_config(args.config) if args.config else RunConfig()
    options = _detector_options(args, args.detector or config.detector.name)
    return config.with_overrides(
        lidar_topic=args.lidar_topic,
        camera_topics=tuple(args.camera_topic) if args.camera_topic else None,
        detector=args.detector,
        detector_options=options,
        track=False if args.no_track else None,
        points=False if args.no_points else None,
        images=False if args.no_images else None,
        image_format=args.image_format,
        chunk_s=getattr(args, "chunk_s", None),
    )


def _cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fusion.pipeline import check_unique_logs
    from fusion.prelabel import prelabel_logs

    config = _run_config(args)
    check_unique_logs(args.logs)
    out = Path(args.out)
    bars: dict[str, tqdm] = {}

    def progress(sid: str, done: int, total: int) -> None:
        bar = bars.get(sid)
        if bar is None:
            bar = bars[sid] = tqdm(desc=sid, total=total, unit="sweep", disable=args.quiet, leave=False)
        bar.update(done - bar.n)

    failures: list[LogFailure] = []
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
            on_failure=failures.append,
        )
    finally:
        for bar in bars.values():
            bar.close()
    _print_summary(summaries, out, time.perf_counter() - t0, failures)
    return EXIT_LOGS_FAILED if failures else 0


def _print_summary(
    summaries: Sequence[DetectSummary],
    out: Path,
    wall_s: float,
    failures: Sequence[LogFailure] = (),
    skipped: Sequence[str] = (),
) -> None:
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
    if skipped:
        print(f"{len(skipped)} sequence(s) already complete in {out}, skipped: {', '.join(skipped)}")
    for f in failures:
        print(f"FAILED {f.log_path}: {f.error}")
    failed = f", {len(failures)} FAILED" if failures else ""
    written = (out / "dataset.json").exists()
    print(
        f"{len(summaries)} log(s) done{failed}, {total_sweeps} sweeps, {total_boxes} boxes in "
        f"{total_tracks} tracks, {warnings} warning(s), {wall_s:.1f} s "
        f"({total_sweeps / max(wall_s, 1e-9):.1f} sweeps/s) -> "
        + (f"dataset {out}" if written or summaries or skipped else "nothing written")
    )
    if summaries or skipped:
        print(f'load the labels: pandas.read_parquet("{out / "labels"}")')
    else:
        print(f"no log finished{'' if written else f': no dataset was written at {out}'}")
    if failures:
        print(
            f"fusion: {len(failures)} of {len(failures) + len(summaries)} log(s) failed (listed above; "
            "see --help for how to retry them)",
            file=sys.stderr,
        )


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fusion.pipeline import Progress, check_logs, run

    config = _run_config(args)
    if args.scheduler is not None:
        _check_scheduler(args.scheduler)
    else:
        _check_local_device(config)
    if args.calibration:
        _calibration(args)  # a file that does not parse fails here, before any worker starts
    check_logs(args.logs)  # before the progress bar is drawn
    out = Path(args.out)
    failures: list[LogFailure] = []
    skipped: list[str] = []
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
            on_failure=failures.append,
            on_skip=skipped.append,
        )
    _print_summary(summaries, out, time.perf_counter() - t0, failures, skipped)
    return EXIT_LOGS_FAILED if failures else 0


def _check_local_device(config: RunConfig) -> None:
    """On a local cluster (workers on this machine), a CUDA device this machine lacks is a fatal
    error before any worker starts (exit 2), as in `fusion detect`; it failed every log one by one
    (exit 1). A remote cluster's workers may have the GPU the client lacks: not checked there."""
    from fusion.detect import LEARNED_DETECTORS

    device = str(config.detector.options.get("device", "auto"))
    if config.detector.name in LEARNED_DETECTORS and device.startswith("cuda"):
        try:
            from fusion.detect.learned.detector import resolve_device
        except ImportError:  # no torch here: the workers say so, log by log
            return
        resolve_device(device)


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


def _load_truth(path: Path, calibration: str | None, calib_option: str = "--gt-calib") -> pa.Table:
    """Ground truth as a labels table: a labels parquet (or folder of them, or a dataset), an
    Argoverse 2 annotations.feather, or a KITTI label_2 file / tracking label file (with
    `calib_option`, the flag that gives its calibration: --gt-calib, or qa's --reviewed-calib)."""
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
            raise UsageError(
                f"{path}: a KITTI label file needs {calib_option} (its calib/<frame>.txt, or calib/<seq>.txt "
                "for a tracking label file)"
            )
        try:
            first = path.read_text(encoding="utf-8").split("\n", 1)[0].split()
        except FileNotFoundError as err:
            raise UsageError(f"{path}: no such label file; give an existing KITTI label .txt") from err
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(
                f"{path}: cannot be read as a KITTI label text file ({err}); give the label .txt"
            ) from err
        is_tracking = len(first) >= 17 and first[0].lstrip("-").isdigit()
        reader = kitti_tracking_labels if is_tracking else kitti_object_labels
        return reader(path, calibration)
    return load_labels(path)


def _aligned_truth(
    pred_path: Path, pred: pa.Table, truth: pa.Table, gt_path: Path, command: str = "fusion eval"
) -> pa.Table:
    """An Argoverse 2 annotations.feather numbers the whole log's sweeps: its boxes are put on the
    predicted sweeps with the same timestamp, the sweeps not predicted left out (said on stderr).
    For `fusion eval`'s ground truth and `fusion qa`'s reviewed labels alike."""
    if gt_path.suffix != ".feather":
        return truth
    from fusion.evaluation.align import align_truth_by_timestamp, prediction_frames

    aligned, kept, total = align_truth_by_timestamp(truth, prediction_frames(pred_path, pred))
    print(
        f"{command}: {kept} of the {total} annotated sweeps of {gt_path.name} are predicted sweeps "
        "(matched by timestamp_ns); the other sweeps' boxes are left out",
        file=sys.stderr,
    )
    return aligned


def _read_toml(path: str, what: str) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"{path}: cannot read the {what}: {err}") from err


def _eval_overrides(config: EvalConfig, args: argparse.Namespace) -> EvalConfig:
    """`config` with --max-range, --score and --iou (one operating IoU for every category) applied."""
    from fusion.evaluation import EvalConfig

    if args.max_range is None and args.score is None and args.iou is None:
        return config
    data = config.to_json()
    if args.max_range is not None:
        data["max_range_m"] = args.max_range
    if args.score is not None:
        data["operating_score"] = args.score
    if args.iou is not None:
        data["operating_iou"] = dict.fromkeys(data["operating_iou"], args.iou)
    return EvalConfig.from_json(data)


def _tracking_config(doc: dict[str, Any] | None, args: argparse.Namespace) -> TrackingConfig:
    """`fusion eval --tracking`'s TrackingConfig: the TOML's [tracking] table, then --match,
    --max-range and --iou (the pairs' IoU threshold)."""
    from fusion.evaluation import TrackingConfig

    if args.score is not None:
        raise UsageError(
            "fusion eval --tracking: --score sets the detection operating point; the tracking metrics "
            "sweep every score threshold (sAMOTA, the best MOTA's): drop --score"
        )
    data: dict[str, Any] = {}
    if doc is not None:
        if not isinstance(doc.get("tracking"), dict):
            raise UsageError(
                f"{args.config}: no [tracking] table; --tracking reads its settings from one "
                "(fusion.evaluation.TrackingConfig's keys, e.g. max_range_m = 50.0)"
            )
        data = dict(doc["tracking"])
    if args.match:
        data["match"] = args.match
    if args.max_range is not None:
        data["max_range_m"] = args.max_range
    if args.iou is not None:
        data["iou_threshold"] = args.iou
    return TrackingConfig.from_json(data)


def _cmd_eval(args: argparse.Namespace) -> int:
    from fusion.evaluation import (
        EvalConfig,
        evaluate,
        evaluate_tracking,
        format_table,
        format_tracking_table,
        load_labels,
    )

    doc = _read_toml(args.config, "evaluation config") if args.config else None
    measure: Callable[[Any, Any], Any]
    table: Callable[[Any], str]
    if args.tracking:  # every setting checked before any file is read
        tconfig = _tracking_config(doc, args)
        measure, table = (lambda p, t: evaluate_tracking(p, t, tconfig)), format_tracking_table
    else:
        if args.match:
            raise UsageError("fusion eval: --match pairs tracks; give it with --tracking")
        config = EvalConfig.from_json(doc.get("eval", doc)) if doc is not None else EvalConfig()
        config = _eval_overrides(config, args)
        measure, table = (lambda p, t: evaluate(p, t, config)), format_table
    pred = load_labels(Path(args.pred))
    truth = _aligned_truth(Path(args.pred), pred, _load_truth(Path(args.gt), args.gt_calib), Path(args.gt))
    result: Any = measure(pred, truth)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2, sort_keys=True, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(table(result))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from exporters.formats import export_dataset

    written = export_dataset(Path(args.out), args.format, Path(args.dest), sequence_ids=args.sequence)
    for path in written:
        print(path)
    print(f"{args.out}: exported as {args.format} to {args.dest} ({len(written)} entries)")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from exporters.formats import import_labels

    dataset = import_labels(
        args.format, Path(args.src), Path(args.dest), logistic_scores=args.logistic_scores
    )
    for seq in dataset:
        labels = seq.labels()
        tracks = len(set(labels.column("track_id").to_pylist()))
        print(f"{seq.sequence_id}: {seq.num_frames} frames, {labels.num_rows} boxes in {tracks} tracks")
    print(f"{args.src}: imported as a dataset at {args.dest} (read it with fusion eval --pred {args.dest})")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from fusion.view import ViewConfig, view_dataset

    summary = view_dataset(
        Path(args.out),
        sequence=args.sequence,
        save=Path(args.save) if args.save else None,
        overwrite=args.overwrite,
        config=ViewConfig(color_by=args.color_by),
    )
    where = f"-> {summary.path}" if summary.path is not None else "-> the Rerun viewer"
    print(
        f"{', '.join(summary.sequences)}: {summary.frames} sweeps, {summary.boxes} boxes, "
        f"{summary.images} images {where}"
    )
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from fusion.render import RenderConfig, TracksConfig, render_frame, render_tracks

    if (args.frame is None) == (not args.tracks):
        raise UsageError(
            "fusion render: give --frame N (one sweep) or --tracks (the whole sequence), not both"
        )
    if args.tracks and args.range is not None:
        raise UsageError(
            "fusion render: --range sets --frame's bird's-eye view; --tracks maps the whole sequence: "
            "drop --range"
        )
    if args.tracks:
        tracks = render_tracks(
            Path(args.out),
            args.sequence,
            Path(args.dest),
            config=TracksConfig(dpi=args.dpi),
            overwrite=args.overwrite,
        )
        print(
            f"{tracks.path}: {tracks.width}x{tracks.height} px, {tracks.tracks} tracks, {tracks.boxes} boxes "
            f"({tracks.interpolated} interpolated), {tracks.flagged_tracks} in the review queue, "
            f"map in the {tracks.map_frame} frame"
        )
        return 0
    summary = render_frame(
        Path(args.out),
        args.sequence,
        args.frame,
        Path(args.dest),
        config=RenderConfig(dpi=args.dpi)
        if args.range is None
        else RenderConfig(bev_range_m=args.range, dpi=args.dpi),
        overwrite=args.overwrite,
    )
    cams = ", ".join(summary.cameras) or "no camera images"
    print(f"{summary.path}: {summary.width}x{summary.height} px, {summary.boxes} boxes, {cams}")
    return 0


def _cmd_qa(args: argparse.Namespace) -> int:
    if args.flags is None and args.prelabels is None and args.reviewed is None:
        raise UsageError("fusion qa: give --prelabels OUT --reviewed REVIEWED, or --flags OUT, or both")
    if (args.prelabels is None) != (args.reviewed is None):
        raise UsageError("fusion qa: --prelabels and --reviewed go together; give both")
    document: dict[str, Any] = {}
    text: list[str] = []
    if args.prelabels is not None:
        from fusion.evaluation import load_labels
        from fusion.evaluation.qa import (
            QAConfig,
            check_plot_path,
            compare_reviewed,
            format_qa_table,
            plot_iou_histogram,
        )

        if args.plot:
            check_plot_path(args.plot)  # before the comparison, not after it

        config = QAConfig()
        if args.config:
            doc = _read_toml(args.config, "qa config")
            config = QAConfig.from_json(doc.get("qa", doc))
        config = replace(config, eval=_eval_overrides(config.eval, args))
        prelabels = load_labels(Path(args.prelabels))
        reviewed = _aligned_truth(
            Path(args.prelabels),
            prelabels,
            _load_truth(Path(args.reviewed), args.reviewed_calib, "--reviewed-calib"),
            Path(args.reviewed),
            "fusion qa",
        )
        result = compare_reviewed(prelabels, reviewed, config)
        if args.plot:
            plot_iou_histogram(result, args.plot)
        document = result.to_json()
        text.append(format_qa_table(result))
    if args.flags is not None:
        from fusion.flags import format_queue, queue_to_json, read_queue

        queue = read_queue(Path(args.flags))
        document = {**(document or {"format": "fusion.qa/1"}), "queue": queue_to_json(queue, args.top)}
        text.append(format_queue(queue, args.top))
    if args.json:
        json.dump(document, sys.stdout, indent=2, sort_keys=True, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print("\n".join(text), end="")
    return 0


class UsageError(FusionError):
    """A command-line option that cannot work (an unknown name, a bad combination)."""


LEARNED_FLAGS = ("checkpoint", "model_config", "device", "batch_size", "score_calibration")


def _detector_options(args: argparse.Namespace, detector: str) -> dict[str, object]:
    """The learned detector's options given as flags, as plain values (they travel to Dask workers)."""
    from fusion.detect import LEARNED_DETECTORS

    given = [f"--{n.replace('_', '-')}" for n in LEARNED_FLAGS if getattr(args, n, None) is not None]
    if detector not in LEARNED_DETECTORS:
        if given:
            raise UsageError(f"{', '.join(given)} only apply to --detector {'|'.join(LEARNED_DETECTORS)}")
        return {}
    for flag, value in (("--checkpoint", args.checkpoint), ("--model-config", args.model_config)):
        if value is not None and not Path(value).is_file():
            raise UsageError(f"{value}: no such file ({flag})")
    options: dict[str, object] = {}
    if args.checkpoint:
        options["checkpoint"] = str(Path(args.checkpoint).resolve())
    if args.model_config:
        options["model_config"] = str(Path(args.model_config).resolve())
    if args.device:
        options["device"] = args.device
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise UsageError(f"--batch-size {args.batch_size}: use 1 or more")
        options["batch_size"] = args.batch_size
    if args.score_calibration is not None:
        if detector == "mmdet3d":
            raise UsageError("--score-calibration applies to --detector pointpillars|centerpoint")
        options["score_calibration"] = args.score_calibration
    return options


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """--config FILE and the flags that override it (shared by detect and run)."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML run configuration: [topics] [sync] [detector] [tracker] [output] (see fusion.config)",
    )
    p.add_argument(
        "--detector",
        help="geometric (default; no weights), pointpillars or centerpoint (mmdet3d checkpoints, pure "
        "torch), mmdet3d (any mmdet3d LiDAR model; needs mmdet3d installed)",
    )
    p.add_argument("--checkpoint", metavar="CKPT", help="learned detectors: the mmdet3d .pth checkpoint")
    p.add_argument(
        "--model-config",
        metavar="CFG",
        help="learned detectors: the mmdet3d config .py (or .toml/.json) of the checkpoint "
        "(default: the config stored in the checkpoint)",
    )
    p.add_argument("--device", help="learned detectors: auto (default: CUDA when available), cpu, cuda[:N]")
    p.add_argument(
        "--batch-size",
        type=_positive(int),
        metavar="N",
        help="learned detectors: sweeps per forward pass (8)",
    )
    p.add_argument(
        "--score-calibration",
        choices=("checkpoint", "raw"),
        help="pointpillars/centerpoint: checkpoint (default) = the per-category score calibration the "
        "checkpoint carries (scores = P(box is right); the shipped checkpoint has one), raw scores when it "
        "has none (mmdet3d checkpoints); raw = the network's raw scores always",
    )
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


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a finite number > 0 (`--workers -1` hung waiting for workers that never came;
    `--dpi 0` was a matplotlib traceback)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _fraction(*, zero: bool) -> Callable[[str], float]:
    """An argparse type: a number in [0, 1] (`zero`: scores) or (0, 1] (IoUs). It was refused later
    naming EvalConfig's fields (`EvalConfig.operating_iou['car'] = (1.5,)`), not the option."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (0.0 <= value <= 1.0 and (zero or value > 0.0)):
            raise argparse.ArgumentTypeError(f"must be in {'[0' if zero else '(0'}, 1], got {text}")
        return value

    parse.__name__ = "float"
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error, like every other error of fusion (not a usage block of
    ten lines above it); `--help` still prints the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fusion", description="Drive logs (ROS bags) in, 4D pre-labels out.")
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
        "detect",
        help="pre-label logs: boxes in every sweep, tracked and refined, as the contract's dataset",
        epilog=_exit_epilog("fix them and run again with --overwrite"),
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

    p = sub.add_parser(
        "run",
        help="pre-label many logs on Dask (a local cluster, or --scheduler tcp://...)",
        epilog=_exit_epilog("fix them and run the same command again: it does only those"),
    )
    p.add_argument("logs", nargs="+", metavar="LOG", help="bag(s) to run on")
    p.add_argument("--out", required=True, help="output dataset directory (shared/CONTRACT.md layout)")
    p.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler (default: local)"
    )
    p.add_argument(
        "--workers", type=_positive(int), metavar="N", help="local worker processes (default: one per core)"
    )
    p.add_argument("--calibration", metavar="FILE", help="calibration overriding the bag's (see inspect)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo every log, replacing the dataset at --out (default: add to it, skipping the "
        "sequences it already holds complete; its configuration must be the same)",
    )
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
    p.add_argument(
        "--max-range", type=_positive(float), metavar="M", help="evaluate only boxes within M metres"
    )
    p.add_argument(
        "--score",
        type=_fraction(zero=True),
        metavar="S",
        help="operating score for precision/recall/accuracy",
    )
    p.add_argument(
        "--iou",
        type=_fraction(zero=False),
        metavar="X",
        help="operating IoU X for every category (default: per category); with --tracking, the IoU "
        "a pair needs (default 0.25)",
    )
    p.add_argument(
        "--config",
        metavar="TOML",
        help="evaluation config (fusion.evaluation.EvalConfig's keys, or an [eval] table; with --tracking "
        "a [tracking] table of TrackingConfig's keys)",
    )
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

    p = sub.add_parser(
        "export",
        help="write a dataset's pre-labels for annotation tools: OpenLABEL, Xtreme1, KITTI, nuScenes",
    )
    p.add_argument("out", help="the dataset directory (the --out of fusion run/detect)")
    p.add_argument(
        "--format",
        required=True,
        metavar="FORMAT",
        help="openlabel (ASAM OpenLABEL 1.0 JSON per sequence), xtreme1 (Xtreme1 upload folder per "
        "sequence), kitti (KITTI tracking labels + calib per camera), nuscenes (nuScenes-style JSON)",
    )
    p.add_argument("--dest", required=True, help="folder to write into (created; nothing in it is replaced)")
    p.add_argument(
        "--sequence",
        action="append",
        metavar="ID",
        help="export only this sequence (repeatable; default all)",
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "import",
        help="bring reviewed labels (OpenLABEL or KITTI tracking) back as a dataset fusion eval reads",
    )
    p.add_argument(
        "src", help="an OpenLABEL .json (or a folder of them), or a KITTI tracking folder/label file"
    )
    p.add_argument("--format", required=True, metavar="FORMAT", help="openlabel or kitti")
    p.add_argument("--dest", required=True, help="the dataset directory to write (must not hold a dataset)")
    p.add_argument(
        "--logistic-scores",
        action="store_true",
        help="kitti: a tracker's raw confidences (outside 0..1) mapped through 1 / (1 + exp(-s))",
    )
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser(
        "view", help="show a dataset in the Rerun viewer, or save it as a Rerun recording (.rrd)"
    )
    p.add_argument("out", help="the dataset directory")
    p.add_argument("--sequence", metavar="ID", help="only this sequence (default: all)")
    p.add_argument("--save", metavar="FILE.rrd", help="write a recording instead of opening the viewer")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --save file")
    p.add_argument(
        "--color-by",
        choices=["height", "intensity"],
        default="height",
        help="colour of the points (default height)",
    )
    p.set_defaults(func=_cmd_view)

    p = sub.add_parser(
        "render",
        help="draw one sweep as a PNG (bird's-eye view beside every camera image), or a sequence's tracks",
    )
    p.add_argument("out", help="the dataset directory")
    p.add_argument("--sequence", required=True, metavar="ID", help="the sequence")
    p.add_argument("--frame", type=int, metavar="N", help="the frame index (0-based) of the sweep to draw")
    p.add_argument(
        "--tracks",
        action="store_true",
        help="draw every track of the sequence instead: paths on the map and lifelines over the frames",
    )
    p.add_argument("--out", dest="dest", required=True, metavar="FILE.png", help="the picture to write")
    p.add_argument(
        "--range",
        type=_positive(float),
        metavar="M",
        help="--frame's bird's-eye view: +-M metres (default 40)",
    )
    p.add_argument(
        "--dpi", type=_positive(int), default=100, help="pixels per inch (default 100: about 1660 px wide)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing picture")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser(
        "qa", help="pre-labels against reviewed labels (accuracy, edits, reviewer time); the review queue"
    )
    p.add_argument("--prelabels", metavar="OUT", help="the pre-labels: a dataset, a labels parquet or folder")
    p.add_argument(
        "--reviewed",
        metavar="REVIEWED",
        help="the reviewed labels: any --gt of fusion eval (dataset, labels parquet, AV2 feather, KITTI)",
    )
    p.add_argument("--reviewed-calib", metavar="FILE", help="KITTI calib.txt for a KITTI --reviewed")
    p.add_argument(
        "--iou",
        type=_fraction(zero=False),
        metavar="X",
        help="accuracy IoU X for every category (default: eval's)",
    )
    p.add_argument(
        "--score",
        type=_fraction(zero=True),
        metavar="S",
        help="pre-labels shown to reviewers: score >= S (0.5)",
    )
    p.add_argument("--max-range", type=_positive(float), metavar="M", help="only boxes within M metres")
    p.add_argument("--config", metavar="TOML", help="[qa] table: tolerances, [qa.cost] times, [qa.eval]")
    p.add_argument("--plot", metavar="FILE.png", help="draw the histogram of IoUs into FILE.png")
    p.add_argument("--flags", metavar="OUT", help="print OUT's review queue (flags), most severe first")
    p.add_argument("--top", type=_positive(int), metavar="N", help="with --flags: only the N most severe")
    p.add_argument("--json", action="store_true", help="print JSON on standard output")
    p.set_defaults(func=_cmd_qa)

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

    p = sub.add_parser(
        "convert",
        help="a KITTI raw drive, KITTI object frames, an Argoverse 2 log or a folder of PCD sweeps as a ROS "
        "bag fusion runs on",
    )
    p.add_argument(
        "src",
        help="the dataset folder: a KITTI raw drive, a KITTI object training/, an AV2 log, a folder of *.pcd",
    )
    p.add_argument(
        "--from", dest="source", required=True, choices=["kitti-raw", "kitti-object", "av2", "pcd"]
    )
    p.add_argument(
        "--out", required=True, help="the bag to write (.bag for ros1, .mcap, or a directory for sqlite3)"
    )
    p.add_argument("--format", choices=["ros1", "mcap", "sqlite3"], default="mcap")
    p.add_argument(
        "--hz",
        type=_positive(float),
        help="sweep rate of a folder without timestamps (KITTI raw, pcd: required there; KITTI object: "
        "default 1)",
    )
    p.add_argument(
        "--calibration", metavar="DIR_OR_FILE", help="kitti-raw: the date folder with calib_cam_to_cam.txt"
    )
    p.add_argument(
        "--frames", nargs="+", metavar="NNNNNN", help="kitti-object: the frames to take (default all)"
    )
    p.add_argument(
        "--poses",
        metavar="FILE",
        help="pcd: world_from_lidar poses, a line each: NAME (a PCD's stem) and the 3x4 matrix row by row "
        "(12 numbers), or the 12 numbers alone in the files' order (KITTI odometry poses.txt)",
    )
    p.add_argument("--frame-id", metavar="FRAME", help="pcd: the clouds' frame (default lidar)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (once the new bag is whole)"
    )
    p.set_defaults(func=_cmd_convert)
    return parser


def _refuse_empty_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty path or name ('') is a mistake (an unset shell variable, say), never "here": `--out ''`
    would otherwise write the dataset into the current directory."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[args.command]._actions:
        value = getattr(args, action.dest, None)
        if value == "" or (isinstance(value, list) and "" in value):
            name = action.option_strings[-1] if action.option_strings else (action.metavar or action.dest)
            raise FusionError(f"{name} is empty (''); give a path or name (. for the current directory)")


def _check_scheduler(address: str) -> None:
    """A --scheduler address Dask can connect to (tcp://HOST:PORT); raises FusionError before any output."""
    from distributed.comm.addressing import get_address_host_port, parse_address

    full = address if "://" in address else f"tcp://{address}"  # as dask.distributed.Client reads it
    try:
        if parse_address(full, strict=True)[0] != "inproc":  # an in-process cluster has no host:port
            get_address_host_port(full)
    except ValueError as err:
        raise FusionError(
            f"--scheduler {address}: not a Dask scheduler address ({err}); "
            "give the tcp://HOST:PORT that `dask scheduler` prints"
        ) from err


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
        _refuse_empty_arguments(parser, args)
        return func(args)
    except BrokenPipeError:  # `fusion inspect LOG --json | head`: the reader has gone, so is our output
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 128 + 13  # as a process killed by SIGPIPE
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
