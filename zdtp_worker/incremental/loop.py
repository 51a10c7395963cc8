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

Parts: this module reads and runs the hot path (an insert, an update of a kept key);
:mod:`.dispatch` turns every other message into batch entries; :mod:`.committer` flushes,
commits with the LSN, sends feedback and stops.
"""

from __future__ import annotations

import logging
import select
import sys
import threading
import time
from collections.abc import Callable

from zdtp_worker.contract.spec import IncrementalOptions
from zdtp_worker.drivers import ChangeDecoder, ChangeReader, ChangeWriter
from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.batch import Batch
from zdtp_worker.incremental.committer import Committer, RunStats
from zdtp_worker.incremental.dispatch import PG_EPOCH_UNIX, Dispatch
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.housekeeping import Housekeeping
from zdtp_worker.incremental.pgoutput import Commit, Value
from zdtp_worker.incremental.relations import Relations
from zdtp_worker.incremental.rowwise import RowChange, RowwiseTable
from zdtp_worker.incremental.staging import stage_rows, stage_rows_binary

__all__ = ["PG_EPOCH_UNIX", "ChangeLoop", "RunStats"]

log = logging.getLogger(__name__)

IDLE_WAIT_SECONDS = 0.5
# On SIGTERM, how long to keep reading so the source transaction in progress can be committed
# rather than rolled back; well inside Kubernetes' default 30 s grace period.
STOP_FINISH_SECONDS = 5.0
PING_SECONDS = 5.0
# GIL switch interval while streaming (see ChangeLoop.run); the interpreter's default is 5 ms.
SWITCH_INTERVAL_SECONDS = 0.0005


def _upsert_from_insert(decoder: ChangeDecoder) -> Callable[[bytes], tuple[int, list[Value], bool] | None]:
    """The hot path of a decoder that only has the insert fast path (``ChangeDecoder.insert``)."""
    insert = decoder.insert

    def upsert(payload: bytes) -> tuple[int, list[Value], bool] | None:
        got = insert(payload)
        return None if got is None else (got[0], got[1], True)

    return upsert


class ChangeLoop(Dispatch, Committer):
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
