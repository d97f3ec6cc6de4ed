"""`fusion run`: many logs into one dataset on Dask — a local cluster, or a real one.

The graph, per log (`fusion.chunks` does the work; only this module knows Dask)::

    plan-<sid>            cut the log into time windows; topics and cameras from the first one
      chunk-<sid>-<k>     per window, in parallel: read its poses, decode, sync, deskew, detect;
                          write points and images into part files as it goes (they never
                          travel to the client)
      finish-<sid>        append each chunk's part files to the points/images files as soon as
                          the chunk is done (in order, while later chunks run; their bytes are
                          copied, nothing is re-encoded), then fetch every chunk's detections,
                          track + refine them, write labels and frames

Chunks run in time order (`_priority`) and take their plan by value, so Dask places each on
whichever worker is free rather than beside the plan's result. The client receives only plans
(topics, camera models and the first window's poses, ~100 kB) and each sequence's summary row,
writes `sequences.parquet` and `dataset.json` last, and removes the part files. Chunk tasks
report their sweeps done (a Dask event, `PROGRESS_TOPIC`, at most every `PROGRESS_EVERY_S`); `run`
turns them into `Progress`.

With no scheduler address a `LocalCluster` sized to the machine is started (one single-threaded
worker process per core: the hot loops are numba and hold the GIL only briefly, but processes keep
numba's and OpenCV's own threads from fighting). With `scheduler="tcp://host:8786"` an existing
cluster is used: start one with `dask scheduler` and `dask worker tcp://host:8786 --nthreads 1
--nworkers N` on each machine (on a batch cluster: the scheduler in one job, workers in an array
job). Workers and the client must see the logs and `--out` at the same paths (a shared filesystem).
Give that cluster the Dask config of `WORKER_CONFIG` (no MALLOC_TRIM_THRESHOLD_, no statistical
profiler, slower event-loop and system monitors; see `local_cluster` for why).

A log whose task raises (it cannot be read) is reported (`on_failure`) and its files removed while
the other logs go on; the dataset lists the finished ones. Into an existing dataset a run adds:
sequences it lists complete are skipped, the others done, and `dataset.json` rewritten listing all
(same configuration required; `overwrite` redoes everything).

A worker lost mid-task (killed, out of memory) is replaced by Dask and its task re-run: part files
are rewritten, a finishing step replaces its own sequence's files, and nothing appears under a
final name before it is complete. When a run fails, the local cluster is closed before the run's
files are removed; on an existing cluster a task already running cannot be stopped, so it may
leave a part file under the hidden `<out>/.parts/` after the clean-up (no reader looks there).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from exporters.dataset import DatasetWriter, PipelineInfo, SequenceInfo, camera_file_stem, dataset_paths
from exporters.errors import ExportError
from exporters.schema import sequence_id_for
from fusion.chunks import (
    ChunkParts,
    ChunkResult,
    LogFinisher,
    LogPlan,
    plan_log,
    remove_parts,
    run_chunk,
    warm_finishing,
)
from fusion.config import RunConfig
from fusion.errors import FusionError
from fusion.memory import release_free_memory
from fusion.prelabel import (
    DetectSummary,
    LogFailure,
    NothingFinishedError,
    failure_message,
    pipeline_info,
    refuse_existing_sequences,
    remove_sequence_files,
)

if TYPE_CHECKING:
    from calib.calibration import Calibration

log = logging.getLogger(__name__)

PROGRESS_TOPIC: Final = "fusion-progress"
"""Dask event topic of progress: `(sequence_id, chunk, sweeps done in the chunk)`."""


class PipelineError(FusionError):
    """The cluster cannot be reached or a worker was lost."""


@dataclass(frozen=True)
class Progress:
    """Sweeps done across all workers, and how many the logs planned so far hold."""

    done: int
    total: int  # grows while logs are still being planned
    logs_planned: int
    logs: int


def _calibration(path: str | None) -> Calibration | None:
    from calib.loaders import load_calibration

    return load_calibration(path) if path else None


def _plan_task(log_path: str, sid: str, config: RunConfig, calibration: str | None) -> LogPlan:
    return plan_log(Path(log_path), sid, config, _calibration(calibration))


def _chunk_task(
    plan: LogPlan, index: int, out: str, config: RunConfig, calibration: str | None
) -> tuple[ChunkParts, bytes]:
    """`run_chunk`: its part files' description and its result pickled into one bytes object. The
    worker holds each chunk's result until its log is finished; as one block of bytes it pins no
    pages among the chunk's own short-lived objects (a result is a few columns now,
    `fusion.records`, but held as Python objects it was thousands, and the RSS grew with every
    chunk)."""
    from distributed import get_worker

    worker = get_worker()
    report = _Throttled(lambda done: worker.log_event(PROGRESS_TOPIC, (plan.sequence_id, index, done)))
    config = _with_worker_threads(config)
    try:
        result = run_chunk(
            plan, index, Path(out), config, calibration=_calibration(calibration), progress=report
        )
        report.flush()
        return result.parts, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        release_free_memory()


PROGRESS_EVERY_S: Final = 0.25
"""The least time between two progress events of one chunk task. An event per sweep cost the
scheduler's and client's process ~0.2 CPU-s per 200 sweeps, taken from the workers when they use
every core (a 20-s 64-beam log with 2 workers on 2 cores: ~0.1-0.3 s of wall time)."""


class _Throttled:
    """progress(done) passed on at most every `PROGRESS_EVERY_S`; `flush` passes the last count on
    if it was held back, so the chunk's final count always arrives."""

    def __init__(self, send: Callable[[int], object]) -> None:
        self.send = send
        self.sent = 0
        self.done = 0
        self.next_s = 0.0

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now >= self.next_s:
            self.flush()
            self.next_s = now + PROGRESS_EVERY_S

    def flush(self) -> None:
        if self.done != self.sent:
            self.send(self.done)
            self.sent = self.done


def _chunk_result(future: Any) -> ChunkResult:
    result: ChunkResult = pickle.loads(future.result()[1])
    return result


def _finish_task(
    plan: LogPlan, chunks_dataset: str, out: str, config: RunConfig, calibration: str | None
) -> tuple[DetectSummary, SequenceInfo]:
    """Append each chunk's part files as soon as it is done, in order, while later chunks still
    run; then track and write the log from every chunk's detections. The chunk
    futures come from a published dataset (futures given as arguments would be waited for before
    the task starts); the task leaves the worker's thread pool (`secede`) first, so the worker runs
    a chunk while this task connects its client and waits."""
    from distributed import get_client, secede

    secede()
    client = get_client()
    chunks = client.get_dataset(chunks_dataset)
    warm_finishing()  # while the first chunk runs (once per worker process)
    with LogFinisher(plan, Path(out), config) as finisher:
        for chunk in chunks:
            finisher.add_parts(chunk.result()[0])
        release_free_memory()  # what the chunks on this worker left in the heap, before tracking
        try:
            return finisher.finish(
                _calibration(calibration), (_chunk_result(c) for c in chunks), _OtherWorkers.of(client)
            )
        finally:
            release_free_memory()


class _OtherWorkers:
    """A `trackers.refine.Submitter` for a finishing task: each call becomes a Dask task on the
    cluster's other workers that are idle (as they are once the last log's chunks are done), its
    function and arguments pickled into one bytes object sent straight to one of them, run before
    anything queued there. The finishing step runs its backward tracking pass so while it does the
    forward one (a 3,000-sweep log: tracking 4.8 -> 4.0 s; about even for a 200-sweep one)."""

    def __init__(self, client: Any, others: list[str]) -> None:
        self.client = client
        self.others = others

    @classmethod
    def of(cls, client: Any) -> _OtherWorkers | None:
        """For the worker running this task; None when no other worker is idle (then the work is
        done in the task itself rather than queued behind other logs' chunks)."""
        from distributed import get_worker

        me = get_worker().address
        busy = client.processing()
        others = [w for w in client.scheduler_info()["workers"] if w != me and not busy.get(w)]
        return cls(client, others) if others else None

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        blob = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        data = self.client.scatter(blob, workers=self.others, hash=False)
        return self.client.submit(
            _call_pickled, data, pure=False, workers=self.others, allow_other_workers=True, priority=1
        )


def _call_pickled(blob: bytes) -> Any:
    fn, args = pickle.loads(blob)
    return fn(*args)


def _worker_threads() -> int:
    """The threads of the Dask worker running this task (1 outside a worker)."""
    from dask.distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        return 1
    state = getattr(worker, "state", None)
    return max(1, int(getattr(state, "nthreads", getattr(worker, "nthreads", 1)) or 1))


def _wants_gpu(detector_options: Mapping[str, object]) -> bool:
    """Whether detection tasks should ask the scheduler for a GPU resource (a CUDA device requested)."""
    return str(detector_options.get("device", "auto")).startswith("cuda")


def _with_worker_threads(config: RunConfig) -> RunConfig:
    """A learned detector runs as many torch threads as this worker has threads, so workers on one
    machine do not oversubscribe its cores (unless the config sets `threads`)."""
    from fusion.detect import LEARNED_DETECTORS

    det = config.detector
    if det.name not in LEARNED_DETECTORS or "threads" in det.options:
        return config
    return replace(config, detector=replace(det, options={"threads": _worker_threads(), **det.options}))


def _remove_sequences(out: Path, sids: Sequence[str]) -> None:
    """Every file of `sids`, their temporaries and part files included."""
    for sid in sids:
        remove_sequence_files(out, sid)
    remove_parts(out, sids)


DASK_MALLOC_TRIM: Final = "65536"
"""The MALLOC_TRIM_THRESHOLD_ Dask's nannies put into worker environments (and their own)."""


WORKER_CONFIG: Final = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}
"""The Dask configuration `local_cluster` gives its workers (`local_cluster` says why; give a
cluster of your own the same)."""


def local_cluster(workers: int, *, gpu: bool = False) -> Any:
    """A `LocalCluster` of `workers` single-threaded worker processes (`WORKER_CONFIG`):

    - without Dask's MALLOC_TRIM_THRESHOLD_: setting it turns off glibc's adaptive mmap threshold,
      so every large array (a sweep's points) is a fresh mmap that page-faults in again; measured
      on 64-beam sweeps it doubles a worker's CPU time per sweep (16x the system time);
    - without Dask's statistical profiler: it samples each worker's stacks every 10 ms and keeps a
      call tree of every second for the dashboard, which grows with the run (after a 5-minute
      64-beam log: 14,000 tree nodes on the finishing worker, whose RSS at the end, trimmed, was
      441 MiB with it and 395 without);
    - with the event-loop health check every 1 s instead of 20 ms (`distributed.admin.tick`), host
      monitoring every 2 s instead of 0.5 s and memory monitoring every 0.5 s instead of 0.1 s: the
      default timers wake the scheduler, each nanny and each worker 50+ times a second, and an idle
      two-worker cluster used 1.3 CPU-seconds per 10 s (0.2 with these settings); while chunks run
      on both cores that is time taken from them (a two-worker bench run used 1.5-2 CPU-s less).

    gpu: each worker declares the resource GPU=1 (chunk tasks of a CUDA detector ask for it)."""
    import dask
    from dask.distributed import LocalCluster

    if os.environ.get("MALLOC_TRIM_THRESHOLD_") == DASK_MALLOC_TRIM:  # left by an earlier nanny
        del os.environ["MALLOC_TRIM_THRESHOLD_"]
    with dask.config.set(WORKER_CONFIG):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            **({"resources": {"GPU": 1}} if gpu else {}),  # a Worker option LocalCluster passes on
        )


def check_logs(logs: Sequence[Path | str]) -> None:
    """Raise FusionError naming the first of `logs` that does not exist, or one given twice (before
    any cluster starts)."""
    missing = [str(p) for p in logs if not Path(p).exists()]
    if missing:
        raise FusionError(f"{missing[0]}: no such file or directory; check the path")
    check_unique_logs(logs)


def check_unique_logs(logs: Sequence[Path | str]) -> None:
    """Raise FusionError when one log is given twice (the same file under two names counts): its one
    sequence cannot be written twice (`fusion run` failed with a Dask KeyError traceback, `fusion
    detect` with "write its frames first")."""
    seen: dict[Path, str] = {}
    for log in logs:
        path = Path(log)
        key = path.resolve() if path.exists() else path.absolute()
        if key in seen:
            same = "" if seen[key] == str(log) else f" (as {seen[key]})"
            raise FusionError(f"{log}: given twice{same}; give each log once")
        seen[key] = str(log)


def run(
    logs: Sequence[Path],
    out: Path,
    *,
    config: RunConfig | None = None,
    calibration: Path | None = None,
    overwrite: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_done: Callable[[DetectSummary, int, int], None] | None = None,
    on_failure: Callable[[LogFailure], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> list[DetectSummary]:
    """Pre-label `logs` into the dataset `out` on Dask; summaries (of the logs this run did) in the
    order of `logs`.

    Into an existing dataset (no `overwrite`) it adds: a log whose sequence the dataset already
    lists complete (its files there and of the right sizes, `sequence_problem`) is skipped
    (on_skip(sequence_id)), the others are done, and `dataset.json` is written again listing the
    old sequences and the new ones. The dataset must have been made with the same configuration
    (`output.chunk_s` aside) and fusion version, and a listed sequence id must come from the same
    log, or `ExportError` says to pass `overwrite` (which redoes everything).

    detector_options (learned detectors: checkpoint, model_config, device, batch_size; see
    fusion.detect.learned_config) are rebuilt on each worker with torch threads set to the worker's
    threads. With `device="cuda..."` each chunk task asks for the worker resource `GPU=1`: start
    workers with `dask worker ... --resources GPU=1` (one per GPU); a local cluster declares it.

    progress(Progress) as sweeps are done on the workers (each chunk reports at most every
    `PROGRESS_EVERY_S`; called from the client's event-loop thread);
    on_done(summary, logs done, logs) when a log is finished (from the calling thread).

    A log whose task raises (it cannot be read, decoded, written): with `on_failure`, the log's
    files are removed, on_failure(LogFailure) is called and the other logs go on (the dataset lists
    only the finished ones; none at all: no dataset.json is written); without it the run fails.
    A lost cluster, a task that killed its workers (`KilledWorker`) or Ctrl-C fail the whole run.
    Raises FusionError subclasses; a failed run leaves no file of any of its sequences.
    """
    from dask.distributed import Client, as_completed

    _import_in_background("pandas")  # while the cluster starts and the first log is planned
    config = config or RunConfig()
    config.detector.build_config()  # an unknown detector or bad options fail before any worker starts
    check_logs(logs)
    sids = [sequence_id_for(Path(p), others=logs) for p in logs]
    gpu = _wants_gpu(config.detector.options)
    summaries: list[DetectSummary] = []
    pipeline = pipeline_info(config, config.detector.name)
    try:
        with DatasetWriter(out, pipeline=pipeline, overwrite=overwrite, extend=True) as dataset:
            todo = list(range(len(logs)))
            if dataset.existing_pipeline is not None:  # a dataset is there: add to it
                _check_same_pipeline(out, dataset.existing_pipeline, pipeline)
                todo = _to_redo(dataset, logs, sids, config, on_skip)
            if not overwrite:
                refuse_existing_sequences(out, [sids[i] for i in todo])
            if not todo:
                return []  # every sequence is complete: dataset.json is written again as it was
            cluster = None
            try:
                if scheduler:
                    client = Client(scheduler, timeout="20s")
                else:
                    n = workers or max(1, os.cpu_count() or 1)
                    if gpu and not workers:
                        n = 1  # one local GPU: one worker feeds it batches (start more with --workers)
                    cluster = local_cluster(n, gpu=gpu)
                    client = Client(cluster)
            except OSError as err:
                raise PipelineError(
                    f"cannot reach the Dask scheduler {scheduler}: {err}; start it with `dask scheduler`"
                ) from err
            tracker = _ProgressTracker(len(todo), progress)
            futures: list[Any] = []
            per_log: dict[int, list[Any]] = {}  # the futures of each log, to cancel when it fails
            infos: dict[str, SequenceInfo] = {}
            failures: dict[str, LogFailure] = {}
            published: list[str] = []
            failed = False
            try:
                client.subscribe_topic(PROGRESS_TOPIC, tracker.on_event)
                out_s = str(out.resolve())
                calib = str(calibration.resolve()) if calibration else None
                run_id = uuid.uuid4().hex[:12]  # task keys unique to this run: a cluster may serve many
                plans: dict[Any, int] = {}
                finishes: dict[Any, int] = {}
                for i in todo:
                    fut = client.submit(
                        _plan_task,
                        str(Path(logs[i]).resolve()),
                        sids[i],
                        config,
                        calib,
                        key=f"plan-{sids[i]}-{run_id}",
                        priority=_priority(i),
                    )
                    plans[fut.key] = i
                    per_log[i] = [fut]
                    futures.append(fut)
                pending = as_completed(list(futures))
                for fut in pending:
                    i = plans.get(fut.key, finishes.get(fut.key, -1))
                    error = _task_error(fut)
                    if error is not None:
                        if on_failure is None:
                            raise error
                        for f in per_log[i]:
                            f.cancel()
                        _remove_sequences(out, [sids[i]])  # again once the workers stop (running chunks)
                        failure = LogFailure(Path(logs[i]), sids[i], failure_message(error))
                        failures[sids[i]] = failure
                        log.info("%s failed: %s", logs[i], failure.error)
                        on_failure(failure)
                        continue
                    result = fut.result()
                    if fut.key in plans:
                        tracker.planned(result)
                        chunks = [
                            client.submit(
                                _chunk_task,
                                result,  # by value: a task with no dependency is placed on
                                k,  # whichever worker is free, not beside its plan's result
                                out_s,
                                config,
                                calib,
                                key=f"chunk-{sids[i]}-{k}-{run_id}",
                                priority=_priority(i, k),
                                resources={"GPU": 1} if gpu else None,
                            )
                            for k in range(len(result.windows))
                        ]
                        name = f"fusion-chunks-{sids[i]}-{run_id}"
                        client.publish_dataset(chunks, name=name)
                        published.append(name)
                        finish = client.submit(
                            _finish_task,
                            fut,
                            name,
                            out_s,
                            config,
                            calib,
                            key=f"finish-{sids[i]}-{run_id}",
                            priority=_priority(i),
                        )
                        finishes[finish.key] = i
                        per_log[i] += [*chunks, finish]
                        futures += [*chunks, finish]
                        pending.add(finish)
                        continue
                    summary, info = result
                    infos[info.sequence_id] = info
                    remove_parts(out, [info.sequence_id])
                    summaries.append(summary)
                    if on_done is not None:
                        on_done(summary, len(summaries) + len(failures), len(todo))
                if not infos:
                    raise NothingFinishedError
                for sid in sids:  # sequences.parquet and dataset.json list them in the order given
                    if sid in infos:
                        dataset.add_sequence(infos[sid])
            except NothingFinishedError:
                raise
            except BaseException:
                failed = True
                for f in futures:
                    f.cancel()
                raise
            finally:
                try:
                    with contextlib.suppress(Exception):  # the scheduler may be gone already
                        client.unsubscribe_topic(PROGRESS_TOPIC)
                        for name in published:
                            client.unpublish_dataset(name)
                finally:
                    client.close()
                    if cluster is not None:
                        cluster.close()  # its workers stop before their files are removed
                    if failed:  # a failed run leaves none of its sequences behind, finished or not
                        _remove_sequences(out, [sids[i] for i in todo])
                    elif failures:  # a chunk still running when its log failed may have written parts
                        _remove_sequences(out, list(failures))
    except NothingFinishedError:  # every log failed: no dataset.json (each failure was reported)
        return []
    order = {sid: i for i, sid in enumerate(sids)}
    return sorted(summaries, key=lambda s: order[s.sequence_id])


def _import_in_background(module: str) -> None:
    """Import `module` in a daemon thread. pyarrow imports pandas (when installed) the first time it
    converts anything (`pa.array`), which the client first does for `sequences.parquet` once every
    log is done: 0.4 s at the very end of a run. Imported from the start of `run` instead, while a
    local cluster starts (seconds) or an existing one plans the first log: imported while the
    chunks run, it took ~0.5 CPU-s from them when they use every core."""
    import importlib

    threading.Thread(target=importlib.import_module, args=(module,), daemon=True).start()


def _priority(log_index: int, chunk: int | None = None) -> int:
    """Dask priority (higher runs first): logs in the order given, and within a log its plan, then
    its chunks in time order, so that the finishing task, which joins the chunks in order, never
    waits for an early chunk while later ones hold the workers."""
    return -(log_index * 1_000_000) - (0 if chunk is None else 1 + chunk)


def _task_error(fut: Any) -> BaseException | None:
    """The error a finished task raised, when it is the log's fault (None: it succeeded). A task
    that killed its workers, or a future cancelled under us (the cluster went away), fails the run."""
    from distributed.scheduler import KilledWorker

    if fut.status != "error":
        return None
    error = fut.exception()
    if isinstance(error, KilledWorker):
        raise PipelineError(
            f"task {fut.key} killed {error.args[0] if error.args else 'its'} workers again and again "
            f"(out of memory?); re-run with fewer --workers or a shorter --chunk-s: {error}"
        ) from error
    return error  # type: ignore[no-any-return]


def _comparable(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    """A `dataset.json` pipeline entry without what does not change the output (`chunk_s`)."""
    doc = json.loads(json.dumps(pipeline))
    with contextlib.suppress(KeyError, TypeError):
        del doc["config"]["output"]["chunk_s"]
    return doc  # type: ignore[no-any-return]


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    """`key.path: NEW here, OLD in the dataset` for the first value that differs, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
            if found is not None:
                return found
        return None
    return None if old == new else f"{where}: {new!r} now, {old!r} in the dataset"


def _check_same_pipeline(out: Path, recorded: Mapping[str, Any], pipeline: PipelineInfo) -> None:
    difference = _first_difference(_comparable(recorded), _comparable(pipeline.to_json()))
    if difference is not None:
        raise ExportError(
            f"cannot add to the dataset {out}: it was made with another configuration ({difference}); "
            "pass --overwrite to redo it all with this one, or choose another --out"
        )


def sequence_problem(out: Path, row: Mapping[str, Any], config: RunConfig) -> str | None:
    """Why the listed sequence `row` (of sequences.parquet) is not complete under `out`, or None:
    a cheap check of its files (they exist, frames has num_frames rows, points one row group per
    frame, one images file per camera), reading only Parquet footers."""
    import pyarrow.parquet as pq

    sid = str(row["sequence_id"])
    paths = dataset_paths(out, sid)
    frames = int(row["num_frames"])
    cameras = [str(c["name"]) for c in json.loads(str(row["cameras_json"]))]
    files = [paths["frames"], paths["labels"], paths["flags"]]
    if config.output.points:
        files.append(paths["points"])
    if config.output.images:
        files += [paths["images"] / f"{camera_file_stem(c)}.parquet" for c in cameras]
    for path in files:
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, ValueError) as err:
            return f"{path}: {' '.join(str(err).split())}"
        if path == paths["frames"] and meta.num_rows != frames:
            return f"{path}: {meta.num_rows} rows, the sequence has {frames} frames"
        if path == paths["points"] and meta.num_row_groups != frames:
            return f"{path}: {meta.num_row_groups} sweeps, the sequence has {frames} frames"
    return None


def _to_redo(
    dataset: DatasetWriter,
    logs: Sequence[Path],
    sids: Sequence[str],
    config: RunConfig,
    on_skip: Callable[[str], None] | None,
) -> list[int]:
    """The indices of `logs` still to do in the existing dataset: not listed, or listed incomplete
    (then taken out of the listing and its files removed). Raises `ExportError` when a listed id
    comes from another log."""
    todo = []
    for i, (path, sid) in enumerate(zip(logs, sids, strict=True)):
        row = dataset.existing.get(sid)
        if row is None:
            todo.append(i)
            continue
        if Path(str(row["source_path"])).resolve() != Path(path).resolve():
            raise ExportError(
                f"cannot add {path} to the dataset {dataset.out}: its sequence id {sid!r} is taken by "
                f"{row['source_path']}; pass --overwrite to redo it all, or choose another --out"
            )
        problem = sequence_problem(dataset.out, row, config)
        if problem is None:
            if on_skip is not None:
                on_skip(sid)
            continue
        log.warning("%s is listed in %s but incomplete (%s): doing it again", sid, dataset.out, problem)
        dataset.drop_existing(sid)
        remove_sequence_files(dataset.out, sid)
        todo.append(i)
    return todo


class _ProgressTracker:
    """Per-sweep progress from the chunk tasks' events. A retried chunk counts from 0 again, so
    each chunk's highest count is kept: a retry never counts a sweep twice."""

    def __init__(self, logs: int, callback: Callable[[Progress], None] | None) -> None:
        self.logs = logs
        self.callback = callback
        self.chunks: dict[tuple[str, int], int] = {}
        self.total = 0
        self.logs_planned = 0
        self.done = 0
        self.lock = threading.Lock()
        self.started = time.perf_counter()

    def planned(self, plan: LogPlan) -> None:
        with self.lock:
            self.total += plan.total_sweeps
            self.logs_planned += 1
        self._report()

    def on_event(self, event: Any) -> None:
        _, (sid, chunk, done) = event
        with self.lock:
            before = self.chunks.get((sid, chunk), 0)
            if done <= before:
                return
            self.chunks[sid, chunk] = done
            self.done += done - before
        self._report()

    def _report(self) -> None:
        if self.callback is not None:
            self.callback(Progress(self.done, self.total, self.logs_planned, self.logs))
