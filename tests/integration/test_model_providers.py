"""Model providers end to end: the deployment default, an organisation's provider with its
encrypted key (a real llama.cpp server started with `--api_key`), the SSRF guard on every
request (redirects re-checked), and the key never shown in a response, an error or a log."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.agents_api.harness import AgentApi, start_agent_api
from tests.api.conftest import make_settings
from tests.fixtures.llama_server import (
    MODEL_ALIAS,
    _free_port,
    llama_server_url,  # noqa: F401
    smollm2_model_path,
)
from vocalis.adapters.openai_chat import OpenAIChatModel
from vocalis.agents.model_providers import ModelProvider
from vocalis.core.ssrf import guarded_client2
from vocalis.ports.llm import ChatEndpoint, ChatMessage, ProviderError

LLAMA_KEY = "sk-llama-test-4f2b9c1d8e7a6f5b"  # the test server's key, a secret to protect


@pytest.fixture(scope="module")
def keyed_llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second llama.cpp server that answers only requests bearing `LLAMA_KEY`."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-keyed") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smollm2_model_path()),
        "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "2048",
        "--n_threads", str(min(2, os.cpu_count() or 1)),
        "--api_key", LLAMA_KEY,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        headers = {"Authorization": f"Bearer {LLAMA_KEY}"}
        for _ in range(360):
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/models", headers=headers, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.25)
        else:
            pytest.fail(f"llama.cpp server not ready:\n{log.read_text()[-3000:]}")
        assert httpx.get(f"{url}/models", timeout=5).status_code == 401  # the key is needed
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _api(tmp_path: Path, redis_url: str, **overrides: Any) -> AsyncIterator[AgentApi]:
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(tmp_path, url, redis_url, **overrides)
    async for api in start_agent_api(settings):
        yield api


@pytest.fixture
async def allowlisted_api(tmp_path: Path, redis_url: str) -> AsyncIterator[AgentApi]:
    """The app (SQLite) allowed to reach 127.0.0.1 (the llama.cpp servers)."""
    async for api in _api(tmp_path, redis_url, outbound_allowlist="127.0.0.1"):
        yield api


GENERATION = {"temperature": 0.0, "max_tokens": 24, "timeout_s": 60}


async def test_an_org_provider_answers_with_its_encrypted_key_which_is_never_shown(
    allowlisted_api: AgentApi, keyed_llama_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api = allowlisted_api
    acme = await api.tenant("Acme")
    created = await api.client.post(
        "/v1/model-providers",
        json={
            "name": "our-llama",
            "kind": "openai_compatible",
            "base_url": keyed_llama_url,
            "api_key": LLAMA_KEY,
            "models": [MODEL_ALIAS],
        },
        headers=acme.headers,
    )
    assert created.status_code == 201, created.text
    provider = created.json()
    assert provider["id"].startswith("mpr_")
    assert provider["has_api_key"] is True
    assert provider["api_key_last4"] == LLAMA_KEY[-4:]
    assert "api_key" not in provider
    async with api.backends.database.session() as session:
        row = await session.scalar(select(ModelProvider).where(ModelProvider.id == provider["id"]))
        assert row is not None and row.api_key_encrypted
        assert LLAMA_KEY not in row.api_key_encrypted  # stored encrypted

    model = {"provider": "openai", "model": MODEL_ALIAS, "provider_id": provider["id"]}
    agent = await api.agent(acme, model=model | GENERATION)
    conversation = await api.conversation(acme, agent["id"])
    reply = await api.say(acme, conversation["id"], "Say hello.")
    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    assert (usage["provider"], usage["model"]) == ("openai", MODEL_ALIAS)  # not the fallback

    # A model the provider does not offer, or another organisation's provider, is refused.
    wrong_model = await api.client.post(
        "/v1/agents",
        json={"name": "x", "model": model | {"model": "gpt-5"}},
        headers=acme.headers,
    )
    assert wrong_model.status_code == 422
    assert wrong_model.json()["code"] == "model_not_offered"
    globex = await api.tenant("Globex")
    foreign = await api.client.post(
        "/v1/agents", json={"name": "x", "model": model}, headers=globex.headers
    )
    assert foreign.status_code == 422
    assert foreign.json()["code"] == "model_provider_not_found"

    # A private URL is refused even with a key in the body, and the key is not echoed.
    refused = await api.client.post(
        "/v1/model-providers",
        json={"name": "internal", "base_url": "http://10.1.2.3:8000/v1", "api_key": LLAMA_KEY},
        headers=acme.headers,
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "outbound_url_forbidden"
    invalid = await api.client.post(
        "/v1/model-providers",
        json={
            "name": "bad",
            "kind": "anthropic",
            "base_url": keyed_llama_url,
            "api_key": LLAMA_KEY,
        },
        headers=acme.headers,
    )
    assert invalid.status_code == 422

    listed = await api.client.get("/v1/model-providers", headers=acme.headers)
    read = await api.client.get(f"/v1/model-providers/{provider['id']}", headers=acme.headers)
    assert [p["id"] for p in listed.json()["data"]] == [provider["id"]]
    assert read.json() == provider
    other = await api.client.get(f"/v1/model-providers/{provider['id']}", headers=globex.headers)
    assert other.status_code == 404

    # A rotated key applies to the next call: a wrong key fails over to the extractive responder.
    patched = await api.client.patch(
        f"/v1/model-providers/{provider['id']}",
        json={"api_key": "sk-wrong-key-000000"},
        headers=acme.headers,
    )
    assert patched.status_code == 200 and patched.json()["api_key_last4"] == "0000"
    rejected = await api.say(acme, conversation["id"], "Say hello again.")
    assert rejected.status_code == 502  # the provider's 401 is a bad request, not retried
    assert rejected.json()["code"] == "llm_request_rejected"

    everything = [created, wrong_model, foreign, refused, invalid, listed, read, reply, rejected]
    assert all(LLAMA_KEY not in r.text for r in everything)
    logged = capsys.readouterr()
    assert LLAMA_KEY not in logged.out + logged.err

    deleted = await api.client.delete(f"/v1/model-providers/{provider['id']}", headers=acme.headers)
    assert deleted.status_code == 204
    gone = await api.client.get(f"/v1/model-providers/{provider['id']}", headers=acme.headers)
    assert gone.status_code == 404


@pytest.fixture
async def default_model_api(
    tmp_path: Path,
    redis_url: str,
    llama_server_url: str,  # noqa: F811
) -> AsyncIterator[AgentApi]:
    """The app with the deployment's default model on the llama.cpp server (no allow-list:
    the operator's URL is trusted)."""
    async for api in _api(
        tmp_path, redis_url, llm_model=MODEL_ALIAS, llm_base_url=llama_server_url
    ):
        yield api


async def test_agents_that_name_no_model_use_the_deployment_default(
    default_model_api: AgentApi,
) -> None:
    api = default_model_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)  # no `model`
    assert agent["model"]["provider"] == "default"
    conversation = await api.conversation(acme, agent["id"])
    reply = await api.say(acme, conversation["id"], "Say hello.")
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["model"] == MODEL_ALIAS

    extractive = await api.agent(acme, model={"provider": "extractive"})
    conversation = await api.conversation(acme, extractive["id"])
    reply = await api.say(acme, conversation["id"], "Hi!")
    assert reply.json()["usage"]["provider"] == "extractive"  # opting out still works


# --- the SSRF guard on every request --------------------------------------------------------
class _Redirector(BaseHTTPRequestHandler):
    target = ""
    seen: list[str]

    def do_POST(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        self.send_response(307)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), handler)
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def test_a_redirect_to_a_forbidden_address_is_refused_on_the_way(
    llama_server_url: str,  # noqa: F811
) -> None:
    """The endpoint is allow-listed; where it redirects (another loopback address) is not."""
    target = _serve(_Redirector, host="127.0.0.2")
    target_url = f"http://127.0.0.2:{target.server_address[1]}"

    class ToTarget(_Redirector):
        pass

    ToTarget.target = target_url
    redirector = _serve(ToTarget)
    try:
        endpoint = ChatEndpoint(
            model=MODEL_ALIAS, base_url=f"http://127.0.0.1:{redirector.server_address[1]}/v1"
        )
        http = guarded_client2(["127.0.0.1/32"], follow_redirects=True)
        model = OpenAIChatModel(endpoint, http_client=http)
        with pytest.raises(ProviderError) as caught:
            await model.complete([ChatMessage("user", "hi")], max_tokens=4)
        assert redirector.seen == ["/v1/chat/completions"]  # type: ignore[attr-defined]
        assert target.seen == []  # type: ignore[attr-defined]  # never reached
        await model.aclose()
        assert type(caught.value).__name__ == "ProviderUnavailable"

        # The same guard lets an allow-listed endpoint through.
        allowed = OpenAIChatModel(
            ChatEndpoint(model=MODEL_ALIAS, base_url=llama_server_url),
            http_client=guarded_client2(["127.0.0.1"]),
        )
        result = await allowed.complete([ChatMessage("user", "hi")], max_tokens=4)
        assert result.model == MODEL_ALIAS
        await allowed.aclose()
        unlisted = OpenAIChatModel(
            ChatEndpoint(model=MODEL_ALIAS, base_url=llama_server_url),
            http_client=guarded_client2([]),
        )
        with pytest.raises(ProviderError):
            await unlisted.complete([ChatMessage("user", "hi")], max_tokens=4)
        await unlisted.aclose()
    finally:
        for server in (redirector, target):
            server.shutdown()
            server.server_close()
