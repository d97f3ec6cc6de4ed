"""`fusion` command line: thin verbs over the library. Logging and progress output live here only."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fusion import __version__
from fusion.errors import FusionError

if TYPE_CHECKING:
    from calib.calibration import Calibration

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

    result = simulate_log(Path(args.out), fmt=args.format, seconds=args.seconds, seed=args.seed)
    print(
        f"wrote {result.log_path} ({result.num_sweeps} sweeps, {result.num_images} images)\n"
        f"ground truth: {result.ground_truth_path} ({result.num_boxes} boxes, {result.num_tracks} tracks)"
    )
    return 0


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

    p = sub.add_parser("simulate", help="write a synthetic drive log with exact ground truth")
    p.add_argument("out", help="output log path (.bag for ros1, .mcap, or a directory for sqlite3)")
    p.add_argument("--format", choices=["ros1", "mcap", "sqlite3"], default="mcap")
    p.add_argument("--seconds", type=float, default=3.0, help="length of the drive (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same log")
    p.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="fusion: %(levelname)s: %(message)s",
    )
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
