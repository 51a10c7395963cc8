"""Batch compaction: the last state per key wins, TOAST-unchanged columns merge, moves delete."""

from __future__ import annotations

import pytest

from zdtp_worker.incremental.batch import DELETED, Batch, NeedsTargetRow
from zdtp_worker.incremental.pgoutput import UNCHANGED, Column, Relation
from zdtp_worker.incremental.staging import copy_value, stage_rows

REL = Relation(
    1,
    "public",
    "t",
    "d",
    (Column("id", 23, -1, True), Column("v", 25, -1, False), Column("doc", 25, -1, False)),
)
KEY = (0,)


def test_insert_update_delete_compact_to_the_last_state() -> None:
    b = Batch()
    b.insert(REL, KEY, [b"1", b"a", b"x"])
    b.update(REL, KEY, [b"1", b"b", b"x"], None)
    b.insert(REL, KEY, [b"2", b"c", None])
    b.delete(REL, KEY, [b"2", None, None])
    entries = b.tables[1].entries
    assert entries == {(b"1",): [b"1", b"b", b"x"], (b"2",): DELETED}
    assert b.changes == 4 and len(b) == 2


def test_unchanged_toast_merges_with_a_buffered_row_else_stays_partial() -> None:
    b = Batch()
    b.insert(REL, KEY, [b"1", b"a", b"big"])
    b.update(REL, KEY, [b"1", b"b", UNCHANGED], None)
    b.update(REL, KEY, [b"3", b"z", UNCHANGED], None)  # row not in this batch: partial update
    entries = b.tables[1].entries
    assert entries[(b"1",)] == [b"1", b"b", b"big"]
    assert entries[(b"3",)] == [b"3", b"z", UNCHANGED]


def test_key_change_deletes_the_old_key() -> None:
    b = Batch()
    b.insert(REL, KEY, [b"1", b"a", b"big"])
    b.update(REL, KEY, [b"9", b"a", UNCHANGED], [b"1", None, None])
    assert b.tables[1].entries == {(b"1",): DELETED, (b"9",): [b"9", b"a", b"big"]}
    with pytest.raises(NeedsTargetRow):
        b.update(REL, KEY, [b"20", b"a", UNCHANGED], [b"10", None, None])


def test_stage_rows_copy_text() -> None:
    b = Batch()
    b.insert(REL, KEY, [b"1", b"tab\there", None])
    b.insert(REL, KEY, [b"2", b"plain", b"back\\slash\nnl"])
    b.update(REL, KEY, [b"3", b"p", UNCHANGED], None)
    b.delete(REL, KEY, [b"4", None, None])
    data, direct, n_del, n_up, n_part = stage_rows(b.tables[1])
    assert (n_del, n_up, n_part) == (1, 2, 1) and direct == []
    assert data.split(b"\n")[:-1] == [
        b"U\t\\N\t1\ttab\\there\t\\N",
        b"U\t\\N\t2\tplain\tback\\\\slash\\nnl",
        b"P\t{2}\t3\tp\t\\N",
        b"D\t\\N\t4\t\\N\t\\N",
    ]


def test_copy_value_escapes() -> None:
    assert copy_value(None) == b"\\N"
    assert copy_value(b"a\rb") == b"a\\rb"
    assert copy_value(b"\\N") == b"\\\\N"


def test_rows_of_keys_first_inserted_in_the_batch_can_skip_staging() -> None:
    b = Batch()
    b.insert(REL, KEY, [b"1", b"a", None])  # new
    b.update(REL, KEY, [b"1", b"b", None], None)  # still new: its first change was the insert
    b.update(REL, KEY, [b"2", b"c", None], None)  # existed before the batch: upsert
    b.delete(REL, KEY, [b"3", None, None])
    b.insert(REL, KEY, [b"3", b"again", None])  # existed before (deleted first): upsert
    data, direct, n_del, n_up, n_part = stage_rows(b.tables[1], direct_new=True)
    assert direct == [b"1\tb\t\\N\n"]
    assert data == b"U\t\\N\t2\tc\t\\N\nU\t\\N\t3\tagain\t\\N\n"
    assert (n_del, n_up, n_part) == (0, 3, 0)
