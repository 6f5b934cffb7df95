"""OpenAI-compatible chat provider (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM).

Uses the official `openai` SDK against any `base_url`. The API key is read through the
secrets port on every request (so a rotated key is picked up without a restart); servers
that need no key (local llama.cpp, Ollama) get a placeholder. The SDK's own retries are off:
the fallback chain in `vocalis.agents.providers` decides what happens after a failure.
Organisations' endpoints get an `http_client` that passes every request, redirects
included, through the SSRF guard (`vocalis.core.ssrf`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI

from vocalis.ports.llm import (
    ChatDelta,
    ChatEndpoint,
    ChatMessage,
    ChatResult,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ResponseFormat,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
    estimate_prompt_tokens,
    estimate_tokens,
)
from vocalis.ports.secrets import SecretNotFound, SecretProvider

NO_KEY = "sk-no-key-required"  # the SDK insists on a key; keyless servers ignore it

OpenAIChatConfig = ChatEndpoint  # the port's endpoint description is the adapter's config


class OpenAIChatModel:
    """A `ChatModel` speaking the OpenAI chat-completions protocol."""

    def __init__(
        self,
        config: OpenAIChatConfig,
        secrets: SecretProvider | None = None,
        *,
        client: AsyncOpenAI | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.provider = config.provider
        self.model = config.model
        # One circuit per endpoint: two servers that serve the same model name fail apart.
        self.breaker_key = f"{config.provider}|{config.base_url or 'default'}|{config.model}"
        self._secrets = secrets
        # The server took `json_schema` only as `json_object` + `schema` (learnt on first use).
        self._schema_as_json_object = False
        self._client = client or AsyncOpenAI(
            api_key=self._api_key,
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
            http_client=http_client,
        )

    async def aclose(self) -> None:
        """Close the HTTP connections of the underlying client."""
        await self._client.close()

    async def _api_key(self) -> str:
        if self.config.api_key_secret and self._secrets is not None:
            try:
                return await self._secrets.get(self.config.api_key_secret)
            except SecretNotFound as exc:
                # A misconfigured agent, not an outage: say which secret is missing.
                raise ProviderBadRequest(
                    f"The API key secret {self.config.api_key_secret!r} is not configured."
                ) from exc
        return NO_KEY

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Sequence[str] = (),
        response_format: ResponseFormat | None = None,
    ) -> ChatResult:
        """One non-streamed completion."""
        limit = timeout or self.config.timeout_s
        params = self._params(messages, tools, tool_choice, temperature, max_tokens)
        if stop:
            params["stop"] = list(stop)[:4]  # OpenAI's limit
        if response_format is not None:
            params["response_format"] = self._response_format(response_format)
        try:
            response = await self._create(params, limit)
        except Exception as exc:
            raise self._translate(exc) from exc
        if not response.choices:
            raise ProviderUnavailable(
                "provider answered without choices", provider=self.provider, model=self.model
            )
        choice = response.choices[0]
        content = choice.message.content or ""
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
            for c in (choice.message.tool_calls or [])
            if getattr(c, "function", None) is not None
        )
        usage = _usage(response.usage) or Usage(
            estimate_prompt_tokens(messages), estimate_tokens(content), estimated=True
        )
        return ChatResult(
            content=content,
            tool_calls=calls,
            usage=usage,
            model=response.model or self.model,
            provider=self.provider,
            finish_reason=choice.finish_reason or ("tool_calls" if calls else "stop"),
        )

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Sequence[str] = (),
        response_format: ResponseFormat | None = None,
    ) -> AsyncIterator[ChatDelta]:
        """A streamed completion; each chunk must arrive within the timeout."""
        limit = timeout or self.config.timeout_s
        params = self._params(messages, tools, tool_choice, temperature, max_tokens)
        if stop:
            params["stop"] = list(stop)[:4]  # OpenAI's limit
        if response_format is not None:
            params["response_format"] = self._response_format(response_format)
        params["stream"] = True
        if self.config.stream_usage:
            params["stream_options"] = {"include_usage": True}
        try:
            response = await self._create(params, limit)
        except Exception as exc:
            raise self._translate(exc) from exc
        usage: Usage | None = None
        model = self.model
        text_chars = 0
        finish: str | None = None
        chunks = response.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(limit):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                model = chunk.model or model
                usage = _usage(chunk.usage) or usage
                for choice in chunk.choices[:1]:
                    finish = choice.finish_reason or finish
                    delta = choice.delta
                    if delta.content:
                        text_chars += len(delta.content)
                        yield ChatDelta(text=delta.content)
                    for call in delta.tool_calls or []:
                        function = call.function
                        yield ChatDelta(
                            tool_call=ToolCallDelta(
                                index=call.index,
                                id=call.id,
                                name=function.name if function else None,
                                arguments=(function.arguments or "") if function else "",
                            )
                        )
        except ProviderError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc
        finally:
            await response.close()
        if usage is None:  # server ignored include_usage: estimate rather than report zero
            usage = Usage(estimate_prompt_tokens(messages), max(1, text_chars // 4), estimated=True)
        yield ChatDelta(
            usage=usage, finish_reason=finish or "stop", model=model, provider=self.provider
        )

    async def _create(self, params: dict[str, Any], limit: float) -> Any:
        """`chat.completions.create`; a server that refuses a `json_schema` response format
        (llama-cpp-python's) is asked again with the `json_object` + `schema` form it takes,
        and from then on directly."""
        try:
            async with asyncio.timeout(limit):
                return await self._client.chat.completions.create(**params, timeout=limit)
        except openai.APIStatusError as exc:
            wanted = params.get("response_format") or {}
            if (
                wanted.get("type") != "json_schema"
                # llama-cpp-python answers its validation error with a 500
                or exc.status_code not in (400, 422, 500)
                or "response_format" not in str(exc.message) + str(exc.body)
            ):
                raise
            params = {**params, "response_format": _json_object_form(wanted)}
            try:
                async with asyncio.timeout(limit):
                    response = await self._client.chat.completions.create(**params, timeout=limit)
            except openai.APIStatusError:
                raise exc from None  # not that form either: the server's first answer stands
            self._schema_as_json_object = True  # only once the other form was taken
            return response

    def _response_format(self, wanted: ResponseFormat) -> dict[str, Any]:
        if wanted.get("type") == "json_schema" and self._schema_as_json_object:
            return _json_object_form(wanted)
        return dict(wanted)

    def _params(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        tool_choice: ToolChoice | None,
        temperature: float | None,
        max_tokens: int | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [to_openai_message(m) for m in messages],
        }
        if tools:
            params["tools"] = [to_openai_tool(t) for t in tools]
            if tool_choice:
                params["tool_choice"] = to_openai_tool_choice(tool_choice)
        if temperature is not None:
            params["temperature"] = temperature
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        return params

    def _translate(self, exc: BaseException) -> ProviderError:
        """Map SDK and transport errors onto the port's typed errors."""
        where = {"provider": self.provider, "model": self.model}
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx2.TimeoutException):
            return ProviderTimeout(f"{self.provider} did not answer in time", **where)
        if isinstance(exc, openai.APIStatusError):
            # 429 is transient capacity, like a 5xx: another provider may well answer.
            if exc.status_code >= 500 or exc.status_code == 429:
                return ProviderUnavailable(f"{self.provider} answered {exc.status_code}", **where)
            return ProviderBadRequest(
                f"{self.provider} rejected the request ({exc.status_code}): {_brief(exc)}",
                **where,
            )
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError | OSError):
            return ProviderUnavailable(f"{self.provider} is unreachable: {exc}", **where)
        return ProviderUnavailable(f"{self.provider} failed: {type(exc).__name__}: {exc}", **where)


def _json_object_form(wanted: ResponseFormat) -> dict[str, Any]:
    """A `json_schema` response format as `json_object` with its `schema` (llama.cpp's form)."""
    schema = (wanted.get("json_schema") or {}).get("schema")
    return {"type": "json_object", **({"schema": schema} if schema else {})}


def _brief(exc: openai.APIStatusError) -> str:
    return str(exc.message)[:300]


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(int(raw.prompt_tokens or 0), int(raw.completion_tokens or 0))


def to_openai_message(message: ChatMessage) -> dict[str, Any]:
    """A port message in the chat-completions wire format."""
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        # "" rather than null: llama.cpp's server rejects a null content (with a 500).
        out["content"] = message.content or ""
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return out


def to_openai_tool(spec: ToolSpec) -> dict[str, Any]:
    """A tool spec in the chat-completions wire format."""
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": spec.parameters,
        },
    }


def to_openai_tool_choice(choice: ToolChoice) -> Any:
    """`auto`/`none`/`required` as is; any other value forces the tool of that name."""
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}
