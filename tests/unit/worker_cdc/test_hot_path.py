"""The stream's hot path (decode → batch → COPY text), rewritten for speed, still says exactly what
the plain per-value code says, for any values: property tests against simple references."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zdtp_worker.incremental.batch import DELETED, Batch
from zdtp_worker.incremental.pgoutput import (
    COMPILED_MAX_COLUMNS,
    UNCHANGED,
    Column,
    DecodeError,
    Insert,
    NeedsTextMode,
    PgOutputDecoder,
    Relation,
    Update,
    compile_row_reader,
    tuple_data,
    tuple_data_binary,
)
from zdtp_worker.incremental.staging import copy_value, stage_rows

# Values that hit every branch: plain, with a tab / newline / CR / backslash, empty, NULL.
VALUE = st.one_of(
    st.none(),
    st.binary(max_size=12),
    st.sampled_from([b"\t", b"a\tb", b"\n", b"\r", b"\\", b"\\N", b"", b"plain"]),
)


def _relation(width: int) -> Relation:
    return Relation(1, "public", "t", "d", tuple(Column(f"c{i}", 25, -1, i == 0) for i in range(width)))


def _reference(tb, direct_new: bool) -> tuple[list[bytes], list[bytes]]:
    """The COPY lines, value by value, as the format defines them."""
    staged, direct = [], []
    for key, entry in tb.entries.items():
        if entry is DELETED:
            values = [b"\\N"] * len(tb.relation.columns)
            for i, k in zip(tb.key_indexes, key, strict=True):
                values[i] = copy_value(k)
            staged.append(b"D\t\\N\t" + b"\t".join(values) + b"\n")
        elif UNCHANGED in entry:
            keep = ",".join(str(i) for i, v in enumerate(entry) if v is UNCHANGED).encode()
            staged.append(b"P\t{" + keep + b"}\t" + b"\t".join(copy_value(v) for v in entry) + b"\n")
        else:
            row = b"\t".join(copy_value(v) for v in entry) + b"\n"
            (direct if direct_new and key in tb.new_keys else staged).append(b"U\t\\N\t" + row)
    return staged, [r.removeprefix(b"U\t\\N\t") for r in direct]


@settings(max_examples=400)
@given(
    width=st.integers(1, 5),
    ops=st.lists(
        st.tuples(st.sampled_from("IUPD"), st.integers(0, 6), st.lists(VALUE, min_size=5, max_size=5)),
        max_size=30,
    ),
    direct_new=st.booleans(),
)
def test_stage_rows_matches_the_value_by_value_format(width: int, ops, direct_new: bool) -> None:
    rel, key = _relation(width), (0,)
    b = Batch()
    for op, k, values in ops:
        row = [str(k).encode(), *values[: width - 1]]
        if op == "I":
            b.insert(rel, key, row)
        elif op == "U":
            b.update(rel, key, row, None)
        elif op == "P" and width > 1:
            b.update(rel, key, [row[0], UNCHANGED, *row[2:]], None)
        else:
            b.delete(rel, key, [row[0]] + [None] * (width - 1))
    if not b.tables:
        return
    tb = b.tables[1]
    data, direct, *_ = stage_rows(tb, direct_new=direct_new)
    staged, want_direct = _reference(tb, direct_new)
    # Lines in any order (keys are unique in a batch, the apply statements are set-based).
    assert sorted(data.splitlines(keepends=True)) == sorted(staged)
    assert sorted(direct) == sorted(want_direct)


@given(st.lists(st.one_of(VALUE, st.just(UNCHANGED)), max_size=8))
def test_tuple_data_decodes_what_pgoutput_sends(values) -> None:
    parts = [struct.pack("!h", len(values))]
    for v in values:
        if v is None:
            parts.append(b"n")
        elif v is UNCHANGED:
            parts.append(b"u")
        else:
            parts.append(b"t" + struct.pack("!i", len(v)) + v)
    buf = b"xx" + b"".join(parts) + b"tail"
    decoded, end = tuple_data(buf, 2)
    assert decoded == values and buf[end:] == b"tail"


# -- the compiled row readers (pgoutput.compile_row_reader) and the decoder's fast paths --------
def _wire(kinds_values: list[tuple[str, bytes]], ncols: int | None = None) -> bytes:
    parts = [struct.pack("!h", len(kinds_values) if ncols is None else ncols)]
    for kind, v in kinds_values:
        parts.append(kind.encode() + (struct.pack("!i", len(v)) + v if kind in "bt" else b""))
    return b"".join(parts)


COLUMN = st.tuples(st.sampled_from("btnu"), st.binary(max_size=10))


@settings(max_examples=600)
@given(
    cols=st.lists(COLUMN, max_size=9),
    binary=st.booleans(),
    skew=st.sampled_from([0, 0, 0, 1, -1]),
)
def test_compiled_reader_says_what_the_generic_reader_says(cols, binary: bool, skew: int) -> None:
    """For every tuple: the compiled reader of its width returns the generic reader's result, or
    None when the generic reader must decide (an unchanged value, the other format); a reader of
    another width always returns None. The decoder's fast paths then agree with full decoding."""
    buf = b"xx" + _wire(cols) + b"tail"
    generic = tuple_data_binary if binary else tuple_data
    width = max(len(cols) + skew, 0)
    got = compile_row_reader(width, binary=binary)(buf, 2)
    own = "b" if binary else "t"
    if width != len(cols) or any(k not in (own, "n") for k, _ in cols):
        assert got is None
    else:
        assert got == generic(buf, 2)
        assert buf[got[1] :] == b"tail"
    decoder = PgOutputDecoder(binary=binary)
    oid = struct.pack("!I", 42)
    for kind, payload in ((b"I", b"I" + oid + b"N"), (b"U", b"U" + oid + b"N")):
        message = payload + _wire(cols)
        try:
            full = decoder(message)
        except (NeedsTextMode, DecodeError):
            with pytest.raises((NeedsTextMode, DecodeError)):
                decoder.upsert(message)
            continue
        assert isinstance(full, Insert if kind == b"I" else Update)
        assert decoder.upsert(message) == (42, full.new, kind == b"I")
        if kind == b"I":
            assert decoder.insert(message) == (42, full.new)


def test_upsert_leaves_other_messages_to_full_decoding() -> None:
    """An update with an old key or old row, a delete, a begin: not the fast path."""
    decoder = PgOutputDecoder(binary=True)
    new = _wire([("b", b"\x00\x00\x00\x01")])
    oid = struct.pack("!I", 42)
    assert decoder.upsert(b"U" + oid + b"K" + new + b"N" + new) is None
    assert decoder.upsert(b"U" + oid + b"O" + new + b"N" + new) is None
    assert decoder.upsert(b"D" + oid + b"K" + new) is None
    assert decoder.upsert(b"B" + struct.pack("!QqI", 1, 2, 3)) is None


def test_wide_rows_take_the_generic_reader() -> None:
    cols = [("b", str(i).encode()) for i in range(COMPILED_MAX_COLUMNS + 1)]
    message = b"I" + struct.pack("!I", 42) + b"N" + _wire(cols)
    assert PgOutputDecoder(binary=True).upsert(message) == (42, tuple_data_binary(message, 6)[0], True)
