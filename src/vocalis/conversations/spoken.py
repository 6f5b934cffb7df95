"""Spoken replies: keep only what the listener heard, and link each turn's recordings.

A spoken reply can be cut short (barge-in, a client that says how much it played). Voice
code never edits messages or the agent's memory itself: it calls these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from vocalis.agents.runtime import AgentRuntime
from vocalis.conversations import store
from vocalis.conversations.service import redaction_on
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.redaction import redact
from vocalis.ports.document_store import Document

log = structlog.get_logger(__name__)

INTERRUPTED_NOTE = "(The user interrupted before this reply was heard.)"


async def keep_heard_reply(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    conversation_id: str,
    message_id: str,
    heard: str,
    user_sequence: int | None,
    in_history: bool,
) -> str | None:
    """Make a reply cut short hold only what the listener heard; its message id, if kept.

    The stored message becomes `heard` (removed when nothing was heard; added when the
    turn was cut off before it was stored), and with `in_history` the agent's memory of
    its last reply becomes the same text.
    """
    if in_history:
        await _forget_unheard(runtime, conversation_id, heard)
    documents = backends.documents
    existing = await documents.get(store.MESSAGES, org_id, message_id)
    if not heard:
        if existing is not None:
            await documents.delete_many(store.MESSAGES, org_id, {"_id": message_id})
            await store.update_conversation(
                documents, org_id, conversation_id, {"$inc": {"message_count": -1}}
            )
        return None
    redacted = redact(heard) if redaction_on(backends, org_id) else None
    fields = {"content": heard, "content_redacted": redacted, "interrupted": True}
    if existing is not None:
        await documents.update_one(store.MESSAGES, org_id, {"_id": message_id}, {"$set": fields})
        return message_id
    if user_sequence is None:
        return None  # the turn never began: there is no user message to answer
    doc: Document = {
        "_id": message_id,
        "conversation_id": conversation_id,
        "sequence": user_sequence + 1,
        "role": "assistant",
        "created_at": store.iso(utcnow()),
        "citations": [],
        **fields,
    }
    await store.insert_message(documents, org_id, doc)
    await store.update_conversation(
        documents,
        org_id,
        conversation_id,
        {"$set": {"last_message_at": doc["created_at"]}, "$inc": {"message_count": 1}},
    )
    return message_id


async def _forget_unheard(runtime: AgentRuntime, conversation_id: str, heard: str) -> None:
    """The model's memory of its last reply becomes what the user heard of it."""
    config: Any = {"configurable": {"thread_id": conversation_id}}
    try:
        snapshot = await runtime.graph.aget_state(config)
        messages = list((snapshot.values or {}).get("messages", []))
        if not messages or messages[-1].get("role") != "assistant":
            return
        last = {**messages[-1], "content": heard or INTERRUPTED_NOTE}
        await runtime.graph.aupdate_state(config, {"messages": [last]}, as_node="output_guard")
    except Exception:  # the stored transcript is right; the model's memory is best effort
        log.exception("voice_history_not_truncated")


async def link_recording(
    backends: Backends, *, org_id: str, message_id: str, link: Mapping[str, Any]
) -> bool:
    """Point a stored message at its recording; returns whether the message exists."""
    return await backends.documents.update_one(
        store.MESSAGES, org_id, {"_id": message_id}, {"$set": {"recording": dict(link)}}
    )


async def store_turn_latency(
    backends: Backends, *, org_id: str, message_id: str, latency_ms: Mapping[str, float]
) -> bool:
    """Keep a spoken reply's whole latency breakdown (endpointing, STT, first token, first
    audio byte…) on its stored message, as `response.done` reported it."""
    return await backends.documents.update_one(
        store.MESSAGES, org_id, {"_id": message_id}, {"$set": {"latency_ms": dict(latency_ms)}}
    )
