"""What each decoded pgoutput message does to the batch being built (the loop's slow path).

The hot path (an insert, an update that kept its key) is in :meth:`.loop.ChangeLoop._loop`;
every other message comes here: updates with an old tuple, deletes, transaction boundaries,
relation descriptions, truncates, logical messages (heartbeats), and keyless tables' ordered
changes. A mixin of :class:`~.loop.ChangeLoop`, which owns the state named below.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from zdtp_worker.contract.spec import IncrementalOptions
from zdtp_worker.drivers import ChangeReader, ChangeWriter
from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.batch import Batch, NeedsTargetRow
from zdtp_worker.incremental.health import Metrics
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
)
from zdtp_worker.incremental.relations import Relations
from zdtp_worker.incremental.rowwise import RowChange, RowwiseTable
from zdtp_worker.incremental.staging import Shape

PG_EPOCH_UNIX = PG_EPOCH.timestamp()


class Dispatch:
    """Message → batch. Flushing and committing are :class:`~.committer.Committer`'s."""

    target: ChangeWriter
    binary: bool
    rels: Relations
    applier: Applier
    opts: IncrementalOptions
    metrics: Metrics
    stop: threading.Event
    skip_upto: int
    batch: Batch
    in_txn: bool
    skip: bool
    batch_xids: list[int]
    current_xid: int | None
    last_commit: Commit | None
    pending_txns: int
    pending_changes: int
    batch_started: float | None
    oldest_pending: float | None
    rows: dict[int, RowwiseTable]

    if TYPE_CHECKING:  # Committer's, on the same ChangeLoop

        def _flush(self) -> None: ...

        def _feedback(self, cur: ChangeReader, flush_lsn: int) -> None: ...

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
