"""A target parent table with inheritance children (the full worker reproduces ``INHERITS``):
the stream changes the parent's own rows only, never a child's — pgoutput reports each table's
changes by itself, including ``TRUNCATE ONLY`` of the parent (inbox item S4-1)."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, table_rows, wait_until

pytestmark = pytest.mark.postgres

DDL = """
CREATE SCHEMA ho;
CREATE TABLE ho.city (id int PRIMARY KEY, name text, population int);
CREATE TABLE ho.capital (state char(2)) INHERITS (ho.city);
ALTER TABLE ho.capital ADD PRIMARY KEY (id);
"""
ROWS = """
INSERT INTO ho.city SELECT i, 'city ' || i, i FROM generate_series(1, 500) i;
INSERT INTO ho.capital SELECT i, 'cap ' || i, i, 'S' FROM generate_series(1, 100) i;
"""


def _own_rows(dsn: str, table: str) -> list[tuple] | None:
    return table_rows(dsn, f"ONLY {table} x", "x::text", "x.id")


@pytest.mark.parametrize("keyless", [False, True], ids=["keyed", "replica-identity-full-keyless"])
def test_parent_changes_leave_child_rows_alone(source_dsn: str, target_dsn: str, keyless: bool) -> None:
    for dsn in (source_dsn, target_dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
            if keyless:  # whole-row apply (.rowwise)
                conn.execute("ALTER TABLE ho.city DROP CONSTRAINT city_pkey")
                conn.execute("ALTER TABLE ho.city REPLICA IDENTITY FULL")
            conn.execute(ROWS)  # same start on both sides (as after a full sync)
    worker = InProcessWorker(make_spec(["ho.city", "ho.capital"]), source_dsn, target_dsn).start()
    worker.wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("UPDATE ONLY ho.city SET name = 'renamed' WHERE id <= 10")
            src.execute("DELETE FROM ONLY ho.city WHERE id BETWEEN 11 AND 20")
            src.execute("UPDATE ho.capital SET population = -population WHERE id <= 5")
            src.execute("INSERT INTO ho.capital VALUES (1000, 'new cap', 1, 'N')")
            src.execute("TRUNCATE ONLY ho.city")
            src.execute("INSERT INTO ho.city VALUES (1, 'after truncate', 1)")

        def same() -> bool:
            worker.check()
            return all(
                _own_rows(source_dsn, t) == _own_rows(target_dsn, t) for t in ("ho.city", "ho.capital")
            )

        wait_until(same, timeout=60, what="each target table to equal its source table")
        assert len(_own_rows(target_dsn, "ho.capital") or []) == 101
    finally:
        worker.stop()
