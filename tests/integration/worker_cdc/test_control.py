"""zdtp_worker.control, the psycopg-3-only database work the Airflow side runs: stream set-up
(publication + slot, idempotent) and the source/target comparison after a copy."""

from __future__ import annotations

import psycopg
import pytest

from zdtp_worker.contract.errors import ConfigError, DataError, TemporaryError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.stream_setup import prepare_stream
from zdtp_worker.control.verify import compare_tables

pytestmark = pytest.mark.postgres


def _run(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_prepare_stream_creates_publication_and_slot_once(source_dsn: str) -> None:
    _run(source_dsn, "CREATE TABLE a (id int PRIMARY KEY, v text)", "CREATE TABLE b (id int PRIMARY KEY)")
    tables = [TableName.model_validate("a")]
    prepare_stream(source_dsn=source_dsn, tables=tables, slot="zdtp_ctl", publication="zdtp_ctl")
    # Again, with one more table: nothing is recreated, the missing table is added.
    prepare_stream(
        source_dsn=source_dsn,
        tables=[*tables, TableName.model_validate("b")],
        slot="zdtp_ctl",
        publication="zdtp_ctl",
    )
    with psycopg.connect(source_dsn) as conn:
        slots = conn.execute(
            "SELECT plugin, database = current_database() FROM pg_replication_slots"
            " WHERE slot_name = 'zdtp_ctl'"
        ).fetchall()
        members = conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'zdtp_ctl' ORDER BY 1"
        ).fetchall()
    assert slots == [("pgoutput", True)]
    assert members == [("a",), ("b",)]


def test_prepare_stream_refuses_bad_input_before_creating_anything(source_dsn: str) -> None:
    _run(source_dsn, "CREATE TABLE nokey (v text)")
    with pytest.raises(ConfigError, match=r"source table public\.missing does not exist"):
        prepare_stream(
            source_dsn=source_dsn,
            tables=[TableName.model_validate("missing")],
            slot="zdtp_x",
            publication="zdtp_x",
        )
    with pytest.raises(DataError, match="has no primary key"):
        prepare_stream(
            source_dsn=source_dsn,
            tables=[TableName.model_validate("nokey")],
            slot="zdtp_x",
            publication="zdtp_x",
        )
    with psycopg.connect(source_dsn) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'zdtp_x'"
        ).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication WHERE pubname = 'zdtp_x'").fetchone() == (0,)


def test_prepare_stream_unreachable_source_is_temporary() -> None:
    with pytest.raises(TemporaryError, match="source: cannot connect"):
        prepare_stream(
            source_dsn="postgresql://u:secret@127.0.0.1:1/db",
            tables=[TableName.model_validate("a")],
            slot="s",
            publication="p",
        )


def test_compare_tables_counts_checksums_and_missing_target(source_dsn: str, target_dsn: str) -> None:
    ddl = "CREATE TABLE t (id int PRIMARY KEY, d date, v text)"
    _run(
        source_dsn,
        ddl,
        "INSERT INTO t SELECT g, date '2024-01-31' + g, 'v' || g FROM generate_series(1, 50) g",
    )
    _run(
        target_dsn,
        ddl,
        "INSERT INTO t SELECT g, date '2024-01-31' + g, 'v' || g FROM generate_series(1, 50) g",
    )
    _run(source_dsn, "CREATE TABLE only_src (id int PRIMARY KEY)", "INSERT INTO only_src VALUES (1)")
    same = compare_tables(source_dsn=source_dsn, target_dsn=target_dsn, tables=["public.t"], level="checksum")
    assert [(c.source_rows, c.target_rows, c.equal) for c in same] == [(50, 50, True)]
    assert same[0].source_checksum is not None and len(same[0].source_checksum) == 16
    _run(target_dsn, "UPDATE t SET v = 'changed' WHERE id = 7")
    results = compare_tables(
        source_dsn=source_dsn, target_dsn=target_dsn, tables=["public.t", "public.only_src"], level="checksum"
    )
    changed, missing = results
    assert (changed.source_rows, changed.target_rows, changed.equal) == (50, 50, False)
    assert (missing.source_rows, missing.target_rows, missing.equal) == (1, -1, False)
    counts = compare_tables(source_dsn=source_dsn, target_dsn=target_dsn, tables=["public.t"], level="count")
    assert counts[0].equal and counts[0].source_checksum is None
    assert (
        compare_tables(source_dsn=source_dsn, target_dsn=target_dsn, tables=["public.t"], level="none") == []
    )
