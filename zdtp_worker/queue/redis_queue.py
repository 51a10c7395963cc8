"""The Redis backend: a work queue in a Redis server, for runs whose target should carry no
queue table (or many workers hammering one).

Per queue ``Q`` (keys share the hash tag ``{Q}`` so a Redis Cluster keeps them on one slot):
``seq`` (item ids), ``keys`` (dedup key → id), ``names`` (id → dedup key), ``payload`` (id → JSON),
``ready`` (sorted set by id), ``leased`` (sorted set by lease expiry, ms of the server clock),
``owner``/``attempts`` (id → lease owner / times taken), ``done`` (set). Every change is one Lua
script, so it is atomic on the server, and leases use the server's clock, never a worker's.

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
from zdtp_worker.queue.base import Item, OpenItem, QueueStatus

_BATCH = 500
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

# KEYS: seq keys names payload ready · ARGV: key1, payload1, key2, payload2, ...
_ENQUEUE = """
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    local id = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[2], ARGV[i], id)
    redis.call('HSET', KEYS[3], id, ARGV[i])
    redis.call('HSET', KEYS[4], id, ARGV[i + 1])
    redis.call('ZADD', KEYS[5], id, id)
    added = added + 1
  end
end
return added
"""
# KEYS: ready leased owner attempts payload · ARGV: owner, lease ms
_CLAIM = (
    _NOW
    + """
local id
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
if #expired > 0 then
  id = expired[1]
else
  local ready = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #ready == 0 then return false end
  id = ready[1]
  redis.call('ZREM', KEYS[1], id)
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
redis.call('HSET', KEYS[3], id, ARGV[1])
local n = redis.call('HINCRBY', KEYS[4], id, 1)
return {id, redis.call('HGET', KEYS[5], id), n}
"""
)
# KEYS: leased owner done · ARGV: id, owner
_HOLD = """
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
return 1
"""
# KEYS: done leased ready · ARGV: ids
_DONE = """
for i = 1, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
end
return #ARGV
"""
# KEYS: payload done leased · → {not done, ms until the first lease expires or false}
_OPEN = (
    _NOW
    + """
local left = redis.call('HLEN', KEYS[1]) - redis.call('SCARD', KEYS[2])
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if #first == 0 then return {left, false} end
return {left, tonumber(first[2]) - now}
"""
)
# KEYS: names done leased owner attempts · → {now, names, done, leased, owner, attempts}
_STATUS = (
    _NOW
    + """
return {now, redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2]),
        redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[4]),
        redis.call('HGETALL', KEYS[5])}
"""
)


def _keys(queue: str, *names: str) -> list[str]:
    return [f"zdtp:queue:{{{queue}}}:{n}" for n in names]


def _pairs(flat: list[Any]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


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
        keys = _keys(queue, "seq", "keys", "names", "payload", "ready")
        added = 0
        for start in range(0, len(items), _BATCH):
            args = [a for key, payload in items[start : start + _BATCH] for a in (key, json.dumps(payload))]
            added += int(await self._eval(_ENQUEUE, keys, *args, what=f"enqueue into {queue}"))
        return added

    async def claim(self, queue: str, *, owner: str, lease_seconds: float) -> Item | None:
        keys = _keys(queue, "ready", "leased", "owner", "attempts", "payload")
        got = await self._eval(_CLAIM, keys, owner, int(lease_seconds * 1000), what=f"claim from {queue}")
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
        keys = _keys(item.queue, "leased", "owner", "done")
        return bool(await self._eval(_HOLD, keys, item.item_id, owner, what=f"hold item {item.item_id}"))

    async def complete(self, item: Item) -> None:
        self._completed.append(item)

    async def settle(self) -> None:
        done, self._completed = self._completed, []
        for item in done:
            keys = _keys(item.queue, "done", "leased", "ready")
            await self._eval(_DONE, keys, item.item_id, what=f"mark item {item.item_id} done")

    def forget(self) -> None:
        self._completed = []

    async def open_items(self, queue: str) -> tuple[int, float | None]:
        keys = _keys(queue, "payload", "done", "leased")
        left, wait_ms = await self._eval(_OPEN, keys, what=f"count items of {queue}")
        return int(left), (None if wait_ms is None else int(wait_ms) / 1000)

    async def status(self, queue: str) -> QueueStatus:
        keys = _keys(queue, "names", "done", "leased", "owner", "attempts")
        now, names, done, leased, owners, attempts = await self._eval(
            _STATUS, keys, what=f"read status of {queue}"
        )
        names, owners, attempts = _pairs(names), _pairs(owners), _pairs(attempts)
        expiry = {k: int(v) for k, v in _pairs(leased).items()}
        done_ids = set(done)
        open_items = []
        for item_id in sorted(set(names) - done_ids, key=int):
            if item_id in expiry:
                state = "abandoned" if expiry[item_id] < int(now) else "leased"
            else:
                state = "ready"
            open_items.append(
                OpenItem(
                    int(item_id), names[item_id], state, owners.get(item_id), int(attempts.get(item_id, 0))
                )
            )
        return QueueStatus(queue, len(names), len(done_ids), tuple(open_items))

    async def close(self) -> None:
        await self.client.aclose()
