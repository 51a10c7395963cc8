"""The target session of a CDC stream: one connection, its lease, and ``zdtp.cdc_state``.

One psycopg 3 connection does everything, on purpose: the session-level advisory lock (the
lease) lives on the same connection that writes, so a worker that lost its lease cannot write
either. Each target transaction ends with :meth:`TargetSession.commit`, which moves the stream's
row in ``zdtp.cdc_state`` from the LSN this worker last saw to the new one and fails if somebody
else moved it (fencing on top of the lease).
"""

from __future__ import annotations

import logging
import zlib
from datetime import datetime

import psycopg

from zdtp_worker.contract.errors import TemporaryError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.catalog import TableDef
from zdtp_worker.control.session import connect
from zdtp_worker.incremental import text_form
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.pgoutput import format_lsn, parse_lsn

log = logging.getLogger(__name__)

LEASE_CLASS = 0x7A647470  # "zdtp": first key of the two-int advisory lock

STATE_DDL = """
CREATE TABLE IF NOT EXISTS zdtp.cdc_state (
    stream text PRIMARY KEY,
    commit_lsn pg_lsn NOT NULL,
    end_lsn pg_lsn NOT NULL,
    commit_time timestamptz,
    transactions bigint NOT NULL DEFAULT 0,
    changes bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


def lease_key(stream: str) -> int:
    """Second key of the advisory lock: a stable signed 32-bit hash of the stream name."""
    value = zlib.crc32(stream.encode())
    return value - (1 << 32) if value >= (1 << 31) else value


class TargetSession:
    """Connection, lease and the stream's state row; :class:`~.target.Target` adds tables and apply."""

    dsn: str
    stream: str
    application_name: str
    metrics: Metrics | None
    _conn: psycopg.Connection | None
    commit_lsn: int
    end_lsn: int
    confirm_limit: int | None
    tables: dict[TableName, TableDef]
    refetched: int  # in the open transaction: rows read from the source and written
    refetch_gone: int  # in the open transaction: keys the source no longer had

    # -- connection and lease -------------------------------------------------------------
    def connect(self) -> None:
        self._conn = connect(
            self.dsn, role="target", application_name=self.application_name, autocommit=False
        )
        text_form.pin(self._conn)  # parse money as the walsender prints it (see .text_form)
        self._conn.commit()

    @property
    def conn(self) -> psycopg.Connection:
        """The open target session (lease, state and data all go through it)."""
        assert self._conn is not None, "not connected"
        return self._conn

    def _close_session(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def try_lease(self) -> bool:
        """Try to take the stream's lease (session advisory lock); never blocks."""
        row = self.conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (LEASE_CLASS, lease_key(self.stream))
        ).fetchone()
        self.conn.commit()
        return bool(row and row[0])

    def ping(self) -> None:
        self.conn.execute("SELECT 1")
        self.conn.commit()

    # -- state ----------------------------------------------------------------------------
    def load_state(self) -> tuple[int, int]:
        """Create ``zdtp.cdc_state`` if needed and return the stream's (commit_lsn, end_lsn)."""
        for attempt in range(3):
            try:
                self.conn.execute("CREATE SCHEMA IF NOT EXISTS zdtp")
                self.conn.execute(STATE_DDL)
                # Added later: the heartbeat LSN emitted before the last START_REPLICATION (see
                # Target.set_confirm_limit); created here so older state tables get it too.
                self.conn.execute("ALTER TABLE zdtp.cdc_state ADD COLUMN IF NOT EXISTS confirm_limit pg_lsn")
                self.conn.execute(
                    "INSERT INTO zdtp.cdc_state (stream, commit_lsn, end_lsn) VALUES (%s, '0/0', '0/0')"
                    " ON CONFLICT (stream) DO NOTHING",
                    (self.stream,),
                )
                row = self.conn.execute(
                    "SELECT commit_lsn::text, end_lsn::text, confirm_limit::text"
                    " FROM zdtp.cdc_state WHERE stream = %s",
                    (self.stream,),
                ).fetchone()
                self.conn.commit()
                break
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                # Another worker (full sync) created the schema/table concurrently: retry.
                self.conn.rollback()
                if attempt == 2:
                    raise
        assert row is not None
        self.commit_lsn, self.end_lsn = parse_lsn(row[0]), parse_lsn(row[1])
        # NULL: the row was written by a zdtp from before this column (see Stream start-up).
        self.confirm_limit = None if row[2] is None else parse_lsn(row[2])
        return self.commit_lsn, self.end_lsn

    def set_confirm_limit(self, lsn: int) -> None:
        """Store the LSN of the heartbeat emitted just before START_REPLICATION; commits.

        Until the first message arrives, psycopg2 confirms keepalive positions to the slot on its
        own; they cannot pass this heartbeat (it is the first message the stream gets, at the
        latest), so the start-up gap check accepts a slot confirmed up to here.
        """
        self.conn.execute(
            "UPDATE zdtp.cdc_state SET confirm_limit = %s::pg_lsn WHERE stream = %s",
            (format_lsn(lsn), self.stream),
        )
        self.conn.commit()
        self.confirm_limit = lsn

    def commit(
        self, *, commit_lsn: int, end_lsn: int, commit_time: datetime | None, transactions: int, changes: int
    ) -> None:
        """Record the last applied source commit and commit the target transaction."""
        cur = self.conn.execute(
            "UPDATE zdtp.cdc_state SET commit_lsn = %s::pg_lsn, end_lsn = %s::pg_lsn, commit_time = %s,"
            " transactions = transactions + %s, changes = changes + %s, updated_at = now()"
            " WHERE stream = %s AND commit_lsn = %s::pg_lsn",
            (
                format_lsn(commit_lsn),
                format_lsn(end_lsn),
                commit_time,
                transactions,
                changes,
                self.stream,
                format_lsn(self.commit_lsn),
            ),
        )
        if cur.rowcount != 1:
            self.rollback()
            raise TemporaryError(
                f"stream {self.stream}: zdtp.cdc_state moved under us (another writer?); not committing"
            )
        self.conn.commit()
        self.commit_lsn, self.end_lsn = commit_lsn, end_lsn
        if self.refetched or self.refetch_gone:
            # One line per target transaction, not per row.
            log.info(
                "target: batch up to %s completed %d row(s) from the source (unchanged TOAST values the"
                " target could not supply); %d key(s) no longer on the source, left to later changes",
                format_lsn(end_lsn),
                self.refetched,
                self.refetch_gone,
            )
            if self.metrics is not None:
                self.metrics.rows_refetched += self.refetched
                self.metrics.refetch_keys_gone += self.refetch_gone
            self.refetched = self.refetch_gone = 0

    def advance(self, end_lsn: int) -> None:
        """Record that the stream is applied up to ``end_lsn`` though no change arrived since the
        last commit (the source wrote only WAL this stream does not carry); commits.

        psycopg2 confirms such positions to the slot on its own (keepalive ``wal_end``, once
        every received message is confirmed); storing them first keeps the slot's confirmed
        position at or behind the target's, which is what the start-up gap check relies on.
        """
        if end_lsn <= self.end_lsn:
            return
        cur = self.conn.execute(
            "UPDATE zdtp.cdc_state SET end_lsn = %s::pg_lsn, updated_at = now()"
            " WHERE stream = %s AND commit_lsn = %s::pg_lsn",
            (format_lsn(end_lsn), self.stream, format_lsn(self.commit_lsn)),
        )
        if cur.rowcount != 1:
            self.rollback()
            raise TemporaryError(
                f"stream {self.stream}: zdtp.cdc_state moved under us (another writer?); not advancing"
            )
        self.conn.commit()
        self.end_lsn = end_lsn

    def rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.rollback()
        self.refetched = self.refetch_gone = 0
        # DDL done in the rolled-back transaction is gone: re-read table definitions.
        self.tables.clear()
