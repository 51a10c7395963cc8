"""The stream's slow, periodic work beside the change loop: source watch, sequences, heartbeats.

Nothing here runs per change. The change loop calls :meth:`Housekeeping.tick` when it is idle and
after each commit; each job keeps its own pace:

- the source watch (:mod:`.source_watch`, every 15 s, own source session, main thread): slot
  health, retained WAL, tables outside the stream → metrics;
- sequences (:mod:`.sequences`, at most every 5 s after commits, and at stop): moved ahead on the
  target, on the applier thread (which owns the target session);
- heartbeats (PG 14+): when this stream's tables are quiet but the source writes WAL, a
  non-transactional logical message (``pg_logical_emit_message``) every 10 s gives the stream a
  position to store and confirm, so the slot does not retain that WAL. See ``ChangeLoop`` for why
  the stream does not let the client library confirm keepalive positions instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psycopg

from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.sequences import SequenceKeeper
from zdtp_worker.incremental.source_watch import SourceWatch
from zdtp_worker.incremental.target import Target

log = logging.getLogger(__name__)

SEQUENCE_SECONDS = 5.0
HEARTBEAT_SECONDS = 10.0
HEARTBEAT_MIN_BYTES = 1 << 20
HEARTBEAT_PREFIX = "zdtp_heartbeat"


def heartbeat(conn: psycopg.Connection, slot: str) -> int | None:
    """Write a non-transactional logical message on the source; its LSN, or None if not allowed."""
    try:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_logical_emit_message(false, %s, %s), '0/0')::bigint",
            (HEARTBEAT_PREFIX, slot),
        ).fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        log.warning(
            "no heartbeats on the source (%s): quiet tables keep WAL longer", str(exc).splitlines()[0]
        )
        return None
    return int(row[0]) if row else None


@dataclass
class Housekeeping:
    target: Target
    applier: Applier
    metrics: Metrics
    watch: SourceWatch | None = None
    watch_conn: psycopg.Connection | None = None  # the watch's and heartbeats' own source session
    sequences: SequenceKeeper | None = None
    source: psycopg.Connection | None = None  # the sequence keeper's, used on the applier thread
    heartbeats: bool = False
    sequences_due: bool = False  # changes were committed since the last sequence round
    last_sequences: float = 0.0
    last_heartbeat: float = field(default_factory=time.monotonic)

    def tick(self, *, quiet: bool, server_wal_end: int) -> None:
        """``quiet``: no source transaction in progress or waiting to be committed."""
        if self.watch is not None and self.watch_conn is not None and self.watch.due():
            report = self.watch.poll(self.watch_conn)
            m = self.metrics
            m.slot_retained_wal_bytes = -1 if report.retained_bytes is None else report.retained_bytes
            m.slot_safe_wal_bytes = -1 if report.safe_wal_bytes is None else report.safe_wal_bytes
            m.tables_not_streamed = len(report.not_streamed)
        if self.sequences_due and time.monotonic() - self.last_sequences >= SEQUENCE_SECONDS:
            self.sync_sequences()
        if (
            self.heartbeats
            and quiet
            and self.watch is not None
            and self.watch_conn is not None
            and server_wal_end - self.target.end_lsn > HEARTBEAT_MIN_BYTES
            and time.monotonic() - self.last_heartbeat >= HEARTBEAT_SECONDS
        ):
            self.last_heartbeat = time.monotonic()
            heartbeat(self.watch_conn, self.watch.slot)

    def sync_sequences(self) -> None:
        """Queue one round of moving the target's sequences ahead (applier thread)."""
        keeper, source = self.sequences, self.source
        if keeper is None or source is None:
            return
        self.sequences_due = False
        self.last_sequences = time.monotonic()

        def sync() -> None:
            moved = keeper.sync(source, self.target.conn)
            self.metrics.sequences_moved += len(moved)

        self.applier.submit(sync)
