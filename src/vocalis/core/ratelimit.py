"""Per-key rate limiting: atomic token buckets in Redis (one Lua script), by route class.

Every authenticated request takes a token from its API key's bucket (`rate_limit_per_minute`,
`rate_limit_burst`) and one from the bucket of its route's **rate-limit class** for that key
(`rate_limit_classes`); it is refused with 429 when either is empty, and neither is taken
then. A route declares its class with `openapi_extra=rate_limit_class("uploads")`; one that
declares none gets its method's default (`reads` for GET and HEAD, `writes` otherwise).
`apply_rate_limit_classes(app)` writes every route's class into the OpenAPI document
(`x-rate-limit-class`), where the docs and the tests read it.

**Leases** (issue 11). A bucket pair whose limits are large takes its tokens from Redis in
leases: one script call takes up to `lease_size` tokens (only tokens the buckets really
have: a partial grant is fine when it covers the request), and the process spends them
itself, without Redis, until they run out or `LEASE_LIFETIME_MS` has passed since they were
taken; what is left then is dropped, never given back. Every admitted request was therefore
paid for in Redis at most `LEASE_LIFETIME_MS` earlier, whatever the number of processes:
leases can under-admit (tokens idle in one process's lease), never over-admit. Buckets
whose `lease_size` is 1 (the defaults, every small limit) take one Redis call per request,
exactly as without leases. A `Guard` (the failed-authentication throttle) is still checked
in Redis in every script call; between calls its "below the limit" answer is trusted for
`LEASE_LIFETIME_MS` at most, only when the guard carries `GuardClearances`, whose owner
revokes it at once when it counts a failure (`AuthThrottle.failed`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
# guard's limit (0: no guard), tokens wanted (>= cost: a lease), then per bucket: capacity,
# refill per ms, ttl ms.
# When the guard's counter has reached its limit, nothing is taken and {-1, its ttl} is
# returned. Otherwise, when every bucket has `cost` tokens, takes from each the tokens wanted
# or as many whole ones as the emptiest has (never fewer than `cost`), else nothing; returns
# {allowed (0/1), tokens taken, then per bucket: tokens left (floor), ms until `cost` tokens
# are available}.
_TOKEN_BUCKETS = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local guard = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local n = #KEYS
if guard > 0 then
  n = n - 1
  local count = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
  if count >= guard then return {-1, redis.call('TTL', KEYS[#KEYS])} end
end
local tokens = {}
local stamps = {}
local allowed = 1
local take = want
for i = 1, n do
  local capacity = tonumber(ARGV[3 * i + 2])
  local rate = tonumber(ARGV[3 * i + 3])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local t = tonumber(state[1])
  local ts = tonumber(state[2])
  if t == nil then t = capacity; ts = now end
  if now > ts then t = math.min(capacity, t + (now - ts) * rate); ts = now end
  tokens[i] = t
  stamps[i] = ts
  if t < cost then allowed = 0 end
  take = math.min(take, math.floor(t))
end
if allowed == 0 then take = 0 end
local out = {allowed, take}
for i = 1, n do
  local rate = tonumber(ARGV[3 * i + 3])
  local ttl = tonumber(ARGV[3 * i + 4])
  if allowed == 1 then tokens[i] = tokens[i] - take end
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'ts', tostring(stamps[i]))
  redis.call('PEXPIRE', KEYS[i], ttl)
  local wait = 0
  if tokens[i] < cost then wait = math.ceil((cost - tokens[i]) / rate) end
  out[#out + 1] = math.floor(tokens[i])
  out[#out + 1] = wait
end
return out
"""

# A lease's lifetime: leased tokens not spent by then are dropped (never given back).
LEASE_LIFETIME_MS = 500
MAX_LEASE = 1000  # tokens one script call may lease


def lease_size(limits: BucketLimits) -> int:
    """How many tokens a process leases from this bucket at once: a twentieth of its
    capacity, at most what it refills in 100 ms, 1 to `MAX_LEASE` (1: no lease, one Redis
    call per request — every bucket refilled at less than 1200/min or holding under 40)."""
    return max(1, min(max(1, limits.burst) // 20, max(limits.per_minute, 1) // 600, MAX_LEASE))


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


class GuardClearances:
    """Until when (in the limiter's ms) each guard's counter was last seen below its limit
    in Redis: a leasing limiter skips re-checking a cleared guard until then (at most
    `LEASE_LIFETIME_MS`). The guard's owner calls `revoke(key)` whenever it raises the
    counter; an answer that a script call brought back across a revocation is not kept."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self.epoch = 0  # raised by every revocation
        self._until: dict[str, int] = {}

    def cleared(self, key: str, now_ms: int) -> bool:
        """Whether `key`'s counter was seen below its limit recently enough."""
        until = self._until.get(key)
        return until is not None and until - LEASE_LIFETIME_MS <= now_ms < until

    def note(self, key: str, now_ms: int, epoch: int) -> None:
        """`key`'s counter was below its limit at `now_ms`, in a check begun at `epoch`."""
        if epoch != self.epoch:
            return
        if len(self._until) >= self.max_entries:
            self._until.clear()
        self._until[key] = now_ms + LEASE_LIFETIME_MS

    def revoke(self, key: str) -> None:
        """`key`'s counter is being raised: check it in Redis again from now on."""
        self.epoch += 1
        self._until.pop(key, None)


@dataclass(frozen=True)
class Guard:
    """A counter checked in the same round trip as the buckets (the failed-authentication
    throttle): at `limit` or above, the hit is refused with `GuardTripped` and takes nothing.
    With `clearances`, a leasing limiter may trust a "below the limit" answer for up to
    `LEASE_LIFETIME_MS` (see `GuardClearances`); without, every hit checks it in Redis."""

    key: str
    limit: int
    clearances: GuardClearances | None = field(default=None, compare=False)


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


class _Lease:
    """Tokens this process took from a bucket pair in Redis and spends itself."""

    __slots__ = ("expires_ms", "remaining", "taken_ms", "tokens")

    def __init__(self, tokens: int, taken_ms: int, remaining: list[int]) -> None:
        self.tokens = tokens
        self.taken_ms = taken_ms
        self.expires_ms = taken_ms + LEASE_LIFETIME_MS
        self.remaining = remaining  # per bucket: what Redis had left once the lease was taken

    def usable(self, now_ms: int, cost: int) -> bool:
        return self.tokens >= cost and self.taken_ms <= now_ms < self.expires_ms


class _Refill:
    """A lease refill in flight: the requests that wait for it, and its refusal if any."""

    __slots__ = ("cost", "done", "guard_key", "refused")

    def __init__(self, cost: int, guard_key: str | None) -> None:
        self.cost = cost
        self.guard_key = guard_key
        self.done = asyncio.Event()
        self.refused: RateDecision | None = None


class _Pair:
    """A bucket pair's fixed numbers: the key's bucket and, for a class, the class's."""

    __slots__ = ("args", "capacities", "lease", "rate_class", "rates")

    def __init__(self, rate_class: str | None, limits: list[BucketLimits]) -> None:
        self.rate_class = rate_class
        self.capacities = [max(1, b.burst) for b in limits]
        self.rates = [max(b.per_minute, 1) / 60_000.0 for b in limits]
        self.args: list[Any] = []
        for capacity, rate in zip(self.capacities, self.rates, strict=True):
            self.args += [capacity, repr(rate), 2 * math.ceil(capacity / rate)]
        self.lease = min(lease_size(b) for b in limits)

    def leased(self, lease: _Lease) -> RateDecision:
        """The decision of a request spent from `lease`: each bucket's remaining is Redis's
        when the lease was taken (or its guard last checked) plus the lease's tokens left,
        at most the capacity (approximate: other processes spend and Redis refills meanwhile)."""
        left = [
            min(c, r + lease.tokens) for c, r in zip(self.capacities, lease.remaining, strict=True)
        ]
        return self.decision(True, left, [0] * len(left))

    def decision(self, allowed: bool, remaining: list[int], waits: list[int]) -> RateDecision:
        """The decision of the bucket that binds: when refused, the one to wait for longest;
        else the one with the fewest tokens left (the key's own on a tie)."""
        if allowed:
            index = min(range(len(remaining)), key=lambda i: (remaining[i], i == 0))
        else:
            index = max(range(len(waits)), key=lambda i: (waits[i], i > 0))
        capacity, rate = self.capacities[index], self.rates[index]
        left, wait_ms = remaining[index], waits[index]
        return RateDecision(
            allowed=allowed,
            limit=capacity,
            remaining=left,
            retry_after_s=max(1, math.ceil(wait_ms / 1000)),
            reset_s=math.ceil((capacity - left) / rate / 1000),
            wait_ms=wait_ms,
            rate_class=self.rate_class if index else None,
        )


class RateLimiter:
    """Token buckets per API key: the key's own (`burst` capacity, refilled at
    `per_minute`) and, for a request of a rate-limit class, the key's bucket for that class;
    large ones leased to this process a few tokens at a time (see the module's doc)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        per_minute: int,
        burst: int,
        applies_to: Callable[[str], bool] = lambda org_id: True,
        classes: Mapping[str, BucketLimits] | None = None,
        max_leases: int = 10_000,
    ) -> None:
        self.client = client
        self.applies_to = applies_to  # whether an organisation's keys are limited (a flag)
        self.limits = BucketLimits(per_minute, burst)
        self.classes = dict(classes or {})
        self.max_leases = max_leases
        self._script = client.register_script(_TOKEN_BUCKETS)
        self._pairs: dict[str | None, _Pair] = {None: _Pair(None, [self.limits])}
        for name, limits in self.classes.items():
            self._pairs[name] = _Pair(name, [self.limits, limits])
        self._leases: dict[tuple[str, str | None], _Lease] = {}
        self._refills: dict[tuple[str, str | None], _Refill] = {}

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
        A large bucket pair is spent from this process's lease while it lasts (the guard
        then re-checked in Redis only once its clearance has lapsed); its `remaining` is
        then Redis's when the lease was taken plus what is left of the lease.
        """
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        pair = self._pairs.get(rate_class)
        if pair is None:
            raise ValueError(f"no limits for rate-limit class {rate_class!r}")
        if guard is not None and guard.limit <= 0:
            guard = None
        if pair.lease <= 1 or not 0 < cost <= pair.lease:
            allowed, _, remaining, waits = await self._call(key_id, pair, now, cost, cost, guard)
            return pair.decision(allowed, remaining, waits)

        slot = (key_id, rate_class)
        while True:
            lease = self._leases.get(slot)
            if lease is not None and lease.usable(now, cost):
                if guard is not None and (
                    guard.clearances is None or not guard.clearances.cleared(guard.key, now)
                ):
                    # Only the guard needs Redis: check it (taking nothing), spend the lease.
                    _, _, remaining, _ = await self._call(key_id, pair, now, 0, 0, guard)
                    lease = self._leases.get(slot)
                    if lease is None or not lease.usable(now, cost):
                        continue
                    lease.remaining = remaining
                lease.tokens -= cost
                return pair.leased(lease)
            # One refill at a time per lease: the others wait for it, then spend from it.
            refill = self._refills.get(slot)
            if refill is None:
                break
            await refill.done.wait()
            refused = refill.refused
            if (
                refused is not None
                and cost >= refill.cost
                and (guard is None or guard.key == refill.guard_key)
            ):
                # The buckets were found empty while this request waited: refused too
                # (its guard, if any, checked in that same call).
                return refused
            if now_ms is None:
                now = int(time.time() * 1000)

        refill = self._refills[slot] = _Refill(cost, guard.key if guard else None)
        try:
            allowed, taken, remaining, waits = await self._call(
                key_id, pair, now, cost, pair.lease, guard
            )
            if not allowed:
                refill.refused = pair.decision(False, remaining, waits)
                return refill.refused
        finally:
            del self._refills[slot]
            refill.done.set()
        if len(self._leases) >= self.max_leases:
            self._leases.clear()
        lease = self._leases[slot] = _Lease(taken - cost, now, remaining)
        return pair.leased(lease)

    async def _call(
        self, key_id: str, pair: _Pair, now: int, cost: int, want: int, guard: Guard | None
    ) -> tuple[bool, int, list[int], list[int]]:
        """One script call: (allowed, tokens taken, per bucket: tokens left, ms to wait)."""
        keys = [RATE_LIMIT_BUCKET.format(key_id=key_id)]
        if pair.rate_class is not None:
            keys.append(RATE_LIMIT_CLASS_BUCKET.format(key_id=key_id, rate_class=pair.rate_class))
        args: list[Any] = [now, cost, 0, want, *pair.args]
        epoch = 0
        if guard is not None:
            keys.append(guard.key)
            args[2] = guard.limit
            if guard.clearances is not None:
                epoch = guard.clearances.epoch
        allowed, taken, *state = await self._script(keys=keys, args=args)
        if int(allowed) < 0:
            raise GuardTripped(int(taken))
        if guard is not None and guard.clearances is not None:
            guard.clearances.note(guard.key, now, epoch)
        return (
            bool(allowed),
            int(taken),
            [int(r) for r in state[::2]],
            [int(w) for w in state[1::2]],
        )
