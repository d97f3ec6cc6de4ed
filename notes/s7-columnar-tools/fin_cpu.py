# ruff: noqa  (a measurement script, not package code)
"""CPU time of the 20-s log's finishing records path in-process: unpickle the 4 chunk results, take
them as the finisher does, finish_sequence (no executor), N times; prints each run's process CPU s."""
import sys, time, pickle, gc, shutil
from dataclasses import replace
from pathlib import Path
import fusion.prelabel as pl
from fusion.config import RunConfig
from fusion.chunks import plan_log, warm_finishing
from exporters.dataset import SequenceWriter
c = RunConfig().with_overrides(chunk_s=5.0)
p = plan_log(Path('/tmp/benchlogs/drive_20s_2048_x1.mcap'), 's', c)
warm_finishing()
columnar = 'sweeps' in pl.Detected.__dataclass_fields__
blobs = [pickle.dumps(r, protocol=5) for r in pickle.loads(Path(sys.argv[1]).read_bytes())]
out = []
for run in range(int(sys.argv[2])):
    shutil.rmtree('/tmp/s7col/cpu-out', ignore_errors=True)
    gc.collect()
    t = time.process_time(); w = time.perf_counter()
    res = [pickle.loads(b) for b in blobs]
    if columnar:
        from fusion.records import SweepColumns
        sweeps, dets, n = [], [], 0
        for r in res:
            sweeps.append(r.sweeps.renumbered(n)); dets.append(r.detections); n += len(r.sweeps)
        d = pl.Detected(log_path=p.log_path, ctx=p.ctx, sweeps=SweepColumns.join(sweeps), detections=dets, warnings=[], source_size_bytes=1, started_s=0)
    else:
        frames, rows = [], []
        for r in res:
            off = len(rows)
            frames += [(replace(f, index=off + f.index), b) for f, b in r.frames]
            rows += [replace(x, frame_index=off + x.frame_index) for x in r.rows]
        d = pl.Detected(log_path=p.log_path, ctx=p.ctx, frames=frames, rows=rows, warnings=[], source_size_bytes=1, started_s=0)
    del res
    t1 = time.process_time()
    pl.finish_sequence(SequenceWriter(Path('/tmp/s7col/cpu-out'), 's', overwrite=True), d, c, None)
    out.append((round(t1 - t, 3), round(time.process_time() - t, 3), round(time.perf_counter() - w, 3)))
print("(take CPU s, all CPU s, wall s)", out)
