"""The target table: create it as a faithful copy of the source, or check that an existing one
can take the source's rows without loss (the rule is :mod:`zdtp_worker.pg.target_fit`, which the
plan runs too, before any worker starts); plus the staging table and the atomic swap behind
``copy_mode: swap``.

Creating reproduces the source (``zdtp_worker.pg.shape`` + :mod:`.target_ddl`): types, defaults,
generated and identity columns, collations, NOT NULL, CHECKs, keys, unique indexes, partitions,
sequences — not foreign keys, triggers, grants or other indexes: those belong to whoever owns
the target. An existing table is accepted when every source column exists there with the same
type (binary COPY) or a type every source value converts to exactly (a safe widening, text COPY:
the target parses the source's text form); a lossy conversion (``numeric(12,4)`` into
``numeric(12,2)``, ``timestamptz`` into ``date``, ``float8`` into ``real``) is a DataError naming
the column and both types. Generated columns are computed by each side and never copied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from zdtp_worker.contract.spec import TableName
from zdtp_worker.full import target_ddl
from zdtp_worker.full.catalog import TableInfo, read_table
from zdtp_worker.pg.quoting import ident
from zdtp_worker.pg.shape import TableShape
from zdtp_worker.pg.target_fit import CopyFormat, copy_plan


@dataclass(frozen=True)
class TargetPlan:
    """How rows of one source table land in the target."""

    source: TableInfo
    target: TableName
    exists: bool
    copy_format: CopyFormat
    columns: tuple[str, ...] = ()  # what COPY moves (generated columns of either side left out)


def check_compatible(source: TableInfo, target: TableInfo) -> CopyFormat:
    """The COPY format that moves ``source`` rows into ``target``, or DataError."""
    return copy_plan(source, target)[0]


async def _lock_name(conn: asyncpg.Connection, name: str) -> None:
    """Serialise DDL on one name across parallel workers (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"zdtp:{name}")


lock_name = _lock_name


async def inspect_target(conn: asyncpg.Connection, source: TableInfo, target: TableName) -> TargetPlan:
    """Read-only check: does the target exist, and can it take the rows? Changes nothing."""
    existing = await read_table(conn, target)
    if existing is None:
        fmt: CopyFormat = "binary" if all(c.builtin for c in source.copied) else "text"
        columns = tuple(c.name for c in source.copied)
        return TargetPlan(source=source, target=target, exists=False, copy_format=fmt, columns=columns)
    fmt, columns = copy_plan(source, existing)
    return TargetPlan(source=source, target=target, exists=True, copy_format=fmt, columns=columns)


async def ensure_target_table_async(
    conn: asyncpg.Connection,
    source: TableInfo,
    target: TableName,
    *,
    shape: TableShape,
    with_keys: bool = True,
    on_create: Callable[[], Awaitable[None]] | None = None,
) -> TargetPlan:
    """Create the target (schema, types, sequences, table, partitions) when missing, else check
    it; safe with parallel workers. ``with_keys=False`` leaves keys for after the bulk load;
    ``on_create`` runs in the creating transaction (to record who created the table)."""
    async with conn.transaction():
        await _lock_name(conn, str(target))
        plan = await inspect_target(conn, source, target)
        if not plan.exists:
            await target_ddl.check_creatable(conn, shape, target=target)
            await target_ddl.create_table(conn, shape, target=target, with_keys=with_keys)
            if on_create is not None:
                await on_create()
            plan = await inspect_target(conn, source, target)
    return plan


def _head(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` within ``max_bytes`` UTF-8 bytes (identifiers are bytes)."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def staging_name(target: TableName, run_id: str) -> TableName:
    """A per-run staging table next to the target (same schema, so the swap is a rename)."""
    digest = hashlib.sha256(f"{target}/{run_id}".encode()).hexdigest()[:10]
    return TableName(schema=target.schema_, name=f"{_head(target.name, 40)}__zdtp_{digest}")


async def ensure_staging_table(
    conn: asyncpg.Connection, source: TableInfo, target: TableName, staging: TableName, *, shape: TableShape
) -> TargetPlan:
    """Create the staging table shaped like the existing target (or like the source if none)."""
    async with conn.transaction():
        await _lock_name(conn, str(staging))
        if await read_table(conn, staging) is None:
            if await read_table(conn, target) is not None:
                await conn.execute(
                    f"CREATE TABLE {staging.qualified} (LIKE {target.qualified} INCLUDING ALL)"
                )
            else:
                await target_ddl.check_creatable(conn, shape, target=staging)
                await target_ddl.create_table(conn, shape, target=staging, with_keys=True)
    existing = await read_table(conn, staging)
    assert existing is not None
    fmt, columns = copy_plan(source, existing)
    return TargetPlan(source=source, target=staging, exists=True, copy_format=fmt, columns=columns)


async def drop_table(conn: asyncpg.Connection, table: TableName) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {table.qualified}")


# The other side of ``table``'s plain-inheritance links (never partitions), in the source order.
_INHERITS_SQL = """
SELECT i.{other}::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.{side} = $1::regclass AND NOT c.relispartition ORDER BY i.inhseqno, 1
"""


async def swap_in(conn: asyncpg.Connection, *, staging: TableName, target: TableName) -> None:
    """Replace ``target`` by ``staging``; call inside a transaction so readers see old or new only.

    Readers blocked on the ACCESS EXCLUSIVE lock re-resolve the name after commit and read the
    new table: they never see it empty or half-filled.
    """
    await conn.execute(f"LOCK TABLE {staging.qualified} IN ACCESS EXCLUSIVE MODE")
    pkey = await conn.fetchval(
        "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'",
        staging.qualified,
    )
    parents: list[str] = []
    children: list[str] = []
    if await read_table(conn, target) is not None:
        await conn.execute(f"LOCK TABLE {target.qualified} IN ACCESS EXCLUSIVE MODE")
        # Inheritance links of the old table (not partitions: a partitioned target is swapped
        # whole): DROP TABLE would refuse while children inherit from it, and the new table would
        # lose its own parents. Unlinked here, made again on the new table in the same transaction.
        parents = [
            r[0]
            for r in await conn.fetch(
                _INHERITS_SQL.format(side="inhrelid", other="inhparent"), target.qualified
            )
        ]
        children = [
            r[0]
            for r in await conn.fetch(
                _INHERITS_SQL.format(side="inhparent", other="inhrelid"), target.qualified
            )
        ]
        for child in children:
            await conn.execute(f"ALTER TABLE {child} NO INHERIT {target.qualified}")
        await conn.execute(f"DROP TABLE {target.qualified}")
    await conn.execute(f"ALTER TABLE {staging.qualified} RENAME TO {ident(target.name)}")
    for parent in parents:
        await conn.execute(f"ALTER TABLE {target.qualified} INHERIT {parent}")
    for child in children:
        await conn.execute(f"ALTER TABLE {child} INHERIT {target.qualified}")
    wanted = f"{_head(target.name, 58)}_pkey"
    if pkey and pkey != wanted:
        taken = await conn.fetchval(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2",
            target.schema_,
            wanted,
        )
        if not taken:
            await conn.execute(
                f"ALTER TABLE {target.qualified} RENAME CONSTRAINT {ident(pkey)} TO {ident(wanted)}"
            )


__all__ = [
    "CopyFormat",
    "TargetPlan",
    "check_compatible",
    "copy_plan",
    "drop_table",
    "ensure_staging_table",
    "ensure_target_table_async",
    "inspect_target",
    "staging_name",
    "swap_in",
]
