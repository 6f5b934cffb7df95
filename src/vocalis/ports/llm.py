"""Chat model port: one interface for every model provider, hosted or embedded.

A provider takes OpenAI-style messages and tool specs and answers with a `ChatResult`
(`complete`) or a stream of `ChatDelta`s (`stream`). Providers raise only the typed errors
below, so the fallback chain can decide what to retry elsewhere:
`ProviderTimeout` and `ProviderUnavailable` move on to the next provider;
`ProviderBadRequest` does not (the request itself is wrong, another provider would not help).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from vocalis.core.errors import VocalisError, register

Role = Literal["system", "user", "assistant", "tool"]

LLM_UNAVAILABLE = register(
    "llm_unavailable",
    503,
    "Model provider unavailable",
    "Every configured model provider timed out or failed; retry later.",
    retryable=True,
)
LLM_REQUEST_REJECTED = register(
    "llm_request_rejected",
    502,
    "Model provider rejected the request",
    "The model provider answered 4xx (unknown model, bad key, context too long…).",
)


@dataclass(frozen=True)
class ToolCall:
    """A function call requested by the model; `arguments` is the raw JSON text."""

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; raises ValueError when they are not a JSON object."""
        value = json.loads(self.arguments or "{}")
        if not isinstance(value, dict):
            raise ValueError("tool arguments must be a JSON object")
        return value


@dataclass(frozen=True)
class ChatMessage:
    """One message of the conversation sent to the model."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # role == "tool": the call this answers
    name: str | None = None  # role == "tool": the tool's name


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class Usage:
    """Token usage of one call; `estimated` when the server did not report it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
        )


@dataclass(frozen=True)
class ChatResult:
    """A complete answer of the model."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model: str = ""
    provider: str = ""
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a tool call; fragments with the same `index` join into one call."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ChatDelta:
    """One streamed piece: text, a tool-call fragment, and/or (last) usage and finish."""

    text: str = ""
    tool_call: ToolCallDelta | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    provider: str | None = None


ToolChoice = str  # "auto" | "none" | "required" | the name of one tool (forced)
ResponseFormat = Mapping[str, Any]  # OpenAI's `response_format` object


@runtime_checkable
class ChatModel(Protocol):
    """A chat model provider."""

    provider: str
    model: str

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
        """The whole answer at once."""
        ...

    def stream(
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
        """The answer as it is generated; the last delta carries usage and finish reason.

        `stop` ends the answer before any of these strings (finish `stop`); `max_tokens`
        cuts it (finish `length`); `response_format` is OpenAI's (`{"type": "json_object"}`
        or `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`): a
        provider that cannot honour it raises `ProviderBadRequest`, never ignores it.
        """
        ...


@dataclass(frozen=True)
class ChatEndpoint:
    """Where and how to reach one OpenAI-compatible model."""

    model: str
    base_url: str | None = None  # None = api.openai.com
    api_key_secret: str | None = None  # secrets-port path, e.g. "llm/openai_api_key"
    provider: str = "openai"  # label on metrics and spans (gen_ai.system)
    timeout_s: float = 30.0  # per request, and per streamed chunk
    stream_usage: bool = True  # send stream_options.include_usage (some servers reject it)
    # The operator's endpoint (VOCALIS_LLM_*): its key is read from the deployment's own
    # secrets, and its URL is trusted. Every other endpoint is an organisation's: keys under
    # the organisation's prefix, every request (redirects included) through the SSRF guard.
    deployment: bool = False
    provider_id: str | None = None  # an organisation's registered model provider (mpr_…)


class ModelChains(Protocol):
    """Builds model chains that share one set of circuit breakers and one cost ledger.

    One per process, built by the composition root: the API's agents and the worker's
    analysis reach the same endpoints through the same breakers and accounting.
    """

    def chain(
        self, org_id: str, endpoints: Sequence[ChatEndpoint], *, extractive: bool = True
    ) -> ChatModel:
        """An organisation's endpoints in order (their API keys read from its own secrets),
        then, when `extractive`, the offline extractive responder."""
        ...

    async def aclose(self) -> None:
        """Close every endpoint's connections."""
        ...


# --- errors -------------------------------------------------------------------------------
class ProviderError(VocalisError):
    """A model provider failed."""

    code = LLM_UNAVAILABLE

    def __init__(self, detail: str | None = None, *, provider: str = "", model: str = "") -> None:
        super().__init__(detail, extra={"provider": provider, "model": model})
        self.provider = provider
        self.model = model


class ProviderTimeout(ProviderError):
    """The provider did not answer (or did not start streaming) in time."""


class ProviderUnavailable(ProviderError):
    """Connection refused/reset, 5xx or 429: another provider may succeed."""


class ProviderBadRequest(ProviderError):
    """4xx: the request is wrong for this provider; not retried elsewhere."""

    code = LLM_REQUEST_REJECTED


# --- helpers shared by providers and callers -------------------------------------------
def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters per token) for servers that report no usage."""
    return max(1, len(text) // 4) if text else 0


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """A rough prompt token count."""
    return sum(
        estimate_tokens(m.content) + sum(estimate_tokens(c.arguments) for c in m.tool_calls) + 4
        for m in messages
    )


@dataclass
class ChatResultBuilder:
    """Folds a stream of deltas into a `ChatResult`."""

    provider: str = ""
    model: str = ""
    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    usage: Usage | None = None
    finish_reason: str | None = None

    def add(self, delta: ChatDelta) -> None:
        """Take one delta into account."""
        if delta.text:
            self.text.append(delta.text)
        if delta.tool_call is not None:
            call = self.calls.setdefault(delta.tool_call.index, {"id": "", "name": "", "args": ""})
            call["id"] = delta.tool_call.id or call["id"]
            call["name"] = delta.tool_call.name or call["name"]
            call["args"] += delta.tool_call.arguments
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        self.model = delta.model or self.model
        self.provider = delta.provider or self.provider

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls assembled so far, in index order."""
        return tuple(
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["args"] or "{}")
            for i, c in sorted(self.calls.items())
        )

    def result(self) -> ChatResult:
        """The folded result."""
        calls = self.tool_calls()
        finish = self.finish_reason or ("tool_calls" if calls else "stop")
        return ChatResult(
            content="".join(self.text),
            tool_calls=calls,
            usage=self.usage or Usage(),
            model=self.model,
            provider=self.provider,
            finish_reason=finish,
        )


async def close_stream(deltas: AsyncIterator[ChatDelta]) -> None:
    """Close a stream early (releases its HTTP response); harmless when already finished."""
    close = getattr(deltas, "aclose", None)
    if close is not None:
        await close()


async def collect(deltas: AsyncIterator[ChatDelta]) -> ChatResult:
    """Consume a stream into one `ChatResult`."""
    builder = ChatResultBuilder()
    async for delta in deltas:
        builder.add(delta)
    return builder.result()
