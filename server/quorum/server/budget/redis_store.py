"""The Redis budget store: one budget shared by every replica.

Each operation is one Lua script, so checking every counter and reserving on all of
them happens atomically on the Redis server; two replicas racing for the last dollar
cannot both get it. Counters are hashes (``spent``, ``reserved``) that expire a while
after their window ends. A reservation is a hash (``state``, ``nonce``, ``amount``,
``counters``) plus an entry in a sorted set of pending reservations scored by when
they are released unless settled: each reserve first releases up to 32 such
reservations, so a replica that died mid-request holds no budget for long.

Every key shares the ``{quorum:budget}`` hash tag, so on Redis Cluster the scripts run
on one node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from quorum.server.budget.ledger import BudgetStoreError, ReserveResult, ReserveStatus

_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 32)
for _, rid in ipairs(expired) do
  local r = redis.call('HMGET', rid, 'state', 'amount', 'counters')
  if r[1] == 'reserved' then
    for c in string.gmatch(r[3], '[^\\n]+') do
      redis.call('HINCRBY', c, 'reserved', -tonumber(r[2]))
    end
    redis.call('HSET', rid, 'state', 'expired')
  end
  redis.call('ZREM', KEYS[2], rid)
end
"""

# KEYS: reservation, pending set, counters...
# ARGV: nonce, amount, hold_ms, allowance per counter..., keep_s per counter...
RESERVE = (
    _SWEEP
    + """
local existing = redis.call('HMGET', KEYS[1], 'state', 'nonce')
if existing[1] == 'reserved' then
  if existing[2] == ARGV[1] then return {1, 0, 0, 0} end
  return {-1, 0, 0, 0}
end
local n = #KEYS - 2
local amount = tonumber(ARGV[2])
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i + 2], 'spent', 'reserved')
  local spent = tonumber(v[1] or '0')
  local reserved = tonumber(v[2] or '0')
  if spent + reserved + amount > tonumber(ARGV[3 + i]) then
    return {0, i - 1, spent, reserved}
  end
end
local names = {}
for i = 1, n do
  local key = KEYS[i + 2]
  redis.call('HINCRBY', key, 'reserved', amount)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[3 + n + i]) end
  names[i] = key
end
local hold = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'reserved', 'nonce', ARGV[1], 'amount', amount,
  'counters', table.concat(names, '\\n'))
redis.call('PEXPIRE', KEYS[1], hold * 2 + 86400000)
redis.call('ZADD', KEYS[2], now + hold, KEYS[1])
return {1, 0, 0, 0}
"""
)

# KEYS: reservation, pending set. ARGV: nonce, actual.
SETTLE = """
local r = redis.call('HMGET', KEYS[1], 'state', 'amount', 'counters', 'nonce')
if not r[1] or r[4] ~= ARGV[1] or r[1] == 'settled' then return 0 end
local actual = tonumber(ARGV[2])
for c in string.gmatch(r[3], '[^\\n]+') do
  if r[1] == 'reserved' then redis.call('HINCRBY', c, 'reserved', -tonumber(r[2])) end
  redis.call('HINCRBY', c, 'spent', actual)
end
redis.call('HSET', KEYS[1], 'state', 'settled', 'actual', actual)
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
"""


class RedisBudgetStore:
    """Counters and reservations in Redis, changed only by Lua scripts."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str = "{quorum:budget}") -> None:
        self._redis = client
        self._pending = f"{key_prefix}:pending"
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)

    async def read(self, keys: Sequence[str]) -> list[tuple[int, int]]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, "spent", "reserved")
                rows: list[list[Any]] = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise BudgetStoreError(f"redis: {exc}") from exc
        return [(int(spent or 0), int(reserved or 0)) for spent, reserved in rows]

    async def reserve(
        self,
        rid: str,
        nonce: str,
        amount: int,
        keys: Sequence[str],
        allowances: Sequence[int],
        keep_s: Sequence[int],
        hold_s: float,
    ) -> ReserveResult:
        args: list[Any] = [nonce, amount, int(hold_s * 1000), *allowances, *keep_s]
        try:
            status, index, spent, reserved = await self._reserve(
                keys=[rid, self._pending, *keys], args=args
            )
        except (RedisError, OSError, TimeoutError) as exc:
            raise BudgetStoreError(f"redis: {exc}") from exc
        if status == 1:
            return ReserveResult(ReserveStatus.OK)
        if status == -1:
            return ReserveResult(ReserveStatus.DUPLICATE)
        return ReserveResult(ReserveStatus.REFUSED, int(index), int(spent), int(reserved))

    async def settle(self, rid: str, nonce: str, actual: int) -> bool:
        try:
            done = await self._settle(keys=[rid, self._pending], args=[nonce, actual])
        except (RedisError, OSError, TimeoutError) as exc:
            raise BudgetStoreError(f"redis: {exc}") from exc
        return bool(done)

    async def close(self) -> None:
        return None  # the client belongs to whoever created it
