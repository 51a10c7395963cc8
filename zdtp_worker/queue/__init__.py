"""Work-queue backends for the queue fan-outs (``queue``: a pod per item, ``queue-drain``: pods
drain the queue until it is empty).

- ``base``         the contract every backend keeps (:class:`~.base.QueueBackend`), items, status
- ``pg_queue``     PostgreSQL: ``zdtp.work_queue`` in the target, done in the chunk's transaction
- ``redis_queue``  Redis: Lua-scripted leases on the server clock, fenced in the target

:func:`open_queue` picks one from the spec's ``full.queue_backend``; the Redis URL (a credential)
comes like a DSN, from ``ZDTP_QUEUE_DSN_FILE`` (a mounted Secret) or ``ZDTP_QUEUE_DSN``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdtp_worker.contract.errors import ConfigError
from zdtp_worker.queue.base import BACKENDS, Backend, Item, OpenItem, QueueBackend, QueueStatus

if TYPE_CHECKING:
    import asyncpg


async def open_queue(
    backend: Backend, *, target: asyncpg.Connection, url: str | None = None, owns_target: bool = False
) -> QueueBackend:
    """The queue of ``backend``. ``target`` is the target session: the PostgreSQL queue lives in
    it, the Redis queue fences chunk transactions in it. ``url`` is needed for Redis."""
    if backend == "postgres":
        from zdtp_worker.queue.pg_queue import PgQueueBackend

        return PgQueueBackend(target, owns_conn=owns_target)
    if backend == "redis":
        from zdtp_worker.queue.redis_queue import RedisQueueBackend

        if not url:
            raise ConfigError(
                "full.queue_backend redis needs the Redis URL (ZDTP_QUEUE_DSN_FILE or ZDTP_QUEUE_DSN)"
            )
        return await RedisQueueBackend.open(url, fence=target)
    raise ConfigError(f"unknown queue backend {backend!r} (one of {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "Item", "OpenItem", "QueueBackend", "QueueStatus", "open_queue"]
