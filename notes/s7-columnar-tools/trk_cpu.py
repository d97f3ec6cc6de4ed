# ruff: noqa  (a measurement script, not package code)
import sys, pickle, time, gc
from pathlib import Path
from dataclasses import replace
import fusion.prelabel as pl
from trackers import track_both_ways
from fusion.chunks import warm_finishing
warm_finishing()
L = int(sys.argv[2])
res = pickle.loads(Path(sys.argv[1]).read_bytes())
span = 20_100_000_000
if 'sweeps' in pl.Detected.__dataclass_fields__:
    from fusion.records import SweepColumns, BoxColumns, frame_detections
    sw, de, n = [], [], 0
    for k in range(L):
        for r in res:
            s = r.sweeps
            sw.append(replace(s, stamp_ns=s.stamp_ns + k*span).renumbered(n)); de.append(r.detections); n += len(s)
    make = lambda: frame_detections(SweepColumns.join(sw), BoxColumns.join(list(de)))
else:
    fr = []
    for k in range(L):
        for r in res:
            for f, b in r.frames:
                fr.append((b, f.stamp_ns + k*span, f.world_from_lidar.matrix if f.world_from_lidar is not None else None))
    make = lambda: list(fr)
out = []
for _ in range(3):
    gc.collect()
    t = time.process_time()
    frames = make()
    t1 = time.process_time()
    track_both_ways(frames)
    out.append((round(t1 - t, 3), round(time.process_time() - t1, 3)))
print("(input CPU s, track_both_ways CPU s)", out)
