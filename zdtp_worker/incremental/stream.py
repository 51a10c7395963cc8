"""The CDC main loop: pre-flight, lease, state, then read → decode → batch → apply → commit.

Transaction model. A *batch* is one target transaction. It holds whole source transactions only
(it commits at a source Commit boundary), so the LSN stored with it in ``zdtp.cdc_state`` always
names a fully applied source transaction. A source transaction larger than
``batch_max_changes`` is written into the still-open target transaction in several flushes, so
memory stays bounded while atomicity is kept. The batch commits when the stream has nothing more
buffered (low latency at low load), or when it reaches ``batch_max_changes`` /
``batch_max_seconds`` (throughput under load).

Pipelining. The target connection belongs to one applier thread: the main thread decodes and
batches while the applier runs COPY/upsert/commit of the previous batch (psycopg releases the GIL
while the server works). Work reaches the applier in submission order through a one-thread
executor, so order is unchanged; at most ``MAX_IN_FLIGHT`` operations queue up. Feedback for a
commit is sent by the main thread (which owns the replication connection) once the applier
reports that commit done.

Exactly-once. On start the worker reads the stored commit LSN and skips every source
transaction whose commit LSN is <= it, whatever the slot replays. Feedback to the slot is sent
only after the target commit, so the slot never forgets what the target has not stored.
"""

from __future__ import annotations

import logging
import select
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import psycopg
import psycopg2
from psycopg2.extras import ReplicationCursor

from zdtp_worker.contract.errors import DataError, TemporaryError, WorkerError
from zdtp_worker.contract.spec import TableName, WorkerSpec
from zdtp_worker.incremental import source
from zdtp_worker.incremental.batch import Batch, NeedsTargetRow
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.names import publication_name, slot_name, stream_key
from zdtp_worker.incremental.pgoutput import (
    PG_EPOCH,
    Begin,
    Commit,
    DecodeError,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    decode,
    format_lsn,
    tuple_data,
)
from zdtp_worker.incremental.target import Shape, Target, first_line

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_OID = struct.Struct("!I")

PG_EPOCH_UNIX = PG_EPOCH.timestamp()
IDLE_WAIT_SECONDS = 0.5
LEASE_POLL_SECONDS = 1.0
# On SIGTERM, how long to keep reading so the source transaction in progress can be committed
# rather than rolled back; well inside Kubernetes' default 30 s grace period.
STOP_FINISH_SECONDS = 5.0
MAX_IN_FLIGHT = 2
PING_SECONDS = 5.0

# Called with the replication cursor when the stream must start from an exported snapshot;
# returns the LSN up to which the snapshot already covers the source (see main.initial_snapshot).
SnapshotHandoff = Callable[[ReplicationCursor, Target], int]


@dataclass
class RunStats:
    changes: int = 0
    transactions: int = 0
    batches: int = 0
    stopped: bool = False


def classify(exc: BaseException) -> WorkerError:
    """Map a database error to the worker's exit-code classes."""
    if isinstance(exc, WorkerError):
        return exc
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None) or ""
    message = first_line(exc)
    if state[:2] in ("22", "23", "42"):  # data exception, integrity violation, syntax/undefined
        return DataError(f"target rejected a change: {message}")
    return TemporaryError(f"database error: {message}")


class Stream:
    def __init__(
        self,
        spec: WorkerSpec,
        *,
        source_dsn: str,
        target_dsn: str,
        metrics: Metrics,
        stop: threading.Event,
        snapshot_handoff: SnapshotHandoff | None = None,
    ) -> None:
        self.spec = spec
        self.opts = spec.incremental
        self.source_dsn = source_dsn
        self.slot = slot_name(spec)
        self.publication = publication_name(spec)
        self.metrics = metrics
        self.stop = stop
        self.snapshot_handoff = snapshot_handoff
        self.mapping: dict[TableName, TableName] = {t.source: t.target_name for t in spec.tables}
        self.target = Target(target_dsn, stream=stream_key(spec), application_name=f"zdtp-cdc-{spec.worker}")
        self.src: psycopg.Connection | None = None
        self.repl: psycopg2.extensions.connection | None = None
        self.stats = RunStats()
        # Stream state.
        self.relations: dict[int, Relation] = {}
        self.keys: dict[int, tuple[str, ...]] = {}
        self.shapes: dict[int, Shape | None] = {}
        self.batch = Batch()
        self.in_txn = False
        self.skip = False
        self.last_commit: Commit | None = None
        self.pending_txns = 0
        self.pending_changes = 0
        self.batch_started: float | None = None
        self.oldest_pending: float | None = None  # source commit time (unix) of the oldest unapplied txn
        self.last_ping = time.monotonic()
        self.skip_upto = 0  # commit LSN stored on the target when streaming started
        self.cur: ReplicationCursor | None = None
        self.applier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zdtp-apply")
        self.in_flight: deque[tuple[Future[object], int | None]] = deque()

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> RunStats:
        try:
            self._run()
        except (psycopg.Error, psycopg2.Error) as exc:
            self.metrics.connections_ok = False
            raise classify(exc) from None
        except DecodeError as exc:
            raise DataError(f"cannot decode a replication message: {exc}") from None
        finally:
            self.metrics.streaming = False
            self.metrics.lease_held = False
            self.applier.shutdown(wait=True, cancel_futures=True)
            self._close()
        return self.stats

    def _close(self) -> None:
        for closer in (self.target.close, self._close_src, self._close_repl):
            try:
                closer()
            except Exception:  # closing after a failure must not mask it
                log.debug("close failed", exc_info=True)

    def _close_src(self) -> None:
        if self.src is not None:
            self.src.close()

    def _close_repl(self) -> None:
        if self.repl is not None:
            self.repl.close()

    def _run(self) -> None:
        self.src = source.connect(self.source_dsn)
        tables = source.check_source(self.src, list(self.mapping))
        self.target.connect()
        if not self._acquire_lease():
            self.stats.stopped = True
            return
        self.target.load_state()
        self._prepare_target(tables)
        source.ensure_publication(self.src, self.publication, list(self.mapping))
        self.repl = source.replication_connect(self.source_dsn)
        cur = self.repl.cursor()
        if self.snapshot_handoff is not None and self.target.commit_lsn == 0:
            self.snapshot_handoff(cur, self.target)
        else:
            source.ensure_slot(self.src, self.slot)
        self.metrics.applied_lsn = self.target.end_lsn
        self.skip_upto = self.target.commit_lsn
        self.cur = cur
        source.start_replication(
            cur, slot=self.slot, publication=self.publication, start_lsn=self.target.end_lsn
        )
        log.info(
            "streaming slot %s publication %s from %s (applied up to commit %s)",
            self.slot,
            self.publication,
            format_lsn(self.target.end_lsn),
            format_lsn(self.target.commit_lsn),
        )
        self.metrics.streaming = True
        self._loop(cur)

    def _acquire_lease(self) -> bool:
        waited = False
        while not self.stop.is_set():
            self.metrics.beat()
            if self.target.try_lease():
                self.metrics.lease_held = True
                if waited:
                    log.info("took over the lease of stream %s", self.target.stream)
                return True
            if not waited:
                log.info("stream %s is held by another replica; standing by", self.target.stream)
                waited = True
            self.stop.wait(LEASE_POLL_SECONDS)
        return False

    def _prepare_target(self, tables: dict[TableName, source.SourceTable]) -> None:
        """Create missing target tables; add missing columns; refuse incompatible ones."""
        for src_name, tgt_name in self.mapping.items():
            info = tables[src_name]
            if self.target.table(tgt_name) is None:
                log.warning("target table %s is missing: creating it empty", tgt_name)
                self.target.create_table(
                    tgt_name, [(c.name, c.type_sql, c.not_null) for c in info.columns], info.pk
                )
            self._reconcile(tgt_name, [(c.name, c.type_sql) for c in info.columns], info.pk)
        self.target.c.commit()

    def _reconcile(self, tgt_name: TableName, columns: list[tuple[str, str]], key: tuple[str, ...]) -> None:
        tgt = self.target.table(tgt_name)
        if tgt is None:
            raise DataError(f"target table {tgt_name} disappeared")
        if tuple(sorted(tgt.pk)) != tuple(sorted(key)):
            raise DataError(
                f"target table {tgt_name} primary key ({', '.join(tgt.pk)}) differs from the source key"
                f" ({', '.join(key)})"
            )
        for name, type_sql in columns:
            have = tgt.columns.get(name)
            if have is None:
                self.target.add_column(tgt_name, name, type_sql)
                self.metrics.schema_changes += 1
            elif have != type_sql:
                raise DataError(
                    f"column {name} of {tgt_name} is {type_sql} on the source but {have} on the target"
                    " (incompatible schema change); not applying"
                )

    # -- the loop -------------------------------------------------------------------------
    def _loop(self, cur: ReplicationCursor) -> None:
        max_changes = self.opts.batch_max_changes
        max_seconds = self.opts.batch_max_seconds
        metrics = self.metrics
        read = cur.read_message
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
                if self.pending_txns and not self.in_txn:
                    self._commit(cur)
                self._reap()
                idle = not self.in_txn and not self.pending_txns and not self.in_flight
                if idle and time.monotonic() - self.last_ping > PING_SECONDS:
                    # A quiet stream still notices a lost target connection (and with it the lease).
                    self.last_ping = time.monotonic()
                    self._submit(self.target.ping)
                self._update_lag(cur, idle=idle)
                wait = 0.01 if self.in_flight else 0.05 if stop_deadline else IDLE_WAIT_SECONDS
                select.select([cur], [], [], wait)
                continue
            payload = msg.payload
            if payload[0] == 0x49 and not self.skip:  # Insert: the hot path, no message object
                (oid,) = _OID.unpack_from(payload, 1)
                shape = self.shapes.get(oid) or self._shape(oid)
                if shape is not None:
                    self.batch.insert(shape.relation, shape.key_indexes, tuple_data(payload, 6)[0])
                    self.pending_changes += 1
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

    def _handle(self, m: object, cur: ReplicationCursor) -> None:
        if isinstance(m, Insert):
            if self.skip:
                return
            shape = self._shape(m.relation_oid)
            if shape is not None:
                self.batch.insert(shape.relation, shape.key_indexes, m.new)
                self.pending_changes += 1
        elif isinstance(m, Update):
            if self.skip:
                return
            shape = self._shape(m.relation_oid)
            if shape is not None:
                try:
                    self.batch.update(shape.relation, shape.key_indexes, m.new, m.old)
                except NeedsTargetRow:
                    assert m.old is not None
                    self._flush()
                    old_key = tuple(m.old[i] for i in shape.key_indexes)
                    self._submit(lambda: self.target.move_row(shape, old_key, m.new))
                self.pending_changes += 1
        elif isinstance(m, Delete):
            if self.skip:
                return
            shape = self._shape(m.relation_oid)
            if shape is not None:
                self.batch.delete(shape.relation, shape.key_indexes, m.old)
                self.pending_changes += 1
        elif isinstance(m, Begin):
            self.in_txn = True
            self.skip = m.final_lsn <= self.skip_upto
            if not self.skip and self.batch_started is None:
                self.batch_started = time.monotonic()
                self.oldest_pending = PG_EPOCH_UNIX + m.commit_time / 1e6
        elif isinstance(m, Commit):
            self.metrics.beat()  # a busy stream may never be idle: beat per transaction
            self.in_txn = False
            if self.skip:
                self.skip = False
                self.metrics.transactions_skipped += 1
                if not self.pending_txns and not self.in_flight:
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
                    names.append(shape.target)
            if names:
                self._submit(lambda: self.target.truncate(names))
                self.pending_changes += 1

    def _relation(self, rel: Relation) -> None:
        previous = self.relations.get(rel.oid)
        if previous == rel:
            return
        if self.batch.has_entries(rel.oid):
            self._flush()  # buffered rows have the old shape
        self.relations[rel.oid] = rel
        self.shapes.pop(rel.oid, None)
        tgt_name = self.mapping.get(TableName(schema=rel.namespace, name=rel.name))
        if tgt_name is None:
            self.shapes[rel.oid] = None
            return
        self.keys[rel.oid] = self._sync(lambda: self._relation_on_target(rel, tgt_name))

    def _relation_on_target(self, rel: Relation, tgt_name: TableName) -> tuple[str, ...]:
        """Check a (new) relation description against the target; add columns. Applier thread."""
        tgt = self.target.table(tgt_name)
        if tgt is None:
            raise DataError(f"target table {tgt_name} disappeared")
        names = [c.name for c in rel.columns]
        # REPLICA IDENTITY FULL flags every column as key: use the primary key instead.
        key = tgt.pk if rel.replica_identity == "f" else tuple(c.name for c in rel.columns if c.is_key)
        if not key or rel.replica_identity == "n":
            raise DataError(
                f"source table {rel.qualified} no longer has a primary key / replica identity"
                " (incompatible schema change); not applying"
            )
        missing = [k for k in key if k not in names]
        if missing:
            raise DataError(f"source table {rel.qualified}: key column(s) {missing} not published")
        assert self.src is not None
        types = source.type_names(self.src, [(c.type_oid, c.type_modifier) for c in rel.columns])
        self._reconcile(tgt_name, list(zip(names, types, strict=True)), key)
        return key

    def _shape(self, oid: int) -> Shape | None:
        try:
            return self.shapes[oid]
        except KeyError:
            pass
        rel = self.relations.get(oid)
        if rel is None:
            raise DataError(f"change for relation {oid} arrived before its Relation message")
        tgt_name = self.mapping.get(TableName(schema=rel.namespace, name=rel.name))
        shape = None
        if tgt_name is not None:
            key = self.keys[oid]
            shape = self._sync(lambda: self.target.shape(rel, tgt_name, key))
        self.shapes[oid] = shape
        return shape

    # -- applier thread -------------------------------------------------------------------
    def _submit(self, fn: Callable[[], object], *, feedback_lsn: int | None = None) -> None:
        """Queue target work (runs in order on the applier thread); bound the queue."""
        self.in_flight.append((self.applier.submit(fn), feedback_lsn))
        self._reap()

    def _reap(self, *, wait_all: bool = False) -> None:
        """Collect finished target work in order: raise its errors, send feedback for commits."""
        while self.in_flight:
            future, feedback_lsn = self.in_flight[0]
            if not future.done() and not wait_all and len(self.in_flight) <= MAX_IN_FLIGHT:
                return
            future.result()  # waits if needed; re-raises the applier's error in the main thread
            self.in_flight.popleft()
            if feedback_lsn is not None and self.cur is not None:
                self._feedback(self.cur, feedback_lsn)

    def _sync(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the applier thread after all queued work and return its result."""
        self._reap(wait_all=True)
        return self.applier.submit(fn).result()

    # -- apply / commit -------------------------------------------------------------------
    def _flush(self) -> None:
        self.metrics.beat()  # also inside one huge source transaction
        if self.batch.tables:
            batch, self.batch = self.batch, Batch()
            shapes = {oid: s for oid, s in self.shapes.items() if s is not None and oid in batch.tables}
            self._submit(lambda: self.target.apply(batch, shapes))

    def _commit(self, cur: ReplicationCursor) -> None:
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

        self._submit(commit, feedback_lsn=last.end_lsn)
        self.pending_txns = 0
        self.pending_changes = 0
        self.batch_started = None
        self.oldest_pending = None
        self._update_lag(cur, idle=False, commit_time=commit_time)

    def _feedback(self, cur: ReplicationCursor, flush_lsn: int) -> None:
        """Tell the slot it may forget WAL up to ``flush_lsn`` (only after the target committed)."""
        cur.send_feedback(flush_lsn=flush_lsn)

    def _rollback(self) -> None:
        self._sync(self.target.rollback)
        self.batch.clear()
        self.shapes.clear()  # staging tables created in the rolled-back transaction are gone
        self.pending_txns = 0
        self.pending_changes = 0
        self.batch_started = None

    def _graceful_stop(self, cur: ReplicationCursor) -> None:
        self.stats.stopped = True
        if self.in_txn:
            log.info("stopping: rolling back the batch (source transaction in progress; it will replay)")
            self._rollback()
        elif self.pending_txns:
            self._commit(cur)
            self._reap(wait_all=True)
            log.info("stopping: committed the last batch up to %s", format_lsn(self.target.end_lsn))
        else:
            self._sync(self.target.rollback)
            log.info("stopping: nothing pending; applied up to %s", format_lsn(self.target.end_lsn))

    def _update_lag(self, cur: ReplicationCursor, *, idle: bool, commit_time: datetime | None = None) -> None:
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
