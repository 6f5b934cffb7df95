"""Embedding a batch of texts inside a `rag.embed` span, timed and counted."""

from __future__ import annotations

import time
from collections.abc import Sequence

from vocalis.core.metrics import EMBEDDING_BATCH_DURATION, EMBEDDING_TEXTS
from vocalis.core.tracing import tracer
from vocalis.ports.embeddings import Embedder


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
