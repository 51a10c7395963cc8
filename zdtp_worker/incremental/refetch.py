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
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.session import connect
from zdtp_worker.incremental.pgoutput import UNCHANGED, Value
from zdtp_worker.pg.quoting import ident


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
        return self._conn

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
            sql = self._sql[cache_key] = f"SELECT {select} FROM {table.qualified} WHERE {where}"
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
