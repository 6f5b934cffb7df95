"""The knowledge engines of a process, as one typed bundle built by the composition root."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vocalis.ports.embeddings import Embedder
from vocalis.ports.vector_store import VectorStore

# Tokens per text, counted the way the embedding model counts them.
TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass(frozen=True)
class KnowledgeEngines:
    """What ingestion and retrieval need: a (cached) embedder, a token counter, a store."""

    embedder: Embedder
    count_tokens: TokenCounter
    vector_store: VectorStore
