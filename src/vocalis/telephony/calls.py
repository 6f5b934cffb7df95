"""Starting phone calls: the conversation of an inbound stream, and outbound calls.

An inbound call's conversation starts when its media stream does (a webhook alone starts
nothing). An outbound call's conversation starts when it is requested; the carrier is
asked to dial with our media URL and a stream token naming that conversation, and the
conversation ends `no_answer` if no stream comes within the token's lifetime.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from vocalis.agents.runtime import AgentRuntime
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core.backends import Backends
from vocalis.core.ids import new_id
from vocalis.core.metrics import TELEPHONY_CALLS
from vocalis.ports.document_store import Document
from vocalis.telephony import service
from vocalis.telephony.carriers import call_control, media_url
from vocalis.telephony.schemas import CallOut
from vocalis.telephony.slots import claim_slot, release_slot
from vocalis.telephony.tokens import StreamGrant, issue

log = structlog.get_logger(__name__)

_WATCHDOGS: set[asyncio.Task[None]] = set()
ANSWER_SLACK_S = 5.0


def call_metadata(grant: StreamGrant, call_id: str) -> dict[str, str]:
    """What a phone conversation's metadata says about its call."""
    inbound = grant.direction == "inbound"
    return {
        "provider": grant.provider,
        "direction": grant.direction,
        "from": grant.caller if inbound else grant.our_number,
        "to": grant.our_number if inbound else grant.caller,
        "provider_call_id": call_id,
        "phone_number_id": grant.phone_number_id,
    }


async def start_inbound(
    backends: Backends, runtime: AgentRuntime, grant: StreamGrant, call_id: str
) -> Document:
    """The conversation of an inbound call whose stream just started."""
    await claim_slot(backends, org_id=grant.org_id, slot_id=grant.slot_id, enforce=False)
    return await conversations.start_conversation(
        backends=backends,
        runtime=runtime,
        org_id=grant.org_id,
        agent_id=grant.agent_id,
        channel="phone",
        metadata=call_metadata(grant, call_id),
    )


async def place_call(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    phone_number_id: str,
    to: str,
    metadata: dict[str, str],
    fallback_base: str,
) -> CallOut:
    """Ask the number's carrier to call `to`; the conversation answers when the callee does."""
    async with backends.database.session() as session:
        number = await service.get_number(session=session, org_id=org_id, number_id=phone_number_id)
        session.expunge(number)
    grant = StreamGrant(
        provider=number.provider,
        org_id=org_id,
        phone_number_id=number.id,
        agent_id=number.agent_id,
        direction="outbound",
        caller=to,
        our_number=number.number,
        slot_id=new_id("slot"),
    )
    await claim_slot(backends, org_id=org_id, slot_id=grant.slot_id, enforce=True)
    conversation: Document | None = None
    try:
        conversation = await conversations.start_conversation(
            backends=backends,
            runtime=runtime,
            org_id=org_id,
            agent_id=number.agent_id,
            channel="phone",
            metadata={**metadata, **call_metadata(grant, "")},
        )
        conversation_id = str(conversation["_id"])
        token = await issue(backends, _with_conversation(grant, conversation_id))
        control = await call_control(
            backends, number.provider, await service.credentials(backends, number)
        )
        call_id = await control.dial(
            to=to,
            from_=number.number,
            stream_url=media_url(backends, number.provider, fallback_base),
            token=token,
        )
    except BaseException:
        await release_slot(backends, org_id=org_id, slot_id=grant.slot_id)
        if conversation is not None:
            await _fail(backends, runtime, org_id, str(conversation["_id"]), "call_failed")
            TELEPHONY_CALLS.labels(number.provider, "outbound", "call_failed").inc()
        raise
    await store.update_conversation(
        backends.documents,
        org_id,
        conversation_id,
        {"$set": {"metadata.provider_call_id": call_id}},
    )
    _watch_answer(backends, runtime, grant, conversation_id)
    log.info("phone_call_placed", provider=number.provider, call_id=call_id)
    return CallOut(
        conversation_id=conversation_id,
        phone_number_id=number.id,
        provider=number.provider,
        provider_call_id=call_id,
    )


def _with_conversation(grant: StreamGrant, conversation_id: str) -> StreamGrant:
    fields: dict[str, Any] = {**grant.__dict__, "conversation_id": conversation_id}
    return StreamGrant(**fields)


async def _fail(
    backends: Backends, runtime: AgentRuntime, org_id: str, conversation_id: str, reason: str
) -> None:
    await conversations.end_conversation(
        backends=backends,
        runtime=runtime,
        org_id=org_id,
        conversation_id=conversation_id,
        reason=reason,
    )


def _watch_answer(
    backends: Backends, runtime: AgentRuntime, grant: StreamGrant, conversation_id: str
) -> None:
    """End the conversation `no_answer` if its stream never starts."""

    async def watch() -> None:
        await asyncio.sleep(backends.settings.telephony_stream_token_ttl_s + ANSWER_SLACK_S)
        doc = await conversations.get_conversation(
            backends, org_id=grant.org_id, conversation_id=conversation_id
        )
        if doc.get("status") == "active" and not doc.get("call"):
            await release_slot(backends, org_id=grant.org_id, slot_id=grant.slot_id)
            await _fail(backends, runtime, grant.org_id, conversation_id, "no_answer")
            TELEPHONY_CALLS.labels(grant.provider, "outbound", "no_answer").inc()

    task = asyncio.create_task(watch())
    _WATCHDOGS.add(task)
    task.add_done_callback(_WATCHDOGS.discard)
