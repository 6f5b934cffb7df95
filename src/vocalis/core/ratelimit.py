"""Per-key rate limiting: an atomic token bucket in Redis (one Lua script)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from vocalis.core.redis_keys import RATE_LIMIT_BUCKET

# KEYS[1] bucket; ARGV: capacity, refill per ms, now ms, cost, ttl ms.
# Returns {allowed (0/1), tokens left (floor), ms until one token is available}.
_TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = capacity; ts = now end
if now > ts then tokens = math.min(capacity, tokens + (now - ts) * rate); ts = now end
local allowed = 0
if tokens >= cost then tokens = tokens - cost; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], ttl)
local wait = 0
if tokens < cost then wait = math.ceil((cost - tokens) / rate) end
return {allowed, math.floor(tokens), wait}
"""


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one rate-limit check, with the values for the response headers."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        """IETF RateLimit headers (and Retry-After when refused)."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    """Token bucket per API key: `burst` capacity, refilled at `per_minute`."""

    def __init__(self, client: aioredis.Redis, *, per_minute: int, burst: int) -> None:
        self.client = client
        self.capacity = max(1, burst)
        self.rate_per_ms = max(per_minute, 1) / 60_000.0
        self._script = client.register_script(_TOKEN_BUCKET)

    async def hit(self, key_id: str, cost: int = 1, now_ms: int | None = None) -> RateDecision:
        """Take `cost` tokens for `key_id` if available."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        full_ms = math.ceil(self.capacity / self.rate_per_ms)
        allowed, remaining, wait_ms = await self._script(
            keys=[RATE_LIMIT_BUCKET.format(key_id=key_id)],
            args=[self.capacity, repr(self.rate_per_ms), now, cost, 2 * full_ms],
        )
        missing = self.capacity - int(remaining)
        return RateDecision(
            allowed=bool(allowed),
            limit=self.capacity,
            remaining=int(remaining),
            retry_after_s=max(1, math.ceil(int(wait_ms) / 1000)),
            reset_s=math.ceil(missing / self.rate_per_ms / 1000),
        )
