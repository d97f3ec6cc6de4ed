# ruff: noqa  (a measurement script, not package code)
import sys, time, os, tempfile, shutil
R = os.environ.get("REPO", "/work/main"); sys.path.insert(0, R); sys.path.insert(0, R + "/bench")
from pathlib import Path

def install():
    import functools, time, os
    import fusion.chunks as fc, fusion.prelabel as fpl, fusion.pipeline as fpp, trackers, exporters.dataset as ed
    import builtins
    EV = builtins.__dict__.setdefault("_TAIL_EV", [])
    EV.clear()
    def wrap(obj, name, label):
        f = getattr(obj, name, None)
        if f is None: return
        if getattr(f, "_wrapped", False): return
        @functools.wraps(f)
        def g(*a, **k):
            t = time.time()
            try: return f(*a, **k)
            finally: EV.append((label, t, time.time()))
        g._wrapped = True
        setattr(obj, name, g)
    wrap(fc.LogFinisher, "finish", "finish")
    wrap(fc.LogFinisher, "_joined", "wait joined")
    wrap(fc.LogFinisher, "_in_order", "join (thread)")
    wrap(fpl, "_add_tracked", "track+refine+rows")
    wrap(fpl, "_tracked_rows", "track+refine+rows")
    wrap(trackers, "track_both_ways", "track_both_ways")
    wrap(trackers, "refine", "refine")
    import sys as _sys
    _tr = _sys.modules["trackers.refine"]
    wrap(_tr, "track_pass", "track_pass")
    wrap(_tr, "_merge", "_merge")
    wrap(_tr, "_run", "_run")
    wrap(fpp._OtherWorkers, "submit", "submit backward")
    if hasattr(fpl, "_Columns"): wrap(fpl._Columns, "table", "labels table (proj)")
    if hasattr(fpl, "_LabelRows"): wrap(fpl._LabelRows, "table", "labels table (proj)")
    wrap(fpl, "review_flags", "review_flags")
    wrap(ed.SequenceWriter, "write_labels", "write labels")
    wrap(ed.SequenceWriter, "write_flags", "write flags")
    wrap(ed.SequenceWriter, "write_frames", "write frames")
    wrap(fpp, "_chunk_result", "fetch chunk result")
    wrap(fpl, "release_free_memory", "trim")
    wrap(os, "fsync", "fsync")
    if os.environ.get("MMAPT"):
        import ctypes
        real_finish = fc.LogFinisher.finish
        def finish(self, *a, **k):
            ctypes.CDLL("libc.so.6").mallopt(-3, int(os.environ["MMAPT"]))  # M_MMAP_THRESHOLD
            return real_finish(self, *a, **k)
        fc.LogFinisher.finish = finish
    if os.environ.get("NOOFF"):
        fpp._OtherWorkers.of = classmethod(lambda cls, client: None)
    return True

def events():
    import builtins
    return list(builtins.__dict__.get("_TAIL_EV", []))

def main():
    import pipeline as bp
    from fusion.config import RunConfig
    from fusion.pipeline import local_cluster, run
    from dask.distributed import Client, get_task_stream
    log = Path(sys.argv[1]); workers = int(sys.argv[2])
    out = Path(tempfile.mkdtemp())
    with local_cluster(workers) as cluster, Client(cluster) as client:
        client.run(bp._warm); client.run(install)
        t0 = time.time()
        with get_task_stream(client) as ts:
            run([log], out / "o", config=RunConfig().with_overrides(chunk_s=5.0), scheduler=cluster.scheduler_address)
        wall = time.time() - t0
        ev = client.run(events)
        print("peak rss MiB", [v // 1024 for v in client.run(bp._peak_rss_kib).values()])
    print(f"wall {wall:.2f}")
    last_chunk = max(s["stop"] for d in ts.data if str(d["key"]).startswith("chunk") for s in d["startstops"] if s["action"] == "compute")
    print(f"last chunk ends {last_chunk - t0:.2f}")
    for d in sorted(ts.data, key=lambda d: d["startstops"][0]["start"]):
        for s in d["startstops"]:
            if s["action"] == "compute": print(f'  task {str(d["key"])[:40]:40} {d["worker"][-5:]} {s["start"]-t0:6.2f} {s["stop"]-t0:6.2f}')
    for w, evs in ev.items():
        for label, a, b in sorted(evs, key=lambda e: e[1]):
            if b - t0 > last_chunk - t0 - 0.2 and label not in ("trim", "fsync", "join (thread)"):
                print(f"  {w[-5:]} {label:22} {a-t0:6.2f} {b-t0:6.2f} {b-a:6.3f}")
    shutil.rmtree(out)

if __name__ == "__main__":
    main()
