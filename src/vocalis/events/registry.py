"""The one registry of webhook event types and the JSON schema of each one's `data`.

Every event is delivered in the same versioned envelope:

    {"type": "conversation.ended", "timestamp": "2026-01-01T12:00:00.000000Z",
     "api_version": "2026-01-01", "data": {...}}

`data` is validated against the event's model when the event is recorded, so a receiver
can rely on the documented fields; further fields may be added within an API version
(receivers must ignore fields they do not know), removing or changing one needs a new
`api_version`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "2026-01-01"


class EventData(BaseModel):
    """Base of every event's `data`: documented fields required, extra fields allowed."""

    model_config = ConfigDict(extra="allow")


class ConversationStarted(EventData):
    """A conversation began (chat or voice)."""

    conversation_id: str
    agent_id: str
    channel: str = Field(description="How the caller talks: `chat`, `voice`, `api`…")
    started_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)


class CallFacts(BaseModel):
    """What a phone call adds to its conversation's events (channel `phone`)."""

    model_config = ConfigDict(extra="allow", serialize_by_alias=True, validate_by_name=True)

    provider: str = Field(description="`twilio` or `telnyx`.")
    direction: Literal["inbound", "outbound"]
    from_number: str = Field(alias="from", description="The calling party (E.164).")
    to: str = Field(description="The called party (E.164).")
    provider_call_id: str = Field(description="Twilio's CallSid, Telnyx's call_control_id.")
    phone_number_id: str
    duration_s: float | None = Field(default=None, ge=0, description="From stream start.")
    hangup_side: Literal["caller", "agent", "system"] | None = Field(
        default=None,
        description="Who ended the call: the caller, the agent (goodbye, transfer), or the "
        "system (maximum duration, a failure).",
    )


class ConversationEnded(EventData):
    """A conversation ended."""

    conversation_id: str
    agent_id: str
    ended_at: datetime
    reason: str = Field(
        description="`user_ended`, `timeout`, `max_duration`, `disconnected`, `agent_ended`, "
        "`end_phrase`, `error`, `shutdown` (the server stopped while the client was away), "
        "`completed` (a one-off chat completion); phone calls also "
        "`transferred`, `no_answer`, `call_failed`"
    )
    message_count: int = Field(ge=0)
    duration_s: float | None = Field(default=None, ge=0)
    call: CallFacts | None = Field(default=None, description="Phone calls only.")


Outcome = Literal["resolved", "escalated", "abandoned"]
Sentiment = Literal["positive", "neutral", "negative"]


class ConversationAnalyzed(EventData):
    """The post-conversation analysis of an ended conversation is ready."""

    conversation_id: str
    agent_id: str
    summary: str
    outcome: Outcome
    sentiment: Sentiment
    fields: dict[str, Any] = Field(
        default_factory=dict, description="Values of the agent's analysis plan."
    )
    method: Literal["model", "heuristic"] = Field(
        description="Whether a model or the heuristic fallback produced it."
    )
    analyzed_at: datetime
    call: CallFacts | None = Field(default=None, description="Phone calls only.")


class DocumentReady(EventData):
    """A document finished ingestion and can be retrieved."""

    knowledge_base_id: str
    document_id: str
    name: str
    version: int = Field(ge=1)
    chunk_count: int = Field(ge=0)


class DocumentFailed(EventData):
    """Ingestion of a document failed."""

    knowledge_base_id: str
    document_id: str
    name: str
    error_code: str
    error: str


class HandoffRequested(EventData):
    """The agent asked for a human to take over the conversation."""

    conversation_id: str
    agent_id: str
    reason: str
    summary: str = ""
    last_user_message: str | None = None
    requested_at: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="Defaults to when it was recorded."
    )


class Dtmf(EventData):
    """The caller pressed a key on a phone call (the digits also reach the agent as text)."""

    conversation_id: str
    agent_id: str
    digit: str = Field(description="`0`-`9`, `*`, `#`, `A`-`D`.")
    provider: str


class WebhookTest(EventData):
    """Sent on request (`POST /v1/webhooks/{id}/test`) to check an endpoint."""

    endpoint_id: str
    message: str = "This is a test event from Vocalis."


@dataclass(frozen=True)
class EventType:
    """A webhook event type: its name, what it means and the model of its data."""

    name: str
    description: str
    model: type[EventData]
    trigger: str = ""
    emitted_by: tuple[str, ...] = ()

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """`data` checked against the schema, as JSON-ready values."""
        return self.model.model_validate(data).model_dump(mode="json")

    def schema(self) -> dict[str, Any]:
        """The JSON schema of `data`."""
        return self.model.model_json_schema()


EVENTS: dict[str, EventType] = {}


def define(
    name: str, model: type[EventData], *, trigger: str, emitted_by: tuple[str, ...]
) -> EventType:
    """Declare an event type once: what triggers it and the modules that record it (the
    reference test checks each one names the event)."""
    if name in EVENTS:
        raise ValueError(f"event type {name!r} defined twice")
    EVENTS[name] = EventType(name, (model.__doc__ or "").strip(), model, trigger, emitted_by)
    return EVENTS[name]


CONVERSATION_STARTED = define(
    "conversation.started",
    ConversationStarted,
    trigger="A conversation is stored: `POST /v1/agents/{agent_id}/conversations`, "
    "a one-off chat completion, a realtime session that opens a "
    "new conversation, a phone call's media stream starting. Held in the outbox with the "
    "insert, so it is sent only for a conversation that exists.",
    emitted_by=("vocalis/conversations/service.py", "vocalis/openai_compat/one_off.py"),
)
CONVERSATION_ENDED = define(
    "conversation.ended",
    ConversationEnded,
    trigger="An active conversation ends, once, whoever ends it: `POST "
    "/v1/conversations/{id}/end`, the agent's `end_conversation` tool or end phrase, the "
    "idle timeout or maximum duration, a realtime client gone past the grace period, a "
    "hang-up, a failure, a server shutdown; a one-off chat completion ends at once "
    "(`completed`).",
    emitted_by=("vocalis/conversations/service.py", "vocalis/openai_compat/one_off.py"),
)
CONVERSATION_ANALYZED = define(
    "conversation.analyzed",
    ConversationAnalyzed,
    trigger="The analysis task finished for an ended conversation (a model run, or the "
    "heuristic fallback when the model fails); once per conversation.",
    emitted_by=("vocalis/conversations/analysis.py",),
)
DOCUMENT_READY = define(
    "document.ready",
    DocumentReady,
    trigger="The ingestion task indexed a document version (upload or new version): its "
    "chunks are searchable.",
    emitted_by=("vocalis/knowledge/ingest.py",),
)
DOCUMENT_FAILED = define(
    "document.failed",
    DocumentFailed,
    trigger="Ingesting a document version failed for good (unsupported or corrupt file, "
    "no text, over a limit, or the last retry spent); `error_code` is from the catalogue.",
    emitted_by=("vocalis/knowledge/ingest.py",),
)
HANDOFF_REQUESTED = define(
    "handoff.requested",
    HandoffRequested,
    trigger="The agent called `transfer_to_human` (any runtime) in a chat, realtime or "
    "phone turn; the conversation is marked as handed off.",
    emitted_by=("vocalis/conversations/service.py", "vocalis/agents/graph.py"),
)
WEBHOOK_TEST = define(
    "webhook.test",
    WebhookTest,
    trigger="`POST /v1/webhooks/{id}/test`: delivered to that endpoint only.",
    emitted_by=("vocalis/webhooks/service.py",),
)
DTMF = define(
    "vocalis.dtmf",
    Dtmf,
    trigger="The caller pressed a key during a phone call (Twilio `dtmf` or Telnyx "
    "`call.dtmf.received`).",
    emitted_by=("vocalis/telephony/call.py",),
)


def envelope(event_type: str, timestamp: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The payload receivers get: type, timestamp, data and API version."""
    return {
        "type": event_type,
        "timestamp": timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "api_version": API_VERSION,
        "data": data,
    }
