"""What a table looks like to the copy, read from ``pg_catalog``: columns, types, keys, size.

The chunker needs the chunk key (the primary key, else a unique index on NOT NULL columns — the
planner's choice travels in ``TableSpec.key``) and a size estimate, the schema module needs
columns and types to check the target, the copy decides binary vs text from the types and leaves
generated columns to the target. Everything is read once per table, under the source snapshot,
into a frozen :class:`TableInfo`. (Creating a faithful target needs more: ``zdtp_worker.pg.shape``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control import source_check
from zdtp_worker.pg.catalog import key_columns_sql
from zdtp_worker.pg.quoting import ident
from zdtp_worker.pg.target_fit import FIRST_NORMAL_OID, columns_sql

INTEGER_TYPES = {"smallint", "integer", "bigint"}
# Object-identifier alias types: a value *is* an OID (binary COPY sends the number), but the same
# object has another OID on the target, so only their text form (the object's name) copies exactly.
OID_ALIAS_TYPES = frozenset(
    {
        "regclass",
        "regcollation",
        "regconfig",
        "regdictionary",
        "regnamespace",
        "regoper",
        "regoperator",
        "regproc",
        "regprocedure",
        "regrole",
        "regtype",
    }
)

# Built-in types binary COPY cannot move exactly: xml's binary receive re-parses the document and
# drops its XML declaration ('<?xml version="1.0"?><a/>' arrives as '<a/>'; its text form
# round-trips as stored); aclitem has no binary form at all, and its text form names roles (the
# roles' OIDs differ on the target; tables.check_tables checks the roles exist there).
TEXT_ONLY_TYPES = frozenset({"xml", "aclitem"})


@dataclass(frozen=True)
class Column:
    name: str
    type_sql: str  # format_type(), e.g. "numeric(12,2)", "text[]"
    type_oid: int
    category: str  # pg_type.typcategory: N numeric, S string, D date/time, A array, ...
    not_null: bool
    generated: bool = False  # GENERATED ALWAYS AS (...): computed by each side, never copied

    @property
    def builtin(self) -> bool:
        """A built-in type whose binary form means the same on the target (binary COPY is safe).

        reg* columns are built-in but not: their binary form is a source OID (text COPY then
        sends the object's name, as pg_dump does); nor is xml (see TEXT_ONLY_TYPES)."""
        base = self.type_sql.removesuffix("[]")
        return (
            self.type_oid < FIRST_NORMAL_OID and base not in OID_ALIAS_TYPES and base not in TEXT_ONLY_TYPES
        )


@dataclass(frozen=True)
class TableInfo:
    name: TableName
    columns: tuple[Column, ...]
    pk: tuple[str, ...]  # primary-key columns in key order; () when the table has none
    est_rows: int  # pg_class.reltuples (-1 when never analysed)
    size_bytes: int  # heap size
    oid: int = 0
    relkind: str = "r"  # "r" table, "p" partitioned table
    key: tuple[str, ...] = ()  # the chunk key: the primary key or a NOT NULL unique index; ()=none
    xml_columns: tuple[str, ...] = ()  # xml, xml[] or a domain over xml: read as text (select_list)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def pk_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(n) for n in self.pk)

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(n) for n in self.key)

    @property
    def copied(self) -> tuple[Column, ...]:
        """Columns whose values COPY moves (a generated column is computed by the target)."""
        return tuple(c for c in self.columns if not c.generated)

    @property
    def column_list(self) -> str:
        return ", ".join(ident(c.name) for c in self.columns)

    def select_list(self, columns: list[str]) -> str:
        """What a COPY reads: the columns, xml ones cast to text. xml's output function drops an
        XML declaration (``<?xml version="1.0"?>``) that the stored value has; the cast reads the
        value as stored, and the target's xml input keeps it."""
        out = []
        for name in columns:
            if name in self.xml_columns:
                array = self.column(name).category == "A"
                out.append(f"{ident(name)}::text{'[]' if array else ''}")
            else:
                out.append(ident(name))
        return ", ".join(out)

    @property
    def from_sql(self) -> str:
        """What to read rows from: ``ONLY`` a plain table, so rows of tables that INHERIT from it
        are not copied twice; a partitioned table is read through its partitions."""
        return self.name.qualified if self.relkind == "p" else f"ONLY {self.name.qualified}"


_TABLE_SQL = """
SELECT c.oid, c.relkind::text AS relkind, c.reltuples::bigint AS reltuples, pg_relation_size(c.oid) AS size
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2
"""
_COLUMNS_SQL = columns_sql("$1")
_PK_SQL = key_columns_sql("$1")
# Column field <- catalog query column (the shared query names them after pg_attribute).
_COLUMN_FIELDS = {
    "name": "attname",
    "type_sql": "type_sql",
    "type_oid": "type_oid",
    "category": "category",
    "not_null": "attnotnull",
    "generated": "generated",
}
# Unique indexes that identify every row (no predicate, no expression, all columns NOT NULL),
# fewest columns first: the planner's rule for a table without a primary key.
_UNIQUE_KEYS_SQL = """
SELECT array_agg(a.attname::text ORDER BY u.ord) AS cols
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS u(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
GROUP BY i.indexrelid, ic.relname, i.indnkeyatts
HAVING bool_and(a.attnotnull)
ORDER BY i.indnkeyatts, ic.relname
"""


async def _chunk_key(
    conn: asyncpg.Connection, table: TableName, oid: int, pk: tuple[str, ...], wanted: tuple[str, ...] | None
) -> tuple[str, ...]:
    """The key to chunk by: ``wanted`` (the planner's) when it identifies rows, else PK / index."""
    candidates = [pk] if pk else []
    candidates += [tuple(r["cols"]) for r in await conn.fetch(_UNIQUE_KEYS_SQL, oid)]
    if wanted is None:
        return candidates[0] if candidates else ()
    if tuple(wanted) not in candidates:
        raise DataError(
            f"source table {table}: key ({', '.join(wanted)}) is neither its primary key nor a unique "
            "index on NOT NULL columns (the table changed since planning: plan again)"
        )
    return tuple(wanted)


async def read_table(
    conn: asyncpg.Connection, table: TableName, *, key: tuple[str, ...] | None = None
) -> TableInfo | None:
    """Return the table's description, or ``None`` when no such table (or view) exists.

    ``key`` is the planner's chunk key (checked); without it the primary key, else the best
    unique index on NOT NULL columns, is used."""
    row = await conn.fetchrow(_TABLE_SQL, table.schema_, table.name)
    if row is None or row["relkind"] not in ("r", "p"):
        return None
    cols = await conn.fetch(_COLUMNS_SQL, row["oid"])
    pk_cols = tuple(r["attname"] for r in await conn.fetch(_PK_SQL, row["oid"]))
    return TableInfo(
        name=table,
        columns=tuple(Column(**{field: c[col] for field, col in _COLUMN_FIELDS.items()}) for c in cols),
        pk=pk_cols,
        est_rows=int(row["reltuples"]),
        size_bytes=int(row["size"]),
        oid=int(row["oid"]),
        relkind=row["relkind"],
        key=await _chunk_key(conn, table, int(row["oid"]), pk_cols, key),
        xml_columns=tuple(r[0] for r in await conn.fetch(source_check.xml_columns_sql("$1"), row["oid"])),
    )
