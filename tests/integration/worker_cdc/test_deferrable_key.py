"""A DEFERRABLE key (REPLICA IDENTITY FULL, since a deferrable key is no replica identity): one
source statement may swap two rows' keys or shift a block of keys, passing through duplicates.
The stream applies such a table by whole old row, in order, with the target's (deferrable, as the
full worker creates it) constraints deferred to commit, and ends equal (inbox item S4-2)."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, table_rows, wait_until

pytestmark = pytest.mark.postgres

DDL = """
CREATE SCHEMA ho;
CREATE TABLE ho.seat (id int PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE,
                      code text NOT NULL UNIQUE DEFERRABLE INITIALLY DEFERRED, v int);
ALTER TABLE ho.seat REPLICA IDENTITY FULL;
INSERT INTO ho.seat SELECT i, 'c' || i, i FROM generate_series(1, 1000) i;
"""
WORKLOAD = [
    "UPDATE ho.seat SET code = CASE id WHEN 1 THEN 'c2' ELSE 'c1' END WHERE id IN (1, 2)",
    "UPDATE ho.seat SET id = CASE id WHEN 10 THEN 11 ELSE 10 END WHERE id IN (10, 11)",
    "DELETE FROM ho.seat WHERE id = 201",
    "UPDATE ho.seat SET id = id + 1 WHERE id BETWEEN 100 AND 200",  # a shifted block of keys
    "INSERT INTO ho.seat VALUES (2000, 'new', 1)",
]


def _rows(dsn: str) -> list[tuple] | None:
    return table_rows(dsn, "ho.seat x", "x::text", "x.id")


def test_deferrable_key_swaps_and_shifts_converge(source_dsn: str, target_dsn: str) -> None:
    for dsn in (source_dsn, target_dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
    worker = InProcessWorker(make_spec(["ho.seat"]), source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            for statement in WORKLOAD:
                src.execute(statement)

        def same() -> bool:
            worker.check()
            return _rows(source_dsn) == _rows(target_dsn)

        wait_until(same, timeout=90, what="target to equal source")
    finally:
        worker.stop()
