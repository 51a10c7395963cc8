"""Private PostgreSQL servers for slot-safety tests (18 embedded, 15 from Debian).

Slot invalidation needs a small ``max_slot_wal_keep_size`` and lots of WAL: done on a server the
test owns, so the shared dev server (and everyone's slots on it) is never touched.
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
from devtools.postgres15 import start_server as start_pg15


@pytest.fixture(params=["18", "15"])
def private_server_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of the ``postgres`` database on a fresh server of the parametrised major version."""
    if request.param == "15":
        server15 = start_pg15()
        try:
            yield server15.dsn()
        finally:
            server15.stop()
        return
    data_dir = Path(tempfile.mkdtemp(prefix="zdtp-slot-pg18-"))
    try:
        server = ensure_server(data_dir, port=free_port())
        yield server.dsn()
    finally:
        stop_server(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def invalidate_slots(dsn: str) -> None:
    """Make the server drop WAL that inactive slots still need: tiny keep size, WAL, checkpoint."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        conn.execute("ALTER SYSTEM SET max_wal_size = '32MB'")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("CREATE TABLE IF NOT EXISTS zdtp_test_wal (x int)")
        for _ in range(6):
            conn.execute("INSERT INTO zdtp_test_wal SELECT generate_series(1, 1000)")
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
