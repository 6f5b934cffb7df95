"""The knowledge engines of a process: the embedder and the vector store, built lazily.

Chosen once from the settings (`knowledge_embedder`, `knowledge_vector_store`) and kept
on `backends.extras`, so an API process that never touches knowledge never loads a model.
The ONNX model is loaded once per process and shared by every `Backends` (a Celery worker
has one per thread); the Redis embedding cache, the vector-store connection and the
OpenAI client are per `Backends`, because they belong to one event loop.

Tests may put their own `Embedder` or `VectorStore` under `EMBEDDER_EXTRA` /
`VECTOR_STORE_EXTRA` before the first use.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from vocalis.adapters.cached_embeddings import CachedEmbedder
from vocalis.adapters.onnx_embeddings import OnnxEmbedder
from vocalis.core.backends import Backends
from vocalis.core.errors import BackendUnavailable
from vocalis.core.metrics import EMBEDDING_BATCH_DURATION, EMBEDDING_TEXTS
from vocalis.core.tracing import tracer
from vocalis.knowledge.chunking import TokenCounter
from vocalis.ports.embeddings import Embedder
from vocalis.ports.vector_store import VectorStore
from vocalis.settings import Settings

EMBEDDER_EXTRA = "knowledge.embedder"
TOKEN_COUNTER_EXTRA = "knowledge.token_counter"
VECTOR_STORE_EXTRA = "knowledge.vector_store"
_LOCK_EXTRA = "knowledge.lock"

_onnx_lock = threading.Lock()
_onnx: dict[int, OnnxEmbedder] = {}


def shared_onnx_embedder(batch_size: int) -> OnnxEmbedder:
    """The process-wide ONNX embedder (checksums verified, model loaded on first use)."""
    with _onnx_lock:
        embedder = _onnx.get(batch_size)
        if embedder is None:
            embedder = _onnx[batch_size] = OnnxEmbedder(batch_size=batch_size)
        return embedder


_WORDPIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def approximate_token_counts(texts: Sequence[str]) -> list[int]:
    """Token counts for remote models whose tokenizer we lack: words, punctuation, and
    one more token per 4 characters of long words (sub-word pieces); errs on the high side."""
    counts = []
    for text in texts:
        pieces = _WORDPIECE.findall(text)
        counts.append(sum(1 + max(0, len(p) - 4) // 4 for p in pieces))
    return counts


@dataclass(frozen=True)
class KnowledgeEngines:
    """What ingestion and retrieval need: a (cached) embedder, a token counter, a store."""

    embedder: Embedder
    count_tokens: TokenCounter
    vector_store: VectorStore


async def engines(backends: Backends) -> KnowledgeEngines:
    """The process's knowledge engines, built on first use."""
    extras = backends.extras
    if not (EMBEDDER_EXTRA in extras and VECTOR_STORE_EXTRA in extras):
        lock = extras.setdefault(_LOCK_EXTRA, asyncio.Lock())
        assert isinstance(lock, asyncio.Lock)
        async with lock:
            if EMBEDDER_EXTRA not in extras:
                built, counter = await _build_embedder(backends)
                extras[EMBEDDER_EXTRA] = built
                extras.setdefault(TOKEN_COUNTER_EXTRA, counter)
            if VECTOR_STORE_EXTRA not in extras:
                extras[VECTOR_STORE_EXTRA] = await _build_vector_store(backends, _embedder(extras))
    store = extras[VECTOR_STORE_EXTRA]
    assert isinstance(store, VectorStore)
    count_tokens = extras.get(TOKEN_COUNTER_EXTRA, approximate_token_counts)
    return KnowledgeEngines(_embedder(extras), cast(TokenCounter, count_tokens), store)


def _embedder(extras: dict[str, object]) -> Embedder:
    embedder = extras[EMBEDDER_EXTRA]
    assert isinstance(embedder, Embedder)
    return embedder


async def _build_embedder(backends: Backends) -> tuple[Embedder, TokenCounter]:
    settings = backends.settings
    inner: Any
    if settings.knowledge_embedder == "openai":
        from vocalis.adapters.openai_embeddings import OpenAIEmbedder

        api_key = await backends.secrets.get_optional(settings.knowledge_openai_api_key_secret)
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
    cached = CachedEmbedder(inner, backends.redis, ttl_s=settings.knowledge_embedding_cache_ttl_s)
    return cached, counter


def lancedb_path(settings: Settings) -> Path:
    """Where the embedded vector store lives."""
    if settings.knowledge_lancedb_path:
        return Path(settings.knowledge_lancedb_path)
    return settings.data_dir / "lancedb"


async def _build_vector_store(backends: Backends, embedder: Embedder) -> VectorStore:
    settings = backends.settings
    store: Any
    if settings.knowledge_vector_store == "weaviate":
        from vocalis.adapters.weaviate_vector_store import WeaviateVectorStore, connect_weaviate

        if not settings.knowledge_weaviate_url:
            raise BackendUnavailable(
                "VOCALIS_KNOWLEDGE_VECTOR_STORE is weaviate but VOCALIS_KNOWLEDGE_WEAVIATE_URL "
                "is empty."
            )
        api_key = await backends.secrets.get_optional(settings.knowledge_weaviate_api_key_secret)
        try:
            client = await connect_weaviate(
                settings.knowledge_weaviate_url,
                api_key=api_key,
                grpc_port=settings.knowledge_weaviate_grpc_port,
            )
        except Exception as exc:  # the client raises many types; all mean "not reachable"
            raise BackendUnavailable(f"Weaviate is not reachable: {exc}") from exc
        store = WeaviateVectorStore(
            client,
            dimensions=embedder.dimensions,
            collection_name=settings.knowledge_weaviate_collection,
        )
    else:
        from vocalis.adapters.lancedb_vector_store import LanceDBVectorStore

        store = LanceDBVectorStore(lancedb_path(settings), dimensions=embedder.dimensions)
    await store.ensure_collection()
    return cast(VectorStore, store)


async def close(backends: Backends) -> None:
    """Release the vector-store connection and remote clients built for `backends`."""
    store = backends.extras.pop(VECTOR_STORE_EXTRA, None)
    backends.extras.pop(EMBEDDER_EXTRA, None)
    backends.extras.pop(TOKEN_COUNTER_EXTRA, None)
    if isinstance(store, VectorStore):
        await store.close()


async def ping(backends: Backends) -> None:
    """Raise unless the embedder embeds and the vector store answers (readiness, doctor)."""
    built = await engines(backends)
    await built.embedder.ping()
    await built.vector_store.ping()


async def embed(embedder: Embedder, texts: Sequence[str], *, purpose: str) -> list[list[float]]:
    """Embed one batch inside a `rag.embed` span, timed and counted."""
    with tracer().start_as_current_span("rag.embed") as span:
        span.set_attribute("vocalis.embedding.model", embedder.model_id)
        span.set_attribute("vocalis.embedding.texts", len(texts))
        span.set_attribute("vocalis.embedding.purpose", purpose)
        started = time.perf_counter()
        vectors = await embedder.embed(texts)
        EMBEDDING_BATCH_DURATION.labels(model=embedder.model_id).observe(
            time.perf_counter() - started
        )
        EMBEDDING_TEXTS.labels(model=embedder.model_id, purpose=purpose).inc(len(texts))
        return vectors
