"""The work queue: chunks enqueued by a planner, taken by any number of workers.

A table ``zdtp.work_queue`` in the target database. Taking an item is a short transaction that
picks the oldest ready (or lease-expired) item with ``FOR UPDATE SKIP LOCKED`` and stamps a lease
(owner + expiry), so a dead worker's item returns to the queue once its lease runs out. The work
itself then runs in the chunk transaction, which first locks the item row again and checks the
lease is still ours: a worker whose lease was taken over skips the item, and a competing claim
skips the locked row. The item is marked done in that same transaction, together with the data
and the checkpoint, so every chunk is copied and committed exactly once.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from zdtp_worker.queue.base import Item, OpenItem, QueueStatus

SCHEMA = "zdtp"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.work_queue (
    queue text NOT NULL,
    item_id bigserial NOT NULL,
    dedup_key text NOT NULL,
    payload jsonb NOT NULL,
    state text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'leased', 'done')),
    lease_owner text,
    lease_expires timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz,
    PRIMARY KEY (queue, item_id),
    UNIQUE (queue, dedup_key)
);
CREATE INDEX IF NOT EXISTS work_queue_open ON {SCHEMA}.work_queue (queue, item_id) WHERE state <> 'done';
"""


async def bootstrap(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('zdtp:bootstrap'))")
        await conn.execute(_DDL)


async def enqueue(conn: asyncpg.Connection, queue: str, items: list[tuple[str, dict[str, Any]]]) -> int:
    """Add ``(dedup_key, payload)`` items; an item already enqueued under its key is kept as is.

    Returns the number of new items (enqueueing the same plan twice adds nothing).
    """
    added = 0
    async with conn.transaction():
        for key, payload in items:
            status = await conn.execute(
                f"INSERT INTO {SCHEMA}.work_queue (queue, dedup_key, payload) VALUES ($1, $2, $3::jsonb) "
                "ON CONFLICT (queue, dedup_key) DO NOTHING",
                queue,
                key,
                json.dumps(payload),
            )
            added += int(status.rsplit(" ", 1)[-1])
    return added


async def claim(conn: asyncpg.Connection, queue: str, *, owner: str, lease_seconds: float) -> Item | None:
    """Lease the oldest available item, or return ``None`` when nothing is available right now."""
    row = await conn.fetchrow(
        f"""
        UPDATE {SCHEMA}.work_queue q
        SET state = 'leased', lease_owner = $2, lease_expires = now() + make_interval(secs => $3),
            attempts = q.attempts + 1
        WHERE (q.queue, q.item_id) = (
            SELECT queue, item_id FROM {SCHEMA}.work_queue
            WHERE queue = $1 AND (state = 'ready' OR (state = 'leased' AND lease_expires < now()))
            ORDER BY item_id
            FOR UPDATE SKIP LOCKED
            LIMIT 1
        )
        RETURNING q.queue, q.item_id, q.payload, q.attempts
        """,
        queue,
        owner,
        float(lease_seconds),
    )
    if row is None:
        return None
    return Item(row["queue"], row["item_id"], json.loads(row["payload"]), row["attempts"])


async def hold(conn: asyncpg.Connection, item: Item, *, owner: str) -> bool:
    """Inside the work transaction: lock the item; ``False`` if it is done or no longer ours."""
    row = await conn.fetchrow(
        f"SELECT state, lease_owner FROM {SCHEMA}.work_queue WHERE queue = $1 AND item_id = $2 FOR UPDATE",
        item.queue,
        item.item_id,
    )
    return row is not None and row["state"] == "leased" and row["lease_owner"] == owner


async def complete(conn: asyncpg.Connection, item: Item) -> None:
    """Inside the work transaction: mark the item done (commits with the data)."""
    await conn.execute(
        f"UPDATE {SCHEMA}.work_queue SET state = 'done', done_at = now(), lease_expires = NULL "
        "WHERE queue = $1 AND item_id = $2",
        item.queue,
        item.item_id,
    )


async def open_items(conn: asyncpg.Connection, queue: str) -> tuple[int, float | None]:
    """Items not done yet, and seconds until the earliest lease among them expires."""
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, extract(epoch FROM min(lease_expires) - now())::float8 AS wait "
        f"FROM {SCHEMA}.work_queue WHERE queue = $1 AND state <> 'done'",
        queue,
    )
    return int(row["n"]), row["wait"]


async def status(conn: asyncpg.Connection, queue: str) -> QueueStatus:
    """Counts, and every item not done with its state (``abandoned`` = lease expired)."""
    if not await conn.fetchval(f"SELECT to_regclass('{SCHEMA}.work_queue') IS NOT NULL"):
        return QueueStatus(queue, 0, 0, ())
    total, done = await conn.fetchrow(
        f"SELECT count(*), count(*) FILTER (WHERE state = 'done') FROM {SCHEMA}.work_queue WHERE queue = $1",
        queue,
    )
    rows = await conn.fetch(
        f"""
        SELECT item_id, dedup_key, lease_owner, attempts,
               CASE WHEN state = 'leased' AND lease_expires < now() THEN 'abandoned' ELSE state END AS state
        FROM {SCHEMA}.work_queue WHERE queue = $1 AND state <> 'done' ORDER BY item_id
        """,
        queue,
    )
    items = tuple(
        OpenItem(r["item_id"], r["dedup_key"], r["state"], r["lease_owner"], r["attempts"]) for r in rows
    )
    return QueueStatus(queue, int(total), int(done), items)


__all__ = ["Item", "bootstrap", "claim", "complete", "enqueue", "hold", "open_items", "status"]
