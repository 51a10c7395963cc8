"""What a table looks like, read with psycopg 3: columns, types, NOT NULLs and primary key.

Used for the CDC source (pre-flight, creating missing target tables) and target (checking each
Relation message against the table it lands in).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from zdtp_worker.contract.spec import TableName
from zdtp_worker.pg.catalog import key_columns_sql


@dataclass(frozen=True)
class ColumnDef:
    name: str
    type_sql: str  # format_type(), e.g. "numeric(12,2)"
    not_null: bool
    generated: str = ""  # "" | "s" (stored) | "v" (virtual, PG 18): never in the stream


@dataclass(frozen=True)
class TableDef:
    name: TableName
    oid: int
    columns: tuple[ColumnDef, ...]  # in attnum order
    pk: tuple[str, ...]  # primary-key columns in key order; () when none

    @property
    def column_types(self) -> dict[str, str]:
        """Column name → ``format_type()``, in attnum order."""
        return {c.name: c.type_sql for c in self.columns}


def read_table(conn: psycopg.Connection, name: TableName) -> TableDef | None:
    """The table's description, or ``None`` when no such (plain or partitioned) table exists."""
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (name.schema_, name.name),
    ).fetchone()
    if row is None:
        return None
    oid = int(row[0])
    cols = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull, attgenerated::text FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,),
    ).fetchall()
    pk = conn.execute(key_columns_sql("%s"), (oid,)).fetchall()
    return TableDef(
        name=name,
        oid=oid,
        columns=tuple(ColumnDef(c[0], c[1], bool(c[2]), c[3]) for c in cols),
        pk=tuple(r[0] for r in pk),
    )


def column_names(conn: psycopg.Connection, qualified: str) -> list[str]:
    """Names of a table's columns in attnum order (``qualified`` is a quoted schema.table)."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        (qualified,),
    ).fetchall()
    return [r[0] for r in rows]


def type_names(conn: psycopg.Connection, types: list[tuple[int, int]]) -> list[str]:
    """``format_type`` for (type oid, typmod) pairs as sent in a Relation message."""
    if not types:
        return []
    rows = conn.execute(
        "SELECT format_type(t.oid, t.mod) FROM unnest(%s::oid[], %s::int[]) WITH ORDINALITY AS t(oid, mod, n)"
        " ORDER BY t.n",
        ([t for t, _ in types], [m for _, m in types]),
    ).fetchall()
    return [r[0] for r in rows]
