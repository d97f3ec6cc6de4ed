"""Open any ROS bag (ROS1 `.bag`, ROS2 directory, lone `.db3` / `.mcap`), index it, stream raw messages.

Reading is kept apart from decoding: `Bag.messages()` yields raw serialized bytes in record-time
order; `Bag.deserialize()` turns one into a message object when a stage asks for it.

Message definitions come from the bag itself where it stores them (ROS1 always does, MCAP and
recent sqlite3 bags do); otherwise from the ROS1 Noetic / ROS2 Humble type stores (with
`tf2_msgs/msg/TFMessage` added to Noetic, which rosbags lacks). A topic whose type cannot be
resolved is reported in `Bag.topics` (`decodable=False`, `problem=...`) and skipped, never fatal.

A damaged bag (cut off while recording, or truncated in a copy) is read sequentially up to the
damage: every message before it is yielded and `Bag.warnings` says how much was lost.
"""

from __future__ import annotations

import bz2
import logging
import mmap
import os
import re
import sqlite3
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache, lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import numpy as np
import numpy.typing as npt
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag1 import Reader as Reader1
from rosbags.rosbag1 import ReaderError as ReaderError1
from rosbags.rosbag2 import Reader as Reader2
from rosbags.rosbag2 import ReaderError as ReaderError2
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.msg import normalize_msgtype
from rosbags.typesys.store import Typestore

from fusion.errors import BagError, DecodeError

log = logging.getLogger(__name__)

ROS1_MAGIC = b"#ROSBAG V2.0\n"
MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"

TF_MESSAGE_MSG = "geometry_msgs/TransformStamped[] transforms\n"


class BagFormat(StrEnum):
    """Storage format of a bag."""

    ROS1 = "ros1"
    ROS2_SQLITE3 = "ros2-sqlite3"
    ROS2_MCAP = "ros2-mcap"


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag.

    count: messages the bag's index claims (after recovery of a damaged bag: messages readable).
    first_log_ns / last_log_ns: bag record time of the first and last message, None if unknown.
    decodable: False when no message definition could be found or parsed; `problem` says why.
    """

    name: str
    msgtype: str
    count: int
    first_log_ns: int | None
    last_log_ns: int | None
    decodable: bool
    problem: str | None = None


@dataclass(frozen=True)
class RawMessage:
    """One serialized message as stored: `log_time_ns` is the bag record time, not the header stamp."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes | memoryview


@cache
def _default_store(distro: Literal["ros1", "ros2"]) -> Typestore:
    if distro == "ros1":
        store = get_typestore(Stores.ROS1_NOETIC)
        if "tf2_msgs/msg/TFMessage" not in store.fielddefs:
            store.register(get_types_from_msg(TF_MESSAGE_MSG, "tf2_msgs/msg/TFMessage"))
        return store
    return get_typestore(Stores.ROS2_HUMBLE)


def typestore_for(distro: Literal["ros1", "ros2"]) -> Typestore:
    """The type store used to write (and, lacking definitions in a bag, to read) a ROS distro's bags.

    ROS1: Noetic plus `tf2_msgs/msg/TFMessage`. ROS2: Humble.
    """
    return _default_store(distro)


def detect_format(path: Path) -> BagFormat:
    """Tell a bag's format from what is on disk (magic bytes, not only the suffix).

    Raises BagError naming the path when it is missing, empty, a directory that is not a ROS2
    bag, or a file of no bag format.
    """
    if not path.exists():
        raise BagError(f"{path}: no such file or directory; check the path")
    if path.is_dir():
        meta = path / "metadata.yaml"
        if not meta.is_file():
            inside = sorted(p.name for p in path.iterdir() if p.suffix in {".db3", ".mcap", ".bag"})
            hint = f"; open one of its files directly: {', '.join(inside[:3])}" if inside else ""
            raise BagError(f"{path}: a directory but not a ROS2 bag (no metadata.yaml){hint}")
        storage = _storage_identifier(meta)
        if storage == "mcap":
            return BagFormat.ROS2_MCAP
        if storage == "sqlite3":
            return BagFormat.ROS2_SQLITE3
        raise BagError(f"{meta}: storage_identifier {storage!r} is unknown; fusion reads sqlite3 and mcap")
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as err:
        raise BagError(f"{path}: cannot read: {err.strerror}") from err
    if not head:
        raise BagError(f"{path}: file is empty; it holds no messages")
    if head.startswith(ROS1_MAGIC):
        return BagFormat.ROS1
    if head.startswith(MCAP_MAGIC):
        return BagFormat.ROS2_MCAP
    if head.startswith(SQLITE_MAGIC):
        return BagFormat.ROS2_SQLITE3
    if head.startswith(b"#ROSBAG V1"):
        raise BagError(f"{path}: ROS1 bag format 1.x is not supported; reindex it with `rosbag fix`")
    raise BagError(
        f"{path}: unknown format (not a ROS1 .bag, ROS2 .db3 or .mcap); "
        "fusion reads ROS1 bags, ROS2 bag directories and lone .db3/.mcap files"
    )


def _storage_identifier(meta: Path) -> str:
    from ruamel.yaml import YAML  # a rosbags dependency
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe").load(meta.read_text(errors="replace"))
        return str(doc["rosbag2_bagfile_information"]["storage_identifier"])
    except (YAMLError, KeyError, TypeError) as err:
        raise BagError(f"{meta}: not a rosbag2 metadata file ({_reason(err)}); cannot open the bag") from err


def open_bag(path: str | Path) -> Bag:
    """Open a bag for indexing and streaming; use as a context manager."""
    bag = Bag(Path(path))
    bag.open()
    return bag


class Bag:
    """An open bag: its topic index, a message stream, and deserialisation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = detect_format(path)
        self.warnings: list[str] = []
        self.topics: dict[str, TopicInfo] = {}
        self.recovered = False  # True when read sequentially past damage
        self._reader: Reader1 | Reader2 | None = None
        self._conns: list[Connection] = []
        self._typestore: Typestore = get_typestore(Stores.EMPTY)
        self._recovery: _Recovery | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._mcap_index: _McapIndex | None = None  # a single indexed MCAP file's message index

    @property
    def distro(self) -> Literal["ros1", "ros2"]:
        return "ros1" if self.format is BagFormat.ROS1 else "ros2"

    @property
    def size_bytes(self) -> int:
        if self.path.is_dir():
            return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return self.path.stat().st_size

    # -- opening --------------------------------------------------------------------------------

    def open(self) -> None:
        reader: Reader1 | Reader2 = (
            Reader1(self.path) if self.format is BagFormat.ROS1 else _Reader2(self.path)
        )
        try:
            reader.open()
        except (
            ReaderError1,
            ReaderError2,
            struct.error,
            ValueError,
            KeyError,
            OSError,
            sqlite3.Error,
            TypeError,  # rosbags' MCAP reader on a file that ends right after its magic: ord(b"")
        ) as err:
            self._open_recovery(err)
            return
        except Exception as err:  # apsw's errors share no base class with sqlite3's
            if "apsw" not in type(err).__module__.lower():
                raise
            self._open_recovery(err)
            return
        self._reader = reader
        self._conns = list(reader.connections)
        times = self._record_times()
        self._build_index(self._conns, times)

    def _open_recovery(self, err: Exception) -> None:
        why = "the file ends inside its first record" if isinstance(err, TypeError) else _reason(err)
        files = _storage_files(self.path, self.format)
        if self.format is BagFormat.ROS2_SQLITE3:
            self._tmp = tempfile.TemporaryDirectory(prefix="fusion-recover-")
            files = [_padded_sqlite_copy(f, Path(self._tmp.name)) for f in files]
        try:
            rec = _Recovery.scan(files, self.format)
        except Exception as scan_err:
            self.close()
            raise BagError(f"{self.path}: cannot open bag: {why}") from scan_err
        if not rec.messages_seen:
            self.close()
            raise BagError(
                f"{self.path}: damaged bag with no readable message ({why}); "
                "copy it again from the recording, or leave it out"
            )
        self._recovery = rec
        self.recovered = True
        if self.format is BagFormat.ROS2_SQLITE3:
            where = "before the damage; the rest of the database is unreadable"
        else:
            size = sum(f.stat().st_size for f in files)
            lost = size - rec.good_bytes
            where = f"from the first {rec.good_bytes} of {size} bytes; {lost} bytes after that are lost"
        self.warnings.append(
            f"{self.path}: bag is damaged or truncated ({why}); read {rec.messages_seen} messages {where}"
        )
        log.info(self.warnings[-1])  # in bag.warnings: the CLI prints it once (summary, inspect's problems)
        self._conns = rec.connections
        self._build_index(self._conns, rec.times)

    def _build_index(self, conns: Sequence[Connection], times: dict[int, tuple[int, int, int]]) -> None:
        """Resolve each connection's type and build `self.topics` (one entry per topic)."""
        store, problem_list = _typestore_for_connections(
            self.distro, tuple((c.msgtype, c.msgdef.format, c.msgdef.data) for c in conns)
        )
        problems = {c.id: p for c, p in zip(conns, problem_list, strict=True) if p is not None}
        self._typestore = store
        self._problems = problems

        topics: dict[str, TopicInfo] = {}
        for conn in conns:
            count, first, last = times.get(conn.id, (conn.msgcount, -1, -1))
            info = TopicInfo(
                name=conn.topic,
                msgtype=conn.msgtype,
                count=count,
                first_log_ns=first if first >= 0 else None,
                last_log_ns=last if last >= 0 else None,
                decodable=conn.id not in problems,
                problem=problems.get(conn.id),
            )
            if (prev := topics.get(conn.topic)) is not None:
                info = _merge_topic(prev, info)
            topics[conn.topic] = info
        for info in topics.values():
            if not info.decodable:
                self.warnings.append(f"{self.path}: topic {info.name} skipped: {info.problem}")
        self.topics = dict(sorted(topics.items()))

    def _record_times(self) -> dict[int, tuple[int, int, int]]:
        """Per connection id: (count, first, last) record time, from the bag's own indexes."""
        out: dict[int, tuple[int, int, int]] = {}
        reader = self._reader
        if isinstance(reader, Reader1):
            for conn in self._conns:
                idx = reader.indexes.get(conn.id, [])
                if idx:
                    out[conn.id] = (len(idx), idx[0].time, idx[-1].time)
            return out
        assert reader is not None
        try:
            if self.format is BagFormat.ROS2_SQLITE3:
                out = _sqlite_times(self.path, self._conns)
            else:
                self._mcap_index = _McapIndex.read(reader)
                out = _mcap_times(self._mcap_index.times() if self._mcap_index else {}, self._conns)
        except Exception as err:  # an index we cannot read costs only the first/last times
            log.debug("no record times for %s: %s", self.path, err)
        return out

    def record_times(self, topic: str) -> npt.NDArray[np.int64] | None:
        """Every record time (ns, sorted) of `topic`'s messages, from the bag's own index, without
        reading a message; None where no index tells them all (a damaged bag read sequentially, an
        MCAP bag of several files or without chunk indexes)."""
        info = self.topics.get(topic)
        reader = self._reader
        if info is None or reader is None or self._recovery is not None:
            return None
        conns = [c for c in self._conns if c.topic == topic]
        stamps: list[int] | npt.NDArray[np.int64]
        if isinstance(reader, Reader1):
            stamps = [entry.time for c in conns for entry in reader.indexes.get(c.id, [])]
        elif self.format is BagFormat.ROS2_SQLITE3:
            stamps = _sqlite_stamps(self.path, topic)
        else:
            if self._mcap_index is None:
                return None
            index = self._mcap_index.rows({(c.topic, c.msgtype) for c in conns})
            found = [rows[:, 0] for rows in index.values()]
            stamps = np.concatenate(found) if found else []
        times = np.sort(np.asarray(stamps, dtype=np.int64))
        return times if len(times) == info.count else None

    # -- streaming ------------------------------------------------------------------------------

    def messages(
        self,
        topics: Iterable[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[RawMessage]:
        """Yield raw messages of `topics` (all decodable topics when None) with record time in
        `[start_ns, end_ns)`, in record-time order, one at a time (bounded memory).

        Undecodable topics are never yielded: asking for one by name raises BagError.
        """
        wanted = self._select(topics)
        conns = [c for c in self._conns if c.topic in wanted and c.id not in self._problems]
        if not conns:
            return
        if self._recovery is not None:
            ids = {c.id for c in conns}
            for conn, t, data in self._recovery.iter_messages():
                if conn.id in ids and (start_ns is None or t >= start_ns) and (end_ns is None or t < end_ns):
                    yield RawMessage(conn.topic, conn.msgtype, t, data)
            return
        assert self._reader is not None
        it: Iterator[tuple[Any, int, bytes]]
        index = self._mcap_index
        if (
            index is not None
            and index.direct
            and isinstance(self._reader, Reader2)
            and not self._reader.compression_mode
        ):
            it = index.messages(conns, start_ns, end_ns)
        else:
            it = self._reader.messages(connections=conns, start=start_ns, stop=end_ns)
        count = 0
        while True:
            try:
                conn, t, data = next(it)
            except StopIteration:
                return
            except (ReaderError1, ReaderError2, struct.error, ValueError, OSError, sqlite3.Error) as err:
                self._damaged_midway(err, count)
                return
            except Exception as err:
                if "apsw" in type(err).__module__.lower():
                    self._damaged_midway(err, count)
                    return
                raise
            count += 1
            yield RawMessage(conn.topic, conn.msgtype, t, data)

    def _damaged_midway(self, err: Exception, count: int) -> None:
        msg = (
            f"{self.path}: bag is damaged ({_reason(err)}); stopped after {count} messages of this "
            "stream; the rest of the stream is lost"
        )
        self.warnings.append(msg)
        log.info(msg)  # in bag.warnings, as above

    def _select(self, topics: Iterable[str] | None) -> set[str]:
        if topics is None:
            return {name for name, info in self.topics.items() if info.decodable}
        wanted = set(topics)
        if unknown := sorted(wanted - self.topics.keys()):
            raise BagError(
                f"{self.path}: no topic {', '.join(unknown)}; the bag has {', '.join(self.topics) or 'none'}"
            )
        if bad := sorted(t for t in wanted if not self.topics[t].decodable):
            raise BagError(f"{self.path}: topic {bad[0]} cannot be decoded: {self.topics[bad[0]].problem}")
        return wanted

    def deserialize(self, raw: RawMessage) -> Any:
        """Turn a raw message into a rosbags message object (attribute access as in ROS)."""
        try:
            if self.format is BagFormat.ROS1:
                return self._typestore.deserialize_ros1(raw.data, raw.msgtype)
            return self._typestore.deserialize_cdr(raw.data, raw.msgtype)
        except (SerdeError, struct.error, ValueError, IndexError, KeyError, AssertionError) as err:
            raise DecodeError(
                f"{self.path}: message on {raw.topic} at record time {raw.log_time_ns} ns does not "
                f"deserialize as {raw.msgtype}: {_reason(err)}"
            ) from err

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _reason(err: BaseException) -> str:
    text = " ".join(str(a) for a in err.args) if err.args else type(err).__name__
    # rosbags formats some messages with a tuple of its own: "...damaged: ('Header could not be read.',)"
    text = re.sub(r"\(\s*'([^']*)',?\s*\)", lambda m: m.group(1).rstrip("."), text)
    return " ".join(text.split()).rstrip(".") or type(err).__name__


def _merge_topic(a: TopicInfo, b: TopicInfo) -> TopicInfo:
    firsts = [x for x in (a.first_log_ns, b.first_log_ns) if x is not None]
    lasts = [x for x in (a.last_log_ns, b.last_log_ns) if x is not None]
    return replace(
        a,
        msgtype=a.msgtype if a.msgtype == b.msgtype else f"{a.msgtype}|{b.msgtype}",
        count=a.count + b.count,
        first_log_ns=min(firsts) if firsts else None,
        last_log_ns=max(lasts) if lasts else None,
        decodable=a.decodable or b.decodable,
        problem=a.problem if not a.decodable and not b.decodable else None,
    )


Definition = tuple[str, MessageDefinitionFormat, str]  # (msgtype, format, text) of one connection


@lru_cache(maxsize=32)
def _typestore_for_connections(
    distro: Literal["ros1", "ros2"], defs: tuple[Definition, ...]
) -> tuple[Typestore, tuple[str | None, ...]]:
    """A type store that decodes every connection it can, and per connection why not (or None).

    Cached on the definitions: opening the same log again (each Dask chunk task does) or another
    log from the same recorder skips parsing and code generation, rosbags' costliest step.
    """
    store = get_typestore(Stores.EMPTY)
    problems: list[str | None] = [None] * len(defs)
    embedded: dict[int, dict[str, Any]] = {}
    for i, (msgtype, fmt, text) in enumerate(defs):
        try:
            embedded[i] = _embedded_types(msgtype, fmt, text)
        except (TypesysError, ValueError, KeyError) as err:
            problems[i] = f"message definition in the bag does not parse: {_reason(err)}"
    merged: dict[str, Any] = {}
    for typs in embedded.values():
        merged.update(typs)
    try:  # one code-generation pass for all of them; per connection only when they disagree
        if merged:
            store.register(merged)
    except TypesysError:
        for i, typs in embedded.items():
            try:
                store.register(typs)
            except TypesysError as err:
                problems[i] = f"message definition in the bag conflicts with another: {_reason(err)}"
    wanted = {d[0] for d, p in zip(defs, problems, strict=True) if p is None}
    if missing := wanted - store.fielddefs.keys():  # the standard types only when needed (~0.1 s)
        default = _default_store(distro)
        if needed := _closure(missing, default):
            store.register({k: default.fielddefs[k] for k in needed})
    for i, (msgtype, _, _) in enumerate(defs):
        if problems[i] is not None:
            continue
        if msgtype not in store.fielddefs:
            problems[i] = (
                f"type {msgtype} has no definition in the bag and is not a standard "
                f"ROS {'Noetic' if distro == 'ros1' else 'Humble'} type"
            )
            continue
        try:  # generates the (de)serialisers now, so a type that cannot decode is reported here
            store.get_msgdef(msgtype)
        except (TypesysError, KeyError, ValueError) as err:
            problems[i] = f"type {msgtype} cannot be decoded: {_reason(err)}"
    return store, tuple(problems)


def _closure(names: set[str], store: Typestore) -> set[str]:
    """`names` and every type their fields use, as far as `store` defines them."""
    out: set[str] = set()
    todo = [n for n in names if n in store.fielddefs]

    def walk(node: Any) -> None:
        if isinstance(node, str):
            if node in store.fielddefs and node not in out:
                todo.append(node)
        elif isinstance(node, tuple | list):
            for x in node:
                walk(x)

    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        walk(store.fielddefs[name][1])
    return out


def _embedded_types(msgtype: str, fmt: MessageDefinitionFormat, data: str) -> dict[str, Any]:
    if fmt == MessageDefinitionFormat.NONE or not data:
        return {}
    if fmt == MessageDefinitionFormat.MSG:
        return dict(get_types_from_msg(data, msgtype))
    sep = "=" * 80 + "\n"
    typs: dict[str, Any] = {}
    if data.startswith(f"{sep}IDL: "):
        for part in data.split(sep)[1:]:
            _, idl = part.split("\n", 1)
            typs.update(get_types_from_idl(idl))
    else:
        typs.update(get_types_from_idl(data))
    return typs


# -- record-time indexes of ROS2 storages --------------------------------------------------------


def _sqlite_times(path: Path, conns: Sequence[Connection]) -> dict[int, tuple[int, int, int]]:
    files = [path] if path.is_file() else sorted(path.glob("*.db3"))
    by_topic: dict[str, tuple[int, int, int]] = {}
    for f in files:
        db = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT topics.name, count(*), min(timestamp), max(timestamp) FROM messages "
                "JOIN topics ON messages.topic_id = topics.id GROUP BY topics.name"
            ).fetchall()
        finally:
            db.close()
        for name, n, lo, hi in rows:
            if name in by_topic:
                pn, plo, phi = by_topic[name]
                by_topic[name] = (pn + n, min(plo, lo), max(phi, hi))
            else:
                by_topic[name] = (n, lo, hi)
    out: dict[int, tuple[int, int, int]] = {}
    for conn in conns:
        if conn.topic in by_topic:
            out[conn.id] = by_topic.pop(conn.topic)
    return out


def _sqlite_stamps(path: Path, topic: str) -> list[int]:
    """Every record time of `topic` in a ROS 2 sqlite3 bag (its database files), unsorted."""
    files = [path] if path.is_file() else sorted(path.glob("*.db3"))
    stamps: list[int] = []
    for f in files:
        db = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT timestamp FROM messages JOIN topics ON messages.topic_id = topics.id "
                "WHERE topics.name = ?",
                (topic,),
            ).fetchall()
        finally:
            db.close()
        stamps += [t for (t,) in rows]
    return stamps


@dataclass
class _McapSummary:
    """What rosbags' MCAP reader parses from a file's summary section (schemas, channels, every
    chunk's index record, statistics, connections without their owner), and the per-topic message
    times `_McapIndex.times` derives from it once."""

    schemas: dict[int, Any]
    channels: dict[int, Any]
    chunks: list[Any]
    statistics: Any
    connections: list[Connection]
    times: dict[tuple[str, str], tuple[int, int, int]] | None = None


MCAP_SUMMARIES_KEPT: Final = 2  # files whose summary a process keeps (a worker runs one log's chunks)
_mcap_summaries: OrderedDict[tuple[int, ...], _McapSummary] = OrderedDict()
_mcap_summaries_lock = threading.Lock()


class _McapReader(McapReader):
    """rosbags' MCAP reader, parsing a file's summary once per process. rosbags parses every chunk's
    index record on each open (~9 us a chunk: 27 ms for 5 minutes of 64-beam sweeps stored a chunk
    each, 0.3 s for an hour), and every chunk task of a log opens it, so a log's total cost grew
    with the square of its length. The file is known by device, inode, size, modification time and
    summary offset: a file rewritten or still growing is parsed again."""

    summary: _McapSummary | None = None

    def read_index(self) -> None:
        assert self.bio is not None
        st = os.fstat(self.bio.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, self.data_end)
        with _mcap_summaries_lock:  # a worker's threads may open logs at once
            found = _mcap_summaries.get(key)
            if found is not None:
                _mcap_summaries.move_to_end(key)
        if found is None:
            super().read_index()  # raises for a damaged summary: nothing kept
            found = _McapSummary(
                dict(self.schemas),
                dict(self.channels),
                list(self.chunks),
                self.statistics,
                [c._replace(owner=None) for c in self.connections],
            )
            with _mcap_summaries_lock:
                _mcap_summaries[key] = found
                while len(_mcap_summaries) > MCAP_SUMMARIES_KEPT:
                    _mcap_summaries.popitem(last=False)
        else:
            self.schemas.update(found.schemas)
            self.channels.update(found.channels)
            self.chunks.extend(found.chunks)  # ChunkInfo records: only read, by rosbags and here
            self.statistics = found.statistics
            self.connections.extend(c._replace(owner=self) for c in found.connections)
        self.summary = found


class _DirectoryReader(DirectoryReader):
    STORAGE_PLUGINS: Mapping[str, Any] = {**DirectoryReader.STORAGE_PLUGINS, "mcap": _McapReader}


class _Reader2(Reader2):
    """rosbags' rosbag2 reader (a bag directory or a single .mcap/.db3 file) with `_McapReader`."""

    STORAGE_PLUGINS: Mapping[str, Any] = {
        **Reader2.STORAGE_PLUGINS,
        ".mcap": _McapReader,
        "dir": _DirectoryReader,
    }


_MCAP_MESSAGE: Final = struct.Struct("<BQHIQQ")  # opcode, record length, channel, sequence, log/publish time


@dataclass
class _McapIndex:
    """A single MCAP file's message indexes: per (topic, message type) every message's log time and
    where its record starts, read from the chunks' message index records (no message data), only
    for the chunks a time range needs: opening a 5-minute 64-beam log (3,000 chunks) read all of
    them, 0.06 s for every chunk task, so that a log's opening cost grew with its length and the
    whole run's with its square.

    `direct` (every chunk uncompressed): `messages` reads just the wanted messages' records at
    those offsets, instead of rosbags reading, copying and parsing every record of every chunk in
    the time range. Poses are tiny messages among point clouds and images, so a chunk task reading
    its window's poses read the whole window's data again (a 5-s window of a 64-beam log with
    three cameras: ~210 MB copied for ~60 kB of poses)."""

    path: Path
    chunks: list[Any]  # rosbags' ChunkInfo of each chunk with a message index, in file order
    channels: dict[tuple[str, str], set[int]]  # the MCAP channel ids of each (topic, type)
    direct: bool
    blocks_read: int = 0  # chunks whose message index has been read (each once per call)
    summary: _McapSummary | None = None  # where `times` is kept for the next open in this process

    @classmethod
    def read(cls, reader: Reader2) -> _McapIndex | None:
        """From an open `reader` (its summary: nothing more is read); None for a bag of several
        files, or one whose summary lists no chunks."""
        storage: Any = reader.storage
        storage = getattr(storage, "storages", [storage])  # a bag directory's storage files
        if len(storage) != 1:
            return None
        chunks = list(getattr(storage[0], "chunks", None) or [])
        if not chunks:
            return None
        by_key: dict[tuple[str, str], set[int]] = {}
        for c in storage[0].connections:
            by_key.setdefault((c.topic, c.msgtype), set()).add(c.id)
        return cls(
            path=Path(storage[0].path),
            chunks=[chunk for chunk in chunks if chunk.message_index_offsets],
            channels=by_key,
            direct=all(chunk.compression == "" for chunk in chunks),
            summary=getattr(storage[0], "summary", None),
        )

    def rows(
        self,
        keys: Iterable[tuple[str, str]],
        start_ns: int | None = None,
        end_ns: int | None = None,
        chunks: Sequence[Any] | None = None,
    ) -> dict[tuple[str, str], npt.NDArray[np.int64]]:
        """Per (topic, type) of `keys`: (n, 3) log time, chunk offset and record offset of every
        message in the chunks (default: all) that hold messages of log time in
        [start_ns, end_ns) by their summary's message time range (as rosbags selects them); the
        rows themselves are not cut to the range."""
        owner = {cid: key for key in keys for cid in self.channels.get(key, ())}
        picked = [
            chunk
            for chunk in (self.chunks if chunks is None else chunks)
            if (start_ns is None or start_ns < chunk.message_end_time + 1)
            and (end_ns is None or chunk.message_start_time < end_ns)
            and not owner.keys().isdisjoint(chunk.message_index_offsets)
        ]
        pairs: dict[tuple[str, str], list[bytes]] = {}  # (log time, offset) records, little-endian u64
        where: dict[tuple[str, str], list[tuple[int, int, int]]] = {}  # count, chunk, its records
        with self.path.open("rb") as f:
            for chunk in picked:
                base = min(chunk.message_index_offsets.values())
                f.seek(base)
                block = f.read(chunk.message_index_length)  # the chunk's message index records
                self.blocks_read += 1
                records = chunk.chunk_start_offset + 9 + 40 + len(chunk.compression)
                for cid, offset in chunk.message_index_offsets.items():
                    at = offset - base
                    if cid not in owner or block[at] != 0x07:
                        continue
                    (n,) = struct.unpack_from("<I", block, at + 9 + 2)
                    if n:
                        key = owner[cid]
                        pairs.setdefault(key, []).append(block[at + 9 + 6 : at + 9 + 6 + n])
                        where.setdefault(key, []).append((n // 16, chunk.chunk_start_offset, records))
        table: dict[tuple[str, str], npt.NDArray[np.int64]] = {}
        for key, parts in pairs.items():
            entries = np.frombuffer(b"".join(parts), "<u8").reshape(-1, 2).astype(np.int64)
            counts, chunk_at, records_at = np.asarray(where[key], dtype=np.int64).T
            table[key] = np.column_stack(
                [entries[:, 0], np.repeat(chunk_at, counts), entries[:, 1] + np.repeat(records_at, counts)]
            )
        return table

    def times(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        """Per (topic, type): message count, first and last log time. The counts come from the
        summary (each chunk's message index sizes); the first (last) time from the message
        indexes of the chunks that start (end) early (late) enough to hold it: a few per topic;
        once per file and process (kept with its `_McapSummary`)."""
        if self.summary is not None and self.summary.times is not None:
            return dict(self.summary.times)
        out: dict[tuple[str, str], tuple[int, int, int]] = {}
        read: dict[int, dict[tuple[str, str], npt.NDArray[np.int64]]] = {}  # chunk offset -> its rows
        for key, cids in self.channels.items():
            holding = [c for c in self.chunks if not cids.isdisjoint(c.message_index_offsets)]
            count = sum(c.channel_count.get(cid, 0) for c in holding for cid in cids)
            if not count:
                continue
            by_start = sorted(holding, key=lambda c: c.message_start_time)
            first = self._extreme(key, by_start, read, first=True)
            last = self._extreme(key, sorted(holding, key=lambda c: -c.message_end_time), read, first=False)
            out[key] = (count, first, last)
        if self.summary is not None:
            self.summary.times = dict(out)
        return out

    def _extreme(
        self,
        key: tuple[str, str],
        ordered: list[Any],
        read: dict[int, dict[tuple[str, str], npt.NDArray[np.int64]]],
        *,
        first: bool,
    ) -> int:
        """The earliest (`first`) or latest log time of `key` among `ordered` chunks (sorted by
        their summary start, or by their end latest first), reading a chunk's index only while its
        summary range could still hold a better time; `read` keeps each chunk's rows of every
        topic, so a chunk that holds several topics' first or last messages is read once."""
        best: int | None = None
        for chunk in ordered:
            bound = chunk.message_start_time if first else chunk.message_end_time
            if best is not None and (bound >= best if first else bound <= best):
                break
            if chunk.chunk_start_offset not in read:
                read[chunk.chunk_start_offset] = self.rows(self.channels, chunks=[chunk])
            found = read[chunk.chunk_start_offset].get(key)
            if found is not None and len(found):
                t = int(found[:, 0].min() if first else found[:, 0].max())
                best = t if best is None else (min(best, t) if first else max(best, t))
        if best is None:  # the summary counts messages of `key` that no message index lists
            raise ReaderError2(f"no message index lists the {key[0]} messages the summary counts")
        return best

    def messages(
        self, conns: Sequence[Connection], start_ns: int | None, end_ns: int | None
    ) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time, data) of `conns`' messages with log time in [start_ns, end_ns),
        in rosbags' order (log time, then chunk, then place in the chunk), read one at a time.
        Raises ReaderError2 where a record is not the message its index names."""
        found: list[npt.NDArray[np.int64]] = []
        by_key: dict[tuple[str, str], Connection] = {}
        where = self.rows({(c.topic, c.msgtype) for c in conns}, start_ns, end_ns)
        for conn in conns:
            key = (conn.topic, conn.msgtype)
            if key in by_key or key not in where:
                continue
            by_key[key] = conn
            rows = where[key]
            keep = np.ones(len(rows), dtype=bool)
            if start_ns is not None:
                keep &= rows[:, 0] >= start_ns
            if end_ns is not None:
                keep &= rows[:, 0] < end_ns
            found.append(np.column_stack([rows[keep], np.full(int(keep.sum()), len(by_key) - 1)]))
        if not found:
            return
        table = np.concatenate(found)
        table = table[np.lexsort((table[:, 2], table[:, 1], table[:, 0]))]
        owners = list(by_key.items())
        with self.path.open("rb") as f:
            for t, _, pos, owner in table.tolist():
                key, conn = owners[owner]
                f.seek(pos)
                head = f.read(_MCAP_MESSAGE.size)
                if len(head) < _MCAP_MESSAGE.size:
                    raise ReaderError2(f"message record at byte {pos} is cut short")
                op, length, channel, _, log_time, _ = _MCAP_MESSAGE.unpack(head)
                if op != 0x05 or channel not in self.channels[key] or log_time != t:
                    raise ReaderError2(f"the index names a {key[0]} message at byte {pos}; none is there")
                size = length - (_MCAP_MESSAGE.size - 9)  # the record's length counts from its channel id
                data = f.read(size)
                if len(data) != size:
                    raise ReaderError2(f"message record at byte {pos} is cut short")
                yield conn, t, data


def _mcap_times(
    times: Mapping[tuple[str, str], tuple[int, int, int]], conns: Sequence[Connection]
) -> dict[int, tuple[int, int, int]]:
    """Count and first/last log time per connection from the MCAP index's per-(topic, type) times."""
    return {c.id: times[c.topic, c.msgtype] for c in conns if (c.topic, c.msgtype) in times}


# -- sequential recovery of damaged bags ---------------------------------------------------------


@dataclass
class _Recovery:
    """What a sequential scan of a damaged bag found: connections, per-connection times, extent."""

    fmt: BagFormat
    files: list[Path]
    connections: list[Connection]
    times: dict[int, tuple[int, int, int]]
    good_bytes: int
    messages_seen: int

    @classmethod
    def scan(cls, files: list[Path], fmt: BagFormat) -> _Recovery:
        conns: dict[int, Connection] = {}
        times: dict[int, list[int]] = {}
        good = 0
        seen = 0
        for item in _scan_files(files, fmt, conns):
            if isinstance(item, int):
                good = item
                continue
            conn, t, _ = item
            cur = times.setdefault(conn.id, [0, t, t])
            cur[0] += 1
            cur[1] = min(cur[1], t)
            cur[2] = max(cur[2], t)
            seen += 1
        return cls(
            fmt, files, list(conns.values()), {k: (v[0], v[1], v[2]) for k, v in times.items()}, good, seen
        )

    def iter_messages(self) -> Iterator[tuple[Connection, int, bytes]]:
        """Messages up to the damage, in record-time order within each chunk."""
        conns = {c.id: c for c in self.connections}
        batch: list[tuple[Connection, int, bytes]] = []
        for item in _scan_files(self.files, self.fmt, {}):
            if isinstance(item, int):  # a chunk (or record) boundary: flush in time order
                batch.sort(key=lambda m: m[1])
                yield from batch
                batch = []
                continue
            conn, t, data = item
            batch.append((conns.get(conn.id, conn), t, data))
        batch.sort(key=lambda m: m[1])  # complete records salvaged from a chunk cut by the damage
        yield from batch


ScanItem = tuple[Connection, int, bytes] | int


def _scan_files(files: list[Path], fmt: BagFormat, conns: dict[int, Connection]) -> Iterator[ScanItem]:
    """Scan each storage file in turn; connection ids are offset per file so they stay unique."""
    scanner = {
        BagFormat.ROS1: _scan_ros1,
        BagFormat.ROS2_MCAP: _scan_mcap,
        BagFormat.ROS2_SQLITE3: _scan_sqlite,
    }[fmt]
    base = 0
    for f in files:
        local: dict[int, Connection] = {}
        for item in scanner(f, local):
            if isinstance(item, int):
                yield base + item
            else:
                conn, t, data = item
                yield conn._replace(id=conn.id + 1_000_000 * files.index(f)), t, data
        for cid, conn in local.items():
            conns[cid + 1_000_000 * files.index(f)] = conn._replace(id=cid + 1_000_000 * files.index(f))
        base += f.stat().st_size


def _storage_files(path: Path, fmt: BagFormat) -> list[Path]:
    if path.is_file():
        return [path]
    suffix = ".mcap" if fmt is BagFormat.ROS2_MCAP else ".db3"
    return sorted(path.glob(f"*{suffix}"))


def _padded_sqlite_copy(db: Path, workdir: Path) -> Path:
    """A copy of a cut-off sqlite3 file padded with zero pages to the size its header declares.

    SQLite refuses a file shorter than its header says; padded, every page that survived is
    readable and a scan stops at the first missing one.
    """
    out = workdir / db.name
    with db.open("rb") as src, out.open("wb") as dst:
        head = src.read(100)
        if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
            raise BagError(f"{db}: not an sqlite3 database (header missing)")
        page_size = struct.unpack(">H", head[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        (pages,) = struct.unpack(">I", head[28:32])
        dst.write(head)
        while block := src.read(16 << 20):
            dst.write(block)
        missing = page_size * pages - dst.tell()
        if missing > 0:
            dst.truncate(page_size * pages)
    return out


def _scan_sqlite(path: Path, conns: dict[int, Connection]) -> Iterator[ScanItem]:
    """Read a (padded) sqlite3 storage file row by row, in insertion order, up to the first damage."""
    from rosbags.interfaces import ConnectionExtRosbag2, MessageDefinition

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        defs: dict[str, tuple[str, str]] = {}
        with suppress(sqlite3.Error):
            for name, enc, text in db.execute(
                "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
            ):
                defs[name] = (enc, text)
        try:
            topics = db.execute("SELECT id, name, type, serialization_format FROM topics").fetchall()
        except sqlite3.Error as err:
            raise BagError(
                f"{path.name}: the topics table is lost ({err}); nothing can be recovered"
            ) from err
        for cid, name, msgtype, ser in topics:
            enc, text = defs.get(msgtype, ("", ""))
            fmt = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}.get(
                enc, MessageDefinitionFormat.NONE
            )
            conns[cid] = Connection(
                cid,
                name,
                msgtype,
                MessageDefinition(fmt, text if enc else ""),
                "",
                0,
                ConnectionExtRosbag2(ser, []),
                None,
            )
        rows = 0
        try:
            for cid, t, data in db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                if cid in conns:
                    yield conns[cid], t, data
                rows += 1
                if rows % 1000 == 0:
                    yield rows
        except sqlite3.Error:
            return
    finally:
        db.close()


def _map(path: Path) -> memoryview:
    """The file's bytes, memory-mapped: a scan of a large bag pages it in, it does not load it."""
    with path.open("rb") as f:
        return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))


def _ros1_header(buf: bytes) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    pos = 0
    while pos + 4 <= len(buf):
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        key, _, value = buf[pos : pos + n].partition(b"=")
        fields[key.decode()] = value
        pos += n
    return fields


def _ros1_records(buf: memoryview, pos: int) -> Iterator[tuple[int, dict[str, bytes], memoryview]]:
    """(end offset, header, data) of each complete record in `buf` from `pos`; a partial last
    record is yielded once with end offset -1 and whatever data exists, then the walk stops."""
    size = len(buf)
    while pos + 4 <= size:
        (hlen,) = struct.unpack_from("<I", buf, pos)
        if pos + 8 + hlen > size:
            return
        header = _ros1_header(bytes(buf[pos + 4 : pos + 4 + hlen]))
        (dlen,) = struct.unpack_from("<I", buf, pos + 4 + hlen)
        start = pos + 8 + hlen
        if start + dlen > size:
            yield -1, header, buf[start:size]
            return
        pos = start + dlen
        yield pos, header, buf[start:pos]


def _scan_ros1(path: Path, conns: dict[int, Connection]) -> Iterator[tuple[Connection, int, bytes] | int]:
    """Walk a ROS1 bag record by record; yields messages, and the byte offset after each good chunk.

    An uncompressed chunk cut off by the damage still gives up its complete message records.
    """
    decompress = {b"none": lambda b: b, b"bz2": bz2.decompress, b"lz4": _lz4_decompress}
    seen: dict[int, Connection] = {}
    data = _map(path)
    try:
        for end, header, body in _ros1_records(data, len(ROS1_MAGIC)):
            op = header.get("op", b"\x00")[0]
            if op == 0x05:  # chunk
                compression = header.get("compression", b"none")
                if end < 0 and compression != b"none":
                    return
                raw = memoryview(decompress[compression](bytes(body)) if compression != b"none" else body)
                items: list[tuple[Connection, int, bytes]] = []
                for sub_end, h, d in _ros1_records(raw, 0):
                    if sub_end < 0:
                        break
                    o = h.get("op", b"\x00")[0]
                    if o == 0x07:
                        conn = _ros1_connection(h, bytes(d))
                        seen[conn.id] = conn
                        conns[conn.id] = conn
                    elif o == 0x02:
                        cid = struct.unpack("<I", h["conn"])[0]
                        sec, nsec = struct.unpack("<II", h["time"])
                        if cid in seen:
                            items.append((seen[cid], sec * 1_000_000_000 + nsec, bytes(d)))
                yield from items
                if end < 0:
                    return
                yield end
            elif end < 0:
                return
            elif op == 0x07:  # connection record outside chunks (index section)
                conn = _ros1_connection(header, bytes(body))
                seen.setdefault(conn.id, conn)
                conns.setdefault(conn.id, conn)
            elif op == 0x03:  # bag header
                yield end
    except (struct.error, KeyError, ValueError, OSError):
        return


def _lz4_decompress(data: bytes) -> bytes:
    from lz4.frame import decompress  # a rosbags dependency

    out: bytes = decompress(data)
    return out


def _ros1_connection(header: dict[str, bytes], data: bytes) -> Connection:
    from rosbags.interfaces import ConnectionExtRosbag1, MessageDefinition

    inner = _ros1_header(data)
    cid = struct.unpack("<I", header["conn"])[0]
    return Connection(
        cid,
        header["topic"].decode(),
        normalize_msgtype(inner["type"].decode()),
        MessageDefinition(MessageDefinitionFormat.MSG, inner.get("message_definition", b"").decode()),
        inner.get("md5sum", b"").decode(),
        0,
        ConnectionExtRosbag1(None, None),
        None,
    )


def _mcap_str(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    return bytes(buf[pos + 4 : pos + 4 + n]).decode(), pos + 4 + n


def _mcap_records(buf: memoryview, pos: int) -> Iterator[tuple[int, int, memoryview]]:
    """(end offset, opcode, body) of each complete MCAP record; a partial record ends the walk,
    except a chunk, which is yielded once with end offset -1 and the bytes that exist."""
    size = len(buf)
    while pos + 9 <= size:
        op, length = struct.unpack_from("<BQ", buf, pos)
        start = pos + 9
        if start + length > size:
            if op == 0x06:
                yield -1, op, buf[start:size]
            return
        pos = start + length
        yield pos, op, buf[start:pos]


def _scan_mcap(path: Path, conns: dict[int, Connection]) -> Iterator[tuple[Connection, int, bytes] | int]:
    """Walk an MCAP file record by record up to the damage (an uncompressed chunk cut off by the
    damage still gives up its complete messages)."""
    from rosbags.interfaces import ConnectionExtRosbag2, MessageDefinition

    schemas: dict[int, tuple[str, str, str]] = {}
    channels: dict[int, Connection] = {}

    def walk(buf: memoryview, pos: int, top: bool) -> Iterator[tuple[Connection, int, bytes] | int]:
        for end, op, body in _mcap_records(buf, pos):
            if op == 0x03:  # schema
                (sid,) = struct.unpack_from("<H", body, 0)
                name, p = _mcap_str(body, 2)
                enc, p = _mcap_str(body, p)
                (n,) = struct.unpack_from("<I", body, p)
                schemas[sid] = (name, enc, bytes(body[p + 4 : p + 4 + n]).decode())
            elif op == 0x04:  # channel
                cid, sid = struct.unpack_from("<HH", body, 0)
                topic, p = _mcap_str(body, 4)
                msg_enc, p = _mcap_str(body, p)
                if sid not in schemas:
                    continue
                name, enc, text = schemas[sid]
                fmt = MessageDefinitionFormat.IDL if enc == "ros2idl" else MessageDefinitionFormat.MSG
                conn = Connection(
                    cid,
                    topic,
                    normalize_msgtype(name),
                    MessageDefinition(fmt if text else MessageDefinitionFormat.NONE, text),
                    "",
                    0,
                    ConnectionExtRosbag2(msg_enc, []),
                    None,
                )
                channels[cid] = conn
                conns[cid] = conn
            elif op == 0x05:  # message
                cid, _, log_time = struct.unpack_from("<HIQ", body, 0)
                if cid in channels:
                    yield channels[cid], log_time, bytes(body[22:])
            elif op == 0x06 and top:  # chunk
                compression, p = _mcap_str(body, 28)
                (n,) = struct.unpack_from("<Q", body, p)
                records = body[p + 8 : p + 8 + n]
                if end < 0 and compression:
                    return
                if compression:
                    (usize,) = struct.unpack_from("<Q", body, 16)
                    records = memoryview(_mcap_decompress(bytes(records), compression, usize))
                yield from walk(records, 0, top=False)
            if end < 0:
                return
            if top:
                yield end

    try:
        yield from walk(_map(path), len(MCAP_MAGIC), top=True)
    except (struct.error, ValueError, UnicodeDecodeError):
        return


def _mcap_decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "zstd":
        import zstandard

        out: bytes = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        return out
    if compression == "lz4":
        return _lz4_decompress(data)
    raise ValueError(f"unknown MCAP chunk compression {compression!r}")
