"""Reading a row's current values from the source, for changes the stream cannot complete alone.

pgoutput leaves out a TOASTed column an UPDATE did not change ('u'). The stream normally takes
that value from the target's row, but the target may not hold the right one:

- the ``full+incremental`` hand-off copies chunks under snapshots taken *after* the slot's
  consistent point, so a change replayed by the stream can meet a target row that is newer than
  the change, or no row at all (deleted or moved away before its chunk was copied);
- an UPDATE that changes the key carries the unchanged value over to another key, so a target
  row at the old key that is newer than the change (the key was reused before its chunk was
  copied) would hand over the wrong value.

In those cases the applier reads the row by its key from the source (a plain autocommit session,
read committed): the source's value at a time at or after the change. Every later change of that
column is in the stream with its explicit value, and later changes that leave it unchanged keep
it, so the target converges once the stream has passed the read (argument in docs/concepts.md,
"Live sources"). A key the source no longer has is skipped: a later delete or key change in the
stream accounts for it.

"No row" is trusted only once every source transaction of the batch is visible: the walsender
can send a transaction as soon as its commit record is in the WAL, a moment before the
transaction leaves the proc array, so a read right after decoding may not see the row the
transaction wrote yet — skipping it then would lose the row for good (seen on a live writer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg

from zdtp_worker.contract.errors import TemporaryError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.session import connect
from zdtp_worker.incremental import text_form
from zdtp_worker.incremental.only import only
from zdtp_worker.incremental.pgoutput import UNCHANGED, Value
from zdtp_worker.pg.quoting import ident

# A decoded 32-bit xid as xid8: the epoch of the snapshot's xmax, one less when the xid is above
# xmax's low bits (it was assigned before the last wraparound). xid < xmin counts as visible.
_ALL_VISIBLE_SQL = """
SELECT coalesce(bool_and(pg_visible_in_snapshot(
         (CASE WHEN (r.ref & ~4294967295::bigint) + x > r.ref
               THEN (r.ref & ~4294967295::bigint) + x - 4294967296
               ELSE (r.ref & ~4294967295::bigint) + x END)::text::xid8, r.snap)), true)
FROM (SELECT s AS snap, pg_snapshot_xmax(s)::text::bigint AS ref FROM pg_current_snapshot() s) r,
     unnest(%s::bigint[]) AS x
"""


class SourceRows:
    """A lazily opened source session that reads single rows by key, in the stream's text form."""

    def __init__(self, dsn: str, *, application_name: str = "zdtp-cdc-refetch") -> None:
        self.dsn = dsn
        self.application_name = application_name
        self._conn: psycopg.Connection | None = None
        self._sql: dict[tuple[TableName, tuple[str, ...], tuple[str, ...]], str] = {}

    def _session(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # Same session settings as the replication connection: values come back in the text
            # form the stream itself would have sent.
            self._conn = connect(self.dsn, role="source", application_name=self.application_name)
            text_form.pin(self._conn)  # autocommit session: money prints as the stream's (.text_form)
        return self._conn

    def wait_visible(self, xids: Sequence[int], *, timeout: float = 60.0) -> None:
        """Block until every (32-bit) transaction id in ``xids`` — decoded, so committed — is
        visible to a new snapshot of the source; later reads on this session then see its rows."""
        if not xids:
            return
        deadline = time.monotonic() + timeout
        pause = 0.001
        while not self._session().execute(_ALL_VISIBLE_SQL, (sorted(set(xids)),)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TemporaryError(
                    f"source transactions {sorted(set(xids))[:5]} decoded but still not visible after"
                    f" {timeout:.0f} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def fetch(
        self, table: TableName, columns: Sequence[str], key: Sequence[str], values: Sequence[str | None]
    ) -> list[Value] | None:
        """The row of ``table`` whose ``key`` columns equal ``values`` (text), as stream values
        (``bytes``/``None``) in ``columns`` order; ``None`` when the source has no such row."""
        cache_key = (table, tuple(columns), tuple(key))
        sql = self._sql.get(cache_key)
        if sql is None:
            select = ", ".join(f"{ident(c)}::text" for c in columns)
            where = " AND ".join(f"{ident(k)} = %s" for k in key)
            # ONLY: a row of an inheritance child with the same key is not this table's row.
            source = only(self._session(), table) + table.qualified
            sql = self._sql[cache_key] = f"SELECT {select} FROM {source} WHERE {where}"
        row = self._session().execute(sql, list(values)).fetchone()
        if row is None:
            return None
        return [None if v is None else v.encode() for v in row]

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def fill_unchanged(new: Sequence[Value], current: Sequence[Value]) -> list[Value]:
    """``new`` with every unchanged ('u') value taken from ``current`` (the source's row)."""
    return [c if v is UNCHANGED else v for v, c in zip(new, current, strict=True)]


def key_text(values: Sequence[Value]) -> list[str | None]:
    """Stream values as SQL text parameters (a key is never unchanged)."""
    out: list[str | None] = []
    for v in values:
        assert v is not UNCHANGED, "a key value arrived unchanged"
        out.append(None if v is None else v.decode())  # type: ignore[union-attr]
    return out
