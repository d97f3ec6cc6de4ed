# ruff: noqa  (a measurement script, not package code)
import sys, pickle, tracemalloc, functools, gc
from pathlib import Path
import numpy as np
from dataclasses import replace
import trackers.refine, sys as _s; tr = _s.modules["trackers.refine"]
from fusion.records import SweepColumns, BoxColumns, frame_detections
res = pickle.loads(Path('/tmp/s7col/finmem_new.pkl').read_bytes())
span = 20_100_000_000
sw, de, n = [], [], 0
for L in range(15):
    for r in res:
        s = r.sweeps
        sw.append(replace(s, stamp_ns=s.stamp_ns + L*span).renumbered(n)); de.append(r.detections); n += len(s)
sweeps = SweepColumns.join(sw); dets = BoxColumns.join(de)
fd = frame_detections(sweeps, dets)
del res, sw, de
gc.collect()
tracemalloc.start()
LOG = []
def wrap(name):
    f = getattr(tr, name)
    @functools.wraps(f)
    def g(*a, **k):
        c0, _ = tracemalloc.get_traced_memory(); tracemalloc.reset_peak()
        out = f(*a, **k)
        c1, pk = tracemalloc.get_traced_memory()
        LOG.append(f"{name:16} enter {c0/2**20:6.1f} exit {c1/2**20:6.1f} peak {pk/2**20:6.1f} MiB")
        if name == "_merge" and len(sys.argv) > 1:
            pass
        return out
    setattr(tr, name, g)
for nme in ("_merge", "track_pass"): wrap(nme)
real_build = tr.TrackTable.build
c0, _ = tracemalloc.get_traced_memory(); tracemalloc.reset_peak()
t = tr.track_both_ways(fd)
c1, pk = tracemalloc.get_traced_memory()
print("\n".join(LOG)); print(f"track_both_ways enter {c0/2**20:.1f} exit {c1/2**20:.1f} peak {pk/2**20:.1f} MiB; rows {len(t)} of {len(dets)} detections")
