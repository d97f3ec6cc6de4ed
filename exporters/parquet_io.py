"""Write and read the dataset's Parquet files: cast to the declared schema, write atomically, check versions.

A file appears under its final name only when it is complete: it is written to a hidden temporary
name in the same directory (``.<name>.tmp-<pid>-<random>``, which pyarrow.dataset, DuckDB and Polars
globs skip), flushed to disk, then renamed into place with `os.replace`. A crashed or killed run
leaves at most such a hidden file, never a truncated one under a final name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final, NoReturn, Self

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exporters.errors import ExportError
from exporters.schema import (
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SEQUENCE_ID_KEY,
    is_valid_sequence_id,
    schema_with_metadata,
)

DEFAULT_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_page_checksum": True}
"""Options given to `pyarrow.parquet.ParquetWriter` unless the caller overrides them. Every page
carries a CRC32 (Parquet's page checksum): float columns barely compress, so zstd stores them as raw
blocks and flipped bytes in them decoded as other numbers, silently, before."""

VERIFY_PAGES: Final[dict[str, Any]] = {"page_checksum_verification": True}
"""Options given to every reader of the dataset's files (`pq.read_table`, `pq.ParquetFile`): a page
whose checksum does not match raises. Pages written without one (older datasets) are read as they are."""

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def conform_table(table: pa.Table, schema: pa.Schema, *, path: Path | str) -> pa.Table:
    """`table` cast to `schema`: its columns in the declared order, with the declared types.

    Raises `ExportError` naming the column and `path` (the file it is meant for) when a column is
    missing or extra, has a type of another kind (text where a number is declared), cannot be cast
    without loss (1.5 into int32, 2**40 into int32), or holds a null where the contract forbids one
    (also inside lists and structs).
    """
    names = table.column_names
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ExportError(f"cannot write {path}: column(s) {duplicated} appear more than once")
    missing = [name for name in schema.names if name not in names]
    if missing:
        raise ExportError(f"cannot write {path}: missing column(s) {missing}")
    extra = [name for name in names if name not in schema.names]
    if extra:
        raise ExportError(f"cannot write {path}: column(s) {extra} are not in the contract's schema")

    columns = []
    for field in schema:
        column = table.column(field.name)
        if not _castable(column.type, field.type):
            raise ExportError(
                f"cannot write {path}: column '{field.name}' has type {column.type}, "
                f"the contract declares {field.type}"
            )
        for chunk in column.chunks:
            where = _first_forbidden_null(chunk, field, field.name)
            if where is not None:
                raise ExportError(
                    f"cannot write {path}: column '{where}' holds nulls but is declared not null"
                )
        try:
            column = column.cast(field.type, safe=True)
        except _ARROW_ERRORS as err:
            raise ExportError(
                f"cannot write {path}: column '{field.name}' cannot be cast from "
                f"{table.column(field.name).type} to {field.type} without loss: {err}"
            ) from err
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema.remove_metadata())


class _AtomicFile:
    """What the atomic writers share: a hidden temporary file beside `path`, renamed into place by
    `_rename_into_place` (after flushing it to disk, unless not `durable`) or removed by `abort`; a
    context manager that commits when its block succeeds and aborts when it raises."""

    def __init__(self, path: Path | str, overwrite: bool, durable: bool = True) -> None:
        self.path = Path(path)
        self._overwrite = overwrite
        self._durable = durable
        self._refuse_overwrite()
        self._tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        self._file: BinaryIO | None = None

    def _open_temporary(self) -> BinaryIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._tmp.open("xb")
        return self._file

    def commit(self) -> None:
        raise NotImplementedError

    def _rename_into_place(self) -> None:
        """Flush the temporary file (to disk when `durable`), close it and rename it to `path`
        (atomic)."""
        if self._file is None:
            raise ExportError(f"cannot write {self.path}: the writer is already committed or aborted")
        try:
            self._file.flush()
            if self._durable:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._refuse_overwrite()
            self._tmp.replace(self.path)  # os.replace: atomic within one directory
        except BaseException as err:
            self._fail(err)
        if self._durable:
            _fsync_directory(self.path.parent)

    def _fail(self, err: BaseException) -> NoReturn:
        """Abort, then raise `err` as an `ExportError` naming the path and the fix when it is I/O."""
        self.abort()
        error = _write_error(self.path, err)
        if error is None:
            raise err
        raise error from err

    def _close_writer(self) -> None:
        """Close what writes into the temporary file, if anything does (on abort)."""

    def abort(self) -> None:
        """Drop the temporary file; nothing appears under `path`. Safe to call more than once."""
        self._close_writer()
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _refuse_overwrite(self) -> None:
        if not self._overwrite and (self.path.exists() or self.path.is_symlink()):
            raise ExportError(
                f"cannot write {self.path}: it already exists and fusion never overwrites output; "
                "remove it, choose another --out, or pass --overwrite"
            )


class AtomicParquetWriter(_AtomicFile):
    """A Parquet file written under a temporary name, renamed into place only on `commit`.

    Use it as a context manager: leaving the block normally commits, an exception aborts (the
    temporary file is removed and nothing appears under `path`). Each `write` appends the table as
    one row group when `row_group_size` is None and the table has at most 1 Mi rows. `durable`
    False skips the flush to disk (fsync) before the rename: for scratch files whose loss a crash
    makes irrelevant (a chunk's part files); the rename still keeps a killed writer's partial file
    from appearing under `path`.

    Example (one row group per sweep)::

        with AtomicParquetWriter(out / "points" / "seq.parquet", schema=POINTS, sequence_id="seq") as w:
            for sweep_table in sweep_tables:
                w.write(sweep_table)
    """

    def __init__(
        self,
        path: Path | str,
        *,
        schema: pa.Schema,
        sequence_id: str,
        overwrite: bool = False,
        durable: bool = True,
        **parquet_kwargs: Any,
    ) -> None:
        self.schema = schema.remove_metadata()
        self.sequence_id = sequence_id
        if not is_valid_sequence_id(sequence_id):
            raise ExportError(
                f"cannot write {path}: sequence id {sequence_id!r} is not sanitised "
                "(use only A-Z a-z 0-9 . _ -)"
            )
        super().__init__(path, overwrite, durable)
        self._writer: pq.ParquetWriter | None = None
        try:
            self._writer = pq.ParquetWriter(
                self._open_temporary(),
                schema_with_metadata(self.schema, sequence_id),
                **{**DEFAULT_PARQUET_OPTIONS, **parquet_kwargs},
            )
        except BaseException as err:
            self._fail(err)

    def write(self, table: pa.Table, *, row_group_size: int | None = None) -> None:
        """Append `table` (cast to the schema, see `conform_table`)."""
        if self._writer is None:
            raise ExportError(f"cannot write {self.path}: the writer is already committed or aborted")
        table = conform_table(table, self.schema, path=self.path)
        self._check_sequence_id_column(table)
        try:
            self._writer.write_table(table, row_group_size=row_group_size)
        except BaseException as err:
            self._fail(err)

    def commit(self) -> None:
        """Finish the file, flush it to disk and rename it to `path`."""
        if self._writer is None or self._file is None:
            raise ExportError(f"cannot write {self.path}: the writer is already committed or aborted")
        try:
            self._writer.close()
            self._writer = None
        except BaseException as err:
            self._fail(err)
        self._rename_into_place()

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                writer.close()

    def _check_sequence_id_column(self, table: pa.Table) -> None:
        if "sequence_id" not in table.column_names or table.num_rows == 0:
            return
        ids = table["sequence_id"]
        others = pc.unique(pc.filter(ids, pc.not_equal(ids, self.sequence_id)))
        if len(others):
            raise ExportError(
                f"cannot write {self.path}: column 'sequence_id' holds {others[0].as_py()!r}, "
                f"but the file is for sequence {self.sequence_id!r}"
            )


def write_table_atomic(
    table: pa.Table,
    path: Path | str,
    *,
    sequence_id: str,
    schema: pa.Schema,
    overwrite: bool = False,
    **parquet_kwargs: Any,
) -> Path:
    """Write `table` to `path` as Parquet with the contract's `schema` and metadata, atomically.

    The table is cast to `schema` first (see `conform_table`), so a bad column fails before any
    file is created. Parent directories are created. `parquet_kwargs` go to
    `pyarrow.parquet.ParquetWriter` (default: zstd compression). Returns `path`.

    Raises `ExportError` naming the path and the fix: a bad column, `path` already existing (unless
    `overwrite`), an unwritable or full directory. On failure no file is left under `path` or
    under the temporary name.
    """
    path = Path(path)
    table = conform_table(table, schema.remove_metadata(), path=path)
    with AtomicParquetWriter(
        path, schema=schema, sequence_id=sequence_id, overwrite=overwrite, **parquet_kwargs
    ) as writer:
        writer.write(table)
    return path


def read_table(
    path: Path | str,
    expected_schema: pa.Schema,
    *,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Read a dataset file, checking its `fusion.schema_version` and its columns against `expected_schema`.

    `columns` (default: all of `expected_schema`) selects what is read; columns the file has beyond
    them are not read. The returned table keeps the file's key-value metadata (`sequence_id_of`).
    Raises `ExportError` when the file is missing or not Parquet, has no or an unknown schema
    version, or lacks an expected column or holds it with another type.
    """
    path = Path(path)
    try:
        file_schema = pq.read_schema(path)
    except FileNotFoundError as err:
        raise ExportError(f"cannot read {path}: no such file") from err
    except IsADirectoryError as err:
        raise ExportError(f"cannot read {path}: it is a directory, not a Parquet file") from err
    except OSError as err:
        raise ExportError(f"cannot read {path}: {err.strerror or err}") from err
    except pa.ArrowException as err:
        raise ExportError(f"cannot read {path}: not a Parquet file ({err})") from err

    _check_version(path, file_schema)

    expected = expected_schema.remove_metadata()
    names = list(expected.names if columns is None else columns)
    for name in names:
        if name not in expected.names:
            raise ExportError(f"cannot read {path}: column '{name}' is not in the contract's schema")
        want = expected.field(name)
        index = file_schema.get_field_index(name)
        if index < 0:
            raise ExportError(f"cannot read {path}: column '{name}' is missing")
        have = file_schema.field(index)
        if not have.type.equals(want.type) or have.nullable != want.nullable:
            raise ExportError(
                f"cannot read {path}: column '{name}' is {have.type}{'' if have.nullable else ' not null'}, "
                f"expected {want.type}{'' if want.nullable else ' not null'}"
            )
    try:
        return pq.read_table(path, columns=names, **VERIFY_PAGES)
    except OSError as err:
        fix = "; the file is damaged, re-run it" if "checksum" in str(err) else ""
        raise ExportError(f"cannot read {path}: {err.strerror or err}{fix}") from err
    except pa.ArrowException as err:
        raise ExportError(f"cannot read {path}: corrupt Parquet file ({err})") from err


def sequence_id_of(table_or_schema: pa.Table | pa.Schema) -> str:
    """The `fusion.sequence_id` metadata of a table read by `read_table` (or of its schema)."""
    schema = table_or_schema if isinstance(table_or_schema, pa.Schema) else table_or_schema.schema
    value = (schema.metadata or {}).get(SEQUENCE_ID_KEY)
    if value is None:
        raise ExportError(
            "the table has no fusion.sequence_id metadata; was it read with exporters.read_table?"
        )
    return bytes(value).decode()


def _check_version(path: Path, schema: pa.Schema) -> None:
    raw = (schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if raw is None:
        raise ExportError(
            f"cannot read {path}: it has no fusion.schema_version metadata; it was not written by fusion"
        )
    text = bytes(raw).decode(errors="replace")
    if text != str(SCHEMA_VERSION):
        raise ExportError(
            f"cannot read {path}: schema version {text!r} is unknown to this fusion, which reads "
            f"version {SCHEMA_VERSION}; use the fusion release that wrote it"
        )


def _kind(type_: pa.DataType) -> str:
    if pa.types.is_dictionary(type_):
        return _kind(type_.value_type)
    checks = (
        ("null", pa.types.is_null),
        ("bool", pa.types.is_boolean),
        ("number", lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)),
        (
            "string",
            lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
        ),
        (
            "binary",
            lambda t: (
                pa.types.is_binary(t)
                or pa.types.is_large_binary(t)
                or pa.types.is_fixed_size_binary(t)
                or pa.types.is_binary_view(t)
            ),
        ),
        (
            "list",
            lambda t: pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t),
        ),
        ("struct", pa.types.is_struct),
    )
    for kind, check in checks:
        if check(type_):
            return kind
    return str(type_)


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether `source` is of the same kind as `target` (numbers to numbers, text to text, ...)."""
    source_kind, target_kind = _kind(source), _kind(target)
    if source_kind == "null":
        return True
    if source_kind != target_kind:
        return False
    if source_kind == "list":
        return _castable(source.value_type, target.value_type)
    if source_kind == "struct":
        source_fields = {source.field(i).name: source.field(i).type for i in range(source.num_fields)}
        for i in range(target.num_fields):
            field = target.field(i)
            if field.name not in source_fields or not _castable(source_fields[field.name], field.type):
                return False
        return bool(len(source_fields) == target.num_fields)
    return True


def _first_forbidden_null(array: pa.Array, field: pa.Field, name: str) -> str | None:
    """The name of the first (nested) part of `array` holding a null where `field` forbids one, or None.

    `array` may still have its source type: struct children are matched to `field`'s by name.
    """
    if array.null_count:
        if not field.nullable:
            return name
        array = array.drop_null()
    source, target = array.type, field.type
    if pa.types.is_dictionary(source):
        return None
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        children = array.flatten()
        for i in range(source.num_fields):
            index = target.get_field_index(source.field(i).name)
            if index >= 0:
                child_field = target.field(index)
                where = _first_forbidden_null(children[i], child_field, f"{name}.{child_field.name}")
                if where is not None:
                    return where
    elif _kind(source) == "list" and _kind(target) == "list":
        return _first_forbidden_null(array.flatten(), target.value_field, f"{name}[]")
    return None


def _write_error(path: Path, err: BaseException) -> ExportError | None:
    """An `ExportError` for an I/O `err` that names `path` and what to do; None for other exceptions."""
    if not isinstance(err, OSError | pa.ArrowException):
        return None
    if isinstance(err, OSError):
        reason = err.strerror or str(err)
        code = err.errno
    else:
        reason, code = str(err), None
    if code in {errno.EACCES, errno.EPERM, errno.EROFS}:
        fix = "choose a writable --out"
    elif code in {errno.ENOSPC, errno.EDQUOT}:
        fix = "free disk space or choose another --out"
    elif code in {errno.ENOTDIR, errno.EEXIST}:
        fix = "a parent of it is a file, not a directory; choose another --out"
    else:
        fix = "check the output directory or choose another --out"
    return ExportError(f"cannot write {path}: {reason}; {fix}")


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not every platform or file system lets a directory be fsynced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


PARQUET_MAGIC = b"PAR1"

_FOOTER_OFFSETS = ("data_page_offset", "dictionary_page_offset", "index_page_offset", "bloom_filter_offset")
"""The ColumnMetaData fields that hold a position in the file (parquet.thrift)."""


class AtomicParquetConcat(_AtomicFile):
    """One Parquet file made of whole Parquet files' row groups, copied byte for byte (nothing is
    decoded or re-encoded), under a temporary name until `commit` renames it into place.

    The parts must share one schema and key-value metadata (they were written by the same writer
    with the same sequence id; checked). Each part's bytes between its magic numbers and its
    footer (column chunks, page indexes, bloom filters) are appended as they are, and its row
    groups' metadata, every file position shifted by where the bytes landed, goes into the new
    footer; fastparquet's Thrift classes read and write the footers. This is how `fusion.chunks`
    joins the chunks' part files of a sequence: a copy at disk speed instead of a decode and an
    encode of every point.

    Each appended row group's metadata is kept serialized (Thrift compact bytes, ~0.5 kB for a
    sweep's six columns), not as fastparquet's objects (nested dicts, ~45 kB of heap each: 150 MB
    for the 3,000 sweeps of a 5-minute log, held by the finishing worker through tracking); the
    footer is put together from them at `commit`, the same bytes as serializing the whole object.

    Example::

        with AtomicParquetConcat(out / "points" / "seq.parquet") as concat:
            for part in parts:
                concat.append(part)
    """

    def __init__(self, path: Path | str, *, overwrite: bool = False) -> None:
        super().__init__(path, overwrite)
        self._head: Any = None  # the first part's FileMetaData without its row groups
        self._groups: list[bytes] = []  # every row group's metadata so far, shifted, serialized
        self._rows = 0
        try:
            self._open_temporary().write(PARQUET_MAGIC)
        except BaseException as err:
            self._fail(err)

    @property
    def num_rows(self) -> int:
        """Rows appended so far."""
        return self._rows

    @property
    def num_row_groups(self) -> int:
        """Row groups appended so far."""
        return len(self._groups)

    def append(self, part: Path | str) -> int:
        """Append every row group of the Parquet file `part`, in order; returns how many."""
        if self._file is None:
            raise ExportError(f"cannot write {self.path}: the writer is already committed or aborted")
        part = Path(part)
        try:
            with part.open("rb") as src:
                footer, body_end = _read_footer(src, part)
                self._check_same_schema(footer, part)
                shift = self._file.tell() - len(PARQUET_MAGIC)
                src.seek(len(PARQUET_MAGIC))
                _copy_bytes(src, self._file, body_end - len(PARQUET_MAGIC))
        except BaseException as err:
            self._fail(err)
        groups = footer.row_groups
        for group in groups:
            _shift_row_group(group, shift)
            if group.ordinal is not None:
                group.ordinal = len(self._groups)
            self._groups.append(bytes(group.to_bytes()))
        if self._head is None:
            footer.row_groups = []
            self._head = footer
        self._rows += int(footer.num_rows)
        return len(groups)

    def commit(self) -> None:
        """Write the footer, flush to disk and rename to `path`. At least one part must be appended."""
        if self._file is None:
            raise ExportError(f"cannot write {self.path}: the writer is already committed or aborted")
        if self._head is None:
            self.abort()
            raise ExportError(f"cannot write {self.path}: no part was appended, so it has no schema")
        self._head.num_rows = self._rows
        footer = _footer_bytes(self._head, self._groups)
        self._groups = []
        try:
            self._file.write(footer)
            self._file.write(struct.pack("<I", len(footer)) + PARQUET_MAGIC)
        except BaseException as err:
            self._fail(err)
        self._rename_into_place()

    def _check_same_schema(self, footer: Any, part: Path) -> None:
        if self._head is None:
            return
        if footer.schema != self._head.schema:
            raise ExportError(
                f"cannot append {part} to {self.path}: its Parquet schema differs from the first part's"
            )
        if (footer.key_value_metadata or []) != (self._head.key_value_metadata or []):
            raise ExportError(
                f"cannot append {part} to {self.path}: its key-value metadata (schema version, "
                "sequence id) differs from the first part's"
            )


def _read_footer(src: BinaryIO, path: Path) -> tuple[Any, int]:
    """A Parquet file's FileMetaData (fastparquet Thrift object) and where its footer starts."""
    with warnings.catch_warnings():  # fastparquet's import probes a deprecated pandas option
        warnings.simplefilter("ignore")
        from fastparquet import cencoding

    size = src.seek(0, os.SEEK_END)
    if size < 2 * len(PARQUET_MAGIC) + 4:
        raise ExportError(f"cannot read {path}: {size} bytes is too short for a Parquet file; re-run")
    src.seek(size - 8)
    tail = src.read(8)
    src.seek(0)
    head = src.read(4)
    if head != PARQUET_MAGIC or tail[4:] != PARQUET_MAGIC:
        raise ExportError(f"cannot read {path}: not a Parquet file (or an encrypted one); re-run")
    (length,) = struct.unpack("<I", tail[:4])
    start = size - 8 - length
    if start < len(PARQUET_MAGIC):
        raise ExportError(f"cannot read {path}: its footer length {length} exceeds the file; re-run")
    src.seek(start)
    try:
        footer = cencoding.from_buffer(src.read(length), "FileMetaData")
    except Exception as err:  # fastparquet raises plain exceptions for a damaged footer
        raise ExportError(f"cannot read {path}: damaged Parquet footer ({err}); re-run") from err
    for group in footer.row_groups:
        for column in group.columns:
            if column.encrypted_column_metadata is not None or column.file_path is not None:
                raise ExportError(
                    f"cannot append {path}: it has encrypted or external column chunks, which cannot "
                    "be copied byte for byte"
                )
    return footer, start


def _shift_row_group(group: Any, shift: int) -> None:
    """Move every file position in a RowGroup's metadata by `shift` bytes (0 means "not set")."""
    if group.file_offset:
        group.file_offset = int(group.file_offset) + shift
    for column in group.columns:
        for name in ("file_offset", "offset_index_offset", "column_index_offset"):
            if getattr(column, name):
                setattr(column, name, int(getattr(column, name)) + shift)
        meta = column.meta_data
        for name in _FOOTER_OFFSETS:
            if getattr(meta, name):
                setattr(meta, name, int(getattr(meta, name)) + shift)


def _footer_bytes(head: Any, groups: Sequence[bytes]) -> bytes:
    """The Thrift compact bytes of the FileMetaData `head` with the serialized RowGroups `groups` as
    its row groups (field 4): what fastparquet's `to_bytes` gives for the whole object, put together
    without rebuilding every row group's objects. fastparquet writes the fields in id order, each
    headed by its id's step from the previous field; so the fields before 4 are written with an
    empty field 4 (whose header and empty list, and the stop byte, are cut off), then field 4's
    header, the list header and the groups, then the fields after 4 as written after an empty
    field 4 (that field cut off; the empty field 2 before it only satisfies `to_bytes`)."""
    fields = head.contents  # field id -> value, and fastparquet's "i32"/"i32list" width markers
    kinds = {k: v for k, v in fields.items() if not isinstance(k, int)}
    before = {k: v for k, v in fields.items() if isinstance(k, int) and k < 4}
    after = {k: v for k, v in fields.items() if isinstance(k, int) and k > 4}
    name = head.thrift_name
    first = bytes(type(head)(name, {**kinds, **before, 4: []}).to_bytes())
    last = bytes(type(head)(name, {**kinds, 2: [], 4: [], **after}).to_bytes())
    if not (first.endswith(b"\x19\x00\x00") and 3 in before and last.startswith(b"\x29\x00\x29\x00")):
        raise ExportError("cannot write a Parquet footer: unexpected Thrift layout of FileMetaData")
    n = len(groups)
    if n == 0:
        header = b"\x00"  # fastparquet's empty list
    elif n <= 14:
        header = bytes([0x0C | n << 4])  # struct elements, the size in the high nibble
    else:
        header = b"\xfc" + _varint(n)
    return b"".join([first[:-3], b"\x19", header, *groups, last[4:]])


def _varint(value: int) -> bytes:
    """`value` (>= 0) as an unsigned LEB128 varint (Thrift compact protocol)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _copy_bytes(src: BinaryIO, dst: BinaryIO, count: int) -> None:
    """Copy `count` bytes from src's position to dst's: in the kernel (`os.copy_file_range`, no
    copy through Python) where the platform has it, else 16 MiB at a time."""
    dst.flush()
    fin, fout = src.fileno(), dst.fileno()
    pos_in, pos_out = src.tell(), dst.tell()
    done = 0
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or across file systems
        while done < count:
            n = os.copy_file_range(fin, fout, count - done, pos_in + done, pos_out + done)
            if n == 0:
                break
            done += n
    src.seek(pos_in + done)
    dst.seek(pos_out + done)
    block = 16 << 20
    while done < count:
        data = src.read(min(block, count - done))
        if not data:
            raise OSError(errno.EIO, f"{getattr(src, 'name', 'part')} ended {count - done} bytes early")
        dst.write(data)
        done += len(data)
