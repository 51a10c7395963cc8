"""The stream's slow, periodic work beside the change loop: source watch, sequences, heartbeats.

Nothing here runs per change. The change loop calls :meth:`Housekeeping.tick` when it is idle and
after each commit; each job keeps its own pace:

- the source watch (:mod:`.source_watch`, every 15 s, own source session, main thread): slot
  health, retained WAL, tables outside the stream → metrics; partitions that may have been
  truncated (not in the stream) are compared by key with the target once it has caught up;
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

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control import slot_guard
from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.only import only
from zdtp_worker.incremental.sequences import SequenceKeeper
from zdtp_worker.incremental.source_watch import SourceWatch, Suspect, extra_target_keys
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
    # For suspect partitions (see .source_watch): source table → target table and stream key.
    mapping: dict[TableName, TableName] = field(default_factory=dict)
    keys: dict[TableName, tuple[str, ...]] = field(default_factory=dict)

    def tick(self, *, quiet: bool, server_wal_end: int) -> None:
        """``quiet``: no source transaction in progress or waiting to be committed."""
        if self.watch is not None and self.watch_conn is not None and self.watch.due():
            report = self.watch.poll(self.watch_conn)
            m = self.metrics
            m.slot_retained_wal_bytes = -1 if report.retained_bytes is None else report.retained_bytes
            m.slot_safe_wal_bytes = -1 if report.safe_wal_bytes is None else report.safe_wal_bytes
            m.tables_not_streamed = len(report.not_streamed)
        if self.watch is not None and self.watch.suspects:
            self._check_suspects(self.watch.suspects)
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

    def _check_suspects(self, suspects: list[Suspect]) -> None:
        """Compare each suspect partition's keys with the target once it has caught up; stop the
        stream if the target keeps rows the source partition lost (twice in a row: see
        :func:`.source_watch.extra_target_keys`)."""
        conn = self.watch_conn
        assert conn is not None and self.watch is not None
        for suspect in list(suspects):
            if suspect.wait_lsn == 0:
                suspect.wait_lsn = self._catch_up_point(conn)
            if self.target.end_lsn < suspect.wait_lsn:
                continue  # the target has not applied what the source had when last looked
            source = TableName(schema=suspect.root[0], name=suspect.root[1])
            target, key = self.mapping.get(source), self.keys.get(source, ())
            if target is None or not key:
                suspects.remove(suspect)
                continue
            extra = self.applier.sync(
                lambda s=suspect, t=target, k=key: extra_target_keys(
                    conn, self.target.conn, s, target_table=only(self.target.conn, t) + t.qualified, key=k
                )
            )
            lasting = extra if suspect.extra is None else extra & suspect.extra
            if not extra or (suspect.extra is not None and not lasting):
                log.info("source partition %s: the target holds no row it lacks", suspect.leaf)
                suspects.remove(suspect)
                continue
            if suspect.extra is not None:
                sample = ", ".join(sorted(lasting)[0])
                raise DataError(
                    f"source table {source}: partition {suspect.leaf} was emptied on the source while"
                    " streaming (a TRUNCATE of one partition is not in the logical stream when"
                    f" publishing via the partition root); the target still holds {len(lasting)} of its"
                    f" old row(s) (key {sample}); {slot_guard.RERUN}. To empty a partition while"
                    " streaming, DELETE its rows or TRUNCATE the partitioned table"
                )
            suspect.extra = extra  # maybe rows deleted on the source and not applied yet: look again
            suspect.wait_lsn = self._catch_up_point(conn)

    def _catch_up_point(self, conn: psycopg.Connection) -> int:
        """The source's WAL insert position now: the target reaches it even if the stream's
        tables stay quiet, through a heartbeat written right after (PG 14+: its record starts
        there or later and is stored when it arrives) or keepalive positions (older sources)."""
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint").fetchone()
        if self.heartbeats and self.watch is not None:
            heartbeat(conn, self.watch.slot)
        return int(row[0]) if row else 0

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
