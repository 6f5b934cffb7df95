"""Conversations: start, list, read, end, and run one agent turn with its transcript.

A turn is split in two so that transports can answer errors properly before they start
streaming: `begin_turn` checks the conversation (404, ended → 409, busy → 409), takes the
conversation's turn lock and stores the user's message; `Turn.events()` then runs the agent
and yields its events, stores the assistant's message and ends with a `TurnResult`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from vocalis.agents import service as agents
from vocalis.agents.events import AgentEvent, FinalMessage, ToolCallEvent, ToolResultEvent
from vocalis.agents.runtime import AgentRuntime
from vocalis.agents.schemas import AgentConfig
from vocalis.conversations import store
from vocalis.conversations.errors import ConversationBusy, ConversationEnded
from vocalis.core.backends import Backends
from vocalis.core.db import Database, utcnow
from vocalis.core.errors import NotFound
from vocalis.core.ids import new_id
from vocalis.core.redaction import redact
from vocalis.flags.registry import PII_REDACTION_IN_TRANSCRIPTS
from vocalis.flags.service import flag_value
from vocalis.ports.document_store import Document

log = structlog.get_logger(__name__)

_CONFIG_CACHE: OrderedDict[tuple[str, str, int], AgentConfig] = OrderedDict()
_CONFIG_CACHE_SIZE = 256


@dataclass(frozen=True)
class TurnResult:
    """The end of a successful turn: the stored assistant message and its effects."""

    message: Document
    final: FinalMessage
    conversation_ended: bool


TurnEvent = AgentEvent | TurnResult


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(f"No conversation {conversation_id!r}.")


def redaction_on(backends: Backends, org_id: str) -> bool:
    """Whether messages of this organisation get a redacted copy."""
    return backends.settings.redact_pii and flag_value(PII_REDACTION_IN_TRANSCRIPTS, org_id)


async def agent_config(
    database: Database, *, org_id: str, agent_id: str, version: int
) -> AgentConfig:
    """One agent version's configuration (versions are immutable, so they are cached)."""
    key = (org_id, agent_id, version)
    cached = _CONFIG_CACHE.get(key)
    if cached is not None:
        _CONFIG_CACHE.move_to_end(key)
        return cached
    async with database.session() as session:
        row = await agents.get_version(
            session=session, org_id=org_id, agent_id=agent_id, version=version
        )
    config = AgentConfig.model_validate(row.config)
    _CONFIG_CACHE[key] = config
    if len(_CONFIG_CACHE) > _CONFIG_CACHE_SIZE:
        _CONFIG_CACHE.popitem(last=False)
    return config


def _message_doc(
    *,
    conversation_id: str,
    sequence: int,
    role: str,
    content: str,
    redacted: bool,
    message_id: str | None = None,
) -> Document:
    return {
        "_id": message_id or new_id("msg"),
        "conversation_id": conversation_id,
        "sequence": sequence,
        "role": role,
        "content": content,
        "content_redacted": redact(content) if redacted else None,
        "created_at": store.iso(utcnow()),
    }


# --- lifecycle ----------------------------------------------------------------------------
async def start_conversation(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    agent_id: str,
    channel: str = "api",
    metadata: Mapping[str, str] | None = None,
    external_user: str | None = None,
    ephemeral: bool = False,
    greet: bool = True,
) -> Document:
    """A new active conversation on the agent's current version (404 for unknown agents).

    The agent's first message, when configured (and `greet`), is stored as message 1 and
    put in the model's history.
    """
    async with backends.database.session() as session:
        view = await agents.get_agent(session=session, org_id=org_id, agent_id=agent_id)
    config = view.config
    now = store.iso(utcnow())
    doc: Document = {
        "_id": new_id("cnv"),
        "agent_id": agent_id,
        "agent_version": view.agent.version,
        "channel": channel,
        "status": "active",
        "created_at": now,
        "last_message_at": None,
        "ended_at": None,
        "ended_reason": None,
        "duration_s": None,
        "message_count": 0,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0},
        "handoff": None,
        "external_user": external_user,
        "ephemeral": ephemeral,
        "metadata": dict(metadata or {}),
    }
    if config.first_message and greet:
        first = _message_doc(
            conversation_id=doc["_id"],
            sequence=1,
            role="assistant",
            content=config.first_message,
            redacted=redaction_on(backends, org_id),
        )
        doc["message_count"] = 1
        doc["last_message_at"] = now
        await store.insert_message(backends.documents, org_id, first)
        await runtime.seed_history(doc["_id"], [("assistant", config.first_message)])
    await store.insert_conversation(backends.documents, org_id, doc)
    log.info("conversation_started", conversation_id=doc["_id"], agent_id=agent_id, channel=channel)
    await runtime.events("conversation.started", _started_payload(org_id, doc))
    return doc


def _started_payload(org_id: str, doc: Document) -> dict[str, Any]:
    """`conversation.started` data (see vocalis.webhooks.events)."""
    return {
        "org_id": org_id,
        "conversation_id": doc["_id"],
        "agent_id": doc["agent_id"],
        "agent_version": doc["agent_version"],
        "channel": doc["channel"],
        "started_at": doc["created_at"],
        "metadata": doc.get("metadata", {}),
    }


def _ended_payload(org_id: str, doc: Document) -> dict[str, Any]:
    """`conversation.ended` data (see vocalis.webhooks.events)."""
    return {
        "org_id": org_id,
        "conversation_id": doc["_id"],
        "agent_id": doc["agent_id"],
        "agent_version": doc["agent_version"],
        "channel": doc["channel"],
        "ended_at": doc["ended_at"],
        "reason": doc["ended_reason"],
        "message_count": doc.get("message_count", 0),
        "duration_s": doc.get("duration_s"),
    }


async def get_conversation(backends: Backends, *, org_id: str, conversation_id: str) -> Document:
    """One conversation of the organisation; NotFound otherwise."""
    doc = await store.get_conversation(backends.documents, org_id, conversation_id)
    if doc is None:
        raise _not_found(conversation_id)
    return doc


async def list_conversations(
    backends: Backends,
    *,
    org_id: str,
    limit: int,
    before_id: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
) -> list[Document]:
    """Conversations, newest first, filtered."""
    filter: dict[str, Any] = {}
    for name, value in (("agent_id", agent_id), ("status", status), ("channel", channel)):
        if value is not None:
            filter[name] = value
    created: dict[str, str] = {}
    if created_after is not None:
        created["$gt"] = created_after
    if created_before is not None:
        created["$lt"] = created_before
    if created:
        filter["created_at"] = created
    return await store.find_conversations(
        backends.documents, org_id, filter, limit=limit, before_id=before_id
    )


async def transcript(backends: Backends, *, org_id: str, conversation_id: str) -> list[Document]:
    """A conversation's messages in order."""
    return await store.list_messages(backends.documents, org_id, conversation_id)


async def end_conversation(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    conversation_id: str,
    reason: str,
) -> Document:
    """End an active conversation and emit `conversation.ended` (ending twice is a no-op)."""
    doc = await get_conversation(backends, org_id=org_id, conversation_id=conversation_id)
    if doc["status"] == "ended":
        return doc
    ended = utcnow()
    started = store.parse_iso(doc["created_at"]) or ended
    changes = {
        "status": "ended",
        "ended_at": store.iso(ended),
        "ended_reason": reason,
        "duration_s": round((ended - started).total_seconds(), 3),
    }
    matched = await store.update_conversation(
        backends.documents, org_id, conversation_id, {"$set": changes}, only_if={"status": "active"}
    )
    doc = {**doc, **changes}
    if matched:  # a concurrent end already emitted the event otherwise
        log.info("conversation_ended", conversation_id=conversation_id, reason=reason)
        await runtime.events("conversation.ended", _ended_payload(org_id, doc))
    return doc


# --- turns --------------------------------------------------------------------------------
def says_end_phrase(text: str, phrases: list[str]) -> bool:
    """Whether a user message contains one of the agent's end-of-conversation phrases."""
    folded = " ".join(text.casefold().split())
    return any(" ".join(p.casefold().split()) in folded for p in phrases if p.strip())


@dataclass
class Turn:
    """One agent turn whose user message is stored and whose lock is held."""

    backends: Backends
    runtime: AgentRuntime
    org_id: str
    conversation: Document
    config: AgentConfig
    user_message: Document
    lock: store.TurnLock
    # The id the assistant's message will be stored under; transports that announce the
    # reply before it is stored (the realtime protocol's items) may set it.
    reply_id: str = field(default_factory=lambda: new_id("msg"))

    @property
    def conversation_id(self) -> str:
        """The conversation's id."""
        return str(self.conversation["_id"])

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Run the agent: its events, then a `TurnResult` (the lock is released at the end)."""
        try:
            final: FinalMessage | None = None
            calls: list[ToolCallEvent] = []
            results: list[ToolResultEvent] = []
            ctx = self.runtime.context(
                org_id=self.org_id,
                conversation_id=self.conversation_id,
                agent_id=self.conversation["agent_id"],
                config=self.config,
                events=self._sink,
            )
            async for event in self.runtime.run(ctx, self.user_message["content"]):
                if isinstance(event, FinalMessage):
                    final = event
                    continue
                if isinstance(event, ToolCallEvent):
                    calls.append(event)
                elif isinstance(event, ToolResultEvent):
                    results.append(event)
                yield event
            if final is None:  # pragma: no cover - the graph always ends with one
                raise RuntimeError("the agent turn ended without a final message")
            message = await self._store_reply(final, calls, results)
            ended = await self._end_if_due(final)
            yield TurnResult(message, final, ended)
        finally:
            await self.lock.release()

    async def release(self) -> None:
        """Give the lock back without running (the caller gave up before `events`)."""
        await self.lock.release()

    async def _sink(self, name: str, payload: Mapping[str, Any]) -> None:
        if name == "handoff.requested":
            handoff = {"requested_at": store.iso(utcnow()), "reason": payload.get("reason", "")}
            await store.update_conversation(
                self.backends.documents,
                self.org_id,
                self.conversation_id,
                {"$set": {"handoff": handoff}},
            )
            payload = {**payload, "requested_at": handoff["requested_at"]}
        await self.runtime.events(name, payload)

    async def _store_reply(
        self,
        final: FinalMessage,
        calls: list[ToolCallEvent],
        results: list[ToolResultEvent],
    ) -> Document:
        doc = _message_doc(
            message_id=self.reply_id,
            conversation_id=self.conversation_id,
            sequence=self.user_message["sequence"] + 1,
            role="assistant",
            content=final.content,
            redacted=redaction_on(self.backends, self.org_id),
        )
        usage = final.usage
        doc.update(
            {
                "citations": [asdict(c) for c in final.citations],
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls
                ],
                "tool_results": [
                    {"id": r.id, "name": r.name, "content": r.content, "is_error": r.is_error}
                    for r in results
                ],
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                    "cost_usd": usage.cost_usd,
                    "estimated": usage.estimated,
                    "provider": usage.provider,
                    "model": usage.model,
                },
                "latency_ms": dict(final.latency_ms),
                "flags": list(final.flags),
                "handoff": final.handoff,
                "end_conversation": final.end_conversation,
                "replaced": final.replaced,
            }
        )
        await store.insert_message(self.backends.documents, self.org_id, doc)
        await store.update_conversation(
            self.backends.documents,
            self.org_id,
            self.conversation_id,
            {
                "$set": {"last_message_at": doc["created_at"]},
                "$inc": {
                    "message_count": 1,
                    "usage.prompt_tokens": usage.prompt_tokens,
                    "usage.completion_tokens": usage.completion_tokens,
                    "usage.cost_usd": usage.cost_usd,
                },
            },
        )
        return doc

    async def _end_if_due(self, final: FinalMessage) -> bool:
        reason: str | None = None
        if final.end_conversation:
            reason = "agent_ended"
        elif says_end_phrase(self.user_message["content"], self.config.end_of_conversation_phrases):
            reason = "end_phrase"
        if reason is None:
            return False
        await end_conversation(
            backends=self.backends,
            runtime=self.runtime,
            org_id=self.org_id,
            conversation_id=self.conversation_id,
            reason=reason,
        )
        return True


async def begin_turn(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    conversation_id: str,
    content: str,
    message_id: str | None = None,
) -> Turn:
    """Check the conversation, take its turn lock and store the user's message."""
    doc = await get_conversation(backends, org_id=org_id, conversation_id=conversation_id)
    if doc["status"] != "active":
        raise ConversationEnded(f"Conversation {conversation_id!r} has ended.")
    lock = store.TurnLock(backends.redis, conversation_id)
    if not await lock.acquire():
        raise ConversationBusy(f"Conversation {conversation_id!r} is answering another message.")
    try:
        # Read again under the lock: the sequence and status must be current.
        doc = await get_conversation(backends, org_id=org_id, conversation_id=conversation_id)
        if doc["status"] != "active":
            raise ConversationEnded(f"Conversation {conversation_id!r} has ended.")
        config = await agent_config(
            backends.database,
            org_id=org_id,
            agent_id=doc["agent_id"],
            version=int(doc["agent_version"]),
        )
        user = _message_doc(
            message_id=message_id,
            conversation_id=conversation_id,
            sequence=int(doc.get("message_count", 0)) + 1,
            role="user",
            content=content,
            redacted=redaction_on(backends, org_id),
        )
        await store.insert_message(backends.documents, org_id, user)
        await store.update_conversation(
            backends.documents,
            org_id,
            conversation_id,
            {"$set": {"last_message_at": user["created_at"]}, "$inc": {"message_count": 1}},
        )
    except BaseException:
        await lock.release()
        raise
    return Turn(backends, runtime, org_id, doc, config, user, lock)


async def run_turn(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    conversation_id: str,
    content: str,
) -> TurnResult:
    """Run a whole turn and return its result (the JSON reply path)."""
    turn = await begin_turn(
        backends=backends,
        runtime=runtime,
        org_id=org_id,
        conversation_id=conversation_id,
        content=content,
    )
    result: TurnResult | None = None
    async for event in turn.events():
        if isinstance(event, TurnResult):
            result = event
    assert result is not None
    return result
