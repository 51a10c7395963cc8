"""SQL that recreates a source table on the target, built from a :class:`TableShape` (pure).

The order a creator runs it in:

1. :func:`create_type_sql` for each user type the target lacks (enum, domain, composite, range;
   dependencies first — extension types are never created, only checked);
2. :func:`create_sequence_sql` for serial/shared sequences the target lacks (identity sequences
   come with their column);
3. :func:`create_table_sql` — columns with types, collations, NOT NULL, defaults, identity,
   generated expressions, CHECK constraints, ``PARTITION BY``; then :func:`create_partitions_sql`
   and :func:`own_sequences_sql`;
4. after the bulk load, :func:`key_sql` — PRIMARY KEY, UNIQUE and EXCLUDE constraints and the
   other unique indexes (building an index once over loaded rows is much faster than maintaining
   it row by row, as pgcopydb does).

Sequences keep their source names (a default's ``nextval('s.seq'::regclass)`` then reads the same
on the target). Partitions keep their names, in the target table's schema. Constraint and index
names are the source's unless ``free_names`` is False for them (taken on the target): PostgreSQL
then picks a name.
"""

from __future__ import annotations

from collections.abc import Container

from zdtp_worker.contract.identifiers import sql_ident, sql_qualified
from zdtp_worker.pg.shape import (
    ColumnShape,
    IndexShape,
    PartitionShape,
    SequenceShape,
    TableShape,
    TypeShape,
)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # standard_conforming_strings is on in every session


def create_type_sql(t: TypeShape) -> str:
    if t.kind == "e":
        return f"CREATE TYPE {t.qualified} AS ENUM ({', '.join(_literal(v) for v in t.labels)})"
    if t.kind == "d":
        parts = [f"CREATE DOMAIN {t.qualified} AS {t.base_sql}"]
        if t.collation:
            parts.append(f"COLLATE {t.collation}")
        if t.default_sql is not None:
            parts.append(f"DEFAULT {t.default_sql}")
        if t.not_null:
            parts.append("NOT NULL")
        parts += [f"CONSTRAINT {sql_ident(name)} {check}" for name, check in t.checks]
        return " ".join(parts)
    if t.kind == "c":
        attrs = ", ".join(
            f"{sql_ident(n)} {ty}{f' COLLATE {coll}' if coll else ''}" for n, ty, coll in t.attributes
        )
        return f"CREATE TYPE {t.qualified} AS ({attrs})"
    if t.kind == "r":
        opts = [f"SUBTYPE = {t.base_sql}"]
        if t.opclass:
            opts.append(f"SUBTYPE_OPCLASS = {t.opclass}")
        if t.collation:
            opts.append(f"COLLATION = {t.collation}")
        if t.subtype_diff:
            opts.append(f"SUBTYPE_DIFF = {t.subtype_diff}")
        if t.multirange:  # its name as on the source (columns may use the multirange)
            opts.append(f"MULTIRANGE_TYPE_NAME = {t.multirange}")
        return f"CREATE TYPE {t.qualified} AS RANGE ({', '.join(opts)})"
    raise ValueError(f"type {t} ({t.kind}) is not created by zdtp")


def create_sequence_sql(seq: SequenceShape) -> str:
    unlogged = "UNLOGGED " if seq.unlogged else ""
    return f"CREATE {unlogged}SEQUENCE IF NOT EXISTS {seq.qualified} AS {seq.type_sql} {seq.options_sql()}"


def _column_sql(col: ColumnShape, identity: SequenceShape | None) -> str:
    parts = [sql_ident(col.name), col.type_sql]
    if col.compression:
        parts.append(f"COMPRESSION {_COMPRESSION[col.compression]}")
    if col.collation:
        parts.append(f"COLLATE {col.collation}")
    if col.generated:
        kind = "VIRTUAL" if col.generated == "v" else "STORED"
        parts.append(f"GENERATED ALWAYS AS ({col.generation_sql}) {kind}")
    elif col.identity:
        how = "ALWAYS" if col.identity == "a" else "BY DEFAULT"
        opts = f" (SEQUENCE NAME {identity.qualified} {identity.options_sql()})" if identity else ""
        parts.append(f"GENERATED {how} AS IDENTITY{opts}")
    elif col.default_sql is not None:
        parts.append(f"DEFAULT {col.default_sql}")
    if col.not_null:
        # Named as on the source (PostgreSQL 18 catalogs NOT NULL constraints by name; older
        # targets accept the name and ignore it).
        named = f"CONSTRAINT {sql_ident(col.not_null_name)} " if col.not_null_name else ""
        parts.append(f"{named}NOT NULL")
    return " ".join(parts)


_COMPRESSION = {"p": "pglz", "l": "lz4"}
_STORAGE = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED"}


def _option_sql(option: str, prefix: str = "") -> str:
    key, _, value = option.partition("=")
    return f"{prefix}{key} = {_literal(value)}"


def create_table_sql(shape: TableShape, *, schema: str, name: str, with_keys: bool) -> str:
    """``CREATE TABLE`` for the target ``schema.name``; keys inline only when ``with_keys``."""
    identities = {s.column: s for s in shape.sequences if s.identity}
    items = [_column_sql(c, identities.get(c.name)) for c in shape.columns]
    items += [f"CONSTRAINT {sql_ident(c.name)} {c.definition}" for c in shape.checks]
    if with_keys:
        items += [f"CONSTRAINT {sql_ident(c.name)} {c.definition}" for c in shape.key_constraints]
    unlogged = "UNLOGGED " if shape.unlogged else ""
    sql = f"CREATE {unlogged}TABLE {sql_qualified(schema, name)} ({', '.join(items)})"
    if shape.partkey_sql:
        sql += f" PARTITION BY {shape.partkey_sql}"
    if shape.access_method:
        sql += f" USING {shape.access_method}"
    options = [_option_sql(o) for o in shape.options]
    options += [_option_sql(o, "toast.") for o in shape.toast_options]
    if options:
        sql += f" WITH ({', '.join(options)})"
    return sql


def table_settings_sql(shape: TableShape, *, schema: str, name: str) -> list[str]:
    """After :func:`create_table_sql`: column STORAGE other than the type's (``ALTER``, which
    every supported target takes; ``CREATE TABLE`` has it only since 16), and ``OF type`` for a
    typed table (its columns are the type's, in order, so the table can be bound to it)."""
    table = sql_qualified(schema, name)
    out = [
        f"ALTER TABLE {table} ALTER COLUMN {sql_ident(c.name)} SET STORAGE {_STORAGE[c.storage]}"
        for c in shape.columns
        if c.storage
    ]
    if shape.of_type_sql:
        out.append(f"ALTER TABLE {table} OF {shape.of_type_sql}")
    return out


def _partitions(parent: str, parts: tuple[PartitionShape, ...], schema: str) -> list[str]:
    out = []
    for p in parts:
        table = sql_qualified(schema, p.name)
        sql = f"CREATE TABLE {table} PARTITION OF {parent} {p.bound_sql}"
        if p.partkey_sql:
            sql += f" PARTITION BY {p.partkey_sql}"
        if p.options:
            sql += f" WITH ({', '.join(_option_sql(o) for o in p.options)})"
        out.append(sql)
        # What the partition has of its own, beyond what PARTITION OF gives it.
        for column, default in p.defaults:
            change = f"SET DEFAULT {default}" if default is not None else "DROP DEFAULT"
            out.append(f"ALTER TABLE {table} ALTER COLUMN {sql_ident(column)} {change}")
        out += [f"ALTER TABLE {table} ALTER COLUMN {sql_ident(c)} SET NOT NULL" for c in p.not_null]
        out += [f"ALTER TABLE {table} ADD CONSTRAINT {sql_ident(n)} {check}" for n, check in p.checks]
        out += _partitions(table, p.children, schema)
    return out


def _partition_indexes(parts: tuple[PartitionShape, ...], schema: str) -> list[tuple[str, IndexShape]]:
    """(quoted partition, index) for every partition's own unique indexes, sub-partitions too."""
    out = []
    for p in parts:
        out += [(sql_qualified(schema, p.name), ix) for ix in p.unique_indexes]
        out += _partition_indexes(p.children, schema)
    return out


def create_partitions_sql(shape: TableShape, *, schema: str, name: str) -> list[str]:
    """One ``CREATE TABLE … PARTITION OF`` per partition (sub-partitions after their parent)."""
    return _partitions(sql_qualified(schema, name), shape.partitions, schema)


def own_sequences_sql(shape: TableShape, *, schema: str, name: str) -> list[str]:
    """``OWNED BY`` for serial sequences (identity sequences are owned by construction)."""
    return [
        f"ALTER SEQUENCE {s.qualified} OWNED BY {sql_qualified(schema, name)}.{sql_ident(s.column)}"
        for s in shape.sequences
        if s.column and not s.identity
    ]


def key_sql(shape: TableShape, *, schema: str, name: str, taken: Container[str] = ()) -> list[str]:
    """PRIMARY KEY / UNIQUE / EXCLUDE constraints and other unique indexes, for after the load.

    A name in ``taken`` (already used by a relation in the target schema) is left for
    PostgreSQL to choose, so a renamed or staging target never collides with the original.
    """
    table = sql_qualified(schema, name)
    out = []
    for c in shape.key_constraints:
        named = "" if c.name in taken else f"CONSTRAINT {sql_ident(c.name)} "
        out.append(f"ALTER TABLE {table} ADD {named}{c.definition}")
    for ix in shape.unique_indexes:
        named = "" if ix.name in taken else f"{sql_ident(ix.name)} "
        out.append(f"CREATE UNIQUE INDEX {named}ON {table} {ix.tail}")
    for partition, ix in _partition_indexes(shape.partitions, schema):
        named = "" if ix.name in taken else f"{sql_ident(ix.name)} "
        out.append(f"CREATE UNIQUE INDEX {named}ON {partition} {ix.tail}")
    return out


def replica_identity_sql(
    shape: TableShape, *, schema: str, name: str, taken: Container[str] = ()
) -> str | None:
    """``REPLICA IDENTITY`` as on the source (for a cut-over that publishes from the target).

    FULL and NOTHING at creation; USING INDEX after :func:`key_sql`, and only when that index
    kept its source name (not in ``taken``)."""
    table = sql_qualified(schema, name)
    if shape.replica_identity == "f":
        return f"ALTER TABLE {table} REPLICA IDENTITY FULL"
    if shape.replica_identity == "n":
        return f"ALTER TABLE {table} REPLICA IDENTITY NOTHING"
    index = shape.replica_identity_index
    if shape.replica_identity == "i" and index and index not in taken:
        return f"ALTER TABLE {table} REPLICA IDENTITY USING INDEX {sql_ident(index)}"
    return None


def key_names(shape: TableShape) -> list[str]:
    """Relation names :func:`key_sql` would create (to look up which are taken)."""
    own = [ix.name for _, ix in _partition_indexes(shape.partitions, "")]
    return [c.name for c in shape.key_constraints] + [ix.name for ix in shape.unique_indexes] + own


__all__ = [
    "create_partitions_sql",
    "create_sequence_sql",
    "create_table_sql",
    "create_type_sql",
    "key_names",
    "key_sql",
    "own_sequences_sql",
    "replica_identity_sql",
    "table_settings_sql",
]
