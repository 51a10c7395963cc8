"""A row read back from the source waits until the batch's source transactions are visible.

The walsender may send a transaction as soon as its commit record is in the WAL, a moment before
other sessions can see it; reading "no row" then and skipping the key lost rows on a live writer
(tests/e2e/real_node/test_live_source.py). A transaction that is still open is invisible in the
same way, so it stands in for that window here.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from zdtp_worker.contract.errors import TemporaryError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.refetch import SourceRows

pytestmark = pytest.mark.postgres


def _open_writer(dsn: str) -> tuple[psycopg.Connection, int]:
    conn = psycopg.connect(dsn)
    conn.execute("INSERT INTO docs VALUES (1, 'body')")
    xid = conn.execute("SELECT txid_current() % 4294967296").fetchone()[0]  # what pgoutput's Begin carries
    return conn, xid


def test_read_waits_for_the_writing_transaction(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    writer, xid = _open_writer(source_dsn)
    rows = SourceRows(source_dsn)
    table = TableName(schema="public", name="docs")
    try:
        assert rows.fetch(table, ["id", "body"], ["id"], ["1"]) is None  # the window: row not seen yet
        timer = threading.Timer(1.0, writer.commit)
        timer.start()
        started = time.monotonic()
        rows.wait_visible([xid])
        waited = time.monotonic() - started
        timer.join()
        assert waited >= 0.9, f"returned after {waited:.2f} s, before the writer committed"
        assert rows.fetch(table, ["id", "body"], ["id"], ["1"]) == [b"1", b"body"]
    finally:
        writer.close()
        rows.close()


def test_old_and_finished_transactions_do_not_wait(source_dsn: str) -> None:
    rows = SourceRows(source_dsn)
    try:
        with psycopg.connect(source_dsn, autocommit=True) as conn:
            done = conn.execute("SELECT txid_current() % 4294967296").fetchone()[0]
        started = time.monotonic()
        rows.wait_visible([done, 3])  # 3: frozen, older than any snapshot's xmin
        rows.wait_visible([])
        assert time.monotonic() - started < 5
    finally:
        rows.close()


def test_a_transaction_that_never_becomes_visible_is_a_temporary_error(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    writer, xid = _open_writer(source_dsn)
    rows = SourceRows(source_dsn)
    try:
        with pytest.raises(TemporaryError, match="not visible"):
            rows.wait_visible([xid], timeout=0.5)
    finally:
        writer.close()
        rows.close()
