"""An `Embedder` wrapper that caches vectors in Redis by model id and content hash.

Re-ingesting a document, a new version that shares most of its text, or a repeated query
costs one MGET instead of a model run. Redis trouble never fails an embedding: the cache
is skipped and the inner embedder answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from vocalis.core.redis_keys import declare
from vocalis.ports.embeddings import Embedder

DEFAULT_TTL_S = 30 * 24 * 3600

EMBEDDING_CACHE_KEY = declare(
    "embedding_cache",
    "vocalis:emb:{model}:{sha256}",
    "The embedding of one text by one model: little-endian float32 bytes "
    "(4 x dimensions); `sha256` is the hex SHA-256 of the UTF-8 text.",
    "30 days (`DEFAULT_TTL_S`), set on write; not refreshed on read.",
)

log = structlog.get_logger(__name__)


def cache_key(model_id: str, text: str) -> str:
    """The Redis key of `text` embedded by `model_id`."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return EMBEDDING_CACHE_KEY.format(model=model_id, sha256=digest)


def pack_vector(vector: Sequence[float]) -> bytes:
    """A vector as little-endian float32 bytes."""
    return np.asarray(vector, dtype="<f4").tobytes()


def unpack_vector(data: bytes) -> list[float]:
    """The inverse of `pack_vector`."""
    return [float(x) for x in np.frombuffer(data, dtype="<f4")]


class CachedEmbedder:
    """Wraps an `Embedder`; cache hits skip the model, misses are embedded in one batch."""

    def __init__(self, inner: Embedder, redis: Redis, *, ttl_s: int = DEFAULT_TTL_S) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the embedding cache needs a Redis client without decode_responses")
        self._inner = inner
        self._redis = redis
        self._ttl_s = ttl_s
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        """The inner embedder's model id (the cache is keyed by it)."""
        return self._inner.model_id

    @property
    def dimensions(self) -> int:
        """The inner embedder's vector size."""
        return self._inner.dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for `texts`: cached ones from Redis, the rest from the inner embedder."""
        if not texts:
            return []
        keys = [cache_key(self.model_id, text) for text in texts]
        found = await self._read(keys)
        missing: dict[str, str] = {}  # key -> text, so duplicates are embedded once
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                missing.setdefault(key, text)
        self.hits += len(texts) - sum(1 for key in keys if key not in found)
        self.misses += len(missing)
        if missing:
            fresh = await self._inner.embed(list(missing.values()))
            computed = dict(zip(missing, fresh, strict=True))
            await self._write(computed)
            found.update(computed)
        return [found[key] for key in keys]

    async def ping(self) -> None:
        """Check the inner embedder and Redis."""
        await self._inner.ping()
        await self._redis.ping()

    async def _read(self, keys: list[str]) -> dict[str, list[float]]:
        unique = list(dict.fromkeys(keys))
        try:
            values = await self._redis.mget(unique)
        except RedisError as exc:
            log.warning("embedding_cache.read_failed", error=str(exc))
            return {}
        expected = 4 * self.dimensions
        return {
            key: unpack_vector(value)
            for key, value in zip(unique, values, strict=True)
            if isinstance(value, bytes) and len(value) == expected
        }

    async def _write(self, vectors: dict[str, list[float]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, vector in vectors.items():
                    pipe.set(key, pack_vector(vector), ex=self._ttl_s)
                await pipe.execute()
        except RedisError as exc:
            log.warning("embedding_cache.write_failed", error=str(exc))
