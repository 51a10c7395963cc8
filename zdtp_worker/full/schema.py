"""The target table: create it from the source's shape, or check that an existing one can take
the source's rows; plus the staging table and the atomic swap behind ``copy_mode: swap``.

Creating copies columns, types, NOT NULLs and the primary key (not defaults, other indexes,
grants or triggers: those belong to whoever owns the target). An existing table is accepted when
every source column exists there with the same type (binary COPY) or a type of the same category
(text COPY: the target parses the source's text form); anything else is a DataError naming the
column. ``ensure_target_table_async`` is also used by the CDC engine for its initial snapshot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import asyncpg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.full.catalog import TableInfo, read_table
from zdtp_worker.pg.quoting import ident

CopyFormat = Literal["binary", "text"]


@dataclass(frozen=True)
class TargetPlan:
    """How rows of one source table land in the target."""

    source: TableInfo
    target: TableName
    exists: bool
    copy_format: CopyFormat


def check_compatible(source: TableInfo, target: TableInfo) -> CopyFormat:
    """Return the COPY format that moves ``source`` rows into ``target`` or raise DataError."""
    where = f"target table {target.name}"
    binary = True
    target_cols = {c.name: c for c in target.columns}
    for col in source.columns:
        tcol = target_cols.get(col.name)
        if tcol is None:
            raise DataError(f"{where}: column {col.name!r} is missing (source type {col.type_sql})")
        if tcol.type_sql == col.type_sql:
            binary = binary and col.builtin
            continue
        if tcol.category != col.category:
            raise DataError(
                f"{where}: column {col.name!r} is {tcol.type_sql}, "
                f"incompatible with source type {col.type_sql}"
            )
        binary = False
    source_names = {c.name for c in source.columns}
    for tcol in target.columns:
        if tcol.name not in source_names and tcol.not_null:
            raise DataError(f"{where}: column {tcol.name!r} is NOT NULL but the source has no such column")
    if source.pk and target.pk and tuple(source.pk) != tuple(target.pk):
        raise DataError(
            f"{where}: primary key ({', '.join(target.pk)}) "
            f"differs from the source's ({', '.join(source.pk)})"
        )
    return "binary" if binary else "text"


def create_table_sql(source: TableInfo, target: TableName) -> str:
    cols = [f"{ident(c.name)} {c.type_sql}{' NOT NULL' if c.not_null else ''}" for c in source.columns]
    if source.pk:
        cols.append(f"PRIMARY KEY ({', '.join(ident(n) for n in source.pk)})")
    return f"CREATE TABLE {target.qualified} ({', '.join(cols)})"


async def _lock_name(conn: asyncpg.Connection, name: str) -> None:
    """Serialise DDL on one name across parallel workers (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"zdtp:{name}")


async def inspect_target(conn: asyncpg.Connection, source: TableInfo, target: TableName) -> TargetPlan:
    """Read-only check: does the target exist, and can it take the rows? Changes nothing."""
    existing = await read_table(conn, target)
    if existing is None:
        fmt: CopyFormat = "binary" if all(c.builtin for c in source.columns) else "text"
        return TargetPlan(source=source, target=target, exists=False, copy_format=fmt)
    return TargetPlan(
        source=source, target=target, exists=True, copy_format=check_compatible(source, existing)
    )


async def ensure_target_table_async(
    conn: asyncpg.Connection, source: TableInfo, target: TableName
) -> TargetPlan:
    """Create the target schema/table when missing, else check it; safe with parallel workers."""
    async with conn.transaction():
        await _lock_name(conn, str(target))
        plan = await inspect_target(conn, source, target)
        if not plan.exists:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(target.schema_)}")
            await conn.execute(create_table_sql(source, target))
            plan = TargetPlan(source=source, target=target, exists=True, copy_format=plan.copy_format)
    return plan


def staging_name(target: TableName, run_id: str) -> TableName:
    """A per-run staging table next to the target (same schema, so the swap is a rename)."""
    digest = hashlib.sha256(f"{target}/{run_id}".encode()).hexdigest()[:10]
    return TableName(schema=target.schema_, name=f"{target.name[:40]}__zdtp_{digest}")


async def ensure_staging_table(
    conn: asyncpg.Connection, source: TableInfo, target: TableName, staging: TableName
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
                await conn.execute(create_table_sql(source, staging))
    existing = await read_table(conn, staging)
    assert existing is not None
    return TargetPlan(
        source=source, target=staging, exists=True, copy_format=check_compatible(source, existing)
    )


async def drop_table(conn: asyncpg.Connection, table: TableName) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {table.qualified}")


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
    if await read_table(conn, target) is not None:
        await conn.execute(f"LOCK TABLE {target.qualified} IN ACCESS EXCLUSIVE MODE")
        await conn.execute(f"DROP TABLE {target.qualified}")
    await conn.execute(f"ALTER TABLE {staging.qualified} RENAME TO {ident(target.name)}")
    wanted = f"{target.name[:58]}_pkey"
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
    "create_table_sql",
    "drop_table",
    "ensure_staging_table",
    "ensure_target_table_async",
    "inspect_target",
    "staging_name",
    "swap_in",
]
