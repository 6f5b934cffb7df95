"""Request and response shapes of the OpenAI-compatible chat-completions endpoint.

Requests accept (and ignore) OpenAI parameters that have no meaning for an agent (`n`
above 1 is refused, `logprobs`, `seed`… are ignored), so that existing clients work
unchanged; `tools`, `tool_choice`, `response_format`, `max_tokens`/`max_completion_tokens`
and `stop` are honoured, or refused with an error when the agent cannot honour them.
Responses follow OpenAI's shapes exactly and add one namespaced `vocalis` object.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ContentPart(BaseModel):
    """A part of a message's content; only text parts are read."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    """The function a tool call names, with its JSON arguments."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=128)
    arguments: str = Field(default="{}", max_length=100_000)


class ToolCallIn(BaseModel):
    """A tool call of an earlier assistant message (sent back by the client)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessageIn(BaseModel):
    """One message of the request's history."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=128)

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content or [] if p.type in ("text", "input_text"))


class StreamOptions(BaseModel):
    """Streaming options."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class FunctionDefinition(BaseModel):
    """A client function: name, description and JSON schema of its arguments."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=8_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ChatTool(BaseModel):
    """A tool the client offers (and runs): OpenAI's function tool."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(BaseModel):
    """The function a named tool choice forces."""

    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    """`{"type": "function", "function": {"name": …}}`: force that tool."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    """The schema of a `json_schema` response format."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(default="response", min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: `text`, `json_object` or `json_schema`."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`: `model` is an agent id.

    Without `user`, every request is a one-off conversation seeded with the request's
    history (the usual stateless OpenAI semantics). With `user`, the agent keeps one
    conversation per user: the server holds the history, and only the trailing user
    message(s) of the request are taken as the new turn.
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=64, description="The agent's id.")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=500)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, min_length=1, max_length=256)
    n: int | None = Field(default=None, ge=1, le=1)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    tools: list[ChatTool] | None = Field(
        default=None,
        max_length=128,
        description="Client functions offered to the agent's model beside its own tools; a "
        "call comes back as `tool_calls` (`finish_reason: tool_calls`) for the client to run, "
        "and the client continues with `tool` messages.",
    )
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: str | list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)

    def stop_list(self) -> list[str]:
        """`stop` as a list (OpenAI takes up to 4 strings)."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def token_limit(self) -> int | None:
        """`max_completion_tokens`, else the older `max_tokens`."""
        return self.max_completion_tokens or self.max_tokens

    def tool_choice_name(self) -> str | None:
        """The tool choice as the runtime takes it: a mode or the forced tool's name."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return self.tool_choice


class CompletionUsage(BaseModel):
    """Token usage, as OpenAI reports it."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCallOut(BaseModel):
    """A call of a client tool, for the client to run."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    """The reply (or, with `tool_calls`, the client tool calls to run and what was said)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = None


FinishReason = Literal["stop", "length", "tool_calls"]


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason = "stop"


class VocalisExtras(BaseModel):
    """What the agent adds beyond OpenAI's shape."""

    conversation_id: str
    message_id: str
    citations: list[dict[str, Any]] = Field(default_factory=list)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    handoff: bool = False
    conversation_ended: bool = False


class ChatCompletion(BaseModel):
    """A whole completion."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    vocalis: VocalisExtras
