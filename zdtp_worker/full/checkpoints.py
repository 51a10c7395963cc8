"""Run state in the target's ``zdtp`` schema: the chunk plan of each (run, table, part) and the
chunks already finished.

A *part* is the key range a planner gave one worker (``""`` = the whole table): several workers
of one run may copy different parts of the same table, each with its own plan and progress.

A chunk's row here is inserted in the same transaction that deletes the chunk's key range and
copies its rows, so "recorded done" and "data present" can never disagree: a rerun with the same
run id skips recorded chunks and redoes at most the one that was interrupted. The plan is stored
on first use so a rerun splits the table exactly as before (the source may have changed since).

Each chunk row also carries what ``verify`` checks without reading the (live) source again: the
rows the source sent and the target stored, and at ``verify: checksum`` the source checksum taken
under the snapshot that read the chunk and the target checksum taken in the transaction that
wrote it (:mod:`zdtp_worker.control.row_checksum`). The plan keeps the checksum's column list
(with the casts the target side needs) so ``verify`` can re-check a whole table the same way.
``zdtp.verify_log`` keeps each verify's outcome (read by ``zdtp status``).

State schemas made by earlier versions get the new columns on the next bootstrap (added only
when missing: an ``ALTER TABLE`` would otherwise queue behind every running chunk transaction).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from zdtp_worker.contract.spec import KeyRange
from zdtp_worker.control import verify_log
from zdtp_worker.full.chunking import Chunk

SCHEMA = "zdtp"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.full_plans (
    run_id text NOT NULL,
    target_table text NOT NULL,
    part text NOT NULL DEFAULT '',
    source_table text NOT NULL,
    copy_table text NOT NULL,
    chunks jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    swapped_at timestamptz,
    PRIMARY KEY (run_id, target_table, part)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.full_chunks (
    run_id text NOT NULL,
    target_table text NOT NULL,
    part text NOT NULL DEFAULT '',
    chunk_no integer NOT NULL,
    rows bigint NOT NULL,
    bytes bigint NOT NULL,
    checksum numeric,  -- the source checksum (verify: checksum), as before source_checksum existed
    worker text NOT NULL,
    seconds real NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, target_table, part, chunk_no)
);
{verify_log.DDL}"""

# Columns added after the first release: (table, column, type). Nullable: old rows have none.
_ADDED_COLUMNS = (
    ("full_chunks", "source_rows", "bigint"),  # rows the source sent (COPY's count)
    ("full_chunks", "source_checksum", "numeric"),  # under the chunk's source snapshot
    ("full_chunks", "target_checksum", "numeric"),  # in the chunk's target transaction
    ("full_chunks", "verify", "text"),  # the level the chunk was checked at
    ("full_plans", "checksum_columns", "jsonb"),  # [[column, cast or null], ...]
)


@dataclass(frozen=True)
class Plan:
    run_id: str
    target_table: str
    part: str
    source_table: str
    copy_table: str  # where the rows go: the target itself, or a staging table in swap mode
    chunks: list[Chunk]
    swapped: bool


@dataclass(frozen=True)
class DoneChunk:
    rows: int
    bytes: int
    checksum: Decimal | None
    source_rows: int | None = None
    source_checksum: Decimal | None = None
    target_checksum: Decimal | None = None


async def bootstrap(conn: asyncpg.Connection) -> None:
    """Create the ``zdtp`` schema and state tables once (serialised across parallel workers)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('zdtp:bootstrap'))")
        await conn.execute(_DDL)
        present = {
            (r["relname"], r["attname"])
            for r in await conn.fetch(
                "SELECT c.relname::text AS relname, a.attname::text AS attname FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped",
                SCHEMA,
            )
        }
        for table, column, type_sql in _ADDED_COLUMNS:
            if (table, column) not in present:
                await conn.execute(
                    f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN IF NOT EXISTS {column} {type_sql}"
                )


def _plan(row: asyncpg.Record) -> Plan:
    return Plan(
        run_id=row["run_id"],
        target_table=row["target_table"],
        part=row["part"],
        source_table=row["source_table"],
        copy_table=row["copy_table"],
        chunks=[Chunk.from_json(c) for c in json.loads(row["chunks"])],
        swapped=row["swapped_at"] is not None,
    )


def part_key(key_range: KeyRange | None) -> str:
    """Stable identity of a worker's key range within a table (``""`` for the whole table)."""
    if key_range is None:
        return ""
    return json.dumps([key_range.lower, key_range.upper], separators=(",", ":"), default=str)


async def load_plan(conn: asyncpg.Connection, run_id: str, target: str, *, part: str = "") -> Plan | None:
    row = await conn.fetchrow(
        f"SELECT * FROM {SCHEMA}.full_plans WHERE run_id = $1 AND target_table = $2 AND part = $3",
        run_id,
        target,
        part,
    )
    return _plan(row) if row else None


async def save_plan(
    conn: asyncpg.Connection,
    *,
    run_id: str,
    target: str,
    part: str = "",
    source: str,
    copy_table: str,
    chunks: list[Chunk],
    sum_columns: str | None = None,
) -> Plan:
    """Store the plan unless another worker stored one first; return the plan that won.

    ``sum_columns``: the checksum's columns as :func:`zdtp_worker.control.row_checksum.to_json`."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.full_plans "
        "(run_id, target_table, part, source_table, copy_table, chunks, checksum_columns) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) ON CONFLICT DO NOTHING",
        run_id,
        target,
        part,
        source,
        copy_table,
        json.dumps([c.to_json() for c in chunks]),
        sum_columns,
    )
    plan = await load_plan(conn, run_id, target, part=part)
    assert plan is not None
    return plan


async def keep_sum_columns(
    conn: asyncpg.Connection, run_id: str, target: str, *, part: str = "", sum_columns: str
) -> None:
    """Fill in a plan's checksum columns when an earlier version stored it without them."""
    await conn.execute(
        f"UPDATE {SCHEMA}.full_plans SET checksum_columns = $4::jsonb "
        "WHERE run_id = $1 AND target_table = $2 AND part = $3 AND checksum_columns IS NULL",
        run_id,
        target,
        part,
        sum_columns,
    )


async def forget_run(conn: asyncpg.Connection, run_id: str, target: str, *, part: str = "") -> None:
    """``copy_mode: restart``: drop this run's plan and progress for one table part."""
    async with conn.transaction():
        for table in ("full_chunks", "full_plans"):
            await conn.execute(
                f"DELETE FROM {SCHEMA}.{table} WHERE run_id = $1 AND target_table = $2 AND part = $3",
                run_id,
                target,
                part,
            )


async def done_chunks(
    conn: asyncpg.Connection, run_id: str, target: str, *, part: str = ""
) -> dict[int, DoneChunk]:
    rows = await conn.fetch(
        f"SELECT chunk_no, rows, bytes, checksum, source_rows, source_checksum, target_checksum "
        f"FROM {SCHEMA}.full_chunks WHERE run_id = $1 AND target_table = $2 AND part = $3",
        run_id,
        target,
        part,
    )
    return {
        r["chunk_no"]: DoneChunk(
            r["rows"], r["bytes"], r["checksum"], r["source_rows"], r["source_checksum"], r["target_checksum"]
        )
        for r in rows
    }


async def is_done(
    conn: asyncpg.Connection, run_id: str, target: str, chunk_no: int, *, part: str = ""
) -> bool:
    return bool(
        await conn.fetchval(
            f"SELECT 1 FROM {SCHEMA}.full_chunks "
            "WHERE run_id = $1 AND target_table = $2 AND part = $3 AND chunk_no = $4",
            run_id,
            target,
            part,
            chunk_no,
        )
    )


async def record_chunk(
    conn: asyncpg.Connection,
    *,
    run_id: str,
    target: str,
    part: str = "",
    chunk_no: int,
    rows: int,
    nbytes: int,
    checksum: Decimal | None,
    worker: str,
    seconds: float,
    source_rows: int | None = None,
    target_checksum: Decimal | None = None,
    verify: str | None = None,
) -> None:
    """Mark a chunk done; call inside the chunk's transaction. ``rows`` is what the target stored,
    ``checksum`` the source checksum (also kept as ``source_checksum``)."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.full_chunks (run_id, target_table, part, chunk_no, rows, bytes, checksum, "
        "worker, seconds, source_rows, source_checksum, target_checksum, verify) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $7, $11, $12)",
        run_id,
        target,
        part,
        chunk_no,
        rows,
        nbytes,
        checksum,
        worker,
        seconds,
        source_rows,
        target_checksum,
        verify,
    )


async def mark_swapped(conn: asyncpg.Connection, run_id: str, target: str, *, part: str = "") -> None:
    await conn.execute(
        f"UPDATE {SCHEMA}.full_plans SET swapped_at = now() "
        "WHERE run_id = $1 AND target_table = $2 AND part = $3",
        run_id,
        target,
        part,
    )
