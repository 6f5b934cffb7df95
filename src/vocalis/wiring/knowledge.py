"""The knowledge engines chosen by the settings: the embedder and the vector store.

Chosen once from `knowledge_embedder` and `knowledge_vector_store`, built on first use
(an API process that never touches knowledge never loads a model). The ONNX model is
loaded once per process and shared by every `Backends` (a Celery worker has one per
thread); the Redis embedding cache, the vector-store connection and the OpenAI client are
per `Backends`, because they belong to one event loop.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis

from vocalis.adapters.cached_embeddings import CachedEmbedder
from vocalis.adapters.onnx_embeddings import OnnxEmbedder
from vocalis.core.errors import BackendUnavailable
from vocalis.knowledge.chunking import approximate_token_counts
from vocalis.ports.embeddings import Embedder
from vocalis.ports.knowledge import KnowledgeEngines, TokenCounter
from vocalis.ports.secrets import SecretProvider
from vocalis.ports.vector_store import VectorStore
from vocalis.settings import Settings

_onnx_lock = threading.Lock()
_onnx: dict[int, OnnxEmbedder] = {}


def shared_onnx_embedder(batch_size: int) -> OnnxEmbedder:
    """The process-wide ONNX embedder (checksums verified, model loaded on first use)."""
    with _onnx_lock:
        embedder = _onnx.get(batch_size)
        if embedder is None:
            embedder = _onnx[batch_size] = OnnxEmbedder(batch_size=batch_size)
        return embedder


def lancedb_path(settings: Settings) -> Path:
    """Where the embedded vector store lives."""
    if settings.knowledge_lancedb_path:
        return Path(settings.knowledge_lancedb_path)
    return settings.data_dir / "lancedb"


async def build_knowledge_engines(
    settings: Settings, secrets: SecretProvider, redis: aioredis.Redis
) -> KnowledgeEngines:
    """The configured embedder (behind the Redis cache) and vector store."""
    embedder, count_tokens = await _build_embedder(settings, secrets, redis)
    store = await _build_vector_store(settings, secrets, embedder)
    return KnowledgeEngines(embedder, count_tokens, store)


async def close_knowledge_engines(engines: KnowledgeEngines) -> None:
    """Release the vector-store connection."""
    await engines.vector_store.close()


async def _build_embedder(
    settings: Settings, secrets: SecretProvider, redis: aioredis.Redis
) -> tuple[Embedder, TokenCounter]:
    inner: Any
    if settings.knowledge_embedder == "openai":
        from vocalis.adapters.openai_embeddings import OpenAIEmbedder

        api_key = await secrets.get_optional(settings.knowledge_openai_api_key_secret)
        inner = OpenAIEmbedder(
            model=settings.knowledge_openai_embedding_model,
            dimensions=settings.knowledge_openai_embedding_dimensions,
            # Local servers (Ollama, vLLM) take any key; the SDK insists on one.
            api_key=api_key or "unused",
            base_url=settings.knowledge_openai_base_url or None,
            batch_size=settings.knowledge_embedding_batch_size,
        )
        counter: TokenCounter = approximate_token_counts
    else:
        onnx = shared_onnx_embedder(settings.knowledge_embedding_batch_size)
        # Verifies the model files' checksums and loads the model off the event loop.
        await asyncio.to_thread(onnx.load)
        inner, counter = onnx, onnx.count_tokens
    cached = CachedEmbedder(inner, redis, ttl_s=settings.knowledge_embedding_cache_ttl_s)
    return cached, counter


async def _build_vector_store(
    settings: Settings, secrets: SecretProvider, embedder: Embedder
) -> VectorStore:
    store: Any
    if settings.knowledge_vector_store == "weaviate":
        store = await _weaviate(settings, secrets, embedder)
    else:
        from vocalis.adapters.lancedb_vector_store import LanceDBVectorStore

        store = LanceDBVectorStore(lancedb_path(settings), dimensions=embedder.dimensions)
    await store.ensure_collection()
    return cast(VectorStore, store)


async def _weaviate(settings: Settings, secrets: SecretProvider, embedder: Embedder) -> Any:
    from vocalis.adapters.weaviate_vector_store import WeaviateVectorStore, connect_weaviate

    if not settings.knowledge_weaviate_url:
        raise BackendUnavailable(
            "VOCALIS_KNOWLEDGE_VECTOR_STORE is weaviate but VOCALIS_KNOWLEDGE_WEAVIATE_URL "
            "is empty."
        )
    api_key = await secrets.get_optional(settings.knowledge_weaviate_api_key_secret)
    try:
        client = await connect_weaviate(
            settings.knowledge_weaviate_url,
            api_key=api_key,
            grpc_port=settings.knowledge_weaviate_grpc_port,
        )
    except Exception as exc:  # the client raises many types; all mean "not reachable"
        raise BackendUnavailable(f"Weaviate is not reachable: {exc}") from exc
    return WeaviateVectorStore(
        client,
        dimensions=embedder.dimensions,
        collection_name=settings.knowledge_weaviate_collection,
    )
