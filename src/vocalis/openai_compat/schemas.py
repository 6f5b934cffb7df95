"""Request and response shapes of the OpenAI-compatible chat-completions endpoint.

Requests accept (and ignore) OpenAI parameters that have no meaning for an agent, so that
existing clients work unchanged; responses follow OpenAI's shapes exactly and add one
namespaced `vocalis` object.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ContentPart(BaseModel):
    """A part of a message's content; only text parts are read."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    """One message of the request's history."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content or [] if p.type in ("text", "input_text"))


class StreamOptions(BaseModel):
    """Streaming options."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


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


class CompletionUsage(BaseModel):
    """Token usage, as OpenAI reports it."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    """The reply."""

    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] = "stop"


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
