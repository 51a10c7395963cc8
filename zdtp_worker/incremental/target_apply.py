"""Writing a batch into the target's open transaction (the SQL is built in :mod:`.staging`).

Per table: brand-new rows are COPYed straight in (under a savepoint: a key that is there after
all takes the upsert path), the rest is COPYed into the staging table and applied by at most
three set-based statements (DELETE, UPDATE then upsert, partial UPDATE). Rows the target cannot
complete (unchanged TOAST values of a key it lacks, a key change) are read from the source
(:mod:`.refetch`). Nothing here commits: :meth:`~.target_session.TargetSession.commit` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.batch import Batch
from zdtp_worker.incremental.only import only
from zdtp_worker.incremental.pgoutput import UNCHANGED, NeedsTextMode, Value
from zdtp_worker.incremental.refetch import SourceRows, fill_unchanged, key_text
from zdtp_worker.incremental.staging import (
    Shape,
    binary_copy,
    stage_rows,
    stage_rows_binary,
    staged_upsert_prefix,
)
from zdtp_worker.pg.quoting import ident

log = logging.getLogger(__name__)


class BatchWriter:
    """The apply half of :class:`~.target.Target` (which supplies the connection)."""

    conn: psycopg.Connection
    binary: bool  # batches hold binary-mode values (length-prefixed send format): COPY as binary
    source_rows: SourceRows | None
    _batch_xids: Sequence[int]  # the applying batch's source transactions
    refetched: int
    refetch_gone: int

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
                guarded = bool(shape.old) and bool(n_staged_up or n_part)
                if guarded:
                    cur.execute("SAVEPOINT zdtp_apply")
                try:
                    complete = self._statements(cur, shape, n_del, n_staged_up, n_part)
                except (psycopg.errors.UniqueViolation, psycopg.errors.ExclusionViolation) as exc:
                    if not guarded:
                        raise
                    # Rows of this batch trade a unique value (a swap through a placeholder in
                    # one source transaction): row-at-a-time checks of one UPDATE see a clash the
                    # source never had. Delete-then-insert has no such intermediate state.
                    cur.execute("ROLLBACK TO SAVEPOINT zdtp_apply")
                    log.info(
                        "target %s: %s; applying the batch's rows as delete-then-insert",
                        shape.target,
                        str(exc).splitlines()[0],
                    )
                    if n_del:
                        cur.execute(shape.sql_delete)
                    cur.execute(shape.sql_park)
                    cur.execute(shape.sql_replace)
                    complete = bool(n_part) and cur.rowcount < n_staged_up + n_part
                    cur.execute(f"TRUNCATE {shape.old}")
                if guarded:
                    cur.execute("RELEASE SAVEPOINT zdtp_apply")
                missing: list[tuple[Any, ...]] = []
                if complete:
                    if binary:
                        # Completing them reads text from the source: text mode does that.
                        raise NeedsTextMode(
                            f"target {shape.target}: rows with unchanged TOAST values missing"
                        )
                    # Partial rows of keys the target lacks (a hand-off copied their chunk after
                    # they were deleted or moved away): complete them from the source.
                    missing = cur.execute(shape.sql_partial_missing).fetchall()
            if missing:
                self._complete_from_source(shape, [_staged(row) for row in missing])
            written += n_del + n_up + n_part
        batch.clear()
        return written

    @staticmethod
    def _statements(cur: psycopg.Cursor, shape: Shape, n_del: int, n_up: int, n_part: int) -> bool:
        """The staged rows' DELETE, UPDATE/upsert and partial UPDATE; True when some partial rows'
        keys are missing on the target (they must be completed from the source)."""
        if n_del:
            cur.execute(shape.sql_delete)
        if n_up and shape.sql_update:
            # Updated keys are on the target (exactly-once: it holds the source's state before
            # this batch), so UPDATE first; if some are not (a hand-off copied their chunk later,
            # rows loaded outside the stream), the upsert writes all staged rows again — same
            # values for the rows just updated.
            cur.execute(shape.sql_update)
            if cur.rowcount < n_up:
                cur.execute(shape.sql_upsert)
        elif n_up:
            cur.execute(shape.sql_upsert)
        if n_part and shape.sql_partial:
            cur.execute(shape.sql_partial)
            return cur.rowcount < n_part
        return False

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


# Unique indexes and exclusion constraints of the target table other than one on exactly the key.
_OTHER_UNIQUE_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_index i
  WHERE i.indrelid = %s::regclass AND (i.indisunique OR i.indisexclusion)
    AND (i.indisexclusion OR i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
         OR ARRAY(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey[0:i.indnkeyatts - 1])
                  ORDER BY a.attname::text COLLATE "C") <> %s::text[]))
"""


def other_unique(conn: psycopg.Connection, table: TableName, key: tuple[str, ...]) -> bool:
    """Does ``table`` have a unique index or exclusion constraint besides the one on ``key``?"""
    row = conn.execute(_OTHER_UNIQUE_SQL, (table.qualified, sorted(key))).fetchone()
    return bool(row and row[0])


def _staged(row: tuple[Any, ...]) -> list[Value]:
    """A staged partial row read back (``_keep``, then every column as text) as stream values."""
    keep = set(row[0] or ())  # int[] comes back as a list
    return [UNCHANGED if i in keep else (None if v is None else v.encode()) for i, v in enumerate(row[1:])]
