# ruff: noqa  (a measurement script, not package code)
import sys, pickle
from pathlib import Path
from dataclasses import replace
import fusion.prelabel as pl
res = pickle.loads(Path(sys.argv[1]).read_bytes())
span = 20_100_000_000
if 'sweeps' in pl.Detected.__dataclass_fields__:
    from fusion.records import SweepColumns, BoxColumns, frame_detections
    sw, de, n = [], [], 0
    for k in range(int(sys.argv[2])):
        for r in res:
            s = r.sweeps
            sw.append(replace(s, stamp_ns=s.stamp_ns + k*span).renumbered(n)); de.append(r.detections); n += len(s)
    frames = frame_detections(SweepColumns.join(sw), BoxColumns.join(de))
else:
    frames = [(b, f.stamp_ns + k*span, f.world_from_lidar.matrix if f.world_from_lidar is not None else None) for k in range(int(sys.argv[2])) for r in res for f, b in r.frames]
print(len(frames), "frames; backward pass pickle", len(pickle.dumps(frames, protocol=pickle.HIGHEST_PROTOCOL)) / 2**20, "MiB")
