"""The Redis backend: a work queue in a Redis server (layout and scripts: :mod:`.redis_layout`),
for runs whose target should carry no queue table.

Not transactional with the target: ``hold`` fences the chunk with a transaction-scoped advisory
lock on the item in the target session (a second holder waits for the first transaction, then
finds the chunk checkpoint and skips), and the item is marked done by ``settle`` after the chunk
committed. A crash between the commit and ``settle`` leaves a leased item whose checkpoint says
done: the next claimant marks it done without copying it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis import exceptions as rx

from zdtp_worker.contract.errors import ConfigError, TemporaryError
from zdtp_worker.credentials import redact
from zdtp_worker.queue import redis_layout as lay
from zdtp_worker.queue.base import Item, QueueStatus


@contextmanager
def _redis_errors(what: str) -> Iterator[None]:
    """Redis failures as worker errors: a refused login is configuration (78), the rest is
    temporary (75: the Job retries the pod, leases bring its item back)."""
    try:
        yield
    except (rx.AuthenticationError, rx.AuthorizationError) as exc:
        raise ConfigError(f"redis queue: {what}: {redact(str(exc))}") from None
    except rx.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise ConfigError(f"redis queue: {what}: {redact(str(exc))}") from None
        raise TemporaryError(f"redis queue: {what}: {redact(str(exc))}") from None
    except (rx.RedisError, OSError) as exc:
        raise TemporaryError(f"redis queue: {what}: {redact(str(exc))}") from None


class RedisQueueBackend:
    transactional = False

    def __init__(self, client: aioredis.Redis, *, fence: asyncpg.Connection | None = None) -> None:
        self.client = client
        self._fence = fence  # the target session the chunk transactions run in
        self._completed: list[Item] = []

    @classmethod
    async def open(cls, url: str, *, fence: asyncpg.Connection | None = None) -> RedisQueueBackend:
        client = aioredis.from_url(url, decode_responses=True, socket_connect_timeout=10)
        with _redis_errors("connect"):
            await client.ping()
        return cls(client, fence=fence)

    async def _eval(self, script: str, keys: list[str], *args: Any, what: str) -> Any:
        with _redis_errors(what):
            return await self.client.eval(script, len(keys), *keys, *args)

    async def bootstrap(self) -> None:
        return None  # nothing to create: keys appear with their first item

    async def enqueue(self, queue: str, items: list[tuple[str, dict[str, Any]]]) -> int:
        keys = lay.keys(queue, "seq", "keys", "names", "payload", "ready")
        added = 0
        for start in range(0, len(items), lay.BATCH):
            args = [
                a for key, payload in items[start : start + lay.BATCH] for a in (key, json.dumps(payload))
            ]
            added += int(await self._eval(lay.ENQUEUE, keys, *args, what=f"enqueue into {queue}"))
        return added

    async def claim(self, queue: str, *, owner: str, lease_seconds: float) -> Item | None:
        keys = lay.keys(queue, "ready", "leased", "owner", "attempts", "payload")
        got = await self._eval(lay.CLAIM, keys, owner, int(lease_seconds * 1000), what=f"claim from {queue}")
        if not got:
            return None
        item_id, payload, attempts = got
        return Item(queue, int(item_id), json.loads(payload), int(attempts))

    async def hold(self, item: Item, *, owner: str) -> bool:
        if self._fence is not None:
            # Held until the chunk transaction ends: a second holder of this item waits here.
            await self._fence.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"zdtp:queue:{item.queue}:{item.item_id}",
            )
        keys = lay.keys(item.queue, "leased", "owner", "done")
        return bool(await self._eval(lay.HOLD, keys, item.item_id, owner, what=f"hold item {item.item_id}"))

    async def complete(self, item: Item) -> None:
        self._completed.append(item)

    async def settle(self) -> None:
        done, self._completed = self._completed, []
        for item in done:
            keys = lay.keys(item.queue, "done", "leased", "ready")
            await self._eval(lay.DONE, keys, item.item_id, what=f"mark item {item.item_id} done")

    def forget(self) -> None:
        self._completed = []

    async def open_items(self, queue: str) -> tuple[int, float | None]:
        keys = lay.keys(queue, "payload", "done", "leased")
        left, wait_ms = await self._eval(lay.OPEN, keys, what=f"count items of {queue}")
        return int(left), (None if wait_ms is None else int(wait_ms) / 1000)

    async def status(self, queue: str) -> QueueStatus:
        keys = lay.keys(queue, "names", "done", "leased", "owner", "attempts")
        return lay.parse_status(queue, await self._eval(lay.STATUS, keys, what=f"read status of {queue}"))

    async def close(self) -> None:
        await self.client.aclose()
