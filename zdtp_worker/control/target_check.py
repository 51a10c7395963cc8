"""Plan-time check of tables that already exist on the target: can each take the source's rows
without loss? The same rule the worker applies before it writes (:mod:`zdtp_worker.pg.target_fit`),
run by the plan so a copy of many workers never starts when one target column is lossy (a
``numeric(12,4)`` source column into ``numeric(12,2)``, ``timestamptz`` into ``date``, ...).

Read-only on both servers: catalog reads, nothing created. Tables missing on the target are not
checked (the worker creates them as faithful copies).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.session import connect
from zdtp_worker.pg.catalog import key_columns_sql
from zdtp_worker.pg.target_fit import FIRST_NORMAL_OID, columns_sql, copy_plan


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


def target_problems(*, source_dsn: str, target_dsn: str, tables: Iterable[str | TableName]) -> list[str]:
    """One message per table whose existing target cannot take its rows (column + both types)."""
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
            source = _read(src, name) if target is not None else None
            if target is None or source is None:
                continue  # created by the worker (or reported missing by the planner)
            try:
                copy_plan(source, target)
            except DataError as exc:
                problems.append(str(exc))
    return problems


__all__ = ["target_problems"]
