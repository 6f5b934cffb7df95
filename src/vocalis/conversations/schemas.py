"""API shapes of conversations, messages and the server-sent events of a streamed reply."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vocalis.ports.document_store import Document

Channel = Literal["api", "chat", "voice", "phone"]
Status = Literal["active", "ended"]

# The SSE events of `POST /v1/conversations/{id}/messages` with `stream=true`, in order:
SSE_EVENTS: dict[str, str] = {
    "message.delta": '`{"delta": text}`: the next piece of the reply.',
    "tool_call": '`{"id", "name", "arguments"}`: the agent called a tool.',
    "tool_result": '`{"id", "name", "content", "is_error"}`: the tool answered.',
    "handoff": '`{"reason"}`: the conversation was handed to a person.',
    "citation": "A `Citation`: a passage the reply cites as `[n]`, or one an unmarked reply "
    "was attributed to (`attributed: true`); after the last delta.",
    "message.completed": "The stored assistant `Message` (authoritative text; `replaced` "
    "is true when it differs from the deltas). Last event of a successful turn.",
    "error": "A problem+json body; the turn failed and the stream ends.",
}


class ConversationCreate(BaseModel):
    """A new conversation with an agent."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel = "api"
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)


class MessageCreate(BaseModel):
    """A user message; `stream` answers with server-sent events."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=32_000)
    stream: bool = False


class ConversationEnd(BaseModel):
    """Why the conversation ends."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="user_ended", min_length=1, max_length=200)


class Citation(BaseModel):
    """A passage the answer cites as `[n]`, or one it was attributed to (`attributed`)."""

    n: int
    document_id: str
    document_name: str
    chunk_id: str
    text: str
    score: float = 0.0
    page: int | None = None
    section: str | None = None
    attributed: bool = Field(
        default=False,
        description="False: the reply cites this passage as `[n]`. True: the reply carries "
        "no marker and the output guard attributed it to this passage, which supports what "
        "it says (`n` is then the passage's number in the turn, not a marker in the text).",
    )


class ToolCall(BaseModel):
    """A tool the agent called in this turn."""

    id: str
    name: str
    arguments: str


class ToolResult(BaseModel):
    """What a tool answered."""

    id: str
    name: str
    content: str
    is_error: bool = False


class MessageUsage(BaseModel):
    """Tokens and cost of the turn that produced a message."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    estimated: bool = False
    provider: str = ""
    model: str = ""


class Message(BaseModel):
    """One message of a transcript."""

    object: Literal["conversation.message"] = "conversation.message"
    id: str
    conversation_id: str
    sequence: int
    role: Literal["user", "assistant"]
    content: str
    content_redacted: str | None = Field(
        default=None, description="The content with PII redacted (when redaction is on)."
    )
    citations: list[Citation] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)
    usage: MessageUsage | None = None
    latency_ms: dict[str, float] = Field(
        default_factory=dict,
        description="Per-turn breakdown: retrieve, first_token, generate, tools, total; "
        "spoken replies add endpointing, stt, tts_first_byte and first_audio_byte.",
    )
    flags: list[str] = Field(default_factory=list)
    handoff: bool = False
    end_conversation: bool = False
    replaced: bool = False
    interrupted: bool = Field(
        default=False, description="Voice: the caller barged in; `content` holds what was heard."
    )
    recording: dict[str, Any] | None = Field(
        default=None,
        description="Voice: this turn's audio (key, url, speaker, content_type, sample_rate, "
        "duration_ms, bytes).",
    )
    created_at: datetime

    @classmethod
    def of(cls, doc: Document) -> Message:
        """The API view of a stored message."""
        return cls.model_validate({k: v for k, v in doc.items() if k != "_id"} | {"id": doc["_id"]})


class ConversationUsage(BaseModel):
    """Totals over a conversation's turns."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class Conversation(BaseModel):
    """A conversation; `messages` only when one conversation is read."""

    object: Literal["conversation"] = "conversation"
    id: str
    agent_id: str
    agent_version: int
    channel: Channel
    status: Status
    created_at: datetime
    last_message_at: datetime | None = None
    ended_at: datetime | None = None
    ended_reason: str | None = None
    duration_s: float | None = None
    message_count: int = 0
    usage: ConversationUsage = Field(default_factory=ConversationUsage)
    handoff: dict[str, Any] | None = None
    external_user: str | None = None
    ephemeral: bool = Field(
        default=False, description="A one-off chat completion (ended after its reply)."
    )
    metadata: dict[str, str] = Field(default_factory=dict)
    call: dict[str, Any] | None = Field(
        default=None,
        description="Phone calls (channel `phone`): provider, direction, from, to, "
        "provider_call_id, phone_number_id, answered_at, ended_at, duration_s, hangup_side, "
        "recording.",
    )
    messages: list[Message] | None = None
    analysis: dict[str, Any] | None = Field(
        default=None,
        description="Post-conversation analysis once done: summary, outcome, sentiment, "
        "fields (from the agent's analysis plan), method, model, analyzed_at.",
    )

    @classmethod
    def of(cls, doc: Document, messages: list[Document] | None = None) -> Conversation:
        """The API view of a stored conversation (and its transcript)."""
        fields = {k: v for k, v in doc.items() if k in cls.model_fields}
        return cls.model_validate(
            fields
            | {
                "id": doc["_id"],
                "messages": None if messages is None else [Message.of(m) for m in messages],
            }
        )
