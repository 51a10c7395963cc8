"""Keys after the bulk load: which target tables a run created, and when all of a table is in.

When zdtp creates a target table itself (``copy_mode: resume``), it creates it without its
primary key and unique indexes: COPY into a table without indexes is much faster, and one index
build over the loaded rows beats maintaining it row by row (what pgcopydb does). Two facts make
that safe:

- a table this run created holds only rows of this run's *finished* chunks (a chunk's rows and
  its checkpoint commit together), so a chunk need not delete its key range first — which is
  what would need the index;
- the keys are built exactly once, by whichever worker finishes the *last* part of the table:
  several workers may each copy one key range of it. Each records its finished range here under
  the table's advisory lock; the one that sees the ranges tile the whole key space (open below,
  each upper bound the next lower bound, open above) builds the keys and marks the table final,
  in one transaction. A crash before that commit leaves the table keyless and the retry of that
  worker builds them.

State lives in the target's ``zdtp`` schema next to the chunk checkpoints.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from zdtp_worker.contract.spec import KeyRange
from zdtp_worker.control.row_checksum import covers_all

_DDL = """
CREATE TABLE IF NOT EXISTS zdtp.full_tables (
    run_id text NOT NULL,
    target text NOT NULL,
    finalized boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, target)
);
CREATE TABLE IF NOT EXISTS zdtp.full_parts (
    run_id text NOT NULL,
    target text NOT NULL,
    part text NOT NULL,
    lower jsonb,
    upper jsonb,
    PRIMARY KEY (run_id, target, part)
);
"""


async def bootstrap(conn: asyncpg.Connection) -> None:
    """Create the state tables (the ``zdtp`` schema exists: checkpoints.bootstrap made it)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('zdtp:finalize-bootstrap'))")
        await conn.execute(_DDL)


async def record_created(conn: asyncpg.Connection, *, run_id: str, target: str, keyless: bool = True) -> None:
    """Note that this run created ``target`` (call in the creating transaction); ``keyless``:
    its keys are still to be built. (Tables created with their keys are recorded too: what zdtp
    created it may change later, e.g. to link inheritance — see :mod:`.inherit`.)"""
    await conn.execute(
        "INSERT INTO zdtp.full_tables (run_id, target, finalized) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        run_id,
        target,
        not keyless,
    )


async def pending(conn: asyncpg.Connection, *, run_id: str, target: str) -> bool:
    """True while ``target`` is a table this run created and has not finalized yet."""
    return bool(
        await conn.fetchval(
            "SELECT NOT finalized FROM zdtp.full_tables WHERE run_id = $1 AND target = $2", run_id, target
        )
    )


def _bound(value: Any) -> Any:
    return None if value is None else json.loads(value) if isinstance(value, str) else value


async def finish_part(
    conn: asyncpg.Connection, *, run_id: str, target: str, part: str, key_range: KeyRange | None
) -> bool:
    """Record this worker's range as copied; True when the caller must now build the keys.

    Call inside a transaction holding the table's advisory lock, and build the keys and
    :func:`mark_finalized` in that same transaction.
    """
    lower = key_range.lower if key_range else None
    upper = key_range.upper if key_range else None
    await conn.execute(
        "INSERT INTO zdtp.full_parts (run_id, target, part, lower, upper)"
        " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb) ON CONFLICT DO NOTHING",
        run_id,
        target,
        part,
        None if lower is None else json.dumps(lower),
        None if upper is None else json.dumps(upper),
    )
    if not await pending(conn, run_id=run_id, target=target):
        return False
    rows = await conn.fetch(
        "SELECT lower::text AS lower, upper::text AS upper FROM zdtp.full_parts"
        " WHERE run_id = $1 AND target = $2",
        run_id,
        target,
    )
    return covers_all([(_bound(r["lower"]), _bound(r["upper"])) for r in rows])


async def mark_finalized(conn: asyncpg.Connection, *, run_id: str, target: str) -> None:
    await conn.execute(
        "UPDATE zdtp.full_tables SET finalized = true WHERE run_id = $1 AND target = $2", run_id, target
    )
