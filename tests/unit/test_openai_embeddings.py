"""The OpenAI-compatible embeddings adapter against a scripted `/v1/embeddings` endpoint.

The `openai` SDK (3.x) speaks HTTP through `httpx2`, so the scripted endpoint is an
`httpx2.MockTransport` handed to the real SDK client.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2
import pytest
from openai import AsyncOpenAI

from vocalis.adapters.openai_embeddings import OpenAIEmbedder
from vocalis.ports.embeddings import Embedder, EmbeddingError

Handler = Callable[[httpx2.Request], httpx2.Response]


def embedder(handler: Handler, *, dimensions: int = 3, **options: object) -> OpenAIEmbedder:
    client = AsyncOpenAI(
        api_key="sk-test",
        base_url="http://embeddings.test/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    return OpenAIEmbedder(
        model="text-embedding-3-small",
        dimensions=dimensions,
        api_key="unused",
        client=client,
        **options,  # type: ignore[arg-type]
    )


class Recorder:
    """Answers each request with vectors derived from the inputs, in reverse order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.headers: list[httpx2.Headers] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), float(i), 1.0]}
            for i, text in enumerate(body["input"])
        ]
        return httpx2.Response(
            200,
            json={
                "object": "list",
                "data": list(reversed(data)),
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )


async def test_it_satisfies_the_port() -> None:
    assert isinstance(embedder(Recorder()), Embedder)


async def test_vectors_come_back_in_input_order_even_if_the_server_reorders() -> None:
    vectors = await embedder(Recorder()).embed(["a", "bbb", "cc"])
    assert vectors == [[1.0, 0.0, 1.0], [3.0, 1.0, 1.0], [2.0, 2.0, 1.0]]


async def test_texts_are_sent_in_batches_of_the_configured_size() -> None:
    recorder = Recorder()
    vectors = await embedder(recorder, batch_size=2).embed(["a", "b", "c", "d", "e"])
    assert [body["input"] for body in recorder.bodies] == [["a", "b"], ["c", "d"], ["e"]]
    assert len(vectors) == 5


async def test_requests_name_the_model_and_carry_the_api_key() -> None:
    recorder = Recorder()
    await embedder(recorder).embed(["x"])
    assert recorder.bodies[0]["model"] == "text-embedding-3-small"
    assert recorder.bodies[0]["encoding_format"] == "float"
    assert "dimensions" not in recorder.bodies[0]
    assert recorder.headers[0]["authorization"] == "Bearer sk-test"


async def test_dimensions_are_requested_only_when_enabled() -> None:
    recorder = Recorder()
    await embedder(recorder, request_dimensions=True).embed(["x"])
    assert recorder.bodies[0]["dimensions"] == 3


async def test_a_vector_of_the_wrong_size_is_an_error() -> None:
    with pytest.raises(EmbeddingError, match="returned 3 dimensions, configured 5"):
        await embedder(Recorder(), dimensions=5).embed(["x"])


async def test_a_server_error_becomes_an_embedding_error() -> None:
    failing = embedder(lambda request: httpx2.Response(503, json={"error": {"message": "busy"}}))
    with pytest.raises(EmbeddingError, match="failed"):
        await failing.embed(["x"])


async def test_no_texts_means_no_request() -> None:
    recorder = Recorder()
    assert await embedder(recorder).embed([]) == []
    assert recorder.bodies == []
