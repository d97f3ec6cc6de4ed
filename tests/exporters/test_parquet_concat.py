"""`AtomicParquetConcat`: Parquet files joined by copying their row groups' bytes read back exactly
as the files they came from, by pyarrow and DuckDB, with statistics and page indexes intact."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from exporters.dataset import ImagesWriter, PointsWriter
from exporters.errors import ExportError
from exporters.parquet_io import AtomicParquetConcat


def _points_parts(folder: Path, sizes: list[list[int]], seed: int = 0) -> list[Path]:
    """Part files of sweeps numbered on from each other; sizes[p] = points per sweep of part p."""
    rng = np.random.default_rng(seed)
    parts, frame = [], 0
    for p, sweeps in enumerate(sizes):
        path = folder / f"{p:05d}.points.parquet"
        with PointsWriter(path, "drive_a", first_frame=frame) as writer:
            for n in sweeps:
                xyz = rng.normal(0, 20, (n, 3)).astype(np.float32)
                writer.add(frame, xyz, rng.random(n, dtype=np.float32), rng.integers(0, 10**8, n))
                frame += 1
        parts.append(path)
    return parts


def test_joined_points_read_back_as_the_parts_one_row_group_per_sweep(tmp_path: Path) -> None:
    parts = _points_parts(tmp_path, [[1200, 0, 77], [], [5000], [3, 900, 12, 1]])
    out = tmp_path / "points" / "drive_a.parquet"
    with AtomicParquetConcat(out) as concat:
        assert [concat.append(p) for p in parts] == [3, 0, 1, 4]
        assert concat.num_row_groups == 8 and concat.num_rows == 1200 + 77 + 5000 + 916
    expected = pa.concat_tables([pq.read_table(p) for p in parts])
    joined = pq.read_table(out)
    assert joined.equals(expected)
    assert joined.schema.metadata == pq.read_schema(parts[0]).metadata  # schema version, sequence id
    file = pq.ParquetFile(out)
    assert file.num_row_groups == 8
    for g in range(8):  # row group k holds frame k, whatever part it came from
        frame = file.read_row_group(g, columns=["frame_index"]).column(0)
        assert pc.all(pc.equal(frame, g)).as_py() in (True, None)  # None: an empty sweep
    assert file.metadata.row_group(7).column(1).statistics.has_min_max  # statistics copied along
    rows = duckdb.sql(f"SELECT frame_index, count(*) FROM '{out}' GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [(0, 1200), (2, 77), (3, 5000), (4, 3), (5, 900), (6, 12), (7, 1)]


def test_page_indexes_are_moved_with_their_pages(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    parts = []
    for p in range(3):
        table = pa.table({"k": np.arange(p * 1000, (p + 1) * 1000), "v": rng.random(1000)})
        parts.append(tmp_path / f"{p}.parquet")
        pq.write_table(table, parts[-1], row_group_size=400, data_page_size=512, write_page_index=True)
    out = tmp_path / "all.parquet"
    with AtomicParquetConcat(out) as concat:
        for p in parts:
            concat.append(p)
    assert pq.read_table(out).equals(pa.concat_tables([pq.read_table(p) for p in parts]))
    # a filter on k prunes pages by the (moved) column and offset indexes
    picked = pq.read_table(out, filters=[("k", ">=", 2500), ("k", "<", 2510)])
    assert picked.column("k").to_pylist() == list(range(2500, 2510))
    assert duckdb.sql(f"SELECT sum(k) FROM '{out}' WHERE k BETWEEN 1990 AND 2009").fetchall() == [
        (sum(range(1990, 2010)),)
    ]


def test_one_part_gives_its_own_footer_back(tmp_path: Path) -> None:
    (part,) = _points_parts(tmp_path, [[50, 60]])
    out = tmp_path / "copy.parquet"
    with AtomicParquetConcat(out) as concat:
        concat.append(part)
    assert out.read_bytes() == part.read_bytes()  # nothing moved, nothing lost in the footer


def test_joined_images_keep_their_bytes(tmp_path: Path) -> None:
    parts = []
    for p, frames in enumerate([[0, 1, 2], [3, 5]]):
        parts.append(tmp_path / f"{p}.images.parquet")
        with ImagesWriter(parts[-1], "drive_a", "front") as writer:
            for f in frames:
                writer.add(f, 1_000 * f, bytes([f]) * (100 + f), "jpeg")
    out = tmp_path / "front.parquet"
    with AtomicParquetConcat(out) as concat:
        for p in parts:
            concat.append(p)
    table = pq.read_table(out)
    assert table.column("frame_index").to_pylist() == [0, 1, 2, 3, 5]
    assert table.column("data").to_pylist()[4] == bytes([5]) * 105


def test_a_part_of_another_schema_or_sequence_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    (points,) = _points_parts(tmp_path, [[10]])
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1.0]}), other)
    out = tmp_path / "out" / "p.parquet"
    concat = AtomicParquetConcat(out)
    concat.append(points)
    with pytest.raises(ExportError, match=r"other\.parquet to .*p\.parquet: its Parquet schema differs"):
        concat.append(other)
    assert list(out.parent.iterdir()) == []

    b = tmp_path / "b"
    b.mkdir()
    with PointsWriter(b / "p.parquet", "drive_b") as writer:
        writer.add(0, np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int32))
    concat = AtomicParquetConcat(out)
    concat.append(points)
    with pytest.raises(ExportError, match=r"key-value metadata .* differs"):
        concat.append(b / "p.parquet")
    assert list(out.parent.iterdir()) == []


def test_a_truncated_part_is_refused_by_name(tmp_path: Path) -> None:
    (part,) = _points_parts(tmp_path, [[100, 100]])
    part.write_bytes(part.read_bytes()[:-20])
    out = tmp_path / "out.parquet"
    concat = AtomicParquetConcat(out)
    with pytest.raises(ExportError, match=rf"cannot read {part}: not a Parquet file"):
        concat.append(part)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == [part.name]


def test_nothing_appended_existing_output_and_aborts(tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    with pytest.raises(ExportError, match="no part was appended"), AtomicParquetConcat(out):
        pass
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"x")
    with pytest.raises(ExportError, match="already exists and fusion never overwrites"):
        AtomicParquetConcat(out)
    (part,) = _points_parts(tmp_path, [[5]])
    with AtomicParquetConcat(out, overwrite=True) as concat:
        concat.append(part)
    assert pq.read_table(out).num_rows == 5
    concat = AtomicParquetConcat(tmp_path / "q.parquet")
    concat.append(part)
    concat.abort()
    concat.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == [part.name, "p.parquet"]


def test_footer_is_fastparquets_serialization_of_the_joined_metadata(tmp_path: Path) -> None:
    """The footer put together from serialized row groups has the bytes fastparquet gives for the
    joined FileMetaData object; one size-header byte up to 14 row groups, a varint above."""
    from fastparquet import cencoding

    parts = _points_parts(tmp_path, [[5] * 9, [], [7] * 5, [1] * 20])
    for k, joined in enumerate([parts[:1], parts[:3], parts]):  # 9, 14 and 34 row groups
        out = tmp_path / f"joined{k}.parquet"
        with AtomicParquetConcat(out) as concat:
            for p in joined:
                concat.append(p)
        data = out.read_bytes()
        (length,) = np.frombuffer(data[-8:-4], np.uint32)
        footer = data[-8 - int(length) : -8]
        meta = cencoding.from_buffer(footer, "FileMetaData")
        assert len(meta.row_groups) == [9, 14, 34][k]
        assert bytes(meta.to_bytes()) == footer
        assert pq.read_table(out).equals(pa.concat_tables([pq.read_table(p) for p in joined]))


def test_appended_row_groups_are_held_compactly(tmp_path: Path) -> None:
    """A long sequence's footer is held as bytes while parts are appended: well under 2 kB of heap
    per row group (fastparquet's objects took ~20 kB each, 150 MB for a 5-minute 64-beam log)."""
    import tracemalloc

    (part,) = _points_parts(tmp_path, [[3] * 50])
    out = tmp_path / "long.parquet"
    with AtomicParquetConcat(out) as concat:
        concat.append(part)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(20):
                concat.append(part)
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert concat.num_row_groups == 21 * 50
    assert held / (20 * 50) < 2048
    assert pq.ParquetFile(out).metadata.num_row_groups == 21 * 50
