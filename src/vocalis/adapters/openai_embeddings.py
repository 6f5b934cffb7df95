"""Embeddings from any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama…)."""

from __future__ import annotations

from collections.abc import Sequence

import openai
from openai import AsyncOpenAI

from vocalis.ports.embeddings import EmbeddingError


class OpenAIEmbedder:
    """The production `Embedder`: batched calls through the official `openai` SDK."""

    def __init__(
        self,
        *,
        model: str,
        dimensions: int,
        api_key: str,
        base_url: str | None = None,
        batch_size: int = 128,
        request_dimensions: bool = False,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        client: AsyncOpenAI | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        # Only models with Matryoshka training (text-embedding-3-*) accept `dimensions`;
        # other servers reject the parameter, so it is opt-in.
        self._request_dimensions = request_dimensions
        self._client = client or AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    @property
    def model_id(self) -> str:
        """The remote model's name: it names the vector space."""
        return self._model

    @property
    def dimensions(self) -> int:
        """The configured vector size; answers of another size are rejected."""
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for `texts`, one request per batch of `batch_size`."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(await self._embed_batch(list(texts[start : start + self._batch_size])))
        return vectors

    async def ping(self) -> None:
        """Embed one word; raises `EmbeddingError` when the endpoint does not answer well."""
        await self.embed(["ping"])

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        try:
            if self._request_dimensions:
                response = await self._client.embeddings.create(
                    model=self._model,
                    input=batch,
                    encoding_format="float",
                    dimensions=self._dimensions,
                )
            else:
                response = await self._client.embeddings.create(
                    model=self._model, input=batch, encoding_format="float"
                )
        except openai.OpenAIError as exc:
            raise EmbeddingError(
                f"embedding request to model {self._model!r} failed: {exc}"
            ) from exc
        # The API promises `index`; order by it rather than trusting the list order.
        items = sorted(response.data, key=lambda item: item.index)
        if len(items) != len(batch):
            raise EmbeddingError(f"asked for {len(batch)} embeddings, got {len(items)}")
        vectors = [list(item.embedding) for item in items]
        for vector in vectors:
            if len(vector) != self._dimensions:
                raise EmbeddingError(
                    f"model {self._model!r} returned {len(vector)} dimensions, "
                    f"configured {self._dimensions}"
                )
        return vectors

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.close()
