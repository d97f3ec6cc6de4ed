# ruff: noqa  (a measurement script, not package code)
"""In-process replay of the 5-minute log's finishing step: 15 x the 20-s log's pickled chunk results
(argv[1]; the format of the code on PYTHONPATH), each chunk pickled into bytes as a chunk task returns
it, unpickled and taken one at a time as the finisher does, then `finish_sequence`. RSS (psutil)
sampled every 5 ms: the level before fetching, after fetching, the peak of each stage and of all."""
import sys, time, pickle, gc, threading, shutil, functools
from dataclasses import replace
from pathlib import Path
import psutil
import pyarrow as pa
import fusion.prelabel as pl
import trackers
from fusion.config import RunConfig
from fusion.chunks import plan_log, warm_finishing
from exporters.dataset import SequenceWriter
from fusion.memory import release_free_memory

c = RunConfig().with_overrides(chunk_s=5.0)
p = plan_log(Path('/tmp/benchlogs/drive_20s_2048_x1.mcap'), 's', c)
warm_finishing()
pa.array(list(range(1000))).to_numpy()  # Arrow's pool initialised, as in a worker
columnar = 'sweeps' in pl.Detected.__dataclass_fields__
res = pickle.loads(Path(sys.argv[1]).read_bytes())
span = 20_100_000_000
blobs = []
for L in range(15):
    for r in res:
        if columnar:
            s = r.sweeps
            r2 = replace(r, index=len(blobs), sweeps=replace(s, stamp_ns=s.stamp_ns + L * span, log_time_ns=s.log_time_ns + L * span))
        else:
            r2 = replace(r, index=len(blobs),
                         frames=[(replace(f, stamp_ns=f.stamp_ns + L * span, log_time_ns=f.log_time_ns + L * span), b) for f, b in r.frames],
                         rows=[replace(x, timestamp_ns=x.timestamp_ns + L * span, source_log_time_ns=x.source_log_time_ns + L * span) for x in r.rows])
        blobs.append(pickle.dumps(r2, protocol=pickle.HIGHEST_PROTOCOL))
print("pickled bytes per chunk", [len(b) for b in blobs[:len(res)]], "all", sum(map(len, blobs)) >> 10, "KiB")
del res, r, r2
gc.collect(); release_free_memory()
proc = psutil.Process()
rss = lambda: proc.memory_info().rss >> 20
samples = []; stop = threading.Event(); t0 = time.time()
def sample():
    while not stop.is_set():
        samples.append((time.time() - t0, proc.memory_info().rss >> 20)); time.sleep(0.005)
EV = []
def wrap(obj, name, label):
    f = getattr(obj, name, None)
    if f is None: return
    @functools.wraps(f)
    def g(*a, **k):
        s = time.time() - t0
        try: return f(*a, **k)
        finally: EV.append((label, s, time.time() - t0))
    setattr(obj, name, g)
wrap(trackers, "track_both_ways", "track_both_ways")
wrap(pl, "_tracked_rows", "track+refine+rows")
wrap(pl._LabelRows, "table", "labels table")
wrap(SequenceWriter, "write_labels", "write labels")
wrap(pl, "review_flags", "review_flags")
wrap(SequenceWriter, "write_flags", "write flags")
wrap(SequenceWriter, "write_frames", "write frames")
th = threading.Thread(target=sample); th.start()
base = rss()
t_fetch = time.time()
if columnar:
    from fusion.records import SweepColumns
    sweeps, dets, n = [], [], 0
    while blobs:
        r = pickle.loads(blobs.pop(0))
        sweeps.append(r.sweeps.renumbered(n)); dets.append(r.detections); n += len(r.sweeps)
        del r
    d = pl.Detected(log_path=p.log_path, ctx=p.ctx, sweeps=SweepColumns.join(sweeps), detections=dets, warnings=[], source_size_bytes=1, started_s=time.time())
else:
    frames, rows = [], []
    while blobs:
        r = pickle.loads(blobs.pop(0))
        off = len(rows)
        frames += [(replace(f, index=off + f.index), b) for f, b in r.frames]
        rows += [replace(x, frame_index=off + x.frame_index) for x in r.rows]
        del r
    d = pl.Detected(log_path=p.log_path, ctx=p.ctx, frames=frames, rows=rows, warnings=[], source_size_bytes=1, started_s=time.time())
    del frames, rows
fetch_s = time.time() - t_fetch
gc.collect(); release_free_memory()
fetched = rss()
objects = len(gc.get_objects())
t_fin = time.time()
shutil.rmtree('/tmp/s7col/replay-out', ignore_errors=True)
pl.finish_sequence(SequenceWriter(Path('/tmp/s7col/replay-out'), 's', overwrite=True), d, c, None)
fin_s = time.time() - t_fin
end = rss()
stop.set(); th.join()
peak = max(m for _, m in samples)
print(f"RSS MiB: before fetching {base}, after fetching {fetched} (+{fetched - base}), peak {peak} (+{peak - base}), end {end}; fetch {fetch_s:.2f} s, finish {fin_s:.2f} s, gc-tracked objects after fetching {objects}")
for name, a, b in EV:
    inside = [m for t, m in samples if a <= t <= b]
    print(f"  {name:18} {a:6.2f}-{b:6.2f} s max {max(inside) if inside else None} (+{(max(inside) - base) if inside else 0})")
