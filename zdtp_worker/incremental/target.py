"""The target side of a CDC stream: lease, state, table DDL and applying a batch.

One psycopg 3 connection does everything, on purpose: the session-level advisory lock (the
lease) lives on the same connection that writes, so a worker that lost its lease cannot write
either. Each target transaction ends with :meth:`Target.commit`, which moves the stream's row in
``zdtp.cdc_state`` from the LSN this worker last saw to the new one and fails if somebody else
moved it (fencing on top of the lease). The SQL of applying a batch is built in :mod:`.staging`.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from zdtp_worker.contract.errors import DataError, TemporaryError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.catalog import TableDef, read_table
from zdtp_worker.control.session import connect
from zdtp_worker.incremental import text_form
from zdtp_worker.incremental.batch import Batch
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.only import only
from zdtp_worker.incremental.pgoutput import UNCHANGED, NeedsTextMode, Relation, Value, format_lsn, parse_lsn
from zdtp_worker.incremental.refetch import SourceRows, fill_unchanged, key_text
from zdtp_worker.incremental.staging import (
    Shape,
    binary_copy,
    build_shape,
    stage_rows,
    stage_rows_binary,
    staged_upsert_prefix,
)
from zdtp_worker.pg.quoting import ident

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


class Target:
    def __init__(
        self,
        dsn: str,
        *,
        stream: str,
        application_name: str = "zdtp-cdc",
        source_dsn: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.dsn = dsn
        self.stream = stream
        self.application_name = application_name
        self._conn: psycopg.Connection | None = None
        # Rows read back from the source when the target cannot complete a change (see .refetch).
        self.source_rows = SourceRows(source_dsn) if source_dsn else None
        self._batch_xids: Sequence[int] = ()  # the applying batch's source transactions
        self.metrics = metrics
        self.refetched = 0  # in the open transaction: rows read from the source and written
        self.refetch_gone = 0  # in the open transaction: keys the source no longer had
        self.tables: dict[TableName, TableDef] = {}
        self._stage_seq = 0
        self.commit_lsn = 0
        self.end_lsn = 0
        self.confirm_limit: int | None = 0
        # Batches hold binary-mode values (length-prefixed send format): COPY them as binary.
        self.binary = False

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

    def close(self) -> None:
        if self.source_rows is not None:
            self.source_rows.close()
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

    # -- tables ---------------------------------------------------------------------------
    def table(self, name: TableName) -> TableDef | None:
        cached = self.tables.get(name)
        if cached is not None:
            return cached
        info = read_table(self.conn, name)
        if info is not None:
            self.tables[name] = info
        return info

    def create_table(
        self, name: TableName, columns: list[tuple[str, str, bool]], pk: tuple[str, ...]
    ) -> None:
        """Create a missing target table (columns: name, type, not null) keyed like the source.

        ``pk`` is the stream's key (primary key or unique NOT NULL index on the source); empty
        for a keyless REPLICA IDENTITY FULL table. Generated columns are added afterwards by
        the column follower, as generated columns.
        """
        defs = [f"{ident(n)} {t}{' NOT NULL' if nn else ''}" for n, t, nn in columns]
        if pk:
            defs.append(f"PRIMARY KEY ({', '.join(ident(k) for k in pk)})")
        self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(name.schema_)}")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {name.qualified} ({', '.join(defs)})")
        self.tables.pop(name, None)

    def add_column(self, name: TableName, column: str, type_sql: str) -> None:
        log.warning("target %s: adding column %s %s (added on the source)", name, column, type_sql)
        self.conn.execute(f"ALTER TABLE {name.qualified} ADD COLUMN IF NOT EXISTS {ident(column)} {type_sql}")
        self.tables.pop(name, None)

    def shape(self, relation: Relation, target: TableName, key_names: tuple[str, ...]) -> Shape:
        """Build the relation's apply statements and create its staging table (temporary)."""
        info = self.table(target)
        assert info is not None
        self._stage_seq += 1
        shape, ddl = build_shape(
            relation,
            target=target,
            key_names=key_names,
            column_types=info.column_types,
            seq=self._stage_seq,
            generated=frozenset(c.name for c in info.columns if c.generated),
            only=only(self.conn, target),
        )
        self.conn.execute(ddl)
        return shape

    # -- apply ----------------------------------------------------------------------------
    def apply(self, batch: Batch, shapes: dict[int, Shape], *, xids: Sequence[int] = ()) -> int:
        """Write the batch into the open transaction (no commit); return entries written.

        ``xids``: the source transactions whose changes the batch holds; a row completed from the
        source is read only once they are all visible there (see :mod:`.refetch`)."""
        self._batch_xids = xids
        try:
            return self._apply(batch, shapes)
        except psycopg.errors.InvalidBinaryRepresentation as exc:
            if not self.binary:
                raise
            # The start-up rule should make this impossible; if a type's binary form still did
            # not fit, text mode is the safe way on (the open transaction is rolled back).
            raise NeedsTextMode(f"target refused a binary value: {str(exc).splitlines()[0]}") from exc

    def _apply(self, batch: Batch, shapes: dict[int, Shape]) -> int:
        binary = self.binary
        stage = stage_rows_binary if binary else stage_rows
        written = 0
        for oid, tb in batch.tables.items():
            if not tb.entries:
                continue
            shape = shapes[oid]
            data, direct, n_del, n_up, n_part = tb.staged or stage(tb, direct_new=bool(shape.sql_copy_direct))
            with self.conn.cursor() as cur:
                if direct and not self._copy_direct(cur, shape, direct):
                    # Some "new" key exists on the target after all (it was loaded outside this
                    # stream): take the upsert path for those rows too.
                    if binary:  # after the row's field count: the staged row's _op and _keep first
                        prefix = staged_upsert_prefix(len(shape.relation.columns))
                        data += b"".join([prefix + row[2:] for row in direct])
                    else:
                        data += b"".join([b"U\t\\N\t" + row for row in direct])
                    direct = []
                n_staged_up = n_up - len(direct)
                if not data:
                    written += n_up
                    continue
                if shape.used_in_txn:
                    cur.execute(f"TRUNCATE {shape.stage}")
                shape.used_in_txn = True
                if binary:
                    with cur.copy(f"COPY {shape.stage} FROM STDIN (FORMAT binary)") as cp:
                        cp.write(binary_copy(data))
                else:
                    with cur.copy(f"COPY {shape.stage} FROM STDIN") as cp:
                        cp.write(data)
                if n_del:
                    cur.execute(shape.sql_delete)
                if n_staged_up and shape.sql_update:
                    # Updated keys are on the target (exactly-once: it holds the source's state
                    # before this batch), so UPDATE first; if some are not (a hand-off copied
                    # their chunk later, rows loaded outside the stream), the upsert writes all
                    # staged rows again — same values for the rows just updated.
                    cur.execute(shape.sql_update)
                    if cur.rowcount < n_staged_up:
                        cur.execute(shape.sql_upsert)
                elif n_staged_up:
                    cur.execute(shape.sql_upsert)
                missing: list[tuple[Any, ...]] = []
                if n_part and shape.sql_partial:
                    cur.execute(shape.sql_partial)
                    if cur.rowcount < n_part and binary:
                        # Completing them reads text from the source: text mode does that.
                        raise NeedsTextMode(
                            f"target {shape.target}: rows with unchanged TOAST values missing"
                        )
                    if cur.rowcount < n_part:
                        # Partial rows of keys the target lacks (a hand-off copied their chunk
                        # after they were deleted or moved away): complete them from the source.
                        missing = cur.execute(shape.sql_partial_missing).fetchall()
            if missing:
                self._complete_from_source(shape, [_staged(row) for row in missing])
            written += n_del + n_up + n_part
        batch.clear()
        return written

    def _complete_from_source(self, shape: Shape, rows: list[list[Value]]) -> None:
        """Write ``rows`` (new rows with unchanged values) with those values read from the source."""
        if self.binary:  # the source is read as text
            raise NeedsTextMode(f"target {shape.target}: a row must be completed from the source")
        if self.source_rows is None:
            raise DataError(
                f"target {shape.target}: a row with unchanged TOAST values is missing and no source"
                " session is configured to read it; the target diverged from the source"
            )
        names = [c.name for c in shape.relation.columns]
        key_names = [names[i] for i in shape.key_indexes]
        source = TableName(schema=shape.relation.namespace, name=shape.relation.name)
        self.source_rows.wait_visible(self._batch_xids)
        batch = Batch()
        for new in rows:
            key = key_text([new[i] for i in shape.key_indexes])
            current = self.source_rows.fetch(source, names, key_names, key)
            if current is None:
                self.refetch_gone += 1  # gone from the source: a later change in the stream says so
                continue
            batch.insert(shape.relation, shape.key_indexes, fill_unchanged(new, current))
            self.refetched += 1
        if batch.tables:
            self.apply(batch, {shape.relation.oid: shape}, xids=self._batch_xids)

    def _copy_direct(self, cur: psycopg.Cursor, shape: Shape, rows: list[bytes]) -> bool:
        """COPY brand-new rows straight into the target under a savepoint; False on a key clash."""
        # Explicit SAVEPOINT, not conn.transaction(): outside an open transaction that would BEGIN
        # and COMMIT on its own, i.e. commit these rows without the batch's state row.
        cur.execute("SAVEPOINT zdtp_direct")
        try:
            if self.binary:
                with cur.copy(shape.sql_copy_direct + " (FORMAT binary)") as cp:
                    cp.write(binary_copy(b"".join(rows)))
            else:
                with cur.copy(shape.sql_copy_direct) as cp:
                    cp.write(b"".join(rows))
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT zdtp_direct")
            log.info("target %s: inserted keys already present; upserting them instead", shape.target)
            return False
        cur.execute("RELEASE SAVEPOINT zdtp_direct")
        return True

    def truncate(self, names: list[TableName]) -> None:
        # Each named table by itself (pgoutput lists every truncated table, descendants included).
        self.conn.execute(f"TRUNCATE {', '.join(only(self.conn, n) + n.qualified for n in names)}")

    def move_row(self, shape: Shape, old_key: tuple[Value, ...], new: list[Value]) -> None:
        """Apply an update that changed the key and kept TOASTed columns unchanged.

        The unchanged values are read from the source by the new key, never from the target's row
        at the old key: after a ``full+incremental`` hand-off that row may be missing, or newer than
        this change (the old key was reused before its chunk was copied), and its values would land
        on the new key for good. The old key's row is deleted either way (the source has none).
        """
        names = [c.name for c in shape.relation.columns]
        key_names = [names[i] for i in shape.key_indexes]
        where = " AND ".join(f"{ident(k)} = %s" for k in key_names)
        self.conn.execute(
            f"DELETE FROM {shape.only}{shape.target.qualified} WHERE {where}", key_text(list(old_key))
        )
        self._complete_from_source(shape, [new])


def _staged(row: tuple[Any, ...]) -> list[Value]:
    """A staged partial row read back (``_keep``, then every column as text) as stream values."""
    keep = set(row[0] or ())  # int[] comes back as a list
    return [UNCHANGED if i in keep else (None if v is None else v.encode()) for i, v in enumerate(row[1:])]
