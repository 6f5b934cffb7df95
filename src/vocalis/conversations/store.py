"""Conversations and messages in the document store, and the per-conversation turn lock.

Collections (every document also carries `org_id`, added by the store):

- `conversations`: `_id` (`cnv_…`, time-sortable), `agent_id`, `agent_version`, `channel`
  (api | chat | voice), `status` (active | ended), `created_at`, `last_message_at`,
  `ended_at`, `ended_reason`, `duration_s`, `message_count`, `usage` (prompt/completion
  tokens, cost), `metadata`, `external_user`, `ephemeral`, `handoff`.
- `messages`: `_id` (`msg_…`), `conversation_id`, `sequence` (1, 2, … per conversation),
  `role` (user | assistant), `content`, `content_redacted` (when redaction is on),
  `tool_calls`, `tool_results`, `citations`, `usage`, `latency_ms`, `flags`, `created_at`.

Times are ISO-8601 UTC strings with microseconds, so they sort and compare as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from vocalis.core.ids import new_id
from vocalis.core.redis_keys import declare
from vocalis.ports.document_store import Document, DocumentStore, Filter

CONVERSATIONS = "conversations"
MESSAGES = "messages"
MAX_TRANSCRIPT_MESSAGES = 1000

CONVERSATION_INDEXES: list[list[tuple[str, int]]] = [
    [("agent_id", 1), ("_id", -1)],
    [("status", 1), ("_id", -1)],
    [("channel", 1), ("_id", -1)],
    [("agent_id", 1), ("external_user", 1), ("status", 1)],
]
MESSAGE_INDEXES: list[list[tuple[str, int]]] = [[("conversation_id", 1), ("sequence", 1)]]

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
    await documents.ensure_indexes(CONVERSATIONS, CONVERSATION_INDEXES)
    await documents.ensure_indexes(MESSAGES, MESSAGE_INDEXES)


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
        """Take the lock if free; returns whether we hold it."""
        self.held = bool(
            await self._redis.set(self._key, self._token, nx=True, px=TURN_LOCK_TTL_MS)
        )
        return self.held

    async def release(self) -> None:
        """Give the lock back (only if it is still ours)."""
        if self.held:
            self.held = False
            await self._redis.eval(_RELEASE, 1, self._key, self._token)
