"""The CDC main loop: read → decode → batch → apply → commit → feedback, until stopped.

Transaction model. A *batch* is one target transaction. It holds whole source transactions only
(it commits at a source Commit boundary), so the LSN stored with it in ``zdtp.cdc_state`` always
names a fully applied source transaction. A source transaction larger than
``batch_max_changes`` is written into the still-open target transaction in several flushes, so
memory stays bounded while atomicity is kept. The batch commits when the stream has nothing more
buffered (low latency at low load), or when it reaches ``batch_max_changes`` /
``batch_max_seconds`` (throughput under load). Target work runs on the :mod:`.applier` thread.

Exactly-once. Every source transaction whose commit LSN is <= the one stored on the target when
streaming started (``skip_upto``) is skipped, whatever the slot replays. Feedback to the slot is
sent only after the target commit, so the slot never forgets what the target has not stored.
"""

from __future__ import annotations

import logging
import select
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from zdtp_worker.contract.spec import IncrementalOptions
from zdtp_worker.drivers import ChangeDecoder, ChangeReader, ChangeWriter
from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.batch import Batch, NeedsTargetRow
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.housekeeping import Housekeeping
from zdtp_worker.incremental.pgoutput import (
    PG_EPOCH,
    Begin,
    Commit,
    Delete,
    Insert,
    NeedsTextMode,
    Relation,
    Truncate,
    Update,
    Value,
    format_lsn,
)
from zdtp_worker.incremental.relations import Relations
from zdtp_worker.incremental.rowwise import RowChange, RowwiseTable
from zdtp_worker.incremental.staging import Shape, stage_rows, stage_rows_binary

log = logging.getLogger(__name__)

PG_EPOCH_UNIX = PG_EPOCH.timestamp()
IDLE_WAIT_SECONDS = 0.5
# On SIGTERM, how long to keep reading so the source transaction in progress can be committed
# rather than rolled back; well inside Kubernetes' default 30 s grace period.
STOP_FINISH_SECONDS = 5.0
PING_SECONDS = 5.0
# GIL switch interval while streaming (see ChangeLoop.run); the interpreter's default is 5 ms.
SWITCH_INTERVAL_SECONDS = 0.0005


@dataclass
class RunStats:
    changes: int = 0
    transactions: int = 0
    batches: int = 0
    stopped: bool = False


def _upsert_from_insert(decoder: ChangeDecoder) -> Callable[[bytes], tuple[int, list[Value], bool] | None]:
    """The hot path of a decoder that only has the insert fast path (``ChangeDecoder.insert``)."""
    insert = decoder.insert

    def upsert(payload: bytes) -> tuple[int, list[Value], bool] | None:
        got = insert(payload)
        return None if got is None else (got[0], got[1], True)

    return upsert


class ChangeLoop:
    """Decode and batch on the calling thread; apply and commit on the applier thread."""

    def __init__(
        self,
        *,
        cur: ChangeReader,
        target: ChangeWriter,
        decoder: ChangeDecoder,
        relations: Relations,
        applier: Applier,
        opts: IncrementalOptions,
        metrics: Metrics,
        stats: RunStats,
        stop: threading.Event,
        skip_upto: int,
        housekeeping: Housekeeping | None = None,
    ) -> None:
        self.cur = cur
        self.target = target
        self.decoder = decoder
        # Binary mode (see .binary_mode): values are COPY fields, batches become binary COPY.
        self.binary = bool(getattr(decoder, "binary", False))
        self.stage_rows = stage_rows_binary if self.binary else stage_rows
        self.rels = relations
        self.shapes = relations.shapes  # the same dict: the hot path reads it directly
        self.applier = applier
        self.opts = opts
        self.metrics = metrics
        self.stats = stats
        self.stop = stop
        self.skip_upto = skip_upto  # commit LSN stored on the target when streaming started
        self.batch = Batch()
        self.in_txn = False
        self.skip = False
        # Source transactions in the batch being built: a row read back from the source waits
        # until they are visible there (see .refetch).
        self.batch_xids: list[int] = []
        self.current_xid: int | None = None
        self.last_commit: Commit | None = None
        self.pending_txns = 0
        self.pending_changes = 0
        self.batch_started: float | None = None
        self.oldest_pending: float | None = None  # source commit time (unix) of the oldest unapplied txn
        self.last_ping = time.monotonic()
        # Keyless REPLICA IDENTITY FULL tables: ordered changes per relation, applied on flush.
        self.rows: dict[int, RowwiseTable] = {}
        self.house = housekeeping or Housekeeping(target=target, applier=applier, metrics=metrics)
        # Confirm scheme. With heartbeats (PG 14+, messages streamed), the slot is only ever
        # confirmed to one byte before a message start the target has stored, so psycopg2 never
        # confirms keepalive positions on its own (it does once every received message is
        # confirmed) and the slot is never ahead of the target. Without, idle keepalive
        # positions are stored before psycopg2's next status update.
        self.heartbeats = self.house.heartbeats

    def run(self) -> None:
        # The applier thread mostly waits on the target with the GIL released, but psycopg's wait
        # loop needs the GIL back after every socket event; with the default 5 ms switch interval
        # that hand-back queues behind this busy decode thread once per round trip (a batch's
        # state UPDATE + COMMIT took ~6 ms in the profile). Restored on exit: tests run streams
        # in-process.
        previous = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        try:
            self._loop(self.cur)
        finally:
            sys.setswitchinterval(previous)

    def on_committed(self, lsn: int) -> None:
        """The applier finished a commit: the slot may now forget WAL up to ``lsn``."""
        self._feedback(self.cur, lsn)

    def _loop(self, cur: ChangeReader) -> None:
        max_changes = self.opts.batch_max_changes
        max_seconds = self.opts.batch_max_seconds
        metrics = self.metrics
        read = cur.read_message
        decode = self.decoder
        fast = getattr(self.decoder, "upsert", None) or _upsert_from_insert(self.decoder)
        row_change = RowChange
        stop_deadline: float | None = None
        while True:
            if self.stop.is_set():
                # Let the source transaction in progress arrive (briefly), then commit and exit.
                if stop_deadline is None:
                    stop_deadline = time.monotonic() + STOP_FINISH_SECONDS
                if not self.in_txn or time.monotonic() > stop_deadline:
                    self._graceful_stop(cur)
                    return
            msg = read()
            if msg is None:
                metrics.beat()
                quiet = not self.in_txn and not self.pending_txns
                if not self.heartbeats and quiet and (cur.wal_end or 0) > self.target.end_lsn:
                    # psycopg2 may confirm this keepalive position at its next status update
                    # (inside the next read): store it on the target first. See Target.advance.
                    self.applier.sync(lambda end=cur.wal_end: self.target.advance(end))
                if self.pending_txns and not self.in_txn:
                    self._commit(cur)
                self.applier.reap()
                idle = not self.in_txn and not self.pending_txns and not self.applier.in_flight
                if idle and time.monotonic() - self.last_ping > PING_SECONDS:
                    # A quiet stream still notices a lost target connection (and with it the lease).
                    self.last_ping = time.monotonic()
                    self.applier.submit(self.target.ping)
                self._update_lag(cur, idle=idle)
                self._housekeeping()
                wait = 0.01 if self.applier.in_flight else 0.05 if stop_deadline else IDLE_WAIT_SECONDS
                select.select([cur], [], [], wait)
                continue
            payload = msg.payload
            change = None if self.skip else fast(payload)
            if change is not None:  # the hot path (an insert, an update of a kept key): no message object
                oid, new, inserted = change
                shape = self.shapes.get(oid) or self._shape(oid)
                if shape is not None:
                    if not shape.key_indexes:
                        self._row(shape, row_change("I" if inserted else "U", new=new))
                    elif inserted:
                        self.batch.insert(shape.relation, shape.key_indexes, new)
                    else:  # no old tuple: the key did not move, so NeedsTargetRow cannot happen
                        self.batch.update(shape.relation, shape.key_indexes, new, None)
                    self.pending_changes += 1
            elif payload[0] == 0x4D:  # logical message: a heartbeat (ours or anyone's)
                self._message(msg.data_start, payload)
            else:
                self._handle(decode(payload), cur)
            if self.in_txn:
                if self.batch.changes >= max_changes:
                    self._flush()
            elif self.pending_txns and (
                self.pending_changes >= max_changes
                or time.monotonic() - (self.batch_started or 0.0) >= max_seconds
            ):
                self._commit(cur)

    def _handle(self, m: object, cur: ChangeReader) -> None:
        if isinstance(m, Insert):
            if self.skip:
                return
            shape = self._shape(m.relation_oid)
            if shape is not None:
                if shape.rowwise:
                    self._row(shape, RowChange("I", new=m.new))
                else:
                    self.batch.insert(shape.relation, shape.key_indexes, m.new)
                self.pending_changes += 1
        elif isinstance(m, Update):
            if self.skip:
                return
            shape = self._shape(m.relation_oid)
            if shape is not None and shape.rowwise:
                self._row(shape, RowChange("U", new=m.new, old=m.old))
                self.pending_changes += 1
            elif shape is not None:
                try:
                    self.batch.update(shape.relation, shape.key_indexes, m.new, m.old)
                except NeedsTargetRow:
                    if self.binary:  # move_row reads the row from the source as text
                        raise NeedsTextMode(
                            f"{shape.relation.qualified}: a key moved with unchanged TOAST values"
                        ) from None
                    assert m.old is not None
                    self._flush()
                    old_key = tuple(m.old[i] for i in shape.key_indexes)
                    self.applier.submit(lambda: self.target.move_row(shape, old_key, m.new))
                self.pending_changes += 1
        elif isinstance(m, Delete):
            if self.skip:
                return
            shape = self._shape(m.relation_oid)
            if shape is not None:
                if shape.rowwise:
                    self._row(shape, RowChange("D", old=m.old))
                else:
                    self.batch.delete(shape.relation, shape.key_indexes, m.old)
                self.pending_changes += 1
        elif isinstance(m, Begin):
            self.in_txn = True
            self.skip = m.final_lsn <= self.skip_upto
            if not self.skip:
                self.current_xid = m.xid
                self.batch_xids.append(m.xid)
            if not self.skip and self.batch_started is None:
                self.batch_started = time.monotonic()
                self.oldest_pending = PG_EPOCH_UNIX + m.commit_time / 1e6
        elif isinstance(m, Commit):
            self.metrics.beat()  # a busy stream may never be idle: beat per transaction
            self.in_txn = False
            if self.skip:
                self.skip = False
                self.metrics.transactions_skipped += 1
                if not self.pending_txns and not self.applier.in_flight:
                    self._feedback(cur, m.end_lsn)
                return
            self.pending_txns += 1
            self.last_commit = m
        elif isinstance(m, Relation):
            self._relation(m)
        elif isinstance(m, Truncate):
            if self.skip:
                return
            names = []
            for oid in m.relation_oids:
                shape = self._shape(oid)
                if shape is not None:
                    self.batch.drop_table(oid)
                    self.rows.pop(oid, None)
                    names.append(shape.target)
            if names:
                self.applier.submit(lambda: self.target.truncate(names))
                self.pending_changes += 1

    def _relation(self, rel: Relation) -> None:
        if not self.rels.changed(rel):
            return
        if self.batch.has_entries(rel.oid) or rel.oid in self.rows:
            self._flush()  # buffered rows have the old shape
        self.rels.update(rel)

    def _shape(self, oid: int) -> Shape | None:
        return self.rels.shape(oid)

    def _message(self, lsn: int, payload: bytes) -> None:
        """A non-transactional message at ``lsn``: everything committed before it has arrived, so
        when nothing is pending the stream is applied up to here: store it, then confirm."""
        if payload[1] & 1 or self.in_txn or self.pending_txns or self.skip:
            return  # transactional (inside a transaction), or a commit will move the position anyway
        self.applier.submit(lambda: self.target.advance(lsn), feedback_lsn=lsn)

    def _row(self, shape: Shape, change: RowChange) -> None:
        if self.binary:  # whole-row match compares text (the start-up rule keeps keyless tables text)
            raise NeedsTextMode(f"{shape.relation.qualified} is applied by whole rows")
        table = self.rows.get(shape.relation.oid)
        if table is None:
            columns = [c.name for c in shape.relation.columns]
            table = RowwiseTable(shape.target.qualified, columns, only=shape.only)
            self.rows[shape.relation.oid] = table
        table.changes.append(change)
        if len(table.changes) >= self.opts.batch_max_changes:
            self._flush()

    def _housekeeping(self) -> None:
        self.house.tick(quiet=not self.in_txn and not self.pending_txns, server_wal_end=self.cur.wal_end or 0)

    # -- apply / commit -------------------------------------------------------------------
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
