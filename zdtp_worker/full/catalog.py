"""What a table looks like, read from ``pg_catalog``: columns, types, primary key, size.

The planner needs the primary key and a size estimate, the schema module needs columns and types
to create or check the target, the copy decides binary vs text from the types. Everything is
read once per table, under the source snapshot, into a frozen :class:`TableInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from zdtp_worker.contract.spec import TableName
from zdtp_worker.pg.catalog import key_columns_sql
from zdtp_worker.pg.quoting import ident

# Types created by initdb have OIDs below this; their binary format carries no per-database
# OIDs, so binary COPY between two databases is safe only for them (arrays embed element OIDs).
FIRST_NORMAL_OID = 16384
INTEGER_TYPES = {"smallint", "integer", "bigint"}


@dataclass(frozen=True)
class Column:
    name: str
    type_sql: str  # format_type(), e.g. "numeric(12,2)", "text[]"
    type_oid: int
    category: str  # pg_type.typcategory: N numeric, S string, D date/time, A array, ...
    not_null: bool

    @property
    def builtin(self) -> bool:
        return self.type_oid < FIRST_NORMAL_OID


@dataclass(frozen=True)
class TableInfo:
    name: TableName
    columns: tuple[Column, ...]
    pk: tuple[str, ...]  # primary-key columns in key order; () when the table has none
    est_rows: int  # pg_class.reltuples (-1 when never analysed)
    size_bytes: int  # heap size

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def pk_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(n) for n in self.pk)

    @property
    def column_list(self) -> str:
        return ", ".join(ident(c.name) for c in self.columns)


_TABLE_SQL = """
SELECT c.oid, c.relkind::text AS relkind, c.reltuples::bigint AS reltuples, pg_relation_size(c.oid) AS size
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2
"""
_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type_sql, a.atttypid::int AS type_oid,
       t.typcategory::text AS category, a.attnotnull
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_PK_SQL = key_columns_sql("$1")


async def read_table(conn: asyncpg.Connection, table: TableName) -> TableInfo | None:
    """Return the table's description, or ``None`` when no such table (or view) exists."""
    row = await conn.fetchrow(_TABLE_SQL, table.schema_, table.name)
    if row is None or row["relkind"] not in ("r", "p"):
        return None
    cols = await conn.fetch(_COLUMNS_SQL, row["oid"])
    pk = await conn.fetch(_PK_SQL, row["oid"])
    return TableInfo(
        name=table,
        columns=tuple(
            Column(
                name=c["attname"],
                type_sql=c["type_sql"],
                type_oid=c["type_oid"],
                category=c["category"],
                not_null=c["attnotnull"],
            )
            for c in cols
        ),
        pk=tuple(r["attname"] for r in pk),
        est_rows=int(row["reltuples"]),
        size_bytes=int(row["size"]),
    )
