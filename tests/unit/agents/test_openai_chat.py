"""The OpenAI-compatible provider's error mapping and wire format, against a local server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vocalis.adapters.env_secrets import EnvSecretProvider
from vocalis.adapters.openai_chat import OpenAIChatConfig, OpenAIChatModel
from vocalis.ports.llm import (
    ChatMessage,
    ProviderBadRequest,
    ProviderTimeout,
    ProviderUnavailable,
    ToolSpec,
    collect,
)

REQUESTS: list[dict[str, Any]] = []
QUESTION = [ChatMessage("user", "hi")]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "local-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class _Server(BaseHTTPRequestHandler):
    """Answers by scenario, the path segment after /v1/."""

    def do_POST(self) -> None:
        scenario = self.path.split("/")[2]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        REQUESTS.append({"auth": self.headers.get("Authorization"), "body": body})
        wanted = (body.get("response_format") or {}).get("type")
        if scenario in ("s500", "s429", "s400"):
            self._json(int(scenario[1:]), {"error": {"message": "nope", "type": "x"}})
        elif (scenario == "schema_as_object" and wanted == "json_schema") or (
            scenario == "schema_refused" and wanted
        ):
            # llama-cpp-python: its validation error, answered with a 500
            message = "body.response_format.type: Input should be 'text' or 'json_object'"
            self._json(500, {"error": {"message": message, "type": "internal_server_error"}})
        elif scenario == "hang":
            time.sleep(2)
            self._json(200, {})
        elif scenario == "stream_no_usage":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            chunks = [
                _chunk({"role": "assistant", "content": "Hello"}),
                _chunk({"content": " world"}),
                _chunk({}, "stop"),
            ]
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        else:
            self._json(
                200,
                {
                    "id": "chatcmpl-2",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "local-model",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "fine"},
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                },
            )

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def model(base: str, scenario: str, **config: Any) -> OpenAIChatModel:
    secrets = EnvSecretProvider(environ={"VOCALIS_SECRET_LLM__LOCAL_KEY": "sk-local"})
    return OpenAIChatModel(
        OpenAIChatConfig(
            model="local-model",
            base_url=f"{base}/{scenario}",
            provider="local",
            **config,
        ),
        secrets,
    )


@pytest.fixture(autouse=True)
def _clear() -> None:
    REQUESTS.clear()


@pytest.mark.parametrize("status", ["s500", "s429"])
async def test_server_errors_and_rate_limits_are_unavailable(server_url: str, status: str) -> None:
    with pytest.raises(ProviderUnavailable):
        await model(server_url, status).complete(QUESTION)


async def test_a_4xx_is_a_bad_request(server_url: str) -> None:
    with pytest.raises(ProviderBadRequest):
        await model(server_url, "s400").complete(QUESTION)


async def test_a_slow_server_times_out(server_url: str) -> None:
    with pytest.raises(ProviderTimeout):
        await model(server_url, "hang", timeout_s=0.3).complete(QUESTION)


async def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProviderUnavailable):
        await model(f"http://127.0.0.1:{port}/v1", "x").complete(QUESTION)


async def test_the_api_key_comes_from_the_secrets_port(server_url: str) -> None:
    result = await model(server_url, "ok", api_key_secret="llm/local_key").complete(QUESTION)
    assert (result.content, result.usage.prompt_tokens, result.provider) == ("fine", 3, "local")
    assert REQUESTS[0]["auth"] == "Bearer sk-local"


async def test_a_forced_tool_is_sent_as_a_named_function_choice(server_url: str) -> None:
    spec = ToolSpec("lookup", "Look up", {"type": "object", "properties": {}})
    await model(server_url, "ok").complete(QUESTION, tools=[spec], tool_choice="lookup")
    body = REQUESTS[0]["body"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert body["tools"][0]["function"]["name"] == "lookup"


async def test_a_stream_without_usage_gets_an_estimate(server_url: str) -> None:
    result = await collect(model(server_url, "stream_no_usage").stream(QUESTION))
    assert result.content == "Hello world"
    assert result.usage.estimated and result.usage.completion_tokens > 0
    assert REQUESTS[0]["body"]["stream_options"] == {"include_usage": True}


SCHEMA = {"type": "object", "properties": {"sky": {"type": "string"}}}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}}


async def test_stop_and_a_response_format_are_sent(server_url: str) -> None:
    await model(server_url, "ok").complete(
        QUESTION, stop=["END"], response_format={"type": "json_object"}
    )
    body = REQUESTS[0]["body"]
    assert (body["stop"], body["response_format"]) == (["END"], {"type": "json_object"})


async def test_a_server_that_takes_schemas_only_as_json_object_is_asked_that_way(
    server_url: str,
) -> None:
    chat = model(server_url, "schema_as_object")
    result = await chat.complete(QUESTION, response_format=JSON_SCHEMA)
    assert result.content == "fine"
    asked = [r["body"]["response_format"] for r in REQUESTS]
    assert asked == [JSON_SCHEMA, {"type": "json_object", "schema": SCHEMA}]
    REQUESTS.clear()  # learnt: the next request goes straight to the form it takes
    await collect(chat.stream(QUESTION, response_format=JSON_SCHEMA))
    assert [r["body"]["response_format"] for r in REQUESTS] == [asked[1]]


async def test_a_refused_schema_is_not_retried_forever_nor_remembered(server_url: str) -> None:
    chat = model(server_url, "schema_refused")
    with pytest.raises(ProviderUnavailable):  # the server's first answer (a 500) stands
        await chat.complete(QUESTION, response_format=JSON_SCHEMA)
    assert len(REQUESTS) == 2
    REQUESTS.clear()
    with pytest.raises(ProviderUnavailable):
        await chat.complete(QUESTION, response_format=JSON_SCHEMA)
    assert REQUESTS[0]["body"]["response_format"] == JSON_SCHEMA
