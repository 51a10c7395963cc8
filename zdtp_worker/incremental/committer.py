"""Ending batches: flush to the applier, commit with the LSN, feedback to the slot, stop, lag.

Feedback to the slot is sent only after the target commit (:meth:`Committer._commit` hands the
commit to the applier thread with ``feedback_lsn``; the applier calls back ``on_committed``), so
the slot never forgets what the target has not stored. A mixin of :class:`~.loop.ChangeLoop`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from zdtp_worker.drivers import ChangeReader, ChangeWriter
from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.batch import Batch
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.housekeeping import Housekeeping
from zdtp_worker.incremental.pgoutput import PG_EPOCH, Commit, format_lsn
from zdtp_worker.incremental.rowwise import RowwiseTable
from zdtp_worker.incremental.staging import Shape

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    changes: int = 0
    transactions: int = 0
    batches: int = 0
    stopped: bool = False


class Committer:
    """Flush, commit, feedback, stop and lag figures over the loop's state (see ChangeLoop)."""

    cur: ChangeReader
    target: ChangeWriter
    applier: Applier
    metrics: Metrics
    house: Housekeeping
    heartbeats: bool
    shapes: dict[int, Shape | None]
    batch: Batch
    in_txn: bool
    batch_xids: list[int]
    current_xid: int | None
    last_commit: Commit | None
    pending_txns: int
    pending_changes: int
    batch_started: float | None
    oldest_pending: float | None
    rows: dict[int, RowwiseTable]
    stats: RunStats

    def _housekeeping(self) -> None:
        self.house.tick(quiet=not self.in_txn and not self.pending_txns, server_wal_end=self.cur.wal_end or 0)

    # -- apply / commit ---------------------------------------------------------------
    def _flush(self) -> None:
        self.metrics.beat()  # also inside one huge source transaction
        if self.batch.tables:
            batch, self.batch = self.batch, Batch()
            shapes = {oid: s for oid, s in self.shapes.items() if s is not None and oid in batch.tables}
            for oid, tb in batch.tables.items():
                if tb.entries:
                    # The COPY text is pure Python work: build it here, while the applier thread
                    # waits on the target for the previous flush, not after it on the applier
                    # (there it held the GIL while this thread had decoding to do).
                    tb.staged = self.stage_rows(tb, direct_new=bool(shapes[oid].sql_copy_direct))
            xids = self.batch_xids
            self.applier.submit(lambda: self.target.apply(batch, shapes, xids=xids))
        # A flush inside a huge source transaction: that transaction is in the next batch too.
        self.batch_xids = [self.current_xid] if self.in_txn and self.current_xid is not None else []
        if self.rows:
            tables, self.rows = list(self.rows.values()), {}
            self.applier.submit(lambda: [t.apply(self.target.conn) for t in tables])

    def _commit(self, cur: ChangeReader) -> None:
        assert self.last_commit is not None
        self._flush()
        last = self.last_commit
        txns, changes = self.pending_txns, self.pending_changes
        commit_time = PG_EPOCH + timedelta(microseconds=last.commit_time)
        shapes = [s for s in self.shapes.values() if s is not None]
        started = self.batch_started or time.monotonic()

        def commit() -> None:
            self.target.commit(
                commit_lsn=last.commit_lsn,
                end_lsn=last.end_lsn,
                commit_time=commit_time,
                transactions=txns,
                changes=changes,
            )
            for shape in shapes:
                shape.used_in_txn = False
            m = self.metrics
            m.changes_applied += changes
            m.transactions_applied += txns
            m.batches += 1
            m.batch_seconds_sum += time.monotonic() - started
            m.applied_lsn = last.end_lsn
            self.stats.changes += changes
            self.stats.transactions += txns
            self.stats.batches += 1

        self.applier.submit(commit, feedback_lsn=last.end_lsn)
        self.house.sequences_due = True
        self._housekeeping()  # a stream that is never idle still keeps sequences and metrics current
        self.pending_txns = 0
        self.pending_changes = 0
        self.batch_started = None
        self.oldest_pending = None
        self._update_lag(cur, idle=False, commit_time=commit_time)

    def _feedback(self, cur: ChangeReader, flush_lsn: int) -> None:
        """Tell the slot it may forget WAL up to ``flush_lsn`` (only after the target committed).

        With heartbeats, one byte less: the confirmed position then stays below the start of the
        last message received (a commit's or heartbeat's), which keeps psycopg2 from confirming
        keepalive positions the target has not stored. A restart still skips that transaction
        (its commit record starts before the confirmed position).
        """
        cur.send_feedback(flush_lsn=max(flush_lsn - 1, 0) if self.heartbeats else flush_lsn)

    def _rollback(self) -> None:
        self.applier.sync(self.target.rollback)
        self.batch.clear()
        self.rows.clear()
        self.shapes.clear()  # staging tables created in the rolled-back transaction are gone
        self.pending_txns = 0
        self.pending_changes = 0
        self.batch_started = None

    def _graceful_stop(self, cur: ChangeReader) -> None:
        self.stats.stopped = True
        if self.in_txn:
            log.info("stopping: rolling back the batch (source transaction in progress; it will replay)")
            self._rollback()
        elif self.pending_txns:
            self._commit(cur)
            self.house.sync_sequences()  # a cut-over usually follows a stop: ids must not be reused
            self.applier.reap(wait_all=True)
            log.info("stopping: committed the last batch up to %s", format_lsn(self.target.end_lsn))
        else:
            if self.house.sequences_due:
                self.house.sync_sequences()
            self.applier.sync(self.target.rollback)
            log.info("stopping: nothing pending; applied up to %s", format_lsn(self.target.end_lsn))

    def _update_lag(self, cur: ChangeReader, *, idle: bool, commit_time: datetime | None = None) -> None:
        m = self.metrics
        wal_end = cur.wal_end or 0
        m.server_wal_end = max(m.server_wal_end, wal_end)
        if idle:
            m.lag_bytes = 0
            m.lag_seconds = 0.0
            return
        m.lag_bytes = max(0, m.server_wal_end - self.target.end_lsn)
        if self.oldest_pending is not None:
            m.lag_seconds = max(0.0, time.time() - self.oldest_pending)
        elif commit_time is not None:
            m.lag_seconds = max(0.0, time.time() - commit_time.timestamp())
