"""The Redis work queue's data layout and Lua scripts, shared by the worker (``redis_queue``,
asyncio) and the Airflow side's status check (``zdtp_worker.control.queue``, sync): no driver here.

Per queue ``Q`` (keys share the hash tag ``{Q}`` so a Redis Cluster keeps them on one slot):
``seq`` (item ids), ``keys`` (dedup key → id), ``names`` (id → dedup key), ``payload`` (id → JSON),
``ready`` (sorted set by id), ``leased`` (sorted set by lease expiry, ms of the server clock),
``owner``/``attempts`` (id → lease owner / times taken), ``done`` (set). Every change is one Lua
script, so it is atomic on the server, and leases use the server's clock, never a worker's.
"""

from __future__ import annotations

from typing import Any

from zdtp_worker.queue.base import OpenItem, QueueStatus

BATCH = 500
NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

# KEYS: seq keys names payload ready · ARGV: key1, payload1, key2, payload2, ...
ENQUEUE = """
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
CLAIM = (
    NOW
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
HOLD = """
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
return 1
"""
# KEYS: done leased ready · ARGV: ids
DONE = """
for i = 1, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
end
return #ARGV
"""
# KEYS: payload done leased · → {not done, ms until the first lease expires or false}
OPEN = (
    NOW
    + """
local left = redis.call('HLEN', KEYS[1]) - redis.call('SCARD', KEYS[2])
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if #first == 0 then return {left, false} end
return {left, tonumber(first[2]) - now}
"""
)
# KEYS: names done leased owner attempts · → {now, names, done, leased, owner, attempts}
STATUS = (
    NOW
    + """
return {now, redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2]),
        redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[4]),
        redis.call('HGETALL', KEYS[5])}
"""
)


def keys(queue: str, *names: str) -> list[str]:
    return [f"zdtp:queue:{{{queue}}}:{n}" for n in names]


def _pairs(flat: list[Any]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def parse_status(queue: str, reply: list[Any]) -> QueueStatus:
    """:data:`STATUS`'s reply as a :class:`QueueStatus` (``abandoned``: lease past the server clock)."""
    now, names, done, leased, owners, attempts = reply
    names, owners, attempts = _pairs(names), _pairs(owners), _pairs(attempts)
    expiry = {k: int(v) for k, v in _pairs(leased).items()}
    done_ids = set(done)
    open_items = []
    for item_id in sorted(set(names) - done_ids, key=int):
        state, owner = "ready", None
        if item_id in expiry:
            state = "abandoned" if expiry[item_id] < int(now) else "leased"
            owner = owners.get(item_id)
        open_items.append(OpenItem(int(item_id), names[item_id], state, owner, int(attempts.get(item_id, 0))))
    return QueueStatus(queue, len(names), len(done_ids), tuple(open_items))
