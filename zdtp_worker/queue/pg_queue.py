"""The PostgreSQL backend: the ``zdtp.work_queue`` table in the target (SQL in
:mod:`zdtp_worker.full.queue`).

Transactional: ``hold`` locks the item row inside the chunk transaction and ``complete`` marks it
done there, so the item, the rows and the chunk checkpoint commit together; ``settle`` has
nothing left to do.
"""

from __future__ import annotations

import asyncpg

from zdtp_worker.full import queue as sql
from zdtp_worker.full.postgres import PgWorkQueue
from zdtp_worker.queue.base import QueueStatus


class PgQueueBackend(PgWorkQueue):
    transactional = True

    def __init__(self, conn: asyncpg.Connection, *, owns_conn: bool = False) -> None:
        super().__init__(conn)
        self._owns_conn = owns_conn

    async def settle(self) -> None:
        return None

    def forget(self) -> None:
        return None

    async def status(self, queue: str) -> QueueStatus:
        return await sql.status(self.conn, queue)

    async def close(self) -> None:
        # On the worker's target session the session's owner closes it; an opened one we close.
        if self._owns_conn:
            await self.conn.close()
