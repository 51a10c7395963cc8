"""Can the target hold a faithful copy of a source table, and create it: the rules the full
worker's pre-flight applies (asyncpg) and ``zdtp plan`` with a target applies (psycopg 3, through
:mod:`zdtp_worker.control.target_check`), from one place, so the plan refuses what the worker
would refuse and never the other way round. Driver-free: written against :class:`.conn.Conn`.

- :func:`check_creatable` — read-only: every problem the shape reports, extension types the
  target lacks, user functions the table's expressions call that the target lacks, and user types
  that exist on the target with a different definition. Each is a DataError (65) that names the
  table and says what to do.
- :func:`trial_create` — the table created with all its keys in a transaction that is rolled
  back: whatever else PostgreSQL refuses on the target (a collation, an operator class from an
  extension, an access method) is a DataError before a single row is copied.
- :func:`create_table` — schemas, missing user types, serial sequences, the table (with its CHECK
  constraints, defaults, identity and generated columns), its partitions, sequence ownership;
  keys inline or left for :func:`build_keys` after the bulk load.

Callers hold the per-table advisory lock (see ``full.schema.lock_name``) around create/build.
"""

from __future__ import annotations

from dataclasses import replace

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.identifiers import sql_ident
from zdtp_worker.contract.spec import TableName
from zdtp_worker.pg import ddl
from zdtp_worker.pg.conn import Conn
from zdtp_worker.pg.errors import TEMPORARY_CLASSES, first_line
from zdtp_worker.pg.shape import TableShape, TypeShape

_TYPE = """
SELECT t.oid, t.typtype::text AS typtype, format_type(t.typbasetype, t.typtypmod) AS base_sql, t.typrelid
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typname = $2
"""
_EXTENSION_SCHEMA = (
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1"
)
_ENUM = "SELECT enumlabel FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder"
_ATTRS = (
    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
    " WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)


def _creatable(shape: TableShape) -> TableShape:
    """``shape`` without its domains' NOT VALID CHECK constraints.

    Values older than such a constraint may violate it on the source, and COPY checks every value
    it inserts, so they could never be copied into a column of a domain that has it (and CREATE
    DOMAIN has no NOT VALID clause: zdtp's DDL failed with a syntax error). Like a table's NOT
    VALID checks (which ``shape_read`` leaves out), they are not reproduced on the target.
    """
    types = tuple(
        replace(t, checks=tuple((n, c) for n, c in t.checks if not c.endswith(" NOT VALID")))
        if t.kind == "d"
        else t
        for t in shape.types
    )
    return replace(shape, types=types)


async def _with_catalog_path(conn: Conn):
    old = await conn.fetchval("SELECT current_setting('search_path')")
    await conn.execute("SELECT set_config('search_path', 'pg_catalog', false)")
    return old


async def _type_mismatch(conn: Conn, t: TypeShape) -> str | None:
    """Why the target's type of the same name cannot stand in for ``t``; None if it can or is absent."""
    row = await conn.fetchrow(_TYPE, t.schema, t.name)
    if t.kind == "x":
        if row is None:
            ext = sql_ident(t.extension or "")
            elsewhere = await conn.fetchval(_EXTENSION_SCHEMA, t.extension)
            if elsewhere is not None:
                # Installed, but the column's type names the source's schema: it would not resolve.
                return (
                    f"uses type {t} from extension {t.extension}, which the target has in schema "
                    f"{elsewhere}, not {t.schema}: move it there (ALTER EXTENSION {ext} SET SCHEMA "
                    f"{sql_ident(t.schema)}) or create the table on the target yourself"
                )
            return (
                f"uses type {t} from extension {t.extension}, which the target lacks: "
                f"run CREATE EXTENSION {ext} on the target first"
            )
        return None
    if row is None:
        return None
    kinds = {"e": "e", "d": "d", "c": "c", "r": "r"}
    if row["typtype"] != kinds[t.kind]:
        return f"needs type {t} but the target has a different kind of type of that name"
    if t.kind == "e":
        labels = [r["enumlabel"] for r in await conn.fetch(_ENUM, row["oid"])]
        missing = [v for v in t.labels if v not in labels]
        if missing:
            return f"needs enum {t} with labels {missing!r}, which the target's enum lacks"
    elif t.kind == "d" and row["base_sql"] != t.base_sql:
        return f"needs domain {t} over {t.base_sql}; the target's is over {row['base_sql']}"
    elif t.kind == "c":
        attrs = [(r[0], r[1]) for r in await conn.fetch(_ATTRS, row["typrelid"])]
        if attrs != [(n, ty) for n, ty, _ in t.attributes]:
            names = [a[0] for a in t.attributes]
            return f"needs composite type {t} with attributes {names}; the target's differs"
    return None


async def check_creatable(conn: Conn, shape: TableShape, *, target: TableName) -> None:
    """Raise DataError when zdtp cannot create ``target`` as a faithful copy of ``shape``."""
    where = f"source table {shape}"
    if shape.problems:
        raise DataError(f"{where} cannot be reproduced: {'; '.join(shape.problems)}")
    old = await _with_catalog_path(conn)
    try:
        for t in shape.types:
            why = await _type_mismatch(conn, t)
            if why:
                raise DataError(f"{where}: target table {target} {why}")
        for sig in shape.functions:
            if await conn.fetchval("SELECT to_regprocedure($1)", sig) is None:
                raise DataError(
                    f"{where}: its defaults, generated columns or checks call {sig}, which the target lacks; "
                    "create the function on the target first (or create the table there yourself)"
                )
        for sig, extension in shape.extension_functions:
            if await conn.fetchval("SELECT to_regprocedure($1)", sig) is None:
                ext = sql_ident(extension)
                elsewhere = await conn.fetchval(_EXTENSION_SCHEMA, extension)
                fix = (
                    f"the target has it in schema {elsewhere}: move it (ALTER EXTENSION {ext} SET SCHEMA ...)"
                    if elsewhere is not None
                    else f"run CREATE EXTENSION {ext} on the target first"
                )
                raise DataError(
                    f"{where}: its defaults, generated columns, checks or domains call {sig} from extension "
                    f"{extension}, which the target lacks there; {fix}"
                )
    finally:
        await conn.execute("SELECT set_config('search_path', $1, false)", old)


async def trial_create(conn: Conn, shape: TableShape, *, target: TableName) -> None:
    """Create ``target`` with all its keys inside a transaction that is rolled back: DataError if
    PostgreSQL refuses any of it, before a single row is copied.

    The catalog checks above cannot foresee everything the target's DDL needs (an EXCLUDE
    constraint over an operator class from an extension such as btree_gist, a CHECK the target
    rejects...); without this a worker would copy every row and then fail building the keys.
    Nothing stays behind: schemas, types, sequences and the table all vanish with the rollback.
    """
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"zdtp:{target}")
        if await _exists(conn, target.schema_, target.name):
            return  # another worker created it meanwhile: it is checked as an existing table
        await create_table(conn, shape, target=target, with_keys=True)
    except Exception as exc:
        code = getattr(exc, "sqlstate", None)  # a server error (asyncpg and psycopg 3 alike)
        if not code or code[:2] in TEMPORARY_CLASSES:
            raise  # a broken connection or a busy server is no verdict on the table
        reason = first_line(exc)
        hint = ""
        if code in ("42704", "42883"):  # undefined object / function
            if reason.startswith("collation"):
                hint = " (create that collation on the target first)"
            elif reason.startswith("access method"):
                hint = " (create that table access method on the target first, or install its extension)"
            else:
                hint = " (an operator class or type from an extension? install it on the target)"
        elif code == "0A000":  # feature not supported, e.g. lz4 on a server built without it
            hint = " (the target's PostgreSQL build lacks it)"
        raise DataError(
            f"source table {shape}: target table {target} cannot be created like the source: "
            f"{reason} (SQLSTATE {code}){hint}; fix the target (or create the table there yourself) "
            "and run again"
        ) from None
    finally:
        await tr.rollback()


async def _exists(conn: Conn, schema: str, name: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2",
            schema,
            name,
        )
    )


async def create_table(conn: Conn, shape: TableShape, *, target: TableName, with_keys: bool) -> None:
    """Create ``target`` like ``shape`` (call inside a transaction, after :func:`check_creatable`)."""
    # Schemas, types and sequences are shared between tables that parallel workers create at the
    # same time; ``IF NOT EXISTS`` does not survive that race (unique violation in the catalog).
    # One database-wide lock for the (short) creating transactions; always taken after the
    # table's own lock, so the two cannot deadlock.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('zdtp:create-shared-objects'))")
    shape = _creatable(shape)
    schemas = {target.schema_, *(t.schema for t in shape.types if t.kind != "x")}
    schemas |= {s.schema for s in shape.sequences}
    for schema in sorted(schemas):
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {sql_ident(schema)}")
    for t in shape.types:
        if t.kind != "x" and await conn.fetchrow(_TYPE, t.schema, t.name) is None:
            await conn.execute(ddl.create_type_sql(t))
    for seq in shape.sequences:
        if not seq.identity:
            await conn.execute(ddl.create_sequence_sql(seq))
    await conn.execute(ddl.create_table_sql(shape, schema=target.schema_, name=target.name, with_keys=False))
    for sql in ddl.table_settings_sql(shape, schema=target.schema_, name=target.name):
        await conn.execute(sql)
    for sql in ddl.create_partitions_sql(shape, schema=target.schema_, name=target.name):
        await conn.execute(sql)
    for sql in ddl.own_sequences_sql(shape, schema=target.schema_, name=target.name):
        await conn.execute(sql)
    if shape.replica_identity in ("f", "n"):
        await conn.execute(ddl.replica_identity_sql(shape, schema=target.schema_, name=target.name))
    if with_keys:
        # Through build_keys, not inline: it also makes the unique indexes and avoids taken names.
        await build_keys(conn, shape, target=target)


async def build_keys(conn: Conn, shape: TableShape, *, target: TableName) -> int:
    """Add the PRIMARY KEY, UNIQUE/EXCLUDE constraints and unique indexes; returns how many."""
    taken = {n for n in ddl.key_names(shape) if await _exists(conn, target.schema_, n)}
    statements = ddl.key_sql(shape, schema=target.schema_, name=target.name, taken=taken)
    for sql in statements:
        await conn.execute(sql)
    if shape.replica_identity == "i":
        identity = ddl.replica_identity_sql(shape, schema=target.schema_, name=target.name, taken=taken)
        if identity:
            await conn.execute(identity)
    return len(statements)


__all__ = ["build_keys", "check_creatable", "create_table", "trial_create"]
