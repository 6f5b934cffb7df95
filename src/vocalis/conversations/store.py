"""Conversations and messages in the document store, and the per-conversation turn lock.

The two collections, their fields, indexes and retention are declared once below
(`declare_collection`); `docs/reference/collections.md` is generated from the declarations
and `ensure_indexes` creates the declared indexes. Every document also carries `org_id`,
added by the store. Times are ISO-8601 UTC strings with microseconds, so they sort and
compare as text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from vocalis.core.collections import DocField, declare_collection
from vocalis.core.ids import new_id
from vocalis.core.redis_keys import declare
from vocalis.ports.document_store import Document, DocumentStore, Filter

CONVERSATIONS = "conversations"
MESSAGES = "messages"
MAX_TRANSCRIPT_MESSAGES = 1000

_RETENTION = (
    "Kept until deleted, or for the organisation's `retention_days` when set: the `retention` "
    "job deletes older conversations with their messages and recordings "
    "(`workers/maintenance.py`)."
)
CONVERSATION_COLLECTION = declare_collection(
    CONVERSATIONS,
    description="One conversation with an agent, on any channel; its messages are in `messages`.",
    owner="conversations/service.py",
    fields=[
        DocField("_id", "string", "`cnv_…`, time-sortable."),
        DocField("agent_id", "string", "The agent (→ `agents.id`)."),
        DocField("agent_version", "integer", "The agent version it started on, used to the end."),
        DocField("channel", "string", "`api` | `chat` | `voice`."),
        DocField("status", "string", "`active` | `ended`."),
        DocField("created_at", "time", "When it started."),
        DocField("last_message_at", "time or null", "When the last message was stored."),
        DocField("ended_at", "time or null", "When it ended."),
        DocField("ended_reason", "string or null", "Why it ended (client, agent, timeout…)."),
        DocField("duration_s", "number or null", "Seconds from start to end."),
        DocField("message_count", "integer", "Messages stored."),
        DocField(
            "usage",
            "object",
            "Totals: `prompt_tokens`, `completion_tokens`, `cost_usd`.",
        ),
        DocField("handoff", "object or null", "`requested_at`, `reason` of a human handoff."),
        DocField("external_user", "string or null", "The caller's id in the client's system."),
        DocField("ephemeral", "boolean", "A one-off chat completion (not analysed)."),
        DocField(
            "metadata",
            "object",
            "Client metadata; phone calls add `provider_call_id`.",
        ),
        DocField(
            "awaiting_tool_calls",
            "array",
            "Client tool calls the last reply waits for (`id`, `name`, `message_id`); set "
            "after a reply.",
            always=False,
        ),
        DocField(
            "call",
            "object",
            "Phone calls only: `provider`, `direction`, `from`, `to`, `provider_call_id`, "
            "`stream_id`, `phone_number_id`, `answered_at`, `ended_at`, `duration_s`, "
            "`hangup_side`, `recording`.",
            always=False,
        ),
        DocField(
            "analysis",
            "object",
            "After the analysis task: `summary`, `outcome`, `sentiment`, `fields`, `method`, "
            "`model`, `model_error`, `analyzed_at`.",
            always=False,
        ),
    ],
    indexes=[
        [("agent_id", 1), ("_id", -1)],
        [("status", 1), ("_id", -1)],
        [("channel", 1), ("_id", -1)],
        [("agent_id", 1), ("external_user", 1), ("status", 1)],
    ],
    retention=_RETENTION,
)
MESSAGE_COLLECTION = declare_collection(
    MESSAGES,
    description="The messages of a conversation, user and assistant, in order.",
    owner="conversations/service.py",
    fields=[
        DocField("_id", "string", "`msg_…`."),
        DocField("conversation_id", "string", "The conversation (→ `conversations._id`)."),
        DocField("sequence", "integer", "1, 2, … within the conversation."),
        DocField("role", "string", "`user` | `assistant`."),
        DocField("content", "string", "The text (for a spoken reply cut short: what was heard)."),
        DocField(
            "content_redacted",
            "string or null",
            "The text with PII redacted, when redaction is on.",
        ),
        DocField("created_at", "time", "When it was stored."),
        *(
            DocField(name, kind, f"Assistant messages: {what}", always=False)
            for name, kind, what in (
                (
                    "citations",
                    "array",
                    "the knowledge passages the answer cites (`attributed`: true when "
                    "the answer wrote no `[n]` and the passage was attributed to it).",
                ),
                ("tool_calls", "array", "`id`, `name`, `arguments` of each tool call."),
                ("tool_results", "array", "`id`, `name`, `content`, `is_error` of each result."),
                (
                    "usage",
                    "object",
                    "`prompt_tokens`, `completion_tokens`, `total_tokens`, `cost_usd`, "
                    "`estimated`, `provider`, `model`.",
                ),
                ("latency_ms", "object", "the turn's timings (spoken turns: the whole breakdown)."),
                ("flags", "array", "guard flags raised in the turn."),
                ("handoff", "object or null", "the handoff the agent requested."),
                ("end_conversation", "boolean", "whether the agent ended the conversation."),
                ("replaced", "boolean", "whether a guard replaced the model's text."),
                ("awaiting_tool_calls", "array", "ids of client tool calls still unanswered."),
            )
        ),
        DocField(
            "recording",
            "object",
            "Spoken turns, when recording is on: `key`, `url`, `speaker`, `content_type`, "
            "`sample_rate`, `duration_ms`, `bytes` of its WAV.",
            always=False,
        ),
    ],
    indexes=[[("conversation_id", 1), ("sequence", 1)]],
    retention=_RETENTION,
)

TURN_LOCK = declare(
    "conversation_turn_lock",
    "vocalis:cnv:turn:{conversation_id}",
    "Token of the agent turn in progress in one conversation (one turn at a time).",
    "The turn's duration; expires after 300 s if its process died.",
)
TURN_LOCK_TTL_MS = 300_000
# Delete the lock only if it still holds our token (it may have expired and been retaken).
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def iso(moment: datetime) -> str:
    """A UTC timestamp as stored: fixed-width ISO-8601, so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(value: str | None) -> datetime | None:
    """A stored timestamp back as an aware datetime."""
    return datetime.fromisoformat(value) if value else None


async def ensure_indexes(documents: DocumentStore) -> None:
    """Create the collections' indexes (idempotent; run at startup)."""
    for collection in (CONVERSATION_COLLECTION, MESSAGE_COLLECTION):
        await documents.ensure_indexes(collection.name, collection.index_specs())


# --- conversations ------------------------------------------------------------------------
async def insert_conversation(documents: DocumentStore, org_id: str, doc: Document) -> Document:
    """Store a new conversation."""
    return await documents.insert(CONVERSATIONS, org_id, doc)


async def get_conversation(
    documents: DocumentStore, org_id: str, conversation_id: str
) -> Document | None:
    """One conversation of the organisation, or None."""
    return await documents.get(CONVERSATIONS, org_id, conversation_id)


async def find_conversations(
    documents: DocumentStore,
    org_id: str,
    filter: Filter,
    *,
    limit: int,
    before_id: str | None = None,
) -> list[Document]:
    """Conversations matching `filter`, newest first, older than `before_id`."""
    query = dict(filter)
    if before_id:
        query["_id"] = {"$lt": before_id}
    return await documents.find(CONVERSATIONS, org_id, query, sort=[("_id", -1)], limit=limit)


async def find_active_for_user(
    documents: DocumentStore, org_id: str, agent_id: str, external_user: str
) -> Document | None:
    """The newest active conversation of an agent with one external user."""
    found = await documents.find(
        CONVERSATIONS,
        org_id,
        {"agent_id": agent_id, "external_user": external_user, "status": "active"},
        sort=[("_id", -1)],
        limit=1,
    )
    return found[0] if found else None


async def update_conversation(
    documents: DocumentStore,
    org_id: str,
    conversation_id: str,
    update: Mapping[str, Any],
    *,
    only_if: Filter | None = None,
) -> bool:
    """Apply an update (`$set`/`$inc`/…); returns whether the conversation matched."""
    return await documents.update_one(
        CONVERSATIONS, org_id, {"_id": conversation_id, **(only_if or {})}, update
    )


# --- messages -----------------------------------------------------------------------------
async def insert_message(documents: DocumentStore, org_id: str, doc: Document) -> Document:
    """Store one message."""
    return await documents.insert(MESSAGES, org_id, doc)


async def list_messages(
    documents: DocumentStore,
    org_id: str,
    conversation_id: str,
    *,
    limit: int = MAX_TRANSCRIPT_MESSAGES,
) -> list[Document]:
    """A conversation's messages in sequence order."""
    return await documents.find(
        MESSAGES,
        org_id,
        {"conversation_id": conversation_id},
        sort=[("sequence", 1)],
        limit=limit,
    )


# --- one turn at a time -------------------------------------------------------------------
class TurnLock:
    """A Redis lock that lets one agent turn at a time run in a conversation."""

    def __init__(self, redis: aioredis.Redis, conversation_id: str) -> None:
        self._redis = redis
        self._key = TURN_LOCK.format(conversation_id=conversation_id)
        self._token = new_id("lck").encode()
        self.held = False

    async def acquire(self) -> bool:
        """Take the lock if free; returns whether we hold it.

        A caller cancelled while the command is on its way (a speculative reply dropped as
        it begins) would otherwise leave a lock Redis gave it and nobody holds: the command
        is finished, and a lock it took given back, before the cancellation goes on."""
        taking = asyncio.ensure_future(
            self._redis.set(self._key, self._token, nx=True, px=TURN_LOCK_TTL_MS)
        )
        try:
            self.held = bool(await asyncio.shield(taking))
        except asyncio.CancelledError:
            await asyncio.wait({taking})
            if not taking.cancelled() and taking.exception() is None and taking.result():
                self.held = True
                await self.release()
            raise
        return self.held

    async def release(self) -> None:
        """Give the lock back (only if it is still ours).

        The release runs to its end even when the caller is cancelled meanwhile (a reply
        closed by a barge-in, a speculation dropped): an interrupted release would keep the
        conversation answering another message until the lock's TTL; the cancellation goes
        on once the lock is back."""
        if not self.held:
            return
        self.held = False
        giving = asyncio.ensure_future(self._redis.eval(_RELEASE, 1, self._key, self._token))
        try:
            await asyncio.shield(giving)
        except asyncio.CancelledError:
            await asyncio.wait({giving})
            raise
