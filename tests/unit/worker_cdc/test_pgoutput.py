"""The pgoutput decoder against hand-built protocol messages (format from the PostgreSQL docs)."""

from __future__ import annotations

import struct

import pytest

from zdtp_worker.incremental.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    DecodeError,
    Delete,
    Ignored,
    Insert,
    Relation,
    Truncate,
    Update,
    decode,
    format_lsn,
    parse_lsn,
    pg_timestamp,
)


def tuple_data(*values: object) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED:
            out += b"u"
        else:
            assert isinstance(v, bytes)
            out += b"t" + struct.pack("!i", len(v)) + v
    return out


def test_begin_and_commit() -> None:
    assert decode(b"B" + struct.pack("!QqI", 0x1_0000_0010, 86_400_000_000, 42)) == Begin(
        0x1_0000_0010, 86_400_000_000, 42
    )
    assert decode(b"C" + struct.pack("!bQQq", 0, 100, 120, 5)) == Commit(100, 120, 5)
    assert pg_timestamp(86_400_000_000).isoformat() == "2000-01-02T00:00:00+00:00"


def test_relation_with_key_flags() -> None:
    body = struct.pack("!I", 16384) + b"public\0items\0" + b"d" + struct.pack("!h", 2)
    body += b"\x01id\0" + struct.pack("!Ii", 23, -1) + b"\x00name\0" + struct.pack("!Ii", 25, -1)
    rel = decode(b"R" + body)
    assert isinstance(rel, Relation)
    assert rel.qualified == "public.items" and rel.replica_identity == "d"
    assert [(c.name, c.type_oid, c.is_key) for c in rel.columns] == [("id", 23, True), ("name", 25, False)]
    assert rel.key_indexes == (0,)


def test_relation_in_pg_catalog_has_empty_namespace() -> None:
    body = struct.pack("!I", 1) + b"\0t\0" + b"d" + struct.pack("!h", 0)
    rel = decode(b"R" + body)
    assert isinstance(rel, Relation) and rel.namespace == "pg_catalog"


def test_insert_with_null_and_special_characters() -> None:
    msg = decode(b"I" + struct.pack("!I", 7) + b"N" + tuple_data(b"1", None, b"tab\there"))
    assert msg == Insert(7, [b"1", None, b"tab\there"])


def test_update_plain_with_old_key_and_unchanged_toast() -> None:
    plain = decode(b"U" + struct.pack("!I", 7) + b"N" + tuple_data(b"1", UNCHANGED))
    assert plain == Update(7, [b"1", UNCHANGED], None)
    moved = decode(
        b"U" + struct.pack("!I", 7) + b"K" + tuple_data(b"1", None) + b"N" + tuple_data(b"2", b"x")
    )
    assert moved == Update(7, [b"2", b"x"], [b"1", None])
    full = decode(b"U" + struct.pack("!I", 7) + b"O" + tuple_data(b"1", b"a") + b"N" + tuple_data(b"1", b"b"))
    assert isinstance(full, Update) and full.old == [b"1", b"a"]


def test_delete_and_truncate() -> None:
    assert decode(b"D" + struct.pack("!I", 7) + b"K" + tuple_data(b"5", None)) == Delete(7, [b"5", None])
    trunc = decode(b"T" + struct.pack("!ib", 2, 3) + struct.pack("!II", 7, 8))
    assert trunc == Truncate((7, 8), cascade=True, restart_identity=True)


def test_origin_type_message_are_ignored_and_garbage_is_refused() -> None:
    assert decode(b"Y" + b"\0" * 8) == Ignored("Y")
    with pytest.raises(DecodeError):
        decode(b"Z")
    with pytest.raises(DecodeError):
        decode(b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!h", 1) + b"x")


def test_lsn_text_round_trip() -> None:
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    assert parse_lsn("0/0") == 0 and format_lsn(0) == "0/0"
