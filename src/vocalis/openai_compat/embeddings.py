"""Route: `POST /v1/embeddings`, OpenAI's embeddings API over the configured embedder.

`model` may be `default`, one of OpenAI's embedding model names (they all map to the
configured embedder, so OpenAI clients work unchanged) or the configured model's own id;
the answer names the model that really embedded. `input` is a string or a list of strings
(token arrays are not supported). `encoding_format` `base64` returns little-endian float32
bytes, what OpenAI SDKs decode. Vectors are unit length; identical texts are served from
the Redis embedding cache.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vocalis.core.deps import BackendsDep
from vocalis.core.errors import NotFound, ValidationFailed, VocalisError
from vocalis.core.security import Principal, Scoped
from vocalis.knowledge import backends as knowledge_backends
from vocalis.ports.embeddings import EmbeddingError

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

# OpenAI's names that mean "the configured embedding model" here.
DEFAULT_MODEL_ALIASES = frozenset(
    {"default", "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"}
)
MAX_INPUTS = 2048  # OpenAI's limit per request

Text = Annotated[str, StringConstraints(min_length=1, max_length=100_000)]


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request (unknown fields are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    input: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
    model: str = Field(min_length=1, max_length=200)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class Embedding(BaseModel):
    """One input's vector (a list of floats, or base64 of little-endian float32)."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Tokens read, counted with the embedding model's tokenizer."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """OpenAI's embeddings response."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def _openai_error(exc: VocalisError, kind: str) -> VocalisError:
    # OpenAI SDKs read `error.message`; problem+json keeps its own fields beside it.
    exc.extra = {
        **exc.extra,
        "error": {"message": exc.detail, "type": kind, "param": None, "code": exc.code},
    }
    return exc


def encode(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as floats, or as base64 of little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


@router.post(
    "/embeddings",
    response_model=EmbeddingList,
    responses={404: {"description": "Unknown embedding model."}},
    summary="Embed texts with the configured embedding model (OpenAI-compatible)",
)
async def create_embeddings(
    body: EmbeddingRequest,
    principal: Annotated[Principal, Scoped("knowledge:read")],
    backends: BackendsDep,
) -> EmbeddingList:
    built = await knowledge_backends.engines(backends)
    embedder = built.embedder
    known = DEFAULT_MODEL_ALIASES | {embedder.model_id}
    if backends.settings.knowledge_embedder == "openai":
        known |= {backends.settings.knowledge_openai_embedding_model}
    if body.model not in known:
        raise _openai_error(
            NotFound(
                f"Unknown embedding model {body.model!r}; use 'default' or {embedder.model_id!r}."
            ),
            "invalid_request_error",
        )
    if body.dimensions is not None and body.dimensions != embedder.dimensions:
        raise _openai_error(
            ValidationFailed(
                f"{embedder.model_id} returns {embedder.dimensions} dimensions; it cannot "
                f"return {body.dimensions}."
            ),
            "invalid_request_error",
        )
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    try:
        vectors = await knowledge_backends.embed(embedder, texts, purpose="api")
    except EmbeddingError as exc:
        raise _openai_error(
            VocalisError(str(exc), code="backend_unavailable"), "server_error"
        ) from exc
    tokens = sum(await asyncio.to_thread(built.count_tokens, texts))
    return EmbeddingList(
        data=[
            Embedding(index=i, embedding=encode(v, body.encoding_format))
            for i, v in enumerate(vectors)
        ],
        model=embedder.model_id,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
