"""Per-key rate limiting in real Redis: a token bucket, atomic under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.api.conftest import Api, make_settings, start_api
from vocalis.core.ratelimit import RateLimiter


@pytest.fixture
async def limited_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path}/v.db",
        redis_url,
        rate_limit_burst=5,
        rate_limit_per_minute=60,
    )
    async for running in start_api(settings):
        yield running


async def test_requests_beyond_the_burst_get_429_with_retry_after(limited_api: Api) -> None:
    acme = await limited_api.tenant()
    statuses = [(await limited_api.client.get("/v1/org", headers=acme.headers)) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429]
    refused = statuses[-1]
    assert refused.json()["code"] == "rate_limited"
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-remaining"] == "0"
    assert statuses[0].headers["ratelimit-limit"] == "5"
    assert statuses[0].headers["ratelimit-remaining"] == "4"


async def test_each_key_has_its_own_bucket(limited_api: Api) -> None:
    acme = await limited_api.tenant("Acme")
    globex = await limited_api.tenant("Globex")
    for _ in range(5):
        await limited_api.client.get("/v1/org", headers=acme.headers)
    assert (await limited_api.client.get("/v1/org", headers=acme.headers)).status_code == 429
    assert (await limited_api.client.get("/v1/org", headers=globex.headers)).status_code == 200


async def test_concurrent_requests_never_exceed_the_bucket(limited_api: Api) -> None:
    acme = await limited_api.tenant()
    responses = await asyncio.gather(
        *(limited_api.client.get("/v1/org", headers=acme.headers) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 5 + [429] * 15


async def test_bucket_refills_over_time(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, per_minute=60, burst=2)  # one token per second
    now = 1_000_000
    assert (await limiter.hit("k", now_ms=now)).allowed
    assert (await limiter.hit("k", now_ms=now)).allowed
    refused = await limiter.hit("k", now_ms=now)
    assert not refused.allowed and refused.retry_after_s == 1
    assert (await limiter.hit("k", now_ms=now + 1000)).allowed
    await client.aclose()


async def test_atomic_under_concurrent_redis_clients(redis_url: str) -> None:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(10)]
    limiters = [RateLimiter(c, per_minute=1, burst=25) for c in clients]
    decisions = await asyncio.gather(
        *(lim.hit("shared", now_ms=5_000) for lim in limiters for _ in range(10))
    )
    assert sum(d.allowed for d in decisions) == 25
    for c in clients:
        await c.aclose()
