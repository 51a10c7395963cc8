"""Pure parts of completing rows from the source: merging, key parameters, the staged-row read-back."""

from __future__ import annotations

from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.pgoutput import UNCHANGED, Column, Relation
from zdtp_worker.incremental.refetch import fill_unchanged, key_text
from zdtp_worker.incremental.staging import build_shape
from zdtp_worker.incremental.target import _staged


def test_fill_unchanged_takes_only_the_unchanged_values_from_the_source() -> None:
    assert fill_unchanged([b"1", UNCHANGED, None], [b"9", b"blob", b"x"]) == [b"1", b"blob", None]


def test_key_text_decodes_and_keeps_null() -> None:
    assert key_text([b"7", None]) == ["7", None]


def test_staged_row_read_back_marks_kept_columns_unchanged() -> None:
    assert _staged(([1], "5", None, "n")) == [b"5", UNCHANGED, b"n"]
    assert _staged((None, "5", None, "n")) == [b"5", None, b"n"]


def test_missing_partial_rows_are_found_by_key_against_the_target() -> None:
    rel = Relation(
        oid=1,
        namespace="public",
        name="h",
        replica_identity="d",
        columns=(Column("id", 23, -1, True), Column("blob", 25, -1, False)),
    )
    shape, _ = build_shape(
        rel,
        target=TableName(schema="t", name="h"),
        key_names=("id",),
        column_types={"id": "int", "blob": "text"},
        seq=3,
    )
    assert shape.sql_partial_missing == (
        'SELECT s._keep, s."id"::text, s."blob"::text FROM pg_temp.zdtp_stage_3 s'
        ' WHERE s._op = \'P\' AND NOT EXISTS (SELECT 1 FROM "t"."h" t WHERE t."id" = s."id")'
    )


def test_refetch_counters_are_exported() -> None:
    m = Metrics(task="t", slot="s", rows_refetched=3, refetch_keys_gone=1)
    text = m.render()
    assert 'zdtp_cdc_rows_refetched_total{task="t",slot="s"} 3\n' in text
    assert 'zdtp_cdc_refetch_keys_gone_total{task="t",slot="s"} 1\n' in text
