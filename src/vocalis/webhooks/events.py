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


class ConversationEnded(EventData):
    """A conversation ended."""

    conversation_id: str
    agent_id: str
    ended_at: datetime
    reason: str = Field(description="`user_ended`, `agent_ended`, `timeout`, `error`…")
    message_count: int = Field(ge=0)
    duration_s: float | None = Field(default=None, ge=0)


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

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """`data` checked against the schema, as JSON-ready values."""
        return self.model.model_validate(data).model_dump(mode="json")

    def schema(self) -> dict[str, Any]:
        """The JSON schema of `data`."""
        return self.model.model_json_schema()


EVENTS: dict[str, EventType] = {}


def define(name: str, model: type[EventData]) -> EventType:
    """Declare an event type once."""
    if name in EVENTS:
        raise ValueError(f"event type {name!r} defined twice")
    EVENTS[name] = EventType(name, (model.__doc__ or "").strip(), model)
    return EVENTS[name]


CONVERSATION_STARTED = define("conversation.started", ConversationStarted)
CONVERSATION_ENDED = define("conversation.ended", ConversationEnded)
CONVERSATION_ANALYZED = define("conversation.analyzed", ConversationAnalyzed)
DOCUMENT_READY = define("document.ready", DocumentReady)
DOCUMENT_FAILED = define("document.failed", DocumentFailed)
HANDOFF_REQUESTED = define("handoff.requested", HandoffRequested)
WEBHOOK_TEST = define("webhook.test", WebhookTest)


def envelope(event_type: str, timestamp: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The payload receivers get: type, timestamp, data and API version."""
    return {
        "type": event_type,
        "timestamp": timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "api_version": API_VERSION,
        "data": data,
    }
