"""A table's full shape as the source catalog describes it: what zdtp needs to *reproduce* it.

Where :class:`~zdtp_worker.full.catalog.TableInfo` is what the copy needs (columns to move, key to
chunk by), a :class:`TableShape` is what creating an equal table on the target needs: column
defaults, generated expressions, identity and serial sequences, collations, CHECK / PRIMARY KEY /
UNIQUE / EXCLUDE constraints and other unique indexes, the user-defined types it depends on
(enum, domain, composite, range — dependencies first), extension types, user functions its
expressions call, and the partition tree of a partitioned table.

Pure data: :mod:`.shape_read` fills it from a source session, :mod:`.ddl` turns it into SQL.
Expressions are deparsed with ``search_path = pg_catalog``, so every user object in them is
schema-qualified and means the same on the target.

``problems`` lists what zdtp cannot reproduce (a foreign-table partition, a column of a table's
row type, a base type written in C outside an extension, ...): the worker refuses such a table
before writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zdtp_worker.contract.identifiers import render_qualified, sql_qualified


@dataclass(frozen=True)
class ColumnShape:
    name: str
    type_sql: str  # format_type(), schema-qualified for user types
    not_null: bool
    default_sql: str | None = None  # pg_get_expr of the default (not for generated columns)
    generated: str = ""  # "" | "s" (STORED) | "v" (VIRTUAL, PostgreSQL 18)
    generation_sql: str | None = None
    identity: str = ""  # "" | "a" (ALWAYS) | "d" (BY DEFAULT)
    collation: str | None = None  # quoted qualified collation when it differs from the type's
    storage: str | None = None  # attstorage when it differs from the type's: p, e, m or x
    compression: str = ""  # attcompression: "" (the server's default), "p" pglz, "l" lz4
    not_null_name: str | None = None  # the NOT NULL constraint's name (PostgreSQL 18 sources)


@dataclass(frozen=True)
class SequenceShape:
    """A sequence a column's values come from: identity, serial (owned) or a shared one."""

    schema: str
    name: str
    type_sql: str
    start: int
    increment: int
    min_value: int
    max_value: int
    cache: int
    cycle: bool
    column: str | None = None  # owning column (identity or OWNED BY); None: only referenced
    identity: bool = False
    unlogged: bool = False  # PostgreSQL 15+: an unlogged table's serial sequences are unlogged too

    @property
    def qualified(self) -> str:
        return sql_qualified(self.schema, self.name)

    def options_sql(self) -> str:
        return (
            f"START WITH {self.start} INCREMENT BY {self.increment} MINVALUE {self.min_value} "
            f"MAXVALUE {self.max_value} CACHE {self.cache} {'CYCLE' if self.cycle else 'NO CYCLE'}"
        )


@dataclass(frozen=True)
class ConstraintShape:
    name: str
    kind: str  # "p" primary key, "u" unique, "c" check, "x" exclusion
    definition: str  # pg_get_constraintdef(), e.g. "PRIMARY KEY (id)", "CHECK ((qty > 0))"


@dataclass(frozen=True)
class IndexShape:
    """A unique index that backs no constraint; ``tail`` follows ``ON <table>`` (``USING …``)."""

    name: str
    tail: str


@dataclass(frozen=True)
class TypeShape:
    """A user-defined type a column depends on (directly, or via a domain/composite/array)."""

    schema: str
    name: str
    kind: str  # "e" enum, "d" domain, "c" composite, "r" range (with its multirange), "x" extension
    labels: tuple[str, ...] = ()  # enum
    base_sql: str | None = None  # domain: base type; range: subtype
    not_null: bool = False  # domain
    default_sql: str | None = None  # domain
    checks: tuple[tuple[str, str], ...] = ()  # domain: (name, "CHECK (...)")
    attributes: tuple[tuple[str, str, str | None], ...] = ()  # composite: (name, type, collation)
    subtype_diff: str | None = None  # range: a built-in function name
    collation: str | None = None  # domain/range: quoted collation when not the base type's
    opclass: str | None = None  # range: quoted subtype operator class when not the default
    multirange: str | None = None  # range: its multirange type, quoted qualified
    extension: str | None = None

    @property
    def qualified(self) -> str:
        return sql_qualified(self.schema, self.name)

    def __str__(self) -> str:
        return render_qualified(self.schema, self.name)


@dataclass(frozen=True)
class PartitionShape:
    schema: str
    name: str
    bound_sql: str  # "FOR VALUES IN ('de')", "FOR VALUES FROM (...) TO (...)", "DEFAULT"
    partkey_sql: str | None = None  # a sub-partitioned partition: its own "RANGE (...)"
    children: tuple[PartitionShape, ...] = ()
    # What the partition has beyond what it inherits from its parent:
    options: tuple[str, ...] = ()  # reloptions ("fillfactor=80")
    checks: tuple[tuple[str, str], ...] = ()  # (name, "CHECK (...)") of its own
    defaults: tuple[tuple[str, str | None], ...] = ()  # (column, default or None) differing from the parent's
    not_null: tuple[str, ...] = ()  # columns NOT NULL here, nullable in the parent
    unique_indexes: tuple[IndexShape, ...] = ()  # unique indexes of its own (no parent index)


@dataclass(frozen=True)
class TableShape:
    schema: str
    name: str
    relkind: str  # "r" table, "p" partitioned
    unlogged: bool
    columns: tuple[ColumnShape, ...]
    constraints: tuple[ConstraintShape, ...] = ()
    unique_indexes: tuple[IndexShape, ...] = ()
    sequences: tuple[SequenceShape, ...] = ()
    types: tuple[TypeShape, ...] = ()  # dependencies first
    functions: tuple[str, ...] = ()  # user functions its expressions call, as regprocedure text
    extension_functions: tuple[tuple[str, str], ...] = ()  # (regprocedure, extension) it calls
    partkey_sql: str | None = None
    partitions: tuple[PartitionShape, ...] = ()
    problems: tuple[str, ...] = field(default=())
    replica_identity: str = "d"  # d default, f full, n nothing, i index (replica_identity_index)
    replica_identity_index: str | None = None
    options: tuple[str, ...] = ()  # reloptions ("fillfactor=70"), a plain table's
    toast_options: tuple[str, ...] = ()  # its TOAST table's ("autovacuum_enabled=false")
    access_method: str | None = None  # quoted table access method when not heap
    of_type_sql: str | None = None  # a typed table's composite type (CREATE TABLE ... OF)

    def __str__(self) -> str:
        return render_qualified(self.schema, self.name)

    @property
    def copied_columns(self) -> tuple[ColumnShape, ...]:
        """Columns whose values COPY moves: a generated column is computed by the target."""
        return tuple(c for c in self.columns if not c.generated)

    @property
    def key_constraints(self) -> tuple[ConstraintShape, ...]:
        """Constraints backed by an index, built after the bulk load (PK first)."""
        return tuple(
            sorted((c for c in self.constraints if c.kind in "pux"), key=lambda c: "pux".index(c.kind))
        )

    @property
    def checks(self) -> tuple[ConstraintShape, ...]:
        return tuple(c for c in self.constraints if c.kind == "c")


__all__ = [
    "ColumnShape",
    "ConstraintShape",
    "IndexShape",
    "PartitionShape",
    "SequenceShape",
    "TableShape",
    "TypeShape",
]
