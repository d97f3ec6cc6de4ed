# ruff: noqa  (a measurement script, not package code)
"""Run the 20-s bench log's chunks in this process (chunks of 5 s, as the bench) and pickle the list
of ChunkResults (the format of the code on PYTHONPATH)."""
import pickle, sys, shutil
from pathlib import Path
from fusion.config import RunConfig
from fusion.chunks import plan_log, run_chunk
c = RunConfig().with_overrides(chunk_s=5.0)
p = plan_log(Path('/tmp/benchlogs/drive_20s_2048_x1.mcap'), 's', c)
out = Path('/tmp/s7col/parts-out'); shutil.rmtree(out, ignore_errors=True)
det = c.detector.build()
res = [run_chunk(p, k, out, c, detector=det) for k in range(len(p.windows))]
Path(sys.argv[1]).write_bytes(pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL))
print([len(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)) for r in res])
shutil.rmtree(out, ignore_errors=True)
