"""Decoder for the ``pgoutput`` logical replication protocol, version 1 (text or binary tuples).

Pure functions over ``bytes``: no I/O, no database types. In text mode column values stay as the
server's text output (``bytes``), ``None`` for SQL NULL, or :data:`UNCHANGED` for a TOASTed
column the update did not touch (the server does not resend it; the target must keep its current
value). In binary mode (pgoutput's ``binary`` option, see :mod:`.binary_mode`) a value is the
column's send format *with its 4-byte length in front* — exactly one field of a binary COPY row —
and SQL NULL is :data:`NULL_FIELD` (length -1), so a row becomes a COPY row by one join.

Reference: PostgreSQL docs, "Logical Replication Message Formats".
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final


class _Unchanged:
    """Marker for an unchanged TOASTed column value (tuple kind ``u``)."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()
Value = bytes | None | _Unchanged
NULL_FIELD: Final = b"\xff\xff\xff\xff"  # SQL NULL in binary mode: a binary COPY field of length -1
PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!bQQq")
_COL = struct.Struct("!Ii")


class DecodeError(ValueError):
    """The stream carried a message this decoder does not understand."""


class NeedsTextMode(Exception):
    """A binary-mode stream met something only text mode handles (a value the server sent as text,
    a type whose binary form is not portable, a change that needs values as text); the stream
    rolls back its open target transaction and restarts in text mode (see :mod:`.binary_mode`)."""


def pg_timestamp(micros: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=micros)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


@dataclass(slots=True, frozen=True)
class Begin:
    final_lsn: int  # LSN of the commit record: the transaction's position in the stream
    commit_time: int  # microseconds since 2000-01-01 UTC
    xid: int


@dataclass(slots=True, frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time: int


@dataclass(slots=True, frozen=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(slots=True, frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # d(efault) n(othing) f(ull) i(ndex)
    columns: tuple[Column, ...]

    @property
    def key_indexes(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.columns) if c.is_key)

    @property
    def qualified(self) -> str:
        return f"{self.namespace}.{self.name}"


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 us per change (hot path)
class Insert:
    relation_oid: int
    new: list[Value]


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 us per change (hot path)
class Update:
    relation_oid: int
    new: list[Value]
    # Old key ('K', sent when the key changed) or old row ('O', REPLICA IDENTITY FULL); else None.
    old: list[Value] | None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 us per change (hot path)
class Delete:
    relation_oid: int
    old: list[Value]  # key columns set, others None (or the full old row with REPLICA IDENTITY FULL)


@dataclass(slots=True, frozen=True)
class Truncate:
    relation_oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(slots=True, frozen=True)
class Ignored:
    """Origin, Type and logical Message: nothing to apply."""

    kind: str


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Ignored


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(0, pos)
    return buf[pos:end].decode(), end + 1


def tuple_data(buf: bytes, pos: int) -> tuple[list[Value], int]:
    ncols = (buf[pos] << 8) | buf[pos + 1]  # int16, never negative here
    pos += 2
    values: list[Value] = []
    append = values.append
    unpack_len = _I32.unpack_from
    # The hot loop of the whole worker: keep it to one branch per column in the common case, and
    # to one slice and one length read per text value (measured ~25% faster than unpacking the
    # length into a tuple target and advancing ``pos`` twice).
    for _ in range(ncols):
        kind = buf[pos]
        if kind == 0x74:  # 't' text
            start = pos + 5
            pos = start + unpack_len(buf, pos + 1)[0]
            append(buf[start:pos])
        elif kind == 0x6E:  # 'n'
            append(None)
            pos += 1
        elif kind == 0x75:  # 'u'
            append(UNCHANGED)
            pos += 1
        elif kind == 0x62:  # 'b' binary: only a binary-mode stream asks for it (tuple_data_binary)
            raise DecodeError("a binary value on a text-mode stream")
        else:
            raise DecodeError(f"unknown tuple column kind {chr(kind)!r}")
    return values, pos


def tuple_data_binary(buf: bytes, pos: int) -> tuple[list[Value], int]:
    """:func:`tuple_data` of a binary-mode stream: each value keeps its 4-byte length in front (a
    binary COPY field), NULL is :data:`NULL_FIELD`. A text value (a type without a send function)
    cannot go into a binary COPY: :class:`NeedsTextMode`."""
    ncols = (buf[pos] << 8) | buf[pos + 1]
    pos += 2
    values: list[Value] = []
    append = values.append
    unpack_len = _I32.unpack_from
    for _ in range(ncols):
        kind = buf[pos]
        if kind == 0x62:  # 'b'
            start = pos + 1
            pos = start + 4 + unpack_len(buf, start)[0]
            append(buf[start:pos])
        elif kind == 0x6E:  # 'n'
            append(NULL_FIELD)
            pos += 1
        elif kind == 0x75:  # 'u'
            append(UNCHANGED)
            pos += 1
        elif kind == 0x74:  # 't'
            raise NeedsTextMode("the server sent a value as text in binary mode (type without send function)")
        else:
            raise DecodeError(f"unknown tuple column kind {chr(kind)!r}")
    return values, pos


TupleReader = Callable[[bytes, int], tuple[list[Value], int]]
# A compiled reader returns None when the row holds something only the generic reader handles.
RowReader = Callable[[bytes, int], tuple[list[Value], int] | None]

# Rows wider than this take the generic loop (compiling a reader per width is cheap, but a
# straight-line function grows with the width; the loop's overhead matters less for wide rows).
COMPILED_MAX_COLUMNS = 128


def compile_row_reader(ncols: int, *, binary: bool) -> RowReader:
    """A reader for tuples of exactly ``ncols`` columns whose values are all sent or NULL (the
    common case), returning what :func:`tuple_data` (``binary``: :func:`tuple_data_binary`) returns
    for them, and ``None`` for anything else (another width, an unchanged TOAST value, a value in
    the other format, garbage): the caller then runs the generic reader, which also raises.

    Why generated code: the per-column loop is the worker's hottest Python. Unrolled into straight
    code with one local per column it runs ~40% faster (no loop, no list appends; measured 1.85 →
    1.14 µs for four columns), which is ~15% of the decode thread's time per change. The source
    is built only from integers and fixed text, never from stream data."""
    kind = 0x62 if binary else 0x74  # 'b' / 't'
    skip = 1 if binary else 5  # binary values keep their length in front (a binary COPY field)
    lines = [
        "def read(buf, pos):",
        f"    if (buf[pos] << 8) | buf[pos + 1] != {ncols}:",
        "        return None",
        "    p = pos + 2",
    ]
    for i in range(ncols):
        lines += [
            "    k = buf[p]",
            f"    if k == {kind}:",
            "        e = p + 5 + unpack_len(buf, p + 1)[0]",
            f"        v{i} = buf[p + {skip}:e]",
            "        p = e",
            "    elif k == 0x6E:",
            f"        v{i} = null",
            "        p += 1",
            "    else:",
            "        return None",
        ]
    lines.append(f"    return [{', '.join(f'v{i}' for i in range(ncols))}], p")
    namespace: dict[str, object] = {"unpack_len": _I32.unpack_from, "null": NULL_FIELD if binary else None}
    exec("\n".join(lines), namespace)  # generated from integers only: see the docstring
    return namespace["read"]  # type: ignore[return-value]


def decode(buf: bytes, tuple_data: TupleReader = tuple_data) -> Message:
    """Decode one pgoutput message (the payload of one XLogData); ``tuple_data``:
    :func:`tuple_data_binary` for a binary-mode stream."""
    kind = buf[0]
    if kind == 0x49:  # 'I'
        (oid,) = _U32.unpack_from(buf, 1)
        if buf[5] != 0x4E:
            raise DecodeError("insert without new tuple")
        new, _ = tuple_data(buf, 6)
        return Insert(oid, new)
    if kind == 0x55:  # 'U'
        (oid,) = _U32.unpack_from(buf, 1)
        pos = 5
        old: list[Value] | None = None
        if buf[pos] in (0x4B, 0x4F):  # 'K' / 'O'
            old, pos = tuple_data(buf, pos + 1)
        if buf[pos] != 0x4E:
            raise DecodeError("update without new tuple")
        new, _ = tuple_data(buf, pos + 1)
        return Update(oid, new, old)
    if kind == 0x44:  # 'D'
        (oid,) = _U32.unpack_from(buf, 1)
        if buf[5] not in (0x4B, 0x4F):
            raise DecodeError("delete without key or old tuple")
        old_row, _ = tuple_data(buf, 6)
        return Delete(oid, old_row)
    if kind == 0x42:  # 'B'
        final_lsn, ts, xid = _BEGIN.unpack_from(buf, 1)
        return Begin(final_lsn, ts, xid)
    if kind == 0x43:  # 'C'
        _flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(buf, 1)
        return Commit(commit_lsn, end_lsn, ts)
    if kind == 0x52:  # 'R'
        (oid,) = _U32.unpack_from(buf, 1)
        namespace, pos = _string(buf, 5)
        name, pos = _string(buf, pos)
        ident = chr(buf[pos])
        (ncols,) = _I16.unpack_from(buf, pos + 1)
        pos += 3
        columns = []
        for _ in range(ncols):
            flags = buf[pos]
            col_name, pos = _string(buf, pos + 1)
            type_oid, typmod = _COL.unpack_from(buf, pos)
            pos += 8
            columns.append(Column(col_name, type_oid, typmod, bool(flags & 1)))
        return Relation(oid, namespace or "pg_catalog", name, ident, tuple(columns))
    if kind == 0x54:  # 'T'
        (nrels,) = _I32.unpack_from(buf, 1)
        options = buf[5]
        oids = struct.unpack_from(f"!{nrels}I", buf, 6)
        return Truncate(tuple(oids), bool(options & 1), bool(options & 2))
    if kind in (0x4F, 0x59, 0x4D):  # 'O' origin, 'Y' type, 'M' message
        return Ignored(chr(kind))
    raise DecodeError(f"unknown pgoutput message type {chr(kind)!r}")


class PgOutputDecoder:
    """:class:`~zdtp_worker.drivers.ChangeDecoder` for pgoutput protocol v1 (``binary``: the
    stream was started with pgoutput's binary option)."""

    def __init__(self, *, binary: bool = False) -> None:
        self.binary = binary
        self._tuple = tuple_data_binary if binary else tuple_data
        self._readers: dict[int, RowReader] = {}  # by column count (see compile_row_reader)

    def __call__(self, payload: bytes) -> Message:
        return decode(payload, self._tuple)

    def _reader(self, ncols: int) -> RowReader:
        """The reader of tuples of ``ncols`` columns: compiled once per width, generic when wide."""
        wide = ncols > COMPILED_MAX_COLUMNS
        reader = self._tuple if wide else compile_row_reader(ncols, binary=self.binary)
        self._readers[ncols] = reader
        return reader

    def insert(self, payload: bytes) -> tuple[int, list[Value]] | None:
        """The hot path: (relation oid, new row) of an Insert without building a message object;
        ``None`` for any other message."""
        if payload[0] != 0x49:  # 'I'
            return None
        ncols = (payload[6] << 8) | payload[7]
        got = (self._readers.get(ncols) or self._reader(ncols))(payload, 6) or self._tuple(payload, 6)
        return _U32.unpack_from(payload, 1)[0], got[0]

    def upsert(self, payload: bytes) -> tuple[int, list[Value], bool] | None:
        """The hot path of row changes: (relation oid, new row, is an insert) of an Insert, or of an
        Update that carries no old tuple (its key did not change, REPLICA IDENTITY is not FULL),
        without building a message object; ``None`` for any other message."""
        kind = payload[0]
        if kind == 0x49:  # 'I'
            inserted = True
        elif kind == 0x55 and payload[5] == 0x4E:  # 'U', then the new tuple right away
            inserted = False
        else:
            return None
        # (inlined: this runs once per change) the tuple's reader by its width, see compile_row_reader
        ncols = (payload[6] << 8) | payload[7]
        got = (self._readers.get(ncols) or self._reader(ncols))(payload, 6) or self._tuple(payload, 6)
        return _U32.unpack_from(payload, 1)[0], got[0], inserted
