"""Embeddings port: text in, unit-length float vectors out, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


class EmbeddingError(RuntimeError):
    """The embedding backend failed or answered something unusable."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of a fixed size; one model id names one vector space."""

    @property
    def model_id(self) -> str:
        """Identifies the vector space: vectors of different model ids never mix."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of every vector this embedder returns."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; batching is the adapter's business."""
        ...

    async def ping(self) -> None:
        """Raise if the embedder cannot embed right now (model missing, server down)."""
        ...
