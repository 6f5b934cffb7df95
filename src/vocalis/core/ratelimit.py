"""Per-key rate limiting: atomic token buckets in Redis (one Lua script), by route class.

Every authenticated request takes a token from its API key's bucket (`rate_limit_per_minute`,
`rate_limit_burst`) and one from the bucket of its route's **rate-limit class** for that key
(`rate_limit_classes`); it is refused with 429 when either is empty, and neither is taken
then. A route declares its class with `openapi_extra=rate_limit_class("uploads")`; one that
declares none gets its method's default (`reads` for GET and HEAD, `writes` otherwise).
`apply_rate_limit_classes(app)` writes every route's class into the OpenAPI document
(`x-rate-limit-class`), where the docs and the tests read it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from vocalis.core.redis_keys import RATE_LIMIT_BUCKET, declare

OPENAPI_EXTENSION = "x-rate-limit-class"

# The classes, from the cheapest to the most expensive request; limits are settings.
RATE_LIMIT_CLASSES: dict[str, str] = {
    "reads": "Reading resources: GET and HEAD, and queries that change nothing.",
    "writes": "Creating, changing and deleting resources (the default for other methods).",
    "chat_turns": "Requests that run an agent turn or a speech engine (messages, chat "
    "completions, speech synthesis).",
    "uploads": "Multipart uploads: documents into knowledge bases, audio to transcribe.",
    "realtime_handshakes": "Opening a realtime WebSocket session (`/v1/realtime`, "
    "`/v1/voice/pcm`).",
}
_METHOD_DEFAULTS = {"GET": "reads", "HEAD": "reads", "OPTIONS": "reads"}

RATE_LIMIT_CLASS_BUCKET = declare(
    "rate_limit_class_bucket",
    "vocalis:rl:{key_id}:{rate_class}",
    "Hash `tokens` (float) and `ts` (ms) of one API key's token bucket for one rate-limit class.",
    "Twice the time to refill the bucket from empty.",
)

# KEYS: the buckets, then the guard's counter when there is one; ARGV: now ms, cost, the
# guard's limit (0: no guard), then per bucket: capacity, refill per ms, ttl ms.
# When the guard's counter has reached its limit, nothing is taken and {-1, its ttl} is
# returned. Otherwise takes `cost` from every bucket only if each has it and returns
# {allowed (0/1), then per bucket: tokens left (floor), ms until `cost` tokens are available}.
_TOKEN_BUCKETS = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local guard = tonumber(ARGV[3])
local n = #KEYS
if guard > 0 then
  n = n - 1
  local count = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
  if count >= guard then return {-1, redis.call('TTL', KEYS[#KEYS])} end
end
local tokens = {}
local stamps = {}
local allowed = 1
for i = 1, n do
  local capacity = tonumber(ARGV[3 * i + 1])
  local rate = tonumber(ARGV[3 * i + 2])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local t = tonumber(state[1])
  local ts = tonumber(state[2])
  if t == nil then t = capacity; ts = now end
  if now > ts then t = math.min(capacity, t + (now - ts) * rate); ts = now end
  tokens[i] = t
  stamps[i] = ts
  if t < cost then allowed = 0 end
end
local out = {allowed}
for i = 1, n do
  local rate = tonumber(ARGV[3 * i + 2])
  local ttl = tonumber(ARGV[3 * i + 3])
  if allowed == 1 then tokens[i] = tokens[i] - cost end
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'ts', tostring(stamps[i]))
  redis.call('PEXPIRE', KEYS[i], ttl)
  local wait = 0
  if tokens[i] < cost then wait = math.ceil((cost - tokens[i]) / rate) end
  out[#out + 1] = math.floor(tokens[i])
  out[#out + 1] = wait
end
return out
"""


def rate_limit_class(name: str) -> dict[str, Any]:
    """A route's declaration: `@router.post(..., openapi_extra=rate_limit_class("uploads"))`."""
    if name not in RATE_LIMIT_CLASSES:
        raise ValueError(f"unknown rate-limit class {name!r}; one of {list(RATE_LIMIT_CLASSES)}")
    return {OPENAPI_EXTENSION: name}


def default_class(method: str) -> str:
    """The class of a route that declares none: by its HTTP method."""
    return _METHOD_DEFAULTS.get(method.upper(), "writes")


def route_class(route: Any, method: str) -> str:
    """The rate-limit class of `route` (a FastAPI route) when called with `method`."""
    extra = getattr(route, "openapi_extra", None) or {}
    declared = extra.get(OPENAPI_EXTENSION)
    return str(declared) if declared else default_class(method)


def _routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, inside included routers too (FastAPI keeps those as the router's own)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route


def apply_rate_limit_classes(routes: Iterable[Any]) -> None:
    """Write each route's class into its OpenAPI operation (declared, else the default).

    Call it on the app's routes right after including the routers, before the first
    request or OpenAPI document (FastAPI derives its per-app routes from these then).
    """
    for route in _routes(routes):
        methods = getattr(route, "methods", None)
        if not methods or not hasattr(route, "openapi_extra"):
            continue
        declared = (route.openapi_extra or {}).get(OPENAPI_EXTENSION)
        if declared is not None and declared not in RATE_LIMIT_CLASSES:
            raise ValueError(f"{route.path}: unknown rate-limit class {declared!r}")
        method = sorted(methods)[0]
        route.openapi_extra = {
            **(route.openapi_extra or {}),
            OPENAPI_EXTENSION: declared or default_class(method),
        }


@dataclass(frozen=True)
class BucketLimits:
    """A token bucket's size and refill rate."""

    per_minute: int
    burst: int


def class_limits(
    configured: Mapping[str, Mapping[str, int]], defaults: Mapping[str, Mapping[str, int]]
) -> dict[str, BucketLimits]:
    """Every class's limits: the configured values over the defaults (both from settings)."""
    unknown = sorted(set(configured) - set(RATE_LIMIT_CLASSES))
    if unknown:
        raise ValueError(f"unknown rate-limit classes {unknown}; one of {list(RATE_LIMIT_CLASSES)}")
    limits = {}
    for name in RATE_LIMIT_CLASSES:
        merged = {**defaults.get(name, {}), **configured.get(name, {})}
        limits[name] = BucketLimits(int(merged["per_minute"]), int(merged["burst"]))
    return limits


@dataclass(frozen=True)
class Guard:
    """A counter checked in the same round trip as the buckets (the failed-authentication
    throttle): at `limit` or above, the hit is refused with `GuardTripped` and takes nothing."""

    key: str
    limit: int


class GuardTripped(Exception):
    """The hit's `Guard` counter has reached its limit; `ttl_s` is the counter's TTL."""

    def __init__(self, ttl_s: int) -> None:
        super().__init__(f"guard tripped ({ttl_s} s left)")
        self.ttl_s = ttl_s


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one rate-limit check, with the values for the response headers."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int
    reset_s: int
    wait_ms: int = 0
    rate_class: str | None = None  # the class whose bucket binds; None: the key's own

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
    """Token buckets per API key: the key's own (`burst` capacity, refilled at
    `per_minute`) and, for a request of a rate-limit class, the key's bucket for that class."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        per_minute: int,
        burst: int,
        applies_to: Callable[[str], bool] = lambda org_id: True,
        classes: Mapping[str, BucketLimits] | None = None,
    ) -> None:
        self.client = client
        self.applies_to = applies_to  # whether an organisation's keys are limited (a flag)
        self.limits = BucketLimits(per_minute, burst)
        self.classes = dict(classes or {})
        self._script = client.register_script(_TOKEN_BUCKETS)

    @property
    def capacity(self) -> int:
        """The key's own bucket size."""
        return max(1, self.limits.burst)

    async def hit(
        self,
        key_id: str,
        cost: int = 1,
        now_ms: int | None = None,
        *,
        rate_class: str | None = None,
        guard: Guard | None = None,
    ) -> RateDecision:
        """Take `cost` tokens for `key_id` (and its `rate_class` bucket) if each has them.

        The decision reports the bucket that binds: when refused, the one to wait for
        longest; else the one with the fewest tokens left. With a `guard`, its counter is
        checked first, in the same script: `GuardTripped` when it has reached its limit.
        """
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        buckets = [(RATE_LIMIT_BUCKET.format(key_id=key_id), self.limits)]
        if rate_class is not None:
            if rate_class not in self.classes:
                raise ValueError(f"no limits for rate-limit class {rate_class!r}")
            key = RATE_LIMIT_CLASS_BUCKET.format(key_id=key_id, rate_class=rate_class)
            buckets.append((key, self.classes[rate_class]))
        keys = [k for k, _ in buckets]
        args: list[Any] = [now, cost, 0]
        if guard is not None and guard.limit > 0:
            keys.append(guard.key)
            args[2] = guard.limit
        for _, limits in buckets:
            capacity, rate = _bucket(limits)
            args += [capacity, repr(rate), 2 * math.ceil(capacity / rate)]
        allowed, *state = await self._script(keys=keys, args=args)
        if int(allowed) < 0:
            raise GuardTripped(int(state[0]))
        decisions = []
        for index, (_, limits) in enumerate(buckets):
            capacity, rate = _bucket(limits)
            remaining, wait_ms = int(state[2 * index]), int(state[2 * index + 1])
            decisions.append(
                RateDecision(
                    allowed=bool(allowed),
                    limit=capacity,
                    remaining=remaining,
                    retry_after_s=max(1, math.ceil(wait_ms / 1000)),
                    reset_s=math.ceil((capacity - remaining) / rate / 1000),
                    wait_ms=wait_ms,
                    rate_class=rate_class if index else None,
                )
            )
        if allowed:
            return min(decisions, key=lambda d: (d.remaining, d.rate_class is None))
        return max(decisions, key=lambda d: (d.wait_ms, d.rate_class is not None))


def _bucket(limits: BucketLimits) -> tuple[int, float]:
    """(capacity, tokens per ms) of a bucket."""
    return max(1, limits.burst), max(limits.per_minute, 1) / 60_000.0
