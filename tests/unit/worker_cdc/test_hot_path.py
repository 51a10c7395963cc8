"""The stream's hot path (decode → batch → COPY text), rewritten for speed, still says exactly what
the plain per-value code says, for any values: property tests against simple references."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from zdtp_worker.incremental.batch import DELETED, Batch
from zdtp_worker.incremental.pgoutput import UNCHANGED, Column, Relation, tuple_data
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
