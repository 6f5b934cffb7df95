"""Rate-limit leases (issue 11), in real Redis: a large bucket is spent from a per-process
lease of tokens, one script call per lease instead of one per request; leases never admit
more than the bucket holds across processes; small buckets keep one exact call per request;
and the failed-authentication throttle still refuses an address while a lease is held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.api.conftest import Api, make_settings, start_api
from vocalis.core.auth_throttle import AuthThrottle
from vocalis.core.ratelimit import (
    LEASE_LIFETIME_MS,
    MAX_LEASE,
    BucketLimits,
    GuardTripped,
    RateLimiter,
    lease_size,
)

BIG = BucketLimits(per_minute=60_000_000, burst=1_000_000)  # leases of MAX_LEASE tokens


class Counted:
    """Counts a limiter's script calls (its Redis round trips)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.calls = 0
        self._script = limiter._script
        limiter._script = self  # type: ignore[assignment]

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        return await self._script(**kwargs)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def test_the_lease_size_follows_the_buckets_limits() -> None:
    assert lease_size(BucketLimits(600, 100)) == 1  # the key's default: exact
    assert lease_size(BucketLimits(1200, 200)) == 2  # the `reads` default
    assert lease_size(BucketLimits(60, 20)) == 1
    assert lease_size(BucketLimits(1, 1_000_000)) == 1  # slow refill: exact
    assert lease_size(BucketLimits(60_000_000, 30)) == 1  # small burst: exact
    assert lease_size(BucketLimits(60_000, 400)) == 20
    assert lease_size(BIG) == MAX_LEASE


async def test_a_large_bucket_takes_one_redis_call_per_lease(
    redis_client: aioredis.Redis,
) -> None:
    limiter = RateLimiter(
        redis_client, per_minute=BIG.per_minute, burst=BIG.burst, classes={"reads": BIG}
    )
    counted = Counted(limiter)
    now = 3_000_000
    decisions = [await limiter.hit("big", now_ms=now) for _ in range(5 * MAX_LEASE)]
    assert all(d.allowed for d in decisions)
    assert counted.calls == 5
    # Remaining: Redis's at lease time plus what is left of the lease (exact in one process).
    assert [d.remaining for d in decisions[:3]] == [BIG.burst - 1, BIG.burst - 2, BIG.burst - 3]
    assert decisions[-1].remaining == BIG.burst - 5 * MAX_LEASE
    assert decisions[0].headers()["RateLimit-Limit"] == str(BIG.burst)

    # Concurrent requests wait for the one refill in flight rather than each calling Redis.
    counted.calls = 0
    concurrent = await asyncio.gather(
        *(limiter.hit("big", now_ms=now, rate_class="reads") for _ in range(2 * MAX_LEASE))
    )
    assert all(d.allowed for d in concurrent)
    assert counted.calls == 2
    await limiter.hit("big", now_ms=now, rate_class="reads")
    assert counted.calls == 3


async def test_an_expired_lease_is_dropped_never_spent(redis_client: aioredis.Redis) -> None:
    limiter = RateLimiter(redis_client, per_minute=BIG.per_minute, burst=BIG.burst)
    counted = Counted(limiter)
    now = 4_000_000
    assert (await limiter.hit("exp", now_ms=now)).allowed
    assert (await limiter.hit("exp", now_ms=now + LEASE_LIFETIME_MS - 1)).allowed
    assert counted.calls == 1
    assert (await limiter.hit("exp", now_ms=now + LEASE_LIFETIME_MS)).allowed
    assert counted.calls == 2  # a new lease; the old one's 998 tokens are gone
    # A clock that went back does not spend a lease taken "later" either.
    assert (await limiter.hit("exp", now_ms=now)).allowed
    assert counted.calls == 3


async def test_small_buckets_keep_one_exact_call_per_request(
    redis_client: aioredis.Redis,
) -> None:
    limiter = RateLimiter(
        redis_client, per_minute=600, burst=100, classes={"reads": BucketLimits(1200, 200)}
    )
    counted = Counted(limiter)
    now = 5_000_000
    decisions = [await limiter.hit("small", now_ms=now, rate_class="reads") for _ in range(101)]
    assert counted.calls == 101
    assert [d.remaining for d in decisions[:3]] == [99, 98, 97]
    assert [d.allowed for d in decisions] == [True] * 100 + [False]
    assert decisions[-1].retry_after_s == 1


async def test_two_processes_never_admit_more_than_the_bucket(redis_url: str) -> None:
    """Two limiters (two processes' worth of state) on one Redis, concurrently: no refill
    (a fixed clock), so together they admit at most the bucket, less at most what is left
    in their leases."""
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    limits = BucketLimits(per_minute=60_000, burst=400)  # leases of 20
    limiters = [
        RateLimiter(c, per_minute=limits.per_minute, burst=limits.burst, classes={"reads": limits})
        for c in clients
    ]
    counters = [Counted(lim) for lim in limiters]
    decisions = await asyncio.gather(
        *(
            lim.hit("shared", now_ms=7_000, rate_class="reads")
            for _ in range(300)
            for lim in limiters
        )
    )
    admitted = sum(d.allowed for d in decisions)
    assert limits.burst - 2 * lease_size(limits) < admitted <= limits.burst
    assert sum(c.calls for c in counters) < len(decisions) / 4
    for c in clients:
        await c.aclose()


async def test_two_processes_stay_within_the_refill_over_time(redis_url: str) -> None:
    """With the real clock, for half a second: admitted <= burst + refill over that time."""
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    limits = BucketLimits(per_minute=60_000, burst=400)  # 1000 a second, leases of 20
    limiters = [RateLimiter(c, per_minute=limits.per_minute, burst=limits.burst) for c in clients]
    admitted = 0
    start = time.time()
    deadline = time.monotonic() + 0.5

    async def hammer(limiter: RateLimiter) -> None:
        nonlocal admitted
        while time.monotonic() < deadline:
            decision = await limiter.hit("timed")
            admitted += decision.allowed

    await asyncio.gather(*(hammer(lim) for lim in limiters for _ in range(3)))
    elapsed = time.time() - start
    assert admitted <= limits.burst + limits.per_minute / 60 * elapsed + 1
    assert admitted > limits.burst  # the leases did admit (and refill) meanwhile
    for c in clients:
        await c.aclose()


async def test_a_throttled_address_is_refused_while_a_lease_is_held(redis_url: str) -> None:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    limiter = RateLimiter(clients[0], per_minute=BIG.per_minute, burst=BIG.burst)
    here = AuthThrottle(clients[0], limit=3, window_s=60)
    elsewhere = AuthThrottle(clients[1], limit=3, window_s=60)  # another process's
    counted = Counted(limiter)
    now = 8_000_000
    address = "203.0.113.7"
    for _ in range(3):
        assert (await limiter.hit("g", now_ms=now, guard=here.guard(address))).allowed
    assert counted.calls == 1  # the lease, and the address's clearance, from one call

    # Failures counted in this process revoke the address's clearance at once.
    for _ in range(3):
        await here.failed(address)
    with pytest.raises(GuardTripped):
        await limiter.hit("g", now_ms=now, guard=here.guard(address))
    assert limiter._leases[("g", None)].tokens > 0  # the lease is still held
    # Another address spends the lease after one check of its own counter.
    other = here.guard("198.51.100.9")
    assert (await limiter.hit("g", now_ms=now, guard=other)).allowed
    assert (await limiter.hit("g", now_ms=now, guard=other)).allowed
    assert counted.calls == 3

    # Failures counted by another process: refused once the clearance lapses (at most
    # LEASE_LIFETIME_MS), even while this process's lease is still held.
    assert (await limiter.hit("g", now_ms=now, guard=other)).allowed
    for _ in range(3):
        await elsewhere.failed("198.51.100.9")
    with pytest.raises(GuardTripped):
        await limiter.hit("g", now_ms=now + LEASE_LIFETIME_MS, guard=other)
    for c in clients:
        await c.aclose()


@pytest.fixture
async def roomy_throttled_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    """Leased buckets (large limits) and a throttle of 5 failures per address."""
    roomy = {"per_minute": BIG.per_minute, "burst": BIG.burst}
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path}/v.db",
        redis_url,
        rate_limit_per_minute=BIG.per_minute,
        rate_limit_burst=BIG.burst,
        rate_limit_classes={"reads": roomy},
        auth_failure_limit=5,
        auth_failure_window_s=30,
    )
    async for running in start_api(settings):
        yield running


async def test_an_app_refuses_a_throttled_address_while_its_lease_is_held(
    roomy_throttled_api: Api,
) -> None:
    api = roomy_throttled_api
    tenant = await api.tenant()
    limiter: RateLimiter = api.app.state.rate_limiter
    counted = Counted(limiter)

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with client("203.0.113.7") as attacker, client("198.51.100.9") as neighbour:
        first = [await attacker.get("/v1/org", headers=tenant.headers) for _ in range(3)]
        assert [r.status_code for r in first] == [200] * 3
        remaining = [int(r.headers["ratelimit-remaining"]) for r in first]
        # Approximate with a lease (Redis refills this bucket by 1000 tokens a millisecond).
        assert all(BIG.burst - MAX_LEASE <= n <= BIG.burst for n in remaining), remaining
        # The lease; the attacker's address checked once more once the key was cached.
        assert counted.calls <= 2
        for n in range(5):
            wrong = await attacker.get("/v1/org", headers={"Authorization": f"Bearer vk_x{n}"})
            assert wrong.status_code == 401
        # The key is in the principal cache (the neighbour keeps it there) and the lease is
        # held: the throttle is still checked first.
        assert (await neighbour.get("/v1/org", headers=tenant.headers)).status_code == 200
        assert limiter._leases, "no lease held"
        key = tenant.headers["Authorization"].split()[1]
        assert api.app.state.api_keys.cached(key) is not None, "the key is not cached"
        good = await attacker.get("/v1/org", headers=tenant.headers)
        assert good.status_code == 429 and good.json()["code"] == "auth_throttled", good.text
        assert (await neighbour.get("/v1/org", headers=tenant.headers)).status_code == 200
