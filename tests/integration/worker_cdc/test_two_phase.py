"""Prepared transactions on the source (021_twophase's shapes): the stream applies a prepared
transaction when, and only if, it is committed (``COMMIT PREPARED``), in commit order, also when
it was prepared before the stream started and holds subtransactions rolled back.

Needs ``max_prepared_transactions > 0``, which the shared dev server does not set: a private
PostgreSQL 18 server of the test's own, restarted once with it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools.ports import free_port
from devtools.postgres import ensure_server, stop_server
from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, state, table_rows, wait_equal

pytestmark = pytest.mark.postgres


@pytest.fixture
def two_phase_source() -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="zdtp-2pc-pg18-"))
    try:
        server = ensure_server(data_dir, port=free_port())
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_prepared_transactions = 10")
        stop_server(data_dir)
        server = ensure_server(data_dir, port=server.port)
        yield server.dsn()
    finally:
        stop_server(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_prepared_transactions_apply_at_commit_prepared_only(two_phase_source: str, target_dsn: str) -> None:
    src = two_phase_source
    with psycopg.connect(src, autocommit=True) as conn:
        assert conn.execute("SHOW max_prepared_transactions").fetchone() == ("10",)
        conn.execute("CREATE TABLE acct (id int PRIMARY KEY, v text, n int)")
        conn.execute("INSERT INTO acct SELECT i, 'v' || i, 0 FROM generate_series(1, 100) i")
    spec = make_spec(["public.acct"], batch_max_changes=500)
    # The copy and the slot first: creating a slot waits for prepared transactions to end.
    InProcessWorker(spec, src, target_dsn, initial_snapshot=True).start().wait_streaming().stop()
    with psycopg.connect(src, autocommit=True) as conn:
        # Prepared while no worker runs, committed while the next one streams.
        conn.execute("BEGIN")
        conn.execute("UPDATE acct SET n = 1 WHERE id <= 10")
        conn.execute("PREPARE TRANSACTION 'before'")
    worker = InProcessWorker(spec, src, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            # A large prepared transaction with a rolled-back subtransaction, past the batch size.
            conn.execute("BEGIN")
            conn.execute("INSERT INTO acct SELECT i, 'big', 2 FROM generate_series(1001, 6000) i")
            conn.execute("SAVEPOINT s")
            conn.execute("DELETE FROM acct WHERE id BETWEEN 1001 AND 3000")
            conn.execute("ROLLBACK TO SAVEPOINT s")
            conn.execute("UPDATE acct SET v = 'kept' WHERE id BETWEEN 5001 AND 6000")
            conn.execute("PREPARE TRANSACTION 'big'")
            # One to be rolled back: none of it may reach the target.
            conn.execute("BEGIN")
            conn.execute("INSERT INTO acct SELECT i, 'rolled back', 3 FROM generate_series(7001, 7100) i")
            conn.execute("DELETE FROM acct WHERE id BETWEEN 50 AND 60")
            conn.execute("PREPARE TRANSACTION 'no'")
            # Committed after a later ordinary transaction: applied in commit order.
            conn.execute("UPDATE acct SET n = 4 WHERE id BETWEEN 20 AND 30")
            conn.execute("COMMIT PREPARED 'big'")
            conn.execute("ROLLBACK PREPARED 'no'")
            conn.execute("COMMIT PREPARED 'before'")
            conn.execute("UPDATE acct SET n = 5 WHERE id IN (1, 5001)")
        wait_equal(src, target_dsn, ["acct"], worker=worker)
        rows = table_rows(target_dsn, "acct", "count(*), count(*) FILTER (WHERE v = 'rolled back')")
        assert rows == [(5100, 0)]
    finally:
        worker.stop()
    assert state(target_dsn)[0][3] > 0
