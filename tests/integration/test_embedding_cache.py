"""The Redis embedding cache on the machine's real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from vocalis.adapters.cached_embeddings import (
    DEFAULT_TTL_S,
    EMBEDDING_CACHE_KEY,
    CachedEmbedder,
    cache_key,
    pack_vector,
)
from vocalis.ports.embeddings import Embedder


class CountingEmbedder:
    """A deterministic embedder that records what it was asked to embed."""

    model_id = "test-model"
    dimensions = 3

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(len(t)), 0.5, -1.0] for t in texts]

    async def ping(self) -> None:
        return None


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_it_satisfies_the_port(redis: Redis) -> None:
    assert isinstance(CachedEmbedder(CountingEmbedder(), redis), Embedder)


async def test_second_request_is_served_from_redis(redis: Redis) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, redis)
    first = await cached.embed(["alpha", "beta"])
    second = await cached.embed(["alpha", "beta"])
    assert first == second == [[5.0, 0.5, -1.0], [4.0, 0.5, -1.0]]
    assert inner.calls == [["alpha", "beta"]]
    assert (cached.hits, cached.misses) == (2, 2)


async def test_only_misses_reach_the_model_and_order_is_kept(redis: Redis) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, redis)
    await cached.embed(["b"])
    vectors = await cached.embed(["aaa", "b", "cc", "aaa"])
    assert inner.calls == [["b"], ["aaa", "cc"]]  # duplicates embedded once
    assert [v[0] for v in vectors] == [3.0, 1.0, 2.0, 3.0]


async def test_keys_follow_the_declared_pattern_with_a_ttl(redis: Redis) -> None:
    await CachedEmbedder(CountingEmbedder(), redis, ttl_s=600).embed(["hello"])
    key = cache_key("test-model", "hello")
    assert key.startswith("vocalis:emb:test-model:") and len(key.rsplit(":", 1)[1]) == 64
    assert EMBEDDING_CACHE_KEY.pattern == "vocalis:emb:{model}:{sha256}"
    assert 0 < await redis.ttl(key) <= 600
    assert await redis.get(key) == pack_vector([5.0, 0.5, -1.0])
    assert DEFAULT_TTL_S == 30 * 24 * 3600


async def test_models_do_not_share_cache_entries(redis: Redis) -> None:
    first, second = CountingEmbedder(), CountingEmbedder()
    second.model_id = "other-model"
    await CachedEmbedder(first, redis).embed(["same text"])
    await CachedEmbedder(second, redis).embed(["same text"])
    assert second.calls == [["same text"]]


async def test_a_malformed_cached_value_is_treated_as_a_miss(redis: Redis) -> None:
    await redis.set(cache_key("test-model", "x"), b"garbage")
    inner = CountingEmbedder()
    assert await CachedEmbedder(inner, redis).embed(["x"]) == [[1.0, 0.5, -1.0]]
    assert inner.calls == [["x"]]


async def test_a_redis_outage_falls_back_to_the_model() -> None:
    unreachable = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    inner = CountingEmbedder()
    assert await CachedEmbedder(inner, unreachable).embed(["x"]) == [[1.0, 0.5, -1.0]]
    await unreachable.aclose()


async def test_a_decoding_client_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        CachedEmbedder(CountingEmbedder(), Redis.from_url(redis_url, decode_responses=True))
