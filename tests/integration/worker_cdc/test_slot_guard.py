"""Slot safety on real servers: invalidated, dropped, recreated slots are errors, never silent gaps."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.worker_cdc.slot_servers import invalidate_slots, private_server_dsn  # noqa: F401
from zdtp_worker.contract.errors import ConfigError, DataError
from zdtp_worker.control import slot_guard

pytestmark = pytest.mark.postgres


def lsn(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()
    assert row is not None
    return int(row[0])


def test_invalidated_slot_is_a_data_error(private_server_dsn: str) -> None:  # noqa: F811
    with psycopg.connect(private_server_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('zdtp_guard', 'pgoutput')")
        state = slot_guard.read_slot(conn, "zdtp_guard")
        assert state is not None and not state.invalidated and state.plugin == "pgoutput"
        applied = state.confirmed_flush
        slot_guard.check_resume(state, slot="zdtp_guard", applied_end_lsn=applied)  # whole: fine
        invalidate_slots(private_server_dsn)
        state = slot_guard.read_slot(conn, "zdtp_guard")
        assert state is not None and state.invalidated, state
        with pytest.raises(DataError, match="replication slot zdtp_guard was invalidated") as err:
            slot_guard.check_resume(state, slot="zdtp_guard", applied_end_lsn=applied)
        assert "zdtp teardown" in str(err.value) and "trigger the full+incremental DAG again" in str(
            err.value
        )
        # Even before anything was applied: an invalidated slot can never stream again.
        with pytest.raises(DataError, match="was invalidated"):
            slot_guard.check_resume(state, slot="zdtp_guard", applied_end_lsn=0)
        assert slot_guard.wal_keep_size_mb(conn) == 1
        assert slot_guard.warn_unlimited_retention(conn, slot="zdtp_guard") is False


def test_recreated_or_dropped_slot_is_a_gap(private_server_dsn: str) -> None:  # noqa: F811
    with psycopg.connect(private_server_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('zdtp_gap', 'pgoutput')")
        first = slot_guard.read_slot(conn, "zdtp_gap")
        assert first is not None
        applied = first.confirmed_flush
        assert slot_guard.warn_unlimited_retention(conn, slot="zdtp_gap") is True  # default -1
        # A DBA drops the slot: changes since are lost.
        conn.execute("SELECT pg_drop_replication_slot('zdtp_gap')")
        with pytest.raises(DataError, match="replication slot zdtp_gap is missing"):
            slot_guard.check_resume(None, slot="zdtp_gap", applied_end_lsn=applied)
        # ... and recreates it: it starts at "now".
        conn.execute("CREATE TABLE w (x int); INSERT INTO w SELECT generate_series(1, 5000)")
        conn.execute("SELECT pg_create_logical_replication_slot('zdtp_gap', 'pgoutput')")
        again = slot_guard.read_slot(conn, "zdtp_gap")
        assert again is not None and again.confirmed_flush > applied
        with pytest.raises(DataError) as err:
            slot_guard.check_resume(again, slot="zdtp_gap", applied_end_lsn=applied)
        assert str(err.value).startswith(f"gap: {again.confirmed_flush - applied} bytes of changes are gone;")
        assert again.retained_bytes is not None and 0 <= again.retained_bytes < lsn(conn)
        # First start (nothing applied on the target yet): any whole slot is fine.
        slot_guard.check_resume(again, slot="zdtp_gap", applied_end_lsn=0)


def test_namespace(private_server_dsn: str) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="outside zdtp's namespace"):
        slot_guard.check_namespace(slot="their_slot")
    slot_guard.check_namespace(slot="zdtp_mine")
    with psycopg.connect(private_server_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('their_slot', 'pgoutput')")
        assert slot_guard.drop_own_slot(conn, "their_slot") is False
        assert slot_guard.read_slot(conn, "their_slot") is not None
        conn.execute("SELECT pg_create_logical_replication_slot('zdtp_mine', 'pgoutput')")
        assert slot_guard.drop_own_slot(conn, "zdtp_mine") is True
        assert slot_guard.read_slot(conn, "zdtp_mine") is None
        conn.execute("SELECT pg_drop_replication_slot('their_slot')")
