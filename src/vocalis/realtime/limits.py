"""How many realtime sessions may be open at once, per API key and per organisation.

Each open `WS /v1/realtime` session holds a lease in two Redis sorted sets (the key's and
the organisation's), scored by when the lease runs out; an open session renews it every
`RENEW_S`, a closing one removes it, and a lease whose process died simply runs out after
`LEASE_S` (expired members are dropped before every count). Taking a lease is one Lua
script, so two processes cannot both take the last place. A session over either limit
(`VOCALIS_REALTIME_MAX_SESSIONS_PER_KEY`, `VOCALIS_REALTIME_MAX_SESSIONS_PER_ORG`) is
refused at the handshake with `429 realtime_session_limit`, before any conversation is
started. Client secrets count against the key that minted them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import redis.asyncio as aioredis
import structlog

from vocalis.core import errors
from vocalis.core.metrics import REALTIME_SESSIONS_REFUSED
from vocalis.core.redis_keys import declare

log = structlog.get_logger(__name__)

REALTIME_SESSION_LIMIT = errors.register(
    "realtime_session_limit",
    429,
    "Too many realtime sessions",
    "The API key (or the key that minted the client secret) or its organisation already "
    "has as many realtime sessions open as allowed (`VOCALIS_REALTIME_MAX_SESSIONS_PER_KEY`, "
    "`VOCALIS_REALTIME_MAX_SESSIONS_PER_ORG`); close one and retry.",
    retryable=True,
)

KEY_SESSIONS = declare(
    "realtime_key_sessions",
    "vocalis:rt:sessions:key:{key_id}",
    "Sorted set of the connection ids of an API key's open realtime sessions, scored by "
    "when each lease runs out (ms since the epoch).",
    "Renewed while a session is open; a lease not renewed for 60 s is dropped.",
)
ORG_SESSIONS = declare(
    "realtime_org_sessions",
    "vocalis:rt:sessions:org:{org_id}",
    "Sorted set of the connection ids of an organisation's open realtime sessions, scored "
    "by when each lease runs out (ms since the epoch).",
    "Renewed while a session is open; a lease not renewed for 60 s is dropped.",
)

LEASE_S = 60.0
RENEW_S = 20.0

# KEYS: the key's set, the organisation's set. ARGV: now ms, lease end ms, member,
# per-key limit, per-organisation limit (0 = none). Returns 0 (taken), 1 (key), 2 (org).
_ACQUIRE = """
local now = tonumber(ARGV[1])
local until_ms = tonumber(ARGV[2])
local member = ARGV[3]
local per_key = tonumber(ARGV[4])
local per_org = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if per_key > 0 and redis.call('ZCARD', KEYS[1]) >= per_key then return 1 end
if per_org > 0 and redis.call('ZCARD', KEYS[2]) >= per_org then return 2 end
redis.call('ZADD', KEYS[1], until_ms, member)
redis.call('ZADD', KEYS[2], until_ms, member)
local ttl = until_ms - now
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 0
"""
# Renew: the same keys, ARGV: lease end ms, member (only a lease still held is renewed).
_RENEW = """
local ttl = tonumber(ARGV[2])
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], 'XX', ARGV[1], ARGV[3])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 0
"""

Scope = Literal["key", "organisation"]


class SessionLimitReached(errors.VocalisError):
    """Too many realtime sessions are open for the key or the organisation."""

    code = REALTIME_SESSION_LIMIT

    def __init__(self, scope: Scope, limit: int) -> None:
        super().__init__(
            f"This {'API key' if scope == 'key' else 'organisation'} already has {limit} "
            "realtime session(s) open, the most allowed; close one and retry.",
            extra={"scope": scope, "limit": limit},
            headers={"Retry-After": "5"},
        )
        self.scope = scope
        self.limit = limit


class SessionSlots:
    """The per-key and per-organisation counts of open realtime sessions (0 = no limit)."""

    def __init__(self, redis: aioredis.Redis, *, per_key: int, per_org: int) -> None:
        self.redis = redis
        self.per_key = per_key
        self.per_org = per_org
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)

    def _keys(self, org_id: str, key_id: str) -> list[str]:
        return [KEY_SESSIONS.format(key_id=key_id), ORG_SESSIONS.format(org_id=org_id)]

    async def acquire(self, *, org_id: str, key_id: str, member: str) -> None:
        """Take a place for `member` or raise `SessionLimitReached`."""
        now = int(time.time() * 1000)
        outcome = await self._acquire(
            keys=self._keys(org_id, key_id),
            args=[now, now + int(LEASE_S * 1000), member, self.per_key, self.per_org],
        )
        if int(outcome) == 0:
            return
        scope: Scope = "key" if int(outcome) == 1 else "organisation"
        REALTIME_SESSIONS_REFUSED.labels(reason=f"{'key' if scope == 'key' else 'org'}_limit").inc()
        raise SessionLimitReached(scope, self.per_key if scope == "key" else self.per_org)

    async def renew(self, *, org_id: str, key_id: str, member: str) -> None:
        """Push the lease of `member` `LEASE_S` further."""
        lease_ms = int(LEASE_S * 1000)
        until = int(time.time() * 1000) + lease_ms
        await self._renew(keys=self._keys(org_id, key_id), args=[until, lease_ms, member])

    async def release(self, *, org_id: str, key_id: str, member: str) -> None:
        """Give the place of `member` back."""
        key_set, org_set = self._keys(org_id, key_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(key_set, member)
            pipe.zrem(org_set, member)
            await pipe.execute()

    @asynccontextmanager
    async def held(self, *, org_id: str, key_id: str, member: str) -> AsyncIterator[None]:
        """Hold a place (taken already by `acquire`) while the block runs, renewing it."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(RENEW_S)
                try:
                    await self.renew(org_id=org_id, key_id=key_id, member=member)
                except Exception as exc:  # Redis away for a moment: the lease outlives it
                    log.warning("realtime_lease_not_renewed", error=type(exc).__name__)

        renewing = asyncio.create_task(renew(), name=f"realtime-lease-{member}")
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            try:
                await self.release(org_id=org_id, key_id=key_id, member=member)
            except Exception as exc:  # the lease runs out by itself
                log.warning("realtime_lease_not_released", error=type(exc).__name__)
