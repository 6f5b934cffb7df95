"""An OpenAI client served by a model chain, in process.

Third-party agent frameworks (the OpenAI Agents SDK, CrewAI) speak OpenAI's chat-completions
API to "a model". To give them the platform's model providers — the agent's endpoints, the
deployment default, registered providers, the fallback chain with its circuit breakers, the
`llm.chat` spans, metrics and cost ledger, and the extractive responder last — their client
is an `AsyncOpenAI` whose HTTP transport answers `POST …/chat/completions` from a
`ChatModel` instead of the network. Nothing leaves the process that the chain would not
send itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from openai import AsyncOpenAI

from vocalis.core.ids import new_id
from vocalis.ports.llm import (
    ChatDelta,
    ChatMessage,
    ChatModel,
    ChatResultBuilder,
    ProviderBadRequest,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
)

BASE_URL = "http://vocalis-model-chain.invalid/v1"  # never resolved: the transport answers


@dataclass
class ChainReport:
    """What the chain did across a run's model calls: usage, provider, model, errors."""

    usage: Usage = field(default_factory=Usage)
    provider: str = ""
    model: str = ""
    calls: int = 0
    error: ProviderError | None = None  # the last provider error, re-raised by the runtime


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))


def from_openai_message(raw: Mapping[str, Any]) -> ChatMessage:
    """One chat-completions message as the port's `ChatMessage`."""
    role = str(raw.get("role", "user"))
    if role == "developer":
        role = "system"
    if role == "tool":
        return ChatMessage(
            "tool", _text(raw.get("content")), tool_call_id=str(raw.get("tool_call_id", ""))
        )
    calls = tuple(
        ToolCall(
            id=str(c.get("id", "")),
            name=str(c.get("function", {}).get("name", "")),
            arguments=str(c.get("function", {}).get("arguments") or "{}"),
        )
        for c in raw.get("tool_calls") or ()
    )
    if role not in ("system", "user", "assistant"):
        role = "user"
    return ChatMessage(role, _text(raw.get("content")), tool_calls=calls)  # type: ignore[arg-type]


def _tool_choice(raw: Any) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping):
        function = raw.get("function") or {}
        return str(function.get("name") or raw.get("name") or "auto")
    return None


def _tools(raw: Any) -> list[ToolSpec]:
    specs = []
    for tool in raw or ():
        function = tool.get("function") or {}
        specs.append(
            ToolSpec(
                name=str(function.get("name", "")),
                description=str(function.get("description") or ""),
                parameters=dict(function.get("parameters") or {"type": "object", "properties": {}}),
            )
        )
    return specs


class ChainTransport(httpx2.AsyncBaseTransport):
    """Answers `POST …/chat/completions` (streamed or not) from a `ChatModel`."""

    def __init__(
        self,
        model: ChatModel,
        report: ChainReport,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.model = model
        self.report = report
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Serve one chat completion."""
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return _error(404, f"{request.method} {request.url.path} is not served here")
        body = json.loads(await request.aread())
        deltas = self.model.stream(
            [from_openai_message(m) for m in body.get("messages") or ()],
            tools=_tools(body.get("tools")),
            tool_choice=_tool_choice(body.get("tool_choice")) if body.get("tools") else None,
            temperature=body.get("temperature", self.temperature),
            max_tokens=body.get("max_tokens") or self.max_tokens,
            timeout=self.timeout,
        )
        self.report.calls += 1
        try:
            first = await anext(aiter(deltas), None)  # a failure before any output: an HTTP error
        except ProviderError as exc:
            self.report.error = exc
            status = 400 if isinstance(exc, ProviderBadRequest) else 503
            return _error(status, exc.detail)
        created = int(time.time())
        completion_id = f"chatcmpl-{new_id('cmp').split('_', 1)[1]}"
        if body.get("stream"):
            chunks = self._sse(first, deltas, completion_id, created)
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=chunks
            )
        builder = ChatResultBuilder()
        try:
            if first is not None:
                builder.add(first)
            async for delta in deltas:
                builder.add(delta)
        except ProviderError as exc:
            self.report.error = exc
            return _error(503, exc.detail)
        result = builder.result()
        self._record(result.usage, result.provider, result.model)
        message: dict[str, Any] = {"role": "assistant", "content": result.content or None}
        if result.tool_calls:
            message["tool_calls"] = [_call(c) for c in result.tool_calls]
        return httpx2.Response(
            200,
            json={
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": result.model or self.model.model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": result.finish_reason}
                ],
                "usage": _usage(result.usage),
            },
        )

    def _record(self, usage: Usage, provider: str, model: str) -> None:
        self.report.usage = self.report.usage + usage
        self.report.provider = provider or self.report.provider
        self.report.model = model or self.report.model

    async def _sse(
        self,
        first: ChatDelta | None,
        deltas: AsyncIterator[ChatDelta],
        completion_id: str,
        created: int,
    ) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.report.model or self.model.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        async def all_deltas() -> AsyncIterator[ChatDelta]:
            if first is not None:
                yield first
            async for delta in deltas:
                yield delta

        yield chunk({"role": "assistant", "content": ""})
        calls = ChatResultBuilder()
        try:
            async for delta in all_deltas():
                calls.add(delta)
                if delta.text:
                    yield chunk({"content": delta.text})
                if delta.tool_call is not None:
                    part = delta.tool_call
                    call: dict[str, Any] = {"index": part.index, "type": "function"}
                    if part.id:
                        call["id"] = part.id
                    call["function"] = {"arguments": part.arguments}
                    if part.name:
                        call["function"]["name"] = part.name
                    yield chunk({"tool_calls": [call]})
        except ProviderError as exc:
            self.report.error = exc
            raise
        result = calls.result()
        self._record(result.usage, result.provider, result.model)
        yield chunk({}, result.finish_reason)
        yield f"data: {json.dumps({'id': completion_id, 'object': 'chat.completion.chunk', 'created': created, 'model': result.model, 'choices': [], 'usage': _usage(result.usage)})}\n\n".encode()
        yield b"data: [DONE]\n\n"


def _call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _error(status: int, message: str) -> httpx2.Response:
    return httpx2.Response(
        status,
        json={"error": {"message": message, "type": "server_error", "param": None, "code": None}},
    )


def chain_client(
    model: ChatModel,
    report: ChainReport,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
) -> AsyncOpenAI:
    """An `AsyncOpenAI` whose chat completions are answered by `model` (no retries: the
    chain already fell back)."""
    transport = ChainTransport(
        model, report, temperature=temperature, max_tokens=max_tokens, timeout=timeout
    )
    return AsyncOpenAI(
        api_key="in-process",
        base_url=BASE_URL,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport, timeout=None),
    )
