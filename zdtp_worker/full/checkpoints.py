"""Run state in the target's ``zdtp`` schema: the chunk plan of each (run, table, part) and the
chunks already finished.

A *part* is the key range a planner gave one worker (``""`` = the whole table): several workers
of one run may copy different parts of the same table, each with its own plan and progress.

A chunk's row here is inserted in the same transaction that deletes the chunk's key range and
copies its rows, so "recorded done" and "data present" can never disagree: a rerun with the same
run id skips recorded chunks and redoes at most the one that was interrupted. The plan is stored
on first use so a rerun splits the table exactly as before (the source may have changed since).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from zdtp_worker.contract.spec import KeyRange
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
    checksum numeric,
    worker text NOT NULL,
    seconds real NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, target_table, part, chunk_no)
);
"""


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


async def bootstrap(conn: asyncpg.Connection) -> None:
    """Create the ``zdtp`` schema and state tables once (serialised across parallel workers)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('zdtp:bootstrap'))")
        await conn.execute(_DDL)


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
) -> Plan:
    """Store the plan unless another worker stored one first; return the plan that won."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.full_plans (run_id, target_table, part, source_table, copy_table, chunks) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT DO NOTHING",
        run_id,
        target,
        part,
        source,
        copy_table,
        json.dumps([c.to_json() for c in chunks]),
    )
    plan = await load_plan(conn, run_id, target, part=part)
    assert plan is not None
    return plan


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
        f"SELECT chunk_no, rows, bytes, checksum FROM {SCHEMA}.full_chunks "
        "WHERE run_id = $1 AND target_table = $2 AND part = $3",
        run_id,
        target,
        part,
    )
    return {r["chunk_no"]: DoneChunk(r["rows"], r["bytes"], r["checksum"]) for r in rows}


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
) -> None:
    """Mark a chunk done; call inside the chunk's transaction."""
    await conn.execute(
        f"INSERT INTO {SCHEMA}.full_chunks "
        "(run_id, target_table, part, chunk_no, rows, bytes, checksum, worker, seconds) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        run_id,
        target,
        part,
        chunk_no,
        rows,
        nbytes,
        checksum,
        worker,
        seconds,
    )


async def mark_swapped(conn: asyncpg.Connection, run_id: str, target: str, *, part: str = "") -> None:
    await conn.execute(
        f"UPDATE {SCHEMA}.full_plans SET swapped_at = now() "
        "WHERE run_id = $1 AND target_table = $2 AND part = $3",
        run_id,
        target,
        part,
    )
