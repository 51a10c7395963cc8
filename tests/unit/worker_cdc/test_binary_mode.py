"""Binary mode's pure parts: tuple decode keeps COPY fields, staging rows are binary COPY rows,
and the start-up rule names why a stream stays text."""

from __future__ import annotations

import struct

import pytest

from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental import binary_mode
from zdtp_worker.incremental.batch import Batch
from zdtp_worker.incremental.pgoutput import (
    NULL_FIELD,
    UNCHANGED,
    Column,
    Insert,
    NeedsTextMode,
    PgOutputDecoder,
    Relation,
    tuple_data_binary,
)
from zdtp_worker.incremental.staging import binary_copy, stage_rows_binary, staged_upsert_prefix

REL = Relation(
    7,
    "public",
    "t",
    "d",
    (Column("id", 23, -1, True), Column("v", 25, -1, False), Column("b", 25, -1, False)),
)


def field(data: bytes) -> bytes:
    return struct.pack("!i", len(data)) + data


def wire(*cols: tuple[str, bytes]) -> bytes:
    out = struct.pack("!h", len(cols))
    for kind, data in cols:
        out += kind.encode() + (field(data) if kind in "bt" else b"")
    return out


def test_binary_tuple_keeps_length_prefixed_fields_and_null_as_minus_one() -> None:
    buf = wire(("b", b"\x00\x00\x00\x01"), ("n", b""), ("u", b""), ("b", b""))
    values, end = tuple_data_binary(buf, 0)
    assert values == [field(b"\x00\x00\x00\x01"), NULL_FIELD, UNCHANGED, field(b"")]
    assert end == len(buf)
    msg = PgOutputDecoder(binary=True)(b"I" + struct.pack("!I", 7) + b"N" + buf)
    assert msg == Insert(7, values)
    assert PgOutputDecoder(binary=True).insert(b"I" + struct.pack("!I", 7) + b"N" + buf) == (7, values)


def test_a_text_value_in_binary_mode_asks_for_text_mode() -> None:
    with pytest.raises(NeedsTextMode):
        tuple_data_binary(wire(("b", b"x"), ("t", b"aclitem text")), 0)


def test_binary_staging_rows_are_copy_rows() -> None:
    one, two, three = field(struct.pack("!i", 1)), field(struct.pack("!i", 2)), field(struct.pack("!i", 3))
    b = Batch()
    b.insert(REL, (0,), [one, field(b"a\tb\\n"), NULL_FIELD])  # new key: direct
    b.update(REL, (0,), [two, field(b"x"), field(b"y")], None)  # existing key: upsert
    b.update(REL, (0,), [three, field(b"z"), UNCHANGED], None)  # partial
    b.delete(REL, (0,), [field(struct.pack("!i", 4)), NULL_FIELD, NULL_FIELD])
    data, direct, n_del, n_up, n_part = stage_rows_binary(b.tables[7], direct_new=True)
    assert (n_del, n_up, n_part) == (1, 2, 1)
    assert direct == [struct.pack("!h", 3) + one + field(b"a\tb\\n") + NULL_FIELD]
    op = lambda c: field(c)  # noqa: E731 - "char" field
    keep = field(struct.pack("!iiiiiii", 1, 0, 23, 1, 1, 4, 2))  # int4[] {2}: element OID 23
    assert data == (
        staged_upsert_prefix(3)
        + two
        + field(b"x")
        + field(b"y")
        + struct.pack("!h", 5)
        + op(b"P")
        + keep
        + three
        + field(b"z")
        + NULL_FIELD
        + struct.pack("!h", 5)
        + op(b"D")
        + NULL_FIELD
        + field(struct.pack("!i", 4))
        + NULL_FIELD
        + NULL_FIELD
    )
    stream = binary_copy(data)
    assert stream.startswith(b"PGCOPY\n\xff\r\n\x00") and stream.endswith(b"\xff\xff")


def test_the_rule_says_why_a_stream_stays_text(monkeypatch: pytest.MonkeyPatch) -> None:
    t = TableName(schema="public", name="t")
    ok = {"server_version": 180000, "keys": {t: ("id",)}, "unportable": {t: []}, "mismatched": {t: []}}
    assert binary_mode.why_text(**ok) is None
    assert "14" in (binary_mode.why_text(**{**ok, "server_version": 130000}) or "")
    assert "keyless" in (binary_mode.why_text(**{**ok, "keys": {t: ()}}) or "")
    assert "mood" in (binary_mode.why_text(**{**ok, "unportable": {t: ["mood"]}}) or "")
    assert "bigint" in (binary_mode.why_text(**{**ok, "mismatched": {t: ["v integer -> bigint"]}}) or "")
    monkeypatch.setattr(binary_mode, "ALLOWED", False)
    assert binary_mode.why_text(**ok) == "binary mode switched off"
    assert binary_mode.type_mismatches([("a", "integer"), ("b", "text")], {"a": "bigint", "b": "text"}) == [
        "a integer -> bigint"
    ]
