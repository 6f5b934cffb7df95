"""Per-key rate limiting in real Redis: token buckets, atomic under concurrency.

Every request takes a token from its key's bucket and from the key's bucket for its route's
rate-limit class (declared on the route, else its method's default).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.api.conftest import Api, make_settings, start_api
from vocalis.app import create_app
from vocalis.core.ratelimit import (
    OPENAPI_EXTENSION,
    RATE_LIMIT_CLASSES,
    BucketLimits,
    RateLimiter,
    apply_rate_limit_classes,
    class_limits,
    default_class,
    rate_limit_class,
)
from vocalis.settings import Settings


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


# --- rate-limit classes ----------------------------------------------------------------------
@pytest.fixture
async def classed_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    """A roomy key bucket; the `reads` class holds 3 requests, `writes` 2."""
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path}/v.db",
        redis_url,
        rate_limit_burst=100,
        rate_limit_classes={
            "reads": {"per_minute": 1, "burst": 3},
            "writes": {"burst": 2, "per_minute": 1},
        },
    )
    async for running in start_api(settings):
        yield running


async def test_each_route_class_has_its_own_bucket(classed_api: Api) -> None:
    acme = await classed_api.tenant()
    client = classed_api.client
    reads = [await client.get("/v1/org", headers=acme.headers) for _ in range(4)]
    assert [r.status_code for r in reads] == [200, 200, 200, 429]
    assert reads[0].headers["ratelimit-limit"] == "3"  # the class binds, not the key's 100
    assert reads[0].headers["ratelimit-remaining"] == "2"
    refused = reads[-1].json()
    assert refused["code"] == "rate_limited" and "`reads` class" in refused["detail"]
    # Writes have their own bucket: untouched by the reads.
    created = await client.post("/v1/knowledge-bases", json={"name": "kb"}, headers=acme.headers)
    assert created.status_code == 201, created.text
    assert created.headers["ratelimit-limit"] == "2"
    assert created.headers["ratelimit-remaining"] == "1"


async def test_a_routes_declared_class_wins_over_its_methods_default(classed_api: Api) -> None:
    acme = await classed_api.tenant()
    client = classed_api.client
    for _ in range(3):
        assert (await client.get("/v1/org", headers=acme.headers)).status_code == 200
    # POST …/query declares `reads` (a search): the exhausted reads bucket refuses it,
    # before the route even looks for the knowledge base.
    query = await client.post(
        "/v1/knowledge-bases/kb_missing/query", json={"query": "x"}, headers=acme.headers
    )
    assert query.status_code == 429, query.text
    # A POST without a declaration is a write, and writes still have tokens.
    created = await client.post("/v1/knowledge-bases", json={"name": "kb"}, headers=acme.headers)
    assert created.status_code == 201


async def test_a_refused_request_takes_no_token_from_the_other_bucket(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    limiter = RateLimiter(
        client,
        per_minute=1,
        burst=3,
        classes={"uploads": BucketLimits(per_minute=1, burst=1), "reads": BucketLimits(1, 10)},
    )
    now = 2_000_000
    first = await limiter.hit("k2", now_ms=now, rate_class="uploads")
    assert first.allowed and first.rate_class == "uploads" and first.remaining == 0
    refused = await limiter.hit("k2", now_ms=now, rate_class="uploads")
    assert not refused.allowed and refused.rate_class == "uploads"
    assert refused.retry_after_s == 60
    # The key's own bucket lost one token (the first upload), not two.
    after = await limiter.hit("k2", now_ms=now, rate_class="reads")
    assert after.allowed and after.rate_class is None and after.remaining == 1
    assert (await limiter.hit("k2", now_ms=now, rate_class="reads")).allowed
    key_empty = await limiter.hit("k2", now_ms=now, rate_class="reads")
    assert not key_empty.allowed and key_empty.rate_class is None
    with pytest.raises(ValueError, match="no limits"):
        await limiter.hit("k2", rate_class="writes")
    await client.aclose()


async def test_class_buckets_are_atomic_under_concurrent_redis_clients(redis_url: str) -> None:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(5)]
    limiters = [
        RateLimiter(c, per_minute=1, burst=100, classes={"chat_turns": BucketLimits(1, 7)})
        for c in clients
    ]
    decisions = await asyncio.gather(
        *(
            lim.hit("k3", now_ms=9_000, rate_class="chat_turns")
            for lim in limiters
            for _ in range(6)
        )
    )
    assert sum(d.allowed for d in decisions) == 7
    key_bucket = await limiters[0].hit("k3", cost=0, now_ms=9_000)
    assert key_bucket.remaining == 93  # only the allowed requests took the key's tokens
    for c in clients:
        await c.aclose()


def test_every_operation_has_a_known_rate_limit_class() -> None:
    spec = create_app(Settings(env="test")).openapi()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if operation.get(OPENAPI_EXTENSION) not in RATE_LIMIT_CLASSES
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("method", "path", "rate_class"),
    [
        ("post", "/v1/conversations/{conversation_id}/messages", "chat_turns"),
        ("post", "/v1/chat/completions", "chat_turns"),
        ("post", "/v1/audio/speech", "chat_turns"),
        ("post", "/v1/knowledge-bases/{kb_id}/documents", "uploads"),
        ("post", "/v1/audio/transcriptions", "uploads"),
        ("post", "/v1/knowledge-bases/{kb_id}/query", "reads"),
        ("get", "/v1/org", "reads"),
        ("post", "/v1/knowledge-bases", "writes"),
        ("delete", "/v1/knowledge-bases/{kb_id}", "writes"),
    ],
)
def test_expensive_routes_declare_their_class(method: str, path: str, rate_class: str) -> None:
    spec = create_app(Settings(env="test")).openapi()
    assert spec["paths"][path][method][OPENAPI_EXTENSION] == rate_class


def test_an_unknown_class_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="unknown rate-limit class"):
        rate_limit_class("bulk")

    class Route:
        path = "/x"
        methods = {"POST"}
        openapi_extra = {OPENAPI_EXTENSION: "bulk"}

    with pytest.raises(ValueError, match="/x"):
        apply_rate_limit_classes([Route()])
    assert default_class("get") == "reads" and default_class("PATCH") == "writes"


def test_class_limits_come_from_settings_over_the_defaults() -> None:
    defaults = Settings.model_fields["rate_limit_classes"].default
    assert set(defaults) == set(RATE_LIMIT_CLASSES)
    limits = class_limits({"uploads": {"burst": 5}}, defaults)
    assert limits["uploads"] == BucketLimits(defaults["uploads"]["per_minute"], 5)
    assert limits["reads"] == BucketLimits(**defaults["reads"])
    with pytest.raises(ValueError, match="unknown rate-limit classes"):
        class_limits({"bulk": {"burst": 1}}, defaults)


async def test_chat_turns_share_their_own_bucket(tmp_path: Path, redis_url: str) -> None:
    """Messages and chat completions are `chat_turns`: one turn a minute here, while the
    key's reads and writes go on."""
    from tests.agents_api.harness import start_agent_api

    url = f"sqlite+aiosqlite:///{tmp_path}/v.db"
    settings = make_settings(
        tmp_path,
        url,
        redis_url,
        rate_limit_classes={"chat_turns": {"per_minute": 1, "burst": 1}},
    )
    async for api in start_agent_api(settings):
        acme = await api.tenant()
        agent = await api.agent(acme)
        conversation = await api.conversation(acme, agent["id"])
        assert (await api.say(acme, conversation["id"], "Hi")).status_code == 200
        again = await api.say(acme, conversation["id"], "Hi again")
        assert again.status_code == 429 and "`chat_turns` class" in again.json()["detail"]
        completion = await api.client.post(
            "/v1/chat/completions",
            json={"model": agent["id"], "messages": [{"role": "user", "content": "Hi"}]},
            headers=acme.headers,
        )
        assert completion.status_code == 429
        assert (await api.client.get("/v1/org", headers=acme.headers)).status_code == 200
