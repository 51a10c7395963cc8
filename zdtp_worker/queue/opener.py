"""Open the work queue a spec names: PostgreSQL in the target session, or Redis at a URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdtp_worker.contract.errors import ConfigError
from zdtp_worker.queue.base import BACKENDS, Backend, QueueBackend

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


__all__ = ["open_queue"]
