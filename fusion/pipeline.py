"""`fusion run`: many logs into one dataset on Dask — a local cluster, or a real one.

The graph: one task per log on the workers (decode, sync, deskew, detect, track, refine, and that
sequence's files written by the worker itself: points and images never travel to the client);
the client gathers only each sequence's small summary row, then writes `sequences.parquet` and
`dataset.json` last. Only this module knows Dask.

With no scheduler address a `LocalCluster` sized to the machine is started (one single-threaded
worker process per core: the hot loops are numba and hold the GIL only briefly, but processes keep
numba's and OpenCV's own threads from fighting). With `scheduler="tcp://host:8786"` an existing
cluster is used: start one with `dask scheduler` and `dask worker tcp://host:8786 --nthreads 1
--nworkers N` on each machine (on a batch cluster: the scheduler in one job, workers in an array
job). Workers must see the logs and `--out` at the same paths (a shared filesystem).

Splitting one long log into time chunks across workers is the next step; today a log is one task.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from exporters.dataset import DatasetWriter, PipelineInfo, SequenceInfo, SequenceWriter, dataset_paths
from exporters.schema import sequence_id_for
from fusion import __version__
from fusion.errors import FusionError
from fusion.flags import FlagConfig
from fusion.prelabel import DetectSummary, prelabel_sequence
from fusion.sync import SyncConfig

log = logging.getLogger(__name__)


class PipelineError(FusionError):
    """The cluster cannot be reached or a worker was lost."""


def _task(
    log_path: str,
    sid: str,
    out: str,
    detector_name: str,
    detector_options: Mapping[str, object] | None,
    calibration_path: str | None,
    config: SyncConfig,
    overwrite: bool,
    track: bool,
    points: bool,
    images: bool,
) -> tuple[DetectSummary, SequenceInfo]:
    """One log on a worker: everything is rebuilt from plain arguments (nothing heavy is shipped)."""
    from calib.loaders import load_calibration
    from fusion.detect import build_detector, learned_config

    detector_config = None
    if detector_options is not None:
        # one worker thread = one torch thread, so workers on one machine do not oversubscribe its cores
        detector_config = learned_config({"threads": _worker_threads(), **detector_options})
    detector = build_detector(detector_name, detector_config)
    calibration = load_calibration(calibration_path) if calibration_path else None
    seq = SequenceWriter(Path(out), sid, overwrite=overwrite)
    return prelabel_sequence(Path(log_path), sid, seq, detector, calibration, config, track, points, images)


def _worker_threads() -> int:
    """The threads of the Dask worker running this task (1 outside a worker)."""
    from dask.distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        return 1
    state = getattr(worker, "state", None)
    return max(1, int(getattr(state, "nthreads", getattr(worker, "nthreads", 1)) or 1))


def _wants_gpu(detector_options: Mapping[str, object] | None) -> bool:
    """Whether detection tasks should ask the scheduler for a GPU resource (a CUDA device requested)."""
    if detector_options is None:
        return False
    return str(detector_options.get("device", "auto")).startswith("cuda")


def _remove_sequences(out: Path, sids: Sequence[str]) -> None:
    for sid in sids:
        for path in dataset_paths(out, sid).values():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def run(
    logs: Sequence[Path],
    out: Path,
    *,
    detector: str = "geometric",
    detector_options: Mapping[str, object] | None = None,
    calibration: Path | None = None,
    sync_config: SyncConfig | None = None,
    overwrite: bool = False,
    track: bool = True,
    points: bool = True,
    images: bool = True,
    scheduler: str | None = None,
    workers: int | None = None,
    on_done: Callable[[DetectSummary, int, int], None] | None = None,
) -> list[DetectSummary]:
    """Pre-label `logs` into the dataset `out` on Dask. on_done(summary, done, total) per log.

    detector_options: a learned detector's plain options (checkpoint, model_config, device,
    batch_size; see fusion.detect.learned_config), rebuilt on each worker with torch threads set to
    the worker's threads. With `device="cuda..."` each task asks for the worker resource `GPU=1`:
    start workers with `dask worker ... --resources GPU=1` (one per GPU); a local cluster declares it.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    config = sync_config or SyncConfig()
    missing = [str(p) for p in logs if not Path(p).exists()]
    if missing:
        raise FusionError(f"{missing[0]}: no such file or directory; check the path")
    pipeline = PipelineInfo(
        version=__version__,
        detector=detector,
        tracker="trackers.Tracker + trackers.refine" if track else "none",
        config={
            "sync": asdict(config),
            "track": track,
            "points": points,
            "images": images,
            "flags": FlagConfig().to_json(),
            **({"detector": dict(detector_options)} if detector_options else {}),
        },
    )
    gpu = _wants_gpu(detector_options)
    summaries: list[DetectSummary] = []
    with DatasetWriter(out, pipeline=pipeline, overwrite=overwrite) as dataset:
        cluster = None
        try:
            if scheduler:
                client = Client(scheduler, timeout="20s")
            else:
                n = workers or max(1, min(len(logs), os.cpu_count() or 1))
                if gpu and not workers:
                    n = 1  # one local GPU: one worker feeds it batches (start more with --workers)
                cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    **({"resources": {"GPU": 1}} if gpu else {}),  # a Worker option LocalCluster passes on
                )
                client = Client(cluster)
        except OSError as err:
            raise PipelineError(
                f"cannot reach the Dask scheduler {scheduler}: {err}; start it with `dask scheduler`"
            ) from err
        sids = [sequence_id_for(Path(p), others=logs) for p in logs]
        try:
            futures = [
                client.submit(
                    _task,
                    str(Path(p).resolve()),
                    sequence_id_for(Path(p), others=logs),
                    str(out.resolve()),
                    detector,
                    dict(detector_options) if detector_options else None,
                    str(calibration.resolve()) if calibration else None,
                    config,
                    overwrite,
                    track,
                    points,
                    images,
                    key=f"prelabel-{sequence_id_for(Path(p), others=logs)}",
                    pure=False,
                    resources={"GPU": 1} if gpu else None,
                )
                for p in logs
            ]
            for done, future in enumerate(as_completed(futures), start=1):
                summary, info = future.result()  # a worker's FusionError is re-raised here
                dataset.add_sequence(info)
                summaries.append(summary)
                if on_done is not None:
                    on_done(summary, done, len(futures))
        except BaseException:
            for f in futures if "futures" in locals() else []:
                f.cancel()
            _remove_sequences(out, sids)  # a failed run leaves no sequence behind, finished or not
            raise
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    order = {sequence_id_for(Path(p), others=logs): i for i, p in enumerate(logs)}
    return sorted(summaries, key=lambda s: order[s.sequence_id])
