"""Rows of one batch trading a unique or exclusion-constrained value (a swap through a
placeholder in one source transaction) reach the target, by the delete-then-insert path.

Compacted by key, such a swap becomes one set-based UPDATE whose row-at-a-time checks see a
clash the source never had ("duplicate key value violates unique constraint", exit 65, before
the fix). The log line proves the fallback ran; the rows prove it is exact.
"""

from __future__ import annotations

import logging

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, wait_equal

pytestmark = pytest.mark.postgres

# Both sides: the target keeps the unique and exclusion constraints (as the full copy makes them).
TABLES = """
CREATE TABLE acct (id int PRIMARY KEY, email text NOT NULL UNIQUE, n int, doc text);
ALTER TABLE acct ALTER COLUMN doc SET STORAGE EXTERNAL;
CREATE TABLE slot (id int PRIMARY KEY, during int4range NOT NULL, EXCLUDE USING gist (during WITH &&));
"""
ROWS = """
INSERT INTO acct SELECT i, 'u' || i, 0, repeat(md5(i::text), 80) FROM generate_series(1, 50) i;
INSERT INTO slot SELECT i, int4range(i * 10, i * 10 + 10) FROM generate_series(1, 50) i;
"""


def test_swapped_unique_and_exclusion_values_apply(
    source_dsn: str, target_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(TABLES + ROWS)
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute(TABLES)
    spec = make_spec(["public.acct", "public.slot"])
    caplog.set_level(logging.INFO, logger="zdtp_worker.incremental.target_apply")
    worker = InProcessWorker(spec, source_dsn, target_dsn, initial_snapshot=True).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            with src.transaction():  # full rows (doc changed too)
                src.execute("UPDATE acct SET email = 'tmp', doc = 'a' WHERE id = 1")
                src.execute("UPDATE acct SET email = 'u1', doc = 'b' WHERE id = 2")
                src.execute("UPDATE acct SET email = 'u2' WHERE id = 1")
            with src.transaction():  # partial rows (doc unchanged, stays TOASTed)
                src.execute("UPDATE acct SET email = 'tmp' WHERE id = 10")
                src.execute("UPDATE acct SET email = 'u10', n = 1 WHERE id = 11")
                src.execute("UPDATE acct SET email = 'u11' WHERE id = 10")
            with src.transaction():  # a swap and a brand-new row taking a freed value
                src.execute("UPDATE acct SET email = 'gone' WHERE id = 20")
                src.execute("INSERT INTO acct VALUES (100, 'u20', 7, 'new')")
                src.execute("DELETE FROM acct WHERE id = 21")
                src.execute("UPDATE acct SET email = 'u21' WHERE id = 22")
            with src.transaction():
                src.execute("UPDATE slot SET during = int4range(-2, -1) WHERE id = 1")
                src.execute("UPDATE slot SET during = int4range(10, 20) WHERE id = 2")
                src.execute("UPDATE slot SET during = int4range(20, 30) WHERE id = 1")
        wait_equal(source_dsn, target_dsn, ["acct", "slot"], worker=worker)
    finally:
        worker.stop()
    fallbacks = [r.getMessage() for r in caplog.records if "delete-then-insert" in r.getMessage()]
    assert any("acct" in m for m in fallbacks) and any("slot" in m for m in fallbacks), fallbacks
