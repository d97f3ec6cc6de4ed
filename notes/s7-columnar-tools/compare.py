# ruff: noqa  (a measurement script, not package code)
import sys
from pathlib import Path
import pyarrow.parquet as pq
a, b = Path(sys.argv[1]), Path(sys.argv[2])
ok = True
for kind in ("labels", "flags", "frames"):
    fa = sorted((a / kind).glob("*.parquet")); fb = sorted((b / kind).glob("*.parquet"))
    assert [f.name for f in fa] == [f.name for f in fb], (kind, fa, fb)
    for x, y in zip(fa, fb):
        ta, tb = pq.read_table(x), pq.read_table(y)
        eq = ta.equals(tb); ok &= eq
        print(f"{kind}/{x.name}: rows {ta.num_rows} vs {tb.num_rows}; equal={eq}")
ta, tb = pq.read_table(a / "sequences.parquet"), pq.read_table(b / "sequences.parquet")
eq = ta.equals(tb); ok &= eq
print(f"sequences.parquet: rows {ta.num_rows}; equal={eq}")
print("ALL EQUAL" if ok else "DIFFERENT")
