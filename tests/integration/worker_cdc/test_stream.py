"""CDC against real PostgreSQL: DML across tables, big transactions, TOAST, NULLs, truncate."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, state, wait_equal

pytestmark = pytest.mark.postgres

DDL = """
CREATE TABLE a (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz, tags text[], doc jsonb);
CREATE TABLE b (k1 text, k2 int, big text, n int, PRIMARY KEY (k1, k2));
"""


def test_dml_across_tables_reaches_target(source_dsn: str, target_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute(DDL)
    spec = make_spec(["public.a", "public.b"])
    worker = InProcessWorker(spec, source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute(
                "INSERT INTO a SELECT g, 'n' || g, g * 1.5, now(), ARRAY['x', E'tab\\there'], '{\"k\": 1}'"
                " FROM generate_series(1, 100) g"
            )
            src.execute("INSERT INTO a VALUES (1000, E'line\\nbreak \\\\ back', NULL, NULL, NULL, NULL)")
            src.execute("UPDATE a SET name = 'updated' WHERE id <= 10")
            src.execute("DELETE FROM a WHERE id BETWEEN 11 AND 20")
            src.execute("UPDATE a SET id = id + 5000 WHERE id BETWEEN 21 AND 25")  # key change
            with src.transaction():
                src.execute("INSERT INTO b SELECT 'k' || g, g, NULL, g FROM generate_series(1, 50) g")
                src.execute("UPDATE b SET n = n * 2 WHERE k2 % 2 = 0")
                src.execute("DELETE FROM b WHERE k2 > 45")
                src.execute("INSERT INTO b VALUES ('k46', 46, 'again', 0)")
        wait_equal(source_dsn, target_dsn, ["a", "b"], worker=worker)
        assert worker.metrics is not None and worker.metrics.changes_applied > 0
    finally:
        worker.stop()
    assert state(target_dsn)[0][3] > 0
