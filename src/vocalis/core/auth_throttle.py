"""Failed authentication, throttled per client address.

Every credential that is refused as invalid, revoked or expired (an API key on a REST
request or a WebSocket handshake, a realtime client secret) counts against the address it
came from, in Redis, so every process sees the same count. Once an address has failed
`VOCALIS_AUTH_FAILURE_LIMIT` times within `VOCALIS_AUTH_FAILURE_WINDOW_S` seconds (the
window opens at its first failure), every request from it that presents a credential is
refused with `429 auth_throttled` (and `Retry-After`) until the window closes — before the
credential is even looked up, so that a good guess cannot be told from a bad one while the
address is throttled. Requests without any credential are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from vocalis.core import errors
from vocalis.core.metrics import AUTH_THROTTLED
from vocalis.core.ratelimit import Guard, GuardClearances
from vocalis.core.redis_keys import declare

log = structlog.get_logger(__name__)

AUTH_THROTTLED_CODE = errors.register(
    "auth_throttled",
    429,
    "Too many failed authentications",
    "Too many invalid, revoked or expired credentials came from this client address "
    "(`VOCALIS_AUTH_FAILURE_LIMIT` within `VOCALIS_AUTH_FAILURE_WINDOW_S`); every "
    "request from it with a credential is refused until `Retry-After` has passed.",
    retryable=True,
)

AUTH_FAILURES_BY_ADDRESS = declare(
    "auth_failures",
    "vocalis:authfail:{address}",
    "Count of failed authentications from one client address in the current window.",
    "`VOCALIS_AUTH_FAILURE_WINDOW_S` from the address's first failure in the window.",
)

# KEYS[1] the counter; ARGV[1] the window in seconds. Returns {count, seconds left}.
_FAIL = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


class AuthThrottled(errors.VocalisError):
    """The client address failed authentication too often."""

    code = AUTH_THROTTLED_CODE


@dataclass
class AuthThrottle:
    """The failed-authentication counter per client address (`limit` 0 = off)."""

    redis: aioredis.Redis
    limit: int
    window_s: int

    def __post_init__(self) -> None:
        self._fail = self.redis.register_script(_FAIL)
        # Addresses a rate limiter's lease may trust as not throttled for a moment; every
        # failure counted here revokes its address's at once (other processes' within
        # `ratelimit.LEASE_LIFETIME_MS`).
        self.clearances = GuardClearances()

    def _key(self, address: str) -> str:
        return AUTH_FAILURES_BY_ADDRESS.format(address=address)

    def guard(self, address: str | None) -> Guard | None:
        """The throttle as a rate limiter's `Guard` (checked in the limiter's round trip);
        None when it is off or the address unknown."""
        if self.limit <= 0 or not address:
            return None
        return Guard(self._key(address), self.limit, self.clearances)

    def tripped(self, ttl_s: int) -> AuthThrottled:
        """The refusal for a tripped guard (counted like `check`'s)."""
        AUTH_THROTTLED.inc()
        return self._throttled(ttl_s)

    async def check(self, address: str | None) -> None:
        """Refuse the request when its address is throttled."""
        if self.limit <= 0 or not address:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self._key(address))
            pipe.ttl(self._key(address))
            count, ttl = await pipe.execute()
        if count is not None and int(count) >= self.limit:
            AUTH_THROTTLED.inc()
            raise self._throttled(int(ttl))

    async def failed(self, address: str | None) -> None:
        """Count one failed authentication from `address`."""
        if self.limit <= 0 or not address:
            return
        self.clearances.revoke(self._key(address))
        count, ttl = await self._fail(keys=[self._key(address)], args=[self.window_s])
        if int(count) == self.limit:
            log.warning("auth_throttle_engaged", client=address, window_s=int(ttl))

    def _throttled(self, ttl: int) -> AuthThrottled:
        retry = max(1, ttl if ttl > 0 else self.window_s)
        return AuthThrottled(
            f"Too many failed authentications from this address; retry in {retry} s.",
            headers={"Retry-After": str(retry)},
        )
