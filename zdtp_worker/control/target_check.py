"""Plan-time check of the target, with the rules the full worker applies before it writes, so a
copy of many workers never starts when the worker would refuse one table:

- a table that exists on the target must take the source's rows without loss
  (:mod:`zdtp_worker.pg.target_fit`: a ``numeric(12,4)`` source column into ``numeric(12,2)``,
  ``timestamptz`` into ``date``, ...);
- a table missing there must be creatable as a faithful copy (:mod:`zdtp_worker.pg.creatable`:
  an extension type, a collation, an operator class, a function or an access method the target
  lacks; a user type the target has with another definition). Its shape is read from the source
  by the worker's own reader (:mod:`zdtp_worker.pg.shape_read`), and the table is created with
  its keys in a transaction that is rolled back, exactly as the worker's pre-flight does.

Those modules are async and written against :class:`zdtp_worker.pg.conn.Conn` (asyncpg's calls);
:class:`_SyncConn` offers those calls over a psycopg 3 connection without an event loop (nothing
in them really waits), so the plan runs one copy of the SQL and the rules. Nothing stays behind
on either server.
"""

from __future__ import annotations

import re
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.session import connect
from zdtp_worker.pg import creatable
from zdtp_worker.pg.catalog import key_columns_sql
from zdtp_worker.pg.shape_read import read_shape
from zdtp_worker.pg.target_fit import FIRST_NORMAL_OID, columns_sql, copy_plan

T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\$(\d+)")


class _Record(tuple):
    """A row that, like asyncpg's Record, is read by position or by column name."""

    names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)


def _record_row(cursor: psycopg.Cursor[Any]) -> Any:
    names = tuple(d.name for d in cursor.description or ())

    def make(values: Sequence[Any]) -> _Record:
        row = _Record(values)
        row.names = names
        return row

    return make


class _Transaction:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    async def start(self) -> None:
        self.conn.execute("BEGIN")

    async def rollback(self) -> None:
        self.conn.execute("ROLLBACK")


class _SyncConn:
    """asyncpg's calls (``$n`` placeholders, records by name) over an autocommit psycopg 3
    connection; the coroutines never suspend, so :func:`_run` drives them without a loop."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def _cursor(self, query: str, args: tuple[Any, ...]) -> psycopg.Cursor[Any]:
        cur = self.conn.cursor(row_factory=_record_row)
        if not args:
            return cur.execute(query)
        named = _PLACEHOLDER.sub(lambda m: f"%(p{m.group(1)})s", query.replace("%", "%%"))
        return cur.execute(named, {f"p{i}": a for i, a in enumerate(args, start=1)})

    async def execute(self, query: str, *args: Any) -> None:
        self._cursor(query, args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return self._cursor(query, args).fetchall()

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return self._cursor(query, args).fetchone()

    async def fetchval(self, query: str, *args: Any) -> Any:
        row = self._cursor(query, args).fetchone()
        return None if row is None else row[0]

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (:class:`_SyncConn` I/O is synchronous)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a plan-time check waited on I/O outside psycopg")  # not reached


@dataclass(frozen=True)
class _Column:
    name: str
    type_sql: str
    category: str
    not_null: bool
    generated: bool
    type_oid: int

    @property
    def builtin(self) -> bool:
        return self.type_oid < FIRST_NORMAL_OID


@dataclass(frozen=True)
class _Table:
    name: TableName
    columns: tuple[_Column, ...]
    pk: tuple[str, ...]


def _read(conn: psycopg.Connection, name: TableName) -> _Table | None:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (name.schema_, name.name),
    ).fetchone()
    if row is None:
        return None
    cols = conn.execute(columns_sql("%s"), (row[0],)).fetchall()
    pk = conn.execute(key_columns_sql("%s"), (row[0],)).fetchall()
    return _Table(
        name=name,
        columns=tuple(
            _Column(
                name=c[0], type_sql=c[1], type_oid=int(c[2]), category=c[3], not_null=c[4], generated=c[5]
            )
            for c in cols
        ),
        pk=tuple(r[0] for r in pk),
    )


def _oid(conn: psycopg.Connection, name: TableName) -> int | None:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (name.schema_, name.name),
    ).fetchone()
    return None if row is None else int(row[0])


def _creatable_problem(src: psycopg.Connection, tgt: psycopg.Connection, name: TableName) -> str | None:
    """Why the worker would refuse to create ``name`` on the target (its pre-flight's own rules)."""
    oid = _oid(src, name)
    if oid is None:
        return None  # reported missing by the planner
    shape = _run(read_shape(_SyncConn(src), oid))
    try:
        _run(creatable.check_creatable(_SyncConn(tgt), shape, target=name))
        _run(creatable.trial_create(_SyncConn(tgt), shape, target=name))
    except DataError as exc:
        return str(exc)
    return None


def target_problems(*, source_dsn: str, target_dsn: str, tables: Iterable[str | TableName]) -> list[str]:
    """One message per table the worker would refuse on this target: an existing one that cannot
    take its rows (column + both types), a missing one it cannot create like the source."""
    names = [t if isinstance(t, TableName) else TableName.model_validate(t) for t in tables]
    if not names:
        return []
    problems: list[str] = []
    with (
        connect(source_dsn, role="source") as src,
        connect(target_dsn, role="target") as tgt,
    ):
        for name in names:
            target = _read(tgt, name)
            if target is None:
                why = _creatable_problem(src, tgt, name)
                if why:
                    problems.append(why)
                continue
            source = _read(src, name)
            if source is None:
                continue  # reported missing by the planner
            try:
                copy_plan(source, target)
            except DataError as exc:
                problems.append(str(exc))
    return problems


__all__ = ["target_problems"]
